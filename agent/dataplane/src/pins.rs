//! Links pinned in bpffs, so that enforcement outlives the agent process.
//!
//! A link's XDP and TCX `bpf_link`s are pinned next to its shared maps (see
//! [`crate::LoadOptions::shared_pin_dir`]). While a pin exists the kernel keeps the
//! link and its program attached, whatever happens to the process that created it
//! (SIGTERM, a crash, `kill -9`). A later agent opens the pins and *adopts* the links:
//! `BPF_LINK_UPDATE` swaps its own program in, atomically, so the hook never runs
//! without a program and never runs a second one. Removing the pins (and closing
//! every descriptor) detaches.
//!
//! Only `bpf_link`s can be pinned: XDP always is one on the kernels TCX needs, a
//! clsact filter is not, so pinning needs the TCX egress mode.

use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};

use crate::{Attached, DataplaneError, LoadedProgram, TcMode, attach::Attachment};

/// File name of the pinned XDP link in a link's pin directory.
pub const XDP_LINK_PIN: &str = "link_xdp";
/// File name of the pinned TCX egress link in a link's pin directory.
pub const TCX_LINK_PIN: &str = "link_tcx_egress";

/// What a link's pin directory holds, as the kernel sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedLinks {
    /// Id of the program behind the pinned XDP link (0 when the link is defunct).
    pub xdp_program: Option<u32>,
    /// Id of the program behind the pinned TCX link.
    pub tcx_program: Option<u32>,
}

fn pin_error(path: &Path, what: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Pin { path: path.to_path_buf(), what: what.to_string() }
}

fn open(path: &Path) -> Result<FdLink, DataplaneError> {
    PinnedLink::from_pin(path).map(FdLink::from).map_err(|e| pin_error(path, format!("opening: {e}")))
}

fn program_of(path: &Path) -> Option<u32> {
    if !path.exists() {
        return None;
    }
    open(path).ok()?.info().ok().map(|i| i.program_id())
}

/// The programs behind the links pinned in `dir` (none when nothing is pinned).
pub fn pinned_links(dir: &Path) -> PinnedLinks {
    PinnedLinks {
        xdp_program: program_of(&dir.join(XDP_LINK_PIN)),
        tcx_program: program_of(&dir.join(TCX_LINK_PIN)),
    }
}

/// Whether `dir` holds a pinned XDP link.
pub fn has_pinned_links(dir: &Path) -> bool {
    dir.join(XDP_LINK_PIN).exists() || dir.join(TCX_LINK_PIN).exists()
}

/// Removes the link pins of `dir`; the links detach once no process holds them any
/// more. Returns whether there was anything to remove.
pub fn unpin_links(dir: &Path) -> Result<bool, DataplaneError> {
    let mut removed = false;
    for name in [XDP_LINK_PIN, TCX_LINK_PIN] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(pin_error(&path, format!("removing: {e}"))),
        }
    }
    Ok(removed)
}

impl LoadedProgram {
    /// Pins the attached links in `dir`, so that they stay attached after this
    /// process ends. Needs TCX egress; the directory must be on bpffs.
    pub fn pin_links(&mut self, dir: &Path) -> Result<(), DataplaneError> {
        let a = self.attachment.as_ref().ok_or(DataplaneError::NotAttached)?;
        if a.mode.tc != TcMode::Tcx {
            return Err(pin_error(dir, "a clsact filter cannot be pinned (TCX is needed)"));
        }
        if a.pinned_in.is_some() {
            return Ok(());
        }
        let Attachment { xdp, tc, ifname, mode, created_clsact, .. } =
            self.attachment.take().ok_or(DataplaneError::NotAttached)?;
        let xdp_path = dir.join(XDP_LINK_PIN);
        let tc_path = dir.join(TCX_LINK_PIN);
        // A TCX link is always a bpf_link; so is XDP on every kernel that has TCX.
        let tc_fd = FdLink::try_from(tc).map_err(|e| pin_error(&tc_path, e))?;
        let tc_fd = FdLink::from(tc_fd.pin(&tc_path).map_err(|e| pin_error(&tc_path, e))?);
        let tc = SchedClassifierLink::try_from(tc_fd).map_err(|e| pin_error(&tc_path, e))?;
        let xdp_fd = FdLink::try_from(xdp).map_err(|e| pin_error(&xdp_path, e))?;
        let xdp_fd = FdLink::from(xdp_fd.pin(&xdp_path).map_err(|e| pin_error(&xdp_path, e))?);
        let xdp = XdpLink::try_from(xdp_fd).map_err(|e| pin_error(&xdp_path, e))?;
        self.attachment =
            Some(Attachment { xdp, tc, ifname, mode, created_clsact, pinned_in: Some(dir.to_path_buf()) });
        tracing::info!(dir = %dir.display(), "links pinned");
        Ok(())
    }

