use serde_json::{Value, json};

use super::*;
use crate::snapshot;

const WEB: &str = include_str!("../../../../examples/web-server.json");
const GROUP: &str = "sg-0a1b2c3d4e5f6073a";
const ENI: &str = "eni-0a1b2c3d4e5f6075c";
const RDP: &str = "sgr-0a1b2c3d4e5f60805";

fn web() -> Value {
    serde_json::from_str(WEB).unwrap()
}

/// An inbound (or outbound) rule of the web server's group; `peer` is one of the peer
/// keys of `SecurityGroupRules` with its value.
fn rule(id: &str, egress: bool, proto: &str, from: i32, to: i32, peer: (&str, Value)) -> Value {
    let mut r = json!({
        "SecurityGroupRuleId": id, "GroupId": GROUP, "GroupOwnerId": "111122223333",
        "IsEgress": egress, "IpProtocol": proto, "FromPort": from, "ToPort": to,
    });
    r[peer.0] = peer.1;
    r
}

fn v4(cidr: &str) -> (&'static str, Value) {
    ("CidrIpv4", json!(cidr))
}

fn v6(cidr: &str) -> (&'static str, Value) {
    ("CidrIpv6", json!(cidr))
}

fn with_rules(mut doc: Value, rules: &[Value]) -> Value {
    doc["SecurityGroupRules"].as_array_mut().unwrap().extend(rules.iter().cloned());
    doc
}

fn report(doc: &Value, options: &Options<'_>) -> Report {
    let snap = snapshot::parse(&doc.to_string()).unwrap();
    lint(&snap, options).unwrap()
}

fn findings(doc: &Value) -> Vec<Finding> {
    report(doc, &Options::default()).findings
}

/// (kind, rule) of each finding, in report order.
fn summary(findings: &[Finding]) -> Vec<(Kind, &str)> {
    findings.iter().map(|f| (f.kind, f.rule.as_str())).collect()
}

#[test]
fn the_web_server_example_is_clean() {
    let r = report(&web(), &Options::default());
    assert_eq!(r.findings, []);
    assert_eq!(r.warnings, []);
}

#[test]
fn rdp_from_the_world_is_one_high_finding() {
    let mut doc = web();
    doc["SecurityGroupRules"][4]["CidrIpv4"] = json!("0.0.0.0/0");
    let found = findings(&doc);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!((f.severity, f.kind, f.rule.as_str()), (Severity::High, Kind::WorldOpenSensitivePort, RDP));
    assert_eq!((f.protocol.as_str(), f.from, f.to), ("tcp", Some(3389), Some(3389)));
    assert_eq!((f.source.as_str(), f.source_kind), ("0.0.0.0/0", "cidr"));
    assert_eq!(f.sensitive_ports, [3389]);
    assert_eq!((f.group_id.as_str(), f.direction), (GROUP, Direction::Ingress));
    assert_eq!(f.interfaces, [ENI]);
    assert_eq!(f.path, "$.SecurityGroupRules[4]");
    assert!(f.message.contains("RDP (3389) is open to the whole internet (0.0.0.0/0)"), "{}", f.message);
    assert_eq!(f.ports_text(), "3389");
}

#[test]
fn ipv6_world_and_tcp_ranges_list_every_sensitive_port_they_cover() {
    let doc = with_rules(
        web(),
        &[
            rule("sgr-ssh6", false, "tcp", 22, 22, v6("::/0")),
            rule("sgr-range", false, "tcp", 20, 25, v6("::/0")),
            rule("sgr-udp", false, "udp", 22, 22, v4("0.0.0.0/0")),
            rule("sgr-half", false, "tcp", 22, 22, v4("0.0.0.0/1")),
        ],
    );
    let found = findings(&doc);
    assert_eq!(
        summary(&found),
        [(Kind::WorldOpenSensitivePort, "sgr-range"), (Kind::WorldOpenSensitivePort, "sgr-ssh6")]
    );
    assert_eq!(found[0].sensitive_ports, [20, 21, 22, 23]);
    assert!(found[0].message.starts_with("FTP data (20), FTP (21), SSH (22), Telnet (23) are open"));
    assert_eq!((found[1].source.as_str(), found[1].source_kind), ("::/0", "cidr-ipv6"));
}

