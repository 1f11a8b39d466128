//! The reference evaluator: a deliberately naive reading of the AWS documentation.
//!
//! It is the oracle for everything else — the compiled map images and the kernel
//! programs are tested against it packet by packet — so it favours being obviously
//! right over being fast: it walks every rule of the direction and asks "does this
//! rule allow this packet?". Security groups are allow-only and unordered
//! (`sg-semantics.md` §1.1), so the answer is the union of the rules that say yes.
//!
//! The steps run in the same order as in the kernel programs, because the order
//! decides the *reason* a packet gets, and the reason is compared too:
//!
//! 1. *stateful judging only* ([`judge_stateful`]), for a packet that is neither a
//!    later fragment nor exempt by protocol: an ICMP error about a tracked flow →
//!    allow, `tracked`; a packet of a tracked flow → allow, `tracked`, and the flow's
//!    entry is updated (see [`flow_key`] and `flows.rs`). The kernel looks the flow
//!    up first because that settles most packets with one hash lookup; flows are
//!    never created for exempt traffic, so only the reason of an exempt peer's packet
//!    on a flow created before its address became exempt depends on this;
//! 2. the peer address is exempt (AWS service addresses) → allow, `exempt`;
//! 3. a later fragment → allow, `fragment`, when its first fragment was allowed,
//!    otherwise drop, `fragment`;
//! 4. the packet is exempt by protocol (neighbour discovery, MLD, DHCP) → allow,
//!    `exempt`;
//! 5. the rules: allow, `rule`, with every allowing rule listed — and, when judging
//!    statefully, a new flow entry unless the flow is untracked (see [`is_untracked`]);
//!    otherwise drop, `no-rule`.
//!
//! An allowed first fragment (whatever the reason) is remembered so that its later
//! fragments pass. Malformed headers are a parsing matter and never reach the
//! evaluator. [`verdict`] and [`verdict_with_fragments`] judge with no flow state
//! (one new packet, as `explain` without a trace does); [`judge_stateful`] judges a
//! packet of a trace with the flow state of its link.

mod flows;
mod stateful;
mod untracked;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::exempt;
use crate::model::{
    Decision, Direction, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PortRange, Protocol, Reason,
    ResolvedRule, StatefulPacket, Transport, Verdict, proto,
};

pub use flows::{flow_key, is_expired, is_icmp_echo, is_icmp_error, related_flow_key};
pub use stateful::{LinkState, judge_stateful};
pub use untracked::{is_response_of_untracked, is_untracked};

/// How long a remembered first fragment admits its later fragments, as in the kernel.
pub use sgmirror_common::FRAG_TIMEOUT_NS;

/// Allowed first fragments, so that their later fragments can pass.
///
/// Keyed like the kernel's `FRAGS` table: addresses, protocol, identification and
/// direction. Stateless judging has no clock and never forgets; stateful judging
/// admits a later fragment only while its first fragment is younger than
/// [`FRAG_TIMEOUT_NS`] (on the same clock as the flows).
#[derive(Clone, Debug, Default)]
pub struct FragmentMemory {
    /// First fragments and when they passed.
    allowed: HashMap<FragmentKey, u64>,
}

/// What identifies the fragments of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
    direction: Direction,
}

impl FragmentKey {
    fn new(packet: &Packet, id: u32, direction: Direction) -> Self {
        Self { src: packet.src, dst: packet.dst, proto: packet.proto, id, direction }
    }
}

impl FragmentMemory {
    /// Number of remembered first fragments.
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Forgets every remembered first fragment.
    pub fn clear(&mut self) {
        self.allowed.clear();
    }

    /// Whether a later fragment with this key passes at `now` (`None`: no clock).
    fn admits(&self, key: &FragmentKey, now: Option<u64>) -> bool {
        match (self.allowed.get(key), now) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(&first_seen), Some(now)) => now.saturating_sub(first_seen) < FRAG_TIMEOUT_NS,
        }
    }

    /// Remembers an allowed first fragment (again: a repeat restarts its time).
    fn remember(&mut self, key: FragmentKey, now: Option<u64>) {
        self.allowed.insert(key, now.unwrap_or(0));
    }
}

/// Judges one packet with no fragment history: a later fragment is always dropped
/// (unless its peer is exempt).
pub fn verdict(policy: &InterfacePolicy, direction: Direction, packet: &Packet) -> Decision {
    verdict_with_fragments(policy, direction, packet, &mut FragmentMemory::default())
}

/// Judges one packet of a sequence, with no flow state: later fragments consult,
/// and allowed first fragments update, `memory`.
pub fn verdict_with_fragments(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &Packet,
    memory: &mut FragmentMemory,
) -> Decision {
    let packet = StatefulPacket { packet: *packet, transport: Transport::default() };
    judge(policy, direction, &packet, memory, None)
}

