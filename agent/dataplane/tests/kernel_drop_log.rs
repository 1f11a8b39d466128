//! The drop log from the kernel side: records of dropped and audited packets with
//! the fields of the frame, none for allowed packets or with the log off, the
//! per-CPU token bucket driven through `CLOCK`, the counters of suppressed and lost
//! records, and the ring buffer shared by the generations of a link. Also reports
//! what the log costs the verifier and a denied packet. Needs root.
//!
//! Every test pins its thread to one CPU: `BPF_PROG_TEST_RUN` runs the program on the
//! calling CPU, and the bucket is per CPU.

mod common;

use std::net::IpAddr;
use std::time::Instant;

use common::*;
use sgmirror_common::{DropRecord, direction, names, reason, verdict};
use sgmirror_dataplane::{DropLogCounters, FrameOptions, LoadOptions, LoadedProgram, Mode, frame, load};
use sgmirror_policy::compile::{Limits, compile};
use sgmirror_policy::model::{Direction, Fragment, InterfacePolicy, L4, Packet, proto};

const ME4: &str = "10.0.0.5";
const ME6: &str = "2001:db8:ff::5";
const NS: u64 = 1_000_000_000;

/// Pins the calling thread to the first CPU it may run on.
fn pin_to_one_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t of our own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)).expect("a CPU");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one), 0);
    }
}

/// `CLOCK_MONOTONIC`, the kernel clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the timespec it is given.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    ts.tv_sec as u64 * NS + ts.tv_nsec as u64
}

/// Ssh from one host in, web out, in both families.
fn server() -> InterfacePolicy {
    let mut p = policy(
        vec![
            rule("sgr-ssh", tcp(22, 22), &["203.0.113.1/32"]),
            rule("sgr-ssh6", tcp(22, 22), &["2001:db8:1::1/128"]),
        ],
        &[],
    );
    p.egress = vec![egress_rule("sgr-web", tcp(443, 443), &["0.0.0.0/0"])];
    p
}

fn load_rate(mode: Mode, rate: u32) -> LoadedProgram {
    load_with(&server(), &LoadOptions { mode, drop_log_rate: rate, ..LoadOptions::default() }).0
}

fn tcp_pkt(src: &str, dst: &str, sport: u16, dport: u16) -> Packet {
    Packet {
        src: addr(src),
        dst: addr(dst),
        proto: proto::TCP,
        l4: L4::Ports { src: sport, dst: dport },
        fragment: Fragment::None,
    }
}

/// A frame with the default options (TCP SYN, echo identifier 0x1234).
fn bytes(p: &Packet) -> Vec<u8> {
    frame::build(p, &FrameOptions::default())
}

/// Runs `frame` once and returns the program's action.
fn run(p: &LoadedProgram, frame: &[u8], d: Direction) -> u32 {
    p.test_run(frame, d).unwrap_or_else(|e| panic!("test run: {}", error_chain(&e)))
}

fn drain(p: &mut LoadedProgram) -> Vec<DropRecord> {
    p.read_drop_records(usize::MAX).unwrap_or_else(|e| panic!("reading the drop log: {}", error_chain(&e)))
}