#[test]
fn a_prefix_list_with_a_world_entry_counts_as_the_world() {
    let mut doc = with_rules(
        web(),
        &[
            rule("sgr-pg", false, "tcp", 5432, 5432, ("PrefixListId", json!("pl-world"))),
            rule("sgr-ssh", false, "tcp", 22, 22, ("PrefixListId", json!("pl-office"))),
        ],
    );
    doc["PrefixLists"] = json!([
        {"PrefixListId": "pl-world", "Entries": [{"Cidr": "10.0.0.0/8"}, {"Cidr": "0.0.0.0/0"}]},
        {"PrefixListId": "pl-office", "Entries": [{"Cidr": "198.51.100.0/24"}]},
    ]);
    let found = findings(&doc);
    assert_eq!(summary(&found), [(Kind::WorldOpenSensitivePort, "sgr-pg")]);
    assert_eq!((found[0].source.as_str(), found[0].source_kind), ("pl-world", "prefix-list"));
    assert!(found[0].message.contains("prefix list pl-world contains 0.0.0.0/0"), "{}", found[0].message);
}

#[test]
fn every_protocol_from_the_world_is_open_and_wide() {
    let doc = with_rules(web(), &[rule("sgr-all", false, "-1", -1, -1, v4("0.0.0.0/0"))]);
    let found = findings(&doc);
    assert_eq!(
        summary(&found),
        [(Kind::WorldOpenSensitivePort, "sgr-all"), (Kind::WidePortRange, "sgr-all")]
    );
    let open = &found[0];
    assert_eq!((open.protocol.as_str(), open.from, open.to), ("-1", Some(0), Some(65535)));
    assert_eq!(open.sensitive_ports.len(), SENSITIVE_PORTS.len());
    assert!(open.message.starts_with("every protocol and port, including FTP data (20)"), "{}", open.message);
    assert_eq!(found[1].severity, Severity::Medium);
}

#[test]
fn a_host_address_with_a_short_prefix_is_high() {
    let doc = with_rules(
        web(),
        &[
            rule("sgr-https", false, "tcp", 443, 443, v4("203.0.113.5/0")),
            rule("sgr-ssh", false, "tcp", 22, 22, v4("203.0.113.5/0")),
            rule("sgr-eight", true, "udp", 53, 53, v4("10.1.2.3/8")),
            rule("sgr-v6", false, "tcp", 80, 80, v6("2001:db8::1/64")),
        ],
    );
    let r = report(&doc, &Options::default());
    assert_eq!(
        summary(&r.findings),
        [
            (Kind::HostAddressShortPrefix, "sgr-eight"),
            (Kind::HostAddressShortPrefix, "sgr-https"),
            (Kind::WorldOpenSensitivePort, "sgr-ssh"),
            (Kind::HostAddressShortPrefix, "sgr-ssh"),
            (Kind::HostAddressShortPrefix, "sgr-v6"),
        ]
    );
    let f = &r.findings;
    assert_eq!(f[0].source, "10.1.2.3/8");
    assert!(f[0].message.contains("AWS reads it as 10.0.0.0/8 (16777216 addresses)"), "{}", f[0].message);
    assert!(f[1].message.contains("(every IPv4 address), not the host 203.0.113.5"), "{}", f[1].message);
    assert!(f[1].message.contains("write 203.0.113.5/32"), "{}", f[1].message);
    assert!(f[2].message.contains("(203.0.113.5/0 is read as 0.0.0.0/0)"), "{}", f[3].message);
    assert!(f[4].message.contains("2^64 addresses"), "{}", f[4].message);
    // The parser's host-bits warnings are said by the findings, not repeated.
    assert_eq!(r.warnings, []);
}

#[test]
fn host_bits_in_security_groups_and_prefix_lists_are_found_too() {
    let mut doc = web();
    doc["SecurityGroups"] = json!([{"GroupId": "sg-extra", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 8443, "ToPort": 8443,
         "IpRanges": [{"CidrIp": "192.0.2.0/24"}, {"CidrIp": "192.0.2.9/16"}],
         "PrefixListIds": [{"PrefixListId": "pl-sloppy"}]}]}]);
    doc["PrefixLists"] = json!([{"PrefixListId": "pl-sloppy", "Entries": [{"Cidr": "198.51.100.7/24"}]}]);
    doc["NetworkInterfaces"][0]["Groups"].as_array_mut().unwrap().push(json!({"GroupId": "sg-extra"}));
    let r = report(&doc, &Options::default());
    assert_eq!(
        summary(&r.findings),
        [
            (Kind::HostAddressShortPrefix, "sg-extra/ingress/0/1"),
            (Kind::HostAddressShortPrefix, "sg-extra/ingress/0/2")
        ]
    );
    assert_eq!(r.findings[0].path, "$.SecurityGroups[0].IpPermissions[0].IpRanges[1]");
    assert!(r.findings[1].message.starts_with("prefix list pl-sloppy: 198.51.100.7/24 has host bits"));
    assert_eq!(r.warnings, []);
}

