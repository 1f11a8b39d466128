//! Unit tests of the compiler: hand-checked images of small policies.

use std::net::IpAddr;

use ipnet::IpNet;
use sgmirror_common::{ADDR_EXEMPT, PORT_KEY_BITS, PORT_KEY_CLASS_BITS, PORT_KEY_PROTO_BITS, PortKey};

use super::*;
use crate::evaluator;
use crate::model::{
    Decision, Fragment, IcmpMatch, L4, Packet, PeerSource, PortRange, Protocol, Reason, ResolvedRule,
    Verdict, proto,
};

fn rule(id: &str, direction: Direction, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
    ResolvedRule {
        id: id.to_owned(),
        group_id: "sg-1".to_owned(),
        direction,
        protocol,
        source: PeerSource::Group("sg-1".to_owned()),
        peers: peers.iter().map(|p| p.parse::<IpNet>().unwrap()).collect(),
    }
}

fn inbound(id: &str, protocol: Protocol, peers: &[&str]) -> ResolvedRule {
    rule(id, Direction::Ingress, protocol, peers)
}

fn tcp(from: u16, to: u16) -> Protocol {
    Protocol::Tcp(PortRange { from, to })
}

fn policy(ingress: Vec<ResolvedRule>) -> InterfacePolicy {
    InterfacePolicy { interface_id: "eni-test".to_owned(), ingress, ..InterfacePolicy::default() }
}

fn packet(src: &str, proto: u8, l4: L4) -> Packet {
    let dst = if src.contains(':') { "2001:db8::1" } else { "10.255.0.1" };
    Packet { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto, l4, fragment: Fragment::None }
}

fn to_port(src: &str, dst: u16) -> Packet {
    packet(src, proto::TCP, L4::Ports { src: 33000, dst })
}

/// Compiles and checks the image against the evaluator on the given packets.
fn compile_and_compare(p: &InterfacePolicy, packets: &[Packet]) -> CompiledInterface {
    let c = compile(p, &Limits::default()).unwrap();
    for packet in packets {
        for direction in [Direction::Ingress, Direction::Egress] {
            let want = evaluator::verdict(p, direction, packet);
            assert_eq!(c.image(direction).judge(direction, packet), want, "{direction:?} {packet:?}");
        }
    }
    c
}

#[test]
fn closure_gives_the_narrow_prefix_the_wide_prefix_rules() {
    let p = policy(vec![
        inbound("sgr-https", tcp(443, 443), &["0.0.0.0/0"]),
        inbound("sgr-ssh", tcp(22, 22), &["10.0.0.0/8"]),
    ]);
    let c = compile_and_compare(
        &p,
        &[
            to_port("10.1.1.1", 22),
            to_port("10.1.1.1", 443),
            to_port("11.1.1.1", 22),
            to_port("11.1.1.1", 443),
        ],
    );
    let image = &c.ingress;
    assert_eq!(image.addr4.len(), 2);
    assert_eq!(image.classes, 2);
    let ten = image.lookup_addr("10.1.1.1".parse().unwrap()).unwrap();
    assert_eq!(image.addr4[1].0, "10.0.0.0/8".parse().unwrap());
    assert_eq!(image.addr4[1].1, ten);
    let ids =
        |port| match image.lookup(IpAddr::from([10, 1, 1, 1]), proto::TCP, L4::Ports { src: 1, dst: port }) {
            ImageLookup::Allowed { match_id, .. } => image.match_sets[match_id as usize].clone(),
            other => panic!("{other:?}"),
        };
    assert_eq!(ids(22), ["sgr-ssh"]);
    assert_eq!(ids(443), ["sgr-https"]);
    // Two port entries for each class that has both (10/8), one for 0/0.
    assert_eq!(image.ports.len(), 3);
    assert!(image.ports.iter().all(|e| e.prefix_len == PORT_KEY_BITS));
    assert_eq!(image.match_sets.len(), 2);
    // Egress has no rules at all.
    assert!(c.egress.addr4.is_empty() && c.egress.ports.is_empty() && c.egress.match_sets.is_empty());
}

