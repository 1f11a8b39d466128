//! Generators shared by the property tests: random policies and packets aimed at
//! them.
//!
//! Policies mix families, nest prefixes from /0 to /32 and /128 around a few shared
//! bases (so that closures matter), use every protocol kind, random exempt addresses,
//! and peers written as CIDRs — often all of a family, so that untracked flows occur.
//! Packets are biased towards what the policy names: addresses at, inside and just
//! outside rule prefixes, ports at and around range edges, ICMP types and codes of
//! the rules, the protocol-exempt cases.
// Each test crate uses a different part of the generators.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::sample::select;
use sgmirror_policy::model::{
    Direction, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PeerSource, PortRange, Protocol,
    ResolvedRule, proto,
};

// ---------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------

/// Addresses prefixes are cut around, so that random prefixes nest and overlap.
pub const V4_BASES: [u32; 8] = [
    0x0a00_0000, // 10.0.0.0
    0x0a01_0203, // 10.1.2.3
    0x0a01_02ff, // 10.1.2.255
    0xc0a8_0101, // 192.168.1.1
    0xc000_0207, // 192.0.2.7
    0xa9fe_a9fe, // 169.254.169.254
    0xffff_ffff,
    0x0000_0000,
];

pub const V6_BASES: [u128; 7] = [
    0x2001_0db8_0000_0000_0000_0000_0000_0000,
    0x2001_0db8_0000_0000_0000_0000_0000_0001,
    0x2001_0db8_0001_0000_0000_0000_0000_0000,
    0xfd00_0ec2_0000_0000_0000_0000_0000_0254,
    0xfe80_0000_0000_0000_0000_0000_0000_0001,
    u128::MAX,
    0,
];

/// Ports that rules and packets gravitate to.
pub const EDGE_PORTS: [u16; 14] = [0, 1, 22, 67, 68, 80, 443, 546, 547, 1023, 1024, 3389, 65534, 65535];

/// Protocol numbers of numbered rules: some ordinary (ESP, AH, GRE, SCTP) and some
/// that collide with named ones, which the compiler must still fold correctly.
pub const NUMBERS: [u8; 8] = [50, 51, 47, 132, 0, 255, proto::TCP, proto::ICMP];

pub const ICMP_TYPES: [u8; 9] = [0, 3, 8, 11, 128, 129, 135, 136, 255];

pub fn v4_prefix() -> impl Strategy<Value = IpNet> {
    (select(&V4_BASES[..]), 0u32..256, 0u8..=32).prop_map(|(base, jitter, len)| {
        // Flipping a few low bits yields neighbours of the base, not random noise.
        let addr = Ipv4Addr::from(base ^ jitter);
        IpNet::V4(Ipv4Net::new(addr, len).expect("length ≤ 32").trunc())
    })
}

pub fn v6_prefix() -> impl Strategy<Value = IpNet> {
    (select(&V6_BASES[..]), 0u128..256, 0u8..=128).prop_map(|(base, jitter, len)| {
        let addr = Ipv6Addr::from(base ^ jitter);
        IpNet::V6(Ipv6Net::new(addr, len).expect("length ≤ 128").trunc())
    })
}

pub fn prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![3 => v4_prefix(), 2 => v6_prefix()]
}

pub fn port() -> impl Strategy<Value = u16> {
    prop_oneof![select(&EDGE_PORTS[..]), any::<u16>()]
}

pub fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        port().prop_map(|p| PortRange { from: p, to: p }),
        (port(), port()).prop_map(|(a, b)| PortRange { from: a.min(b), to: a.max(b) }),
        Just(PortRange { from: 0, to: 65535 }),
    ]
}

pub fn icmp_match() -> impl Strategy<Value = IcmpMatch> {
    prop_oneof![
        Just(IcmpMatch::All),
        select(&ICMP_TYPES[..]).prop_map(|t| IcmpMatch::Type { icmp_type: t }),
        (select(&ICMP_TYPES[..]), prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()])
            .prop_map(|(t, c)| IcmpMatch::TypeCode { icmp_type: t, code: c }),
    ]
}

pub fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        2 => Just(Protocol::All),
        4 => port_range().prop_map(Protocol::Tcp),
        3 => port_range().prop_map(Protocol::Udp),
        2 => icmp_match().prop_map(Protocol::Icmp),
        2 => icmp_match().prop_map(Protocol::Icmpv6),
        2 => select(&NUMBERS[..]).prop_map(Protocol::Number),
    ]
}

