//! The real XDP program on a fixed table of crafted frames (`BPF_PROG_TEST_RUN`):
//! every parsing edge of `DESIGN.md` §3, every exemption, fragments, audit mode.
//! Each row states the expected action, counted verdict, reason and allowing rules;
//! rows that are well-formed packets are also held against the reference evaluator.
//! Needs root (loads BPF programs).

mod common;

use common::*;
use sgmirror_common::{direction, reason, verdict};
use sgmirror_dataplane::{FrameOptions, LoadedProgram, Mode, frame, xdp_action};
use sgmirror_policy::compile::MapImage;
use sgmirror_policy::evaluator::{FragmentMemory, verdict_with_fragments};
use sgmirror_policy::model::{Direction, Fragment, InterfacePolicy, Packet, Protocol, Verdict};

const DST4: &str = "10.0.0.5";
const DST6: &str = "2001:db8:ff::5";

fn table_policy() -> InterfacePolicy {
    policy(
        vec![
            rule("sgr-http4", tcp(80, 80), &["0.0.0.0/0"]),
            rule("sgr-http6", tcp(80, 80), &["::/0"]),
            rule("sgr-http4-again", tcp(80, 81), &["198.51.100.0/25"]),
            rule("sgr-rdp", tcp(3389, 3389), &["203.0.113.5/32"]),
            rule("sgr-ping", icmp_type(8), &["198.51.100.0/24"]),
            rule("sgr-unreach", icmp_type_code(3, 4), &["0.0.0.0/0"]),
            rule("sgr-web-range", tcp(8000, 8099), &["198.51.100.0/24"]),
            rule("sgr-esp", Protocol::Number(50), &["192.0.2.0/24"]),
            rule("sgr-all", Protocol::All, &["10.9.0.0/16"]),
            rule("sgr-dns6", udp(53, 53), &["2001:db8::7/128"]),
            rule(
                "sgr-ping6",
                Protocol::Icmpv6(sgmirror_policy::model::IcmpMatch::Type { icmp_type: 128 }),
                &["2001:db8:1::/48"],
            ),
        ],
        &["169.254.169.254", "fd00:ec2::254"],
    )
}

/// What a row expects the kernel to do.
#[derive(Clone, Copy, Debug)]
struct Expect {
    verdict: u32,
    reason: u32,
    rules: &'static [&'static str],
}

const fn allow(reason: u32, rules: &'static [&'static str]) -> Expect {
    Expect { verdict: verdict::ALLOW, reason, rules }
}

const fn drop(reason: u32) -> Expect {
    Expect { verdict: verdict::DROP, reason, rules: &[] }
}

const fn audit(reason: u32) -> Expect {
    Expect { verdict: verdict::AUDIT, reason, rules: &[] }
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// The packet, when the frame is a well-formed one the evaluator can judge.
    packet: Option<Packet>,
    expect: Expect,
}

fn case(name: &'static str, packet: Packet, opts: FrameOptions, expect: Expect) -> Case {
    Case { name, frame: frame::build(&packet, &opts), packet: Some(packet), expect }
}

/// A frame changed after building; no longer something the evaluator models.
fn mangled(
    name: &'static str,
    packet: Packet,
    opts: FrameOptions,
    change: impl FnOnce(&mut Vec<u8>, frame::Layout),
    expect: Expect,
) -> Case {
    let (mut bytes, layout) = frame::build_with_layout(&packet, &opts);
    change(&mut bytes, layout);
    Case { name, frame: bytes, packet: None, expect }
}

fn raw(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case { name, frame: bytes, packet: None, expect }
}

fn plain() -> FrameOptions {
    FrameOptions::default()
}

fn vlans(tags: &[u16]) -> FrameOptions {
    FrameOptions { vlan_tags: tags.to_vec(), ..FrameOptions::default() }
}

