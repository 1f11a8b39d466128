//! The reference evaluator: a deliberately naive reading of the AWS documentation.
//!
//! It is the oracle for everything else — the compiled map images and the kernel
//! program are tested against it packet by packet — so it favours being obviously
//! right over being fast: it walks every rule of the direction and asks "does this
//! rule allow this packet?". Security groups are allow-only and unordered
//! (`sg-semantics.md` §1.1), so the answer is the union of the rules that say yes.
//!
//! The steps run in the same order as in the kernel program, because the order
//! decides the *reason* a packet gets, and the reason is compared too:
//!
//! 1. the peer address is exempt (AWS service addresses) → allow, `exempt`;
//! 2. a later fragment → allow, `fragment`, when its first fragment was allowed,
//!    otherwise drop, `fragment`;
//! 3. the packet is exempt by protocol (neighbour discovery, MLD, DHCP) → allow,
//!    `exempt`;
//! 4. the rules: allow, `rule`, with every allowing rule listed; otherwise drop,
//!    `no-rule`.
//!
//! An allowed first fragment is remembered so that its later fragments pass.
//! Malformed headers are a parsing matter and never reach the evaluator.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::exempt;
use crate::model::{
    Decision, Direction, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PortRange, Protocol, Reason,
    ResolvedRule, Verdict, proto,
};

/// Allowed first fragments, so that their later fragments can pass.
///
/// Keyed like the kernel's `FRAGS` table: addresses, protocol, identification and
/// direction. The evaluator has no clock; the kernel's fragment timeout is not
/// modelled.
#[derive(Clone, Debug, Default)]
pub struct FragmentMemory {
    allowed: HashSet<FragmentKey>,
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
}

/// Judges one packet with no fragment history: a later fragment is always dropped
/// (unless its peer is exempt).
pub fn verdict(policy: &InterfacePolicy, direction: Direction, packet: &Packet) -> Decision {
    verdict_with_fragments(policy, direction, packet, &mut FragmentMemory::default())
}

/// Judges one packet of a sequence: later fragments consult, and allowed first
/// fragments update, `memory`.
pub fn verdict_with_fragments(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &Packet,
    memory: &mut FragmentMemory,
) -> Decision {
    let decision = decide(policy, direction, packet, memory);
    if let (Verdict::Allow, Fragment::First(id)) = (decision.verdict, packet.fragment) {
        memory.allowed.insert(FragmentKey::new(packet, id, direction));
    }
    decision
}

/// Steps 1–4 of the module documentation.
fn decide(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &Packet,
    memory: &FragmentMemory,
) -> Decision {
    if policy.exempt.contains(&packet.peer(direction)) {
        return answer(Verdict::Allow, Reason::Exempt, Vec::new());
    }
    if let Fragment::Later(id) = packet.fragment {
        let verdict = if memory.allowed.contains(&FragmentKey::new(packet, id, direction)) {
            Verdict::Allow
        } else {
            Verdict::Drop
        };
        return answer(verdict, Reason::Fragment, Vec::new());
    }
    if exempt::is_protocol_exempt(packet) {
        return answer(Verdict::Allow, Reason::Exempt, Vec::new());
    }
    let mut rules: Vec<String> = policy
        .rules(direction)
        .iter()
        .filter(|rule| allows(rule, direction, packet))
        .map(|rule| rule.id.clone())
        .collect();
    rules.sort();
    rules.dedup();
    if rules.is_empty() {
        answer(Verdict::Drop, Reason::NoRule, rules)
    } else {
        answer(Verdict::Allow, Reason::Rule, rules)
    }
}

