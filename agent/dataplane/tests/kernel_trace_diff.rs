//! Trace-differential test: random policies × random packet sequences through the
//! real programs (XDP ingress, TC egress) and through the model
//! (`sgmirror_policy::evaluator::judge_stateful`), packet by packet, with zero
//! mismatches allowed on the verdict (audit included), the reason, the allowing rules
//! (through `RULE_HITS`/`ERULE_HITS`) and, after each trace, the set of live flows
//! with their state and initiator.
//!
//! A *group* is a few ENIs, each a separate link with its own flow table (its own
//! pin directory on a private bpffs): flows are per ENI, so a reply sent through
//! another ENI is judged by that ENI's rules. Each ENI has 2–3 *variants* of its
//! policy (rules removed, the all-ports /0 rules that make flows untracked removed),
//! loaded as program generations that share the link's `FLOWS`, `FRAGS`, `CLOCK` and
//! `STATS`; the test switches variants between packets (a rule change). Traces are
//! conversations — TCP handshakes, data, FIN and RST in realistic orders, mid-stream
//! packets of connections that predate the agent, UDP requests and responses, ICMP
//! echoes with identifiers, other ICMP, other protocols — interleaved with ICMP
//! errors quoting earlier packets (or made-up ones), fragments, exempt peers, and
//! time advances past the (often short, 2–20 s) idle timeouts.
//!
//! Time: the model's clock is explicit; before each packet the test sets `CLOCK` to
//! `model_now - CLOCK_MONOTONIC`, so the kernel's clock is the model's plus the few
//! microseconds until the program runs. Every advance is 0 or a whole number of
//! seconds plus 137 ms, and a trace has at most 16 packets, so the age of any entry
//! stays at least 41 ms away from a whole second: no timeout boundary is within
//! reach of that jitter. Flows and fragments are cleared between traces.
//!
//! `SGMIRROR_TRACES` sets the number of traces (default 20 000), `SGMIRROR_TRACE_SEED`
//! replays a run. Needs root.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sgmirror_common::{Counter, FlowKey, STATS_LEN, direction, flow_state, reason, stat_index, verdict};
use sgmirror_dataplane::{
    FrameOptions, LoadOptions, LoadedProgram, Mode, frame, load, tc_action, xdp_action,
};
use sgmirror_policy::compile::{CompiledInterface, Limits, compile};
use sgmirror_policy::evaluator::{LinkState, flow_key, is_expired, judge_stateful, verdict as stateless};
use sgmirror_policy::model::{
    Decision, Direction, Embedded, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PeerSource, PortRange,
    Protocol, Reason, ResolvedRule, StatefulPacket, Timeouts, Transport, Verdict, proto, tcp_flags,
};

const DEFAULT_TRACES: usize = 20_000;
const GROUPS: usize = 50;
const MAX_TRACE_LEN: usize = 16;
const NS: u64 = 1_000_000_000;
/// The fraction of a second every non-zero time advance carries (see the module doc).
const ADVANCE_FRACTION_NS: u64 = 137_000_000;

// ---------------------------------------------------------------------------------
// Policies