fn ext(headers: &[u8]) -> FrameOptions {
    FrameOptions { ipv6_ext_headers: headers.to_vec(), ..FrameOptions::default() }
}

fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn first_of(packet: Packet, id: u32) -> Packet {
    Packet { fragment: Fragment::First(id), ..packet }
}

fn enforce_cases() -> Vec<Case> {
    use reason::*;
    let web = tcp_packet("192.0.2.50", DST4, 80);
    let web6 = tcp_packet("2001:db8:77::1", DST6, 80);
    let denied = tcp_packet("203.0.113.9", DST4, 22);
    let mut eth_only = frame::build(&web, &plain());
    eth_only.truncate(14);
    let mut vlan_cut = frame::build(&web, &vlans(&[5]));
    vlan_cut.truncate(16);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(60, 0);
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x02, 0, 0, 0, 0, 1, 0x88, 0xcc];
    lldp.resize(60, 0);
    let frag_ok = first_of(web, 0x1111);
    let frag_denied = first_of(denied, 0x2222);
    let frag6_ok = first_of(web6, 0xdead_beef);
    let seven = [0u8, 60, 43, 60, 43, 60, 51];
    let imds = tcp_packet("169.254.169.254", DST4, 22);

    vec![
        case("tcp 80 from anywhere", web, plain(), allow(RULE, &["sgr-http4"])),
        case("one VLAN tag", web, vlans(&[5]), allow(RULE, &["sgr-http4"])),
        case("two VLAN tags", web, vlans(&[100, 5]), allow(RULE, &["sgr-http4"])),
        case("two VLAN tags, denied port", denied, vlans(&[100, 5]), drop(NO_RULE)),
        raw("three VLAN tags", frame::build(&web, &vlans(&[1, 2, 3])), drop(MALFORMED)),
        raw("VLAN tag cut short", vlan_cut, drop(MALFORMED)),
        raw("Ethernet header only (IPv4 ethertype)", eth_only, drop(MALFORMED)),
        case(
            "IPv4 with 40 bytes of options",
            web,
            FrameOptions { ipv4_options_len: 40, ..plain() },
            allow(RULE, &["sgr-http4"]),
        ),
        case(
            "IPv4 with options, denied port",
            denied,
            FrameOptions { ipv4_options_len: 4, ..plain() },
            drop(NO_RULE),
        ),
        mangled("IPv4 ihl 4", web, plain(), |f, l| f[l.l3] = 0x44, drop(MALFORMED)),
        mangled("IPv4 version 5", web, plain(), |f, l| f[l.l3] = 0x55, drop(MALFORMED)),
        mangled("IPv4 header cut short", web, plain(), |f, l| f.truncate(l.l3 + 19), drop(MALFORMED)),
        mangled(
            "IPv4 total length past the frame",
            web,
            plain(),
            |f, l| set_u16(f, l.l3 + 2, (l.ip_end - l.l3 + 1) as u16),
            drop(MALFORMED),
        ),
        mangled(
            "IPv4 total length below the header",
            web,
            plain(),
            |f, l| set_u16(f, l.l3 + 2, 19),
            drop(MALFORMED),
        ),
        mangled(
            "IPv4 options longer than the total length",
            web,
            FrameOptions { ipv4_options_len: 40, ..plain() },
            |f, l| set_u16(f, l.l3 + 2, 40),
            drop(MALFORMED),
        ),
        mangled(
            "TCP header cut short",
            web,
            plain(),
            |f, l| {
                set_u16(f, l.l3 + 2, (l.l4 - l.l3 + 19) as u16);
                f.truncate(l.l4 + 19);
            },
            drop(MALFORMED),
        ),
        mangled(
            "TCP header cut short, Ethernet padding behind it",
            web,
            FrameOptions { ethernet_padding: 20, ..plain() },
            |f, l| set_u16(f, l.l3 + 2, (l.l4 - l.l3 + 10) as u16),
            drop(MALFORMED),
        ),
        mangled(
            "UDP header cut short",
            udp_packet("192.0.2.50", DST4, 1000, 53),
            plain(),
            |f, l| set_u16(f, l.l3 + 2, (l.l4 - l.l3 + 7) as u16),
            drop(MALFORMED),
        ),
        mangled(
            "ICMP header cut short",
            icmp_packet("198.51.100.7", DST4, 1, 8, 0),
            plain(),
            |f, l| set_u16(f, l.l3 + 2, (l.l4 - l.l3 + 4) as u16),
            drop(MALFORMED),
        ),
        case(
            "Ethernet padding after the IP packet",
            web,
            FrameOptions { ethernet_padding: 30, ..plain() },
            allow(RULE, &["sgr-http4"]),
        ),
        mangled(
            "exempt source, TCP cut short (the address decides first)",
            imds,
            plain(),
            |f, l| set_u16(f, l.l3 + 2, (l.l4 - l.l3 + 10) as u16),
            allow(EXEMPT, &[]),
        ),
        // IPv6.
        case("IPv6 tcp 80 from ::/0", web6, plain(), allow(RULE, &["sgr-http6"])),
        case(
            "IPv6 hop-by-hop, routing, destination options, AH",
            web6,
            ext(&[0, 43, 60, 51]),
            allow(RULE, &["sgr-http6"]),
        ),
        case("IPv6 atomic fragment header (not a fragment)", web6, ext(&[44]), allow(RULE, &["sgr-http6"])),
        case(
            "IPv6 eight extension headers (the bound)",
            web6,
            ext(&[0, 60, 43, 60, 43, 60, 43, 51]),
            allow(RULE, &["sgr-http6"]),
        ),
        raw(
            "IPv6 nine extension headers",
            frame::build(&web6, &ext(&[0, 60, 43, 60, 43, 60, 43, 51, 60])),
            drop(MALFORMED),
        ),
        case("IPv6 seven headers + first fragment", frag6_ok, ext(&seven), allow(RULE, &["sgr-http6"])),
        case("IPv6 its later fragment", later_of(&frag6_ok, 0xdead_beef), ext(&seven), allow(FRAGMENT, &[])),
        case("IPv6 later fragment, other id", later_of(&frag6_ok, 0xdead_bee0), plain(), drop(FRAGMENT)),
        mangled("IPv6 header cut short", web6, plain(), |f, l| f.truncate(l.l3 + 39), drop(MALFORMED)),
        mangled(
            "IPv6 payload length past the frame",
            web6,
            plain(),
            |f, l| set_u16(f, l.l3 + 4, (l.ip_end - l.l3 - 40 + 1) as u16),
            drop(MALFORMED),
        ),
        mangled(
            "IPv6 extension header longer than the payload",
            web6,
            ext(&[60]),
            |f, l| f[l.l3 + 41] = 5,
            drop(MALFORMED),
        ),
        mangled("IPv6 version 4", web6, plain(), |f, l| f[l.l3] = 0x40, drop(MALFORMED)),
        mangled(
            "IPv6 TCP header cut short",
            web6,
            plain(),
            |f, l| {
                set_u16(f, l.l3 + 4, 19);
                f.truncate(l.l4 + 19);
            },
            drop(MALFORMED),
        ),
        case(
            "IPv6 /128 source",
            udp_packet("2001:db8::7", DST6, 5353, 53),
            plain(),
            allow(RULE, &["sgr-dns6"]),
        ),
        case("IPv6 next to the /128", udp_packet("2001:db8::8", DST6, 5353, 53), plain(), drop(NO_RULE)),
        // IPv4 fragments.
        case("first fragment, allowed", frag_ok, plain(), allow(RULE, &["sgr-http4"])),
        case("its later fragment", later_of(&frag_ok, 0x1111), plain(), allow(FRAGMENT, &[])),
        case("first fragment, denied", frag_denied, plain(), drop(NO_RULE)),
        case("its later fragment, dropped", later_of(&frag_denied, 0x2222), plain(), drop(FRAGMENT)),
        case("later fragment without a first", later_of(&web, 0x3333), plain(), drop(FRAGMENT)),
        case("later fragment, other id", later_of(&frag_ok, 0x1112), plain(), drop(FRAGMENT)),
        case(
            "later fragment, other protocol",
            Packet { proto: 17, ..later_of(&frag_ok, 0x1111) },
            plain(),
            drop(FRAGMENT),
        ),
        // ICMP type and code.
        case(
            "echo request from the /24",
            icmp_packet("198.51.100.200", DST4, 1, 8, 0),
            plain(),
            allow(RULE, &["sgr-ping"]),
        ),
        case(
            "echo request, code 5",
            icmp_packet("198.51.100.200", DST4, 1, 8, 5),
            plain(),
            allow(RULE, &["sgr-ping"]),
        ),
        case("echo reply", icmp_packet("198.51.100.200", DST4, 1, 0, 0), plain(), drop(NO_RULE)),
        case(
            "fragmentation needed",
            icmp_packet("203.0.113.77", DST4, 1, 3, 4),
            plain(),
            allow(RULE, &["sgr-unreach"]),
        ),
        case("port unreachable", icmp_packet("203.0.113.77", DST4, 1, 3, 3), plain(), drop(NO_RULE)),
        case(
            "ICMPv6 echo request from the /48",
            icmp_packet("2001:db8:1:2::9", DST6, 58, 128, 0),
            plain(),
            allow(RULE, &["sgr-ping6"]),
        ),
        case(
            "ICMPv6 echo request from elsewhere",
            icmp_packet("2001:db8:2::9", DST6, 58, 128, 0),
            plain(),
            drop(NO_RULE),
        ),
        // Protocol -1 and numbered protocols.
        case("protocol -1: GRE", proto_packet("10.9.1.2", DST4, 47), plain(), allow(RULE, &["sgr-all"])),
        case("protocol -1: tcp 22", tcp_packet("10.9.3.4", DST4, 22), plain(), allow(RULE, &["sgr-all"])),
        case(
            "protocol -1: tcp 80",
            tcp_packet("10.9.3.4", DST4, 80),
            plain(),
            allow(RULE, &["sgr-all", "sgr-http4"]),
        ),
        case(
            "protocol 50 from its /24",
            proto_packet("192.0.2.9", DST4, 50),
            plain(),
            allow(RULE, &["sgr-esp"]),
        ),
        case("protocol 50 from elsewhere", proto_packet("203.0.113.9", DST4, 50), plain(), drop(NO_RULE)),
        case("protocol 51 from the ESP /24", proto_packet("192.0.2.9", DST4, 51), plain(), drop(NO_RULE)),
        case(
            "overlapping prefixes: both rules",
            tcp_packet("198.51.100.1", DST4, 80),
            plain(),
            allow(RULE, &["sgr-http4", "sgr-http4-again"]),
        ),
        case(
            "port range",
            tcp_packet("198.51.100.130", DST4, 8050),
            plain(),
            allow(RULE, &["sgr-web-range"]),
        ),
        case(
            "port range, one past the end",
            tcp_packet("198.51.100.130", DST4, 8100),
            plain(),
            drop(NO_RULE),
        ),
        case("/32 source", tcp_packet("203.0.113.5", DST4, 3389), plain(), allow(RULE, &["sgr-rdp"])),
        case("next to the /32", tcp_packet("203.0.113.6", DST4, 3389), plain(), drop(NO_RULE)),
        // Exemptions.
        raw("ARP", arp, allow(EXEMPT, &[])),
        raw("LLDP (not IP)", lldp, allow(NON_IP, &[])),
        case("neighbour solicitation", icmp_packet("fe80::1", DST6, 58, 135, 0), plain(), allow(EXEMPT, &[])),
        case(
            "neighbour advertisement",
            icmp_packet("fe80::1", DST6, 58, 136, 0),
            plain(),
            allow(EXEMPT, &[]),
        ),
        case("router solicitation", icmp_packet("fe80::1", DST6, 58, 133, 0), plain(), allow(EXEMPT, &[])),
        case("router advertisement", icmp_packet("fe80::1", DST6, 58, 134, 0), plain(), allow(EXEMPT, &[])),
        case("redirect", icmp_packet("fe80::1", DST6, 58, 137, 0), plain(), allow(EXEMPT, &[])),
        case("MLD query", icmp_packet("fe80::1", DST6, 58, 130, 0), plain(), allow(EXEMPT, &[])),
        case("MLDv2 report", icmp_packet("fe80::1", DST6, 58, 143, 0), plain(), allow(EXEMPT, &[])),
        case(
            "ICMPv6 type 135 inside IPv4",
            icmp_packet("203.0.113.9", DST4, 58, 135, 0),
            plain(),
            drop(NO_RULE),
        ),
        case(
            "DHCPv4 client → server",
            udp_packet("0.0.0.0", "255.255.255.255", 68, 67),
            plain(),
            allow(EXEMPT, &[]),
        ),
        case("DHCPv4 server → client", udp_packet("10.0.0.1", DST4, 67, 68), plain(), allow(EXEMPT, &[])),
        case(
            "DHCPv6 client → server",
            udp_packet("fe80::2", "ff02::1:2", 546, 547),
            plain(),
            allow(EXEMPT, &[]),
        ),
        case("DHCPv6 server → client", udp_packet("fe80::3", DST6, 547, 546), plain(), allow(EXEMPT, &[])),
        case("UDP 68 → 68 (not DHCP)", udp_packet("10.0.0.1", DST4, 68, 68), plain(), drop(NO_RULE)),
        case("instance metadata address", imds, plain(), allow(EXEMPT, &[])),
        case(
            "IPv6 metadata address",
            udp_packet("fd00:ec2::254", DST6, 53, 9999),
            plain(),
            allow(EXEMPT, &[]),
        ),
        case("exempt later fragment", later_of(&imds, 0x4444), plain(), allow(EXEMPT, &[])),
    ]
}