fn octets(a: IpAddr) -> [u8; 16] {
    let mut out = [0; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// The record the kernel should send for `packet` (ports as `DropRecord` documents
/// them; the time is checked separately).
fn expected(packet: &Packet, len: usize, d: u32, v: u32, why: u32) -> DropRecord {
    let (src_port, dst_port) = match packet.l4 {
        L4::Ports { src, dst } => (src, dst),
        L4::Icmp { icmp_type, code } => {
            let echo = matches!((packet.proto, icmp_type), (proto::ICMP, 0 | 8) | (proto::ICMPV6, 128 | 129));
            (u16::from(icmp_type) << 8 | u16::from(code), if echo { 0x1234 } else { 0 })
        }
        L4::None => (0, 0),
    };
    DropRecord {
        time_ns: 0,
        src: octets(packet.src),
        dst: octets(packet.dst),
        src_port,
        dst_port,
        bytes: len as u32,
        proto: packet.proto,
        family: if packet.src.is_ipv4() { 4 } else { 6 },
        direction: d as u8,
        reason: why as u8,
        verdict: v as u8,
        _pad: [0; 7],
    }
}

#[test]
fn with_the_log_off_nothing_is_sent_or_counted() {
    pin_to_one_cpu();
    let mut p = load_rate(Mode::Enforce, 0);
    let denied = bytes(&tcp_pkt("198.51.100.1", ME4, 40000, 23));
    for _ in 0..5 {
        assert_eq!(run(&p, &denied, Direction::Ingress), sgmirror_dataplane::xdp_action::DROP);
    }
    assert_eq!(p.stat(direction::INGRESS, verdict::DROP, reason::NO_RULE).unwrap().packets, 5);
    assert_eq!(drain(&mut p), vec![]);
    assert_eq!(p.drop_log_counters().unwrap(), DropLogCounters::default());
}

#[test]
fn each_drop_is_one_record_with_the_fields_of_its_frame() {
    pin_to_one_cpu();
    let mut p = load_rate(Mode::Enforce, 1000);
    let icmp = |src: &str, dst: &str, pr: u8, t: u8, c: u8| Packet {
        src: addr(src),
        dst: addr(dst),
        proto: pr,
        l4: L4::Icmp { icmp_type: t, code: c },
        fragment: Fragment::None,
    };
    let other = Packet {
        src: addr("198.51.100.2"),
        dst: addr(ME4),
        proto: 47,
        l4: L4::None,
        fragment: Fragment::None,
    };
    let later = Packet { l4: L4::None, fragment: Fragment::Later(0x99), ..tcp_pkt("203.0.113.1", ME4, 0, 0) };
    let cases: Vec<(Packet, Direction, u32)> = vec![
        (tcp_pkt("198.51.100.1", ME4, 40000, 23), Direction::Ingress, reason::NO_RULE),
        (tcp_pkt("2001:db8:2::9", ME6, 40001, 22), Direction::Ingress, reason::NO_RULE),
        (udp_packet("198.51.100.3", ME4, 5353, 53), Direction::Ingress, reason::NO_RULE),
        (icmp("198.51.100.4", ME4, proto::ICMP, 8, 0), Direction::Ingress, reason::NO_RULE),
        (icmp("2001:db8:2::4", ME6, proto::ICMPV6, 128, 0), Direction::Ingress, reason::NO_RULE),
        (icmp("198.51.100.4", ME4, proto::ICMP, 13, 0), Direction::Ingress, reason::NO_RULE),
        (other, Direction::Ingress, reason::NO_RULE),
        (later, Direction::Ingress, reason::FRAGMENT),
        (tcp_pkt(ME4, "198.51.100.9", 40002, 80), Direction::Egress, reason::NO_RULE),
        (udp_packet(ME6, "2001:db8:2::53", 40003, 53), Direction::Egress, reason::NO_RULE),
    ];
    let offset = 5_000 * NS;
    p.set_clock_offset(offset).unwrap();
    for (packet, d, why) in &cases {
        let frame = bytes(packet);
        let before = monotonic_ns() + offset;
        run(&p, &frame, *d);
        let after = monotonic_ns() + offset;
        let dir = if *d == Direction::Ingress { direction::INGRESS } else { direction::EGRESS };
        let got = drain(&mut p);
        assert_eq!(got.len(), 1, "{packet:?}: {got:?}");
        let r = got[0];
        assert!(
            (before..=after).contains(&r.time_ns),
            "{packet:?}: time {} not in {before}..={after}",
            r.time_ns
        );
        assert_eq!(
            DropRecord { time_ns: 0, ..r },
            expected(packet, frame.len(), dir, verdict::DROP, *why),
            "{packet:?}"
        );
    }

    // Malformed: an IPv4 header cut short has no addresses; a TCP header cut short
    // has addresses but no ports.
    let web = tcp_pkt("203.0.113.1", ME4, 40000, 22);
    let (mut cut_ip, layout) = frame::build_with_layout(&web, &FrameOptions::default());
    cut_ip.truncate(layout.l3 + 19);
    run(&p, &cut_ip, Direction::Ingress);
    let (mut cut_tcp, layout) = frame::build_with_layout(&web, &FrameOptions::default());
    let ip_len = (layout.l4 - layout.l3 + 10) as u16;
    cut_tcp[layout.l3 + 2..layout.l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
    cut_tcp.truncate(layout.l4 + 10);
    run(&p, &cut_tcp, Direction::Ingress);
    let got: Vec<DropRecord> = drain(&mut p).into_iter().map(|r| DropRecord { time_ns: 0, ..r }).collect();
    let malformed = DropRecord {
        bytes: cut_ip.len() as u32,
        direction: direction::INGRESS as u8,
        reason: reason::MALFORMED as u8,
        verdict: verdict::DROP as u8,
        ..DropRecord::default()
    };
    let short_tcp = DropRecord {
        src: octets(web.src),
        dst: octets(web.dst),
        bytes: cut_tcp.len() as u32,
        proto: proto::TCP,
        family: 4,
        ..malformed
    };
    assert_eq!(got, vec![malformed, short_tcp]);

    // Allowed packets send nothing; every drop so far was sent, none suppressed.
    let allowed = [
        (tcp_pkt("203.0.113.1", ME4, 40000, 22), Direction::Ingress),
        (tcp_pkt(ME4, "198.51.100.9", 40000, 443), Direction::Egress),
    ];
    for (packet, d) in &allowed {
        assert!(p.judge(&bytes(packet), *d).unwrap().passed());
    }
    assert_eq!(drain(&mut p), vec![]);
    assert_eq!(p.drop_log_counters().unwrap(), DropLogCounters::default());
    let dropped: u64 = p
        .stats()
        .unwrap()
        .nonzero()
        .filter(|((_, v, _), _)| *v == verdict::DROP)
        .map(|(_, c)| c.packets)
        .sum();
    assert_eq!(dropped, cases.len() as u64 + 2);
}

#[test]
fn audit_mode_sends_audit_records() {
    pin_to_one_cpu();
    let mut p = load_rate(Mode::Audit, 100);
    let packet = tcp_pkt("198.51.100.1", ME4, 40000, 3389);
    let frame = bytes(&packet);
    assert_eq!(run(&p, &frame, Direction::Ingress), sgmirror_dataplane::xdp_action::PASS);
    let got = drain(&mut p);
    assert_eq!(got.len(), 1);
    assert_eq!(
        DropRecord { time_ns: 0, ..got[0] },
        expected(&packet, frame.len(), direction::INGRESS, verdict::AUDIT, reason::NO_RULE)
    );
}

/// Runs `n` denied packets and returns (records read, suppressed so far).
fn burst(p: &mut LoadedProgram, frame: &[u8], n: usize) -> (usize, u64) {
    for _ in 0..n {
        run(p, frame, Direction::Ingress);
    }
    (drain(p).len(), p.drop_log_counters().unwrap().suppressed)
}

#[test]
fn the_rate_limit_is_a_token_bucket_of_one_second() {
    pin_to_one_cpu();
    // 4 records per second: a token every 250 ms. Each burst takes a few
    // milliseconds of real time; the clock jumps are chosen half a token away from a
    // token boundary, so the counts are exact unless a burst stalls for 125 ms.
    const RATE: u64 = 4;
    const TOKEN_NS: u64 = NS / RATE;
    let mut p = load_rate(Mode::Enforce, RATE as u32);
    let frame = bytes(&tcp_pkt("198.51.100.1", ME4, 40000, 23));
    let started = Instant::now();
    // A full bucket: a burst of RATE records, the rest suppressed.
    assert_eq!(burst(&mut p, &frame, 10), (4, 6));
    // 2.5 tokens later: 2 more.
    let mut offset = 2 * TOKEN_NS + TOKEN_NS / 2;
    p.set_clock_offset(offset).unwrap();
    assert_eq!(burst(&mut p, &frame, 10), (2, 6 + 8));
    // Half a token more completes the third; the fourth is not due.
    offset += TOKEN_NS / 2;
    p.set_clock_offset(offset).unwrap();
    assert_eq!(burst(&mut p, &frame, 3), (1, 14 + 2));
    // A minute idle refills the bucket to RATE, not more.
    offset += 60 * NS;
    p.set_clock_offset(offset).unwrap();
    assert_eq!(burst(&mut p, &frame, 10), (4, 16 + 6));
    // Time going back (a test moving CLOCK) credits nothing.
    p.set_clock_offset(0).unwrap();
    assert_eq!(burst(&mut p, &frame, 3), (0, 22 + 3));
    assert!(started.elapsed().as_millis() < 125, "a burst stalled: the counts above assume it did not");
    // Every drop is a record, suppressed or lost.
    let drops = p.stat(direction::INGRESS, verdict::DROP, reason::NO_RULE).unwrap().packets;
    let c = p.drop_log_counters().unwrap();
    assert_eq!((drops, c.lost), (36, 0));
    assert_eq!(4 + 2 + 1 + 4 + c.suppressed, drops);
}

#[test]
fn a_full_ring_buffer_loses_records_and_counts_them() {
    pin_to_one_cpu();
    let mut p = load_rate(Mode::Enforce, 1_000_000);
    let frame = bytes(&tcp_pkt("198.51.100.1", ME4, 40000, 23));
    let runs = 5000;
    p.test_run_repeat(&frame, Direction::Ingress, runs).unwrap();
    let counters = p.drop_log_counters().unwrap();
    // 256 KiB of 72-byte entries (64 bytes and the kernel's 8-byte header).
    let capacity = sgmirror_common::DROP_LOG_BYTES as usize / 72;
    let read_started = Instant::now();
    let first = p.read_drop_records(1000).unwrap();
    let rest = drain(&mut p);
    eprintln!(
        "reading {} records took {:?} (informational)",
        first.len() + rest.len(),
        read_started.elapsed()
    );
    assert_eq!(first.len(), 1000, "at most `max` at a time");
    assert_eq!(first.len() + rest.len(), capacity);
    assert_eq!(counters, DropLogCounters { suppressed: 0, lost: u64::from(runs) - capacity as u64 });
    assert!(first.iter().chain(&rest).all(|r| r.dst_port == 23 && r.verdict == verdict::DROP as u8));
    // Read, the buffer takes records again.
    run(&p, &frame, Direction::Ingress);
    assert_eq!(drain(&mut p).len(), 1);
}

#[test]
fn generations_share_the_ring_buffer_and_the_bucket() {
    pin_to_one_cpu();
    let bpffs = private_bpffs();
    let pins = bpffs.0.join("link-sgm0");
    let opts = LoadOptions { shared_pin_dir: Some(pins.clone()), drop_log_rate: 3, ..LoadOptions::default() };
    let compiled = compile(&server(), &Limits::default()).unwrap();
    let mut old = load(&compiled, &opts).expect("load");
    // Both generations are loaded before the first drop: a load takes a good part of
    // the 333 ms a token of this bucket takes to come back.
    let mut new = load(&compiled, &opts).expect("load");
    for name in [names::DROP_LOG, names::DROP_BUCKET, names::FLOW_STATS] {
        assert!(pins.join(name).exists(), "{name} is pinned");
    }
    let to_23 = bytes(&tcp_pkt("198.51.100.1", ME4, 40000, 23));
    let to_25 = bytes(&tcp_pkt("198.51.100.1", ME4, 40000, 25));
    run(&old, &to_23, Direction::Ingress);
    // The old generation's record is read through the new one, and the new one's
    // through the old: one buffer, one consumer position.
    let got = drain(&mut new);
    assert_eq!(got.iter().map(|r| r.dst_port).collect::<Vec<_>>(), vec![23]);
    run(&new, &to_25, Direction::Ingress);
    run(&old, &to_23, Direction::Ingress);
    let got = drain(&mut old);
    assert_eq!(got.iter().map(|r| r.dst_port).collect::<Vec<_>>(), vec![25, 23]);
    assert_eq!(drain(&mut new), vec![]);
    // One bucket of 3 for both: the fourth drop is suppressed (separate buckets
    // would have had tokens for it), and both see the count.
    run(&new, &to_25, Direction::Ingress);
    assert_eq!(drain(&mut new).len(), 0);
    assert_eq!(new.drop_log_counters().unwrap(), DropLogCounters { suppressed: 1, lost: 0 });
    assert_eq!(old.drop_log_counters().unwrap(), new.drop_log_counters().unwrap());
}

/// Instructions of the program as the kernel runs it (after the verifier removed
/// dead code).
fn translated_insns(p: &LoadedProgram, d: Direction) -> u32 {
    let id = p.program_id(d).unwrap();
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|i| i.id() == id)
        .expect("the program is loaded");
    info.size_translated().expect("the kernel reports the size") / 8
}

/// Medians of five runs of `repeat` test runs of `frame` on each program, in ns per
/// packet; the runs alternate between the two, so that drifts of the machine hit
/// both alike.
fn median_ns(a: &LoadedProgram, b: &LoadedProgram, frame: &[u8], repeat: u32) -> (u64, u64) {
    let mut runs = (Vec::new(), Vec::new());
    for _ in 0..5 {
        runs.0.push(a.test_run_repeat(frame, Direction::Ingress, repeat).unwrap().1);
        runs.1.push(b.test_run_repeat(frame, Direction::Ingress, repeat).unwrap().1);
    }
    runs.0.sort_unstable();
    runs.1.sort_unstable();
    (runs.0[2], runs.1[2])
}

#[test]
fn what_the_log_costs_the_verifier_and_a_denied_packet() {
    pin_to_one_cpu();
    let off = load_rate(Mode::Enforce, 0);
    let mut on = load_rate(Mode::Enforce, 1000);
    for d in [Direction::Ingress, Direction::Egress] {
        let (a, b) = (off.verifier_report(d), on.verifier_report(d));
        let (size_off, size_on) = (translated_insns(&off, d), translated_insns(&on, d));
        eprintln!(
            "{d:?}: log off {:?} instructions verified in {:?}, {size_off} loaded; log on {:?} in {:?}, \
             {size_on} loaded",
            a.verified_instructions, a.load_time, b.verified_instructions, b.load_time
        );
        assert!(b.verified_instructions.is_some_and(|n| n < 200_000), "{b:?}");
        // Off, the verifier removed the log's code: dozens of instructions fewer.
        assert!(size_on > size_off + 40, "{size_off} vs {size_on}");
    }
    let denied = bytes(&tcp_pkt("198.51.100.1", ME4, 40000, 23));
    let repeat = 1_000_000;
    let (ns_off, ns_on) = median_ns(&off, &on, &denied, repeat);
    let sent = drain(&mut on).len() as u64;
    let c = on.drop_log_counters().unwrap();
    eprintln!(
        "denied packet, median of 5 × {repeat} (informational): log off {ns_off} ns, log on {ns_on} ns \
         ({:+.1} %); {sent} records, {} suppressed, {} lost",
        (ns_on as f64 / ns_off as f64 - 1.0) * 100.0,
        c.suppressed,
        c.lost
    );
    assert_eq!(sent + c.suppressed + c.lost, 5 * u64::from(repeat));
    assert!(sent >= 1000);
}