/// A rule without id (ids are given when the policy is assembled): a group or prefix
/// list standing for several prefixes, or a single CIDR.
pub fn rule(direction: Direction) -> impl Strategy<Value = ResolvedRule> {
    prop_oneof![3 => group_rule(direction), 2 => cidr_rule(direction)]
}

/// A peer written as a CIDR: often a /0, sometimes with host bits (`203.0.113.5/0`,
/// which AWS reads as its network part), else any prefix.
pub fn cidr() -> impl Strategy<Value = (String, IpNet)> {
    let zero = prop_oneof![
        Just("0.0.0.0/0".to_owned()),
        Just("::/0".to_owned()),
        Just("203.0.113.5/0".to_owned()),
        Just("2001:db8::1/0".to_owned()),
    ]
    .prop_map(|text| {
        let net = text.parse::<IpNet>().expect("a CIDR").trunc();
        (text, net)
    });
    prop_oneof![2 => zero, 1 => prefix().prop_map(|net| (net.to_string(), net))]
}

/// A rule with one CIDR peer, as `IpRanges`/`Ipv6Ranges` give them.
pub fn cidr_rule(direction: Direction) -> impl Strategy<Value = ResolvedRule> {
    (protocol(), cidr(), 0usize..4).prop_map(move |(protocol, (text, net), group)| ResolvedRule {
        id: String::new(),
        group_id: format!("sg-{group}"),
        direction,
        protocol,
        source: if net.addr().is_ipv4() { PeerSource::Cidr(text) } else { PeerSource::CidrIpv6(text) },
        peers: vec![net],
    })
}

/// A rule whose peer is a group: any number of prefixes, or none (unresolved).
pub fn group_rule(direction: Direction) -> impl Strategy<Value = ResolvedRule> {
    (protocol(), prop::collection::vec(prefix(), 0..4), 0usize..4).prop_map(
        move |(protocol, peers, group)| ResolvedRule {
            id: String::new(),
            group_id: format!("sg-{group}"),
            direction,
            protocol,
            source: PeerSource::Group(format!("sg-{group}")),
            peers,
        },
    )
}

pub fn exempt_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        select(&sgmirror_policy::exempt::FIXED_ADDRESSES[..]),
        (select(&V4_BASES[..]), 0u32..4).prop_map(|(b, j)| IpAddr::V4(Ipv4Addr::from(b ^ j))),
        (select(&V6_BASES[..]), 0u128..4).prop_map(|(b, j)| IpAddr::V6(Ipv6Addr::from(b ^ j))),
    ]
}

pub fn policy() -> impl Strategy<Value = InterfacePolicy> {
    (
        prop::collection::vec(rule(Direction::Ingress), 0..14),
        prop::collection::vec(rule(Direction::Egress), 0..8),
        prop::collection::vec(exempt_address(), 0..4),
        prop::collection::vec(any::<bool>(), 22),
    )
        .prop_map(|(mut ingress, mut egress, exempt, duplicate)| {
            for (i, r) in ingress.iter_mut().chain(egress.iter_mut()).enumerate() {
                // Now and then two rules share an id: their match sets must still agree.
                let n = if duplicate[i] && i % 5 == 0 { 0 } else { i };
                r.id = format!("sgr-{}-{n:02}", r.direction.as_str());
            }
            let mut groups: Vec<String> = ingress.iter().chain(&egress).map(|r| r.group_id.clone()).collect();
            groups.sort();
            groups.dedup();
            InterfacePolicy {
                interface_id: "eni-prop".to_owned(),
                groups,
                ingress,
                egress,
                exempt,
                ..Default::default()
            }
        })
}

// ---------------------------------------------------------------------------------
// Packets aimed at a policy
// ---------------------------------------------------------------------------------

/// What packets are drawn from: the values the policy mentions.
#[derive(Clone, Debug)]
pub struct Targets {
    pub nets: Vec<IpNet>,
    pub exempt: Vec<IpAddr>,
    pub ports: Vec<u16>,
    pub icmp: Vec<(u8, u8)>,
    pub protos: Vec<u8>,
    /// Rules with peers, to aim packets at: direction, peers, protocol.
    pub aims: Vec<(Direction, Vec<IpNet>, Protocol)>,
}

