//! The demo's agent process: `sgmirror run` in the background, stopped with SIGTERM,
//! after which it has written its JSON summary. It pins under a pin root and keeps
//! state in a directory of its own (never the production `/sys/fs/bpf/sgmirror` and
//! `/var/lib/sgmirror`), and what it left enforced is detached when it is dropped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// How long the agent may take to say it enforces.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to detach and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running agent; dropping it stops it (SIGTERM, then SIGKILL).
pub struct Agent {
    child: Option<Child>,
    summary: PathBuf,
    lines: Receiver<String>,
    binary: PathBuf,
    pin_root: PathBuf,
    state_dir: PathBuf,
}

impl Agent {
    /// Starts `sgmirror run` enforcing `snapshot`'s `interface_id` on `link`, and waits
    /// until it says on stderr that it is enforcing.
    ///
    /// Call it from the thread that outlives the agent (the main thread): the agent is
    /// sent SIGTERM when the thread that started it ends.
    pub fn start(binary: &Path, snapshot: &Path, link: &str, interface_id: &str) -> Result<Agent> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let summary =
            std::env::temp_dir().join(format!("sgmirror-demo-summary-{}-{n}.json", std::process::id()));
        let _ = std::fs::remove_file(&summary);
        let pin_root = PathBuf::from(format!("/sys/fs/bpf/sgmirror-demo-{}-{n}", std::process::id()));
        let state_dir = std::env::temp_dir().join(format!("sgmirror-demo-state-{}-{n}", std::process::id()));
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            // Never an installed /etc/sgmirror/config.toml: only these flags.
            .args(["--config", "/dev/null"])
            .arg("--pin-root")
            .arg(&pin_root)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--snapshot")
            .arg(snapshot)
            .arg("--bind")
            .arg(format!("{link}={interface_id}"))
            .args(["--mode", "enforce", "--summary-json"])
            .arg(&summary)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe.
        unsafe {
            // Should the xtask die without running its guards (SIGKILL), the agent
            // stops too instead of enforcing on a link nobody cleans up.
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        eprintln!("[demo] $ {}", crate::util::describe(&cmd));
        let mut child = spawn(&mut cmd).with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                let _ = tx.send(line);
            }
        });
        let mut agent =
            Agent { child: Some(child), summary, lines, binary: binary.to_path_buf(), pin_root, state_dir };
        agent.wait_enforcing()?;
        Ok(agent)
    }

    fn wait_enforcing(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("enforcing") => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the agent did not say `enforcing` within {START_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    bail!("the agent exited before enforcing ({})", describe_status(status));
                }
            }
        }
    }

    /// Stops the agent with SIGTERM and returns the summary it wrote.
    pub fn stop(mut self) -> Result<Value> {
        let status = terminate(self.child.take().context("agent already stopped")?)?;
        if !status.success() {
            bail!("the agent exited with {status} after SIGTERM");
        }
        let text = std::fs::read_to_string(&self.summary)
            .with_context(|| format!("the agent wrote no summary to {}", self.summary.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("the agent's summary {} is not JSON", self.summary.display()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = terminate(child);
        }
        let _ = std::fs::remove_file(&self.summary);
        // A stopped agent leaves its policy pinned and enforced; the demo's is removed.
        if !self.pin_root.exists() {
            return;
        }
        let _ = Command::new(&self.binary)
            .arg("detach")
            .arg("--pin-root")
            .arg(&self.pin_root)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Spawns, retrying briefly on ETXTBSY: a binary written just before (the tests' stand-in
/// agents, or a build that just finished) can be held open for writing by a child that
/// another thread forked and has not yet exec'd.
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL.
fn terminate(mut child: Child) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill has no memory-safety preconditions; `pid` is our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("the agent did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed")
}

fn describe_status(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// An executable stand-in for `sgmirror`, removed on drop.
    struct FakeAgent(PathBuf);

    impl Drop for FakeAgent {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn fake_agent(name: &str, body: &str) -> FakeAgent {
        let path =
            std::env::temp_dir().join(format!("sgmirror-xtask-fake-agent-{name}-{}", std::process::id()));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeAgent(path)
    }

    #[test]
    fn start_waits_for_enforcing_and_stop_returns_the_summary() {
        let bin = fake_agent(
            "good",
            r#"out=""; while [ $# -gt 0 ]; do [ "$1" = --summary-json ] && out=$2; shift; done
trap 'echo "{\"interfaces\": [], \"stopped\": true}" > "$out"; exit 0' TERM
echo "loading" >&2
echo "sgmirror: enforcing (enforce) on 1 link(s)" >&2
while :; do sleep 0.05; done"#,
        );
        let agent = Agent::start(&bin.0, Path::new("/dev/null"), "sgmd-x", "eni-1").unwrap();
        let summary_path = agent.summary.clone();
        let summary = agent.stop().unwrap();
        assert_eq!(summary["stopped"], true);
        // Dropping the stopped agent removed its summary file.
        assert!(!summary_path.exists());
    }

    #[test]
    fn an_agent_that_exits_early_is_an_error() {
        let bin = fake_agent("early", "echo 'error: bad snapshot' >&2; exit 3");
        let err = Agent::start(&bin.0, Path::new("/dev/null"), "sgmd-x", "eni-1").err().unwrap();
        assert!(format!("{err:#}").contains("exited before enforcing"), "{err:#}");
    }

    #[test]
    fn an_agent_that_writes_no_summary_is_an_error() {
        let bin =
            fake_agent("nosummary", "trap 'exit 0' TERM; echo enforcing >&2; while :; do sleep 0.05; done");
        let agent = Agent::start(&bin.0, Path::new("/dev/null"), "sgmd-x", "eni-1").unwrap();
        let err = agent.stop().unwrap_err();
        assert!(format!("{err:#}").contains("wrote no summary"), "{err:#}");
    }
}
