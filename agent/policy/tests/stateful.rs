//! Stateful judging, scenario by scenario, as the AWS documentation tells it
//! (`sg-semantics.md` §1.4): replies of tracked flows pass whatever the rules say,
//! untracked flows are judged by the rules on every packet, ICMP errors about
//! tracked flows pass, flows expire after their state's idle timeout, and each ENI
//! has its own flows.

use std::net::IpAddr;

use ipnet::IpNet;
use sgmirror_common::{FRAG_TIMEOUT_NS, FlowValue, Timeouts, direction as dir, flow_state};
use sgmirror_policy::evaluator::{
    self, LinkState, flow_key, is_response_of_untracked, is_untracked, judge_stateful, related_flow_key,
};
use sgmirror_policy::model::{
    Decision, Direction, Embedded, Fragment, IcmpMatch, InterfacePolicy, L4, Packet, PeerSource, PortRange,
    Protocol, Reason, ResolvedRule, StatefulPacket, Transport, Verdict, proto, tcp_flags,
};

const S: u64 = 1_000_000_000;
const SYN: u8 = tcp_flags::SYN;
const ACK: u8 = tcp_flags::ACK;
const SYN_ACK: u8 = tcp_flags::SYN | tcp_flags::ACK;
const FIN_ACK: u8 = tcp_flags::FIN | tcp_flags::ACK;

/// The protected interface's addresses and a few peers.
const ME4: &str = "10.0.0.5";
const ME6: &str = "2001:db8::5";
const WEB4: &str = "192.0.2.7";
const WEB6: &str = "2001:db8:ff::7";
const ADMIN4: &str = "203.0.113.1";
const ROUTER4: &str = "198.51.100.1";
const ROUTER6: &str = "2001:db8:1::1";

// ---------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------

fn rule(id: &str, direction: Direction, protocol: Protocol, cidr: &str) -> ResolvedRule {
    let net: IpNet = cidr.parse().unwrap();
    let source = if net.addr().is_ipv4() {
        PeerSource::Cidr(cidr.to_owned())
    } else {
        PeerSource::CidrIpv6(cidr.to_owned())
    };
    ResolvedRule {
        id: id.to_owned(),
        group_id: "sg-1".to_owned(),
        direction,
        protocol,
        source,
        peers: vec![net.trunc()],
    }
}

fn inbound(id: &str, protocol: Protocol, cidr: &str) -> ResolvedRule {
    rule(id, Direction::Ingress, protocol, cidr)
}

fn outbound(id: &str, protocol: Protocol, cidr: &str) -> ResolvedRule {
    rule(id, Direction::Egress, protocol, cidr)
}

fn tcp_port(port: u16) -> Protocol {
    Protocol::Tcp(PortRange { from: port, to: port })
}

fn policy(ingress: Vec<ResolvedRule>, egress: Vec<ResolvedRule>) -> InterfacePolicy {
    InterfacePolicy { interface_id: "eni-a".to_owned(), ingress, egress, ..InterfacePolicy::default() }
}

/// A new custom group's rules: nothing in, everything out (both families).
fn outbound_only() -> InterfacePolicy {
    policy(
        Vec::new(),
        vec![outbound("sgr-out4", Protocol::All, "0.0.0.0/0"), outbound("sgr-out6", Protocol::All, "::/0")],
    )
}

/// The connection-tracking page's worked example.
fn worked_example() -> InterfacePolicy {
    policy(
        vec![
            inbound("sgr-ssh", tcp_port(22), "203.0.113.1/32"),
            inbound("sgr-http4", tcp_port(80), "0.0.0.0/0"),
            inbound("sgr-http6", tcp_port(80), "::/0"),
        ],
        vec![outbound("sgr-out4", Protocol::All, "0.0.0.0/0"), outbound("sgr-out6", Protocol::All, "::/0")],
    )
}

fn without(policy: &InterfacePolicy, id: &str) -> InterfacePolicy {
    let mut p = policy.clone();
    p.ingress.retain(|r| r.id != id);
    p.egress.retain(|r| r.id != id);
    p
}

// ---------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------

fn ip(a: &str) -> IpAddr {
    a.parse().unwrap()
}

