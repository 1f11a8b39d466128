//! The stateful programs on hand-written scenarios, each a short story with its
//! expected outcome written out (the trace-differential test covers the random
//! ones): AWS's worked example of tracked and untracked flows, outbound connections
//! without inbound rules, ICMP errors about tracked flows, echo identifiers, idle
//! expiry driven through `CLOCK`, connections that predate the agent, audit mode, and
//! a full flow table. Also reports what the verifier spends on both programs and
//! what a tracked reply costs. Needs root.

mod common;

use common::*;
use sgmirror_common::{FlowKey, Timeouts, flow_state};
use sgmirror_dataplane::{FrameOptions, LoadOptions, LoadedProgram, Mode, frame};
use sgmirror_policy::model::{
    Direction, Embedded, Fragment, InterfacePolicy, L4, Packet, Reason, Transport, Verdict, proto, tcp_flags,
};

const ME4: &str = "10.0.0.5";
const ME6: &str = "2001:db8:ff::5";

fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> Packet {
    Packet {
        src: addr(src),
        dst: addr(dst),
        proto: proto::TCP,
        l4: L4::Ports { src: sport, dst: dport },
        fragment: Fragment::None,
    }
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Packet {
    Packet { proto: proto::UDP, ..tcp(src, dst, sport, dport) }
}

fn flags(f: u8) -> Transport {
    Transport { tcp_flags: f, ..Transport::default() }
}

/// Something non-default, so that the frame builder uses the transport as given.
fn plain() -> Transport {
    Transport { icmp_id: 1, ..Transport::default() }
}

/// Runs one packet and returns (verdict, reason).
fn send(p: &LoadedProgram, direction: Direction, packet: &Packet, transport: Transport) -> (Verdict, Reason) {
    let bytes = frame::build(packet, &FrameOptions { transport, ..FrameOptions::default() });
    match p.judge(&bytes, direction) {
        Ok(d) => (d.verdict, d.reason),
        Err(e) => panic!("judging {packet:?}: {}", error_chain(&e)),
    }
}

const ALLOW_RULE: (Verdict, Reason) = (Verdict::Allow, Reason::Rule);
const TRACKED: (Verdict, Reason) = (Verdict::Allow, Reason::Tracked);
const DROP: (Verdict, Reason) = (Verdict::Drop, Reason::NoRule);

/// AWS's example (`sg-semantics.md` §1.4): ssh from one host is tracked; web from
/// everywhere with everything allowed out is not, per family.
fn web_server(with_v4_egress: bool) -> InterfacePolicy {
    let mut p = policy(
        vec![
            rule("sgr-ssh", common::tcp(22, 22), &["203.0.113.1/32"]),
            rule("sgr-web4", common::tcp(80, 80), &["0.0.0.0/0"]),
            rule("sgr-web6", common::tcp(80, 80), &["::/0"]),
        ],
        &[],
    );
    p.egress = vec![egress_rule("sgr-all6", sgmirror_policy::model::Protocol::All, &["::/0"])];
    if with_v4_egress {
        p.egress.push(egress_rule("sgr-all4", sgmirror_policy::model::Protocol::All, &["0.0.0.0/0"]));
    }
    p
}

fn load(policy: &InterfacePolicy) -> LoadedProgram {
    load_with(policy, &LoadOptions::default()).0
}

#[test]
fn aws_worked_example_tracked_and_untracked() {
    let p = load(&web_server(true));
    // Web from anywhere, everything out: untracked both ways, no entry.
    assert_eq!(
        send(&p, Direction::Ingress, &tcp("198.51.100.7", ME4, 40000, 80), flags(tcp_flags::SYN)),
        ALLOW_RULE
    );
    assert_eq!(
        send(
            &p,
            Direction::Egress,
            &tcp(ME4, "198.51.100.7", 80, 40000),
            flags(tcp_flags::SYN | tcp_flags::ACK)
        ),
        ALLOW_RULE
    );
    assert_eq!(
        send(&p, Direction::Ingress, &tcp("2001:db8::7", ME6, 40000, 80), flags(tcp_flags::SYN)),
        ALLOW_RULE
    );
    assert_eq!(p.flow_count().unwrap(), 0, "untracked flows leave no entry");
    // Ssh from one host: tracked.
    assert_eq!(
        send(&p, Direction::Ingress, &tcp("203.0.113.1", ME4, 50000, 22), flags(tcp_flags::SYN)),
        ALLOW_RULE
    );
    let flows = p.flows().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (flows[0].0.local_port, flows[0].0.remote_port, flows[0].1.state),
        (22, 50000, flow_state::TCP_OPENING)
    );
    assert_eq!(
        send(
            &p,
            Direction::Egress,
            &tcp(ME4, "203.0.113.1", 22, 50000),
            flags(tcp_flags::SYN | tcp_flags::ACK)
        ),
        TRACKED
    );
    assert_eq!(p.flows().unwrap()[0].1.state, flow_state::TCP_ESTABLISHED);

    // Without the IPv4 all-traffic egress rule, IPv4 web is tracked; IPv6 is not.
    let p = load(&web_server(false));
    assert_eq!(
        send(&p, Direction::Ingress, &tcp("198.51.100.7", ME4, 40000, 80), flags(tcp_flags::SYN)),
        ALLOW_RULE
    );
    assert_eq!(
        send(&p, Direction::Ingress, &tcp("2001:db8::7", ME6, 40000, 80), flags(tcp_flags::SYN)),
        ALLOW_RULE
    );
    assert_eq!(p.flow_count().unwrap(), 1);
    // The IPv4 reply passes on the entry (no IPv4 egress rule at all).
    assert_eq!(
        send(
            &p,
            Direction::Egress,
            &tcp(ME4, "198.51.100.7", 80, 40000),
            flags(tcp_flags::SYN | tcp_flags::ACK)
        ),
        TRACKED
    );
}

