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

/// A TCP server that echoes what it reads, in the current thread's namespace (start
/// it inside [`in_netns`] to put it in a peer namespace).
pub struct TcpEcho {
    _server: std::thread::JoinHandle<()>,
}

impl TcpEcho {
    /// Listens on `addr` and echoes every connection until the process ends.
    pub fn start(addr: SocketAddr) -> TcpEcho {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("listening on {addr}: {e}"));
        let server = std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut stream = stream;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        TcpEcho { _server: server }
    }
}

/// A UDP server that sends every datagram back to its sender.
pub struct UdpEcho {
    _server: std::thread::JoinHandle<()>,
}

impl UdpEcho {
    /// Echoes datagrams on `addr` until the process ends.
    pub fn start(addr: SocketAddr) -> UdpEcho {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        });
        UdpEcho { _server: server }
    }
}

/// A TCP connection made from the current namespace, with helpers that turn
/// "did the bytes arrive" into a bool.
pub struct Conn {
    stream: std::net::TcpStream,
}

impl Conn {
    /// Connects from `src` to `dst` (current thread's namespace).
    pub fn open(src: IpAddr, dst: SocketAddr, timeout: Duration) -> Option<Conn> {
        let socket = Socket::new(domain(src), Type::STREAM, Some(Protocol::TCP)).expect("tcp socket");
        socket.bind(&SockAddr::from(SocketAddr::new(src, 0))).expect("binding the source");
        socket.connect_timeout(&SockAddr::from(dst), timeout).ok()?;
        let stream: std::net::TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_millis(1500))).expect("read timeout");
        Some(Conn { stream })
    }

    /// Sends `msg` and waits for the echo; `true` when it came back whole.
    pub fn echo(&mut self, msg: &[u8]) -> bool {
        use std::io::{Read, Write};
        if self.stream.write_all(msg).is_err() {
            return false;
        }
        let mut got = vec![0u8; msg.len()];
        self.stream.read_exact(&mut got).is_ok() && got == msg
    }

    /// Local address of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }
}

/// Sends one UDP datagram from `src` to `dst` (current namespace) and waits up to
/// `timeout` for an answer; `true` when one came.
pub fn udp_roundtrip(socket: &UdpSocket, dst: SocketAddr, timeout: Duration) -> bool {
    socket.set_read_timeout(Some(timeout)).expect("read timeout");
    socket.send_to(b"question", dst).expect("sending");
    let mut buf = [0u8; 64];
    socket.recv_from(&mut buf).is_ok()
}