impl Targets {
    pub fn of(policy: &InterfacePolicy) -> Self {
        let mut nets = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        let mut ports = EDGE_PORTS.to_vec();
        let mut icmp = vec![(133, 0), (135, 0), (143, 0), (8, 0), (128, 0)];
        let mut protos = vec![proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6, 50, 99];
        let mut aims = Vec::new();
        for r in policy.ingress.iter().chain(&policy.egress) {
            nets.extend(r.peers.iter().copied());
            if !r.peers.is_empty() {
                aims.push((r.direction, r.peers.clone(), r.protocol));
            }
            match r.protocol {
                Protocol::Tcp(p) | Protocol::Udp(p) => {
                    for x in [p.from, p.to] {
                        ports.extend([x, x.wrapping_sub(1), x.wrapping_add(1)]);
                    }
                }
                Protocol::Icmp(m) | Protocol::Icmpv6(m) => match m {
                    IcmpMatch::All => {}
                    IcmpMatch::Type { icmp_type: t } => {
                        icmp.extend([(t, 0), (t, 255), (t.wrapping_add(1), 0)])
                    }
                    IcmpMatch::TypeCode { icmp_type: t, code: c } => {
                        icmp.extend([(t, c), (t, c.wrapping_add(1)), (t, c.wrapping_sub(1))]);
                    }
                },
                Protocol::Number(n) => protos.push(n),
                Protocol::All => {}
            }
        }
        let exempt = if policy.exempt.is_empty() {
            vec!["169.254.169.254".parse().unwrap()]
        } else {
            policy.exempt.clone()
        };
        Targets { nets, exempt, ports, icmp, protos, aims }
    }
}

/// Where in or around a prefix an address falls.
#[derive(Clone, Copy, Debug)]
pub enum Spot {
    First,
    Last,
    Inside(u128),
    Before,
    After,
}

pub fn spot() -> impl Strategy<Value = Spot> {
    prop_oneof![
        1 => Just(Spot::First),
        1 => Just(Spot::Last),
        3 => any::<u128>().prop_map(Spot::Inside),
        1 => Just(Spot::Before),
        1 => Just(Spot::After),
    ]
}

pub fn address_at(net: IpNet, spot: Spot) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            let a = match spot {
                Spot::First => lo,
                Spot::Last => hi,
                Spot::Inside(r) => lo | (r as u32 & u32::from(n.hostmask())),
                Spot::Before => lo.wrapping_sub(1),
                Spot::After => hi.wrapping_add(1),
            };
            IpAddr::V4(Ipv4Addr::from(a))
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            let a = match spot {
                Spot::First => lo,
                Spot::Last => hi,
                Spot::Inside(r) => lo | (r & u128::from(n.hostmask())),
                Spot::Before => lo.wrapping_sub(1),
                Spot::After => hi.wrapping_add(1),
            };
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }
}