#[test]
fn no_default_route_without_a_zero_prefix() {
    let p = policy(vec![inbound("sgr-a", Protocol::All, &["192.0.2.0/24", "2001:db8::/32"])]);
    let c = compile_and_compare(
        &p,
        &[to_port("192.0.2.9", 1), to_port("192.0.3.9", 1), to_port("2001:db9::1", 1)],
    );
    assert_eq!(c.ingress.lookup_addr("192.0.3.9".parse().unwrap()), None);
    assert_eq!(c.ingress.lookup(IpAddr::from([192, 0, 3, 9]), 6, L4::None), ImageLookup::NoRule);
    // One class per family; protocol -1 is a single class-only entry in each.
    assert_eq!(c.ingress.classes, 2);
    assert_eq!(c.ingress.ports.len(), 2);
    assert!(c.ingress.ports.iter().all(|e| e.prefix_len == PORT_KEY_CLASS_BITS));
}

#[test]
fn port_ranges_become_masked_entries() {
    let p = policy(vec![inbound("sgr-r", tcp(1024, 65535), &["0.0.0.0/0"])]);
    let c = compile_and_compare(
        &p,
        &[to_port("1.1.1.1", 1023), to_port("1.1.1.1", 1024), to_port("1.1.1.1", 65535)],
    );
    let entries: Vec<(u32, u16)> =
        c.ingress.ports.iter().map(|e| (e.prefix_len, u16::from_be_bytes(e.key.port))).collect();
    assert_eq!(entries, [(46, 1024), (45, 2048), (44, 4096), (43, 8192), (42, 16384), (41, 32768)]);
    assert!(c.ingress.ports.iter().all(PortEntry::is_masked));
}

#[test]
fn overlapping_ranges_get_the_union_on_each_piece() {
    let p = policy(vec![
        inbound("sgr-a", tcp(1000, 2000), &["0.0.0.0/0"]),
        inbound("sgr-b", tcp(1500, 2500), &["0.0.0.0/0"]),
        inbound("sgr-u", Protocol::Udp(PortRange { from: 1500, to: 1500 }), &["0.0.0.0/0"]),
    ]);
    let mut packets = Vec::new();
    for port in [999, 1000, 1499, 1500, 2000, 2001, 2500, 2501] {
        packets.push(to_port("8.8.8.8", port));
        packets.push(packet("8.8.8.8", proto::UDP, L4::Ports { src: 1, dst: port }));
    }
    let c = compile_and_compare(&p, &packets);
    assert_eq!(c.ingress.match_sets.len(), 4);
    let d = c.ingress.judge(Direction::Ingress, &to_port("8.8.8.8", 1750));
    assert_eq!(d.rules, ["sgr-a", "sgr-b"]);
}

#[test]
fn icmp_type_code_and_wildcards() {
    let p = policy(vec![
        inbound("sgr-echo", Protocol::Icmp(IcmpMatch::TypeCode { icmp_type: 8, code: 0 }), &["0.0.0.0/0"]),
        inbound("sgr-unreach", Protocol::Icmp(IcmpMatch::Type { icmp_type: 3 }), &["10.0.0.0/8"]),
        inbound("sgr-v6", Protocol::Icmpv6(IcmpMatch::All), &["2001:db8::/32"]),
    ]);
    let mut packets = Vec::new();
    for (t, c) in [(8, 0), (8, 1), (3, 0), (3, 4), (3, 255), (4, 0), (2, 255), (0, 0), (128, 0), (255, 255)] {
        for src in ["10.0.0.1", "11.0.0.1", "2001:db8::5", "2001:db9::5"] {
            packets.push(packet(src, proto::ICMP, L4::Icmp { icmp_type: t, code: c }));
            packets.push(packet(src, proto::ICMPV6, L4::Icmp { icmp_type: t, code: c }));
        }
    }
    let c = compile_and_compare(&p, &packets);
    let find = |len: u32, proto: u8| {
        c.ingress.ports.iter().filter(|e| e.prefix_len == len && e.key.proto == proto).count()
    };
    // Type 3 → one /48 (type only); echo → /56 in both v4 classes; ICMPv6 all → /40.
    assert_eq!(find(48, proto::ICMP), 1);
    assert_eq!(find(56, proto::ICMP), 2);
    assert_eq!(find(PORT_KEY_PROTO_BITS, proto::ICMPV6), 1);
}

