//! Kernel differential test: the real programs (XDP for inbound policies, TC for
//! outbound ones), loaded with the maps compiled from random policies, must give
//! every random packet the reference evaluator's verdict, reason and allowing rules.
//! The programs are loaded stateless (idle timeouts of 0 s), so that each packet is
//! judged as new, as the stateless evaluator does; `kernel_trace_diff` tests state.
//!
//! Policies have overlapping prefixes (/0…/32, /0…/128) around a few anchors, every
//! protocol kind, exempt addresses. Packets are biased to rule prefixes and their
//! neighbours, to port-range edges and ICMP type/code matches, and include first and
//! later fragments (in pairs, orphans, and with the wrong id), DHCP and neighbour
//! discovery; frames vary VLAN tags, IPv4 options, IPv6 extension headers and
//! Ethernet padding. For each packet the XDP action is compared, the one `STATS`
//! slot the evaluator's (verdict, reason) names must have moved by one, and for a
//! rule match the `RULE_HITS` slot of the match set equal to the evaluator's rule
//! list must have moved by one; after each policy all counters are compared whole.
//!
//! `SGMIRROR_DIFF_PACKETS` sets the number of packets (default 100 000),
//! `SGMIRROR_DIFF_SEED` replays a run. Needs root.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sgmirror_common::{Counter, STATS_LEN, direction, reason, stat_index, verdict};
use sgmirror_dataplane::{FrameOptions, LoadedProgram, Mode, frame, tc_action, xdp_action};
use sgmirror_policy::evaluator::{FragmentMemory, verdict_with_fragments};
use sgmirror_policy::model::{
    Direction, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PeerSource, PortRange, Protocol,
    ResolvedRule, Verdict,
};

const DEFAULT_PACKETS: usize = 100_000;
const PACKETS_PER_POLICY: usize = 2_000;
const OWN4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const OWN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 5);
/// IPv6 next-header values that are extension headers: never an upper layer.
const IPV6_EXT: [u8; 5] = [0, 43, 44, 51, 60];

