//! The receiving end of systemd's notification protocol: a unix datagram socket the
//! test binds and hands to the agent as `NOTIFY_SOCKET`, as systemd does for a
//! `Type=notify` unit.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Receives the agent's notifications, one datagram at a time; the socket file is
/// removed on drop.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a socket at `path` (for `NOTIFY_SOCKET`).
    pub fn bind(path: &Path) -> NotifySocket {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        NotifySocket { socket, path: path.to_owned() }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let len = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// Messages until one starting with `prefix` (that one last). `exited` is asked
    /// between messages: `Some(why)` (the agent exited, with its log) fails at once
    /// instead of waiting out `timeout`.
    pub fn until(
        &self,
        prefix: &str,
        timeout: Duration,
        mut exited: impl FnMut() -> Option<String>,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no {prefix:?} within {timeout:?}; got {seen:?}");
            let Some(message) = self.next(Duration::from_millis(200)) else {
                if let Some(why) = exited() {
                    panic!("no {prefix:?}: the agent exited: {why}; got {seen:?}");
                }
                continue;
            };
            let done = message.starts_with(prefix);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Like [`NotifySocket::until`], without the watchdog pings in between.
    pub fn until_ignoring_watchdog(
        &self,
        prefix: &str,
        timeout: Duration,
        exited: impl FnMut() -> Option<String>,
    ) -> Vec<String> {
        self.until(prefix, timeout, exited).into_iter().filter(|m| m != "WATCHDOG=1").collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