#[test]
fn outbound_connections_get_their_replies_without_inbound_rules() {
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![
        egress_rule("sgr-out4", sgmirror_policy::model::Protocol::All, &["0.0.0.0/0"]),
        egress_rule("sgr-out6", sgmirror_policy::model::Protocol::All, &["::/0"]),
    ];
    let p = load(&policy);
    for (me, peer) in [(ME4, "192.0.2.9"), (ME6, "2001:db8::9")] {
        assert_eq!(
            send(&p, Direction::Egress, &tcp(me, peer, 41000, 443), flags(tcp_flags::SYN)),
            ALLOW_RULE
        );
        assert_eq!(
            send(&p, Direction::Ingress, &tcp(peer, me, 443, 41000), flags(tcp_flags::SYN | tcp_flags::ACK)),
            TRACKED
        );
        // The same port from another host, or another port from the same host: no.
        let other = if me == ME4 { "192.0.2.10" } else { "2001:db8::10" };
        assert_eq!(send(&p, Direction::Ingress, &tcp(other, me, 443, 41000), flags(tcp_flags::ACK)), DROP);
        assert_eq!(send(&p, Direction::Ingress, &tcp(peer, me, 443, 41001), flags(tcp_flags::ACK)), DROP);
        // DNS-like UDP.
        assert_eq!(send(&p, Direction::Egress, &udp(me, peer, 5353, 53), plain()), ALLOW_RULE);
        assert_eq!(send(&p, Direction::Ingress, &udp(peer, me, 53, 5353), plain()), TRACKED);
        assert_eq!(send(&p, Direction::Ingress, &udp(peer, me, 53, 5354), plain()), DROP);
    }
    // Echo: the reply must carry the request's identifier.
    let icmp = |src: &str, dst: &str, t: u8| Packet {
        src: addr(src),
        dst: addr(dst),
        proto: proto::ICMP,
        l4: L4::Icmp { icmp_type: t, code: 0 },
        fragment: Fragment::None,
    };
    let id = |i: u16| Transport { icmp_id: i, ..Transport::default() };
    assert_eq!(send(&p, Direction::Egress, &icmp(ME4, "192.0.2.9", 8), id(77)), ALLOW_RULE);
    assert_eq!(send(&p, Direction::Ingress, &icmp("192.0.2.9", ME4, 0), id(77)), TRACKED);
    assert_eq!(send(&p, Direction::Ingress, &icmp("192.0.2.9", ME4, 0), id(78)), DROP);
}

