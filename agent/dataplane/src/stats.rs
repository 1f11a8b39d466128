//! The `STATS` counters, summed over CPUs.

use std::ops::Index;

use serde::ser::{Serialize, SerializeSeq, Serializer};
use sgmirror_common::{Counter, STATS_LEN, direction, reason, stat_index, verdict};

/// Names of the directions, indexed by `sgmirror_common::direction`.
pub const DIRECTION_NAMES: [&str; direction::COUNT as usize] = ["ingress", "egress"];
/// Names of the verdicts, indexed by `sgmirror_common::verdict`.
pub const VERDICT_NAMES: [&str; verdict::COUNT as usize] = ["allow", "drop", "audit"];

/// Packets and bytes by direction, verdict and reason, summed over CPUs.
///
/// Serialises as a list of the non-zero counters with their names, e.g.
/// `[{"direction":"ingress","verdict":"drop","reason":"no-rule","packets":3,"bytes":180}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    counters: Vec<Counter>,
}

impl Default for Stats {
    fn default() -> Self {
        Self { counters: vec![Counter::default(); STATS_LEN as usize] }
    }
}

impl Stats {
    /// Builds from one counter per `stat_index` (missing slots read as zero).
    pub fn from_counters(mut counters: Vec<Counter>) -> Self {
        counters.resize(STATS_LEN as usize, Counter::default());
        Self { counters }
    }

    /// The counter of one (direction, verdict, reason); zero when out of range.
    pub fn get(&self, direction: u32, verdict: u32, reason: u32) -> Counter {
        if direction >= direction::COUNT || verdict >= verdict::COUNT || reason >= reason::COUNT {
            return Counter::default();
        }
        self.counters.get(stat_index(direction, verdict, reason) as usize).copied().unwrap_or_default()
    }

    /// All packets counted.
    pub fn packets(&self) -> u64 {
        self.counters.iter().map(|c| c.packets).sum()
    }

    /// What was counted since `earlier` (counters only grow; a reset reads as zero).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let counters = self
            .counters
            .iter()
            .zip(&earlier.counters)
            .map(|(now, then)| Counter {
                packets: now.packets.saturating_sub(then.packets),
                bytes: now.bytes.saturating_sub(then.bytes),
            })
            .collect();
        Stats { counters }
    }

    /// The non-zero counters with their (direction, verdict, reason).
    pub fn nonzero(&self) -> impl Iterator<Item = ((u32, u32, u32), Counter)> + '_ {
        (0..direction::COUNT)
            .flat_map(|d| (0..verdict::COUNT).flat_map(move |v| (0..reason::COUNT).map(move |r| (d, v, r))))
            .map(|(d, v, r)| ((d, v, r), self.get(d, v, r)))
            .filter(|(_, c)| c.packets != 0 || c.bytes != 0)
    }
}

impl Index<(u32, u32, u32)> for Stats {
    type Output = Counter;

    /// # Panics
    ///
    /// When a code is out of range, like slice indexing; use [`Stats::get`] otherwise.
    fn index(&self, (direction, verdict, reason): (u32, u32, u32)) -> &Counter {
        assert!(
            direction < direction::COUNT && verdict < verdict::COUNT && reason < reason::COUNT,
            "stats index out of range"
        );
        &self.counters[stat_index(direction, verdict, reason) as usize]
    }
}

#[derive(serde::Serialize)]
struct Row {
    direction: &'static str,
    verdict: &'static str,
    reason: &'static str,
    packets: u64,
    bytes: u64,
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<Row> = self
            .nonzero()
            .map(|((d, v, r), c)| Row {
                direction: DIRECTION_NAMES[d as usize],
                verdict: VERDICT_NAMES[v as usize],
                reason: reason::NAMES[r as usize],
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        let mut seq = serializer.serialize_seq(Some(rows.len()))?;
        for row in &rows {
            seq.serialize_element(row)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_stat_index_and_delta_subtracts() {
        let mut counters = vec![Counter::default(); STATS_LEN as usize];
        let slot = stat_index(direction::INGRESS, verdict::DROP, reason::NO_RULE) as usize;
        counters[slot] = Counter { packets: 5, bytes: 300 };
        let later = Stats::from_counters(counters.clone());
        counters[slot] = Counter { packets: 2, bytes: 120 };
        let earlier = Stats::from_counters(counters);
        let delta = later.since(&earlier);
        assert_eq!(
            delta[(direction::INGRESS, verdict::DROP, reason::NO_RULE)],
            Counter { packets: 3, bytes: 180 }
        );
        assert_eq!(delta.packets(), 3);
        assert_eq!(delta.get(direction::INGRESS, verdict::ALLOW, reason::RULE), Counter::default());
        assert_eq!(delta.get(9, 0, 0), Counter::default());
        let json = serde_json::to_string(&delta).unwrap();
        assert_eq!(
            json,
            r#"[{"direction":"ingress","verdict":"drop","reason":"no-rule","packets":3,"bytes":180}]"#
        );
    }
}
