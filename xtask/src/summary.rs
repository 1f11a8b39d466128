//! The agent's exit summary (`sgmirror run --summary-json`): reading, printing, and the
//! demo's consistency checks of its counters against the traffic sent.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

/// One counter row: packets by direction, verdict and reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Counter {
    pub direction: String,
    pub verdict: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

/// What one enforced interface counted.
#[derive(Debug)]
pub struct Interface {
    pub interface_id: String,
    pub link: String,
    pub counters: Vec<Counter>,
    pub rule_hits: Vec<(String, u64)>,
}

/// Reads `{"interfaces":[{"interface_id","link","counters":[…],"rule_hits":[…]}]}`.
pub fn parse(summary: &Value) -> Result<Vec<Interface>> {
    let text = |v: &Value, key: &str| {
        v[key].as_str().map(str::to_owned).with_context(|| format!("summary: `{key}` missing"))
    };
    let num = |v: &Value, key: &str| v[key].as_u64().with_context(|| format!("summary: `{key}` missing"));
    let list = |v: &Value, key: &str| {
        v[key].as_array().cloned().with_context(|| format!("summary: `{key}` missing"))
    };
    list(summary, "interfaces")?
        .iter()
        .map(|i| {
            Ok(Interface {
                interface_id: text(i, "interface_id")?,
                link: text(i, "link")?,
                counters: list(i, "counters")?
                    .iter()
                    .map(|c| {
                        Ok(Counter {
                            direction: text(c, "direction")?,
                            verdict: text(c, "verdict")?,
                            reason: text(c, "reason")?,
                            packets: num(c, "packets")?,
                            bytes: num(c, "bytes")?,
                        })
                    })
                    .collect::<Result<_>>()?,
                rule_hits: list(i, "rule_hits")?
                    .iter()
                    .map(|r| Ok((text(r, "rule")?, num(r, "packets")?)))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// `sgr-` id → a short description (`ingress tcp 3389 from 198.51.100.7/32`), from the
/// snapshot's `SecurityGroupRules`; best effort, for display only.
pub fn rule_descriptions(snapshot: &Value) -> BTreeMap<String, String> {
    let Some(rules) = snapshot["SecurityGroupRules"].as_array() else { return BTreeMap::new() };
    rules
        .iter()
        .filter_map(|r| {
            let id = r["SecurityGroupRuleId"].as_str()?;
            let direction = if r["IsEgress"].as_bool().unwrap_or(false) { "egress" } else { "ingress" };
            let proto = match r["IpProtocol"].as_str().unwrap_or("?") {
                "-1" => "all".to_owned(),
                p => p.to_owned(),
            };
            let ports = match (r["FromPort"].as_i64(), r["ToPort"].as_i64()) {
                (Some(-1), _) | (None, _) => String::new(),
                (Some(a), Some(b)) if a == b || proto.starts_with("icmp") => format!(" {a}"),
                (Some(a), Some(b)) => format!(" {a}-{b}"),
                (Some(a), None) => format!(" {a}"),
            };
            let peer = ["CidrIpv4", "CidrIpv6", "PrefixListId"]
                .iter()
                .find_map(|k| r[*k].as_str().map(str::to_owned))
                .or_else(|| r["ReferencedGroupInfo"]["GroupId"].as_str().map(|g| format!("members of {g}")))
                .unwrap_or_default();
            let dir_word = if direction == "egress" { "to" } else { "from" };
            let note = r["Description"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
            Some((id.to_owned(), format!("{direction} {proto}{ports} {dir_word} {peer}{note}")))
        })
        .collect()
}

/// Prints the counters and per-rule hits.
pub fn print(interfaces: &[Interface], descriptions: &BTreeMap<String, String>) {
    for i in interfaces {
        println!();
        println!("Counters of {} on {}:", i.interface_id, i.link);
        println!("  {:<9} {:<8} {:<10} {:>9} {:>10}", "DIRECTION", "VERDICT", "REASON", "PACKETS", "BYTES");
        for c in &i.counters {
            println!(
                "  {:<9} {:<8} {:<10} {:>9} {:>10}",
                c.direction, c.verdict, c.reason, c.packets, c.bytes
            );
        }
        println!("Hits per rule:");
        println!("  {:<26} {:>9}  WHAT", "RULE", "PACKETS");
        for (rule, packets) in &i.rule_hits {
            let what = descriptions.get(rule).map(String::as_str).unwrap_or("");
            println!("  {rule:<26} {packets:>9}  {what}");
        }
    }
}

/// Checks that the counters account for the probes: every allowed probe sent at least
/// one packet allowed by a rule (and hit a rule), every denied one at least one dropped
/// packet. Returns (check, passed) pairs.
pub fn checks(
    interfaces: &[Interface],
    interface_id: &str,
    link: &str,
    allowed: u64,
    denied: u64,
) -> Vec<(String, bool)> {
    let Some(i) = interfaces.iter().find(|i| i.interface_id == interface_id && i.link == link) else {
        return vec![(format!("the summary lists {interface_id} on {link}"), false)];
    };
    let sum =
        |f: &dyn Fn(&Counter) -> bool| i.counters.iter().filter(|c| f(c)).map(|c| c.packets).sum::<u64>();
    let allowed_by_rule = sum(&|c| c.direction == "ingress" && c.verdict == "allow" && c.reason == "rule");
    let dropped = sum(&|c| c.direction == "ingress" && c.verdict == "drop");
    let hits: u64 = i.rule_hits.iter().map(|(_, n)| n).sum();
    vec![
        (
            format!("packets allowed by a rule ({allowed_by_rule}) ≥ allowed probes ({allowed})"),
            allowed_by_rule >= allowed,
        ),
        (format!("rule hits ({hits}) ≥ allowed probes ({allowed})"), hits >= allowed),
        (format!("packets dropped ({dropped}) ≥ denied probes ({denied})"), dropped >= denied),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        json!({"interfaces": [{
            "interface_id": "eni-1", "link": "sgmd-h0", "mode": "enforce",
            "counters": [
                {"direction": "ingress", "verdict": "allow", "reason": "rule", "packets": 9, "bytes": 900},
                {"direction": "ingress", "verdict": "allow", "reason": "exempt", "packets": 4, "bytes": 200},
                {"direction": "ingress", "verdict": "drop", "reason": "no-rule", "packets": 6, "bytes": 400}
            ],
            "rule_hits": [{"rule": "sgr-a", "packets": 9}, {"rule": "sgr-b", "packets": 0}]
        }]})
    }

    #[test]
    fn parses_the_documented_shape() {
        let parsed = parse(&sample()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].counters.len(), 3);
        assert_eq!(parsed[0].rule_hits, [("sgr-a".to_owned(), 9), ("sgr-b".to_owned(), 0)]);
        assert!(parse(&json!({"interfaces": [{"link": "x"}]})).is_err());
    }

    #[test]
    fn checks_compare_counters_with_probe_counts() {
        let parsed = parse(&sample()).unwrap();
        assert!(checks(&parsed, "eni-1", "sgmd-h0", 5, 6).iter().all(|(_, ok)| *ok));
        let too_many = checks(&parsed, "eni-1", "sgmd-h0", 10, 7);
        assert!(too_many.iter().all(|(_, ok)| !*ok));
        assert!(!checks(&parsed, "eni-2", "sgmd-h0", 0, 0)[0].1);
    }

    #[test]
    fn describes_rules_from_the_snapshot() {
        let snapshot = json!({"SecurityGroupRules": [
            {"SecurityGroupRuleId": "sgr-1", "IsEgress": false, "IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389, "CidrIpv4": "198.51.100.7/32", "Description": "RDP"},
            {"SecurityGroupRuleId": "sgr-2", "IsEgress": true, "IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "CidrIpv6": "::/0"},
            {"SecurityGroupRuleId": "sgr-3", "IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "CidrIpv4": "203.0.113.0/24"}
        ]});
        let d = rule_descriptions(&snapshot);
        assert_eq!(d["sgr-1"], "ingress tcp 3389 from 198.51.100.7/32 (RDP)");
        assert_eq!(d["sgr-2"], "egress all to ::/0");
        assert_eq!(d["sgr-3"], "ingress icmp 8 from 203.0.113.0/24");
    }
}
