//! Resolution of one interface's policy: union of groups, prefix lists, referenced
//! groups, unresolvable peers, exempt addresses — and the shipped examples.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Value, json};
use sgmirror_policy::exempt::FIXED_ADDRESSES;
use sgmirror_policy::model::{
    Direction, IcmpMatch, InterfacePolicy, PeerSource, PortRange, Protocol, ResolvedRule, Warning,
};
use sgmirror_policy::resolve::{ResolveError, resolve_interface};
use sgmirror_policy::snapshot::{self, Snapshot};

fn snap(doc: &Value) -> Snapshot {
    let snap = snapshot::parse(&doc.to_string()).expect("valid snapshot");
    assert!(snap.warnings.is_empty(), "parse warnings: {:?}", snap.warnings);
    snap
}

fn resolve(doc: &Value, eni: &str) -> (InterfacePolicy, Vec<Warning>) {
    resolve_interface(&snap(doc), eni).expect("interface resolves")
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn ids(rules: &[ResolvedRule]) -> Vec<&str> {
    rules.iter().map(|r| r.id.as_str()).collect()
}

fn rule<'a>(policy: &'a InterfacePolicy, id: &str) -> &'a ResolvedRule {
    policy
        .ingress
        .iter()
        .chain(&policy.egress)
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id} in {:?} / {:?}", ids(&policy.ingress), ids(&policy.egress)))
}

fn sgr(id: &str, group: &str, egress: bool, peer: Value) -> Value {
    let mut rule = json!({"SecurityGroupRuleId": id, "GroupId": group, "IsEgress": egress,
                          "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443});
    rule.as_object_mut().unwrap().extend(peer.as_object().unwrap().clone());
    rule
}

fn eni(id: &str, groups: &[&str], v4: &[&str], v6: &[&str]) -> Value {
    json!({
        "NetworkInterfaceId": id,
        "Groups": groups.iter().map(|g| json!({"GroupId": g})).collect::<Vec<_>>(),
        "PrivateIpAddress": v4.first(),
        "PrivateIpAddresses": v4.iter().enumerate()
            .map(|(i, a)| json!({"PrivateIpAddress": a, "Primary": i == 0}))
            .collect::<Vec<_>>(),
        "Ipv6Addresses": v6.iter().map(|a| json!({"Ipv6Address": a})).collect::<Vec<_>>(),
    })
}

#[test]
fn unknown_interface() {
    let doc = json!({"SecurityGroupRules": [], "NetworkInterfaces": [eni("eni-1", &[], &[], &[])]});
    let err = resolve_interface(&snap(&doc), "eni-9").unwrap_err();
    assert_eq!(err, ResolveError::UnknownInterface("eni-9".into()));
}

#[test]
fn union_of_groups_in_interface_order_then_document_order() {
    let doc = json!({
        "SecurityGroupRules": [
            sgr("sgr-a1", "sg-a", false, json!({"CidrIpv4": "10.0.0.0/8"})),
            sgr("sgr-b1", "sg-b", false, json!({"CidrIpv4": "192.0.2.0/24"})),
            sgr("sgr-a2", "sg-a", true, json!({"CidrIpv6": "::/0"})),
            sgr("sgr-c1", "sg-c", false, json!({"CidrIpv4": "0.0.0.0/0"})),
            sgr("sgr-a3", "sg-a", false, json!({"CidrIpv6": "2001:db8::/32"})),
            sgr("sgr-b2", "sg-b", true, json!({"CidrIpv4": "0.0.0.0/0"})),
        ],
        "SecurityGroups": [
            {"GroupId": "sg-d", "IpPermissions": [
                {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
                 "IpRanges": [{"CidrIp": "10.1.0.0/16"}, {"CidrIp": "10.2.0.0/16"}]}]}
        ],
        "NetworkInterfaces": [
            {"NetworkInterfaceId": "eni-1", "MacAddress": "0A:BB:CC:DD:EE:FF",
             "Groups": [{"GroupId": "sg-b"}, {"GroupId": "sg-d"}, {"GroupId": "sg-a"}],
             "PrivateIpAddress": "10.0.0.5",
             "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.5", "Primary": true},
                                    {"PrivateIpAddress": "10.0.0.6", "Primary": false}],
             "Ipv6Addresses": [{"Ipv6Address": "2001:db8::5"}]}
        ]
    });
    let (policy, warnings) = resolve(&doc, "eni-1");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(policy.interface_id, "eni-1");
    assert_eq!(policy.mac.as_deref(), Some("0a:bb:cc:dd:ee:ff"));
    assert_eq!(policy.groups, ["sg-b", "sg-d", "sg-a"]);
    assert_eq!(ids(&policy.ingress), ["sgr-b1", "sg-d/ingress/0/0", "sg-d/ingress/0/1", "sgr-a1", "sgr-a3"]);
    assert_eq!(ids(&policy.egress), ["sgr-b2", "sgr-a2"]);
    assert!(policy.ingress.iter().all(|r| r.direction == Direction::Ingress));
    assert!(policy.egress.iter().all(|r| r.direction == Direction::Egress));
    // sg-c is not on the interface.
    assert!(!ids(&policy.ingress).contains(&"sgr-c1"));
    let addresses: Vec<IpAddr> =
        ["10.0.0.5", "10.0.0.6", "2001:db8::5"].iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(policy.addresses, addresses);
    let r = rule(&policy, "sg-d/ingress/0/1");
    assert_eq!(r.group_id, "sg-d");
    assert_eq!(r.protocol, Protocol::Udp(PortRange { from: 53, to: 53 }));
    assert_eq!(r.source, PeerSource::Cidr("10.2.0.0/16".into()));
    assert_eq!(r.peers, nets(&["10.2.0.0/16"]));
    assert_eq!(rule(&policy, "sgr-a2").peers, nets(&["::/0"]));
}

