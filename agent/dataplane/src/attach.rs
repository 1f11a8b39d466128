//! Attaching a loaded program to a link, replacing it with a new generation in one
//! step, and detaching it.
//!
//! The program's link (a `bpf_link` where the kernel has them) is owned by the
//! [`LoadedProgram`], so dropping the program detaches it, and a replacement moves
//! the link from one generation to the next: the kernel swaps the program behind
//! the link atomically (`BPF_LINK_UPDATE`), so every packet runs either the old
//! program with its complete maps or the new one with its complete maps.

use aya::programs::{Link as _, ProgramError, XdpMode, xdp::XdpLink};
use serde::Serialize;

use crate::{DataplaneError, LoadedProgram};

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

/// A program's attachment to one link.
#[derive(Debug)]
pub(crate) struct Attachment {
    link: XdpLink,
    ifname: String,
    mode: AttachedMode,
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

impl LoadedProgram {
    /// Attaches the program to the link `ifname` and returns the mode it runs in.
    ///
    /// A program is attached to at most one link; it stays attached until
    /// [`LoadedProgram::detach`], a [`LoadedProgram::replace`], or its drop.
    pub fn attach(&mut self, ifname: &str, mode: XdpAttachMode) -> Result<AttachedMode, DataplaneError> {
        if let Some(a) = &self.attachment {
            return Err(DataplaneError::AlreadyAttached(a.ifname.clone()));
        }
        let used = match mode {
            XdpAttachMode::Native => self.attach_in(ifname, AttachedMode::Native)?,
            XdpAttachMode::Generic => self.attach_in(ifname, AttachedMode::Generic)?,
            XdpAttachMode::Auto => match self.attach_in(ifname, AttachedMode::Native) {
                Ok(used) => used,
                Err(e @ DataplaneError::Attach { source: ProgramError::UnknownInterface { .. }, .. }) => {
                    return Err(e);
                }
                Err(native) => {
                    tracing::warn!(
                        link = ifname,
                        reason = %error_chain(&native),
                        "native XDP is not available, falling back to generic XDP (slower)"
                    );
                    self.attach_in(ifname, AttachedMode::Generic)?
                }
            },
        };
        tracing::info!(link = ifname, xdp = used.as_str(), "XDP program attached");
        Ok(used)
    }

    fn attach_in(&mut self, ifname: &str, mode: AttachedMode) -> Result<AttachedMode, DataplaneError> {
        let attach_error =
            |source| DataplaneError::Attach { link: ifname.to_owned(), mode: mode.as_str(), source };
        let xdp = self.xdp_mut()?;
        let id = xdp.attach(ifname, mode.xdp_mode()).map_err(attach_error)?;
        let link = xdp.take_link(id).map_err(attach_error)?;
        self.attachment = Some(Attachment { link, ifname: ifname.to_owned(), mode });
        Ok(mode)
    }

    /// The link and mode the program is attached with, if it is.
    pub fn attached(&self) -> Option<(&str, AttachedMode)> {
        self.attachment.as_ref().map(|a| (a.ifname.as_str(), a.mode))
    }

    /// Replaces this attached program by `next`, a new generation for the same link,
    /// atomically: the kernel switches the program behind the link in one step, so
    /// no packet sees no program or a partly filled map. Afterwards `self` is the new
    /// generation (attached) and the previous one is returned, detached, so that its
    /// last counters can still be read.
    ///
    /// If the kernel refuses the switch, the previous program is attached again
    /// (with a short gap; this only happens when the kernel lacks link updates) and
    /// the error is returned.
    pub fn replace(&mut self, mut next: LoadedProgram) -> Result<LoadedProgram, DataplaneError> {
        if let Some(a) = &next.attachment {
            return Err(DataplaneError::AlreadyAttached(a.ifname.clone()));
        }
        // Fail before touching the link if the new generation has no program.
        next.xdp_mut()?;
        let Attachment { link, ifname, mode } = self.attachment.take().ok_or(DataplaneError::NotAttached)?;
        let xdp = next.xdp_mut()?;
        let swapped = xdp.attach_to_link(link).and_then(|id| xdp.take_link(id));
        match swapped {
            Ok(link) => {
                next.attachment = Some(Attachment { link, ifname: ifname.clone(), mode });
                let previous = std::mem::replace(self, next);
                tracing::info!(link = %ifname, "XDP program replaced");
                Ok(previous)
            }
            Err(source) => {
                tracing::error!(link = %ifname, error = %error_chain(&source), "replacing the XDP program failed; re-attaching the previous one");
                if let Err(again) = self.attach_in(&ifname, mode) {
                    tracing::error!(link = %ifname, error = %error_chain(&again), "re-attaching the previous XDP program failed");
                }
                Err(DataplaneError::Replace { link: ifname, source })
            }
        }
    }

    /// Detaches the program from its link and unloads it.
    pub fn detach(mut self) -> Result<(), DataplaneError> {
        let Attachment { link, ifname, .. } = self.attachment.take().ok_or(DataplaneError::NotAttached)?;
        link.detach().map_err(|source| DataplaneError::Detach { link: ifname.clone(), source })?;
        tracing::info!(link = %ifname, "XDP program detached");
        Ok(())
    }
}