fn packet(src: &str, dst: &str, proto: u8, l4: L4) -> StatefulPacket {
    StatefulPacket {
        packet: Packet { src: ip(src), dst: ip(dst), proto, l4, fragment: Fragment::None },
        transport: Transport::default(),
    }
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> StatefulPacket {
    let mut p = packet(src, dst, proto::TCP, L4::Ports { src: sport, dst: dport });
    p.transport.tcp_flags = flags;
    p
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> StatefulPacket {
    packet(src, dst, proto::UDP, L4::Ports { src: sport, dst: dport })
}

fn icmp_proto(addr: &str) -> u8 {
    if addr.contains(':') { proto::ICMPV6 } else { proto::ICMP }
}

fn echo(src: &str, dst: &str, icmp_type: u8, id: u16) -> StatefulPacket {
    let mut p = packet(src, dst, icmp_proto(src), L4::Icmp { icmp_type, code: 0 });
    p.transport.icmp_id = id;
    p
}

/// An ICMP error from `src` to `dst` quoting `about` (the packet it is about).
fn error(src: &str, dst: &str, icmp_type: u8, code: u8, about: &StatefulPacket) -> StatefulPacket {
    let mut p = packet(src, dst, icmp_proto(src), L4::Icmp { icmp_type, code });
    p.transport.embedded = Some(Embedded {
        src: about.packet.src,
        dst: about.packet.dst,
        proto: about.packet.proto,
        l4: about.packet.l4,
        icmp_id: about.transport.icmp_id,
    });
    p
}

fn other(src: &str, dst: &str, protocol: u8) -> StatefulPacket {
    packet(src, dst, protocol, L4::None)
}

// ---------------------------------------------------------------------------------
// A link being replayed
// ---------------------------------------------------------------------------------

/// One ENI: its current policy, its state and the clock.
struct Link {
    policy: InterfacePolicy,
    state: LinkState,
    now: u64,
}

impl Link {
    fn new(policy: InterfacePolicy) -> Self {
        // Start the clock away from zero, as the kernel's is.
        Self { policy, state: LinkState::default(), now: 1_000 * S }
    }

    fn judge(&mut self, direction: Direction, p: &StatefulPacket) -> Decision {
        judge_stateful(&self.policy, direction, p, self.now, &mut self.state)
    }

    fn inbound(&mut self, p: &StatefulPacket) -> Decision {
        self.judge(Direction::Ingress, p)
    }

    fn outbound(&mut self, p: &StatefulPacket) -> Decision {
        self.judge(Direction::Egress, p)
    }

    fn wait(&mut self, ns: u64) {
        self.now += ns;
    }

    /// The entry of the flow `p` belongs to, seen in `direction`.
    fn flow(&self, direction: Direction, p: &StatefulPacket) -> Option<FlowValue> {
        self.state.flow(&flow_key(direction, p)).copied()
    }

    fn state_of(&self, direction: Direction, p: &StatefulPacket) -> Option<u8> {
        self.flow(direction, p).map(|f| f.state)
    }
}

fn allowed(reason: Reason) -> impl Fn(&Decision) -> bool {
    move |d| d.verdict == Verdict::Allow && d.reason == reason
}

#[track_caller]
fn assert_rule(d: &Decision, rules: &[&str]) {
    assert_eq!(
        d,
        &Decision {
            verdict: Verdict::Allow,
            reason: Reason::Rule,
            rules: rules.iter().map(|r| (*r).to_owned()).collect()
        }
    );
}

#[track_caller]
fn assert_tracked(d: &Decision) {
    assert_eq!(d, &Decision { verdict: Verdict::Allow, reason: Reason::Tracked, rules: Vec::new() });
}

#[track_caller]
fn assert_no_rule(d: &Decision) {
    assert_eq!(d, &Decision { verdict: Verdict::Drop, reason: Reason::NoRule, rules: Vec::new() });
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

/// "Responses to allowed outbound traffic may enter regardless of inbound rules":
/// with no inbound rule at all, the host's own connections work, in both families.
#[test]
fn outbound_connections_get_their_replies_without_inbound_rules() {
    for (me, web, out_rule) in [(ME4, WEB4, "sgr-out4"), (ME6, WEB6, "sgr-out6")] {
        let mut link = Link::new(outbound_only());
        let syn = tcp(me, 40000, web, 443, SYN);
        assert_rule(&link.outbound(&syn), &[out_rule]);
        assert_eq!(link.state_of(Direction::Egress, &syn), Some(flow_state::TCP_OPENING));
        assert_eq!(link.flow(Direction::Egress, &syn).unwrap().initiator, dir::EGRESS as u8);
        assert_tracked(&link.inbound(&tcp(web, 443, me, 40000, SYN_ACK)));
        assert_eq!(link.state_of(Direction::Egress, &syn), Some(flow_state::TCP_ESTABLISHED));
        // Our next packets are tracked too (the flow matches before the rules).
        assert_tracked(&link.outbound(&tcp(me, 40000, web, 443, ACK)));
        assert_tracked(&link.inbound(&tcp(web, 443, me, 40000, ACK)));
        assert_eq!(link.state.flow_count(), 1);

        // Unsolicited inbound packets to the same port, or from the same peer to
        // another port, are dropped.
        assert_no_rule(&link.inbound(&tcp(web, 443, me, 40001, SYN)));
        assert_no_rule(&link.inbound(&tcp(web, 444, me, 40000, SYN)));
        let stranger = if me == ME4 { "192.0.2.8" } else { "2001:db8:ff::8" };
        assert_no_rule(&link.inbound(&tcp(stranger, 443, me, 40000, SYN_ACK)));

        // UDP request/response (DNS-like) and a ping.
        let query = udp(me, 5353, web, 53);
        assert_rule(&link.outbound(&query), &[out_rule]);
        assert_tracked(&link.inbound(&udp(web, 53, me, 5353)));
        assert_no_rule(&link.inbound(&udp(web, 53, me, 5354)));
        let (request, reply) = if me == ME4 { (8, 0) } else { (128, 129) };
        assert_rule(&link.outbound(&echo(me, web, request, 7)), &[out_rule]);
        assert_tracked(&link.inbound(&echo(web, me, reply, 7)));
        assert_no_rule(&link.inbound(&echo(web, me, reply, 8)));
        assert_eq!(link.state.flow_count(), 3);
    }
}

/// An egress rule that does not allow a destination blocks it, and nothing is
/// tracked for it.
#[test]
fn egress_rules_decide_what_may_leave() {
    let mut link = Link::new(policy(Vec::new(), vec![outbound("sgr-web", tcp_port(443), "0.0.0.0/0")]));
    assert_rule(&link.outbound(&tcp(ME4, 40000, WEB4, 443, SYN)), &["sgr-web"]);
    assert_no_rule(&link.outbound(&tcp(ME4, 40001, WEB4, 22, SYN)));
    assert_no_rule(&link.outbound(&udp(ME4, 5353, WEB4, 53)));
    assert_eq!(link.state.flow_count(), 1);
    assert_no_rule(&link.inbound(&udp(WEB4, 53, ME4, 5353)));
}

/// The documentation's worked example: ssh from one /32 is tracked; http from
/// everywhere with everything allowed out is untracked; removing only the IPv4
/// outbound rule makes IPv4 tracked and leaves IPv6 untracked.
#[test]
fn the_documented_example_of_tracked_and_untracked_flows() {
    let example = worked_example();
    let mut link = Link::new(example.clone());

    let ssh = tcp(ADMIN4, 50000, ME4, 22, SYN);
    assert_rule(&link.inbound(&ssh), &["sgr-ssh"]);
    assert!(!is_untracked(&example, Direction::Ingress, &ssh.packet, &["sgr-ssh".to_owned()]));
    assert_eq!(link.state_of(Direction::Ingress, &ssh), Some(flow_state::TCP_OPENING));
    assert_tracked(&link.outbound(&tcp(ME4, 22, ADMIN4, 50000, SYN_ACK)));

    for (client, me, rule_in, rule_out) in
        [("198.51.100.9", ME4, "sgr-http4", "sgr-out4"), ("2001:db8:77::9", ME6, "sgr-http6", "sgr-out6")]
    {
        let syn = tcp(client, 51000, me, 80, SYN);
        assert!(is_untracked(&example, Direction::Ingress, &syn.packet, &[rule_in.to_owned()]));
        assert_rule(&link.inbound(&syn), &[rule_in]);
        // The reply is allowed by the outbound rule, and is a response of an
        // untracked flow: no entry either way.
        let reply = tcp(me, 80, client, 51000, SYN_ACK);
        assert!(is_response_of_untracked(&example, Direction::Egress, &reply.packet));
        assert_rule(&link.outbound(&reply), &[rule_out]);
        assert_rule(&link.inbound(&tcp(client, 51000, me, 80, ACK)), &[rule_in]);
        assert_eq!(link.flow(Direction::Ingress, &syn), None);
    }
    assert_eq!(link.state.flow_count(), 1, "only ssh is tracked");

    // "ICMP traffic is always tracked."
    let ping = echo(ME4, WEB4, 8, 3);
    assert_rule(&link.outbound(&ping), &["sgr-out4"]);
    assert_eq!(link.state_of(Direction::Egress, &ping), Some(flow_state::ICMP));
    assert_tracked(&link.inbound(&echo(WEB4, ME4, 0, 3)));

    // Removing the IPv4 outbound rule: IPv4 http becomes tracked (and its replies
    // need no outbound rule), IPv6 http stays untracked.
    link.policy = without(&example, "sgr-out4");
    let syn4 = tcp("198.51.100.10", 52000, ME4, 80, SYN);
    assert_rule(&link.inbound(&syn4), &["sgr-http4"]);
    assert_eq!(link.state_of(Direction::Ingress, &syn4), Some(flow_state::TCP_OPENING));
    assert_tracked(&link.outbound(&tcp(ME4, 80, "198.51.100.10", 52000, SYN_ACK)));
    let syn6 = tcp("2001:db8:77::10", 52000, ME6, 80, SYN);
    assert_rule(&link.inbound(&syn6), &["sgr-http6"]);
    assert_eq!(link.flow(Direction::Ingress, &syn6), None);
    assert_rule(&link.outbound(&tcp(ME6, 80, "2001:db8:77::10", 52000, SYN_ACK)), &["sgr-out6"]);
}

/// "If a security group rule permits TCP or UDP flows for all traffic" — the rule
/// that opens the flow may name narrow ports but must be a literal /0; a /0 written
/// with host bits counts, a prefix list or group holding a /0 does not; the other
/// direction must allow every port of the protocol.
#[test]
fn what_makes_a_flow_untracked() {
    let out_all = vec![outbound("sgr-out4", Protocol::All, "0.0.0.0/0")];
    let dns = udp("198.51.100.9", 3333, ME4, 53);
    let udp_53 = Protocol::Udp(PortRange { from: 53, to: 53 });
    let check = |ingress: Vec<ResolvedRule>, egress: Vec<ResolvedRule>| {
        let p = policy(ingress, egress);
        let rules = evaluator::allowing_rules(&p, Direction::Ingress, &dns.packet);
        assert!(!rules.is_empty());
        let mut link = Link::new(p.clone());
        let d = link.inbound(&dns);
        assert!(allowed(Reason::Rule)(&d));
        let untracked = is_untracked(&p, Direction::Ingress, &dns.packet, &rules);
        assert_eq!(link.state.flow_count() == 0, untracked);
        untracked
    };
    assert!(check(vec![inbound("sgr-dns", udp_53, "0.0.0.0/0")], out_all.clone()));
    assert!(check(vec![inbound("sgr-dns", udp_53, "203.0.113.5/0")], out_all.clone()));
    assert!(!check(vec![inbound("sgr-dns", udp_53, "198.51.100.0/24")], out_all.clone()));
    let mut from_list = inbound("sgr-dns", udp_53, "0.0.0.0/0");
    from_list.source = PeerSource::PrefixList("pl-everything".to_owned());
    assert!(!check(vec![from_list], out_all.clone()));
    // The response rule: every UDP port, or a numbered 17, or -1; not TCP, not a range.
    let udp_all = Protocol::Udp(PortRange { from: 0, to: 65535 });
    let dns_rule = || vec![inbound("sgr-dns", udp_53, "0.0.0.0/0")];
    assert!(check(dns_rule(), vec![outbound("sgr-o", udp_all, "0.0.0.0/0")]));
    assert!(check(dns_rule(), vec![outbound("sgr-o", Protocol::Number(proto::UDP), "0.0.0.0/0")]));
    assert!(!check(
        dns_rule(),
        vec![outbound("sgr-o", Protocol::Udp(PortRange { from: 1, to: 65535 }), "0.0.0.0/0")]
    ));
    assert!(!check(
        dns_rule(),
        vec![outbound("sgr-o", Protocol::Tcp(PortRange { from: 0, to: 65535 }), "0.0.0.0/0")]
    ));
    assert!(!check(dns_rule(), vec![outbound("sgr-o", udp_all, "0.0.0.0/1")]));
    assert!(!check(dns_rule(), vec![outbound("sgr-o", udp_all, "::/0")]));
    // One /0 rule among the allowing rules is enough.
    assert!(check(
        vec![inbound("sgr-a", udp_53, "198.51.100.0/24"), inbound("sgr-b", udp_53, "0.0.0.0/0")],
        out_all.clone()
    ));
    // ICMP and other protocols are always tracked.
    let p = policy(vec![inbound("sgr-all", Protocol::All, "0.0.0.0/0")], out_all);
    let mut link = Link::new(p.clone());
    for packet in
        [echo(WEB4, ME4, 8, 1), other(WEB4, ME4, 47), tcp(WEB4, 1, ME4, 2, SYN), udp(WEB4, 1, ME4, 2)]
    {
        let rules = evaluator::allowing_rules(&p, Direction::Ingress, &packet.packet);
        let expect = matches!(packet.packet.proto, proto::TCP | proto::UDP);
        assert_eq!(is_untracked(&p, Direction::Ingress, &packet.packet, &rules), expect);
        assert!(allowed(Reason::Rule)(&link.inbound(&packet)));
        assert_eq!(link.flow(Direction::Ingress, &packet).is_none(), expect);
    }
}

/// "The security group continues to allow packets until existing connections time
/// out": removing the rule behind a tracked connection does not cut it.
#[test]
fn removing_the_rule_of_a_tracked_connection_does_not_cut_it() {
    let p = worked_example();
    let mut link = Link::new(p.clone());
    assert_rule(&link.inbound(&tcp(ADMIN4, 50000, ME4, 22, SYN)), &["sgr-ssh"]);
    assert_tracked(&link.outbound(&tcp(ME4, 22, ADMIN4, 50000, SYN_ACK)));
    link.policy = without(&p, "sgr-ssh");
    link.wait(3_600 * S);
    assert_tracked(&link.inbound(&tcp(ADMIN4, 50000, ME4, 22, ACK)));
    // A new connection from the same host is refused.
    assert_no_rule(&link.inbound(&tcp(ADMIN4, 50001, ME4, 22, SYN)));
    // Even with every rule gone, in and out.
    link.policy = policy(Vec::new(), Vec::new());
    assert_tracked(&link.outbound(&tcp(ME4, 22, ADMIN4, 50000, ACK)));
}

/// "An untracked flow is immediately interrupted if the rule that enables the flow
/// is removed or modified."
#[test]
fn removing_the_rule_of_an_untracked_flow_cuts_it_at_once() {
    let p = worked_example();
    let mut link = Link::new(p.clone());
    let client = "198.51.100.9";
    assert_rule(&link.inbound(&tcp(client, 51000, ME4, 80, SYN)), &["sgr-http4"]);
    assert_rule(&link.outbound(&tcp(ME4, 80, client, 51000, SYN_ACK)), &["sgr-out4"]);
    assert_rule(&link.inbound(&tcp(client, 51000, ME4, 80, ACK)), &["sgr-http4"]);
    link.policy = without(&p, "sgr-http4");
    assert_no_rule(&link.inbound(&tcp(client, 51000, ME4, 80, ACK)));
    // Modified rather than removed: narrowed to another source.
    let mut narrowed = p.clone();
    narrowed.ingress[1] = inbound("sgr-http4", tcp_port(80), "192.0.2.0/24");
    link.policy = narrowed;
    assert_no_rule(&link.inbound(&tcp(client, 51000, ME4, 80, ACK)));
}

/// ICMP errors about tracked flows pass, so path-MTU discovery works with no ICMP
/// rule; an error about an unknown flow is judged by the rules; errors never create
/// flows and refresh nothing.
#[test]
fn icmp_errors_about_tracked_flows_pass() {
    let mut link = Link::new(outbound_only());
    let syn = tcp(ME4, 40000, WEB4, 443, SYN);
    link.outbound(&syn);
    let before = link.flow(Direction::Egress, &syn).unwrap();
    link.wait(S);
    // Fragmentation needed, from a router on the path.
    let frag_needed = error(ROUTER4, ME4, 3, 4, &tcp(ME4, 40000, WEB4, 443, ACK));
    assert_eq!(related_flow_key(Direction::Ingress, &frag_needed), Some(flow_key(Direction::Egress, &syn)));
    assert_tracked(&link.inbound(&frag_needed));
    assert_eq!(link.flow(Direction::Egress, &syn), Some(before), "an error refreshes nothing");
    // Time exceeded and parameter problem too.
    assert_tracked(&link.inbound(&error(ROUTER4, ME4, 11, 0, &syn)));
    assert_tracked(&link.inbound(&error(ROUTER4, ME4, 12, 0, &syn)));
    // About a flow we do not have: judged by the rules (none).
    let unknown = error(ROUTER4, ME4, 3, 4, &tcp(ME4, 40001, WEB4, 443, ACK));
    assert_no_rule(&link.inbound(&unknown));
    // Quoting the packet as if it had travelled inbound names another flow.
    assert_no_rule(&link.inbound(&error(ROUTER4, ME4, 3, 4, &tcp(WEB4, 443, ME4, 40000, ACK))));
    // Not an error type (redirect, 5): no related lookup.
    assert_no_rule(&link.inbound(&error(ROUTER4, ME4, 5, 0, &syn)));
    // ICMPv6 packet too big about a tracked IPv6 flow.
    let syn6 = tcp(ME6, 40000, WEB6, 443, SYN);
    link.outbound(&syn6);
    assert_tracked(&link.inbound(&error(ROUTER6, ME6, 2, 0, &syn6)));
    assert_tracked(&link.inbound(&error(ROUTER6, ME6, 1, 4, &syn6)));
    assert_no_rule(&link.inbound(&error(ROUTER6, ME6, 2, 0, &tcp(ME6, 40001, WEB6, 443, ACK))));
    // An error about our ping (time exceeded, as traceroute gets).
    let ping = echo(ME4, WEB4, 8, 99);
    link.outbound(&ping);
    assert_tracked(&link.inbound(&error(ROUTER4, ME4, 11, 0, &ping)));
    assert_no_rule(&link.inbound(&error(ROUTER4, ME4, 11, 0, &echo(ME4, WEB4, 8, 98))));
    let count = link.state.flow_count();

    // With a rule for errors, an unknown one passes by the rule and creates nothing.
    link.policy.ingress.push(inbound(
        "sgr-unreach",
        Protocol::Icmp(IcmpMatch::Type { icmp_type: 3 }),
        "0.0.0.0/0",
    ));
    assert_rule(&link.inbound(&unknown), &["sgr-unreach"]);
    assert_eq!(link.state.flow_count(), count);
    // Outbound errors about inbound flows work the same way.
    let mut server = Link::new(policy(
        vec![inbound("sgr-dns", Protocol::Udp(PortRange { from: 53, to: 53 }), "192.0.2.0/24")],
        Vec::new(),
    ));
    let query = udp(WEB4, 3333, ME4, 53);
    assert_rule(&server.inbound(&query), &["sgr-dns"]);
    assert_tracked(&server.outbound(&error(ME4, WEB4, 3, 3, &query)));
    assert_eq!(server.state.flow_count(), 1);
}

/// An ICMP error about a flow that has expired is judged by the rules.
#[test]
fn icmp_errors_about_expired_flows_are_judged_by_the_rules() {
    let mut link = Link::new(outbound_only());
    let query = udp(ME4, 5353, WEB4, 53);
    link.outbound(&query);
    link.wait(30 * S);
    assert_tracked(&link.inbound(&error(ROUTER4, ME4, 3, 3, &query)));
    link.wait(1);
    assert_no_rule(&link.inbound(&error(ROUTER4, ME4, 3, 3, &query)));
}

/// Echo replies to our pings pass; an inbound echo request allowed by a rule lets
/// our reply out with no outbound rule.
#[test]
fn echo_replies_match_their_request_by_identifier() {
    let ping_rule = Protocol::Icmp(IcmpMatch::TypeCode { icmp_type: 8, code: 0 });
    let ping6_rule = Protocol::Icmpv6(IcmpMatch::TypeCode { icmp_type: 128, code: 0 });
    let mut link = Link::new(policy(
        vec![
            inbound("sgr-ping", ping_rule, "198.51.100.0/24"),
            inbound("sgr-ping6", ping6_rule, "2001:db8:77::/48"),
        ],
        vec![outbound("sgr-ping-out", ping_rule, "0.0.0.0/0")],
    ));
    assert_rule(&link.outbound(&echo(ME4, WEB4, 8, 41)), &["sgr-ping-out"]);
    assert_tracked(&link.inbound(&echo(WEB4, ME4, 0, 41)));
    assert_no_rule(&link.inbound(&echo(WEB4, ME4, 0, 42)));
    assert_no_rule(&link.inbound(&echo("192.0.2.99", ME4, 0, 41)));
    // Inbound pings: our replies leave as tracked traffic.
    assert_rule(&link.inbound(&echo("198.51.100.3", ME4, 8, 5)), &["sgr-ping"]);
    assert_tracked(&link.outbound(&echo(ME4, "198.51.100.3", 0, 5)));
    assert_no_rule(&link.outbound(&echo(ME4, "198.51.100.3", 0, 6)));
    assert_rule(&link.inbound(&echo("2001:db8:77::3", ME6, 128, 5)), &["sgr-ping6"]);
    assert_tracked(&link.outbound(&echo(ME6, "2001:db8:77::3", 129, 5)));
}

/// Idle timeouts per state, with AWS's defaults: UDP 30 s until it becomes a stream
/// (180 s), TCP established 5 days, TCP opening and closing 120 s, ICMP 30 s.
#[test]
fn each_state_has_its_idle_timeout() {
    let t = Timeouts::DEFAULT;
    assert_eq!(
        (t.tcp_established, t.tcp_other, t.udp, t.udp_stream, t.icmp, t.other),
        (432_000, 120, 30, 180, 30, 600)
    );

    // UDP: one request, one reply: 30 s.
    let mut link = Link::new(outbound_only());
    let query = udp(ME4, 5353, WEB4, 53);
    let answer = udp(WEB4, 53, ME4, 5353);
    link.outbound(&query);
    assert_eq!(link.state_of(Direction::Egress, &query), Some(flow_state::UDP_NEW));
    link.wait(30 * S);
    assert_tracked(&link.inbound(&answer));
    assert_eq!(link.state_of(Direction::Egress, &query), Some(flow_state::UDP_REPLIED));
    assert_tracked(&link.inbound(&answer));
    assert_eq!(link.state_of(Direction::Egress, &query), Some(flow_state::UDP_REPLIED));
    link.wait(30 * S + 1);
    assert_no_rule(&link.inbound(&answer));
    assert_eq!(link.state.flow_count(), 0, "the expired flow is gone");

    // UDP stream: request, reply, request again → 180 s.
    link.outbound(&query);
    link.inbound(&answer);
    assert_tracked(&link.outbound(&query));
    assert_eq!(link.state_of(Direction::Egress, &query), Some(flow_state::UDP_STREAM));
    link.wait(180 * S);
    assert_tracked(&link.inbound(&answer));
    link.wait(180 * S + 1);
    assert_no_rule(&link.inbound(&answer));

    // TCP: an unanswered SYN lasts 120 s.
    let syn = tcp(ME4, 40000, WEB4, 443, SYN);
    link.outbound(&syn);
    link.wait(120 * S + 1);
    assert_no_rule(&link.inbound(&tcp(WEB4, 443, ME4, 40000, SYN_ACK)));
    // An established connection survives four idle days; a FIN brings it to 120 s.
    link.outbound(&syn);
    link.inbound(&tcp(WEB4, 443, ME4, 40000, SYN_ACK));
    assert_eq!(link.state_of(Direction::Egress, &syn), Some(flow_state::TCP_ESTABLISHED));
    link.wait(4 * 86_400 * S);
    assert_tracked(&link.inbound(&tcp(WEB4, 443, ME4, 40000, ACK)));
    assert_tracked(&link.inbound(&tcp(WEB4, 443, ME4, 40000, FIN_ACK)));
    assert_eq!(link.state_of(Direction::Egress, &syn), Some(flow_state::TCP_CLOSING));
    link.wait(120 * S);
    assert_tracked(&link.outbound(&tcp(ME4, 40000, WEB4, 443, FIN_ACK)));
    assert_eq!(
        link.state_of(Direction::Egress, &syn),
        Some(flow_state::TCP_CLOSING),
        "closing stays closing"
    );
    link.wait(120 * S + 1);
    assert_no_rule(&link.inbound(&tcp(WEB4, 443, ME4, 40000, ACK)));
    // A reset closes too.
    link.outbound(&tcp(ME4, 40002, WEB4, 443, SYN));
    assert_tracked(&link.inbound(&tcp(WEB4, 443, ME4, 40002, tcp_flags::RST | ACK)));
    assert_eq!(
        link.state_of(Direction::Egress, &tcp(ME4, 40002, WEB4, 443, 0)),
        Some(flow_state::TCP_CLOSING)
    );

    // ICMP: 30 s.
    link.outbound(&echo(ME4, WEB4, 8, 1));
    link.wait(30 * S + 1);
    assert_no_rule(&link.inbound(&echo(WEB4, ME4, 0, 1)));
}

/// Timeouts come from the policy (AWS's per-ENI `ConnectionTrackingConfiguration`),
/// and each packet refreshes its flow.
#[test]
fn configured_timeouts_apply_and_packets_refresh_their_flow() {
    let mut p = outbound_only();
    p.timeouts = Timeouts { tcp_established: 60, udp: 5, ..Timeouts::DEFAULT };
    let mut link = Link::new(p);
    let syn = tcp(ME4, 40000, WEB4, 443, SYN);
    link.outbound(&syn);
    link.inbound(&tcp(WEB4, 443, ME4, 40000, SYN_ACK));
    for _ in 0..5 {
        link.wait(60 * S);
        assert_tracked(&link.outbound(&tcp(ME4, 40000, WEB4, 443, ACK)));
        assert_eq!(link.flow(Direction::Egress, &syn).unwrap().last_seen_ns, link.now);
    }
    link.wait(60 * S + 1);
    assert_no_rule(&link.inbound(&tcp(WEB4, 443, ME4, 40000, ACK)));
    let query = udp(ME4, 5353, WEB4, 53);
    link.outbound(&query);
    link.wait(5 * S + 1);
    assert_no_rule(&link.inbound(&udp(WEB4, 53, ME4, 5353)));
}

/// Expired means idle for strictly longer than the timeout: at exactly the timeout
/// the flow still admits a packet, one nanosecond later it does not.
#[test]
fn expiry_boundary_is_strict() {
    for (packet, reply, timeout) in [
        (other(ME4, WEB4, 47), other(WEB4, ME4, 47), 600),
        (echo(ME6, WEB6, 128, 9), echo(WEB6, ME6, 129, 9), 30),
        (udp(ME6, 1000, WEB6, 2000), udp(WEB6, 2000, ME6, 1000), 30),
    ] {
        let mut at_limit = Link::new(outbound_only());
        at_limit.outbound(&packet);
        at_limit.wait(timeout * S);
        assert_tracked(&at_limit.inbound(&reply));
        let mut past = Link::new(outbound_only());
        past.outbound(&packet);
        past.wait(timeout * S + 1);
        assert_no_rule(&past.inbound(&reply));
        // The expired entry was removed; the table keeps nothing for it.
        assert_eq!(past.state.flow_count(), 0);
        assert_eq!(past.state.live_flows(&past.policy.timeouts, past.now).count(), 0);
    }
}

/// "For protocols other than TCP, UDP, or ICMP, only the IP address and protocol
/// number is tracked": within 600 s, the host may send the same protocol back.
#[test]
fn other_protocols_are_tracked_by_address_and_protocol() {
    let mut link = Link::new(outbound_only());
    let gre = other(ME4, WEB4, 47);
    assert_rule(&link.outbound(&gre), &["sgr-out4"]);
    let key = flow_key(Direction::Egress, &gre);
    assert_eq!((key.local_port, key.remote_port, key.proto), (0, 0, 47));
    assert_eq!(link.state_of(Direction::Egress, &gre), Some(flow_state::OTHER));
    link.wait(599 * S);
    assert_tracked(&link.inbound(&other(WEB4, ME4, 47)));
    assert_no_rule(&link.inbound(&other(WEB4, ME4, 50)));
    assert_no_rule(&link.inbound(&other("192.0.2.8", ME4, 47)));
    // Another local address of the interface is another flow.
    assert_no_rule(&link.inbound(&other(WEB4, "10.0.0.6", 47)));
    link.wait(600 * S + 1);
    assert_no_rule(&link.inbound(&other(WEB4, ME4, 47)));
}

/// Flows are tracked per ENI: a flow allowed on one admits no replies on another.
#[test]
fn flows_belong_to_one_eni() {
    let mut eth0 = Link::new(outbound_only());
    let mut eth1 = Link::new(InterfacePolicy { interface_id: "eni-b".to_owned(), ..outbound_only() });
    eth0.outbound(&tcp(ME4, 40000, WEB4, 443, SYN));
    let reply = tcp(WEB4, 443, ME4, 40000, SYN_ACK);
    assert_no_rule(&eth1.inbound(&reply));
    assert_tracked(&eth0.inbound(&reply));
    assert_eq!((eth0.state.flow_count(), eth1.state.flow_count()), (1, 0));
}

/// Starting on a busy host: an outbound packet of a connection that existed before
/// enforcement (no SYN) creates an established flow, so the connection survives.
#[test]
fn a_mid_stream_packet_at_egress_adopts_an_established_flow() {
    let mut link = Link::new(outbound_only());
    let ack = tcp(ME4, 40000, WEB4, 443, ACK);
    assert_rule(&link.outbound(&ack), &["sgr-out4"]);
    let flow = link.flow(Direction::Egress, &ack).unwrap();
    assert_eq!((flow.state, flow.initiator), (flow_state::TCP_ESTABLISHED, dir::EGRESS as u8));
    link.wait(3 * 86_400 * S);
    assert_tracked(&link.inbound(&tcp(WEB4, 443, ME4, 40000, ACK)));
    // A SYN-ACK (we are the server of a connection opened earlier) is established too.
    let mut server = Link::new(outbound_only());
    server.outbound(&tcp(ME4, 22, ADMIN4, 50000, SYN_ACK));
    assert_eq!(
        server.state_of(Direction::Egress, &tcp(ME4, 22, ADMIN4, 50000, 0)),
        Some(flow_state::TCP_ESTABLISHED)
    );
}

/// Fragments of tracked traffic: a tracked first fragment lets its later fragments
/// through while it is younger than the fragment timeout, on the same clock.
#[test]
fn fragments_of_tracked_replies() {
    let mut link = Link::new(outbound_only());
    link.outbound(&udp(ME4, 5353, WEB4, 53));
    let mut first = udp(WEB4, 53, ME4, 5353);
    first.packet.fragment = Fragment::First(77);
    let mut later = first;
    later.packet.fragment = Fragment::Later(77);
    later.packet.l4 = L4::None;
    let fragment = |v| Decision { verdict: v, reason: Reason::Fragment, rules: Vec::new() };
    assert_eq!(link.inbound(&later), fragment(Verdict::Drop));
    assert_tracked(&link.inbound(&first));
    assert_eq!(link.state.fragments().len(), 1);
    link.wait(FRAG_TIMEOUT_NS - 1);
    assert_eq!(link.inbound(&later), fragment(Verdict::Allow));
    link.wait(1);
    assert_eq!(link.inbound(&later), fragment(Verdict::Drop));
}

/// Exempt traffic never touches the flow table.
#[test]
fn exempt_traffic_creates_no_flows() {
    let mut p = outbound_only();
    p.exempt = sgmirror_policy::exempt::FIXED_ADDRESSES.to_vec();
    let mut link = Link::new(p);
    let imds = tcp(ME4, 40000, "169.254.169.254", 80, SYN);
    assert!(allowed(Reason::Exempt)(&link.outbound(&imds)));
    assert!(allowed(Reason::Exempt)(&link.outbound(&udp(ME4, 68, "255.255.255.255", 67))));
    assert_eq!(link.state.flow_count(), 0);
    assert!(allowed(Reason::Exempt)(&link.inbound(&tcp("169.254.169.254", 80, ME4, 40000, SYN_ACK))));
}

/// The stateless functions are the stateful steps with no flow state: the first
/// packet of a trace gets the same answer from both.
#[test]
fn stateless_verdicts_match_a_fresh_link() {
    let p = worked_example();
    for (direction, packet) in [
        (Direction::Ingress, tcp(ADMIN4, 1, ME4, 22, SYN)),
        (Direction::Ingress, tcp(ADMIN4, 1, ME4, 23, SYN)),
        (Direction::Egress, udp(ME6, 1, WEB6, 53)),
        (Direction::Ingress, echo(WEB4, ME4, 8, 1)),
    ] {
        let mut link = Link::new(p.clone());
        assert_eq!(link.judge(direction, &packet), evaluator::verdict(&p, direction, &packet.packet));
    }
}