#[test]
fn prefix_lists_expand_to_their_entries() {
    let doc = json!({
        "SecurityGroupRules": [
            sgr("sgr-1", "sg-1", false, json!({"PrefixListId": "pl-v4"})),
            sgr("sgr-2", "sg-1", true, json!({"PrefixListId": "pl-v6"})),
        ],
        "SecurityGroups": [
            {"GroupId": "sg-2", "IpPermissions": [
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                 "PrefixListIds": [{"PrefixListId": "pl-v4"}]}]}
        ],
        "NetworkInterfaces": [eni("eni-1", &["sg-1", "sg-2"], &["10.0.0.5"], &[])],
        "PrefixLists": [
            {"PrefixListId": "pl-v4", "AddressFamily": "IPv4", "Version": 4,
             "Entries": [{"Cidr": "198.51.100.0/24"}, {"Cidr": "192.0.2.0/25"},
                         {"Cidr": "198.51.100.0/24", "Description": "again"}, {"Cidr": "10.0.0.0/8"}]},
            {"PrefixListId": "pl-v6", "AddressFamily": "IPv6",
             "Entries": [{"Cidr": "2001:db8:100::/48"}, {"Cidr": "2001:db8::/32"}]}
        ]
    });
    let (policy, warnings) = resolve(&doc, "eni-1");
    assert!(warnings.is_empty(), "{warnings:?}");
    let r = rule(&policy, "sgr-1");
    assert_eq!(r.source, PeerSource::PrefixList("pl-v4".into()));
    // Sorted and deduplicated.
    assert_eq!(r.peers, nets(&["10.0.0.0/8", "192.0.2.0/25", "198.51.100.0/24"]));
    assert_eq!(rule(&policy, "sgr-2").peers, nets(&["2001:db8::/32", "2001:db8:100::/48"]));
    assert_eq!(rule(&policy, "sg-2/ingress/0/0").peers, r.peers);
}