#[test]
fn numbered_protocols_and_protocol_all_cover_every_port() {
    let p = policy(vec![
        inbound("sgr-all", Protocol::All, &["10.0.0.0/8"]),
        inbound("sgr-esp", Protocol::Number(50), &["0.0.0.0/0"]),
        inbound("sgr-web", tcp(443, 443), &["0.0.0.0/0"]),
        inbound("sgr-any-tcp", Protocol::Number(6), &["10.1.0.0/16"]),
        inbound("sgr-tcp-full", tcp(0, 65535), &["10.1.2.0/24"]),
    ]);
    let mut packets = Vec::new();
    for src in ["10.1.2.3", "10.1.3.3", "10.2.0.1", "192.0.2.1"] {
        for port in [0, 442, 443, 444, 65535] {
            packets.push(to_port(src, port));
            packets.push(packet(src, proto::UDP, L4::Ports { src: 9, dst: port }));
        }
        packets.push(packet(src, 50, L4::None));
        packets.push(packet(src, 51, L4::None));
        packets.push(packet(src, proto::ICMP, L4::Icmp { icmp_type: 8, code: 0 }));
    }
    let c = compile_and_compare(&p, &packets);
    let d = c.ingress.judge(Direction::Ingress, &to_port("10.1.2.3", 443));
    assert_eq!(d.rules, ["sgr-all", "sgr-any-tcp", "sgr-tcp-full", "sgr-web"]);
    // No two entries share a key and a length (the kernel would keep only one).
    let mut keys: Vec<(PortKey, u32)> = c.ingress.ports.iter().map(|e| (e.key, e.prefix_len)).collect();
    keys.dedup();
    assert_eq!(keys.len(), c.ingress.ports.len());
}

#[test]
fn exempt_addresses_are_flagged_and_win_over_rules() {
    let mut p = policy(vec![inbound("sgr-a", tcp(80, 80), &["169.254.0.0/16"])]);
    p.exempt = crate::exempt::FIXED_ADDRESSES.to_vec();
    let packets = [
        to_port("169.254.169.254", 80),
        to_port("169.254.169.254", 81),
        to_port("169.254.1.1", 80),
        to_port("169.254.1.1", 81),
        to_port("fd00:ec2::254", 5),
    ];
    let c = compile_and_compare(&p, &packets);
    assert_eq!(c.ingress.addr4.len(), 7);
    assert_eq!(c.ingress.addr4.iter().filter(|(_, v)| v.flags == ADDR_EXEMPT).count(), 6);
    assert_eq!(c.ingress.addr6.len(), 3);
    assert_eq!(c.ingress.lookup(IpAddr::from([169, 254, 169, 254]), 6, L4::None), ImageLookup::Exempt);
    // Egress gets the same exempt entries (the peer is the destination there).
    assert_eq!(c.egress.addr4.len(), 6);
    let later = Packet { fragment: Fragment::Later(3), l4: L4::None, ..to_port("169.254.169.254", 80) };
    assert_eq!(c.ingress.judge(Direction::Ingress, &later).reason, Reason::Exempt);
}

#[test]
fn later_fragments_without_history_are_dropped() {
    let p = policy(vec![inbound("sgr-a", Protocol::All, &["0.0.0.0/0"])]);
    let later = Packet { fragment: Fragment::Later(3), l4: L4::None, ..to_port("1.2.3.4", 80) };
    let c = compile_and_compare(&p, &[later]);
    let want = Decision { verdict: Verdict::Drop, reason: Reason::Fragment, rules: Vec::new() };
    assert_eq!(c.ingress.judge(Direction::Ingress, &later), want);
}

#[test]
fn duplicate_rule_ids_share_a_match_set() {
    let p = policy(vec![
        inbound("sgr-x", tcp(80, 80), &["10.0.0.0/8"]),
        inbound("sgr-x", tcp(80, 80), &["10.1.0.0/16"]),
    ]);
    let c = compile_and_compare(&p, &[to_port("10.1.0.1", 80), to_port("10.2.0.1", 80)]);
    assert_eq!(c.ingress.match_sets, [vec!["sgr-x".to_owned()]]);
}

#[test]
fn inverted_ranges_and_unresolved_peers_allow_nothing() {
    let p = policy(vec![
        inbound("sgr-inv", Protocol::Tcp(PortRange { from: 90, to: 80 }), &["0.0.0.0/0"]),
        inbound("sgr-stale", Protocol::All, &[]),
    ]);
    let c = compile_and_compare(&p, &[to_port("1.1.1.1", 85), to_port("1.1.1.1", 80)]);
    assert!(c.ingress.ports.is_empty());
    assert_eq!(c.ingress.summary().rules, 2);
}