    /// Adopts the links pinned in `dir` for link `ifname`: swaps this generation's
    /// programs in with `BPF_LINK_UPDATE` (egress first, as [`LoadedProgram::attach`]
    /// does), so the hooks switch from the old programs to these in one step each.
    /// `xdp` is the mode the pinned XDP link was created with (the kernel keeps it).
    pub fn adopt(
        &mut self,
        dir: &Path,
        ifname: &str,
        xdp: crate::AttachedMode,
    ) -> Result<Attached, DataplaneError> {
        if let Some(a) = &self.attachment {
            return Err(DataplaneError::AlreadyAttached(a.ifname.clone()));
        }
        self.xdp_mut()?;
        self.tc_mut()?;
        let xdp_path = dir.join(XDP_LINK_PIN);
        let tc_path = dir.join(TCX_LINK_PIN);
        let tc_link = SchedClassifierLink::try_from(open(&tc_path)?).map_err(|e| pin_error(&tc_path, e))?;
        let xdp_link = XdpLink::try_from(open(&xdp_path)?).map_err(|e| pin_error(&xdp_path, e))?;
        let tc_link = crate::attach::move_tc(self, tc_link).map_err(|source| DataplaneError::Replace {
            hook: "TC egress",
            link: ifname.to_owned(),
            source,
        })?;
        let xdp_link = crate::attach::move_xdp(self, xdp_link).map_err(|source| DataplaneError::Replace {
            hook: "XDP",
            link: ifname.to_owned(),
            source,
        })?;
        let mode = Attached { xdp, tc: TcMode::Tcx };
        self.attachment = Some(Attachment {
            xdp: xdp_link,
            tc: tc_link,
            ifname: ifname.to_owned(),
            mode,
            created_clsact: None,
            pinned_in: Some(dir.to_path_buf()),
        });
        tracing::info!(link = ifname, dir = %dir.display(), "adopted the pinned links");
        Ok(mode)
    }

    /// Where the links are pinned, if they are.
    pub fn pinned_in(&self) -> Option<&PathBuf> {
        self.attachment.as_ref()?.pinned_in.as_ref()
    }
}

/// The counters of a link, read from the `STATS` map pinned in `dir` (so they can
/// be read while no agent runs).
pub fn pinned_stats(dir: &Path) -> Result<crate::Stats, DataplaneError> {
    use aya::maps::{Map, MapData, PerCpuArray};
    use sgmirror_common::{Counter, STATS_LEN, names};
    let path = dir.join(names::STATS);
    let data = MapData::from_pin(&path).map_err(DataplaneError::map(names::STATS))?;
    let array: PerCpuArray<MapData, Counter> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(DataplaneError::map(names::STATS))?;
    let counters = (0..STATS_LEN)
        .map(|i| {
            let per_cpu = array.get(&i, 0).map_err(DataplaneError::map(names::STATS))?;
            Ok(per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
                packets: sum.packets + c.packets,
                bytes: sum.bytes + c.bytes,
            }))
        })
        .collect::<Result<Vec<_>, DataplaneError>>()?;
    Ok(crate::Stats::from_counters(counters))
}
