//! The real `sgmirror` binary, run as a child process.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::sgmirror_bin;

/// `sgmirror ARGS`, run to completion.
pub fn run_to_end(args: &[&str]) -> Output {
    Command::new(sgmirror_bin()).args(args).output().expect("running sgmirror")
}

/// Where agents pin (`--pin-root`, a unique directory under `/sys/fs/bpf` named
/// `sgmirror-test-*`) and keep their status records (`--state-dir`, a temporary
/// directory). Dropping it detaches what was pinned there (`sgmirror detach`) and
/// removes both, so pinned enforcement never outlives a test.
#[derive(Debug)]
pub struct PinRoot {
    pub pin_root: PathBuf,
    pub state_dir: PathBuf,
}

impl PinRoot {
    /// Fresh, unique directories (created by the agent).
    pub fn new() -> PinRoot {
        let suffix = crate::unique_suffix();
        PinRoot {
            pin_root: PathBuf::from(format!("/sys/fs/bpf/sgmirror-test-{suffix}")),
            state_dir: std::env::temp_dir().join(format!("sgmirror-test-state-{suffix}")),
        }
    }

    /// `--pin-root DIR --state-dir DIR`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--pin-root".to_owned(),
            self.pin_root.display().to_string(),
            "--state-dir".to_owned(),
            self.state_dir.display().to_string(),
        ]
    }

    /// `sgmirror status [--json]` against these directories.
    pub fn status(&self, json: bool) -> Output {
        let mut args = vec!["status".to_owned()];
        args.extend(self.args());
        if json {
            args.push("--json".to_owned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_end(&refs)
    }

    /// `sgmirror detach [--link LINK]` against these directories.
    pub fn detach(&self, link: Option<&str>) -> Output {
        let mut args = vec!["detach".to_owned()];
        args.extend(self.args());
        if let Some(link) = link {
            args.extend(["--link".to_owned(), link.to_owned()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_end(&refs)
    }
}

impl Default for PinRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = self.detach(None);
        // Pins of links that were deleted before the detach, if any.
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A running `sgmirror run`; killed on drop if still running, and what it pinned is
/// detached unless the pins belong to a [`PinRoot`] of the test.
pub struct Agent {
    child: Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
    /// Declared after `child`: the agent is killed before its pins are detached.
    _own_pins: Option<PinRoot>,
}

impl Agent {
    /// Starts `sgmirror run ARGS` with pins in a directory of its own, and waits
    /// until it says it is enforcing.
    pub fn start(args: &[&str]) -> Agent {
        let pins = PinRoot::new();
        let mut agent = Agent::spawn(args, &pins);
        agent._own_pins = Some(pins);
        agent.wait_for("sgmirror: enforcing", Duration::from_secs(60));
        agent
    }

    /// Starts `sgmirror run ARGS` pinning in `pins` (which outlive the agent), and
    /// waits until it says it is enforcing.
    pub fn start_in(args: &[&str], pins: &PinRoot) -> Agent {
        let mut agent = Agent::spawn(args, pins);
        agent.wait_for("sgmirror: enforcing", Duration::from_secs(60));
        agent
    }

    /// Starts `sgmirror run ARGS` pinning in `pins`, without waiting.
    pub fn spawn(args: &[&str], pins: &PinRoot) -> Agent {
        Agent::spawn_with_env(args, &[], pins)
    }

    /// Like [`Agent::spawn`], with environment variables added (the AWS source reads
    /// its credentials and endpoints from there).
    pub fn spawn_with_env(args: &[&str], env: &[(String, String)], pins: &PinRoot) -> Agent {
        let mut child = Command::new(sgmirror_bin())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("run")
            // Never an installed /etc/sgmirror/config.toml: only the test's flags.
            .args(["--config", "/dev/null"])
            .args(args)
            .args(pins.args())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sgmirror run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent { child, stderr: rx, log: Vec::new(), _own_pins: None }
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// The agent's exit status once it has exited (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the agent with SIGKILL (no clean-up of its own) and reaps it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for a stderr line containing `needle`, panicking with the log on timeout
    /// or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("sgmirror never said {needle:?}; its log:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Sends SIGTERM and waits for the agent to exit; returns its stdout and status.
    pub fn stop(mut self) -> (String, std::process::ExitStatus) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use std::io::Read;
            let _ = out.read_to_string(&mut stdout);
        }
        let status = self.child.wait().expect("waiting for sgmirror");
        (stdout, status)
    }

    /// Everything the agent wrote on stderr so far.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a `--summary-json` file.
pub fn read_summary(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("summary is JSON")
}
