use std::net::IpAddr;

use super::*;
use crate::evaluator::verdict;
use crate::model::{Fragment, L4, Packet, Reason, Verdict, proto};

fn tcp_to(src: &str, dport: u16) -> Packet {
    Packet {
        src: src.parse::<IpAddr>().unwrap(),
        dst: "10.0.0.5".parse().unwrap(),
        proto: proto::TCP,
        l4: L4::Ports { src: 40000, dst: dport },
        fragment: Fragment::None,
    }
}

/// A policy that allows HTTPS from everywhere and nothing else.
fn web_only() -> InterfacePolicy {
    InterfacePolicy {
        interface_id: "eni-test".to_owned(),
        ingress: vec![ResolvedRule {
            id: "sgr-https".to_owned(),
            group_id: "sg-web".to_owned(),
            direction: Direction::Ingress,
            protocol: Protocol::Tcp(PortRange { from: 443, to: 443 }),
            source: PeerSource::Cidr("0.0.0.0/0".to_owned()),
            peers: vec!["0.0.0.0/0".parse().unwrap()],
        }],
        ..InterfacePolicy::default()
    }
}

#[test]
fn a_failsafe_source_passes_a_policy_that_drops_it() {
    let ssh = tcp_to("203.0.113.7", 22);
    let mut policy = web_only();
    assert_eq!(verdict(&policy, Direction::Ingress, &ssh).verdict, Verdict::Drop);

    let entry = FailsafeEntry::parse("203.0.113.7/32", "tcp", Some("22"), None).unwrap();
    apply(&mut policy, &[entry]);
    let d = verdict(&policy, Direction::Ingress, &ssh);
    assert_eq!((d.verdict, d.reason), (Verdict::Allow, Reason::Rule));
    assert_eq!(d.rules, vec!["failsafe-1".to_owned()]);
    assert_eq!(policy.ingress[1].group_id, GROUP);

    // Only that source, only that port.
    assert_eq!(verdict(&policy, Direction::Ingress, &tcp_to("203.0.113.8", 22)).verdict, Verdict::Drop);
    assert_eq!(verdict(&policy, Direction::Ingress, &tcp_to("203.0.113.7", 23)).verdict, Verdict::Drop);
    // The group's rule still works.
    assert_eq!(verdict(&policy, Direction::Ingress, &tcp_to("198.51.100.1", 443)).rules, vec!["sgr-https"]);
}

#[test]
fn an_empty_list_changes_nothing() {
    let mut policy = web_only();
    apply(&mut policy, &[]);
    assert_eq!(policy, web_only());
}

#[test]
fn entries_are_numbered_in_order_and_go_to_their_direction() {
    let mut policy = web_only();
    let entries = [
        FailsafeEntry::parse("198.51.100.0/24", "all", None, Some("ingress")).unwrap(),
        FailsafeEntry::parse("2001:db8::1", "udp", Some("1000-2000"), Some("egress")).unwrap(),
    ];
    apply(&mut policy, &entries);
    assert_eq!(policy.ingress.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["sgr-https", "failsafe-1"]);
    assert_eq!(policy.egress.len(), 1);
    assert_eq!(policy.egress[0].id, "failsafe-2");
    assert_eq!(policy.egress[0].protocol, Protocol::Udp(PortRange { from: 1000, to: 2000 }));
    assert_eq!(policy.egress[0].peers, vec!["2001:db8::1/128".parse::<IpNet>().unwrap()]);
}

#[test]
fn parsing_canonicalises_and_defaults() {
    let e = FailsafeEntry::parse("203.0.113.77/24", "TCP", None, None).unwrap();
    assert_eq!(e.cidr, "203.0.113.0/24".parse::<IpNet>().unwrap());
    assert_eq!(e.protocol, Protocol::Tcp(PortRange { from: 0, to: 65535 }));
    assert_eq!(e.direction, Direction::Ingress);
    assert_eq!(
        FailsafeEntry::parse("10.0.0.1", "6", Some("22"), None).unwrap().protocol,
        Protocol::Tcp(PortRange { from: 22, to: 22 })
    );
    assert_eq!(
        FailsafeEntry::parse("10.0.0.1", "icmp", None, None).unwrap().protocol,
        Protocol::Icmp(IcmpMatch::All)
    );
    assert_eq!(
        FailsafeEntry::parse("::1", "icmpv6", None, None).unwrap().protocol,
        Protocol::Icmpv6(IcmpMatch::All)
    );
    assert_eq!(FailsafeEntry::parse("10.0.0.1", "50", None, None).unwrap().protocol, Protocol::Number(50));
    assert_eq!(FailsafeEntry::parse("10.0.0.1", "-1", None, None).unwrap().protocol, Protocol::All);
}

#[test]
fn bad_entries_name_the_field() {
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, FailsafeError);
    let cases: [Case; 7] = [
        ("10.0.0.300/32", "tcp", None, None, FailsafeError::Cidr("10.0.0.300/32".into())),
        ("10.0.0.1", "tcpp", None, None, FailsafeError::Protocol("tcpp".into())),
        ("10.0.0.1", "256", None, None, FailsafeError::Protocol("256".into())),
        ("10.0.0.1", "tcp", Some("2000-1000"), None, FailsafeError::Ports("2000-1000".into())),
        ("10.0.0.1", "tcp", Some("70000"), None, FailsafeError::Ports("70000".into())),
        ("10.0.0.1", "icmp", Some("22"), None, FailsafeError::PortsWithoutPorts("icmp".into())),
        ("10.0.0.1", "tcp", None, Some("both"), FailsafeError::Direction("both".into())),
    ];
    for (cidr, protocol, ports, direction, expected) in cases {
        assert_eq!(FailsafeEntry::parse(cidr, protocol, ports, direction), Err(expected));
    }
}