/// Remote hosts of a group: peers of rules and of conversations.
struct Hosts {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

fn hosts(rng: &mut StdRng) -> Hosts {
    let v4 = (0..5)
        .map(|i| match i {
            0 => Ipv4Addr::new(198, 51, 100, rng.r#gen()),
            1 => Ipv4Addr::new(203, 0, 113, rng.r#gen()),
            2 => Ipv4Addr::new(192, 0, 2, rng.r#gen()),
            _ => Ipv4Addr::from(rng.r#gen::<u32>() | 0x0100_0000),
        })
        .collect();
    let v6 = (0..5)
        .map(|i| match i {
            0 | 1 => Ipv6Addr::from((0x2001_0db8_0000_u128 << 80) | u128::from(rng.r#gen::<u64>())),
            _ => Ipv6Addr::from(rng.r#gen::<u128>() | (0x2000_u128 << 112)),
        })
        .collect();
    Hosts { v4, v6 }
}

fn port_range(rng: &mut StdRng) -> PortRange {
    match rng.gen_range(0..5) {
        0 | 1 => PortRange { from: 0, to: 65535 },
        2 => {
            let p = *[22u16, 53, 80, 443, 8080].choose(rng).unwrap_or(&80);
            PortRange { from: p, to: p }
        }
        3 => PortRange { from: 1024, to: 65535 },
        _ => {
            let from = rng.gen_range(0..60000);
            PortRange { from, to: from + rng.gen_range(0..5000) }
        }
    }
}

fn protocol(rng: &mut StdRng, v6: bool) -> Protocol {
    match rng.gen_range(0..16) {
        0 | 1 => Protocol::All,
        2..=6 => Protocol::Tcp(port_range(rng)),
        7..=10 => Protocol::Udp(port_range(rng)),
        11..=13 => {
            let m = match rng.gen_range(0..3) {
                0 => IcmpMatch::All,
                1 => IcmpMatch::Type { icmp_type: if v6 { 128 } else { 8 } },
                _ => IcmpMatch::Type { icmp_type: if v6 { 2 } else { 3 } },
            };
            if v6 { Protocol::Icmpv6(m) } else { Protocol::Icmp(m) }
        }
        _ => Protocol::Number(*[47u8, 50, 132].choose(rng).unwrap_or(&47)),
    }
}

/// A rule whose source is everything of one family, written as AWS would: `0.0.0.0/0`,
/// `::/0`, or a host address with /0.
fn everywhere(v6: bool, rng: &mut StdRng) -> (PeerSource, Vec<IpNet>) {
    if v6 {
        (PeerSource::CidrIpv6("::/0".to_owned()), vec!["::/0".parse().expect("net")])
    } else if rng.gen_bool(0.2) {
        (PeerSource::Cidr("203.0.113.5/0".to_owned()), vec!["0.0.0.0/0".parse().expect("net")])
    } else {
        (PeerSource::Cidr("0.0.0.0/0".to_owned()), vec!["0.0.0.0/0".parse().expect("net")])
    }
}

fn random_source(rng: &mut StdRng, h: &Hosts, v6: bool) -> (PeerSource, Vec<IpNet>) {
    let host = |rng: &mut StdRng| -> IpAddr {
        if v6 {
            IpAddr::V6(*h.v6.choose(rng).expect("hosts"))
        } else {
            IpAddr::V4(*h.v4.choose(rng).expect("hosts"))
        }
    };
    match rng.gen_range(0..10) {
        0..=3 => everywhere(v6, rng),
        4..=6 => {
            let a = host(rng);
            let len = if v6 {
                *[128u8, 64, 48].choose(rng).unwrap_or(&64)
            } else {
                *[32u8, 24, 16].choose(rng).unwrap_or(&24)
            };
            let net = IpNet::new(a, len).expect("prefix").trunc();
            let text = net.to_string();
            (if v6 { PeerSource::CidrIpv6(text) } else { PeerSource::Cidr(text) }, vec![net])
        }
        7 => {
            // A prefix list that happens to contain everything: still not "all traffic"
            // in AWS's untracked rule.
            let all: IpNet =
                if v6 { "::/0".parse().expect("net") } else { "0.0.0.0/0".parse().expect("net") };
            (PeerSource::PrefixList("pl-0123".to_owned()), vec![all])
        }
        _ => {
            let members = (0..rng.gen_range(1..=3)).map(|_| IpNet::from(host(rng))).collect();
            (PeerSource::Group("sg-peers".to_owned()), members)
        }
    }
}

fn random_rules(rng: &mut StdRng, h: &Hosts, dir: Direction, count: usize, tag: &str) -> Vec<ResolvedRule> {
    (0..count)
        .map(|i| {
            let v6 = rng.gen_bool(0.45);
            let (source, peers) = random_source(rng, h, v6);
            ResolvedRule {
                id: format!("sgr-{tag}{}{i:02}", dir.as_str().chars().next().unwrap_or('x')),
                group_id: "sg-random".to_owned(),
                direction: dir,
                protocol: protocol(rng, v6),
                source,
                peers,
            }
        })
        .collect()
}

/// The all-traffic rules of the default group (or all ports of TCP/UDP), per family:
/// what makes a /0 rule's flows untracked in the other direction.
fn answer_everything(rng: &mut StdRng, dir: Direction, v6: bool) -> ResolvedRule {
    let (source, peers) = everywhere(v6, rng);
    let protocol = match rng.gen_range(0..4) {
        0 | 1 => Protocol::All,
        2 => Protocol::Tcp(PortRange { from: 0, to: 65535 }),
        _ => Protocol::Udp(PortRange { from: 0, to: 65535 }),
    };
    ResolvedRule {
        id: format!("sgr-all-{}-{}", dir.as_str(), if v6 { 6 } else { 4 }),
        group_id: "sg-default".to_owned(),
        direction: dir,
        protocol,
        source,
        peers,
    }
}

fn base_policy(
    rng: &mut StdRng,
    h: &Hosts,
    eni: usize,
    own: (Ipv4Addr, Ipv6Addr),
    timeouts: Timeouts,
) -> InterfacePolicy {
    let (n_in, n_out) = (rng.gen_range(1..=8), rng.gen_range(0..=6));
    let mut ingress = random_rules(rng, h, Direction::Ingress, n_in, "");
    let mut egress = random_rules(rng, h, Direction::Egress, n_out, "");
    for v6 in [false, true] {
        if rng.gen_bool(0.6) {
            egress.push(answer_everything(rng, Direction::Egress, v6));
        }
        if rng.gen_bool(0.3) {
            ingress.push(answer_everything(rng, Direction::Ingress, v6));
        }
    }
    InterfacePolicy {
        interface_id: format!("eni-{eni}"),
        addresses: vec![IpAddr::V4(own.0), IpAddr::V6(own.1)],
        ingress,
        egress,
        exempt: vec![
            IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            "fd00:ec2::254".parse().expect("address"),
        ],
        timeouts,
        ..InterfacePolicy::default()
    }
}

/// Variants of a policy: itself, some rules removed, the untracked-making rules removed.
fn variants(rng: &mut StdRng, base: &InterfacePolicy) -> Vec<InterfacePolicy> {
    let mut out = vec![base.clone()];
    let mut fewer = base.clone();
    fewer.ingress.retain(|_| rng.gen_bool(0.6));
    fewer.egress.retain(|_| rng.gen_bool(0.6));
    out.push(fewer);
    if rng.gen_bool(0.6) {
        let mut tracked = base.clone();
        let family = rng.gen_range(0..3); // 0: IPv4, 1: IPv6, 2: both
        let keep = |r: &ResolvedRule| {
            let v6 = matches!(r.peers.first(), Some(IpNet::V6(_)));
            !(r.id.starts_with("sgr-all") && (family == 2 || (family == 1) == v6))
        };
        tracked.ingress.retain(keep);
        tracked.egress.retain(keep);
        out.push(tracked);
    }
    out
}

fn random_timeouts(rng: &mut StdRng) -> Timeouts {
    if rng.gen_bool(0.5) {
        return Timeouts::DEFAULT;
    }
    let mut t = || rng.gen_range(2..=20);
    Timeouts { tcp_established: t(), tcp_other: t(), udp: t(), udp_stream: t(), icmp: t(), other: t() }
}

// ---------------------------------------------------------------------------------
// The links

struct Variant {
    policy: InterfacePolicy,
    compiled: CompiledInterface,
    program: LoadedProgram,
    /// Match set id by its rule list, per direction.
    set_ids: [HashMap<Vec<String>, u32>; 2],
    /// Shadow of the rule-hit counters, per direction.
    hits: [Vec<u64>; 2],
}

struct Eni {
    own4: Ipv4Addr,
    own6: Ipv6Addr,
    variants: Vec<Variant>,
    current: usize,
    state: LinkState,
    /// Shadow of the link's `STATS`.
    stats: Vec<Counter>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

fn dir_code(d: Direction) -> u32 {
    match d {
        Direction::Ingress => direction::INGRESS,
        Direction::Egress => direction::EGRESS,
    }
}

fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

fn load_variant(policy: InterfacePolicy, opts: &LoadOptions) -> Variant {
    let compiled = compile(&policy, &Limits::default()).expect("policy compiles");
    let program = match load(&compiled, opts) {
        Ok(p) => p,
        Err(e) => panic!("loading the programs: {}", error_chain(&e)),
    };
    let ids = |d: Direction| -> HashMap<Vec<String>, u32> {
        compiled.image(d).match_sets.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect()
    };
    let set_ids = [ids(Direction::Ingress), ids(Direction::Egress)];
    let hits = [vec![0; compiled.ingress.match_sets.len()], vec![0; compiled.egress.match_sets.len()]];
    Variant { policy, compiled, program, set_ids, hits }
}

// ---------------------------------------------------------------------------------
// Conversations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Echo,
    /// ICMP of a non-echo, non-error type.
    IcmpOther(u8),
    Other,
}

#[derive(Clone, Debug)]
struct Conversation {
    eni: usize,
    local: IpAddr,
    remote: IpAddr,
    proto: u8,
    kind: Kind,
    local_port: u16,
    remote_port: u16,
    echo_id: u16,
    initiator: Direction,
    sent: usize,
}

/// One packet of a trace, with what the frame builder and the model need.
#[derive(Clone, Debug)]
struct Step {
    eni: usize,
    direction: Direction,
    packet: StatefulPacket,
    opts: FrameOptions,
    note: &'static str,
}

impl Conversation {
    fn new(rng: &mut StdRng, eni: usize, e: &Eni, h: &Hosts) -> Conversation {
        let v6 = rng.gen_bool(0.45);
        let remote = match rng.gen_range(0..20) {
            0 => {
                if v6 {
                    "fd00:ec2::254".parse().expect("address")
                } else {
                    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))
                }
            }
            1 => {
                if v6 {
                    IpAddr::V6(Ipv6Addr::from(rng.r#gen::<u128>()))
                } else {
                    IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>()))
                }
            }
            _ => {
                if v6 {
                    IpAddr::V6(*h.v6.choose(rng).expect("hosts"))
                } else {
                    IpAddr::V4(*h.v4.choose(rng).expect("hosts"))
                }
            }
        };
        let local = if v6 { IpAddr::V6(e.own6) } else { IpAddr::V4(e.own4) };
        let (proto, kind) = match rng.gen_range(0..20) {
            0..=7 => (proto::TCP, Kind::Tcp),
            8..=12 => (proto::UDP, Kind::Udp),
            13..=15 => (if v6 { proto::ICMPV6 } else { proto::ICMP }, Kind::Echo),
            16 => {
                let t = if v6 {
                    *[139u8, 200].choose(rng).unwrap_or(&200)
                } else {
                    *[13u8, 14, 5].choose(rng).unwrap_or(&13)
                };
                (if v6 { proto::ICMPV6 } else { proto::ICMP }, Kind::IcmpOther(t))
            }
            _ => (*[47u8, 50, 132].choose(rng).unwrap_or(&47), Kind::Other),
        };
        let service = *[22u16, 53, 80, 443, 8080, 3389].choose(rng).unwrap_or(&443);
        let ephemeral = rng.gen_range(1024..=65535);
        let initiator = if rng.gen_bool(0.5) { Direction::Egress } else { Direction::Ingress };
        let (local_port, remote_port) = match initiator {
            Direction::Egress => (ephemeral, service),
            Direction::Ingress => (service, ephemeral),
        };
        let (local_port, remote_port) =
            if rng.gen_bool(0.1) { (rng.r#gen(), rng.r#gen()) } else { (local_port, remote_port) };
        Conversation {
            eni,
            local,
            remote,
            proto,
            kind,
            local_port,
            remote_port,
            echo_id: rng.gen_range(1..=u16::MAX),
            initiator,
            sent: 0,
        }
    }

    /// The next packet of the conversation, from one side or the other.
    fn next(&mut self, rng: &mut StdRng) -> (Direction, Packet, Transport) {
        let from_initiator = match self.sent {
            0 => true,
            1 => rng.gen_bool(0.2),
            _ => rng.gen_bool(0.5),
        };
        let direction = if from_initiator { self.initiator } else { opposite(self.initiator) };
        let (src, dst, sport, dport) = match direction {
            Direction::Egress => (self.local, self.remote, self.local_port, self.remote_port),
            Direction::Ingress => (self.remote, self.local, self.remote_port, self.local_port),
        };
        let mut transport = Transport::default();
        let l4 = match self.kind {
            Kind::Tcp => {
                use tcp_flags::{ACK, FIN, RST, SYN};
                transport.tcp_flags = if self.sent == 0 {
                    if rng.gen_bool(0.85) { SYN } else { ACK } // ACK: a connection older than the agent
                } else if self.sent == 1 && !from_initiator {
                    if rng.gen_bool(0.9) { SYN | ACK } else { RST | ACK }
                } else {
                    *[ACK, ACK, ACK | 0x08, ACK | 0x08, FIN | ACK, RST, RST | ACK, SYN]
                        .choose(rng)
                        .unwrap_or(&ACK)
                };
                L4::Ports { src: sport, dst: dport }
            }
            Kind::Udp => {
                // Something in the transport so that the frame builder uses it.
                transport.tcp_flags = 0;
                transport.icmp_id = 1;
                L4::Ports { src: sport, dst: dport }
            }
            Kind::Echo => {
                transport.icmp_id = self.echo_id;
                let v6 = self.proto == proto::ICMPV6;
                let icmp_type = match (from_initiator, v6) {
                    (true, false) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (false, true) => 129,
                };
                L4::Icmp { icmp_type, code: 0 }
            }
            Kind::IcmpOther(t) => {
                transport.icmp_id = 1;
                L4::Icmp { icmp_type: if from_initiator { t } else { t.wrapping_add(1) }, code: 0 }
            }
            Kind::Other => {
                transport.icmp_id = 1;
                L4::None
            }
        };
        self.sent += 1;
        (direction, Packet { src, dst, proto: self.proto, l4, fragment: Fragment::None }, transport)
    }
}

/// An ICMP error about `quoted` (which travelled in `quoted_dir`), travelling the
/// other way, from the quoted packet's destination or a router.
fn error_about(
    rng: &mut StdRng,
    quoted: &Packet,
    quoted_transport: &Transport,
    quoted_dir: Direction,
) -> (Direction, Packet, Transport) {
    let v6 = quoted.src.is_ipv6();
    let direction = opposite(quoted_dir);
    let (src, dst) = match direction {
        // Coming in: from the peer or a router on the way, to us.
        Direction::Ingress => {
            let router = if v6 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xeeee, 0, 0, 0, 0, rng.gen_range(1..9)))
            } else {
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, rng.gen_range(1..9)))
            };
            (if rng.gen_bool(0.5) { quoted.dst } else { router }, quoted.src)
        }
        // Going out: we answer the sender.
        Direction::Egress => (quoted.dst, quoted.src),
    };
    let (proto, icmp_type, code) = if v6 {
        let t = *[1u8, 2, 3, 4].choose(rng).unwrap_or(&2);
        (proto::ICMPV6, t, 0)
    } else {
        let (t, c) = *[(3u8, 4u8), (3, 3), (3, 1), (11, 0), (12, 0)].choose(rng).unwrap_or(&(3, 4));
        (proto::ICMP, t, c)
    };
    let embedded = Embedded {
        src: quoted.src,
        dst: quoted.dst,
        proto: quoted.proto,
        l4: quoted.l4,
        icmp_id: quoted_transport.icmp_id,
    };
    let transport = Transport { tcp_flags: 0, icmp_id: 0, embedded: Some(embedded) };
    (
        direction,
        Packet { src, dst, proto, l4: L4::Icmp { icmp_type, code }, fragment: Fragment::None },
        transport,
    )
}

fn frame_options(rng: &mut StdRng, packet: &Packet, transport: Transport) -> FrameOptions {
    let mut opts = FrameOptions { transport, ..FrameOptions::default() };
    if rng.gen_bool(0.1) {
        opts.vlan_tags = vec![rng.gen_range(1..4095)];
    }
    if packet.src.is_ipv4() && rng.gen_bool(0.1) {
        opts.ipv4_options_len = 4 * rng.gen_range(1..=10);
    }
    if packet.src.is_ipv6() && rng.gen_bool(0.1) {
        opts.ipv6_ext_headers = vec![0, 60];
    }
    if rng.gen_bool(0.1) {
        opts.ethernet_padding = rng.gen_range(1..=20);
    }
    opts.payload_len = rng.gen_range(0..=16);
    opts
}

/// The steps of one trace, generated up front (the conversations do not depend on
/// the verdicts: a real peer retries whatever happens).
fn trace(rng: &mut StdRng, enis: &[Eni], h: &Hosts) -> Vec<Step> {
    let len = rng.gen_range(2..=MAX_TRACE_LEN);
    let mut convs: Vec<Conversation> = Vec::new();
    let mut sent: Vec<(usize, Direction, Packet, Transport)> = Vec::new();
    let mut pending_later: Vec<(usize, Direction, Packet)> = Vec::new();
    let mut steps = Vec::with_capacity(len);
    while steps.len() < len {
        let roll = rng.gen_range(0..100);
        let (eni, direction, packet, transport, note) = if roll < 6 && !sent.is_empty() {
            let (eni, d, p, t) = sent.choose(rng).cloned().expect("non-empty");
            let (ed, ep, et) = error_about(rng, &p, &t, d);
            (eni, ed, ep, et, "icmp error about a sent packet")
        } else if roll < 8 {
            // An error quoting a packet that was never sent.
            let eni = rng.gen_range(0..enis.len());
            let mut c = Conversation::new(rng, eni, &enis[eni], h);
            let (d, p, t) = c.next(rng);
            let (ed, ep, et) = error_about(rng, &p, &t, d);
            (eni, ed, ep, et, "icmp error about nothing sent")
        } else if roll < 12 && !pending_later.is_empty() {
            let i = rng.gen_range(0..pending_later.len());
            let (eni, d, p) = pending_later.swap_remove(i);
            (eni, d, p, Transport { icmp_id: 1, ..Transport::default() }, "later fragment")
        } else if roll < 35 || convs.is_empty() {
            let eni = rng.gen_range(0..enis.len());
            let mut c = Conversation::new(rng, eni, &enis[eni], h);
            let (d, p, t) = c.next(rng);
            convs.push(c);
            (eni, d, p, t, "new conversation")
        } else {
            let i = rng.gen_range(0..convs.len());
            let c = &mut convs[i];
            let (d, p, t) = c.next(rng);
            (c.eni, d, p, t, "conversation")
        };
        let mut packet = packet;
        if packet.fragment == Fragment::None && note != "later fragment" && rng.gen_bool(0.04) {
            let id = if packet.src.is_ipv4() { u32::from(rng.r#gen::<u16>()) } else { rng.r#gen() };
            packet.fragment = Fragment::First(id);
            pending_later.push((
                eni,
                direction,
                Packet { l4: L4::None, fragment: Fragment::Later(id), ..packet },
            ));
        }
        // Sometimes the packet goes through another ENI than its own.
        let (eni, note) = if enis.len() > 1 && rng.gen_bool(0.05) {
            ((eni + rng.gen_range(1..enis.len())) % enis.len(), "through another ENI")
        } else {
            (eni, note)
        };
        if packet.fragment != Fragment::None || note.starts_with("icmp error") {
            // Errors and fragments are not quoted (keeps quoted headers simple).
        } else {
            sent.push((eni, direction, packet, transport));
        }
        let opts = frame_options(rng, &packet, transport);
        steps.push(Step { eni, direction, packet: StatefulPacket { packet, transport }, opts, note });
    }
    steps
}

/// A time advance: 0, or whole seconds plus [`ADVANCE_FRACTION_NS`].
fn advance(rng: &mut StdRng) -> u64 {
    let seconds = match rng.gen_range(0..100) {
        0..=49 => return 0,
        50..=74 => 0,
        75..=89 => rng.gen_range(1..=25),
        90..=97 => rng.gen_range(26..=700),
        _ => rng.gen_range(432_000..=440_000),
    };
    seconds * NS + ADVANCE_FRACTION_NS
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the struct it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * NS + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------
// The run

#[derive(Default)]
struct Run {
    traces: usize,
    packets: usize,
    mismatches: Vec<String>,
    mismatched_traces: usize,
    outcomes: HashMap<(Direction, Verdict, Reason), usize>,
    /// Events the test is meant to exercise, counted from the model's view.
    events: HashMap<&'static str, usize>,
}

impl Run {
    fn mismatch(&mut self, text: String) {
        if self.mismatches.len() < 20 {
            self.mismatches.push(text);
        }
    }

    fn event(&mut self, name: &'static str) {
        *self.events.entry(name).or_default() += 1;
    }
}

struct Clock {
    now: u64,
}

fn counted_verdict(d: &Decision, mode: Mode) -> u32 {
    match (d.verdict, mode) {
        (Verdict::Allow, _) => verdict::ALLOW,
        (Verdict::Drop, Mode::Enforce) => verdict::DROP,
        (Verdict::Drop, Mode::Audit) => verdict::AUDIT,
    }
}

/// Runs one step through the kernel and the model; returns a mismatch description.
fn step(enis: &mut [Eni], s: &Step, clock: &Clock, mode: Mode, run: &mut Run) -> Option<String> {
    let e = &mut enis[s.eni];
    let var = &mut e.variants[e.current];
    let key = flow_key(s.direction, &s.packet);
    let before = e.state.flow(&key).copied();
    let timeouts = var.policy.timeouts;
    let decision = judge_stateful(&var.policy, s.direction, &s.packet, clock.now, &mut e.state);
    // Events.
    if before.is_some_and(|f| is_expired(&f, &timeouts, clock.now)) {
        run.event("packet of an expired flow");
    }
    if decision.reason == Reason::Tracked {
        if s.packet.transport.embedded.is_some() {
            run.event("related icmp error");
        }
        if stateless(&var.policy, s.direction, &s.packet.packet).verdict == Verdict::Drop {
            run.event("tracked where the rules say no");
        }
    }
    if decision.reason == Reason::Rule
        && matches!(s.packet.packet.proto, proto::TCP | proto::UDP)
        && e.state.flow(&key).is_none()
    {
        run.event("untracked allowed flow");
    }
    if let Some(f) = e.state.flow(&key) {
        match f.state {
            flow_state::UDP_STREAM => run.event("udp stream"),
            flow_state::TCP_CLOSING => run.event("tcp closing"),
            _ => {}
        }
    }
    if s.note == "through another ENI" {
        run.event("through another ENI");
    }
    *run.outcomes.entry((s.direction, decision.verdict, decision.reason)).or_default() += 1;

    // The kernel.
    let bytes = frame::build(&s.packet.packet, &s.opts);
    let offset = clock.now.wrapping_sub(monotonic_ns());
    if let Err(err) = var.program.set_clock_offset(offset) {
        return Some(format!("setting CLOCK: {}", error_chain(&err)));
    }
    let action = match var.program.test_run(&bytes, s.direction) {
        Ok(a) => a,
        Err(err) => return Some(format!("test run: {}", error_chain(&err))),
    };
    let counted = counted_verdict(&decision, mode);
    let expected_action = match (s.direction, counted == verdict::DROP) {
        (Direction::Ingress, true) => xdp_action::DROP,
        (Direction::Ingress, false) => xdp_action::PASS,
        (Direction::Egress, true) => tc_action::DROP,
        (Direction::Egress, false) => tc_action::PASS,
    };
    let mut problems = Vec::new();
    if action != expected_action {
        problems.push(format!("action {action:#x}, expected {expected_action:#x}"));
    }
    let slot = stat_index(dir_code(s.direction), counted, decision.reason.code()) as usize;
    e.stats[slot].packets += 1;
    e.stats[slot].bytes += bytes.len() as u64;
    match var.program.stat(dir_code(s.direction), counted, decision.reason.code()) {
        Ok(got) if got == e.stats[slot] => {}
        Ok(got) => {
            let moved = describe_moved(&var.program, &e.stats);
            problems.push(format!("STATS slot {got:?}, expected {:?}; {moved}", e.stats[slot]));
        }
        Err(err) => problems.push(format!("reading STATS: {}", error_chain(&err))),
    }
    if decision.verdict == Verdict::Allow && decision.reason == Reason::Rule {
        let d = dir_index(s.direction);
        match var.set_ids[d].get(&decision.rules) {
            None => problems.push(format!(
                "no match set of the {:?} image is the model's rules {:?}",
                s.direction, decision.rules
            )),
            Some(&id) => {
                var.hits[d][id as usize] += 1;
                match var.program.rule_hit(s.direction, id) {
                    Ok(got) if got == var.hits[d][id as usize] => {}
                    Ok(got) => problems
                        .push(format!("rule hits of set {id} {got}, expected {}", var.hits[d][id as usize])),
                    Err(err) => problems.push(format!("reading rule hits: {}", error_chain(&err))),
                }
            }
        }
    }
    if problems.is_empty() { None } else { Some(format!("model {decision:?}: {}", problems.join("; "))) }
}

fn describe_moved(program: &LoadedProgram, expected: &[Counter]) -> String {
    let Ok(stats) = program.stats() else { return "cannot read STATS".to_owned() };
    let expected = sgmirror_dataplane::Stats::from_counters(expected.to_vec());
    stats
        .nonzero()
        .filter(|((d, v, r), c)| expected.get(*d, *v, *r) != *c)
        .map(|((d, v, r), c)| {
            format!("kernel counted {c:?} at (dir {d}, verdict {v}, reason {})", reason::NAMES[r as usize])
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Re-reads the kernel's counters into the shadows (after a mismatch).
fn resync(e: &mut Eni) {
    if let Ok(stats) = e.variants[0].program.stats() {
        for d in 0..direction::COUNT {
            for v in 0..verdict::COUNT {
                for r in 0..reason::COUNT {
                    e.stats[stat_index(d, v, r) as usize] = stats.get(d, v, r);
                }
            }
        }
    }
    for var in &mut e.variants {
        for d in [Direction::Ingress, Direction::Egress] {
            if let Ok(hits) = var.program.rule_hits(d) {
                var.hits[dir_index(d)] = hits;
            }
        }
    }
}

/// The live flows of the kernel and of the model at `now`, as key → (initiator, state).
fn compare_flows(e: &Eni, now: u64) -> Option<String> {
    let timeouts = e.variants[0].policy.timeouts;
    let kernel: HashMap<FlowKey, (u8, u8)> = match e.variants[0].program.flows() {
        Ok(flows) => flows
            .into_iter()
            .filter(|(_, v)| !is_expired(v, &timeouts, now))
            .map(|(k, v)| (k, (v.initiator, v.state)))
            .collect(),
        Err(err) => return Some(format!("reading FLOWS: {}", error_chain(&err))),
    };
    let model: HashMap<FlowKey, (u8, u8)> =
        e.state.live_flows(&timeouts, now).map(|(k, v)| (*k, (v.initiator, v.state))).collect();
    if kernel == model {
        return None;
    }
    let only_kernel: Vec<_> = kernel.iter().filter(|(k, v)| model.get(*k) != Some(v)).collect();
    let only_model: Vec<_> = model.iter().filter(|(k, v)| kernel.get(*k) != Some(v)).collect();
    Some(format!("live flows differ: kernel only {only_kernel:?}; model only {only_model:?}"))
}

fn check_group(
    rng: &mut StdRng,
    group: usize,
    traces: usize,
    pins: &std::path::Path,
    clock: &mut Clock,
    run: &mut Run,
) {
    let h = hosts(rng);
    let mode = if group % 8 == 7 { Mode::Audit } else { Mode::Enforce };
    let timeouts = random_timeouts(rng);
    let eni_count = rng.gen_range(2..=3);
    let mut enis: Vec<Eni> = (0..eni_count)
        .map(|i| {
            let own4 = Ipv4Addr::new(10, 0, i as u8, 5);
            let own6 = Ipv6Addr::new(0x2001, 0xdb8, 0xff, i as u16, 0, 0, 0, 5);
            let base = base_policy(rng, &h, i, (own4, own6), timeouts);
            let dir = pins.join(format!("g{group}-eni{i}"));
            let opts = LoadOptions {
                mode,
                shared_pin_dir: Some(dir),
                timeouts,
                flow_capacity: 4096,
                drop_log_rate: 0,
            };
            let variants = variants(rng, &base).into_iter().map(|p| load_variant(p, &opts)).collect();
            Eni {
                own4,
                own6,
                variants,
                current: 0,
                state: LinkState::default(),
                stats: vec![Counter::default(); STATS_LEN as usize],
            }
        })
        .collect();
    for t in 0..traces {
        let steps = trace(rng, &enis, &h);
        let mut log: Vec<String> = Vec::new();
        let mut failed = false;
        for (n, s) in steps.iter().enumerate() {
            clock.now += advance(rng);
            if rng.gen_bool(0.08) {
                let e = rng.gen_range(0..enis.len());
                enis[e].current = rng.gen_range(0..enis[e].variants.len());
                log.push(format!("  eni {e} now runs variant {}", enis[e].current));
                run.event("rule change");
            }
            log.push(format!(
                "  #{n} t={:.3}s eni {} variant {} {:?} {} {:?} {:?}",
                clock.now as f64 / 1e9,
                s.eni,
                enis[s.eni].current,
                s.direction,
                s.note,
                s.packet.packet,
                s.packet.transport
            ));
            run.packets += 1;
            if let Some(problem) = step(&mut enis, s, clock, mode, run) {
                let e = &enis[s.eni];
                run.mismatch(format!(
                    "group {group} ({mode:?}, {timeouts:?}) trace {t} packet #{n}: {problem}\ntrace so far:\n{}\npolicy of eni {}: ingress {:#?}\negress {:#?}",
                    log.join("\n"),
                    s.eni,
                    e.variants[e.current].policy.ingress,
                    e.variants[e.current].policy.egress,
                ));
                resync(&mut enis[s.eni]);
                failed = true;
                break;
            }
        }
        if !failed {
            for (i, e) in enis.iter().enumerate() {
                if let Some(problem) = compare_flows(e, clock.now) {
                    run.mismatch(format!(
                        "group {group} trace {t} eni {i} after the trace: {problem}\ntrace:\n{}",
                        log.join("\n")
                    ));
                    failed = true;
                    break;
                }
            }
        }
        run.mismatched_traces += usize::from(failed);
        run.traces += 1;
        for e in &mut enis {
            e.variants[0].program.clear_flows().expect("clearing FLOWS");
            e.variants[0].program.clear_fragments().expect("clearing FRAGS");
            e.state = LinkState::default();
        }
        // Time goes on between traces too (nothing carries over).
        clock.now += rng.gen_range(0..5) * NS;
    }
    // Whole counters: nothing moved anywhere else.
    for (i, e) in enis.iter().enumerate() {
        let stats = e.variants[0].program.stats().expect("reading STATS");
        let expected = sgmirror_dataplane::Stats::from_counters(e.stats.clone());
        if stats != expected {
            run.mismatch(format!(
                "group {group} eni {i}: final STATS differ: kernel {stats:?}, expected {expected:?}"
            ));
            run.mismatched_traces += 1;
        }
        for (v, var) in e.variants.iter().enumerate() {
            for d in [Direction::Ingress, Direction::Egress] {
                let hits = var.program.rule_hits(d).expect("reading rule hits");
                if hits != var.hits[dir_index(d)] {
                    run.mismatch(format!(
                        "group {group} eni {i} variant {v} {d:?}: final rule hits differ: kernel {hits:?}, expected {:?} ({} sets)",
                        var.hits[dir_index(d)],
                        var.compiled.image(d).match_sets.len()
                    ));
                    run.mismatched_traces += 1;
                }
            }
        }
    }
}

#[test]
fn kernel_agrees_with_the_model_on_random_traces() {
    let total: usize =
        std::env::var("SGMIRROR_TRACES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_TRACES);
    let seed: u64 =
        std::env::var("SGMIRROR_TRACE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("trace differential test: {total} traces, SGMIRROR_TRACE_SEED={seed}");
    let bpffs = private_bpffs();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run::default();
    // The model's clock starts anywhere; the kernel follows through CLOCK.
    let mut clock = Clock { now: rng.gen_range(NS..1_000_000 * NS) };
    let started = std::time::Instant::now();
    let groups = GROUPS.min(total.max(1));
    for group in 0..groups {
        let traces = total / groups + usize::from(group < total % groups);
        check_group(&mut rng, group, traces, &bpffs.0, &mut clock, &mut run);
    }
    let mut outcomes: Vec<String> = run
        .outcomes
        .iter()
        .map(|((d, v, r), n)| format!("{}/{v:?}/{}={n}", d.as_str(), reason::NAMES[r.code() as usize]))
        .collect();
    outcomes.sort();
    let mut events: Vec<String> = run.events.iter().map(|(e, n)| format!("{e}={n}")).collect();
    events.sort();
    eprintln!(
        "{} traces, {} packets, {groups} groups in {:.1?}\noutcomes: {}\nevents: {}",
        run.traces,
        run.packets,
        started.elapsed(),
        outcomes.join(" "),
        events.join(", ")
    );
    assert!(
        run.mismatched_traces == 0,
        "{} traces with mismatches (seed {seed}); the first {}:\n{}",
        run.mismatched_traces,
        run.mismatches.len(),
        run.mismatches.join("\n\n")
    );
    if total >= DEFAULT_TRACES {
        for event in [
            "packet of an expired flow",
            "related icmp error",
            "tracked where the rules say no",
            "untracked allowed flow",
            "udp stream",
            "tcp closing",
            "through another ENI",
            "rule change",
        ] {
            let n = run.events.get(event).copied().unwrap_or(0);
            assert!(n >= 50, "too few events `{event}`: {n} ({events:?})");
        }
        for d in [Direction::Ingress, Direction::Egress] {
            for (v, r) in [
                (Verdict::Allow, Reason::Tracked),
                (Verdict::Allow, Reason::Rule),
                (Verdict::Drop, Reason::NoRule),
                (Verdict::Allow, Reason::Exempt),
                (Verdict::Allow, Reason::Fragment),
            ] {
                let n = run.outcomes.get(&(d, v, r)).copied().unwrap_or(0);
                assert!(n >= 20, "too few {d:?}/{v:?}/{r:?}: {n} ({outcomes:?})");
            }
        }
    }
}
