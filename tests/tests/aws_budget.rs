//! The AWS source's API budget (issue 4, acceptance 4), counted at the proxy.
//!
//! A "simulated hour": the default refresh of 300 s is shortened to 1 s, so 12 timer
//! refreshes stand for an hour. The scenario "lab" has one own ENI with one group whose
//! rules reference a group and a prefix list, so a fetch is (README "API budget"):
//! DescribeNetworkInterfaces ×2 (own ENIs, members of the referenced group),
//! DescribeSecurityGroupRules ×1, DescribeManagedPrefixLists ×1, and
//! GetManagedPrefixListEntries only when a list's Version changed (cached by version).
//! The proxy counts every call; the totals must be exact. IMDS is polled instead of the
//! API for local changes, with one token for the whole run.
//!
//! Run under `flock /tmp/sgm-e2e.lock` with the other e2e tests (as root).

use std::{collections::BTreeMap, time::Duration};

use serde_json::json;
use sgmirror_e2e::{
    agent::{Agent, PinRoot},
    aws::{Imds, Moto, Proxy, aws_env, http, run_args, set_mac},
    lab::Lab,
};

const REFRESHES: u64 = 12;
/// Calls of the first fetch: every list's entries are read once.
const FIRST: [(&str, u64); 4] = [
    ("DescribeManagedPrefixLists", 1),
    ("DescribeNetworkInterfaces", 2),
    ("DescribeSecurityGroupRules", 1),
    ("GetManagedPrefixListEntries", 1),
];
/// Calls of a refresh when nothing changed: the entries come from the cache.
const STEADY: [(&str, u64); 3] =
    [("DescribeManagedPrefixLists", 1), ("DescribeNetworkInterfaces", 2), ("DescribeSecurityGroupRules", 1)];

fn counts(list: &[(&str, u64)], times: u64) -> BTreeMap<String, u64> {
    list.iter().map(|(a, n)| (a.to_string(), n * times)).collect()
}

fn add(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_default() += v;
    }
}

#[test]
fn a_simulated_hour_costs_exactly_the_documented_calls() {
    let moto = Moto::start();
    let scenario = moto.build("lab");
    let iid = scenario.id("i_lab");
    let imds = Imds::start(&moto, &iid);
    let proxy = Proxy::start(&moto);
    let mac0 = scenario.0["instances"][&iid][0]["mac"].as_str().unwrap().to_owned();
    let lab = Lab::new(&["10.77.1.10/24"], &["10.77.1.20/24"]);
    set_mac(&lab.host_link, &mac0);

    let pins = PinRoot::new();
    // IMDS every 250 ms: 5 s against 300 s by default would scale to 17 ms at the 1 s
    // refresh; 250 ms is enough, IMDS is local and not throttled per account.
    let args = run_args(&proxy, &imds, 1000, 250);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    proxy.reset_calls();
    let mut agent = Agent::spawn_with_env(&args, &aws_env(), &pins);
    agent.wait_for("aws: policy applied", Duration::from_secs(60));
    assert_eq!(proxy.calls(), counts(&FIRST, 1), "the first fetch");

    let start = std::time::Instant::now();
    for _ in 0..REFRESHES {
        agent.wait_for("\"timer\"", Duration::from_secs(5));
    }
    let hour = start.elapsed();
    let mut want = counts(&FIRST, 1);
    add(&mut want, &counts(&STEADY, REFRESHES));
    // Read right after the 12th refresh: the next one is a refresh interval away.
    let calls = proxy.calls();
    eprintln!("[aws_budget] {REFRESHES} refreshes in {hour:?}: {calls:?}");
    assert_eq!(calls, want, "the first fetch and {REFRESHES} refreshes of an unchanged state");

    // On change: a new prefix-list version costs one GetManagedPrefixListEntries.
    proxy.reset_calls();
    moto.op(json!({"op": "pl_add", "pl": scenario.id("pl"), "cidr": "10.77.1.22/32"}));
    agent.wait_for("\"timer\"", Duration::from_secs(5));
    let calls = proxy.calls();
    eprintln!("[aws_budget] refresh after a prefix-list change: {calls:?}");
    let mut want = counts(&STEADY, 1);
    want.insert("GetManagedPrefixListEntries".into(), 1);
    assert_eq!(calls, want, "a refresh after a prefix-list change");

    // A local change seen in IMDS triggers one fetch at once, not a burst.
    proxy.reset_calls();
    moto.op(json!({"op": "set_groups", "eni": scenario.id("i_lab_eni0"), "groups": [scenario.id("web"), scenario.id("extra")]}));
    agent.wait_for("\"local change\"", Duration::from_secs(5));
    let calls = proxy.calls();
    eprintln!("[aws_budget] fetch after a local group change: {calls:?}");
    // One fetch: the members and lists are those of the same references.
    assert_eq!(calls, counts(&STEADY, 1), "the fetch a local change triggers");

    // Throttling while running: retried inside the refresh, exactly the extra calls.
    agent.wait_for("\"timer\"", Duration::from_secs(5));
    proxy.reset_calls();
    proxy.set_faults(json!([{"action": "DescribeSecurityGroupRules", "kind": "throttle", "count": 2}]));
    agent.wait_for("\"timer\"", Duration::from_secs(15));
    let calls = proxy.calls();
    eprintln!("[aws_budget] refresh with two throttled attempts: {calls:?}");
    let mut want = counts(&STEADY, 1);
    *want.get_mut("DescribeSecurityGroupRules").unwrap() += 2;
    assert_eq!(calls, want, "a throttled refresh");
    agent.wait_for("aws: policy unchanged", Duration::from_secs(5));

    let (_, imds_calls) = http(imds.port, "GET", "/__imds/calls", "");
    let imds_calls: serde_json::Value = serde_json::from_str(&imds_calls).unwrap();
    eprintln!("[aws_budget] IMDS: {imds_calls} in {:?}", start.elapsed());
    assert_eq!(imds_calls["token"], 1, "one IMDS token for the whole run (TTL 6 h)");
    let (_, status) = agent.stop();
    assert!(status.success());
}