fn audit_cases() -> Vec<Case> {
    use reason::*;
    let web = tcp_packet("192.0.2.50", DST4, 80);
    vec![
        case("audit: denied port passes", tcp_packet("203.0.113.9", DST4, 22), plain(), audit(NO_RULE)),
        raw("audit: malformed passes", frame::build(&web, &vlans(&[1, 2, 3])), audit(MALFORMED)),
        case("audit: allowed stays allowed", web, plain(), allow(RULE, &["sgr-http4"])),
        case("audit: orphan later fragment passes", later_of(&web, 0x5555), plain(), audit(FRAGMENT)),
    ]
}

/// Runs the rows in order on one program; returns the mismatches.
fn run(program: &LoadedProgram, image: &MapImage, policy: &InterfacePolicy, cases: &[Case]) -> Vec<String> {
    let mut memory = FragmentMemory::default();
    let mut mismatches = Vec::new();
    for c in cases {
        let seen = match program.observe(&c.frame, Direction::Ingress) {
            Ok(seen) => seen,
            Err(e) => {
                mismatches.push(format!("{}: {}", c.name, error_chain(&e)));
                continue;
            }
        };
        let expected_action =
            if c.expect.verdict == verdict::DROP { xdp_action::DROP } else { xdp_action::PASS };
        let rules: Vec<String> =
            seen.match_id.and_then(|id| image.match_sets.get(id as usize)).cloned().unwrap_or_default();
        let got = (seen.action, seen.direction, seen.verdict, seen.reason, rules.clone());
        let want = (
            expected_action,
            direction::INGRESS,
            c.expect.verdict,
            c.expect.reason,
            c.expect.rules.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>(),
        );
        if got != want {
            mismatches.push(format!("{}: kernel {got:?}, expected {want:?}", c.name));
        }
        if seen.bytes != c.frame.len() as u64 {
            mismatches.push(format!(
                "{}: counted {} bytes of a {}-byte frame",
                c.name,
                seen.bytes,
                c.frame.len()
            ));
        }
        if let Some(packet) = &c.packet {
            let d = verdict_with_fragments(policy, Direction::Ingress, packet, &mut memory);
            let evaluator_verdict = if d.verdict == Verdict::Allow { verdict::ALLOW } else { verdict::DROP };
            let kernel_policy_verdict =
                if c.expect.verdict == verdict::ALLOW { verdict::ALLOW } else { verdict::DROP };
            if (evaluator_verdict, d.reason.code(), &d.rules)
                != (kernel_policy_verdict, c.expect.reason, &want.4)
            {
                mismatches.push(format!("{}: evaluator {d:?}, table expects {:?}", c.name, c.expect));
            }
        }
    }
    mismatches
}

