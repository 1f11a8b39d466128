//! What `run` reports on exit: counters by direction, verdict and reason, and hits
//! per rule (`sgr-` id), mapped back from the kernel's match sets.

use serde::Serialize;
use sgmirror_dataplane::Stats;

use crate::metrics::{self, Counter};

/// Packets allowed by one rule.
#[derive(Debug, Serialize)]
pub struct RuleHits {
    pub rule: String,
    pub packets: u64,
}

/// One enforced interface.
#[derive(Debug, Serialize)]
pub struct InterfaceSummary {
    pub interface_id: String,
    pub link: String,
    pub mode: &'static str,
    pub xdp_mode: String,
    pub tc_mode: String,
    /// Policy generations applied (1 = the first).
    pub generation: u64,
    /// Entries in the flow table at exit.
    pub flows: usize,
    pub counters: Vec<Counter>,
    pub rule_hits: Vec<RuleHits>,
}

/// Everything `run` enforced.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub interfaces: Vec<InterfaceSummary>,
}

/// Non-zero counters, in a stable order (direction, verdict, reason): the summary
/// shows what happened, unlike the metrics, which list the zeros too.
pub fn counter_rows(stats: &Stats) -> Vec<Counter> {
    metrics::counters(stats).into_iter().filter(|c| c.packets > 0).collect()
}

/// Human-readable form, for stdout.
pub fn print(summary: &Summary) {
    for i in &summary.interfaces {
        println!(
            "{} on {} ({}, XDP {}, TC {}, policy generation {}, {} flows):",
            i.interface_id, i.link, i.mode, i.xdp_mode, i.tc_mode, i.generation, i.flows
        );
        println!("  {:<8} {:<7} {:<10} {:>12} {:>14}", "DIR", "VERDICT", "REASON", "PACKETS", "BYTES");
        for c in &i.counters {
            println!(
                "  {:<8} {:<7} {:<10} {:>12} {:>14}",
                c.direction, c.verdict, c.reason, c.packets, c.bytes
            );
        }
        println!("  {:<40} {:>12}", "RULE", "PACKETS");
        for r in &i.rule_hits {
            println!("  {:<40} {:>12}", r.rule, r.packets);
        }
    }
}
