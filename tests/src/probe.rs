//! Continuous probing of enforcement: a peer thread sends UDP datagrams, one to a
//! port the policy allows and one to a port it denies, every millisecond or so,
//! until stopped; the host side counts what arrives. A gap in enforcement shows as a
//! denied datagram delivered; a window where the allowed class was dropped shows as
//! fewer allowed datagrams delivered than sent.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A running prober; stopped (and joined) on drop.
pub struct UdpProbe {
    stop: Arc<AtomicBool>,
    sent: Arc<[AtomicU64; 2]>,
    thread: Option<JoinHandle<()>>,
}

impl UdpProbe {
    /// From `src` in namespace `netns`, alternately to `allowed` and `denied`, one
    /// datagram each per `interval`.
    pub fn start(
        netns: &str,
        src: IpAddr,
        allowed: SocketAddr,
        denied: SocketAddr,
        interval: Duration,
    ) -> UdpProbe {
        let path = format!("/run/netns/{netns}");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let (flag, counts) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            let a = UdpSocket::bind(SocketAddr::new(src, 0)).expect("binding the probe source");
            let d = UdpSocket::bind(SocketAddr::new(src, 0)).expect("binding the probe source");
            while !flag.load(Ordering::Relaxed) {
                if a.send_to(b"allowed", allowed).is_ok() {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
                if d.send_to(b"denied", denied).is_ok() {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(interval);
            }
        });
        UdpProbe { stop, sent, thread: Some(thread) }
    }

    /// Datagrams sent so far: (allowed, denied).
    pub fn sent(&self) -> (u64, u64) {
        (self.sent[0].load(Ordering::Relaxed), self.sent[1].load(Ordering::Relaxed))
    }

    /// Stops sending and returns what was sent: (allowed, denied).
    pub fn stop(mut self) -> (u64, u64) {
        self.halt();
        self.sent()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UdpProbe {
    fn drop(&mut self) {
        self.halt();
    }
}
