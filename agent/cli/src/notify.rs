//! The systemd notification protocol (`sd_notify(3)`), by hand: one datagram per
//! message to the unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
//!
//! The unit is `Type=notify`: systemd considers the agent started only at `READY=1`,
//! which `run` sends once the first policy is enforced on every bound link, so units
//! ordered after sgmirror start with the host protected. With `WatchdogSec=`, systemd
//! passes `WATCHDOG_USEC` and restarts the agent if no `WATCHDOG=1` arrives in time;
//! the pings come from the main loop, so a stuck loop is noticed.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::{Duration, Instant},
};

/// A connection to systemd's notification socket, or nothing.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half the watchdog timeout: the ping interval systemd recommends.
    watchdog_every: Option<Duration>,
    last_ping: Instant,
    failed: bool,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (the watchdog is
    /// ours only when `WATCHDOG_PID` is unset or our pid).
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
    }

    /// [`Notifier::from_env`] with the variables given.
    fn from_vars(
        socket: Option<&std::ffi::OsStr>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let target = socket.and_then(|path| match open(path) {
            Ok(target) => Some(target),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={}: {e}; not notifying systemd", path.to_string_lossy());
                None
            }
        });
        let ours = watchdog_pid.is_none_or(|p| p.trim() == pid.to_string());
        let watchdog_every = watchdog_usec
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours && target.is_some())
            .map(|usec| Duration::from_micros(usec / 2));
        if let Some(every) = watchdog_every {
            tracing::info!("systemd watchdog: pinging every {every:?}");
        }
        Notifier { target, watchdog_every, last_ping: Instant::now(), failed: false }
    }

    /// The service is up: the first policy is enforced.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A reload (SIGHUP) starts; [`Notifier::ready`] ends it.
    pub fn reloading(&mut self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// The service is stopping.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1");
    }

    /// Called every turn of the main loop: pings the watchdog when half its timeout
    /// has passed since the last ping.
    pub fn watchdog(&mut self) {
        if let Some(every) = self.watchdog_every
            && self.last_ping.elapsed() >= every
        {
            self.last_ping = Instant::now();
            self.send("WATCHDOG=1");
        }
    }

    /// Never fatal: a missing systemd must not stop enforcement. Reports the first
    /// failure only, so a gone socket does not flood the log.
    fn send(&mut self, message: &str) {
        let Some((socket, addr)) = &self.target else { return };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
            && !self.failed
        {
            tracing::warn!("notifying systemd: {e}");
            self.failed = true;
        }
    }
}

/// An unbound datagram socket and the address of `NOTIFY_SOCKET`.
fn open(path: &std::ffi::OsStr) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None if bytes.starts_with(b"/") => SocketAddr::from_pathname(path)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither a path nor @abstract",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants it.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000).saturating_add(ts.tv_nsec as u64 / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("sgm-notify-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut n = Notifier {
            target: Some(open(path.as_os_str()).unwrap()),
            watchdog_every: Some(Duration::ZERO),
            last_ping: Instant::now(),
            failed: false,
        };
        let mut buf = [0u8; 256];
        let mut next = || {
            let len = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("enforcing");
        n.watchdog();
        n.reloading();
        n.stopping();
        assert_eq!(next(), "READY=1\nSTATUS=enforcing");
        assert_eq!(next(), "WATCHDOG=1");
        let reloading = next();
        assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
        assert!(reloading.rsplit('=').next().unwrap().parse::<u64>().unwrap() > 0);
        assert_eq!(next(), "STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_watchdog_is_ours_only_for_our_pid_and_a_positive_timeout() {
        let sock = Some(std::ffi::OsStr::new("@sgm-test-watchdog"));
        let every = |usec, pid| Notifier::from_vars(sock, usec, pid, 42).watchdog_every;
        assert_eq!(every(Some("200000"), None), Some(Duration::from_millis(100)));
        assert_eq!(every(Some("200000"), Some("42")), Some(Duration::from_millis(100)));
        assert_eq!(every(Some("200000"), Some("43")), None, "another process's watchdog");
        assert_eq!(every(Some("0"), None), None);
        assert_eq!(every(Some("soon"), None), None);
        assert_eq!(every(None, None), None);
        assert_eq!(Notifier::from_vars(None, Some("200000"), None, 42).watchdog_every, None, "no socket");
    }

    #[test]
    fn abstract_and_bad_addresses() {
        assert!(open(std::ffi::OsStr::new("@sgm-test-abstract")).is_ok());
        assert!(open(std::ffi::OsStr::new("relative/path")).is_err());
    }
}
