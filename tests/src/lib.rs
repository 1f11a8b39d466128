//! Harness for sgmirror's end-to-end tests: throw-away network namespaces joined to
//! the root namespace by veth pairs, peers that send real traffic from inside them,
//! and the real `sgmirror` binary enforcing on the root end.
//!
//! The agent runs in the root namespace (a process started with `ip netns exec` sees
//! a remounted `/sys`, and bpffs pins it makes die with it); peers live in namespaces.
//! Everything a test creates is removed by `Drop`, also when the test fails.

pub mod agent;
pub mod aws;
pub mod foreign;
pub mod icmp;
pub mod lab;
pub mod notify;
pub mod peer;
pub mod probe;
pub mod snapshots;
pub mod tempdir;

use std::{path::PathBuf, process::Command, sync::OnceLock};

/// The `sgmirror` binary of this workspace, built (debug) on first use.
pub fn sgmirror_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("SGMIRROR_BIN") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "sgmirror"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build -p sgmirror");
        assert!(status.success(), "cargo build -p sgmirror failed");
        target_dir().join("debug").join("sgmirror")
    })
    .clone()
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// A name unique to this process and call, short enough for a link name (≤ 15 bytes)
/// once a 4-byte prefix is added.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:x}", std::process::id() % 0xfffff)
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
