//! `explain --trace FILE`: the packets judged before the explained one.

use std::{net::IpAddr, path::Path};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sgmirror_policy::model::{Direction, StatefulPacket};

use crate::packet_arg::PacketSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    direction: String,
    proto: String,
    src: IpAddr,
    dst: IpAddr,
    #[serde(default = "default_sport")]
    sport: u16,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    #[serde(default)]
    icmp_code: u8,
    #[serde(default)]
    icmp_id: u16,
    tcp_flags: Option<String>,
    #[serde(default)]
    after_ms: u64,
    quotes: Option<usize>,
}

fn default_sport() -> u16 {
    40000
}

/// One packet of a trace and the time since the previous one.
#[derive(Debug, Clone)]
pub struct Step {
    pub direction: Direction,
    pub packet: StatefulPacket,
    pub after_ms: u64,
}

/// Reads a trace file; errors name the entry.
pub fn load(path: &Path) -> Result<Vec<Step>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading trace {}", path.display()))?;
    // The path names the entry and field at fault (`$[2].sport`), as for snapshots.
    let entries: Vec<Entry> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text)).map_err(|e| {
            let problem = e.inner();
            match e.path().to_string() {
                p if p == "." => {
                    anyhow::anyhow!(
                        "trace {}: $: {problem} (expected a JSON array of packets)",
                        path.display()
                    )
                }
                p if p.starts_with('[') => anyhow::anyhow!("trace {}: ${p}: {problem}", path.display()),
                p => anyhow::anyhow!("trace {}: $.{p}: {problem}", path.display()),
            }
        })?;
    let mut steps: Vec<Step> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let direction = match e.direction.as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => bail!("trace {}: $[{i}].direction: {other:?} is not ingress or egress", path.display()),
        };
        let quoted = match e.quotes {
            Some(q) if q >= i => {
                bail!("trace {}: $[{i}].quotes: {q} is not an earlier entry", path.display())
            }
            Some(q) => Some(steps[q].packet),
            None => None,
        };
        let spec = PacketSpec {
            proto: e.proto,
            src: e.src,
            dst: e.dst,
            sport: e.sport,
            dport: e.dport,
            icmp_type: e.icmp_type,
            icmp_code: e.icmp_code,
            icmp_id: e.icmp_id,
            // A TCP packet in a trace is a plain ACK unless it says otherwise.
            tcp_flags: e.tcp_flags.unwrap_or_else(|| "A".to_owned()),
        };
        let packet =
            spec.build(quoted.as_ref()).with_context(|| format!("trace {}: $[{i}]", path.display()))?;
        steps.push(Step { direction, packet, after_ms: e.after_ms });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `json` from a file of its own.
    fn load_text(name: &str, json: &str) -> Result<Vec<Step>> {
        let path = std::env::temp_dir().join(format!("sgmirror-trace-{}-{name}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        let result = load(&path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let ok =
            r#"{"direction": "egress", "proto": "udp", "src": "10.0.0.1", "dst": "10.0.0.2", "dport": 53}"#;
        let bad_port = format!(
            r#"[{ok}, {{"direction": "ingress", "proto": "udp", "src": "10.0.0.2", "dst": "10.0.0.1", "sport": 70000}}]"#
        );
        let err = format!("{:#}", load_text("port", &bad_port).unwrap_err());
        assert!(err.contains(": $[1].sport: "), "{err}");
        let typo = format!(r#"[{ok}, {{"dirction": "ingress"}}]"#);
        let err = format!("{:#}", load_text("typo", &typo).unwrap_err());
        assert!(err.contains(": $[1].dirction: unknown field"), "{err}");
        let err = format!("{:#}", load_text("object", ok).unwrap_err());
        assert!(err.contains(": $: "), "{err}");
        let late_quote = format!(
            r#"[{ok}, {{"direction": "ingress", "proto": "icmp", "src": "10.0.0.2", "dst": "10.0.0.1", "icmp_type": 3, "quotes": 1}}]"#
        );
        let err = format!("{:#}", load_text("quote", &late_quote).unwrap_err());
        assert!(err.contains("$[1].quotes: 1 is not an earlier entry"), "{err}");
        assert_eq!(load_text("ok", &format!("[{ok}]")).unwrap().len(), 1);
    }
}
