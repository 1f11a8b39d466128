//! ICMP errors sent from a peer namespace and watched for on the host: the
//! fragmentation-needed (IPv4) and packet-too-big (IPv6) messages that path-MTU
//! discovery depends on.

use std::{
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::peer::in_netns;

/// The flow an error message quotes: the packet the host sent.
#[derive(Clone, Copy, Debug)]
pub struct Quoted {
    /// The host's address (source of the quoted packet).
    pub src: SocketAddr,
    /// The peer's address (its destination).
    pub dst: SocketAddr,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn quoted_tcp(q: &Quoted) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&q.src.port().to_be_bytes());
    tcp.extend_from_slice(&q.dst.port().to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes());
    tcp
}

/// The ICMP(v6) message (no outer IP header) telling `q.src` that `q.dst` needs
/// packets of at most `mtu` bytes.
pub fn too_big_message(q: &Quoted, mtu: u16) -> Vec<u8> {
    match (q.src.ip(), q.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = vec![0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0];
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut msg = vec![3, 4, 0, 0, 0, 0];
            msg.extend_from_slice(&mtu.to_be_bytes());
            msg.extend_from_slice(&ip);
            msg.extend_from_slice(&quoted_tcp(q));
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            msg
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut msg = vec![2, 0, 0, 0];
            msg.extend_from_slice(&u32::from(mtu).to_be_bytes());
            msg.extend_from_slice(&[0x60, 0, 0, 0, 0x05, 0xb4, 6, 64]);
            msg.extend_from_slice(&s.octets());
            msg.extend_from_slice(&d.octets());
            msg.extend_from_slice(&quoted_tcp(q));
            // The kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets.
            msg
        }
        _ => panic!("mixed families in {q:?}"),
    }
}

/// From namespace `netns`, sends the too-big error about `q` from `from` to the host.
pub fn send_too_big(netns: &str, from: IpAddr, q: Quoted) {
    let msg = too_big_message(&q, 1280);
    in_netns(netns, move || {
        let (domain, proto) =
            if from.is_ipv4() { (Domain::IPV4, Protocol::ICMPV4) } else { (Domain::IPV6, Protocol::ICMPV6) };
        let socket = Socket::new(domain, Type::RAW, Some(proto)).expect("raw ICMP socket");
        socket.bind(&SockAddr::from(SocketAddr::new(from, 0))).expect("binding the raw socket");
        socket
            .send_to(&msg, &SockAddr::from(SocketAddr::new(q.src.ip(), 0)))
            .expect("sending the ICMP error");
    })
}

/// A raw ICMP(v6) socket on the host that sees every ICMP message delivered to it.
pub struct Sniffer {
    socket: Socket,
    v4: bool,
}

impl Sniffer {
    /// Opens the socket for one family (root namespace).
    pub fn new(v4: bool) -> Sniffer {
        let (domain, proto) =
            if v4 { (Domain::IPV4, Protocol::ICMPV4) } else { (Domain::IPV6, Protocol::ICMPV6) };
        let socket = Socket::new(domain, Type::RAW, Some(proto)).expect("raw ICMP socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        Sniffer { socket, v4 }
    }

    /// Whether a too-big error from `from` arrives within `timeout`.
    pub fn saw_too_big(&self, from: IpAddr, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        while Instant::now() < deadline {
            let Ok((n, addr)) = self.socket.recv_from(&mut buf) else { continue };
            // SAFETY: recv_from initialised the first n bytes.
            let data: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
            if addr.as_socket().map(|a| a.ip()) != Some(from) {
                continue;
            }
            let (kind, code) = if self.v4 {
                let ihl = usize::from(data[0] & 0x0f) * 4;
                (data.get(ihl).copied(), data.get(ihl + 1).copied())
            } else {
                (data.first().copied(), data.get(1).copied())
            };
            let wanted = if self.v4 { (Some(3), Some(4)) } else { (Some(2), Some(0)) };
            if (kind, code) == wanted {
                return true;
            }
        }
        false
    }
}
