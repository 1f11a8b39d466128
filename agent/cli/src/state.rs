//! What `sgmirror status` reads while the daemon may be down: one JSON record per
//! enforced link, written atomically (temporary file, then rename) at every apply and
//! refresh, and the daemon's pid file.
//!
//! The kernel side (links, programs, counters) is pinned in bpffs; this is the part
//! the kernel does not know: which ENI, which policy generation and hash, when, and
//! how the source was doing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One enforced link, as last written by the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkRecord {
    pub interface_id: String,
    pub link: String,
    pub ifindex: u32,
    /// Inode of the network namespace of the link.
    pub netns: u64,
    /// The link's pin directory in bpffs.
    pub pin_dir: PathBuf,
    /// `native` or `generic`.
    pub xdp_mode: String,
    /// Why native XDP was not used, when it was not.
    pub xdp_fallback_reason: Option<String>,
    /// `tcx` or `clsact`.
    pub tc_mode: String,
    /// `enforce` or `audit`.
    pub mode: String,
    /// Policy generation in force (counts on across agent restarts).
    pub generation: u64,
    /// Stable hash of the compiled policy in force.
    pub policy_hash: String,
    /// When the policy in force was applied (seconds since the epoch).
    pub applied_unix: u64,
    /// Last time the source was read and applied without error.
    pub source_last_success_unix: u64,
    /// Failures of the source by kind since the agent started.
    pub source_errors: std::collections::BTreeMap<String, u64>,
    /// The agent that wrote this record.
    pub agent_pid: u32,
    /// When this record was written.
    pub written_unix: u64,
}

/// The record file of the link whose pin directory is `pin_dir` (same name).
pub fn record_path(state_dir: &Path, pin_dir: &Path) -> PathBuf {
    let name = pin_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    state_dir.join("links").join(format!("{name}.json"))
}

/// Writes `record` atomically: a reader sees the old record or the new one.
pub fn write_record(state_dir: &Path, record: &LinkRecord) -> Result<()> {
    let path = record_path(state_dir, &record.pin_dir);
    let dir = path.parent().unwrap_or(state_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// The record of a pin directory, if one was written.
pub fn read_record(state_dir: &Path, pin_dir: &Path) -> Option<LinkRecord> {
    let text = std::fs::read_to_string(record_path(state_dir, pin_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Removes the record of a pin directory (nothing enforced there any more).
pub fn remove_record(state_dir: &Path, pin_dir: &Path) {
    let _ = std::fs::remove_file(record_path(state_dir, pin_dir));
}

fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.pid")
}

/// Takes the state directory's lock, held until the returned file is closed (also
/// by a crash): two agents on one host would swap their programs over each other.
pub fn lock(state_dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let path = state_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = running_pid(state_dir).map_or_else(|| "?".to_owned(), |p| p.to_string());
        anyhow::bail!(
            "another sgmirror agent (pid {pid}) runs with state directory {}; stop it first \
             (its pinned enforcement is adopted by the next agent)",
            state_dir.display()
        );
    }
    Ok(file)
}

/// Records this process as the running agent.
pub fn write_pid(state_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let path = pid_path(state_dir);
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes the pid file if it names this process.
pub fn remove_pid(state_dir: &Path) {
    if running_pid(state_dir) == Some(std::process::id()) {
        let _ = std::fs::remove_file(pid_path(state_dir));
    }
}

/// The pid of the agent, if its pid file names a live `sgmirror` process.
pub fn running_pid(state_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_path(state_dir)).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.trim().starts_with("sgmirror").then_some(pid)
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    unix(std::time::SystemTime::now())
}

/// Seconds since the epoch of `t`.
pub fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `unix` seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// FNV-1a (64 bits) of `bytes`, as `fnv1a64:<hex>`: stable across builds and hosts,
/// enough to tell policies apart (not a security measure).
pub fn policy_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_839_757), "2026-11-28T04:22:37Z");
    }

    #[test]
    fn the_policy_hash_is_stable_and_tells_inputs_apart() {
        assert_eq!(policy_hash(b""), "fnv1a64:cbf29ce484222325");
        assert_eq!(policy_hash(b"a"), "fnv1a64:af63dc4c8601ec8c");
        assert_ne!(policy_hash(b"ab"), policy_hash(b"ba"));
    }

    #[test]
    fn records_round_trip_and_replace_atomically() {
        let dir = std::env::temp_dir().join(format!("sgm-state-test-{}", std::process::id()));
        let record = LinkRecord {
            interface_id: "eni-1".into(),
            link: "eth0".into(),
            ifindex: 2,
            netns: 4026531840,
            pin_dir: PathBuf::from("/sys/fs/bpf/sgmirror/v1/netns4026531840-if2"),
            xdp_mode: "generic".into(),
            xdp_fallback_reason: Some("MTU 9001 > 3498".into()),
            tc_mode: "tcx".into(),
            mode: "enforce".into(),
            generation: 3,
            policy_hash: policy_hash(b"x"),
            applied_unix: 1,
            source_last_success_unix: 2,
            source_errors: Default::default(),
            agent_pid: 7,
            written_unix: 3,
        };
        write_record(&dir, &record).unwrap();
        let mut next = record.clone();
        next.generation = 4;
        write_record(&dir, &next).unwrap();
        assert_eq!(read_record(&dir, &record.pin_dir), Some(next));
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("links")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files are left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
