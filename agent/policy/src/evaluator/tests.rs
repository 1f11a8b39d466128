//! Unit tests of the stateless steps: rules, exemptions and fragments.
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
    let p = InterfacePolicy { exempt: crate::exempt::FIXED_ADDRESSES.to_vec(), ..InterfacePolicy::default() };
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
