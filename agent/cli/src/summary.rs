//! What `run` reports on exit: counters by direction, verdict and reason, and hits
//! per rule (`sgr-` id), mapped back from the kernel's match sets.


use serde::Serialize;
use sgmirror_common::{direction, reason, verdict};
use sgmirror_dataplane::Stats;

/// One non-zero counter.
#[derive(Debug, Serialize)]
pub struct CounterRow {
    pub direction: &'static str,
    pub verdict: &'static str,
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

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
    pub counters: Vec<CounterRow>,
    pub rule_hits: Vec<RuleHits>,
}

/// Everything `run` enforced.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub interfaces: Vec<InterfaceSummary>,
}

const DIRECTIONS: [&str; 2] = ["ingress", "egress"];
const VERDICTS: [&str; 3] = ["allow", "drop", "audit"];

/// Non-zero counters, in a stable order.
pub fn counter_rows(stats: &Stats) -> Vec<CounterRow> {
    let mut rows = Vec::new();
    for d in 0..direction::COUNT {
        for v in 0..verdict::COUNT {
            for r in 0..reason::COUNT {
                let c = stats.get(d, v, r);
                if c.packets > 0 {
                    rows.push(CounterRow {
                        direction: DIRECTIONS[d as usize],
                        verdict: VERDICTS[v as usize],
                        reason: reason::NAMES[r as usize],
                        packets: c.packets,
                        bytes: c.bytes,
                    });
                }
            }
        }
    }
    rows
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
            println!("  {:<8} {:<7} {:<10} {:>12} {:>14}", c.direction, c.verdict, c.reason, c.packets, c.bytes);
        }
        println!("  {:<40} {:>12}", "RULE", "PACKETS");
        for r in &i.rule_hits {
            println!("  {:<40} {:>12}", r.rule, r.packets);
        }
    }
}
