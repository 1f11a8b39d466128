//! Trace properties: random policies × random packet sequences — replies, ICMP errors
//! about earlier packets, fragments, rule changes between packets, clock jumps past
//! timeouts — judged by the reference evaluator ([`judge_stateful`]) and by a second,
//! independent reading of the stateful design that works the way the kernel does:
//! from the compiled map images (two LPM lookups, the untracked flag bits, the
//! reversed lookup in the other direction's images) with its own flow table and
//! state machine. Every decision and the whole flow table must agree after every
//! packet; this is the userspace half of the kernel's trace-differential test.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sgmirror_common::{FRAG_TIMEOUT_NS, FlowKey, FlowValue, Timeouts, direction as dir, flow_state as st};
use sgmirror_policy::compile::{self, CompiledInterface, ImageLookup, Limits};
use sgmirror_policy::evaluator::{self, LinkState, judge_stateful};
use sgmirror_policy::exempt;
use sgmirror_policy::model::{
    Decision, Direction, Embedded, Fragment, InterfacePolicy, L4, Packet, Reason, StatefulPacket, Transport,
    Verdict, proto, tcp_flags,
};

use common::{Targets, packet_for, policy};

const S: u64 = 1_000_000_000;

// ---------------------------------------------------------------------------------
// The kernel's algorithm over map images
// ---------------------------------------------------------------------------------

/// What the kernel keeps per link: `FLOWS` and `FRAGS`.
#[derive(Default)]
struct KernelTables {
    flows: HashMap<FlowKey, FlowValue>,
    frags: HashMap<(IpAddr, IpAddr, u8, u32, Direction), u64>,
}

fn code(d: Direction) -> u8 {
    match d {
        Direction::Ingress => dir::INGRESS as u8,
        Direction::Egress => dir::EGRESS as u8,
    }
}

fn expired(v: &FlowValue, t: &Timeouts, now: u64) -> bool {
    now.saturating_sub(v.last_seen_ns) > u64::from(t.for_state(v.state)) * S
}

/// The state machine, written again from the design.
fn created_state(protocol: u8, flags: u8) -> u8 {
    let syn_only = flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0;
    match protocol {
        proto::TCP if syn_only => st::TCP_OPENING,
        proto::TCP => st::TCP_ESTABLISHED,
        proto::UDP => st::UDP_NEW,
        proto::ICMP | proto::ICMPV6 => st::ICMP,
        _ => st::OTHER,
    }
}

fn moved_state(v: &FlowValue, direction: u8, flags: u8) -> u8 {
    let from_initiator = direction == v.initiator;
    let fin_or_rst = flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
    match v.state {
        st::TCP_OPENING | st::TCP_ESTABLISHED if fin_or_rst => st::TCP_CLOSING,
        st::TCP_OPENING if !from_initiator => st::TCP_ESTABLISHED,
        st::UDP_NEW if !from_initiator => st::UDP_REPLIED,
        st::UDP_REPLIED if from_initiator => st::UDP_STREAM,
        s => s,
    }
}

fn is_error(p: &Packet) -> bool {
    matches!(
        (p.proto, p.l4),
        (proto::ICMP, L4::Icmp { icmp_type: 3 | 11 | 12, .. })
            | (proto::ICMPV6, L4::Icmp { icmp_type: 1..=4, .. })
    )
}

fn decision(verdict: Verdict, reason: Reason, rules: Vec<String>) -> Decision {
    Decision { verdict, reason, rules }
}