#[test]
fn self_reference_expands_to_every_members_private_addresses() {
    let mut member = eni("eni-2", &["sg-other", "sg-self"], &["10.0.1.7", "10.0.1.8"], &["2001:db8:1::7"]);
    // Public and Elastic IPs are never members' addresses.
    member["Association"] = json!({"PublicIp": "192.0.2.99", "IpOwnerId": "amazon"});
    member["PrivateIpAddresses"][0]["Association"] = json!({"PublicIp": "192.0.2.99"});
    member["PrivateIpAddresses"][1]["Association"] = json!({"PublicIp": "192.0.2.100"});
    let doc = json!({
        "SecurityGroups": [
            {"GroupId": "sg-self", "GroupName": "default",
             "IpPermissions": [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-self"}]}],
             "IpPermissionsEgress": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]},
            {"GroupId": "sg-other"}
        ],
        "NetworkInterfaces": [
            eni("eni-1", &["sg-self"], &["10.0.0.5", "10.0.0.6"], &["2001:db8::5"]),
            member,
            eni("eni-3", &["sg-other"], &["10.0.2.9"], &["2001:db8:2::9"]),
            eni("eni-4", &["sg-self"], &["10.0.3.4"], &[]),
        ]
    });
    let (policy, warnings) = resolve(&doc, "eni-1");
    assert!(warnings.is_empty(), "{warnings:?}");
    let r = rule(&policy, "sg-self/ingress/0/0");
    assert_eq!(r.protocol, Protocol::All);
    assert_eq!(r.source, PeerSource::Group("sg-self".into()));
    assert_eq!(
        r.peers,
        nets(&[
            "10.0.0.5/32",
            "10.0.0.6/32",
            "10.0.1.7/32",
            "10.0.1.8/32",
            "10.0.3.4/32",
            "2001:db8::5/128",
            "2001:db8:1::7/128",
        ])
    );
    let public: IpNet = "192.0.2.99/32".parse().unwrap();
    assert!(!r.peers.contains(&public));
    assert_eq!(ids(&policy.egress), ["sg-self/egress/0/0"]);
}

#[test]
fn a_reference_to_another_group_uses_its_members_only() {
    let doc = json!({
        "SecurityGroupRules": [
            sgr("sgr-1", "sg-app", false, json!({"ReferencedGroupInfo": {"GroupId": "sg-lb", "UserId": "1"}})),
        ],
        "NetworkInterfaces": [
            eni("eni-app", &["sg-app"], &["10.0.0.5"], &[]),
            eni("eni-lb1", &["sg-lb"], &["10.0.1.10"], &["2001:db8::10"]),
            eni("eni-lb2", &["sg-lb"], &["10.0.2.10"], &[]),
        ]
    });
    let (policy, warnings) = resolve(&doc, "eni-app");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(rule(&policy, "sgr-1").peers, nets(&["10.0.1.10/32", "10.0.2.10/32", "2001:db8::10/128"]));
}