#[test]
fn icmp_errors_about_tracked_flows_pass_others_are_judged_by_the_rules() {
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![
        egress_rule("sgr-web4", common::tcp(443, 443), &["192.0.2.0/24"]),
        egress_rule("sgr-web6", common::tcp(443, 443), &["2001:db8::/32"]),
    ];
    let p = load(&policy);
    let error = |src: &str, dst: &str, proto_: u8, t: u8, c: u8, quoted: Packet| {
        let packet = Packet {
            src: addr(src),
            dst: addr(dst),
            proto: proto_,
            l4: L4::Icmp { icmp_type: t, code: c },
            fragment: Fragment::None,
        };
        let embedded =
            Embedded { src: quoted.src, dst: quoted.dst, proto: quoted.proto, l4: quoted.l4, icmp_id: 0 };
        (packet, Transport { embedded: Some(embedded), ..Transport::default() })
    };
    let out4 = tcp(ME4, "192.0.2.9", 42000, 443);
    assert_eq!(send(&p, Direction::Egress, &out4, flags(tcp_flags::SYN)), ALLOW_RULE);
    // Fragmentation needed, from a router on the way.
    let (e, t) = error("198.18.0.1", ME4, proto::ICMP, 3, 4, out4);
    assert_eq!(send(&p, Direction::Ingress, &e, t), TRACKED);
    // The same error about a connection never made: judged by the (absent) rules.
    let (e, t) = error("198.18.0.1", ME4, proto::ICMP, 3, 4, tcp(ME4, "192.0.2.9", 42001, 443));
    assert_eq!(send(&p, Direction::Ingress, &e, t), DROP);
    // IPv6 packet too big, with extension headers in the outer packet.
    let out6 = tcp(ME6, "2001:db8::9", 42000, 443);
    assert_eq!(send(&p, Direction::Egress, &out6, flags(tcp_flags::SYN)), ALLOW_RULE);
    let (e, t) = error("2001:db8:eeee::1", ME6, proto::ICMPV6, 2, 0, out6);
    let bytes = frame::build(
        &e,
        &FrameOptions { transport: t, ipv6_ext_headers: vec![0, 60], ..FrameOptions::default() },
    );
    let d = p.judge(&bytes, Direction::Ingress).unwrap();
    assert_eq!((d.verdict, d.reason), TRACKED);
    // Errors never create entries, and the error refreshed nothing.
    assert_eq!(p.flow_count().unwrap(), 2);
}

#[test]
fn idle_timeouts_expire_flows_on_the_clock() {
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![egress_rule("sgr-dns", common::udp(53, 53), &["192.0.2.0/24"])];
    let timeouts = Timeouts { udp: 5, udp_stream: 12, ..Timeouts::DEFAULT };
    let (p, _) = load_with(&policy, &LoadOptions { timeouts, ..LoadOptions::default() });
    let s = 1_000_000_000u64;
    assert_eq!(send(&p, Direction::Egress, &udp(ME4, "192.0.2.53", 5000, 53), plain()), ALLOW_RULE);
    p.set_clock_offset(4 * s).unwrap();
    assert_eq!(send(&p, Direction::Ingress, &udp("192.0.2.53", ME4, 53, 5000), plain()), TRACKED);
    // A second request after the reply: a stream, with the longer timeout.
    assert_eq!(send(&p, Direction::Egress, &udp(ME4, "192.0.2.53", 5000, 53), plain()), TRACKED);
    assert_eq!(p.flows().unwrap()[0].1.state, flow_state::UDP_STREAM);
    p.set_clock_offset(4 * s + 10 * s).unwrap();
    assert_eq!(send(&p, Direction::Ingress, &udp("192.0.2.53", ME4, 53, 5000), plain()), TRACKED);
    p.set_clock_offset(14 * s + 13 * s).unwrap();
    assert_eq!(
        send(&p, Direction::Ingress, &udp("192.0.2.53", ME4, 53, 5000), plain()),
        DROP,
        "expired after 12 s"
    );
    // A new flow whose first reply comes after 5 s: expired.
    assert_eq!(send(&p, Direction::Egress, &udp(ME4, "192.0.2.53", 5001, 53), plain()), ALLOW_RULE);
    p.set_clock_offset(27 * s + 6 * s).unwrap();
    assert_eq!(send(&p, Direction::Ingress, &udp("192.0.2.53", ME4, 53, 5001), plain()), DROP);
}