fn answer(verdict: Verdict, reason: Reason, rules: Vec<String>) -> Decision {
    Decision { verdict, reason, rules }
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
mod tests {
    use super::*;
    use crate::model::PeerSource;
    use ipnet::IpNet;

    fn rule(id: &str, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
        ResolvedRule {
            id: id.to_owned(),
            group_id: "sg-web".to_owned(),
            direction: Direction::Ingress,
            protocol,
            source: PeerSource::Cidr(peers.first().copied().unwrap_or_default().to_owned()),
            peers: peers.iter().map(|p| p.parse::<IpNet>().unwrap()).collect(),
        }
    }

    fn tcp(from: u16, to: u16) -> Protocol {
        Protocol::Tcp(PortRange { from, to })
    }

    /// The classic web server of `examples/`: 80 and 443 from everywhere, RDP from one
    /// host, echo requests from one /24; everything out.
    fn web_server() -> InterfacePolicy {
        InterfacePolicy {
            interface_id: "eni-web".to_owned(),
            ingress: vec![
                rule("sgr-http4", tcp(80, 80), &["0.0.0.0/0"]),
                rule("sgr-http6", tcp(80, 80), &["::/0"]),
                rule("sgr-https4", tcp(443, 443), &["0.0.0.0/0"]),
                rule("sgr-https6", tcp(443, 443), &["::/0"]),
                rule("sgr-rdp", tcp(3389, 3389), &["203.0.113.5/32"]),
                rule(
                    "sgr-ping",
                    Protocol::Icmp(IcmpMatch::TypeCode { icmp_type: 8, code: 0 }),
                    &["198.51.100.0/24"],
                ),
            ],
            egress: vec![ResolvedRule {
                direction: Direction::Egress,
                ..rule("sgr-out", Protocol::All, &["0.0.0.0/0", "::/0"])
            }],
            exempt: crate::exempt::FIXED_ADDRESSES.to_vec(),
            ..InterfacePolicy::default()
        }
    }

    fn tcp_packet(src: &str, dst: &str, dport: u16) -> Packet {
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: proto::TCP,
            l4: L4::Ports { src: 40000, dst: dport },
            fragment: Fragment::None,
        }
    }

    fn icmp_packet(src: &str, proto: u8, icmp_type: u8, code: u8) -> Packet {
        let dst = if src.contains(':') { "2001:db8::1" } else { "10.0.0.5" };
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            l4: L4::Icmp { icmp_type, code },
            fragment: Fragment::None,
        }
    }

    fn allowed_by(rules: &[&str]) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            reason: Reason::Rule,
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn dropped(reason: Reason) -> Decision {
        Decision { verdict: Verdict::Drop, reason, rules: Vec::new() }
    }

    fn exempted() -> Decision {
        Decision { verdict: Verdict::Allow, reason: Reason::Exempt, rules: Vec::new() }
    }

    #[test]
    fn web_server_allows_web_from_anywhere_in_both_families() {
        let p = web_server();
        let d = verdict(&p, Direction::Ingress, &tcp_packet("192.0.2.7", "10.0.0.5", 443));
        assert_eq!(d, allowed_by(&["sgr-https4"]));
        let d = verdict(&p, Direction::Ingress, &tcp_packet("2001:db8::9", "2001:db8::1", 80));
        assert_eq!(d, allowed_by(&["sgr-http6"]));
    }

    #[test]
    fn web_server_limits_rdp_to_one_host() {
        let p = web_server();
        let d = verdict(&p, Direction::Ingress, &tcp_packet("203.0.113.5", "10.0.0.5", 3389));
        assert_eq!(d, allowed_by(&["sgr-rdp"]));
        let d = verdict(&p, Direction::Ingress, &tcp_packet("203.0.113.6", "10.0.0.5", 3389));
        assert_eq!(d, dropped(Reason::NoRule));
        let d = verdict(&p, Direction::Ingress, &tcp_packet("203.0.113.5", "10.0.0.5", 22));
        assert_eq!(d, dropped(Reason::NoRule));
    }

    #[test]
    fn web_server_answers_only_echo_requests_from_its_subnet() {
        let p = web_server();
        let d = verdict(&p, Direction::Ingress, &icmp_packet("198.51.100.200", proto::ICMP, 8, 0));
        assert_eq!(d, allowed_by(&["sgr-ping"]));
        // Wrong code, wrong type, wrong source, wrong protocol number.
        for packet in [
            icmp_packet("198.51.100.200", proto::ICMP, 8, 1),
            icmp_packet("198.51.100.200", proto::ICMP, 0, 0),
            icmp_packet("198.51.101.1", proto::ICMP, 8, 0),
            icmp_packet("198.51.100.200", proto::ICMPV6, 8, 0),
        ] {
            assert_eq!(verdict(&p, Direction::Ingress, &packet), dropped(Reason::NoRule), "{packet:?}");
        }
    }

    #[test]
    fn udp_does_not_match_tcp_rules() {
        let p = web_server();
        let mut packet = tcp_packet("192.0.2.7", "10.0.0.5", 443);
        packet.proto = proto::UDP;
        assert_eq!(verdict(&p, Direction::Ingress, &packet), dropped(Reason::NoRule));
    }

    #[test]
    fn egress_matches_the_destination() {
        let p = web_server();
        let d = verdict(&p, Direction::Egress, &tcp_packet("10.0.0.5", "192.0.2.7", 5432));
        assert_eq!(d, allowed_by(&["sgr-out"]));
        // Ingress rules do not apply to egress and vice versa.
        let q = InterfacePolicy { egress: Vec::new(), ..p };
        let d = verdict(&q, Direction::Egress, &tcp_packet("10.0.0.5", "192.0.2.7", 443));
        assert_eq!(d, dropped(Reason::NoRule));
    }

    #[test]
    fn every_allowing_rule_is_listed_sorted_and_once() {
        let mut p = web_server();
        p.ingress.push(rule("sgr-a-wide", tcp(1, 1000), &["192.0.2.0/24", "192.0.2.0/25"]));
        p.ingress.push(rule("sgr-https4", tcp(443, 443), &["192.0.2.7/32"]));
        let d = verdict(&p, Direction::Ingress, &tcp_packet("192.0.2.7", "10.0.0.5", 443));
        assert_eq!(d, allowed_by(&["sgr-a-wide", "sgr-https4"]));
    }

    #[test]
    fn overlapping_prefixes_union_their_permissions() {
        let p = InterfacePolicy {
            ingress: vec![
                rule("sgr-any", tcp(443, 443), &["0.0.0.0/0"]),
                rule("sgr-ten", tcp(22, 22), &["10.0.0.0/8"]),
            ],
            ..InterfacePolicy::default()
        };
        let to = |src, port| verdict(&p, Direction::Ingress, &tcp_packet(src, "10.9.9.9", port));
        assert_eq!(to("10.1.2.3", 22), allowed_by(&["sgr-ten"]));
        assert_eq!(to("10.1.2.3", 443), allowed_by(&["sgr-any"]));
        assert_eq!(to("11.1.2.3", 22), dropped(Reason::NoRule));
        assert_eq!(to("11.1.2.3", 443), allowed_by(&["sgr-any"]));
    }

    #[test]
    fn port_ranges_are_inclusive() {
        let p = InterfacePolicy {
            ingress: vec![rule("sgr-r", tcp(1000, 2000), &["0.0.0.0/0"])],
            ..InterfacePolicy::default()
        };
        let at = |port| verdict(&p, Direction::Ingress, &tcp_packet("1.2.3.4", "10.0.0.1", port)).verdict;
        assert_eq!(at(999), Verdict::Drop);
        assert_eq!(at(1000), Verdict::Allow);
        assert_eq!(at(2000), Verdict::Allow);
        assert_eq!(at(2001), Verdict::Drop);
    }

    #[test]
    fn icmp_type_and_wildcards() {
        let p = InterfacePolicy {
            ingress: vec![
                rule("sgr-unreach", Protocol::Icmp(IcmpMatch::Type { icmp_type: 3 }), &["0.0.0.0/0"]),
                rule("sgr-v6-all", Protocol::Icmpv6(IcmpMatch::All), &["::/0"]),
            ],
            ..InterfacePolicy::default()
        };
        let judge = |src, proto, t, c| verdict(&p, Direction::Ingress, &icmp_packet(src, proto, t, c));
        assert_eq!(judge("1.2.3.4", proto::ICMP, 3, 4), allowed_by(&["sgr-unreach"]));
        assert_eq!(judge("1.2.3.4", proto::ICMP, 3, 0), allowed_by(&["sgr-unreach"]));
        assert_eq!(judge("1.2.3.4", proto::ICMP, 8, 0), dropped(Reason::NoRule));
        assert_eq!(judge("2001:db8::2", proto::ICMPV6, 128, 0), allowed_by(&["sgr-v6-all"]));
        assert_eq!(judge("2001:db8::2", proto::ICMPV6, 1, 3), allowed_by(&["sgr-v6-all"]));
        // An IPv6 peer is never in an IPv4 prefix.
        assert_eq!(judge("2001:db8::2", proto::ICMP, 3, 0), dropped(Reason::NoRule));
    }

    #[test]
    fn protocol_all_and_numbered_protocols() {
        let p = InterfacePolicy {
            ingress: vec![
                rule("sgr-all", Protocol::All, &["10.0.0.0/8"]),
                rule("sgr-esp", Protocol::Number(50), &["0.0.0.0/0"]),
            ],
            ..InterfacePolicy::default()
        };
        let esp = |src: &str| Packet {
            src: src.parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            proto: 50,
            l4: L4::None,
            fragment: Fragment::None,
        };
        let judge = |packet: &Packet| verdict(&p, Direction::Ingress, packet);
        assert_eq!(judge(&esp("192.0.2.1")), allowed_by(&["sgr-esp"]));
        assert_eq!(judge(&esp("10.0.0.9")), allowed_by(&["sgr-all", "sgr-esp"]));
        assert_eq!(judge(&Packet { proto: 51, ..esp("192.0.2.1") }), dropped(Reason::NoRule));
        assert_eq!(judge(&Packet { proto: 51, ..esp("10.0.0.9") }), allowed_by(&["sgr-all"]));
        assert_eq!(judge(&tcp_packet("10.200.0.1", "10.0.0.1", 1)), allowed_by(&["sgr-all"]));
    }

    #[test]
    fn a_rule_without_peers_allows_nothing() {
        let p = InterfacePolicy {
            ingress: vec![rule("sgr-stale", Protocol::All, &[])],
            ..InterfacePolicy::default()
        };
        let d = verdict(&p, Direction::Ingress, &tcp_packet("10.0.0.2", "10.0.0.1", 22));
        assert_eq!(d, dropped(Reason::NoRule));
    }

    #[test]
    fn exempt_addresses_pass_without_rules_but_only_as_peer() {
        let p =
            InterfacePolicy { exempt: crate::exempt::FIXED_ADDRESSES.to_vec(), ..InterfacePolicy::default() };
        let imds = tcp_packet("169.254.169.254", "10.0.0.5", 40000);
        assert_eq!(verdict(&p, Direction::Ingress, &imds), exempted());
        // Ingress judges the source: a packet *to* the metadata address arriving on the
        // link is not exempt.
        let to_imds = tcp_packet("10.0.0.7", "169.254.169.254", 80);
        assert_eq!(verdict(&p, Direction::Ingress, &to_imds), dropped(Reason::NoRule));
        assert_eq!(verdict(&p, Direction::Egress, &to_imds), exempted());
    }

    #[test]
    fn neighbour_discovery_and_dhcp_are_exempt_by_protocol() {
        let p = InterfacePolicy::default();
        let ns = icmp_packet("fe80::1", proto::ICMPV6, 135, 0);
        assert_eq!(verdict(&p, Direction::Ingress, &ns), exempted());
        let mut dhcp = tcp_packet("10.0.0.1", "255.255.255.255", 68);
        dhcp.proto = proto::UDP;
        dhcp.l4 = L4::Ports { src: 67, dst: 68 };
        assert_eq!(verdict(&p, Direction::Ingress, &dhcp), exempted());
    }

    #[test]
    fn later_fragments_follow_their_allowed_first_fragment() {
        let p = web_server();
        let mut memory = FragmentMemory::default();
        let first = Packet { fragment: Fragment::First(7), ..tcp_packet("192.0.2.7", "10.0.0.5", 443) };
        let later = Packet { l4: L4::None, fragment: Fragment::Later(7), ..first };
        // Without its first fragment, a later fragment is dropped.
        let d = verdict_with_fragments(&p, Direction::Ingress, &later, &mut memory);
        assert_eq!(d, dropped(Reason::Fragment));
        let d = verdict_with_fragments(&p, Direction::Ingress, &first, &mut memory);
        assert_eq!(d, allowed_by(&["sgr-https4"]));
        assert_eq!(memory.len(), 1);
        let d = verdict_with_fragments(&p, Direction::Ingress, &later, &mut memory);
        assert_eq!(d, Decision { verdict: Verdict::Allow, reason: Reason::Fragment, rules: Vec::new() });
        // Another id, another direction, another source: not the same datagram.
        for other in [
            Packet { fragment: Fragment::Later(8), ..later },
            Packet { src: "192.0.2.8".parse().unwrap(), ..later },
            Packet { proto: proto::UDP, ..later },
        ] {
            let d = verdict_with_fragments(&p, Direction::Ingress, &other, &mut memory);
            assert_eq!(d, dropped(Reason::Fragment), "{other:?}");
        }
        let d = verdict_with_fragments(&p, Direction::Egress, &later, &mut memory);
        assert_eq!(d, dropped(Reason::Fragment));
    }

    #[test]
    fn a_denied_first_fragment_lets_no_later_fragment_through() {
        let p = web_server();
        let mut memory = FragmentMemory::default();
        let first = Packet { fragment: Fragment::First(9), ..tcp_packet("192.0.2.7", "10.0.0.5", 22) };
        let later = Packet { l4: L4::None, fragment: Fragment::Later(9), ..first };
        let d = verdict_with_fragments(&p, Direction::Ingress, &first, &mut memory);
        assert_eq!(d, dropped(Reason::NoRule));
        assert!(memory.is_empty());
        let d = verdict_with_fragments(&p, Direction::Ingress, &later, &mut memory);
        assert_eq!(d, dropped(Reason::Fragment));
    }

    #[test]
    fn exempt_first_fragments_are_remembered_and_exempt_later_fragments_pass() {
        let p = web_server();
        let mut memory = FragmentMemory::default();
        let first = Packet { fragment: Fragment::First(1), ..tcp_packet("169.254.169.254", "10.0.0.5", 9) };
        let later = Packet { l4: L4::None, fragment: Fragment::Later(1), ..first };
        // The exempt address passes a later fragment even with no history.
        assert_eq!(verdict(&p, Direction::Ingress, &later), exempted());
        assert_eq!(verdict_with_fragments(&p, Direction::Ingress, &first, &mut memory), exempted());
        assert_eq!(memory.len(), 1);
        // A DHCP first fragment is exempt by protocol and is remembered too.
        let mut dhcp = Packet { fragment: Fragment::First(2), ..tcp_packet("10.0.0.1", "10.0.0.5", 68) };
        dhcp.proto = proto::UDP;
        dhcp.l4 = L4::Ports { src: 67, dst: 68 };
        assert_eq!(verdict_with_fragments(&p, Direction::Ingress, &dhcp, &mut memory), exempted());
        let dhcp_later = Packet { l4: L4::None, fragment: Fragment::Later(2), ..dhcp };
        let d = verdict_with_fragments(&p, Direction::Ingress, &dhcp_later, &mut memory);
        assert_eq!(d, Decision { verdict: Verdict::Allow, reason: Reason::Fragment, rules: Vec::new() });
    }
}
