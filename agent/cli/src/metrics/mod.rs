//! Prometheus metrics: what the agent exposes, and the endpoint that serves it.
//!
//! The kernel's counters live in per-CPU maps owned by the run loop's thread, so the
//! metrics are not kept in a registry that the data path updates: at each scrape the
//! run loop sums the maps into an [`AgentMetrics`] (plain data) and [`render`] turns
//! it into the Prometheus text exposition format (version 0.0.4). The HTTP side is
//! [`server::MetricsServer`], which asks the run loop for that text over a channel.
//!
//! # Metrics
//!
//! Labels: `interface` is the ENI id (`eni-…`), `link` the Linux device, `direction`
//! `ingress`|`egress`, `verdict` `allow`|`drop`|`audit`, `reason` one of
//! [`sgmirror_common::reason::NAMES`], `rule` the `sgr-` id (or the
//! `GROUP/direction/PERMISSION/SOURCE` path when the snapshot has no ids), `group` the
//! `sg-` id.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sgmirror_packets_total`, `sgmirror_bytes_total` | counter | interface, link, direction, verdict, reason |
//! | `sgmirror_rule_hits_total` | counter | rule, group, interface, direction |
//! | `sgmirror_attach_mode_info` | gauge (1) | interface, link, hook (`xdp`/`tc`), mode |
//! | `sgmirror_enforcement_mode` | gauge (1 for the mode in force, 0 for the other) | interface, link, mode |
//! | `sgmirror_policy_generation` | gauge | interface, link |
//! | `sgmirror_policy_applied_timestamp_seconds` | gauge | interface, link |
//! | `sgmirror_flows`, `sgmirror_flow_table_capacity` | gauge | interface, link |
//! | `sgmirror_flow_evictions_total` | counter | interface, link |
//! | `sgmirror_drop_records_suppressed_total`, `sgmirror_drop_records_lost_total` | counter | interface, link |
//! | `sgmirror_last_successful_refresh_timestamp_seconds` | gauge | — |
//! | `sgmirror_source_errors_total` | counter | kind |
//! | `sgmirror_drop_log_lines_total`, `sgmirror_drop_log_lines_suppressed_total` | counter | — |
//! | `sgmirror_build_info` | gauge (1) | version |
//!
//! # Cardinality
//!
//! Every label comes from a fixed set except `interface`/`link` (the instance's own
//! ENIs: one per attached link, at most the instance type's ENI limit — 15 on most
//! types, 50 on the largest) and `rule`/`group` (the rules of those ENIs):
//!
//! * packets and bytes: 2 directions × 3 verdicts × 8 reasons = **48 series each per
//!   link**, all of them present from the first scrape (zeros included, so that
//!   `rate()` sees the first increase);
//! * rule hits: one series per rule and interface — at most 1 000 inbound + 1 000
//!   outbound rules per ENI (the compiler's limit, AWS's maximum), typically tens;
//! * attach mode 2, enforcement mode 2, and 7 single series per link;
//! * `source_errors_total`: one series per error kind, a fixed set of the source
//!   (fewer than 10); 4 agent-wide single series.
//!
//! So a link costs 107 series plus one per rule: an instance with 2 ENIs and 40 rules
//! exposes about 300 series, and the theoretical worst case (50 ENIs × 2 000 rules) is
//! bounded at about 105 000.

mod render;
pub mod server;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use sgmirror_common::{direction, reason, verdict};
use sgmirror_dataplane::{DIRECTION_NAMES, Stats, VERDICT_NAMES};

pub use render::{CONTENT_TYPE, render};

/// Port of the default metrics address.
///
/// Chosen outside the ranges where it could meet another program: Prometheus's
/// "Default port allocations" wiki page assigns 9090–9093 to its own components and
/// 9100–9999 to exporters — a range that is completely allocated, so any port in it
/// belongs to some exporter that may run on the same host — and the page advises
/// ports outside those allocations for other software. 12971 also lies below the Linux
/// ephemeral range (32768–60999, where a listening port can collide with outbound
/// connections) and the Kubernetes NodePort range (30000–32767), is not in Debian's
/// `/etc/services`, and is none of the common development ports (8080, 8000, 3000, …).
pub const DEFAULT_PORT: u16 = 12971;

/// Default address of the metrics endpoint: loopback only, so that the metrics (which
/// name interfaces, rules and traffic volumes) are not on the public interface unless
/// the operator says so.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));

/// Packets and bytes of one (direction, verdict, reason), summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Counter {
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// `allow`, `drop` or `audit`.
    pub verdict: &'static str,
    /// One of [`sgmirror_common::reason::NAMES`].
    pub reason: &'static str,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (whole frames).
    pub bytes: u64,
}

/// Packets allowed by one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleHit {
    /// `sgr-` id, or the rule's path when the snapshot has no ids.
    pub rule: String,
    /// `sg-` id of the rule's group.
    pub group_id: String,
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// Packets that opened a flow through this rule (or, for untracked flows, every
    /// packet it allowed).
    pub packets: u64,
}

/// Everything exposed about one enforced link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkMetrics {
    /// The ENI id.
    pub interface_id: String,
    /// The Linux device.
    pub link: String,
    /// XDP attach mode in use (`native`, `generic`, …).
    pub xdp_mode: String,
    /// TC attach mode in use (`tcx`, `clsact`, …).
    pub tc_mode: String,
    /// `enforce` or `audit`.
    pub mode: &'static str,
    /// Policy generation applied (1 = the first).
    pub generation: u64,
    /// When that generation was applied, in seconds since the Unix epoch.
    pub applied_unix_seconds: f64,
    /// Counters by direction, verdict and reason; see [`counters`].
    pub counters: Vec<Counter>,
    /// Hits per rule.
    pub rule_hits: Vec<RuleHit>,
    /// Entries in the flow table now.
    pub flows: u64,
    /// Size of the flow table.
    pub flow_capacity: u64,
    /// Flows evicted from the full table since the agent started.
    pub flows_evicted: u64,
    /// Drop records the kernel did not send because of its rate limit.
    pub drop_records_suppressed: u64,
    /// Drop records lost because the ring buffer was full.
    pub drop_records_lost: u64,
}

/// Everything the endpoint exposes, filled by the run loop at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentMetrics {
    /// One entry per enforced link.
    pub links: Vec<LinkMetrics>,
    /// When the source last gave a policy, in seconds since the Unix epoch (0: never).
    pub last_refresh_success_unix_seconds: f64,
    /// Source errors since the agent started, by kind (a fixed set of kinds).
    pub source_errors: Vec<(String, u64)>,
    /// Drop-log lines written (flow lines and `SKIPDATA` lines).
    pub drop_log_lines: u64,
    /// Flows not written to the drop log because of its line limit.
    pub drop_log_lines_suppressed: u64,
}

/// Every (direction, verdict, reason) of `stats`, zeros included, in a stable order
/// (direction, then verdict, then reason): the series are then present from the
/// first scrape on.
pub fn counters(stats: &Stats) -> Vec<Counter> {
    let mut out = Vec::with_capacity((direction::COUNT * verdict::COUNT * reason::COUNT) as usize);
    for (d, &direction) in DIRECTION_NAMES.iter().enumerate() {
        for (v, &verdict) in VERDICT_NAMES.iter().enumerate() {
            for (r, &reason) in reason::NAMES.iter().enumerate() {
                let c = stats.get(d as u32, v as u32, r as u32);
                out.push(Counter { direction, verdict, reason, packets: c.packets, bytes: c.bytes });
            }
        }
    }
    out
}