#[test]
fn output_is_deterministic_and_sorted() {
    let rules: Vec<ResolvedRule> = (0..50u16)
        .map(|i| {
            let peer = format!("10.{}.0.0/{}", i % 7, 8 + i % 17);
            inbound(&format!("sgr-{i}"), tcp(i * 100, i * 100 + i), &[peer.as_str(), "::/0"])
        })
        .collect();
    let p = policy(rules);
    let a = compile(&p, &Limits::default()).unwrap();
    let b = compile(&p, &Limits::default()).unwrap();
    assert_eq!(a, b);
    assert!(a.ingress.addr4.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(a.ingress.ports.windows(2).all(|w| (w[0].key, w[0].prefix_len) < (w[1].key, w[1].prefix_len)));
    assert!(a.ingress.ports.iter().all(PortEntry::is_masked));
    assert!(a.ingress.match_sets.iter().all(|s| !s.is_empty() && s.windows(2).all(|w| w[0] < w[1])));
}

#[test]
fn each_limit_is_enforced_with_a_clear_error() {
    let p = policy(vec![
        inbound("sgr-a", tcp(1, 65534), &["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"]),
        inbound("sgr-b", tcp(80, 80), &["10.1.0.0/16", "2001:db8::/48", "2001:db8::/64"]),
    ]);
    let ok = compile(&p, &Limits::default()).unwrap();
    let exact = Limits {
        max_prefixes_per_family: 3,
        max_port_entries: ok.ingress.ports.len(),
        max_match_sets: ok.ingress.match_sets.len(),
    };
    assert!(compile(&p, &exact).is_ok());
    let cases = [
        (Limits { max_prefixes_per_family: 1, ..exact }, Resource::Ipv4Prefixes, 2),
        (Limits { max_prefixes_per_family: 2, ..exact }, Resource::Ipv6Prefixes, 3),
        (Limits { max_port_entries: 5, ..exact }, Resource::PortEntries, 30),
        (Limits { max_match_sets: 1, ..exact }, Resource::MatchSets, 2),
    ];
    for (limits, resource, count) in cases {
        let err = compile(&p, &limits).unwrap_err();
        let CompileError::TooLarge { interface, direction, resource: r, count: n, limit } = err.clone();
        assert_eq!((interface.as_str(), direction, r), ("eni-test", Direction::Ingress, resource));
        assert!(n > limit, "{err}");
        assert_eq!(n, count, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("eni-test") && text.contains("ingress") && text.contains(&limit.to_string()),
            "{text}"
        );
        assert!(text.contains(&resource.to_string()), "{text}");
    }
    let err = compile(&p, &Limits { max_prefixes_per_family: 1, ..exact }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface eni-test, ingress rules: 2 IPv4 prefixes do not fit the limit of 1"
    );
}

#[test]
fn summary_and_json_shape() {
    let p = policy(vec![inbound("sgr-a", tcp(22, 22), &["10.0.0.0/8", "2001:db8::/32"])]);
    let c = compile(&p, &Limits::default()).unwrap();
    let s = c.ingress.summary();
    // One class per family, so one port entry per family; one match set.
    assert_eq!(
        (s.rules, s.prefixes_v4, s.prefixes_v6, s.classes, s.port_entries, s.match_sets),
        (1, 1, 1, 2, 2, 1)
    );
    assert_eq!(s.map_bytes, (4 + 4 + 8 + 48) + (4 + 16 + 8 + 48) + 2 * (4 + 8 + 8 + 48));
    let json = serde_json::to_value(&c.ingress).unwrap();
    assert_eq!(json["addr4"][0], serde_json::json!({"net": "10.0.0.0/8", "class": 0, "flags": 0}));
    assert_eq!(
        json["ports"][0],
        serde_json::json!({"prefix_len": 56, "class": 0, "proto": 6, "port": 22, "match_id": 0, "flags": 0})
    );
    assert_eq!(json["match_sets"], serde_json::json!([["sgr-a"]]));
}

#[test]
fn a_hundred_thousand_prefixes_compile() {
    // 100 rules × 1 000 prefixes: prefix-list sized rules over a few ports, nested in
    // a /0 rule, half of the prefixes inside others.
    let mut rules = vec![inbound("sgr-any", tcp(443, 443), &["0.0.0.0/0"])];
    for r in 0..100u32 {
        let peers: Vec<IpNet> = (0..1000u32)
            .map(|i| {
                let x = r * 1000 + i;
                let len = if i % 2 == 0 { 24 } else { 28 };
                IpNet::new(IpAddr::from((10u32 << 24 | x << 7).to_be_bytes()), len).unwrap().trunc()
            })
            .collect();
        let mut rule = inbound(&format!("sgr-{r}"), tcp(8000 + r as u16, 8000 + r as u16), &[]);
        rule.peers = peers;
        rules.push(rule);
    }
    let p = policy(rules);
    let started = std::time::Instant::now();
    let c = compile(&p, &Limits::default()).unwrap();
    let elapsed = started.elapsed();
    let s = c.ingress.summary();
    assert!(s.prefixes_v4 > 90_000, "{s:?}");
    eprintln!("compiled {} prefixes in {elapsed:?}: {s:?}", s.prefixes_v4);
    let probe = to_port("10.0.0.130", 8000);
    assert_eq!(
        c.ingress.judge(Direction::Ingress, &probe),
        evaluator::verdict(&p, Direction::Ingress, &probe)
    );
    assert_eq!(c.ingress.judge(Direction::Ingress, &probe).rules, ["sgr-0"]);
}

fn cidr_rule(id: &str, direction: Direction, protocol: Protocol, cidr: &str) -> ResolvedRule {
    let source = if cidr.contains(':') {
        PeerSource::CidrIpv6(cidr.to_owned())
    } else {
        PeerSource::Cidr(cidr.to_owned())
    };
    ResolvedRule { source, ..rule(id, direction, protocol, &[cidr]) }
}

/// The connection-tracking page's example, compiled: http from everywhere with
/// everything allowed out is untracked, per family; ssh from one host is not.
#[test]
fn untracked_flags_follow_the_documented_example() {
    use sgmirror_common::{FLAG_UNTRACKED_TCP, FLAG_UNTRACKED_UDP};
    let example = InterfacePolicy {
        ingress: vec![
            cidr_rule("sgr-ssh", Direction::Ingress, tcp(22, 22), "203.0.113.1/32"),
            cidr_rule("sgr-http4", Direction::Ingress, tcp(80, 80), "0.0.0.0/0"),
            cidr_rule("sgr-http6", Direction::Ingress, tcp(80, 80), "::/0"),
        ],
        egress: vec![
            cidr_rule("sgr-out4", Direction::Egress, Protocol::All, "0.0.0.0/0"),
            cidr_rule("sgr-out6", Direction::Egress, Protocol::All, "::/0"),
        ],
        ..policy(Vec::new())
    };
    let flags = |c: &CompiledInterface, direction: Direction, peer: &str, port: u16| match c
        .image(direction)
        .lookup(peer.parse().unwrap(), proto::TCP, L4::Ports { src: port, dst: port })
    {
        ImageLookup::Allowed { flags, .. } => flags,
        other => panic!("{other:?}"),
    };
    let c = compile(&example, &Limits::default()).unwrap();
    assert_eq!(flags(&c, Direction::Ingress, "198.51.100.9", 80), FLAG_UNTRACKED_TCP);
    assert_eq!(flags(&c, Direction::Ingress, "2001:db8::9", 80), FLAG_UNTRACKED_TCP);
    // The /32 class inherits the /0 rule: port 80 from the admin host is untracked
    // too, port 22 (only the /32 rule) is not.
    assert_eq!(flags(&c, Direction::Ingress, "203.0.113.1", 80), FLAG_UNTRACKED_TCP);
    assert_eq!(flags(&c, Direction::Ingress, "203.0.113.1", 22), 0);
    // Outbound: ingress has no all-ports rule, so the egress entries are tracked.
    assert_eq!(flags(&c, Direction::Egress, "198.51.100.9", 80), 0);
    // Without the IPv4 outbound rule, IPv4 is tracked and IPv6 is not.
    let mut v6_only = example.clone();
    v6_only.egress.remove(0);
    let c = compile(&v6_only, &Limits::default()).unwrap();
    assert_eq!(flags(&c, Direction::Ingress, "198.51.100.9", 80), 0);
    assert_eq!(flags(&c, Direction::Ingress, "2001:db8::9", 80), FLAG_UNTRACKED_TCP);
    // Everything allowed both ways: the class-only entries serve TCP and UDP.
    let mut open = example;
    open.ingress.push(cidr_rule("sgr-all4", Direction::Ingress, Protocol::All, "0.0.0.0/0"));
    let c = compile(&open, &Limits::default()).unwrap();
    let all = FLAG_UNTRACKED_TCP | FLAG_UNTRACKED_UDP;
    assert_eq!(flags(&c, Direction::Egress, "198.51.100.9", 5), all);
    assert_eq!(flags(&c, Direction::Ingress, "198.51.100.9", 5), all);
    let json = serde_json::to_value(&c.egress).unwrap();
    assert!(json["ports"].as_array().unwrap().iter().any(|e| e["flags"] == all), "{json}");
}
