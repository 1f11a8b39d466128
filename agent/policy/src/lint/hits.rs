//! A running agent's per-rule counters, and the `unused-rule` check that reads them.
//!
//! The document is the one `sgmirror run --summary-json` writes; only the fields read
//! here are required, the rest (counters by verdict, link, mode) is ignored:
//!
//! ```json
//! {"interfaces": [{"interface_id": "eni-…", "rule_hits": [{"rule": "sgr-…", "packets": 0}]}]}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Finding, Kind, Subject};
use crate::model::Warning;
use crate::snapshot::Snapshot;

/// Per-rule packet counts by interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Hits {
    /// One entry per enforced interface.
    pub interfaces: Vec<InterfaceHits>,
}

/// The counters of one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct InterfaceHits {
    /// `eni-…`.
    pub interface_id: String,
    /// Every rule the agent enforced on it, with its packets (0 included).
    #[serde(default)]
    pub rule_hits: Vec<RuleHit>,
}

/// Packets one rule allowed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RuleHit {
    /// The rule id.
    pub rule: String,
    /// Packets it allowed.
    pub packets: u64,
}

/// A hits document that cannot be read: where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct HitsError {
    /// JSON path (`$.interfaces[0].rule_hits[2].packets`).
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl Hits {
    /// Reads a `sgmirror run --summary-json` document.
    pub fn parse(json: &str) -> Result<Hits, HitsError> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." => "$".to_owned(),
                p => format!("$.{p}"),
            };
            HitsError {
                path,
                problem: format!(
                    "{} (expected the document `sgmirror run --summary-json` writes)",
                    e.inner()
                ),
            }
        })
    }
}

/// `unused-rule`: a rule in scope that the hits list, with 0 packets on every interface
/// that lists it. A rule the hits do not list (the agent did not enforce it, or ran an
/// older snapshot) is not a finding.
pub(super) fn unused_rules(
    hits: &Hits,
    subjects: &BTreeMap<String, Subject<'_>>,
    snapshot: &Snapshot,
    warnings: &mut Vec<Warning>,
) -> Vec<Finding> {
    // Rule id → (packets on all interfaces, interfaces that list it).
    let mut per_rule: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for (index, interface) in hits.interfaces.iter().enumerate() {
        if !snapshot.has_interface(&interface.interface_id) {
            warnings.push(Warning {
                path: format!("hits: $.interfaces[{index}]"),
                message: format!(
                    "interface {} is not in the snapshot; its counters still count as hits",
                    interface.interface_id
                ),
            });
        }
        for hit in &interface.rule_hits {
            let entry = per_rule.entry(hit.rule.as_str()).or_default();
            entry.0 = entry.0.saturating_add(hit.packets);
            if !entry.1.contains(&interface.interface_id.as_str()) {
                entry.1.push(&interface.interface_id);
            }
        }
    }
    if !subjects.keys().any(|id| per_rule.contains_key(id.as_str())) {
        warnings.push(Warning {
            path: "hits: $".to_owned(),
            message: "the hits list none of the linted rules (counters of another snapshot or \
                      other interfaces?): no rule can be reported unused"
                .to_owned(),
        });
    }
    subjects
        .iter()
        .filter_map(|(id, subject)| {
            let (packets, on) = per_rule.get(id.as_str())?;
            (*packets == 0).then(|| {
                let message = format!(
                    "no packet matched this rule on {} while the agent counted: remove it if \
                     nothing needs it",
                    on.join(", ")
                );
                Finding::new(Kind::UnusedRule, subject, message)
            })
        })
        .collect()
}