#[test]
fn unresolvable_references_allow_nothing_and_warn() {
    let doc = json!({
        "SecurityGroupRules": [
            sgr("sgr-gone", "sg-1", false, json!({"ReferencedGroupInfo": {"GroupId": "sg-deleted"}})),
            sgr("sgr-known", "sg-1", false, json!({"ReferencedGroupInfo": {"GroupId": "sg-empty"}})),
            sgr("sgr-peer", "sg-1", false, json!({"ReferencedGroupInfo": {
                "GroupId": "sg-peer", "UserId": "111122223333", "VpcId": "vpc-peer",
                "VpcPeeringConnectionId": "pcx-1", "PeeringStatus": "active"}})),
            sgr("sgr-acct", "sg-1", false, json!({"ReferencedGroupInfo": {
                "GroupId": "sg-foreign", "UserId": "444455556666"}})),
            sgr("sgr-stale", "sg-1", false, json!({"ReferencedGroupInfo": {
                "GroupId": "sg-member", "VpcPeeringConnectionId": "pcx-2", "PeeringStatus": "deleted"}})),
            sgr("sgr-pl", "sg-1", true, json!({"PrefixListId": "pl-missing"})),
        ],
        "SecurityGroups": [
            {"GroupId": "sg-empty", "GroupName": "exists but has no members"},
            {"GroupId": "sg-quiet", "GroupName": "exists but has no rules"},
            {"GroupId": "sg-2", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
                "PrefixListIds": [{"PrefixListId": "pl-missing-too"}],
                "UserIdGroupPairs": [{"GroupId": "sg-nowhere"}]}]}
        ],
        "NetworkInterfaces": [
            {"NetworkInterfaceId": "eni-1",
             "Groups": [{"GroupId": "sg-1"}, {"GroupId": "sg-2"}, {"GroupId": "sg-norules"}, {"GroupId": "sg-quiet"}],
             "PrivateIpAddress": "10.0.0.5"},
            eni("eni-2", &["sg-member"], &["10.0.9.9"], &[]),
        ]
    });
    // GroupOwnerId on the rules lets the resolver tell another account apart.
    let mut doc = doc;
    for r in doc["SecurityGroupRules"].as_array_mut().unwrap() {
        r["GroupOwnerId"] = json!("111122223333");
    }
    let (policy, warnings) = resolve(&doc, "eni-1");
    for id in [
        "sgr-gone",
        "sgr-known",
        "sgr-peer",
        "sgr-acct",
        "sgr-stale",
        "sgr-pl",
        "sg-2/ingress/0/0",
        "sg-2/ingress/0/1",
    ] {
        assert!(rule(&policy, id).peers.is_empty(), "{id} allows something");
    }
    let find = |path: &str| -> &Warning {
        let found: Vec<&Warning> = warnings.iter().filter(|w| w.path == path).collect();
        assert_eq!(found.len(), 1, "warnings at {path}: {warnings:#?}");
        found[0]
    };
    assert!(find("$.SecurityGroupRules[0]").message.contains("sg-deleted, which is not in the snapshot"));
    assert!(find("$.SecurityGroupRules[2]").message.contains("across peering connection pcx-1"));
    assert!(find("$.SecurityGroupRules[3]").message.contains("of account 444455556666"));
    assert!(find("$.SecurityGroupRules[4]").message.contains("pcx-2, which is deleted, not active"));
    assert!(
        find("$.SecurityGroupRules[5]")
            .message
            .contains("prefix list pl-missing, which is not in PrefixLists")
    );
    assert!(find("$.SecurityGroups[2].IpPermissions[0].PrefixListIds[0]").message.contains("pl-missing-too"));
    assert!(find("$.SecurityGroups[2].IpPermissions[0].UserIdGroupPairs[0]").message.contains("sg-nowhere"));
    let group = find("$.NetworkInterfaces[0].Groups[2]");
    assert_eq!(
        group.message,
        "group sg-norules of eni-1 has no rules in the snapshot; it allows nothing beyond the other groups"
    );
    assert!(warnings.iter().all(|w| w.message.contains("allows nothing")), "{warnings:#?}");
    // A group that exists with no members (sgr-known), and one that exists with no rules
    // (sg-quiet on the interface), are not warnings: they are what AWS has too.
    assert_eq!(warnings.len(), 8, "{warnings:#?}");
}

#[test]
fn exempt_addresses_include_the_vpc_resolver_and_the_subnet_router() {
    let mut interface = eni("eni-1", &["sg-1"], &["10.20.1.5"], &[]);
    interface["VpcId"] = json!("vpc-1");
    interface["SubnetId"] = json!("subnet-1");
    let mut doc = json!({
        "SecurityGroupRules": [],
        "NetworkInterfaces": [interface],
        "Vpcs": [{"VpcId": "vpc-0", "CidrBlock": "172.16.0.0/16"},
                 {"VpcId": "vpc-1", "CidrBlock": "10.20.0.0/16",
                  "CidrBlockAssociationSet": [{"CidrBlock": "10.20.0.0/16"}, {"CidrBlock": "100.64.0.0/16"}]}],
        "Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.20.1.0/24"}]
    });
    let (policy, warnings) = resolve(&doc, "eni-1");
    // sg-1 has no rules: the only warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let mut want: Vec<IpAddr> = FIXED_ADDRESSES.to_vec();
    want.push("10.20.0.2".parse().unwrap());
    want.push("10.20.1.1".parse().unwrap());
    want.sort();
    assert_eq!(policy.exempt, want);
    assert!(policy.exempt.windows(2).all(|w| w[0] < w[1]));

    // The primary block is CidrBlock; without it, the first associated block.
    doc["Vpcs"][1].as_object_mut().unwrap().remove("CidrBlock");
    doc["Vpcs"][1]["CidrBlockAssociationSet"] =
        json!([{"CidrBlock": "100.64.0.0/16"}, {"CidrBlock": "10.20.0.0/16"}]);
    let (policy, _) = resolve(&doc, "eni-1");
    assert!(policy.exempt.contains(&"100.64.0.2".parse().unwrap()));
    assert!(!policy.exempt.contains(&"10.20.0.2".parse().unwrap()));

    // Without Vpcs and Subnets: the fixed addresses only, and no warning about them.
    let obj = doc.as_object_mut().unwrap();
    obj.remove("Vpcs");
    obj.remove("Subnets");
    let (policy, warnings) = resolve(&doc, "eni-1");
    let mut fixed = FIXED_ADDRESSES.to_vec();
    fixed.sort();
    assert_eq!(policy.exempt, fixed);
    assert_eq!(warnings.len(), 1);

    // A VPC or subnet missing from non-empty lists is a warning (DNS would need a rule).
    doc["Vpcs"] = json!([{"VpcId": "vpc-other", "CidrBlock": "10.9.0.0/16"}]);
    doc["Subnets"] = json!([{"SubnetId": "subnet-other", "CidrBlock": "10.9.0.0/24"}]);
    let (policy, warnings) = resolve(&doc, "eni-1");
    assert_eq!(policy.exempt, fixed);
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.NetworkInterfaces[0].Groups[0]",
            "$.NetworkInterfaces[0].VpcId",
            "$.NetworkInterfaces[0].SubnetId"
        ]
    );
}

