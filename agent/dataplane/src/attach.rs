//! Attaching a loaded pair of programs to a link (XDP for ingress, TC for egress),
//! replacing them with a new generation in one step per hook, and detaching them.
//!
//! The links are owned by the [`LoadedProgram`], so dropping it detaches, and a
//! replacement moves the links from one generation to the next. Each hook switches
//! atomically: XDP and TCX through `BPF_LINK_UPDATE`, a clsact filter by replacing
//! the filter in place (same priority and handle). Every packet therefore runs either
//! the old program with its complete maps or the new one with its complete maps; the
//! two hooks switch one after the other, which is harmless because each direction
//! only reads its own policy maps (and the shared flow table, which both keep).
//!
//! The egress hook is attached first: from then on outbound packets of existing
//! connections create their flow entries, so that when ingress starts enforcing, the
//! replies of those connections already pass.

use aya::programs::{
    Link as _, LinkOrder, ProgramError, TcAttachType, XdpMode,
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    xdp::XdpLink,
};
use aya::util::KernelVersion;
use serde::Serialize;

use crate::{DataplaneError, LoadedProgram, qdisc};

const XDP_HOOK: &str = "XDP";
const TC_HOOK: &str = "TC egress";

/// Which XDP mode to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum XdpAttachMode {
    /// In the driver; fails where the driver has no XDP support.
    Native,
    /// In the kernel's generic receive path; works on every link, slower.
    Generic,
    /// Native, falling back to generic with a warning naming the reason.
    #[default]
    Auto,
}

/// The XDP mode a program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// In the generic receive path.
    Generic,
}

impl AttachedMode {
    /// `"native"` or `"generic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }

    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachedMode::Native => XdpMode::Driver,
            AttachedMode::Generic => XdpMode::Skb,
        }
    }
}

/// How to attach the egress program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TcAttachMode {
    /// TCX where the kernel has it (6.6 and later), a clsact filter otherwise.
    #[default]
    Auto,
    /// A TCX link (multi-program attachment; 6.6 and later).
    Tcx,
    /// A `bpf` filter on the link's clsact qdisc, created when missing.
    Clsact,
}

/// How the egress program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcMode {
    /// A TCX link.
    Tcx,
    /// A clsact filter.
    Clsact,
}

impl TcMode {
    /// `"tcx"` or `"clsact"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcMode::Tcx => "tcx",
            TcMode::Clsact => "clsact",
        }
    }
}

/// Where both programs ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Attached {
    /// The ingress program's XDP mode.
    pub xdp: AttachedMode,
    /// The egress program's TC attachment.
    pub tc: TcMode,
}

/// A program pair's attachment to one link.
#[derive(Debug)]
pub(crate) struct Attachment {
    pub(crate) xdp: XdpLink,
    pub(crate) tc: SchedClassifierLink,
    pub(crate) ifname: String,
    pub(crate) mode: Attached,
    /// The link's index when sgmirror created its clsact qdisc (deleted on detach).
    pub(crate) created_clsact: Option<u32>,
    /// The pin directory when both links are pinned (they then outlive the process).
    pub(crate) pinned_in: Option<std::path::PathBuf>,
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// An attach error because the link does not exist (no point in falling back).
fn unknown_interface(e: &DataplaneError) -> bool {
    matches!(e, DataplaneError::Attach { source, .. } if matches!(**source, ProgramError::UnknownInterface { .. }))
}

fn tcx_available() -> bool {
    KernelVersion::current().map(|v| v >= KernelVersion::new(6, 6, 0)).unwrap_or(false)
}

impl LoadedProgram {
    /// Attaches the egress program (TC) and then the ingress program (XDP) to the
    /// link `ifname`, and returns how they run.
    ///
    /// A program pair is attached to at most one link; it stays attached until
    /// [`LoadedProgram::detach`], a [`LoadedProgram::replace`], or its drop. If the
    /// second hook fails, the first is detached again and nothing is left behind.
    pub fn attach(
        &mut self,
        ifname: &str,
        xdp: XdpAttachMode,
        tc: TcAttachMode,
    ) -> Result<Attached, DataplaneError> {
        if let Some(a) = &self.attachment {
            return Err(DataplaneError::AlreadyAttached(a.ifname.clone()));
        }
        let tc = match tc {
            TcAttachMode::Tcx => TcMode::Tcx,
            TcAttachMode::Clsact => TcMode::Clsact,
            TcAttachMode::Auto if tcx_available() => TcMode::Tcx,
            TcAttachMode::Auto => TcMode::Clsact,
        };
        let (tc_link, created_clsact) = self.attach_tc(ifname, tc)?;
        let xdp_attached = match xdp {
            XdpAttachMode::Native => self.attach_xdp(ifname, AttachedMode::Native),
            XdpAttachMode::Generic => self.attach_xdp(ifname, AttachedMode::Generic),
            XdpAttachMode::Auto => match self.attach_xdp(ifname, AttachedMode::Native) {
                Err(e @ DataplaneError::Attach { .. }) if unknown_interface(&e) => Err(e),
                Err(native) => {
                    tracing::warn!(
                        link = ifname,
                        reason = %error_chain(&native),
                        "native XDP is not available, falling back to generic XDP (slower)"
                    );
                    self.attach_xdp(ifname, AttachedMode::Generic)
                }
                ok => ok,
            },
        };
        let (xdp_link, xdp_mode) = match xdp_attached {
            Ok(attached) => attached,
            Err(e) => {
                drop(tc_link);
                remove_clsact(ifname, created_clsact);
                return Err(e);
            }
        };
        let mode = Attached { xdp: xdp_mode, tc };
        self.attachment = Some(Attachment {
            xdp: xdp_link,
            tc: tc_link,
            ifname: ifname.to_owned(),
            mode,
            created_clsact,
            pinned_in: None,
        });
        tracing::info!(link = ifname, xdp = xdp_mode.as_str(), tc = tc.as_str(), "programs attached");
        Ok(mode)
    }

