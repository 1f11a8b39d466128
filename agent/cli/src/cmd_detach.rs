//! `sgmirror detach`: removes what sgmirror pinned, so the kernel detaches its
//! programs (once no agent holds them any more).

use std::path::PathBuf;

use anyhow::{Context, Result};
use sgmirror_dataplane::unpin_links;

use crate::{args::DetachArgs, bpffs, links, state};

pub fn run(args: &DetachArgs) -> Result<()> {
    let prefix = bpffs::netns_prefix()?;
    let version_dir = bpffs::version_dir(&args.pin_root);
    let dirs: Vec<PathBuf> = match &args.link {
        Some(name) => {
            let link = links::by_name(name).with_context(|| format!("--link {name}"))?;
            vec![bpffs::link_dir(&args.pin_root, link.ifindex)?]
        }
        None => std::fs::read_dir(&version_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut detached = 0;
    for dir in dirs.iter().filter(|d| d.exists()) {
        let name = state::read_record(&args.state_dir, dir).map(|r| r.link);
        let unpinned = unpin_links(dir)?;
        bpffs::remove_link_dir(dir)?;
        state::remove_record(&args.state_dir, dir);
        if unpinned {
            detached += 1;
            println!("detached: {} (pins in {} removed)", name.as_deref().unwrap_or("?"), dir.display());
        }
    }
    for parent in [version_dir.as_path(), args.pin_root.as_path()] {
        let _ = std::fs::remove_dir(parent);
    }
    if detached == 0 {
        println!("nothing to detach: no sgmirror link is pinned under {}", args.pin_root.display());
    }
    if let Some(pid) = state::running_pid(&args.state_dir) {
        eprintln!(
            "sgmirror: warning: the agent (pid {pid}) still runs and holds its links until it exits; stop it too"
        );
    }
    Ok(())
}
