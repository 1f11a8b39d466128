//! One link under enforcement: its current program generation, the policy compiled
//! into it, and the per-rule hits of the generations it replaced.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result};
use sgmirror_dataplane::{Attached, LoadOptions, LoadedProgram, Stats, load};
use sgmirror_policy::{
    compile::{CompiledInterface, MapImage},
    model::{Direction, InterfacePolicy},
};

use crate::{bindings::Binding, lifecycle::Placement, summary};

/// A policy ready to be attached or swapped in: resolved, compiled and verified.
pub struct Prepared {
    pub policy: InterfacePolicy,
    pub compiled: CompiledInterface,
    pub program: LoadedProgram,
    /// Hash of what the programs enforce (both compiled images and the timeouts),
    /// computed once here: the status records repeat it every poll, and serialising a
    /// 100 000-prefix image each time was most of the idle agent's CPU.
    pub hash: String,
}

/// Loads a compiled policy through the verifier without touching any link, so that a
/// policy the kernel refuses never replaces one in force; `opts` says where the link's
/// shared state is pinned.
pub fn prepare(policy: InterfacePolicy, compiled: CompiledInterface, opts: &LoadOptions) -> Result<Prepared> {
    let program =
        load(&compiled, opts).with_context(|| format!("loading the programs for {}", policy.interface_id))?;
    let hash = policy_hash(&policy, &compiled);
    Ok(Prepared { policy, compiled, program, hash })
}

fn policy_hash(policy: &InterfacePolicy, compiled: &CompiledInterface) -> String {
    let text = serde_json::to_string(&(compiled, format!("{:?}", policy.timeouts))).unwrap_or_default();
    crate::state::policy_hash(text.as_bytes())
}

/// A link being enforced.
pub struct Enforcer {
    pub binding: Binding,
    pub pin_dir: PathBuf,
    pub attached: Attached,
    /// Why XDP runs in generic mode, when native was wanted but not possible.
    pub fallback_reason: Option<String>,
    /// Whether the links were adopted from an earlier agent.
    pub adopted: bool,
    pub generation: u64,
    /// When the policy in force was applied.
    pub applied_at: std::time::SystemTime,
    current: Prepared,
    /// Hits of rules, by id, counted by generations that have been replaced.
    past_hits: BTreeMap<String, u64>,
    /// Highest eviction estimate reported so far.
    evicted_high_water: std::cell::Cell<u64>,
}

impl Enforcer {
    /// The enforcer of `prepared`, placed on the binding's link as `placement` says;
    /// `generation` is the number of the policy in force.
    pub fn placed(
        binding: Binding,
        pin_dir: PathBuf,
        prepared: Prepared,
        placement: Placement,
        generation: u64,
    ) -> Enforcer {
        Enforcer {
            binding,
            pin_dir,
            attached: placement.attached,
            fallback_reason: placement.fallback_reason,
            adopted: placement.adopted,
            generation,
            applied_at: std::time::SystemTime::now(),
            current: prepared,
            past_hits: BTreeMap::new(),
            evicted_high_water: std::cell::Cell::new(0),
        }
    }

    /// Whether the links are pinned (enforcement outlives this process).
    pub fn pinned(&self) -> bool {
        self.current.program.pinned_in().is_some()
    }

    /// The compiled policy in force.
    pub fn compiled(&self) -> &CompiledInterface {
        &self.current.compiled
    }

    /// The hash of the policy in force (see [`Prepared::hash`]).
    pub fn policy_hash(&self) -> &str {
        &self.current.hash
    }

    /// The resolved policy in force.
    pub fn policy(&self) -> &InterfacePolicy {
        &self.current.policy
    }

    /// Swaps `next` in, atomically for each hook, and keeps the hits the old
    /// generation counted.
    pub fn replace(&mut self, next: Prepared) -> Result<()> {
        let Prepared { policy, compiled, program, hash } = next;
        // Afterwards `self.current.program` is the new generation, on the hooks.
        let old_program = self.current.program.replace(program).context("swapping in the new programs")?;
        self.current.policy = policy;
        self.current.hash = hash;
        let old_compiled = std::mem::replace(&mut self.current.compiled, compiled);
        // A packet already inside an old program finishes within an RCU grace period;
        // give it a moment before reading the old generation's last counts.
        std::thread::sleep(std::time::Duration::from_millis(20));
        for direction in [Direction::Ingress, Direction::Egress] {
            let hits = old_program.rule_hits(direction)?;
            add_hits(&mut self.past_hits, old_compiled.image(direction), &hits);
        }
        self.generation += 1;
        self.applied_at = std::time::SystemTime::now();
        Ok(())
    }

    /// Counters of the link (shared by all generations).
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.current.program.stats()?)
    }

    /// Hits per rule id over every generation; every rule in force is listed.
    pub fn rule_hits(&self) -> Result<Vec<summary::RuleHits>> {
        let mut totals = self.past_hits.clone();
        for direction in [Direction::Ingress, Direction::Egress] {
            for rule in self.current.policy.rules(direction) {
                totals.entry(rule.id.clone()).or_insert(0);
            }
            let hits = self.current.program.rule_hits(direction)?;
            add_hits(&mut totals, self.current.compiled.image(direction), &hits);
        }
        Ok(totals.into_iter().map(|(rule, packets)| summary::RuleHits { rule, packets }).collect())
    }

    /// Drop records waiting in the link's ring buffer (shared by its generations), at
    /// most `max`.
    pub fn read_drop_records(&mut self, max: usize) -> Result<Vec<sgmirror_common::DropRecord>> {
        Ok(self.current.program.read_drop_records(max)?)
    }

    /// Drop records the kernel did not send: rate-limited, or the ring buffer full.
    pub fn drop_log_counters(&self) -> Result<sgmirror_dataplane::DropLogCounters> {
        Ok(self.current.program.drop_log_counters()?)
    }

    /// Flows evicted from the full table so far. The kernel's figure is an estimate
    /// that can dip while the table changes under the walk; the metric is a counter,
    /// so this reports the highest value seen.
    pub fn flows_evicted(&self) -> Result<u64> {
        let now = self.current.program.flows_evicted_estimate()?;
        let highest = self.evicted_high_water.get().max(now);
        self.evicted_high_water.set(highest);
        Ok(highest)
    }

    /// Flows in the link's table.
    pub fn flow_count(&self) -> Result<usize> {
        Ok(self.current.program.flow_count()?)
    }

    /// Detaches both programs.
    pub fn detach(self) -> Result<()> {
        Ok(self.current.program.detach()?)
    }
}

fn add_hits(totals: &mut BTreeMap<String, u64>, image: &MapImage, hits: &[u64]) {
    for (set, count) in image.match_sets.iter().zip(hits) {
        for rule in set {
            *totals.entry(rule.clone()).or_default() += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_on_a_match_set_counts_for_each_of_its_rules() {
        let image = MapImage {
            addr4: Vec::new(),
            addr6: Vec::new(),
            ports: Vec::new(),
            match_sets: vec![vec!["a".to_owned()], vec!["a".to_owned(), "b".to_owned()]],
            classes: 0,
            rules: 2,
        };
        let mut totals = BTreeMap::from([("c".to_owned(), 0)]);
        add_hits(&mut totals, &image, &[3, 4]);
        add_hits(&mut totals, &image, &[1, 0]);
        let got: Vec<_> = totals.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert_eq!(got, [("a", 8), ("b", 4), ("c", 0)]);
    }
}