    fn attach_xdp(
        &mut self,
        ifname: &str,
        mode: AttachedMode,
    ) -> Result<(XdpLink, AttachedMode), DataplaneError> {
        let attach_error = |source| DataplaneError::Attach {
            hook: XDP_HOOK,
            link: ifname.to_owned(),
            mode: mode.as_str(),
            source: Box::new(source),
        };
        let xdp = self.xdp_mut()?;
        let id = xdp.attach(ifname, mode.xdp_mode()).map_err(attach_error)?;
        let link = xdp.take_link(id).map_err(attach_error)?;
        Ok((link, mode))
    }

    /// Attaches the egress program; for clsact, also tells whether the qdisc was
    /// created here (its link index).
    fn attach_tc(
        &mut self,
        ifname: &str,
        mode: TcMode,
    ) -> Result<(SchedClassifierLink, Option<u32>), DataplaneError> {
        let attach_error = |source| DataplaneError::Attach {
            hook: TC_HOOK,
            link: ifname.to_owned(),
            mode: mode.as_str(),
            source: Box::new(source),
        };
        let (options, created) = match mode {
            TcMode::Tcx => (TcAttachOptions::TcxOrder(LinkOrder::default()), None),
            TcMode::Clsact => {
                let qdisc_error = |source| DataplaneError::Qdisc { link: ifname.to_owned(), source };
                let ifindex = qdisc::ifindex(ifname).map_err(qdisc_error)?;
                let created = qdisc::add_clsact(ifindex).map_err(qdisc_error)?;
                (TcAttachOptions::Netlink(NlOptions::default()), created.then_some(ifindex))
            }
        };
        let tc = self.tc_mut()?;
        let attached = tc
            .attach_with_options(ifname, TcAttachType::Egress, options)
            .and_then(|id| tc.take_link(id))
            .map_err(attach_error);
        match attached {
            Ok(link) => Ok((link, created)),
            Err(e) => {
                remove_clsact(ifname, created);
                Err(e)
            }
        }
    }

    /// The link and modes the programs are attached with, if they are.
    pub fn attached(&self) -> Option<(&str, Attached)> {
        self.attachment.as_ref().map(|a| (a.ifname.as_str(), a.mode))
    }

    /// Replaces this attached pair by `next`, a new generation for the same link,
    /// atomically per hook: the kernel switches the program behind each hook in one
    /// step, so no packet sees no program or a partly filled map. Afterwards `self`
    /// is the new generation (attached) and the previous one is returned, detached,
    /// so that its last counters can still be read.
    ///
    /// If the kernel refuses a switch, the previous programs are put back on both
    /// hooks (with a short gap where a hook had lost its program; this only happens
    /// when the kernel lacks link updates) and the error is returned.
    pub fn replace(&mut self, mut next: LoadedProgram) -> Result<LoadedProgram, DataplaneError> {
        if let Some(a) = &next.attachment {
            return Err(DataplaneError::AlreadyAttached(a.ifname.clone()));
        }
        // Fail before touching the link if the new generation lacks a program.
        next.xdp_mut()?;
        next.tc_mut()?;
        let Attachment { xdp, tc, ifname, mode, created_clsact, pinned_in } =
            self.attachment.take().ok_or(DataplaneError::NotAttached)?;
        let clsact_id = clsact_id(&tc);
        let tc = match move_tc(&mut next, tc) {
            Ok(link) => link,
            Err(source) => {
                tracing::error!(link = %ifname, error = %error_chain(&source), "replacing the TC program failed; putting the previous one back");
                self.restore(&ifname, mode, created_clsact, Some(xdp), None, clsact_id);
                self.set_pinned(pinned_in);
                return Err(DataplaneError::Replace { hook: TC_HOOK, link: ifname, source });
            }
        };
        let xdp = match move_xdp(&mut next, xdp) {
            Ok(link) => link,
            Err(source) => {
                tracing::error!(link = %ifname, error = %error_chain(&source), "replacing the XDP program failed; putting the previous programs back");
                // The TC hook runs `next` now: move it back to this generation.
                let tc = move_tc(self, tc).ok();
                self.restore(&ifname, mode, created_clsact, None, tc, clsact_id);
                self.set_pinned(pinned_in);
                return Err(DataplaneError::Replace { hook: XDP_HOOK, link: ifname, source });
            }
        };
        next.attachment =
            Some(Attachment { xdp, tc, ifname: ifname.clone(), mode, created_clsact, pinned_in });
        let previous = std::mem::replace(self, next);
        tracing::info!(link = %ifname, "programs replaced");
        Ok(previous)
    }