struct Anchors {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

fn anchors(rng: &mut StdRng) -> Anchors {
    let v4 = (0..4)
        .map(|_| match rng.gen_range(0..4) {
            0 => Ipv4Addr::from(0x0a00_0000 | (rng.r#gen::<u32>() & 0x00ff_ffff)),
            1 => Ipv4Addr::new(198, 51, 100, rng.r#gen()),
            2 => Ipv4Addr::new(203, 0, 113, rng.r#gen()),
            _ => Ipv4Addr::from(rng.r#gen::<u32>()),
        })
        .collect();
    let v6 = (0..4)
        .map(|_| match rng.gen_range(0..3) {
            0 => Ipv6Addr::from((0x2001_0db8_u128 << 96) | (rng.r#gen::<u128>() >> 32)),
            1 => Ipv6Addr::from((0xfe80_u128 << 112) | u128::from(rng.r#gen::<u64>())),
            _ => Ipv6Addr::from(rng.r#gen::<u128>()),
        })
        .collect();
    Anchors { v4, v6 }
}

fn prefix4(rng: &mut StdRng, a: &Anchors) -> IpNet {
    let len = *[0u8, 1, 8, 12, 16, 20, 24, 24, 28, 30, 31, 32, 32].choose(rng).unwrap_or(&24);
    let len = if rng.gen_bool(0.3) { rng.gen_range(0..=32) } else { len };
    let base = *a.v4.choose(rng).unwrap_or(&Ipv4Addr::UNSPECIFIED);
    IpNet::V4(Ipv4Net::new(base, len).expect("len ≤ 32").trunc())
}

fn prefix6(rng: &mut StdRng, a: &Anchors) -> IpNet {
    let len = *[0u8, 1, 16, 32, 48, 56, 64, 64, 96, 120, 127, 128, 128].choose(rng).unwrap_or(&64);
    let len = if rng.gen_bool(0.3) { rng.gen_range(0..=128) } else { len };
    let base = *a.v6.choose(rng).unwrap_or(&Ipv6Addr::UNSPECIFIED);
    IpNet::V6(Ipv6Net::new(base, len).expect("len ≤ 128").trunc())
}

fn port_range(rng: &mut StdRng) -> PortRange {
    match rng.gen_range(0..6) {
        0 => {
            let p = *[22u16, 53, 80, 443, 3389, 0, 65535].choose(rng).unwrap_or(&80);
            PortRange { from: p, to: p }
        }
        1 => PortRange { from: 0, to: 65535 },
        2 => {
            let from = rng.r#gen::<u16>();
            PortRange { from, to: from.saturating_add(rng.gen_range(0..64)) }
        }
        3 => {
            let from = rng.gen_range(1000..2000);
            PortRange { from, to: from + rng.gen_range(0..1000) }
        }
        _ => {
            let (a, b) = (rng.r#gen::<u16>(), rng.r#gen::<u16>());
            PortRange { from: a.min(b), to: a.max(b) }
        }
    }
}

fn icmp_match(rng: &mut StdRng, v6: bool) -> IcmpMatch {
    let types: &[u8] = if v6 { &[1, 2, 3, 4, 128, 129, 135, 200] } else { &[0, 3, 5, 8, 11, 12, 13, 250] };
    let icmp_type = *types.choose(rng).unwrap_or(&8);
    match rng.gen_range(0..3) {
        0 => IcmpMatch::All,
        1 => IcmpMatch::Type { icmp_type },
        _ => IcmpMatch::TypeCode { icmp_type, code: rng.gen_range(0..6) },
    }
}

fn protocol(rng: &mut StdRng) -> Protocol {
    match rng.gen_range(0..20) {
        0 | 1 => Protocol::All,
        2..=7 => Protocol::Tcp(port_range(rng)),
        8..=11 => Protocol::Udp(port_range(rng)),
        12..=14 => Protocol::Icmp(icmp_match(rng, false)),
        15..=17 => Protocol::Icmpv6(icmp_match(rng, true)),
        _ => {
            let numbers = [47u8, 50, 51, 132, 2, 89, 253, 0, 59];
            let n = if rng.gen_bool(0.7) { *numbers.choose(rng).unwrap_or(&47) } else { rng.r#gen() };
            Protocol::Number(if matches!(n, 1 | 6 | 17 | 58) { 47 } else { n })
        }
    }
}

fn random_policy(rng: &mut StdRng, a: &Anchors, direction: Direction) -> InterfacePolicy {
    let rules = rng.gen_range(0..=30);
    let rules: Vec<ResolvedRule> = (0..rules)
        .map(|i| {
            let peers: Vec<IpNet> = if rng.gen_bool(0.05) {
                Vec::new() // an unresolvable reference: allows nothing
            } else {
                (0..rng.gen_range(1..=3))
                    .map(|_| if rng.gen_bool(0.55) { prefix4(rng, a) } else { prefix6(rng, a) })
                    .collect()
            };
            ResolvedRule {
                id: format!("sgr-{i:04}"),
                group_id: format!("sg-{}", i % 3),
                direction,
                protocol: protocol(rng),
                source: PeerSource::Cidr(peers.first().map(ToString::to_string).unwrap_or_default()),
                peers,
            }
        })
        .collect();
    let mut exempt: Vec<IpAddr> = Vec::new();
    if rng.gen_bool(0.7) {
        exempt.push(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)));
        exempt.push("fd00:ec2::254".parse().expect("address"));
    }
    for _ in 0..rng.gen_range(0..=2) {
        // Sometimes inside a rule prefix, so the exemption must win over the rule.
        exempt.push(if rng.gen_bool(0.5) {
            IpAddr::V4(*a.v4.choose(rng).unwrap_or(&Ipv4Addr::LOCALHOST))
        } else {
            IpAddr::V6(*a.v6.choose(rng).unwrap_or(&Ipv6Addr::LOCALHOST))
        });
    }
    let (ingress, egress) = match direction {
        Direction::Ingress => (rules, Vec::new()),
        Direction::Egress => (Vec::new(), rules),
    };
    InterfacePolicy {
        interface_id: "eni-random".to_owned(),
        ingress,
        egress,
        exempt,
        ..InterfacePolicy::default()
    }
}

/// An address in `net`, at an edge or inside, or (sometimes) just outside it.
fn address_near(rng: &mut StdRng, net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            IpAddr::V4(Ipv4Addr::from(match rng.gen_range(0..8) {
                0 => lo,
                1 => hi,
                2 => lo.wrapping_sub(1),
                3 => hi.wrapping_add(1),
                _ => rng.gen_range(lo..=hi),
            }))
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            IpAddr::V6(Ipv6Addr::from(match rng.gen_range(0..8) {
                0 => lo,
                1 => hi,
                2 => lo.wrapping_sub(1),
                3 => hi.wrapping_add(1),
                _ => rng.gen_range(lo..=hi),
            }))
        }
    }
}

/// The peer address: the source of an inbound packet, the destination of an outbound one.
fn random_peer(rng: &mut StdRng, policy: &InterfacePolicy, a: &Anchors, direction: Direction) -> IpAddr {
    let nets: Vec<&IpNet> = policy.rules(direction).iter().flat_map(|r| &r.peers).collect();
    match rng.gen_range(0..20) {
        0..=10 if !nets.is_empty() => {
            let net = nets[rng.gen_range(0..nets.len())];
            address_near(rng, net)
        }
        11 if !policy.exempt.is_empty() => policy.exempt[rng.gen_range(0..policy.exempt.len())],
        12 => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, rng.r#gen())),
        13 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        14 | 15 => IpAddr::V4(*a.v4.choose(rng).unwrap_or(&Ipv4Addr::LOCALHOST)),
        16 | 17 => IpAddr::V6(*a.v6.choose(rng).unwrap_or(&Ipv6Addr::LOCALHOST)),
        18 => IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>())),
        _ => IpAddr::V6(Ipv6Addr::from(rng.r#gen::<u128>())),
    }
}

fn port_near(rng: &mut StdRng, r: PortRange) -> u16 {
    match rng.gen_range(0..5) {
        0 => r.from,
        1 => r.to,
        2 => r.from.wrapping_sub(1),
        3 => r.to.wrapping_add(1),
        _ => rng.gen_range(r.from..=r.to),
    }
}

fn icmp_near(rng: &mut StdRng, m: IcmpMatch) -> L4 {
    let (t, c) = match m {
        IcmpMatch::All => (rng.r#gen(), rng.gen_range(0..4)),
        IcmpMatch::Type { icmp_type } => (icmp_type, rng.gen_range(0..4)),
        IcmpMatch::TypeCode { icmp_type, code } => match rng.gen_range(0..4) {
            0 => (icmp_type, code.wrapping_add(1)),
            1 => (icmp_type.wrapping_add(1), code),
            _ => (icmp_type, code),
        },
    };
    L4::Icmp { icmp_type: t, code: c }
}

/// Protocol and transport fields of a new (not later-fragment) packet.
fn random_transport(rng: &mut StdRng, policy: &InterfacePolicy, direction: Direction, v6: bool) -> (u8, L4) {
    let rules = policy.rules(direction);
    let sport = |rng: &mut StdRng| {
        if rng.gen_bool(0.9) { rng.r#gen() } else { *[67u16, 68, 546, 547].choose(rng).unwrap_or(&68) }
    };
    let from_rule = rng.gen_bool(0.6) && !rules.is_empty();
    let (proto, l4) = if from_rule {
        match rules[rng.gen_range(0..rules.len())].protocol {
            Protocol::Tcp(r) => (6, L4::Ports { src: sport(rng), dst: port_near(rng, r) }),
            Protocol::Udp(r) => (17, L4::Ports { src: sport(rng), dst: port_near(rng, r) }),
            Protocol::Icmp(m) => (1, icmp_near(rng, m)),
            Protocol::Icmpv6(m) => (58, icmp_near(rng, m)),
            Protocol::All | Protocol::Number(_) if rng.gen_bool(0.5) => (rng.r#gen(), L4::None),
            Protocol::Number(n) => (n, L4::None),
            Protocol::All => (6, L4::Ports { src: sport(rng), dst: rng.r#gen() }),
        }
    } else {
        let proto = *[6u8, 6, 17, 17, 1, 58, 58, 50, 47, 132].choose(rng).unwrap_or(&6);
        (proto, L4::None)
    };
    let proto = if v6 && IPV6_EXT.contains(&proto) { 59 } else { proto };
    // The transport fields follow the protocol, whatever chose it.
    let l4 = match (proto, l4) {
        (6 | 17, L4::Ports { .. }) => l4,
        (6 | 17, _) => match rng.gen_range(0..6) {
            0 => L4::Ports { src: 68, dst: 67 },
            1 => L4::Ports { src: 546, dst: 547 },
            _ => L4::Ports { src: sport(rng), dst: rng.r#gen() },
        },
        (1 | 58, L4::Icmp { .. }) => l4,
        (1 | 58, _) => {
            let t = if rng.gen_bool(0.4) {
                *[130u8, 133, 135, 136, 137, 143, 128, 8].choose(rng).unwrap_or(&135)
            } else {
                rng.r#gen()
            };
            L4::Icmp { icmp_type: t, code: rng.gen_range(0..3) }
        }
        _ => L4::None,
    };
    (proto, l4)
}

struct PacketSource {
    /// Later fragments waiting to be sent, after their first fragment.
    pending: Vec<Packet>,
}

impl PacketSource {
    fn next(
        &mut self,
        rng: &mut StdRng,
        policy: &InterfacePolicy,
        a: &Anchors,
        direction: Direction,
    ) -> Packet {
        if !self.pending.is_empty() && rng.gen_bool(0.3) {
            let i = rng.gen_range(0..self.pending.len());
            let mut later = self.pending.swap_remove(i);
            if rng.gen_bool(0.1) {
                // The wrong id: must not pass on another datagram's first fragment.
                if let Fragment::Later(id) = later.fragment {
                    later.fragment = Fragment::Later(if later.src.is_ipv4() {
                        (id + 1) & 0xffff
                    } else {
                        id.wrapping_add(1)
                    });
                }
            }
            return later;
        }
        let peer = random_peer(rng, policy, a, direction);
        let v6 = peer.is_ipv6();
        let own = if v6 { IpAddr::V6(OWN6) } else { IpAddr::V4(OWN4) };
        let (src, dst) = match direction {
            Direction::Ingress => (peer, own),
            Direction::Egress => (own, peer),
        };
        let (proto, l4) = random_transport(rng, policy, direction, v6);
        let id = if v6 { rng.r#gen::<u32>() } else { u32::from(rng.r#gen::<u16>()) };
        let packet = Packet { src, dst, proto, l4, fragment: Fragment::None };
        match rng.gen_range(0..20) {
            0..=2 => {
                let first = Packet { fragment: Fragment::First(id), ..packet };
                if rng.gen_bool(0.9) {
                    self.pending.push(later_of(&first, id));
                }
                first
            }
            3 => later_of(&packet, id), // an orphan
            _ => packet,
        }
    }
}

fn random_frame_options(rng: &mut StdRng, packet: &Packet) -> FrameOptions {
    let tags = *[0usize, 0, 0, 1, 1, 2].choose(rng).unwrap_or(&0);
    let max_ext = if packet.fragment == Fragment::None { 8 } else { 7 };
    let ext_count = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(1..=max_ext) };
    let kinds: &[u8] =
        if packet.fragment == Fragment::None { &[0, 43, 60, 51, 44] } else { &[0, 43, 60, 51] };
    FrameOptions {
        vlan_tags: (0..tags).map(|_| rng.gen_range(1..4095)).collect(),
        ipv4_options_len: if rng.gen_bool(0.3) { 4 * rng.gen_range(1..=10) } else { 0 },
        ipv6_ext_headers: (0..ext_count).map(|_| *kinds.choose(rng).unwrap_or(&60)).collect(),
        ethernet_padding: if rng.gen_bool(0.3) { rng.gen_range(1..=40) } else { 0 },
        payload_len: rng.gen_range(0..=32),
        ..FrameOptions::default()
    }
}

/// Counters the kernel should show, kept alongside it.
struct Shadow {
    stats: Vec<Counter>,
    hits: Vec<u64>,
}

struct Run {
    mismatches: Vec<String>,
    mismatch_count: usize,
    /// Packets per (verdict, reason), for the coverage check.
    seen: HashMap<(Verdict, u32), usize>,
}

impl Run {
    fn mismatch(&mut self, text: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < 20 {
            self.mismatches.push(text);
        }
    }
}

fn check_policy(
    rng: &mut StdRng,
    index: usize,
    packets: usize,
    mode: Mode,
    direction: Direction,
    run: &mut Run,
) {
    let a = anchors(rng);
    let policy = random_policy(rng, &a, direction);
    let (program, compiled) = load_policy(&policy, mode);
    let image = compiled.image(direction);
    let dir = match direction {
        Direction::Ingress => direction::INGRESS,
        Direction::Egress => direction::EGRESS,
    };
    let (pass, drop) = match direction {
        Direction::Ingress => (xdp_action::PASS, xdp_action::DROP),
        Direction::Egress => (tc_action::PASS, tc_action::DROP),
    };
    let set_ids: HashMap<&[String], u32> =
        image.match_sets.iter().enumerate().map(|(i, s)| (s.as_slice(), i as u32)).collect();
    let mut shadow =
        Shadow { stats: vec![Counter::default(); STATS_LEN as usize], hits: vec![0; image.match_sets.len()] };
    let mut memory = FragmentMemory::default();
    let mut source = PacketSource { pending: Vec::new() };
    for n in 0..packets {
        let packet = source.next(rng, &policy, &a, direction);
        let opts = random_frame_options(rng, &packet);
        let bytes = frame::build(&packet, &opts);
        let decision = verdict_with_fragments(&policy, direction, &packet, &mut memory);
        *run.seen.entry((decision.verdict, decision.reason.code())).or_default() += 1;
        let counted = match (decision.verdict, mode) {
            (Verdict::Allow, _) => verdict::ALLOW,
            (Verdict::Drop, Mode::Enforce) => verdict::DROP,
            (Verdict::Drop, Mode::Audit) => verdict::AUDIT,
        };
        let expected_action = if counted == verdict::DROP { drop } else { pass };
        let context = || {
            format!(
                "policy #{index} ({direction:?}, {mode:?}) packet #{n}: {packet:?} {opts:?} → evaluator {decision:?}"
            )
        };
        let action = match program.test_run(&bytes, direction) {
            Ok(action) => action,
            Err(e) => {
                run.mismatch(format!("{}: test run failed: {}", context(), error_chain(&e)));
                continue;
            }
        };
        if action != expected_action {
            run.mismatch(format!("{}: action {action:#x}, expected {expected_action:#x}", context()));
        }
        let slot = stat_index(dir, counted, decision.reason.code());
        shadow.stats[slot as usize].packets += 1;
        shadow.stats[slot as usize].bytes += bytes.len() as u64;
        let expected = shadow.stats[slot as usize];
        let got = program.stat(dir, counted, decision.reason.code()).expect("reading STATS");
        if got != expected {
            let moved = describe_moved(&program, &shadow.stats);
            run.mismatch(format!(
                "{}: STATS slot not moved as expected ({got:?} vs {expected:?}); {moved}",
                context()
            ));
            resync(&program, direction, &mut shadow);
            continue;
        }
        if decision.verdict == Verdict::Allow && decision.reason.code() == reason::RULE {
            let Some(&id) = set_ids.get(decision.rules.as_slice()) else {
                run.mismatch(format!(
                    "{}: no match set of the image equals the evaluator's rules",
                    context()
                ));
                resync(&program, direction, &mut shadow);
                continue;
            };
            shadow.hits[id as usize] += 1;
            let got = program.rule_hit(direction, id).expect("reading RULE_HITS");
            if got != shadow.hits[id as usize] {
                run.mismatch(format!(
                    "{}: RULE_HITS[{id}] = {got}, expected {}",
                    context(),
                    shadow.hits[id as usize]
                ));
                resync(&program, direction, &mut shadow);
            }
        }
    }
    // Whole counters: nothing moved anywhere else.
    let stats = program.stats().expect("reading STATS");
    let expected_stats = sgmirror_dataplane::Stats::from_counters(shadow.stats.clone());
    if stats != expected_stats {
        run.mismatch(format!(
            "policy #{index}: final STATS differ: kernel {stats:?}, expected {expected_stats:?}"
        ));
    }
    let hits = program.rule_hits(direction).expect("reading RULE_HITS");
    if hits != shadow.hits {
        run.mismatch(format!(
            "policy #{index}: final RULE_HITS differ: kernel {hits:?}, expected {:?}",
            shadow.hits
        ));
    }
}

fn describe_moved(program: &LoadedProgram, expected: &[Counter]) -> String {
    let Ok(stats) = program.stats() else { return "cannot read STATS".to_owned() };
    let expected = sgmirror_dataplane::Stats::from_counters(expected.to_vec());
    let moved: Vec<String> = stats
        .nonzero()
        .filter(|((d, v, r), c)| expected.get(*d, *v, *r) != *c)
        .map(|((d, v, r), c)| {
            format!("kernel counted {c:?} at (dir {d}, verdict {v}, reason {})", reason::NAMES[r as usize])
        })
        .collect();
    moved.join("; ")
}

fn resync(program: &LoadedProgram, direction: Direction, shadow: &mut Shadow) {
    if let Ok(stats) = program.stats() {
        for d in 0..direction::COUNT {
            for v in 0..verdict::COUNT {
                for r in 0..reason::COUNT {
                    shadow.stats[stat_index(d, v, r) as usize] = stats.get(d, v, r);
                }
            }
        }
    }
    if let Ok(hits) = program.rule_hits(direction) {
        shadow.hits = hits;
    }
}

#[test]
fn kernel_agrees_with_the_evaluator_on_random_policies_and_packets() {
    let total: usize =
        std::env::var("SGMIRROR_DIFF_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PACKETS);
    let seed: u64 =
        std::env::var("SGMIRROR_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("kernel differential test: {total} packets, SGMIRROR_DIFF_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run { mismatches: Vec::new(), mismatch_count: 0, seen: HashMap::new() };
    let started = std::time::Instant::now();
    let mut sent = 0;
    let mut index = 0;
    while sent < total {
        let packets = PACKETS_PER_POLICY.min(total - sent);
        let mode = if index % 8 == 7 { Mode::Audit } else { Mode::Enforce };
        let direction = if index % 2 == 1 { Direction::Egress } else { Direction::Ingress };
        check_policy(&mut rng, index, packets, mode, direction, &mut run);
        sent += packets;
        index += 1;
    }
    let mut seen: Vec<_> =
        run.seen.iter().map(|((v, r), n)| format!("{v:?}/{}={n}", reason::NAMES[*r as usize])).collect();
    seen.sort();
    eprintln!("{sent} packets over {index} policies in {:.1?}: {}", started.elapsed(), seen.join(" "));
    assert!(
        run.mismatch_count == 0,
        "{} mismatches (seed {seed}); the first {}:\n{}",
        run.mismatch_count,
        run.mismatches.len(),
        run.mismatches.join("\n")
    );
    // The run exercised every outcome it is meant to compare.
    if total >= DEFAULT_PACKETS {
        for key in [
            (Verdict::Allow, reason::RULE),
            (Verdict::Drop, reason::NO_RULE),
            (Verdict::Allow, reason::EXEMPT),
            (Verdict::Allow, reason::FRAGMENT),
            (Verdict::Drop, reason::FRAGMENT),
        ] {
            assert!(run.seen.get(&key).copied().unwrap_or(0) > 100, "too few packets of {key:?}: {seen:?}");
        }
    }
}

#[test]
fn the_random_generator_covers_its_shapes() {
    // The shapes the differential test relies on do come out of the generator.
    let mut rng = StdRng::seed_from_u64(7);
    let a = anchors(&mut rng);
    let policy = random_policy(&mut rng, &a, Direction::Ingress);
    let mut source = PacketSource { pending: Vec::new() };
    let (mut firsts, mut laters, mut v6, mut tagged, mut ext) = (0, 0, 0, 0, 0);
    for _ in 0..5_000 {
        let p = source.next(&mut rng, &policy, &a, Direction::Ingress);
        let o = random_frame_options(&mut rng, &p);
        firsts += usize::from(matches!(p.fragment, Fragment::First(_)));
        laters += usize::from(matches!(p.fragment, Fragment::Later(_)));
        v6 += usize::from(p.src.is_ipv6());
        tagged += usize::from(o.vlan_tags.len() == 2);
        ext += usize::from(p.src.is_ipv6() && o.ipv6_ext_headers.len() == 8);
        if p.src.is_ipv6() {
            assert!(!IPV6_EXT.contains(&p.proto), "{p:?}");
        }
    }
    assert!(
        firsts > 300 && laters > 300 && v6 > 1000 && tagged > 300 && ext > 10,
        "{firsts} {laters} {v6} {tagged} {ext}"
    );
}