/// One packet, the kernel's way: the image lookups decide what the rules say.
fn kernel_judge(
    images: &CompiledInterface,
    timeouts: &Timeouts,
    direction: Direction,
    sp: &StatefulPacket,
    now: u64,
    k: &mut KernelTables,
) -> Decision {
    let p = &sp.packet;
    let image = images.image(direction);
    let lookup = image.lookup(p.peer(direction), p.proto, p.l4);
    let d = 'judged: {
        if lookup == ImageLookup::Exempt {
            break 'judged decision(Verdict::Allow, Reason::Exempt, Vec::new());
        }
        if let Fragment::Later(id) = p.fragment {
            let fresh = k
                .frags
                .get(&(p.src, p.dst, p.proto, id, direction))
                .is_some_and(|&t| now.saturating_sub(t) < FRAG_TIMEOUT_NS);
            let v = if fresh { Verdict::Allow } else { Verdict::Drop };
            break 'judged decision(v, Reason::Fragment, Vec::new());
        }
        if exempt::is_protocol_exempt(p) {
            break 'judged decision(Verdict::Allow, Reason::Exempt, Vec::new());
        }
        if let Some(key) = evaluator::related_flow_key(direction, sp)
            && k.flows.get(&key).is_some_and(|v| !expired(v, timeouts, now))
        {
            break 'judged decision(Verdict::Allow, Reason::Tracked, Vec::new());
        }
        let key = evaluator::flow_key(direction, sp);
        if let Some(v) = k.flows.get_mut(&key) {
            if expired(v, timeouts, now) {
                k.flows.remove(&key);
            } else {
                v.state = moved_state(v, code(direction), sp.transport.tcp_flags);
                v.last_seen_ns = now;
                break 'judged decision(Verdict::Allow, Reason::Tracked, Vec::new());
            }
        }
        let ImageLookup::Allowed { match_id, flags } = lookup else {
            break 'judged decision(Verdict::Drop, Reason::NoRule, Vec::new());
        };
        let bit = compile::untracked_flag(p.proto);
        let other = evaluator::opposite(direction);
        let l4 = match p.l4 {
            L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
            l4 => l4,
        };
        let reverse_flags = match images.image(other).lookup(p.peer(direction), p.proto, l4) {
            ImageLookup::Allowed { flags, .. } => flags,
            _ => 0,
        };
        if !is_error(p) && flags & bit == 0 && reverse_flags & bit == 0 {
            let value = FlowValue {
                last_seen_ns: now,
                initiator: code(direction),
                state: created_state(p.proto, sp.transport.tcp_flags),
                _pad: [0; 6],
            };
            k.flows.insert(key, value);
        }
        decision(Verdict::Allow, Reason::Rule, image.match_sets[match_id as usize].clone())
    };
    if let (Verdict::Allow, Fragment::First(id)) = (d.verdict, p.fragment) {
        k.frags.insert((p.src, p.dst, p.proto, id, direction), now);
    }
    d
}

// ---------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------

/// What a step sends, relative to one of the trace's base packets.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The base packet again.
    Forward,
    /// Its reply: the other direction, addresses and ports swapped, echo request ↔
    /// reply.
    Reverse,
    /// An ICMP error about it, sent back towards its source.
    Error { icmp_type: u8, code: u8, from_router: bool },
    /// A later fragment of it.
    Later,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    base: prop::sample::Index,
    kind: Kind,
    tcp_flags: u8,
    icmp_id: u16,
    wait: u64,
    /// Switch to the other policy before this packet.
    switch: bool,
}

/// Waits around the interesting boundaries (the default and the short timeouts).
const WAITS: [u64; 14] = [
    0,
    0,
    0,
    0,
    1,
    S,
    5 * S,
    5 * S + 1,
    30 * S,
    30 * S + 1,
    120 * S + 1,
    180 * S + 1,
    600 * S + 1,
    86_400 * S,
];

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Forward),
        4 => Just(Kind::Reverse),
        2 => (0u8..6, 0u8..5, any::<bool>()).prop_map(|(t, code, from_router)| Kind::Error { icmp_type: t, code, from_router }),
        1 => Just(Kind::Later),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let flags = prop::sample::select(vec![
        tcp_flags::SYN,
        tcp_flags::SYN | tcp_flags::ACK,
        tcp_flags::ACK,
        tcp_flags::ACK,
        tcp_flags::FIN | tcp_flags::ACK,
        tcp_flags::RST,
        tcp_flags::SYN | tcp_flags::FIN,
        0,
    ]);
    (
        any::<prop::sample::Index>(),
        kind(),
        flags,
        0u16..3,
        prop::sample::select(&WAITS[..]),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(base, kind, tcp_flags, icmp_id, wait, switch)| Step {
            base,
            kind,
            tcp_flags,
            icmp_id,
            wait,
            switch,
        })
}