    /// After a failed replacement: attaches this generation again on the hooks whose
    /// link was lost, keeping those that survived.
    fn restore(
        &mut self,
        ifname: &str,
        mode: Attached,
        created_clsact: Option<u32>,
        xdp: Option<XdpLink>,
        tc: Option<SchedClassifierLink>,
        clsact_id: Option<(u16, TcHandle)>,
    ) {
        let tc = tc.or_else(|| {
            // A clsact filter survives a failed in-place replacement: adopt it.
            let (priority, handle) = clsact_id?;
            SchedClassifierLink::attached(ifname, TcAttachType::Egress, priority, handle, None).ok()
        });
        let tc = match tc {
            Some(link) => Some(link),
            None => self.attach_tc(ifname, mode.tc).map(|(link, _)| link).inspect_err(|e| {
                tracing::error!(link = ifname, error = %error_chain(e), "re-attaching the previous TC program failed");
            }).ok(),
        };
        let xdp = match xdp {
            Some(link) => Some(link),
            None => self.attach_xdp(ifname, mode.xdp).map(|(link, _)| link).inspect_err(|e| {
                tracing::error!(link = ifname, error = %error_chain(e), "re-attaching the previous XDP program failed");
            }).ok(),
        };
        if let (Some(xdp), Some(tc)) = (xdp, tc) {
            self.attachment = Some(Attachment {
                xdp,
                tc,
                ifname: ifname.to_owned(),
                mode,
                created_clsact,
                pinned_in: None,
            });
        }
    }

    fn set_pinned(&mut self, pinned_in: Option<std::path::PathBuf>) {
        if let Some(a) = self.attachment.as_mut() {
            a.pinned_in = pinned_in;
        }
    }

    /// Detaches both programs from their link (ingress first) and deletes the clsact
    /// qdisc if it was created for them; pinned links are unpinned first.
    pub fn detach(mut self) -> Result<(), DataplaneError> {
        let Attachment { xdp, tc, ifname, created_clsact, pinned_in, .. } =
            self.attachment.take().ok_or(DataplaneError::NotAttached)?;
        if let Some(dir) = &pinned_in {
            crate::pins::unpin_links(dir)?;
        }
        let xdp_result = xdp.detach();
        let tc_result = tc.detach();
        let qdisc_result = match created_clsact {
            Some(ifindex) => qdisc::delete_clsact(ifindex),
            None => Ok(()),
        };
        xdp_result.map_err(|source| DataplaneError::Detach {
            hook: XDP_HOOK,
            link: ifname.clone(),
            source,
        })?;
        tc_result.map_err(|source| DataplaneError::Detach { hook: TC_HOOK, link: ifname.clone(), source })?;
        qdisc_result.map_err(|source| DataplaneError::Qdisc { link: ifname.clone(), source })?;
        tracing::info!(link = %ifname, "programs detached");
        Ok(())
    }
}

/// Priority and handle of a clsact filter (to adopt it again).
fn clsact_id(link: &SchedClassifierLink) -> Option<(u16, TcHandle)> {
    Some((link.priority().ok()?, link.handle().ok()?))
}

pub(crate) fn move_xdp(to: &mut LoadedProgram, link: XdpLink) -> Result<XdpLink, ProgramError> {
    let xdp = to.xdp_mut().map_err(|_| ProgramError::NotLoaded)?;
    let id = xdp.attach_to_link(link)?;
    xdp.take_link(id)
}

pub(crate) fn move_tc(
    to: &mut LoadedProgram,
    link: SchedClassifierLink,
) -> Result<SchedClassifierLink, ProgramError> {
    let tc = to.tc_mut().map_err(|_| ProgramError::NotLoaded)?;
    let id = tc.attach_to_link(link)?;
    tc.take_link(id)
}

fn remove_clsact(ifname: &str, created: Option<u32>) {
    if let Some(ifindex) = created
        && let Err(e) = qdisc::delete_clsact(ifindex)
    {
        tracing::warn!(link = ifname, error = %e, "cannot delete the clsact qdisc created for sgmirror");
    }
}

impl Drop for LoadedProgram {
    fn drop(&mut self) {
        // Dropping the links detaches them; a qdisc created for them goes with them.
        // Pinned links stay attached: only the descriptors are closed.
        if let Some(attachment) = self.attachment.take() {
            let created = attachment.created_clsact;
            let ifname = attachment.ifname.clone();
            drop(attachment);
            remove_clsact(&ifname, created);
        }
    }
}
