//! The flow-table counters (`FLOW_STATS`) and the eviction estimate built on them:
//! flows written by allowed first packets only, expired entries replaced in place,
//! entries deleted from userspace, and evictions of a full table. Needs root.

mod common;

use common::*;
use sgmirror_dataplane::{FlowCounters, FrameOptions, LoadOptions, LoadedProgram, frame, xdp_action};
use sgmirror_policy::model::{Direction, InterfacePolicy, Timeouts};

const ME4: &str = "10.0.0.5";

/// DNS out to one /24 (tracked), ssh in from anywhere with everything out to the
/// world (untracked, AWS's rule).
fn dns_client() -> InterfacePolicy {
    let mut p = policy(vec![rule("sgr-ssh", tcp(22, 22), &["0.0.0.0/0"])], &[]);
    p.egress = vec![
        egress_rule("sgr-dns", udp(53, 53), &["192.0.2.0/24"]),
        egress_rule("sgr-all", sgmirror_policy::model::Protocol::All, &["0.0.0.0/0"]),
    ];
    p
}

fn load(capacity: u32) -> LoadedProgram {
    // UDP flows expire after 30 s of idleness.
    let timeouts = Timeouts { udp: 30, ..Timeouts::default() };
    load_with(&dns_client(), &LoadOptions { flow_capacity: capacity, timeouts, ..LoadOptions::default() }).0
}

/// Sends one DNS query from `port` out.
fn query(p: &LoadedProgram, port: u16) {
    let frame = frame::build(&udp_packet(ME4, "192.0.2.53", port, 53), &FrameOptions::default());
    assert_eq!(p.test_run(&frame, Direction::Egress).unwrap(), sgmirror_dataplane::tc_action::PASS);
}

fn counters(p: &LoadedProgram) -> (u64, u64, u64) {
    let FlowCounters { created, expired_replaced, deleted } = p.flow_counters().unwrap();
    (created, expired_replaced, deleted)
}

#[test]
fn new_flows_are_counted_once_and_expired_ones_replaced_in_place() {
    let mut p = load(4096);
    assert_eq!(counters(&p), (0, 0, 0));
    for port in 0..50 {
        query(&p, 30_000 + port);
    }
    assert_eq!(counters(&p), (50, 0, 0));
    // Packets of live flows, their replies, untracked traffic and denied packets
    // create nothing.
    for port in 0..50 {
        query(&p, 30_000 + port);
        let reply = frame::build(&udp_packet("192.0.2.53", ME4, 53, 30_000 + port), &FrameOptions::default());
        assert_eq!(p.test_run(&reply, Direction::Ingress).unwrap(), xdp_action::PASS);
    }
    let ssh = frame::build(&tcp_packet("198.51.100.1", ME4, 22), &FrameOptions::default());
    assert_eq!(p.test_run(&ssh, Direction::Ingress).unwrap(), xdp_action::PASS);
    let denied = frame::build(&tcp_packet("198.51.100.1", ME4, 23), &FrameOptions::default());
    assert_eq!(p.test_run(&denied, Direction::Ingress).unwrap(), xdp_action::DROP);
    assert_eq!(counters(&p), (50, 0, 0));
    assert_eq!(p.flow_count().unwrap(), 50);
    assert_eq!(p.flows_evicted_estimate().unwrap(), 0);

    // 31 s later every flow has expired; 20 of them start again over their old
    // entries: created, but the table did not grow and nothing was evicted.
    p.set_clock_offset(31_000_000_000).unwrap();
    for port in 0..20 {
        query(&p, 30_000 + port);
    }
    assert_eq!(counters(&p), (70, 20, 0));
    assert_eq!(p.flow_count().unwrap(), 50);
    assert_eq!(p.flows_evicted_estimate().unwrap(), 0);

    // Deleted from userspace: counted as such, not as evictions.
    p.clear_flows().unwrap();
    assert_eq!(counters(&p), (70, 20, 50));
    assert_eq!(p.flow_count().unwrap(), 0);
    assert_eq!(p.flows_evicted_estimate().unwrap(), 0);
    query(&p, 40_000);
    assert_eq!(counters(&p), (71, 20, 50));
    assert_eq!(p.flows_evicted_estimate().unwrap(), 0);
}

#[test]
fn a_full_table_evicts_and_the_estimate_counts_it() {
    const CAPACITY: u32 = 128;
    const FLOWS: u16 = 600;
    let p = load(CAPACITY);
    for port in 0..FLOWS {
        query(&p, 30_000 + port);
    }
    let (created, replaced, deleted) = counters(&p);
    assert_eq!((created, replaced, deleted), (u64::from(FLOWS), 0, 0));
    let live = p.flow_count().unwrap();
    let evicted = p.flows_evicted_estimate().unwrap();
    eprintln!("{FLOWS} flows through a table of {CAPACITY}: {live} entries, {evicted} evicted");
    assert!(live <= CAPACITY as usize);
    assert_eq!(evicted, u64::from(FLOWS) - live as u64);
    assert!(evicted >= u64::from(FLOWS) - u64::from(CAPACITY));
}
