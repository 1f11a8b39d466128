//! What `run` reports on exit: counters by direction, verdict and reason, and hits
//! per rule (`sgr-` id), mapped back from the kernel's match sets.

use std::collections::BTreeMap;

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

/// Hits per rule: a packet allowed through match set `m` is a hit for every rule in it.
/// Every rule of `rule_ids` is listed, with 0 when it allowed nothing.
pub fn rule_hits(rule_ids: &[String], match_sets: &[Vec<String>], hits: &[u64]) -> Vec<RuleHits> {
    let mut per_rule: BTreeMap<&str, u64> = rule_ids.iter().map(|r| (r.as_str(), 0)).collect();
    for (set, count) in match_sets.iter().zip(hits) {
        for rule in set {
            *per_rule.entry(rule.as_str()).or_default() += count;
        }
    }
    per_rule.into_iter().map(|(rule, packets)| RuleHits { rule: rule.to_owned(), packets }).collect()
}

/// Human-readable form, for stdout.
pub fn print(summary: &Summary) {
    for i in &summary.interfaces {
        println!("{} on {} ({}, XDP {}):", i.interface_id, i.link, i.mode, i.xdp_mode);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_on_a_set_counts_for_each_of_its_rules() {
        let rules = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let sets = vec![vec!["a".to_owned()], vec!["a".to_owned(), "b".to_owned()]];
        let hits = rule_hits(&rules, &sets, &[3, 4]);
        let got: Vec<_> = hits.iter().map(|h| (h.rule.as_str(), h.packets)).collect();
        assert_eq!(got, [("a", 7), ("b", 4), ("c", 0)]);
    }
}