#[test]
fn crafted_frames_in_enforce_mode() {
    let policy = table_policy();
    let (program, compiled) = load_policy(&policy, Mode::Enforce);
    let cases = enforce_cases();
    let mismatches = run(&program, &compiled.ingress, &policy, &cases);
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // Every row was counted once, in some slot.
    assert_eq!(program.stats().unwrap().packets(), cases.len() as u64);
}

#[test]
fn crafted_frames_in_audit_mode() {
    let policy = table_policy();
    let (program, compiled) = load_policy(&policy, Mode::Audit);
    let cases = audit_cases();
    let mismatches = run(&program, &compiled.ingress, &policy, &cases);
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_kernel_not_passed() {
    let (program, _) = load_policy(&table_policy(), Mode::Enforce);
    assert!(program.test_run(&[0u8; 13], Direction::Ingress).is_err());
    assert!(program.test_run(&[0u8; 13], Direction::Egress).is_err());
    assert_eq!(program.stats().unwrap().packets(), 0);
}

#[test]
fn malformed_frames_are_malformed_at_egress_too() {
    // The TC program parses the skb the kernel builds from the same bytes: every
    // row the XDP program finds malformed, it finds malformed too.
    let (program, _) = load_policy(&table_policy(), Mode::Enforce);
    let cases: Vec<Case> =
        enforce_cases().into_iter().filter(|c| c.expect.reason == reason::MALFORMED).collect();
    assert!(cases.len() >= 10, "{} malformed rows", cases.len());
    let mut mismatches = Vec::new();
    for c in &cases {
        // BPF_PROG_TEST_RUN refuses to build an skb whose IP header is cut short
        // (EINVAL); such a frame never reaches a TC program there.
        let ethertype = u16::from_be_bytes([c.frame[12], c.frame[13]]);
        let ip_min = match ethertype {
            0x0800 => 20,
            0x86dd => 40,
            _ => 0,
        };
        if c.frame.len() < 14 + ip_min {
            if program.test_run(&c.frame, Direction::Egress).is_ok() {
                mismatches.push(format!("{}: a cut IP header was run", c.name));
            }
            continue;
        }
        match program.observe(&c.frame, Direction::Egress) {
            Ok(seen) => {
                let got = (seen.action, seen.direction, seen.verdict, seen.reason, seen.bytes);
                let want = (
                    sgmirror_dataplane::tc_action::DROP,
                    direction::EGRESS,
                    verdict::DROP,
                    reason::MALFORMED,
                    c.frame.len() as u64,
                );
                if got != want {
                    mismatches.push(format!("{}: kernel {got:?}, expected {want:?}", c.name));
                }
            }
            Err(e) => mismatches.push(format!("{}: {}", c.name, error_chain(&e))),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
