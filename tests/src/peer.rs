//! Traffic from inside a namespace, and listeners on the host side that count what
//! arrives.
//!
//! Network namespaces are per thread: a thread that joins one with `setns` creates
//! its sockets there, and they stay there. So peers are threads, not processes.

use std::{
    collections::HashMap,
    fs::File,
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    os::fd::AsRawFd,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Runs `f` on a thread that has joined network namespace `netns` and returns its
/// result.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("peer thread panicked")
}

fn domain(addr: IpAddr) -> Domain {
    if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 }
}

/// From namespace `netns`, connects from `src` to `dst` over TCP; `true` when the
/// handshake completes within `timeout`. The connection is closed at once.
pub fn tcp_connects(netns: &str, src: IpAddr, dst: SocketAddr, timeout: Duration) -> bool {
    in_netns(netns, move || {
        let socket = Socket::new(domain(src), Type::STREAM, Some(Protocol::TCP)).expect("tcp socket");
        socket.bind(&SockAddr::from(SocketAddr::new(src, 0))).expect("binding the peer source");
        socket.connect_timeout(&SockAddr::from(dst), timeout).is_ok()
    })
}

/// From namespace `netns`, sends `count` UDP datagrams from `src` to `dst`.
pub fn udp_send(netns: &str, src: IpAddr, dst: SocketAddr, count: usize) {
    in_netns(netns, move || {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0)).expect("binding the peer source");
        for i in 0..count {
            socket.send_to(format!("datagram {i}").as_bytes(), dst).expect("sending a datagram");
            // Keep the datagrams apart so none is lost to a full queue.
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// From namespace `netns`, sends `count` echo requests from `src` to `dst` with
/// `ping`; returns how many replies came back.
pub fn ping(netns: &str, src: IpAddr, dst: IpAddr, count: u32) -> u32 {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-n", "-q", "-c", &count.to_string(), "-i", "0.2", "-W", "1"])
        .args(["-I", &src.to_string(), &dst.to_string()])
        .output()
        .expect("running ping (apt-get install iputils-ping)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "3 packets transmitted, 2 received, ..."
    text.lines()
        .find_map(|l| l.split(", ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()))
        .unwrap_or_else(|| panic!("unexpected ping output: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// A host-side TCP listener that accepts and closes connections in the background.
pub struct TcpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl TcpServer {
    /// Listens on `addr` (root namespace).
    pub fn start(addr: SocketAddr) -> TcpServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("listening on {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TcpServer { stop, thread: Some(thread), addr }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host-side UDP socket counting datagrams per source address.
pub struct UdpCounter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl UdpCounter {
    /// Receives on `addr` (root namespace).
    pub fn start(addr: SocketAddr) -> UdpCounter {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let (flag, sink) = (Arc::clone(&stop), Arc::clone(&counts));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    *sink.lock().expect("counts").entry(from.ip()).or_insert(0) += 1;
                }
            }
        });
        UdpCounter { stop, thread: Some(thread), counts }
    }

    /// Datagrams received from `src` so far.
    pub fn received_from(&self, src: IpAddr) -> usize {
        self.counts.lock().expect("counts").get(&src).copied().unwrap_or(0)
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