fn timeouts() -> impl Strategy<Value = Timeouts> {
    prop_oneof![
        Just(Timeouts::DEFAULT),
        Just(Timeouts { tcp_established: 60, tcp_other: 5, udp: 5, udp_stream: 30, icmp: 5, other: 30 }),
    ]
}

/// A policy, the policy it changes into (some rules removed), base packets and steps.
#[derive(Clone, Debug)]
struct Trace {
    before: InterfacePolicy,
    after: InterfacePolicy,
    bases: Vec<(Direction, Packet)>,
    steps: Vec<Step>,
}

fn trace(steps: usize) -> impl Strategy<Value = Trace> {
    (policy(), timeouts()).prop_flat_map(move |(mut before, timeouts)| {
        before.timeouts = timeouts;
        let t = Targets::of(&before);
        let n_rules = before.ingress.len() + before.egress.len();
        (
            Just(before),
            prop::collection::vec(prop::bool::weighted(0.3), n_rules),
            prop::collection::vec(packet_for(&t), 1..12),
            prop::collection::vec(step(), steps),
        )
            .prop_map(|(before, removed, bases, steps)| {
                let mut after = before.clone();
                let mut keep = removed.iter().map(|r| !r);
                after.ingress.retain(|_| keep.next().unwrap_or(true));
                after.egress.retain(|_| keep.next().unwrap_or(true));
                Trace { before, after, bases, steps }
            })
    })
}

fn swap(l4: L4) -> L4 {
    match l4 {
        L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
        L4::Icmp { icmp_type, code } => {
            let t = match icmp_type {
                8 => 0,
                0 => 8,
                128 => 129,
                129 => 128,
                t => t,
            };
            L4::Icmp { icmp_type: t, code }
        }
        L4::None => L4::None,
    }
}

/// The packet a step sends, with its direction.
fn build(step: &Step, (direction, base): (Direction, Packet)) -> (Direction, StatefulPacket) {
    let transport = Transport { tcp_flags: step.tcp_flags, icmp_id: step.icmp_id, embedded: None };
    let whole = Packet { fragment: Fragment::None, ..base };
    match step.kind {
        Kind::Forward => (direction, StatefulPacket { packet: base, transport }),
        Kind::Reverse => {
            let packet = Packet { src: base.dst, dst: base.src, l4: swap(base.l4), ..whole };
            (evaluator::opposite(direction), StatefulPacket { packet, transport })
        }
        Kind::Later => {
            let id = match base.fragment {
                Fragment::First(id) | Fragment::Later(id) => id,
                Fragment::None => 1,
            };
            let packet = Packet { l4: L4::None, fragment: Fragment::Later(id), ..base };
            (direction, StatefulPacket { packet, transport })
        }
        Kind::Error { icmp_type, code, from_router } => {
            let v4 = base.src.is_ipv4();
            let (protocol, icmp_type) = if v4 {
                (proto::ICMP, [3, 11, 12, 3, 0, 5][usize::from(icmp_type)])
            } else {
                (proto::ICMPV6, [1, 2, 3, 4, 128, 2][usize::from(icmp_type)])
            };
            let router: IpAddr =
                if v4 { "198.51.100.1".parse().unwrap() } else { "2001:db8:1::1".parse().unwrap() };
            let src = if from_router { router } else { base.dst };
            let embedded = Embedded {
                src: base.src,
                dst: base.dst,
                proto: base.proto,
                l4: base.l4,
                icmp_id: step.icmp_id,
            };
            let packet = Packet {
                src,
                dst: base.src,
                proto: protocol,
                l4: L4::Icmp { icmp_type, code },
                fragment: Fragment::None,
            };
            let transport = Transport { tcp_flags: 0, icmp_id: 0, embedded: Some(embedded) };
            (evaluator::opposite(direction), StatefulPacket { packet, transport })
        }
    }
}

