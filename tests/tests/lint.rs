//! `sgmirror lint` through the real binary: the web-server example is clean, RDP from
//! the world is exactly one high finding, each finding kind is found, `--fail-on`
//! sets the exit status, and bad input exits 1 naming the file.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sgmirror_e2e::{agent::run_to_end, workspace_root};

const GROUP: &str = "sg-0a1b2c3d4e5f6073a";
const ENI: &str = "eni-0a1b2c3d4e5f6075c";
const RDP: &str = "sgr-0a1b2c3d4e5f60805";

fn example_path() -> PathBuf {
    workspace_root().join("examples/web-server.json")
}

fn example() -> Value {
    serde_json::from_str(&std::fs::read_to_string(example_path()).unwrap()).unwrap()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("sgm-lint-{}", sgmirror_e2e::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, doc: &Value) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, doc.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rule of the web server's group.
fn rule(id: &str, egress: bool, proto: &str, ports: (i32, i32), peer: (&str, Value)) -> Value {
    let mut r = json!({
        "SecurityGroupRuleId": id, "GroupId": GROUP, "GroupOwnerId": "111122223333",
        "IsEgress": egress, "IpProtocol": proto, "FromPort": ports.0, "ToPort": ports.1,
    });
    r[peer.0] = peer.1;
    r
}

fn with_rules(rules: &[Value]) -> Value {
    let mut doc = example();
    doc["SecurityGroupRules"].as_array_mut().unwrap().extend(rules.iter().cloned());
    doc
}

/// `sgmirror lint --json ARGS`: exit code and the findings of its single JSON document.
fn lint_json(args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["lint", "--json"];
    all.extend_from_slice(args);
    let out = run_to_end(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().expect("lint exited by itself");
    assert!(code == 0 || code == 2, "lint {args:?} failed ({code}): {stderr}");
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: one JSON document expected:\n{stdout}"));
    assert_eq!(doc.as_object().unwrap().keys().collect::<Vec<_>>(), ["findings"], "{doc}");
    (code, doc["findings"].as_array().unwrap().clone())
}

fn lint_file(path: &str) -> Vec<Value> {
    let (code, findings) = lint_json(&["--snapshot", path]);
    assert_eq!(code, 0, "lint is advisory without --fail-on");
    findings
}

/// (kind, rule) of each finding, in output order.
fn kinds(findings: &[Value]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_owned(), f["rule"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(k, r)| ((*k).to_owned(), (*r).to_owned())).collect()
}

#[test]
fn the_web_server_example_has_no_findings() {
    let path = example_path();
    assert_eq!(lint_file(path.to_str().unwrap()), Vec::<Value>::new());
    let out = run_to_end(&["lint", "--snapshot", path.to_str().unwrap(), "--fail-on", "low"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no findings\n");
}

#[test]
fn rdp_from_the_world_is_exactly_one_high_finding() {
    let scratch = Scratch::new();
    let mut doc = example();
    assert_eq!(doc["SecurityGroupRules"][4]["SecurityGroupRuleId"], RDP);
    doc["SecurityGroupRules"][4]["CidrIpv4"] = json!("0.0.0.0/0");
    let path = scratch.write("rdp.json", &doc);

    let findings = lint_file(&path);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f["severity"], "high");
    assert_eq!(f["kind"], "world-open-sensitive-port");
    assert_eq!(f["rule"], RDP);
    assert_eq!(f["group_id"], GROUP);
    assert_eq!(f["direction"], "ingress");
    assert_eq!(f["protocol"], "tcp");
    assert_eq!((f["from"].as_u64(), f["to"].as_u64()), (Some(3389), Some(3389)));
    assert_eq!(f["source"], "0.0.0.0/0");
    assert_eq!(f["sensitive_ports"], json!([3389]));
    assert_eq!(f["interfaces"], json!([ENI]));
    assert!(f["message"].as_str().unwrap().contains("RDP (3389)"), "{f}");

    // The table says the same; --fail-on decides the exit status.
    let out = run_to_end(&["lint", "--snapshot", &path]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    for cell in ["high", "world-open-sensitive-port", RDP, "tcp", "3389", "0.0.0.0/0"] {
        assert!(row.split_whitespace().any(|c| c == cell), "{cell} missing from {row:?}\n{table}");
    }
    assert_eq!(lint_json(&["--snapshot", &path, "--fail-on", "high"]).0, 2);
    assert_eq!(lint_json(&["--snapshot", &path, "--fail-on", "low"]).0, 2);
    let out = run_to_end(&["lint", "--snapshot", &path, "--fail-on", "high"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 finding(s) at or above high"));
}

#[test]
fn sensitive_ports_open_to_the_world_by_ipv6_prefix_list_and_all_protocols() {
    let scratch = Scratch::new();
    let mut doc = with_rules(&[
        rule("sgr-1-ssh6", false, "tcp", (22, 22), ("CidrIpv6", json!("::/0"))),
        rule("sgr-2-pl", false, "tcp", (3306, 3306), ("PrefixListId", json!("pl-world"))),
        rule("sgr-3-all", false, "-1", (-1, -1), ("CidrIpv4", json!("0.0.0.0/0"))),
    ]);
    doc["PrefixLists"] = json!([{"PrefixListId": "pl-world",
        "Entries": [{"Cidr": "198.51.100.0/24"}, {"Cidr": "0.0.0.0/0"}]}]);
    let findings = lint_file(&scratch.write("world.json", &doc));
    assert_eq!(
        kinds(&findings),
        pairs(&[
            ("world-open-sensitive-port", "sgr-1-ssh6"),
            ("world-open-sensitive-port", "sgr-2-pl"),
            ("world-open-sensitive-port", "sgr-3-all"),
            ("wide-port-range", "sgr-3-all"),
        ])
    );
    assert_eq!(
        (findings[0]["source"].as_str(), findings[0]["sensitive_ports"].clone()),
        (Some("::/0"), json!([22]))
    );
    assert_eq!(findings[1]["source"], "pl-world");
    assert!(findings[1]["message"].as_str().unwrap().contains("pl-world contains 0.0.0.0/0"));
    let all = &findings[2];
    assert_eq!(
        (all["protocol"].as_str(), all["from"].as_u64(), all["to"].as_u64()),
        (Some("-1"), Some(0), Some(65535))
    );
    assert_eq!(all["sensitive_ports"].as_array().unwrap().len(), 13);
    assert_eq!(findings[3]["severity"], "medium");
}

#[test]
fn a_host_address_with_a_short_prefix_is_the_whole_internet() {
    let scratch = Scratch::new();
    let doc = with_rules(&[
        rule("sgr-https", false, "tcp", (443, 443), ("CidrIpv4", json!("203.0.113.5/0"))),
        rule("sgr-ssh", false, "tcp", (22, 22), ("CidrIpv4", json!("203.0.113.5/0"))),
    ]);
    let out = run_to_end(&["lint", "--json", "--snapshot", &scratch.write("host.json", &doc)]);
    let findings: Vec<Value> =
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["findings"].as_array().unwrap().clone();
    assert_eq!(
        kinds(&findings),
        pairs(&[
            ("host-address-short-prefix", "sgr-https"),
            ("world-open-sensitive-port", "sgr-ssh"),
            ("host-address-short-prefix", "sgr-ssh"),
        ])
    );
    assert_eq!(findings[0]["severity"], "high");
    assert_eq!(findings[0]["source"], "203.0.113.5/0");
    assert!(
        findings[0]["message"].as_str().unwrap().contains("AWS reads it as 0.0.0.0/0"),
        "{}",
        findings[0]
    );
    // The parser's host-bits warning is not repeated on stderr: the finding says it.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("host bits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wide_port_ranges_are_medium() {
    let scratch = Scratch::new();
    let doc = with_rules(&[
        rule("sgr-wide", false, "tcp", (1024, 65535), ("CidrIpv4", json!("10.0.0.0/16"))),
        rule("sgr-vpc-all", false, "tcp", (0, 65535), ("CidrIpv4", json!("10.0.0.0/16"))),
        rule("sgr-narrow", false, "udp", (10000, 10999), ("CidrIpv4", json!("0.0.0.0/0"))),
    ]);
    let findings = lint_file(&scratch.write("wide.json", &doc));
    assert_eq!(kinds(&findings), pairs(&[("wide-port-range", "sgr-wide")]));
    assert_eq!(findings[0]["severity"], "medium");
    assert_eq!((findings[0]["from"].as_u64(), findings[0]["to"].as_u64()), (Some(1024), Some(65535)));
}

#[test]
fn unresolvable_groups_and_prefix_lists_are_medium() {
    let scratch = Scratch::new();
    let doc = with_rules(&[
        rule("sgr-group", false, "tcp", (8443, 8443), ("ReferencedGroupInfo", json!({"GroupId": "sg-gone"}))),
        rule("sgr-list", true, "icmp", (8, -1), ("PrefixListId", json!("pl-gone"))),
    ]);
    let path = scratch.write("unresolved.json", &doc);
    let findings = lint_file(&path);
    assert_eq!(
        kinds(&findings),
        pairs(&[("unresolvable-reference", "sgr-group"), ("unresolvable-reference", "sgr-list")])
    );
    assert!(findings.iter().all(|f| f["severity"] == "medium"));
    assert!(findings[0]["message"].as_str().unwrap().contains("sg-gone"));
    assert!(findings[1]["message"].as_str().unwrap().contains("pl-gone"));
    let icmp = &findings[1];
    assert_eq!(
        (icmp["protocol"].as_str(), icmp["icmp_type"].as_i64(), icmp["icmp_code"].as_i64()),
        (Some("icmp"), Some(8), Some(-1))
    );
    assert!(icmp.get("from").is_none(), "{icmp}");
    assert_eq!(lint_json(&["--snapshot", &path, "--fail-on", "medium"]).0, 2);
    assert_eq!(lint_json(&["--snapshot", &path, "--fail-on", "high"]).0, 0);
}

#[test]
fn unused_rules_come_from_the_agent_counters() {
    let scratch = Scratch::new();
    // What `sgmirror run --summary-json` writes.
    let hits = json!({"interfaces": [{
        "interface_id": ENI, "link": "veth0", "mode": "enforce", "xdp_mode": "native",
        "counters": [
            {"direction": "ingress", "verdict": "allow", "reason": "rule", "packets": 7, "bytes": 420}
        ],
        "rule_hits": [
            {"rule": "sgr-0a1b2c3d4e5f60801", "packets": 7},
            {"rule": "sgr-0a1b2c3d4e5f60802", "packets": 0},
            {"rule": "sgr-0a1b2c3d4e5f60806", "packets": 0},
            {"rule": RDP, "packets": 2}
        ]
    }]});
    let hits_path = scratch.write("hits.json", &hits);
    let snapshot = example_path();
    let (code, findings) = lint_json(&["--snapshot", snapshot.to_str().unwrap(), "--hits", &hits_path]);
    assert_eq!(code, 0);
    assert_eq!(
        kinds(&findings),
        pairs(&[("unused-rule", "sgr-0a1b2c3d4e5f60802"), ("unused-rule", "sgr-0a1b2c3d4e5f60806")])
    );
    assert!(findings.iter().all(|f| f["severity"] == "low"));
    let args = ["--snapshot", snapshot.to_str().unwrap(), "--hits", &hits_path, "--fail-on", "medium"];
    assert_eq!(lint_json(&args).0, 0);
    let args = ["--snapshot", snapshot.to_str().unwrap(), "--hits", &hits_path, "--fail-on", "low"];
    assert_eq!(lint_json(&args).0, 2);
}

#[test]
fn bad_input_exits_1_naming_the_file() {
    let scratch = Scratch::new();
    let mut bad = example();
    bad["SecurityGroupRules"][0]["FromPort"] = json!(90);
    let bad_snapshot = scratch.write("bad-snapshot.json", &bad);
    let bad_hits = scratch.write(
        "bad-hits.json",
        &json!({"interfaces": [{"interface_id": ENI, "rule_hits": [{"rule": RDP}]}]}),
    );
    let good = example_path();
    let good = good.to_str().unwrap();
    let missing = Path::new(&scratch.0).join("missing.json");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--snapshot", &bad_snapshot], format!("{bad_snapshot}: $.SecurityGroupRules[0]")),
        (vec!["--snapshot", good, "--hits", &bad_hits], format!("{bad_hits}: $.interfaces[0].rule_hits[0]")),
        (vec!["--snapshot", good, "--hits", missing.to_str().unwrap()], missing.display().to_string()),
        (vec!["--snapshot", good, "--interface", "eni-nope"], "eni-nope".to_owned()),
    ];
    for (args, needle) in cases {
        let mut all = vec!["lint", "--json"];
        all.extend_from_slice(&args);
        let out = run_to_end(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        assert!(stderr.contains(&needle), "{args:?}: {needle:?} not in {stderr}");
    }
}