#[test]
fn an_interface_without_groups_warns() {
    let doc = json!({"SecurityGroups": [], "NetworkInterfaces": [eni("eni-1", &[], &["10.0.0.1"], &[])]});
    let (policy, warnings) = resolve(&doc, "eni-1");
    assert!(policy.ingress.is_empty() && policy.egress.is_empty());
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "$.NetworkInterfaces[0].Groups");
}

// ------------------------------------------------------------------------ examples

fn example(name: &str) -> Snapshot {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let snap = snapshot::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(snap.warnings.is_empty(), "{name}: {:?}", snap.warnings);
    assert!(snap.instance_id.is_some(), "{name} has no InstanceId");
    assert!(!snap.vpcs.is_empty() && !snap.subnets.is_empty(), "{name} lacks Vpcs/Subnets");
    // Every interface resolves without warnings and has a MAC.
    for eni in &snap.interfaces {
        let (policy, warnings) = resolve_interface(&snap, &eni.id).unwrap();
        assert!(warnings.is_empty(), "{name} {}: {warnings:#?}", eni.id);
        assert!(policy.mac.is_some(), "{name} {} has no MAC", eni.id);
        assert_eq!(policy.exempt.len(), FIXED_ADDRESSES.len() + 2, "{name} {}", eni.id);
    }
    snap
}

/// (ingress, egress) rule counts of an interface.
fn counts(snap: &Snapshot, eni: &str) -> (usize, usize) {
    let (policy, _) = resolve_interface(snap, eni).unwrap();
    (policy.ingress.len(), policy.egress.len())
}

#[test]
fn every_example_file_is_tested() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names, ["default-group.json", "multi-eni.json", "web-server.json"]);
}

#[test]
fn example_web_server() {
    let snap = example("web-server.json");
    let own = snap.own_interface_ids();
    assert_eq!(own.len(), 1);
    assert_eq!(snap.rules.len(), 8);
    assert_eq!(counts(&snap, &own[0]), (6, 2));
    let (policy, _) = resolve_interface(&snap, &own[0]).unwrap();
    let addrs: Vec<IpAddr> = ["10.0.1.10", "2001:db8:0:1::10"].iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(policy.addresses, addrs);
    let by_peer = |proto: Protocol, peer: &str| {
        policy.ingress.iter().any(|r| r.protocol == proto && r.peers == nets(&[peer]))
    };
    for port in [80, 443] {
        let tcp = Protocol::Tcp(PortRange { from: port, to: port });
        assert!(by_peer(tcp, "0.0.0.0/0") && by_peer(tcp, "::/0"), "tcp {port}");
    }
    assert!(by_peer(Protocol::Tcp(PortRange { from: 3389, to: 3389 }), "198.51.100.7/32"));
    assert!(by_peer(Protocol::Icmp(IcmpMatch::Type { icmp_type: 8 }), "203.0.113.0/24"));
    assert!(policy.egress.iter().all(|r| r.protocol == Protocol::All));
    let egress_peers: Vec<IpNet> = policy.egress.iter().flat_map(|r| r.peers.clone()).collect();
    assert_eq!(egress_peers, nets(&["0.0.0.0/0", "::/0"]));
    assert!(policy.exempt.contains(&"10.0.0.2".parse().unwrap()));
    assert!(policy.exempt.contains(&"10.0.1.1".parse().unwrap()));
}