/// What a replay went through, to show that the generator reaches every path.
#[derive(Default, Debug)]
struct Coverage {
    outcomes: HashMap<(Verdict, Reason), usize>,
    /// ICMP errors allowed as tracked.
    tracked_errors: usize,
    /// TCP/UDP packets allowed by a rule that left no flow behind (untracked).
    untracked: usize,
    /// Flows removed because they had expired.
    expired: usize,
    /// Flows seen in each state.
    states: [usize; 9],
}

/// Replays a trace through both, adding to `seen`.
fn replay(trace: &Trace, seen: &mut Coverage) -> Result<(), TestCaseError> {
    let compile =
        |p: &InterfacePolicy| compile::compile(p, &Limits::default()).expect("a small policy compiles");
    let images = [compile(&trace.before), compile(&trace.after)];
    let policies = [&trace.before, &trace.after];
    let mut current = 0;
    let mut state = LinkState::default();
    let mut kernel = KernelTables::default();
    let mut now = 1_000 * S;
    for step in &trace.steps {
        now += step.wait;
        if step.switch {
            current = 1 - current;
        }
        let (direction, packet) = build(step, *step.base.get(&trace.bases));
        let policy = policies[current];
        let key = evaluator::flow_key(direction, &packet);
        let had_flow = state.flow(&key).is_some();
        let want = judge_stateful(policy, direction, &packet, now, &mut state);
        let got = kernel_judge(&images[current], &policy.timeouts, direction, &packet, now, &mut kernel);
        prop_assert_eq!(&got, &want, "{:?} {:?} at {}", direction, packet, now);
        let flows: HashMap<FlowKey, FlowValue> = state.flows().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(&flows, &kernel.flows, "flow tables after {:?} {:?}", direction, packet);
        // Without flows the answer is the stateless one.
        if want.reason != Reason::Tracked && !matches!(packet.packet.fragment, Fragment::Later(_)) {
            prop_assert_eq!(&want, &evaluator::verdict(policy, direction, &packet.packet));
        }
        *seen.outcomes.entry((want.verdict, want.reason)).or_default() += 1;
        seen.tracked_errors += usize::from(want.reason == Reason::Tracked && is_error(&packet.packet));
        let tcp_udp = matches!(packet.packet.proto, proto::TCP | proto::UDP);
        seen.untracked += usize::from(want.reason == Reason::Rule && tcp_udp && state.flow(&key).is_none());
        seen.expired += usize::from(had_flow && state.flow(&key).is_none());
        for (_, v) in state.flows() {
            seen.states[usize::from(v.state).min(8)] += 1;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_kernel_algorithm_over_images_agrees_with_the_evaluator(trace in trace(48)) {
        replay(&trace, &mut Coverage::default())?;
    }
}

/// Fixed-seed traces, with a check that every kind of stateful outcome occurs.
#[test]
fn fixed_traces_reach_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let mut seen = Coverage::default();
    for _ in 0..300 {
        let t = trace(64).new_tree(&mut runner).expect("trace").current();
        replay(&t, &mut seen).unwrap_or_else(|e| panic!("{e}\ntrace: {t:#?}"));
    }
    eprintln!("{seen:?}");
    let outcomes = &seen.outcomes;
    let count = |v, r| outcomes.get(&(v, r)).copied().unwrap_or(0);
    assert!(count(Verdict::Allow, Reason::Tracked) > 1_000, "{outcomes:?}");
    assert!(count(Verdict::Allow, Reason::Rule) > 1_000, "{outcomes:?}");
    assert!(count(Verdict::Drop, Reason::NoRule) > 1_000, "{outcomes:?}");
    assert!(count(Verdict::Allow, Reason::Fragment) > 20, "{outcomes:?}");
    assert!(seen.tracked_errors > 20, "{seen:?}");
    assert!(seen.untracked > 20, "{seen:?}");
    assert!(seen.expired > 20, "{seen:?}");
    for state in [
        st::TCP_OPENING,
        st::TCP_ESTABLISHED,
        st::TCP_CLOSING,
        st::UDP_NEW,
        st::UDP_REPLIED,
        st::UDP_STREAM,
        st::ICMP,
        st::OTHER,
    ] {
        assert!(seen.states[usize::from(state)] > 20, "state {state}: {seen:?}");
    }
}
