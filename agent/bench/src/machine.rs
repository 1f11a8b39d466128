//! What the results were measured on: CPU model, CPU count, kernel, commit.

use std::process::Command;

use serde::Serialize;

/// The machine and source a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `lscpu`'s model name.
    pub cpu_model: String,
    /// CPUs online (`nproc`).
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `git rev-parse HEAD` of the checkout, with `-dirty` when it has changes.
    pub commit: String,
    /// Seconds since the epoch when the run started.
    pub started_unix: u64,
    /// The CPUs this process may run on (the benchmark wants exactly one).
    pub affinity: Vec<usize>,
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cpu_model() -> String {
    output("lscpu", &[])
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_owned()))
        })
        .or_else(|| {
            std::fs::read_to_string("/proc/cpuinfo").ok()?.lines().find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)).map(|m| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn commit() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let head =
        output("git", &["-C", root, "rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = output("git", &["-C", root, "status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

/// The CPUs the calling thread may run on.
pub fn affinity() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET reads the set filled above.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

impl Machine {
    /// Describes this machine now.
    pub fn describe() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let cpus = output("nproc", &["--all"]).and_then(|s| s.parse().ok()).unwrap_or(cpus);
        Self {
            cpu_model: cpu_model(),
            cpus,
            kernel: output("uname", &["-r"]).unwrap_or_else(|| "unknown".into()),
            commit: commit(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            affinity: affinity(),
        }
    }
}