#[test]
fn wide_ranges_follow_the_documented_thresholds() {
    let doc = with_rules(
        web(),
        &[
            rule("sgr-a-high", false, "tcp", 1024, 65535, v4("10.0.0.0/16")),
            rule("sgr-b-all-private", false, "tcp", 0, 65535, v4("10.0.0.0/16")),
            rule("sgr-c-all-udp-world", false, "udp", 0, 65535, v6("::/0")),
            rule("sgr-d-1000-world", false, "udp", 8000, 8999, v4("0.0.0.0/0")),
            rule("sgr-e-1001", false, "udp", 8000, 9000, v4("10.0.0.0/8")),
            rule("sgr-f-egress", true, "tcp", 1024, 65535, v4("10.0.0.0/8")),
            rule(
                "sgr-g-all-private",
                false,
                "-1",
                -1,
                -1,
                ("ReferencedGroupInfo", json!({"GroupId": GROUP})),
            ),
        ],
    );
    let found = findings(&doc);
    assert_eq!(
        summary(&found),
        [
            (Kind::WidePortRange, "sgr-a-high"),
            (Kind::WidePortRange, "sgr-c-all-udp-world"),
            (Kind::WidePortRange, "sgr-e-1001"),
        ]
    );
    assert!(found[0].message.starts_with("64512 tcp ports are open to 10.0.0.0/16"), "{}", found[0].message);
    assert_eq!(found[0].ports_text(), "1024-65535");
    assert!(found[1].message.starts_with("every udp port is open to the whole internet (::/0)"));
    assert!(found.iter().all(|f| f.severity == Severity::Medium));
}

#[test]
fn unresolvable_groups_and_prefix_lists_reuse_the_resolver_reason() {
    let doc = with_rules(
        web(),
        &[
            rule(
                "sgr-gone-group",
                false,
                "icmp",
                8,
                -1,
                ("ReferencedGroupInfo", json!({"GroupId": "sg-gone"})),
            ),
            rule("sgr-gone-list", true, "tcp", 443, 443, ("PrefixListId", json!("pl-gone"))),
            // Its own group: known, so members or not, not unresolvable.
            rule("sgr-self", false, "tcp", 8080, 8080, ("ReferencedGroupInfo", json!({"GroupId": GROUP}))),
        ],
    );
    let r = report(&doc, &Options::default());
    assert_eq!(
        summary(&r.findings),
        [(Kind::UnresolvableReference, "sgr-gone-group"), (Kind::UnresolvableReference, "sgr-gone-list")]
    );
    let (group, list) = (&r.findings[0], &r.findings[1]);
    assert!(
        group.message.contains("references group sg-gone, which is not in the snapshot"),
        "{}",
        group.message
    );
    assert!(group.message.ends_with("remove the rule if it is stale"));
    assert_eq!((group.protocol.as_str(), group.icmp_type, group.icmp_code), ("icmp", Some(8), Some(-1)));
    assert_eq!((group.from, group.to), (None, None));
    assert_eq!(group.ports_text(), "8:-1");
    assert_eq!((group.source.as_str(), group.source_kind), ("sg-gone", "group"));
    assert!(list.message.contains("prefix list pl-gone, which is not in PrefixLists"), "{}", list.message);
    assert_eq!(list.direction, Direction::Egress);
    assert_eq!(list.severity, Severity::Medium);
    // Said as findings, not again as warnings.
    assert_eq!(r.warnings, []);

    let json = serde_json::to_value(group).unwrap();
    assert_eq!(json["kind"], "unresolvable-reference");
    assert_eq!(json["severity"], "medium");
    assert_eq!(json["direction"], "ingress");
    assert!(json.get("from").is_none() && json.get("sensitive_ports").is_none());
}

#[test]
fn unused_rules_come_from_the_hits() {
    let hits = Hits::parse(
        &json!({"interfaces": [
            {"interface_id": ENI, "link": "eth0", "counters": [],
             "rule_hits": [{"rule": "sgr-0a1b2c3d4e5f60801", "packets": 5},
                           {"rule": "sgr-0a1b2c3d4e5f60803", "packets": 0},
                           {"rule": RDP, "packets": 0},
                           {"rule": "sgr-not-in-snapshot", "packets": 0}]},
            {"interface_id": "eni-elsewhere", "rule_hits": [{"rule": RDP, "packets": 3}]}
        ]})
        .to_string(),
    )
    .unwrap();
    let r = report(&web(), &Options { interfaces: &[], hits: Some(&hits) });
    assert_eq!(summary(&r.findings), [(Kind::UnusedRule, "sgr-0a1b2c3d4e5f60803")]);
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Low);
    assert!(f.message.starts_with(&format!("no packet matched this rule on {ENI} ")), "{}", f.message);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].message.contains("eni-elsewhere is not in the snapshot"));

    let other =
        Hits::parse(r#"{"interfaces": [{"interface_id": "x", "rule_hits": [{"rule": "r", "packets": 0}]}]}"#)
            .unwrap();
    let r = report(&web(), &Options { interfaces: &[], hits: Some(&other) });
    assert_eq!(r.findings, []);
    assert!(r.warnings.iter().any(|w| w.message.contains("none of the linted rules")), "{:?}", r.warnings);
}