/// Every step of the module documentation; step 4 and the flow entries only when
/// `flows` is given.
fn judge(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &StatefulPacket,
    fragments: &mut FragmentMemory,
    flows: Option<&mut stateful::Flows<'_>>,
) -> Decision {
    let now = flows.as_ref().map(|f| f.now);
    let decision = decide(policy, direction, packet, fragments, flows);
    let p = &packet.packet;
    if let (Verdict::Allow, Fragment::First(id)) = (decision.verdict, p.fragment) {
        fragments.remember(FragmentKey::new(p, id, direction), now);
    }
    decision
}

/// Steps 1–5 of the module documentation.
fn decide(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &StatefulPacket,
    fragments: &FragmentMemory,
    mut flows: Option<&mut stateful::Flows<'_>>,
) -> Decision {
    let p = &packet.packet;
    let now = flows.as_ref().map(|f| f.now);
    let flow_candidate = !matches!(p.fragment, Fragment::Later(_)) && !exempt::is_protocol_exempt(p);
    if flow_candidate
        && let Some(flows) = flows.as_deref_mut()
        && flows.admit(&policy.timeouts, direction, packet)
    {
        return answer(Verdict::Allow, Reason::Tracked, Vec::new());
    }
    if policy.exempt.contains(&p.peer(direction)) {
        return answer(Verdict::Allow, Reason::Exempt, Vec::new());
    }
    if let Fragment::Later(id) = p.fragment {
        let verdict = if fragments.admits(&FragmentKey::new(p, id, direction), now) {
            Verdict::Allow
        } else {
            Verdict::Drop
        };
        return answer(verdict, Reason::Fragment, Vec::new());
    }
    if exempt::is_protocol_exempt(p) {
        return answer(Verdict::Allow, Reason::Exempt, Vec::new());
    }
    let rules = allowing_rules(policy, direction, p);
    if rules.is_empty() {
        return answer(Verdict::Drop, Reason::NoRule, rules);
    }
    if let Some(flows) = flows
        && creates_entry(policy, direction, packet, &rules)
    {
        flows.create(direction, packet);
    }
    answer(Verdict::Allow, Reason::Rule, rules)
}

/// Whether a packet the rules allow starts a tracked flow: not an ICMP error (they
/// never do), not untracked, not a response of an untracked flow.
fn creates_entry(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &StatefulPacket,
    allowing: &[String],
) -> bool {
    let p = &packet.packet;
    !is_icmp_error(p)
        && !is_untracked(policy, direction, p, allowing)
        && !is_response_of_untracked(policy, direction, p)
}

fn answer(verdict: Verdict, reason: Reason, rules: Vec<String>) -> Decision {
    Decision { verdict, reason, rules }
}

/// The ids of every rule of `direction` that allows the packet, sorted and once.
pub fn allowing_rules(policy: &InterfacePolicy, direction: Direction, packet: &Packet) -> Vec<String> {
    let mut rules: Vec<String> = policy
        .rules(direction)
        .iter()
        .filter(|rule| allows(rule, direction, packet))
        .map(|rule| rule.id.clone())
        .collect();
    rules.sort();
    rules.dedup();
    rules
}

/// The other direction.
pub fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

/// Whether one rule allows the packet: the peer is in one of the rule's prefixes
/// (same family) and the protocol, ports or ICMP type/code match.
pub fn allows(rule: &ResolvedRule, direction: Direction, packet: &Packet) -> bool {
    let peer = packet.peer(direction);
    rule.peers.iter().any(|net| net.contains(&peer)) && protocol_matches(&rule.protocol, packet)
}

/// Whether a rule's protocol part matches the packet.
///
/// TCP and UDP rules match the destination port in both directions; ICMP rules match
/// type and code; `-1` matches everything and a numbered protocol all its traffic.
pub fn protocol_matches(protocol: &Protocol, packet: &Packet) -> bool {
    match (*protocol, packet.l4) {
        (Protocol::All, _) => true,
        (Protocol::Number(n), _) => packet.proto == n,
        (Protocol::Tcp(range), L4::Ports { dst, .. }) => packet.proto == proto::TCP && in_range(range, dst),
        (Protocol::Udp(range), L4::Ports { dst, .. }) => packet.proto == proto::UDP && in_range(range, dst),
        (Protocol::Icmp(m), L4::Icmp { icmp_type, code }) => {
            packet.proto == proto::ICMP && icmp_matches(m, icmp_type, code)
        }
        (Protocol::Icmpv6(m), L4::Icmp { icmp_type, code }) => {
            packet.proto == proto::ICMPV6 && icmp_matches(m, icmp_type, code)
        }
        _ => false,
    }
}

fn in_range(range: PortRange, port: u16) -> bool {
    range.from <= port && port <= range.to
}

fn icmp_matches(m: IcmpMatch, icmp_type: u8, code: u8) -> bool {
    match m {
        IcmpMatch::All => true,
        IcmpMatch::Type { icmp_type: t } => t == icmp_type,
        IcmpMatch::TypeCode { icmp_type: t, code: c } => t == icmp_type && c == code,
    }
}

#[cfg(test)]
mod tests;
