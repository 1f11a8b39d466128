//! A bad snapshot is an error that names the JSON path and the problem, exits
//! non-zero, and attaches nothing — checked through the real binary on a real link.

use serde_json::{Value, json};
use sgmirror_e2e::{agent::run_to_end, lab::Lab};

fn base() -> Value {
    json!({
        "SecurityGroupRules": [{
            "SecurityGroupRuleId": "sgr-1", "GroupId": "sg-1", "IsEgress": false,
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIpv4": "10.0.0.0/8"
        }],
        "NetworkInterfaces": [{
            "NetworkInterfaceId": "eni-1", "MacAddress": "02:00:00:00:00:01",
            "Groups": [{"GroupId": "sg-1"}],
            "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.5", "Primary": true}]
        }]
    })
}

/// (what is broken, the document, the path the error must name)
fn cases() -> Vec<(&'static str, String, &'static str)> {
    let rule = |f: &dyn Fn(&mut Value)| {
        let mut v = base();
        f(&mut v["SecurityGroupRules"][0]);
        v.to_string()
    };
    let doc = |f: &dyn Fn(&mut Value)| {
        let mut v = base();
        f(&mut v);
        v.to_string()
    };
    vec![
        ("not JSON", "{\"SecurityGroupRules\": [".to_owned(), "$"),
        ("root is an array", "[]".to_owned(), "$"),
        (
            "no interfaces",
            doc(&|v| drop(v.as_object_mut().unwrap().remove("NetworkInterfaces"))),
            "$.NetworkInterfaces",
        ),
        ("empty interfaces", doc(&|v| v["NetworkInterfaces"] = json!([])), "$.NetworkInterfaces"),
        ("no rules at all", doc(&|v| drop(v.as_object_mut().unwrap().remove("SecurityGroupRules"))), "$"),
        ("bad CIDR", rule(&|r| r["CidrIpv4"] = json!("10.0.0.300/8")), "$.SecurityGroupRules[0].CidrIpv4"),
        (
            "prefix too long",
            rule(&|r| r["CidrIpv4"] = json!("10.0.0.0/33")),
            "$.SecurityGroupRules[0].CidrIpv4",
        ),
        (
            "IPv6 in CidrIpv4",
            rule(&|r| r["CidrIpv4"] = json!("2001:db8::/32")),
            "$.SecurityGroupRules[0].CidrIpv4",
        ),
        (
            "IPv4 in CidrIpv6",
            rule(&|r| {
                r.as_object_mut().unwrap().remove("CidrIpv4");
                r["CidrIpv6"] = json!("10.0.0.0/8");
            }),
            "$.SecurityGroupRules[0].CidrIpv6",
        ),
        ("FromPort > ToPort", rule(&|r| r["FromPort"] = json!(443)), "$.SecurityGroupRules[0]"),
        ("port too large", rule(&|r| r["ToPort"] = json!(70000)), "$.SecurityGroupRules[0].ToPort"),
        (
            "tcp without ports",
            rule(&|r| drop(r.as_object_mut().unwrap().remove("FromPort"))),
            "$.SecurityGroupRules[0]",
        ),
        (
            "icmp any type with a code",
            rule(&|r| {
                r["IpProtocol"] = json!("icmp");
                r["FromPort"] = json!(-1);
                r["ToPort"] = json!(4);
            }),
            "$.SecurityGroupRules[0]",
        ),
        ("unknown protocol", rule(&|r| r["IpProtocol"] = json!("gre")), "$.SecurityGroupRules[0].IpProtocol"),
        (
            "protocol number too large",
            rule(&|r| r["IpProtocol"] = json!("300")),
            "$.SecurityGroupRules[0].IpProtocol",
        ),
        (
            "no peer",
            rule(&|r| drop(r.as_object_mut().unwrap().remove("CidrIpv4"))),
            "$.SecurityGroupRules[0]",
        ),
        ("two peers", rule(&|r| r["PrefixListId"] = json!("pl-1")), "$.SecurityGroupRules[0]"),
        ("IsEgress not a bool", rule(&|r| r["IsEgress"] = json!("no")), "$.SecurityGroupRules[0].IsEgress"),
        ("FromPort not a number", rule(&|r| r["FromPort"] = json!("22")), "$.SecurityGroupRules[0].FromPort"),
        ("GroupId not a string", rule(&|r| r["GroupId"] = json!(7)), "$.SecurityGroupRules[0].GroupId"),
        (
            "bad private address",
            doc(&|v| {
                v["NetworkInterfaces"][0]["PrivateIpAddresses"][0]["PrivateIpAddress"] = json!("10.0.0.999")
            }),
            "$.NetworkInterfaces[0].PrivateIpAddresses[0].PrivateIpAddress",
        ),
        (
            "bad prefix-list entry",
            doc(&|v| v["PrefixLists"] = json!([{"PrefixListId": "pl-1", "Entries": [{"Cidr": "nope"}]}])),
            "$.PrefixLists[0].Entries[0].Cidr",
        ),
        ("negative tcp port", rule(&|r| r["FromPort"] = json!(-5)), "$.SecurityGroupRules[0].FromPort"),
        (
            "IPv6 in IpRanges",
            doc(&|v| {
                v.as_object_mut().unwrap().remove("SecurityGroupRules");
                v["SecurityGroups"] = json!([{"GroupId": "sg-1", "IpPermissions": [{
                    "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                    "IpRanges": [{"CidrIp": "2001:db8::/32"}]}]}]);
            }),
            "$.SecurityGroups[0].IpPermissions[0].IpRanges[0].CidrIp",
        ),
    ]
}

#[test]
fn every_bad_snapshot_is_refused_with_its_path_and_nothing_is_attached() {
    let lab = Lab::new(&["198.18.42.1/24"], &["198.18.42.2/24"]);
    let dir = std::env::temp_dir().join(format!("sgm-bad-{}", sgmirror_e2e::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let bind = format!("{}=eni-1", lab.host_link);
    let cases = cases();
    assert!(cases.len() >= 20);
    for (what, text, path) in cases {
        let file = dir.join("bad.json");
        std::fs::write(&file, &text).unwrap();
        let out = run_to_end(&[
            "run",
            "--config",
            "/dev/null",
            "--snapshot",
            file.to_str().unwrap(),
            "--bind",
            &bind,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted\n{stderr}");
        assert!(out.stdout.is_empty(), "{what}: wrote to stdout");
        assert!(
            stderr.contains(&format!("{path}:"))
                || stderr.contains(&format!("{path}."))
                || stderr.contains(&format!("{path}[")),
            "{what}: the error does not name {path}:\n{stderr}"
        );
        assert!(!lab.host_has_xdp(), "{what}: something was attached");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