#[test]
fn a_connection_older_than_the_agent_is_adopted_from_its_outbound_packets() {
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![egress_rule("sgr-out", sgmirror_policy::model::Protocol::All, &["192.0.2.0/24"])];
    let p = load(&policy);
    // The peer speaks first after the start: nothing allows it.
    assert_eq!(send(&p, Direction::Ingress, &tcp("192.0.2.9", ME4, 443, 43000), flags(tcp_flags::ACK)), DROP);
    // Our side's next packet (mid-stream ACK) creates an established entry...
    assert_eq!(
        send(&p, Direction::Egress, &tcp(ME4, "192.0.2.9", 43000, 443), flags(tcp_flags::ACK | 0x08)),
        ALLOW_RULE
    );
    let flows = p.flows().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].1.state, flow_state::TCP_ESTABLISHED);
    assert_eq!(u32::from(flows[0].1.initiator), sgmirror_common::direction::EGRESS);
    // ...and from then on the peer's packets pass.
    assert_eq!(
        send(&p, Direction::Ingress, &tcp("192.0.2.9", ME4, 443, 43000), flags(tcp_flags::ACK)),
        TRACKED
    );
    // A FIN closes it (closing state, shorter timeout), still passing.
    assert_eq!(
        send(
            &p,
            Direction::Ingress,
            &tcp("192.0.2.9", ME4, 443, 43000),
            flags(tcp_flags::FIN | tcp_flags::ACK)
        ),
        TRACKED
    );
    assert_eq!(p.flows().unwrap()[0].1.state, flow_state::TCP_CLOSING);
}

#[test]
fn audited_packets_pass_but_create_no_flows() {
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![egress_rule("sgr-dns", common::udp(53, 53), &["192.0.2.0/24"])];
    let (p, _) = load_with(&policy, &LoadOptions { mode: Mode::Audit, ..LoadOptions::default() });
    let bytes = frame::build(
        &udp(ME4, "198.51.100.1", 5000, 53),
        &FrameOptions { transport: plain(), ..FrameOptions::default() },
    );
    let d = p.judge(&bytes, Direction::Egress).unwrap();
    assert_eq!(
        (d.verdict, d.reason, d.verdict_code),
        (Verdict::Drop, Reason::NoRule, sgmirror_common::verdict::AUDIT)
    );
    assert!(d.passed());
    assert_eq!(p.flow_count().unwrap(), 0);
    // The reply is audited too (no entry to match).
    let bytes = frame::build(
        &udp("198.51.100.1", ME4, 53, 5000),
        &FrameOptions { transport: plain(), ..FrameOptions::default() },
    );
    assert_eq!(p.judge(&bytes, Direction::Ingress).unwrap().reason, Reason::NoRule);
    // Allowed packets still create entries in audit mode.
    assert_eq!(send(&p, Direction::Egress, &udp(ME4, "192.0.2.53", 5000, 53), plain()), ALLOW_RULE);
    assert_eq!(p.flow_count().unwrap(), 1);
}

