//! Where a run starts from: adopting the links an earlier agent pinned, refusing (or,
//! when told to, replacing) an XDP program sgmirror did not attach, clearing pins
//! whose link is gone, and attaching fresh links in the best XDP mode the link
//! allows (with the reason in the log when it is not native).

use std::path::Path;

use anyhow::{Context, Result, bail};
use sgmirror_dataplane::{
    Attached, AttachedMode, LoadedProgram, TcAttachMode, TcMode, XdpAttachMode, has_pinned_links,
    pinned_links, unpin_links,
};

use crate::{bindings::Binding, bpffs, preflight, xdp_query};

/// What to do on one link, decided before any link is touched.
#[derive(Debug)]
pub enum Plan {
    /// An earlier agent's links are pinned and attached: swap our programs in.
    Adopt { xdp: AttachedMode },
    /// Nothing of ours there: attach, first removing `foreign` (allowed by the flag).
    Fresh { foreign: Option<xdp_query::XdpProgram> },
}

/// How a link ended up enforced.
#[derive(Debug, Clone)]
pub struct Placement {
    pub attached: Attached,
    /// Why the XDP program is not in native mode, when it is not.
    pub fallback_reason: Option<String>,
    /// The links of an earlier agent were adopted.
    pub adopted: bool,
}

/// Decides what to do on `binding`'s link, whose pin directory is `dir`. Stale pins
/// (their program no longer on the link) are removed with a warning. A foreign XDP
/// program is an error unless `replace_foreign` is set.
pub fn check_link(binding: &Binding, dir: &Path, replace_foreign: bool) -> Result<Plan> {
    let link = &binding.link.name;
    let current = xdp_query::attached(link)?;
    if has_pinned_links(dir) {
        let pinned = pinned_links(dir);
        match (&current, pinned.xdp_program, pinned.tcx_program) {
            (Some(p), Some(id), Some(_)) if p.id == id => {
                let xdp = if p.mode == "native" { AttachedMode::Native } else { AttachedMode::Generic };
                return Ok(Plan::Adopt { xdp });
            }
            _ => {
                tracing::warn!(
                    %link,
                    dir = %dir.display(),
                    "pinned links there no longer enforce on the link; removing them"
                );
                unpin_links(dir)?;
                bpffs::remove_link_dir(dir)?;
            }
        }
    }
    match current {
        Some(p) if !replace_foreign => bail!(
            "link {link} already has an XDP {p} that sgmirror did not attach; refusing to replace it. \
             Remove it, or run with --replace-foreign-xdp to replace it"
        ),
        foreign => Ok(Plan::Fresh { foreign }),
    }
}

/// Carries out `plan` for `program` on `binding`'s link; fresh links are pinned in
/// `dir` when their egress hook is TCX (a clsact filter cannot be pinned).
pub fn place(
    program: &mut LoadedProgram,
    binding: &Binding,
    dir: &Path,
    plan: Plan,
    xdp: XdpAttachMode,
    tc: TcAttachMode,
) -> Result<Placement> {
    let link = &binding.link.name;
    let foreign = match plan {
        Plan::Adopt { xdp: pinned } => {
            let wanted = match xdp {
                XdpAttachMode::Native => Some(AttachedMode::Native),
                XdpAttachMode::Generic => Some(AttachedMode::Generic),
                XdpAttachMode::Auto => None,
            };
            if wanted.is_some_and(|w| w != pinned) {
                tracing::warn!(
                    %link,
                    pinned = pinned.as_str(),
                    "the pinned XDP link keeps its mode (changing it would leave a gap); \
                     to change it, stop the agent, run `sgmirror detach --link {link}` and start again"
                );
            }
            let xdp = pinned;
            let attached = program
                .adopt(dir, link, xdp)
                .with_context(|| format!("adopting the pinned links of {link}"))?;
            tracing::info!(%link, "adopted the pinned enforcement of an earlier agent: programs replaced atomically");
            return Ok(Placement { attached, fallback_reason: None, adopted: true });
        }
        Plan::Fresh { foreign } => foreign,
    };
    if let Some(p) = foreign {
        tracing::warn!(%link, "replacing the foreign XDP {p} (--replace-foreign-xdp)");
        xdp_query::remove(link, &p)?;
    }
    let obstacle = preflight::native_xdp_obstacle(&preflight::read_facts(Path::new("/sys/class/net"), link));
    let attach = |program: &mut LoadedProgram, mode| {
        program.attach(link, mode, tc).with_context(|| format!("attaching to {link}"))
    };
    let (attached, fallback_reason) = match (xdp, obstacle) {
        (XdpAttachMode::Native, Some(reason)) => bail!("native XDP is not possible on {link}: {reason}"),
        (XdpAttachMode::Auto, Some(reason)) => {
            tracing::warn!(%link, %reason, "using generic XDP (slower): native XDP is not possible");
            (attach(program, XdpAttachMode::Generic)?, Some(reason))
        }
        (XdpAttachMode::Auto, None) => match attach(program, XdpAttachMode::Native) {
            Ok(attached) => (attached, None),
            Err(e) if !binding_exists(link) => return Err(e),
            Err(e) => {
                let reason = format!("the kernel refused native XDP: {e:#}");
                tracing::warn!(%link, %reason, "falling back to generic XDP (slower)");
                (attach(program, XdpAttachMode::Generic)?, Some(reason))
            }
        },
        (mode, _) => (attach(program, mode)?, None),
    };
    if attached.tc == TcMode::Tcx {
        program.pin_links(dir).with_context(|| format!("pinning the links of {link}"))?;
    } else {
        tracing::warn!(%link, "egress uses a clsact filter, which cannot be pinned: enforcement ends with the agent");
    }
    Ok(Placement { attached, fallback_reason, adopted: false })
}

fn binding_exists(link: &str) -> bool {
    Path::new("/sys/class/net").join(link).exists()
}

/// Removes the pin directories of this network namespace whose link is gone (the
/// kernel detached their links with the device; only the pins were left).
pub fn remove_stale(root: &Path) -> Result<()> {
    let prefix = bpffs::netns_prefix()?;
    let version_dir = bpffs::version_dir(root);
    let Ok(entries) = std::fs::read_dir(&version_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(ifindex) = name.strip_prefix(&prefix).and_then(|i| i.parse::<u32>().ok()) else { continue };
        if !ifindex_exists(ifindex) {
            tracing::warn!(dir = %entry.path().display(), "removing the pins of a link that no longer exists");
            unpin_links(&entry.path())?;
            bpffs::remove_link_dir(&entry.path())?;
        }
    }
    Ok(())
}

/// Whether a link with this index exists in this network namespace.
pub fn ifindex_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into the buffer.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}
