//! Helpers shared by the kernel tests: policies written by hand, and loading the
//! real program with their compiled maps.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::net::IpAddr;

use ipnet::IpNet;
use sgmirror_dataplane::{LoadOptions, LoadedProgram, Mode, load};
use sgmirror_policy::compile::{Limits, MapImage, compile};
use sgmirror_policy::model::{
    Direction, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PeerSource, PortRange, Protocol,
    ResolvedRule,
};

/// An inbound rule.
pub fn rule(id: &str, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
    ResolvedRule {
        id: id.to_owned(),
        group_id: "sg-test".to_owned(),
        direction: Direction::Ingress,
        protocol,
        source: PeerSource::Cidr(peers.first().copied().unwrap_or_default().to_owned()),
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

/// Compiles `policy` and loads the program with private maps.
pub fn load_policy(policy: &InterfacePolicy, mode: Mode) -> (LoadedProgram, MapImage) {
    let compiled = compile(policy, &Limits::default()).expect("policy compiles");
    let program = match load(&compiled.ingress, &LoadOptions { mode, shared_pin_dir: None }) {
        Ok(p) => p,
        Err(e) => panic!("loading the XDP program: {}", error_chain(&e)),
    };
    (program, compiled.ingress)
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
