//! The real `sgmirror` binary, run as a child process.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::sgmirror_bin;

/// `sgmirror ARGS`, run to completion.
pub fn run_to_end(args: &[&str]) -> Output {
    Command::new(sgmirror_bin()).args(args).output().expect("running sgmirror")
}

/// A running `sgmirror run`; killed on drop if still running.
pub struct Agent {
    child: Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Agent {
    /// Starts `sgmirror run ARGS` and waits until it says it is enforcing.
    pub fn start(args: &[&str]) -> Agent {
        let mut child = Command::new(sgmirror_bin())
            .arg("run")
            .args(args)
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
        let mut agent = Agent { child, stderr: rx, log: Vec::new() };
        agent.wait_for("sgmirror: enforcing", Duration::from_secs(60));
        agent
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
