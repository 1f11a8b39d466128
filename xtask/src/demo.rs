//! `cargo xtask demo`: the web-server example enforced by the real XDP program in a
//! throw-away lab, with allowed and denied traffic, counters and per-rule hits.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::agent::Agent;
use crate::lab::{self, Lab};
use crate::probe::{self, Outcome};
use crate::{setup, summary, util};

const SNAPSHOT: &str = "examples/web-server.json";

/// Runs the demo; with `with_agent == false` the same traffic runs without enforcement
/// (everything must then be delivered), which checks the lab itself.
pub fn run(with_agent: bool) -> Result<()> {
    util::require_root("`cargo xtask demo` (it creates network namespaces and attaches XDP)")?;
    let ready = setup::ensure()?;
    let root = util::repo_root();
    let snapshot_path = root.join(SNAPSHOT);

    let agent_input = if with_agent {
        let mut build = Command::new(util::cargo());
        ready.apply(build.current_dir(&root)).args(["build", "-p", "sgmirror"]);
        util::run_loud("demo", &mut build)?;
        let binary = util::target_dir()?.join("debug/sgmirror");
        if !binary.exists() {
            bail!("the build produced no {}", binary.display());
        }
        let snapshot = read_snapshot(&snapshot_path)?;
        let interface_id = first_interface_id(&snapshot)
            .with_context(|| format!("{SNAPSHOT}: no NetworkInterfaces[].NetworkInterfaceId"))?;
        Some((binary, snapshot, interface_id))
    } else {
        eprintln!("[demo] --no-agent: nothing is enforced, so every probe must be delivered");
        None
    };

    eprintln!(
        "[demo] lab: namespace {} ({} {}, {}) ── veth ── {} {} {} in the root namespace",
        lab::PEER_NS,
        lab::PEER_LINK,
        lab::PEER_V4,
        lab::PEER_V6,
        lab::HOST_LINK,
        lab::HOST_V4,
        lab::HOST_V6
    );
    let lab = Lab::create()?;
    probe::start_listeners();

    // Declared after `lab`, so it is dropped (stopped) before the lab is torn down.
    let agent = match &agent_input {
        Some((binary, _, interface_id)) => {
            Some(Agent::start(binary, &snapshot_path, lab::HOST_LINK, interface_id)?)
        }
        None => None,
    };

    eprintln!("[demo] sending traffic from {} …", lab::PEER_NS);
    let outcomes: Vec<Outcome> = probe::probes()
        .into_iter()
        .map(|p| {
            let observed = probe::send(&p);
            let expect_delivered = p.allowed || agent.is_none();
            Outcome { probe: p, expect_delivered, observed }
        })
        .collect();

    // A failed stop is reported after the table, which is worth seeing either way.
    let agent_summary = agent.map(Agent::stop).transpose();
    drop(lab);

    let mut failures = probe::print_table(&outcomes);
    let agent_summary = match agent_summary {
        Ok(s) => s,
        Err(e) => {
            println!();
            bail!("{failures} probe(s) differ from the policy, and stopping the agent failed: {e:#}");
        }
    };
    if let (Some(summary_json), Some((_, snapshot, interface_id))) = (agent_summary, &agent_input) {
        let interfaces = summary::parse(&summary_json)?;
        summary::print(&interfaces, &summary::rule_descriptions(snapshot));
        let allowed = outcomes.iter().filter(|o| o.probe.allowed).count() as u64;
        let denied = outcomes.len() as u64 - allowed;
        println!();
        for (check, ok) in summary::checks(&interfaces, interface_id, lab::HOST_LINK, allowed, denied) {
            println!("{:<66} {}", check, if ok { "OK" } else { "FAIL" });
            failures += usize::from(!ok);
        }
    }
    println!();
    if failures > 0 {
        bail!("{failures} observation(s) differ from what the policy says");
    }
    println!("demo: every observation matches the policy");
    Ok(())
}

fn read_snapshot(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The first `NetworkInterfaces[].NetworkInterfaceId` of the snapshot: the ENI the demo
/// binds to its link.
fn first_interface_id(snapshot: &Value) -> Option<String> {
    snapshot["NetworkInterfaces"]
        .as_array()?
        .iter()
        .find_map(|i| i["NetworkInterfaceId"].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn takes_the_first_interface_id() {
        let s = json!({"NetworkInterfaces": [{"MacAddress": "x"}, {"NetworkInterfaceId": "eni-1"}, {"NetworkInterfaceId": "eni-2"}]});
        assert_eq!(first_interface_id(&s).as_deref(), Some("eni-1"));
        assert_eq!(first_interface_id(&json!({})), None);
    }
}