#[test]
fn a_full_flow_table_evicts_the_least_recently_used_entries() {
    const CAPACITY: u32 = 256;
    const FLOWS: u16 = 1000;
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![egress_rule("sgr-dns", common::udp(53, 53), &["192.0.2.0/24"])];
    let (p, _) = load_with(&policy, &LoadOptions { flow_capacity: CAPACITY, ..LoadOptions::default() });
    let out = |port: u16| udp(ME4, "192.0.2.53", port, 53);
    let key = |port: u16| FlowKey {
        local: [10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        remote: [192, 0, 2, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        local_port: port,
        remote_port: 53,
        proto: proto::UDP,
        family: 4,
        _pad: [0; 2],
    };
    let keep = 10_000u16; // a flow kept busy all along
    assert_eq!(send(&p, Direction::Egress, &out(keep), plain()), ALLOW_RULE);
    for i in 0..FLOWS {
        // Every packet passes: a full table is no error.
        assert_eq!(send(&p, Direction::Egress, &out(20_000 + i), plain()), ALLOW_RULE, "flow {i}");
        if i % 16 == 0 {
            assert_eq!(send(&p, Direction::Egress, &out(keep), plain()), TRACKED, "the busy flow, at {i}");
        }
        assert!(p.flow_count().unwrap() <= CAPACITY as usize);
    }
    let count = p.flow_count().unwrap();
    let present: std::collections::HashSet<FlowKey> =
        p.flows().unwrap().into_iter().map(|(k, _)| k).collect();
    eprintln!("{FLOWS} flows + 1 busy one through a table of {CAPACITY}: {count} entries left");
    assert!(count <= CAPACITY as usize && count >= CAPACITY as usize / 2, "{count}");
    assert!(present.contains(&key(keep)), "the recently used flow survived");
    let recent = (FLOWS - 32..FLOWS).filter(|i| present.contains(&key(20_000 + i))).count();
    assert_eq!(recent, 32, "the most recent flows are all there");
    let oldest = (0..128).filter(|i| present.contains(&key(20_000 + i))).count();
    assert_eq!(oldest, 0, "the oldest flows were evicted");
    // The counters show it: 1000 flows created (allowed by the rule), fewer entries.
    let created = p
        .stat(
            sgmirror_common::direction::EGRESS,
            sgmirror_common::verdict::ALLOW,
            sgmirror_common::reason::RULE,
        )
        .unwrap();
    assert_eq!(created.packets, u64::from(FLOWS) + 1);
    // And so do the flow-table counters: every allowed new flow was written, and
    // what is not in the table any more was evicted.
    let counters = p.flow_counters().unwrap();
    assert_eq!((counters.created, counters.expired_replaced, counters.deleted), (u64::from(FLOWS) + 1, 0, 0));
    let count = p.flow_count().unwrap();
    assert_eq!(p.flows_evicted_estimate().unwrap(), u64::from(FLOWS) + 1 - count as u64);
    // The busy flow's reply still passes.
    assert_eq!(send(&p, Direction::Ingress, &udp("192.0.2.53", ME4, 53, keep), plain()), TRACKED);
}

#[test]
fn verifier_cost_and_tracked_reply_cost() {
    let mut policy = web_server(false);
    policy.egress.push(egress_rule("sgr-out", sgmirror_policy::model::Protocol::All, &["192.0.2.0/24"]));
    let p = load(&policy);
    for d in [Direction::Ingress, Direction::Egress] {
        let r = p.verifier_report(d);
        eprintln!(
            "{d:?} program: {:?} instructions verified, loaded in {:?}",
            r.verified_instructions, r.load_time
        );
        // A regression guard well below the kernel's limit of 1 000 000.
        assert!(r.verified_instructions.is_some_and(|n| n < 200_000), "{r:?}");
    }
    // A tracked reply, repeated (each run refreshes the entry, so it stays tracked).
    let out = tcp(ME4, "192.0.2.9", 44000, 443);
    assert_eq!(send(&p, Direction::Egress, &out, flags(tcp_flags::SYN)), ALLOW_RULE);
    let reply = frame::build(
        &tcp("192.0.2.9", ME4, 443, 44000),
        &FrameOptions { transport: flags(tcp_flags::ACK), ..FrameOptions::default() },
    );
    let repeat = 1_000_000;
    let (action, ns) = p.test_run_repeat(&reply, Direction::Ingress, repeat).unwrap();
    assert_eq!(action, sgmirror_dataplane::xdp_action::PASS);
    let new_in = frame::build(
        &tcp("203.0.113.1", ME4, 50000, 22),
        &FrameOptions { transport: flags(tcp_flags::ACK | 0x08), ..FrameOptions::default() },
    );
    let denied = frame::build(
        &tcp("198.51.100.1", ME4, 50000, 23),
        &FrameOptions { transport: flags(tcp_flags::SYN), ..FrameOptions::default() },
    );
    let (_, ns_denied) = p.test_run_repeat(&denied, Direction::Ingress, repeat).unwrap();
    let out_reply =
        frame::build(&out, &FrameOptions { transport: flags(tcp_flags::ACK), ..FrameOptions::default() });
    let (_, ns_out) = p.test_run_repeat(&out_reply, Direction::Egress, repeat).unwrap();
    let (_, ns_new) = p.test_run_repeat(&new_in, Direction::Ingress, 1).unwrap();
    eprintln!(
        "ns/packet (repeat {repeat}, informational): tracked reply in {ns}, tracked packet out (TC) {ns_out}, denied new packet in {ns_denied}; first ssh packet {ns_new}"
    );
    assert!(ns > 0 && ns < 100_000);
    assert!(
        p.stats()
            .unwrap()
            .get(
                sgmirror_common::direction::INGRESS,
                sgmirror_common::verdict::ALLOW,
                sgmirror_common::reason::TRACKED
            )
            .packets
            >= u64::from(repeat)
    );
}
