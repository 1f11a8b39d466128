//! Helpers shared by the kernel tests: policies written by hand, and loading the
//! real program with their compiled maps.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::net::IpAddr;

use ipnet::IpNet;
use sgmirror_dataplane::{LoadOptions, LoadedProgram, Mode, load};
use sgmirror_policy::compile::{CompiledInterface, Limits, compile};
use sgmirror_policy::model::{
    Direction, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PeerSource, PortRange, Protocol,
    ResolvedRule, Timeouts,
};

/// An inbound rule.
pub fn rule(id: &str, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
    rule_in(Direction::Ingress, id, protocol, peers)
}

/// An outbound rule.
pub fn egress_rule(id: &str, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
    rule_in(Direction::Egress, id, protocol, peers)
}

/// A rule of `direction`.
pub fn rule_in(direction: Direction, id: &str, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
    let source = match peers.first() {
        Some(p) if p.contains(':') => PeerSource::CidrIpv6((*p).to_owned()),
        p => PeerSource::Cidr(p.copied().unwrap_or_default().to_owned()),
    };
    ResolvedRule {
        id: id.to_owned(),
        group_id: "sg-test".to_owned(),
        direction,
        protocol,
        source,
        peers: peers.iter().map(|p| p.parse::<IpNet>().expect("test prefix")).collect(),
    }
}

pub fn tcp(from: u16, to: u16) -> Protocol {
    Protocol::Tcp(PortRange { from, to })
}

pub fn udp(from: u16, to: u16) -> Protocol {
    Protocol::Udp(PortRange { from, to })
}

pub fn icmp_type(t: u8) -> Protocol {
    Protocol::Icmp(IcmpMatch::Type { icmp_type: t })
}

pub fn icmp_type_code(t: u8, c: u8) -> Protocol {
    Protocol::Icmp(IcmpMatch::TypeCode { icmp_type: t, code: c })
}

pub fn policy(ingress: Vec<ResolvedRule>, exempt: &[&str]) -> InterfacePolicy {
    InterfacePolicy {
        interface_id: "eni-test".to_owned(),
        ingress,
        exempt: exempt.iter().map(|a| a.parse().expect("test address")).collect(),
        ..InterfacePolicy::default()
    }
}

/// Idle timeouts of 0 s: every flow has expired by the next packet, so the programs
/// judge each packet as new, like the stateless reference evaluator.
pub const STATELESS: Timeouts =
    Timeouts { tcp_established: 0, tcp_other: 0, udp: 0, udp_stream: 0, icmp: 0, other: 0 };

/// Compiles `policy` and loads the programs with private maps, stateless (see
/// [`STATELESS`]).
pub fn load_policy(policy: &InterfacePolicy, mode: Mode) -> (LoadedProgram, CompiledInterface) {
    load_with(policy, &LoadOptions { mode, timeouts: STATELESS, ..LoadOptions::default() })
}

/// Compiles `policy` and loads the programs with `opts`.
pub fn load_with(policy: &InterfacePolicy, opts: &LoadOptions) -> (LoadedProgram, CompiledInterface) {
    let compiled = compile(policy, &Limits::default()).expect("policy compiles");
    let program = match load(&compiled, opts) {
        Ok(p) => p,
        Err(e) => panic!("loading the programs: {}", error_chain(&e)),
    };
    (program, compiled)
}

pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

pub fn addr(a: &str) -> IpAddr {
    a.parse().expect("test address")
}

/// A TCP packet to `dport`.
pub fn tcp_packet(src: &str, dst: &str, dport: u16) -> Packet {
    Packet {
        src: addr(src),
        dst: addr(dst),
        proto: 6,
        l4: L4::Ports { src: 40000, dst: dport },
        fragment: Fragment::None,
    }
}

/// A UDP packet between two ports.
pub fn udp_packet(src: &str, dst: &str, sport: u16, dport: u16) -> Packet {
    Packet {
        src: addr(src),
        dst: addr(dst),
        proto: 17,
        l4: L4::Ports { src: sport, dst: dport },
        fragment: Fragment::None,
    }
}

/// An ICMP (proto 1) or ICMPv6 (58) packet.
pub fn icmp_packet(src: &str, dst: &str, proto: u8, t: u8, c: u8) -> Packet {
    Packet {
        src: addr(src),
        dst: addr(dst),
        proto,
        l4: L4::Icmp { icmp_type: t, code: c },
        fragment: Fragment::None,
    }
}

/// A packet of another protocol.
pub fn proto_packet(src: &str, dst: &str, proto: u8) -> Packet {
    Packet { src: addr(src), dst: addr(dst), proto, l4: L4::None, fragment: Fragment::None }
}

/// The later fragment of `first` (same addresses, protocol and id).
pub fn later_of(first: &Packet, id: u32) -> Packet {
    Packet { l4: L4::None, fragment: Fragment::Later(id), ..*first }
}

/// A bpffs mounted for this thread only; unmounted and removed on drop.
pub struct PrivateBpffs(pub std::path::PathBuf);

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: unmounts our own mount, in our own mount namespace.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Mounts a fresh bpffs, visible to this thread only.
pub fn private_bpffs() -> PrivateBpffs {
    // SAFETY: unshare and mount only affect the calling thread's mount namespace.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare: {}", std::io::Error::last_os_error());
        // Keep our mounts from propagating back to the host.
        let root = c"/";
        let rc = libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        assert_eq!(rc, 0, "making / private: {}", std::io::Error::last_os_error());
    }
    let dir = std::env::temp_dir().join(format!(
        "sgm-bpffs-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let target = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: as above.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    assert_eq!(rc, 0, "mounting bpffs: {}", std::io::Error::last_os_error());
    PrivateBpffs(dir)
}

/// Moves the calling thread into a new, empty network namespace with one veth pair
/// `sgm0` ⇄ `sgm1`, both up, without IPv6 link-local addresses (so the kernel sends
/// nothing of its own that a counter would see). The namespace disappears with the
/// thread.
pub fn private_veth() {
    // SAFETY: unshare only changes the calling thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    for args in [
        &["link", "add", "sgm0", "type", "veth", "peer", "name", "sgm1"][..],
        &["link", "set", "sgm0", "addrgenmode", "none"],
        &["link", "set", "sgm1", "addrgenmode", "none"],
        &["link", "set", "sgm0", "up"],
        &["link", "set", "sgm1", "up"],
    ] {
        let status = std::process::Command::new("ip").args(args).status().expect("running ip");
        assert!(status.success(), "ip {args:?}");
    }
}

/// An AF_PACKET socket bound for sending Ethernet frames out of one link.
pub struct RawSender {
    fd: i32,
    addr: libc::sockaddr_ll,
}

impl RawSender {
    pub fn new(link: &str) -> RawSender {
        let name = std::ffi::CString::new(link).unwrap();
        // SAFETY: plain socket syscalls; the name outlives the call.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert_ne!(ifindex, 0, "no link {link}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex as i32;
            addr.sll_halen = 6;
            RawSender { fd, addr }
        }
    }

    /// Sends one frame. A frame an egress program drops fails with `ENOBUFS` (the
    /// device's transmit dropped it).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: sendto on our socket with buffers that outlive the call.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const self.addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if sent != frame.len() as isize {
            return Err(std::io::Error::other(format!("sent {sent} of {} bytes", frame.len())));
        }
        Ok(())
    }
}

impl Drop for RawSender {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}
