//! The BPF filesystem, where the state that successive program generations of a link
//! share (counters, flow and fragment tables) is pinned.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

const BPFFS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts bpffs at `/sys/fs/bpf` when `root` lies under it and nothing is mounted
/// there yet (hosts without systemd), then creates `root`.
pub fn prepare(root: &Path) -> Result<()> {
    let mount_point = Path::new("/sys/fs/bpf");
    if root.starts_with(mount_point) && !is_bpffs(mount_point) {
        std::fs::create_dir_all(mount_point).ok();
        let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        // SAFETY: plain mount(2) with NUL-terminated strings and no data.
        let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            bail!("mounting bpffs at /sys/fs/bpf: {}", std::io::Error::last_os_error());
        }
        tracing::info!("mounted bpffs at /sys/fs/bpf");
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    if !is_bpffs(root) {
        bail!("{} is not on a BPF filesystem (bpffs)", root.display());
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs(2) into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPFFS_MAGIC
}

/// The directory of one link's shared state: the layout version, then the network
/// namespace and ifindex, so that links of the same name in two namespaces never
/// share a directory.
pub fn link_dir(root: &Path, ifindex: u32) -> Result<PathBuf> {
    let netns = netns_inode()?;
    Ok(version_dir(root).join(format!("netns{netns}-if{ifindex}")))
}

/// The directory of the current layout version under `root`.
pub fn version_dir(root: &Path) -> PathBuf {
    root.join(format!("v{}", sgmirror_common::LAYOUT_VERSION))
}

/// Inode of this process's network namespace.
pub fn netns_inode() -> Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?.ino())
}

/// `netns<inode>-if`: how the link directories of this namespace start.
pub fn netns_prefix() -> Result<String> {
    Ok(format!("netns{}-if", netns_inode()?))
}

/// Removes a link's pinned state (the pins, then the directory).
pub fn remove_link_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let listing = || format!("listing {}", dir.display());
        for entry in std::fs::read_dir(dir).with_context(listing)? {
            let pin = entry.with_context(listing)?.path();
            std::fs::remove_file(&pin).with_context(|| format!("removing {}", pin.display()))?;
        }
        std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}