/// The peer address of a packet: mostly aimed at a rule prefix, sometimes exempt,
/// sometimes anywhere.
pub fn peer(t: &Targets) -> impl Strategy<Value = IpAddr> + use<> {
    prop_oneof![
        8 => (select(t.nets.clone()), spot()).prop_map(|(n, s)| address_at(n, s)),
        1 => select(t.exempt.clone()),
        1 => any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        1 => any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

pub fn l4_for(t: &Targets) -> impl Strategy<Value = (u8, L4)> + use<> {
    let ports = select(t.ports.clone());
    let source_ports = prop_oneof![select(&[67u16, 68, 546, 547][..]), any::<u16>()];
    let tcp_udp =
        (select(&[proto::TCP, proto::UDP][..]), source_ports, prop_oneof![3 => ports, 1 => any::<u16>()])
            .prop_map(|(p, src, dst)| (p, L4::Ports { src, dst }));
    let icmp = (
        select(&[proto::ICMP, proto::ICMPV6][..]),
        prop_oneof![3 => select(t.icmp.clone()), 1 => any::<(u8, u8)>()],
    )
        .prop_map(|(p, (icmp_type, code))| (p, L4::Icmp { icmp_type, code }));
    let other = prop_oneof![select(t.protos.clone()), any::<u8>()].prop_map(|p| match p {
        // A header-bearing protocol always carries its header in a whole packet.
        proto::TCP | proto::UDP => (p, L4::Ports { src: 1, dst: 1 }),
        proto::ICMP | proto::ICMPV6 => (p, L4::Icmp { icmp_type: 0, code: 0 }),
        _ => (p, L4::None),
    });
    prop_oneof![4 => tcp_udp, 3 => icmp, 2 => other]
}

/// The header of a packet aimed at a rule's protocol: at, inside or just outside
/// its port range or ICMP selection; `edge` picks which, `r` fills in the rest.
pub fn aimed_l4(protocol: Protocol, edge: u8, r: u32, protos: &[u8]) -> (u8, L4) {
    let near = |from: u16, to: u16| -> u16 {
        match edge % 5 {
            0 => from,
            1 => to,
            2 => from.wrapping_sub(1),
            3 => to.wrapping_add(1),
            _ if to >= from => from + (r % (u32::from(to - from) + 1)) as u16,
            _ => from,
        }
    };
    let header = |p: u8, r: u32| match p {
        proto::TCP | proto::UDP => L4::Ports { src: (r >> 16) as u16, dst: r as u16 },
        proto::ICMP | proto::ICMPV6 => L4::Icmp { icmp_type: (r >> 8) as u8, code: r as u8 },
        _ => L4::None,
    };
    let icmp = |m: IcmpMatch| -> L4 {
        let (t, c) = match m {
            IcmpMatch::All => ((r >> 8) as u8, r as u8),
            IcmpMatch::Type { icmp_type } => match edge % 3 {
                0 | 1 => (icmp_type, r as u8),
                _ => (icmp_type.wrapping_add(1), r as u8),
            },
            IcmpMatch::TypeCode { icmp_type, code } => match edge % 4 {
                0 | 1 => (icmp_type, code),
                2 => (icmp_type, code.wrapping_add(1)),
                _ => (icmp_type.wrapping_sub(1), code),
            },
        };
        L4::Icmp { icmp_type: t, code: c }
    };
    match protocol {
        Protocol::All => {
            let p = protos[r as usize % protos.len()];
            (p, header(p, r.rotate_left(7)))
        }
        Protocol::Number(n) => (n, header(n, r)),
        Protocol::Tcp(range) => {
            (proto::TCP, L4::Ports { src: (r >> 16) as u16, dst: near(range.from, range.to) })
        }
        Protocol::Udp(range) => {
            (proto::UDP, L4::Ports { src: (r >> 16) as u16, dst: near(range.from, range.to) })
        }
        Protocol::Icmp(m) => (proto::ICMP, icmp(m)),
        Protocol::Icmpv6(m) => (proto::ICMPV6, icmp(m)),
    }
}

/// Puts a packet together from its peer, the other end and the direction.
pub fn assemble(
    direction: Direction,
    peer: IpAddr,
    other: u128,
    (proto, l4): (u8, L4),
    fragment: Fragment,
) -> (Direction, Packet) {
    // The local end is any address of the peer's family.
    let local = match peer {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(other as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(other)),
    };
    let (src, dst) = match direction {
        Direction::Ingress => (peer, local),
        Direction::Egress => (local, peer),
    };
    (direction, Packet { src, dst, proto, l4, fragment })
}

pub fn fragment() -> impl Strategy<Value = Fragment> {
    prop_oneof![3 => Just(Fragment::None), 1 => any::<u32>().prop_map(Fragment::First)]
}

/// A whole packet or first fragment aimed at one rule: its direction, one of its
/// prefixes, its protocol, and values at or around its edges.
pub fn aimed_packet(t: &Targets) -> BoxedStrategy<(Direction, Packet)> {
    if t.aims.is_empty() {
        return loose_packet(t).boxed();
    }
    let protos = t.protos.clone();
    (
        select(t.aims.clone()),
        any::<prop::sample::Index>(),
        spot(),
        any::<u8>(),
        any::<u32>(),
        any::<u128>(),
        fragment(),
    )
        .prop_map(move |((direction, peers, protocol), which, spot, edge, r, other, fragment)| {
            let peer = address_at(*which.get(&peers), spot);
            assemble(direction, peer, other, aimed_l4(protocol, edge, r, &protos), fragment)
        })
        .boxed()
}

/// A whole packet or first fragment, with its direction: aimed at a rule or loosely
/// at what the policy mentions.
pub fn packet_for(t: &Targets) -> impl Strategy<Value = (Direction, Packet)> + use<> {
    prop_oneof![aimed_packet(t), loose_packet(t)]
}

/// A packet built from the policy's values without regard to which rule they belong to.
pub fn loose_packet(t: &Targets) -> impl Strategy<Value = (Direction, Packet)> + use<> {
    (
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        peer(t),
        any::<u128>(),
        l4_for(t),
        fragment(),
    )
        .prop_map(|(direction, peer, other, l4, fragment)| assemble(direction, peer, other, l4, fragment))
}

pub fn policy_and_packets(n: usize) -> impl Strategy<Value = (InterfacePolicy, Vec<(Direction, Packet)>)> {
    policy().prop_flat_map(move |p| {
        let t = Targets::of(&p);
        (Just(p), prop::collection::vec(packet_for(&t), n))
    })
}