#[test]
fn bad_hits_documents_name_the_path() {
    let err = Hits::parse(
        r#"{"interfaces": [{"interface_id": "e", "rule_hits": [{"rule": "r", "packets": -1}]}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.path, "$.interfaces[0].rule_hits[0].packets");
    assert!(err.to_string().contains("--summary-json"), "{err}");
    assert_eq!(Hits::parse("{}").unwrap_err().path, "$");
    assert!(Hits::parse("not json").is_err());
}

#[test]
fn a_rule_shared_by_interfaces_is_reported_once() {
    let doc = json!({
        "SecurityGroupRules": [{"SecurityGroupRuleId": "sgr-ssh", "GroupId": "sg-1", "IsEgress": false,
                                "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIpv4": "0.0.0.0/0"}],
        "NetworkInterfaces": [
            {"NetworkInterfaceId": "eni-a", "Groups": [{"GroupId": "sg-1"}]},
            {"NetworkInterfaceId": "eni-b", "Groups": [{"GroupId": "sg-1"}]},
            {"NetworkInterfaceId": "eni-c", "Groups": []}
        ]
    });
    let r = report(&doc, &Options::default());
    assert_eq!(summary(&r.findings), [(Kind::WorldOpenSensitivePort, "sgr-ssh")]);
    assert_eq!(r.findings[0].interfaces, ["eni-a", "eni-b"]);
    // eni-c has no groups: the resolver's interface warning is passed on.
    assert!(
        r.warnings.iter().any(|w| w.message.contains("eni-c has no security groups")),
        "{:?}",
        r.warnings
    );

    let only_b = ["eni-b".to_owned(), "eni-b".to_owned()];
    let r = report(&doc, &Options { interfaces: &only_b, hits: None });
    assert_eq!(r.findings[0].interfaces, ["eni-b"]);
    let only_c = ["eni-c".to_owned()];
    assert_eq!(report(&doc, &Options { interfaces: &only_c, hits: None }).findings, []);
}

#[test]
fn findings_sort_by_severity_then_rule() {
    let hits = Hits::parse(
        &json!({"interfaces": [{"interface_id": ENI, "rule_hits": [
        {"rule": "sgr-a", "packets": 0}]}]})
        .to_string(),
    )
    .unwrap();
    let doc = with_rules(
        web(),
        &[
            rule("sgr-a", false, "tcp", 80, 80, v4("10.0.0.0/8")),
            rule("sgr-b", false, "tcp", 2000, 9000, v4("10.0.0.0/8")),
            rule("sgr-c", false, "tcp", 3306, 3306, v4("0.0.0.0/0")),
        ],
    );
    let r = report(&doc, &Options { interfaces: &[], hits: Some(&hits) });
    let order: Vec<(Severity, &str)> = r.findings.iter().map(|f| (f.severity, f.rule.as_str())).collect();
    assert_eq!(order, [(Severity::High, "sgr-c"), (Severity::Medium, "sgr-b"), (Severity::Low, "sgr-a")]);
}

#[test]
fn an_unknown_interface_is_an_error() {
    let snap = snapshot::parse(WEB).unwrap();
    let asked = ["eni-nope".to_owned()];
    let err = lint(&snap, &Options { interfaces: &asked, hits: None }).unwrap_err();
    assert_eq!(err, LintError::Resolve(ResolveError::UnknownInterface("eni-nope".into())));
}

#[test]
fn severities_compare_most_severe_first() {
    assert!(Severity::High.at_least(Severity::Medium));
    assert!(Severity::Medium.at_least(Severity::Medium));
    assert!(!Severity::Low.at_least(Severity::Medium));
    for kind in [
        Kind::WorldOpenSensitivePort,
        Kind::HostAddressShortPrefix,
        Kind::WidePortRange,
        Kind::UnresolvableReference,
        Kind::UnusedRule,
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        assert_eq!(serde_json::to_value(kind.severity()).unwrap(), kind.severity().as_str());
    }
}