#[test]
fn example_default_group() {
    let snap = example("default-group.json");
    assert_eq!(snap.groups.len(), 1);
    assert_eq!(snap.groups[0].group_name.as_deref(), Some("default"));
    assert_eq!(snap.interfaces.len(), 3);
    let own = snap.own_interface_ids();
    assert_eq!(own.len(), 1);
    assert_eq!(counts(&snap, &own[0]), (1, 2));
    let (policy, _) = resolve_interface(&snap, &own[0]).unwrap();
    let group = &snap.groups[0].group_id;
    let self_rule = &policy.ingress[0];
    assert_eq!(self_rule.id, format!("{group}/ingress/0/0"));
    assert_eq!(self_rule.protocol, Protocol::All);
    assert_eq!(self_rule.source, PeerSource::Group(group.clone()));
    // All three members, the secondary IPv4 and the IPv6 address included.
    assert_eq!(
        self_rule.peers,
        nets(&["10.1.0.10/32", "10.1.0.20/32", "10.1.0.21/32", "10.1.1.30/32", "2001:db8:1::20/128"])
    );
    assert_eq!(ids(&policy.egress), [format!("{group}/egress/0/0"), format!("{group}/egress/0/1")]);
}

#[test]
fn example_multi_eni() {
    let snap = example("multi-eni.json");
    let own = snap.own_interface_ids();
    assert_eq!(own.len(), 2);
    assert_eq!(snap.interfaces.len(), 4);
    assert_eq!(snap.prefix_lists.len(), 2);
    assert_eq!(snap.rules.len(), 12);
    assert_eq!(counts(&snap, &own[0]), (4, 2));
    assert_eq!(counts(&snap, &own[1]), (2, 1));
    for lb in snap.interfaces.iter().filter(|i| !own.contains(&i.id)) {
        assert_eq!(counts(&snap, &lb.id), (2, 1), "{}", lb.id);
    }
    let eni0 = snap.interface(&own[0]).unwrap();
    assert_eq!(eni0.connection_tracking.unwrap().tcp_established_timeout, Some(3600));
    let (app, _) = resolve_interface(&snap, &own[0]).unwrap();
    assert_eq!(app.groups.len(), 2);
    // The app port admits the two load-balancer interfaces, both families.
    let from_lb = &app.ingress[0];
    assert!(matches!(from_lb.source, PeerSource::Group(_)));
    assert_eq!(from_lb.peers.len(), 4, "{:?}", from_lb.peers);
    // The IPv4 prefix list has 3 entries, the IPv6 one 2.
    let pl_sizes: Vec<usize> = app
        .ingress
        .iter()
        .chain(&app.egress)
        .filter(|r| matches!(r.source, PeerSource::PrefixList(_)))
        .map(|r| r.peers.len())
        .collect();
    assert_eq!(pl_sizes, [3, 2, 2, 3, 2]);
    assert!(app.ingress.iter().any(|r| r.protocol == Protocol::Icmpv6(IcmpMatch::Type { icmp_type: 128 })));
    let (data, _) = resolve_interface(&snap, &own[1]).unwrap();
    assert!(data.ingress.iter().any(|r| r.protocol == Protocol::Number(50)));
    // PostgreSQL from the app group: the app interface's three addresses.
    assert_eq!(data.ingress[0].peers.len(), 3);
    assert_eq!(data.ingress[0].peers, eni0.addresses().into_iter().map(IpNet::from).collect::<Vec<_>>());
}
