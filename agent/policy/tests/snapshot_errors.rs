//! Bad snapshots: each is rejected as a whole with the JSON path of the problem and a
//! message that says what is wrong.
//!
//! Every case starts from one valid document (checked by `the_base_document_is_valid`)
//! and breaks exactly one thing, so the error can only come from that thing.

use serde_json::{Value, json};
use sgmirror_policy::model::{PeerSource, Protocol};
use sgmirror_policy::snapshot::{self, Peer, SnapshotError};

fn base() -> Value {
    json!({
        "InstanceId": "i-1",
        "SecurityGroupRules": [
            {"SecurityGroupRuleId": "sgr-1", "GroupId": "sg-1", "IsEgress": false,
             "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIpv4": "0.0.0.0/0"},
            {"SecurityGroupRuleId": "sgr-2", "GroupId": "sg-1", "IsEgress": true,
             "IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "CidrIpv6": "::/0"}
        ],
        "SecurityGroups": [
            {"GroupId": "sg-2", "GroupName": "two", "IpPermissions": [
                {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
                 "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                 "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]},
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                 "UserIdGroupPairs": [{"GroupId": "sg-1"}],
                 "PrefixListIds": [{"PrefixListId": "pl-1"}]}
            ], "IpPermissionsEgress": []}
        ],
        "NetworkInterfaces": [
            {"NetworkInterfaceId": "eni-1", "MacAddress": "0a:00:00:00:00:01",
             "Groups": [{"GroupId": "sg-1", "GroupName": "one"}],
             "PrivateIpAddress": "10.0.0.5",
             "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.5", "Primary": true},
                                    {"PrivateIpAddress": "10.0.0.6", "Primary": false}],
             "Ipv6Addresses": [{"Ipv6Address": "2001:db8::5"}],
             "Attachment": {"InstanceId": "i-1", "DeviceIndex": 0, "NetworkCardIndex": 0},
             "ConnectionTrackingConfiguration": {"TcpEstablishedTimeout": 3600},
             "VpcId": "vpc-1", "SubnetId": "subnet-1"},
            {"NetworkInterfaceId": "eni-2", "MacAddress": "0a:00:00:00:00:02",
             "Groups": [{"GroupId": "sg-2"}], "PrivateIpAddress": "10.0.0.7"}
        ],
        "PrefixLists": [
            {"PrefixListId": "pl-1", "AddressFamily": "IPv4",
             "Entries": [{"Cidr": "192.0.2.0/24"}, {"Cidr": "198.51.100.0/24"}]}
        ],
        "Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16",
                  "Ipv6CidrBlockAssociationSet": [{"Ipv6CidrBlock": "2001:db8::/56"}]}],
        "Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.0.0.0/24"}]
    })
}

/// `base()` with the value at a JSON pointer replaced (or added, when the parent exists).
fn with(pointer: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    match doc.pointer_mut(parent).expect("parent exists") {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().expect("index")] = value,
        other => panic!("cannot set {pointer} in {other}"),
    }
    doc
}

/// `base()` without the value at a JSON pointer.
fn without(pointer: &str) -> Value {
    let mut doc = base();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let map = doc.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent object");
    assert!(map.remove(key).is_some(), "{pointer} was not there");
    doc
}

fn error_of(text: &str) -> SnapshotError {
    match snapshot::parse(text) {
        Ok(_) => panic!("accepted a bad snapshot: {text}"),
        Err(e) => e,
    }
}

/// Asserts the exact path, a phrase of the problem, and the `path: problem` display.
fn expect(doc: &Value, path: &str, phrase: &str) {
    let err = error_of(&doc.to_string());
    assert_eq!(err.path(), path, "wrong path for: {err}");
    assert!(err.problem().contains(phrase), "{err:?} does not say {phrase:?}");
    assert_eq!(err.to_string(), format!("{}: {}", err.path(), err.problem()));
}

#[test]
fn the_base_document_is_valid() {
    let snap = snapshot::parse(&base().to_string()).unwrap();
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    assert_eq!(snap.rules.len(), 6);
    assert_eq!(snap.own_interface_ids(), ["eni-1"]);
    let eni = snap.interface("eni-1").unwrap();
    assert_eq!(eni.connection_tracking.unwrap().tcp_established_timeout, Some(3600));
    assert_eq!(eni.private_ipv4.len(), 2);
}

#[test]
fn invalid_json() {
    let err = error_of("{\"NetworkInterfaces\": [\n  {\"NetworkInterfaceId\": }\n]}");
    assert_eq!(err.path(), "$");
    assert!(err.problem().starts_with("not valid JSON at line 2 column "), "{err}");
    let err = error_of("");
    assert!(err.problem().contains("not valid JSON at line 1"), "{err}");
}

#[test]
fn root_not_an_object() {
    expect(&json!([1, 2]), "$", "expected an object, found an array");
}

#[test]
fn missing_network_interfaces() {
    expect(&without("/NetworkInterfaces"), "$.NetworkInterfaces", "missing");
}

#[test]
fn empty_network_interfaces() {
    expect(&with("/NetworkInterfaces", json!([])), "$.NetworkInterfaces", "is empty");
}

#[test]
fn network_interfaces_not_an_array() {
    expect(&with("/NetworkInterfaces", json!({})), "$.NetworkInterfaces", "expected an array");
}

#[test]
fn neither_rules_key() {
    let mut doc = without("/SecurityGroups");
    doc.as_object_mut().unwrap().remove("SecurityGroupRules");
    expect(&doc, "$", "needs SecurityGroupRules or SecurityGroups");
}

#[test]
fn rules_key_not_an_array() {
    expect(&with("/SecurityGroupRules", json!("x")), "$.SecurityGroupRules", "expected an array");
}

#[test]
fn bad_cidr_text() {
    let doc = with("/SecurityGroupRules/0/CidrIpv4", json!("10.0.0/8"));
    expect(&doc, "$.SecurityGroupRules[0].CidrIpv4", "is not a CIDR block");
    let doc = with("/SecurityGroupRules/0/CidrIpv4", json!("10.0.0.1"));
    expect(&doc, "$.SecurityGroupRules[0].CidrIpv4", "expected ADDRESS/PREFIX");
}

#[test]
fn prefix_length_over_32() {
    let doc = with("/SecurityGroupRules/0/CidrIpv4", json!("10.0.0.0/33"));
    expect(&doc, "$.SecurityGroupRules[0].CidrIpv4", "prefix length 33 is longer than 32");
}

#[test]
fn prefix_length_over_128() {
    let doc = with("/SecurityGroupRules/1/CidrIpv6", json!("2001:db8::/129"));
    expect(&doc, "$.SecurityGroupRules[1].CidrIpv6", "longer than 128");
}

#[test]
fn ipv6_in_ip_ranges() {
    let doc = with("/SecurityGroups/0/IpPermissions/0/IpRanges/0/CidrIp", json!("2001:db8::/32"));
    expect(
        &doc,
        "$.SecurityGroups[0].IpPermissions[0].IpRanges[0].CidrIp",
        "is an IPv6 CIDR block; CidrIp takes IPv4 only",
    );
}

#[test]
fn ipv6_in_cidr_ipv4() {
    let doc = with("/SecurityGroupRules/0/CidrIpv4", json!("::/0"));
    expect(&doc, "$.SecurityGroupRules[0].CidrIpv4", "is an IPv6 CIDR block");
}

#[test]
fn ipv4_in_cidr_ipv6() {
    let doc = with("/SecurityGroupRules/1/CidrIpv6", json!("0.0.0.0/0"));
    expect(&doc, "$.SecurityGroupRules[1].CidrIpv6", "is an IPv4 CIDR block; CidrIpv6 takes IPv6");
}

#[test]
fn ipv4_in_ipv6_ranges() {
    let doc = with("/SecurityGroups/0/IpPermissions/0/Ipv6Ranges/0/CidrIpv6", json!("10.0.0.0/8"));
    expect(&doc, "$.SecurityGroups[0].IpPermissions[0].Ipv6Ranges[0].CidrIpv6", "is an IPv4");
}

#[test]
fn from_port_greater_than_to_port_tcp() {
    let doc = with("/SecurityGroupRules/0/FromPort", json!(443));
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "FromPort 443 is greater than ToPort 80");
}

#[test]
fn from_port_greater_than_to_port_udp() {
    let doc = with("/SecurityGroups/0/IpPermissions/0/ToPort", json!(52));
    expect(&doc, "$.SecurityGroups[0].IpPermissions[0].FromPort", "FromPort 53 is greater than ToPort 52");
}

#[test]
fn port_over_65535() {
    let doc = with("/SecurityGroupRules/0/ToPort", json!(65536));
    expect(&doc, "$.SecurityGroupRules[0].ToPort", "ToPort 65536 is out of range");
}

#[test]
fn negative_tcp_port() {
    let doc = with("/SecurityGroupRules/0/FromPort", json!(-5));
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "FromPort -5 is out of range");
}

#[test]
fn tcp_with_aws_all_ports_marker() {
    let mut doc = with("/SecurityGroupRules/0/FromPort", json!(-1));
    doc["SecurityGroupRules"][0]["ToPort"] = json!(-1);
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "tcp ports go from 0 to 65535");
}

#[test]
fn tcp_without_ports() {
    let mut doc = without("/SecurityGroupRules/0/FromPort");
    doc["SecurityGroupRules"][0].as_object_mut().unwrap().remove("ToPort");
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "missing: tcp needs FromPort and ToPort");
}

#[test]
fn udp_without_to_port() {
    let mut doc = base();
    doc["SecurityGroups"][0]["IpPermissions"][0].as_object_mut().unwrap().remove("ToPort");
    expect(&doc, "$.SecurityGroups[0].IpPermissions[0].ToPort", "udp needs FromPort and ToPort");
}

#[test]
fn numbered_tcp_needs_ports_too() {
    let mut doc = with("/SecurityGroupRules/0/IpProtocol", json!("6"));
    doc["SecurityGroupRules"][0].as_object_mut().unwrap().remove("FromPort");
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "tcp needs FromPort");
}

fn icmp_rule(from: Value, to: Value) -> Value {
    let mut doc = with("/SecurityGroupRules/0/IpProtocol", json!("icmp"));
    doc["SecurityGroupRules"][0]["FromPort"] = from;
    doc["SecurityGroupRules"][0]["ToPort"] = to;
    doc
}

#[test]
fn icmp_all_types_with_a_specific_code() {
    let doc = icmp_rule(json!(-1), json!(0));
    expect(&doc, "$.SecurityGroupRules[0].ToPort", "type -1 (all types) needs code -1");
}

#[test]
fn icmp_type_over_255() {
    let doc = icmp_rule(json!(256), json!(-1));
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "256 is out of range");
}

#[test]
fn icmp_code_below_minus_one() {
    let doc = icmp_rule(json!(3), json!(-2));
    expect(&doc, "$.SecurityGroupRules[0].ToPort", "-2 is out of range");
}

#[test]
fn icmp_without_type_and_code() {
    let mut doc = with("/SecurityGroupRules/0/IpProtocol", json!("icmp"));
    let rule = doc["SecurityGroupRules"][0].as_object_mut().unwrap();
    rule.remove("FromPort");
    rule.remove("ToPort");
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "icmp needs FromPort (type) and ToPort");
}

#[test]
fn icmpv6_with_only_a_type() {
    let mut doc = with("/SecurityGroupRules/1/IpProtocol", json!("icmpv6"));
    doc["SecurityGroupRules"][1]["FromPort"] = json!(128);
    doc["SecurityGroupRules"][1].as_object_mut().unwrap().remove("ToPort");
    expect(&doc, "$.SecurityGroupRules[1].ToPort", "or neither");
}

#[test]
fn unknown_protocol_name() {
    let doc = with("/SecurityGroupRules/0/IpProtocol", json!("gre"));
    expect(&doc, "$.SecurityGroupRules[0].IpProtocol", "unknown protocol \"gre\"");
}

#[test]
fn protocol_number_over_255() {
    let doc = with("/SecurityGroups/0/IpPermissions/1/IpProtocol", json!("300"));
    expect(&doc, "$.SecurityGroups[0].IpPermissions[1].IpProtocol", "unknown protocol \"300\"");
}

#[test]
fn protocol_not_a_string() {
    let doc = with("/SecurityGroupRules/0/IpProtocol", json!(6));
    expect(&doc, "$.SecurityGroupRules[0].IpProtocol", "expected a string, found a number");
}

#[test]
fn rule_without_a_peer() {
    let doc = without("/SecurityGroupRules/0/CidrIpv4");
    expect(&doc, "$.SecurityGroupRules[0]", "names no peer");
}

#[test]
fn rule_with_two_peers() {
    let doc = with("/SecurityGroupRules/0/PrefixListId", json!("pl-1"));
    expect(&doc, "$.SecurityGroupRules[0]", "names more than one peer (CidrIpv4, PrefixListId)");
}

#[test]
fn is_egress_not_a_bool() {
    let doc = with("/SecurityGroupRules/1/IsEgress", json!("true"));
    expect(&doc, "$.SecurityGroupRules[1].IsEgress", "expected true or false, found a string");
}

#[test]
fn is_egress_missing() {
    expect(&without("/SecurityGroupRules/0/IsEgress"), "$.SecurityGroupRules[0].IsEgress", "missing");
}

#[test]
fn from_port_not_a_number() {
    let doc = with("/SecurityGroups/0/IpPermissions/1/FromPort", json!("22"));
    expect(&doc, "$.SecurityGroups[0].IpPermissions[1].FromPort", "expected a number");
}

#[test]
fn from_port_not_whole() {
    let doc = with("/SecurityGroupRules/0/FromPort", json!(79.5));
    expect(&doc, "$.SecurityGroupRules[0].FromPort", "expected a whole number");
}

#[test]
fn group_id_not_a_string() {
    let doc = with("/SecurityGroupRules/0/GroupId", json!(["sg-1"]));
    expect(&doc, "$.SecurityGroupRules[0].GroupId", "expected a string, found an array");
}

#[test]
fn rule_id_missing() {
    let doc = without("/SecurityGroupRules/1/SecurityGroupRuleId");
    expect(&doc, "$.SecurityGroupRules[1].SecurityGroupRuleId", "missing");
}

#[test]
fn rule_id_twice() {
    let doc = with("/SecurityGroupRules/1/SecurityGroupRuleId", json!("sgr-1"));
    expect(&doc, "$.SecurityGroupRules[1].SecurityGroupRuleId", "listed twice");
}

#[test]
fn referenced_group_info_not_an_object() {
    let mut doc = without("/SecurityGroupRules/0/CidrIpv4");
    doc["SecurityGroupRules"][0]["ReferencedGroupInfo"] = json!("sg-1");
    expect(&doc, "$.SecurityGroupRules[0].ReferencedGroupInfo", "expected an object");
}

#[test]
fn user_id_group_pair_without_group_id() {
    let doc = with("/SecurityGroups/0/IpPermissions/1/UserIdGroupPairs/0", json!({"UserId": "1"}));
    expect(&doc, "$.SecurityGroups[0].IpPermissions[1].UserIdGroupPairs[0].GroupId", "missing");
}

#[test]
fn security_group_described_twice() {
    let mut doc = base();
    let copy = doc["SecurityGroups"][0].clone();
    doc["SecurityGroups"].as_array_mut().unwrap().push(copy);
    expect(&doc, "$.SecurityGroups[1].GroupId", "described twice");
}

#[test]
fn prefix_list_entry_with_bad_cidr() {
    let doc = with("/PrefixLists/0/Entries/1/Cidr", json!("198.51.100.0/24x"));
    expect(&doc, "$.PrefixLists[0].Entries[1].Cidr", "is not a CIDR block");
}

#[test]
fn prefix_list_entry_of_the_wrong_family() {
    let doc = with("/PrefixLists/0/Entries/1/Cidr", json!("2001:db8::/48"));
    expect(&doc, "$.PrefixLists[0].Entries[1].Cidr", "but the prefix list's AddressFamily is IPv4");
}

#[test]
fn prefix_list_without_entries() {
    expect(&without("/PrefixLists/0/Entries"), "$.PrefixLists[0].Entries", "get-managed-prefix-list-entries");
}

#[test]
fn prefix_list_with_an_unknown_family() {
    let doc = with("/PrefixLists/0/AddressFamily", json!("IPX"));
    expect(&doc, "$.PrefixLists[0].AddressFamily", "unknown address family");
}

#[test]
fn interface_with_bad_private_ip() {
    let doc = with("/NetworkInterfaces/0/PrivateIpAddress", json!("10.0.0.256"));
    expect(&doc, "$.NetworkInterfaces[0].PrivateIpAddress", "is not an IPv4 address");
}

#[test]
fn interface_with_bad_secondary_ip() {
    let doc = with("/NetworkInterfaces/0/PrivateIpAddresses/1/PrivateIpAddress", json!("fe80::1"));
    expect(&doc, "$.NetworkInterfaces[0].PrivateIpAddresses[1].PrivateIpAddress", "not an IPv4 address");
}

#[test]
fn interface_with_bad_ipv6() {
    let doc = with("/NetworkInterfaces/0/Ipv6Addresses/0/Ipv6Address", json!("10.0.0.5"));
    expect(&doc, "$.NetworkInterfaces[0].Ipv6Addresses[0].Ipv6Address", "is not an IPv6 address");
}

#[test]
fn bad_mac() {
    let doc = with("/NetworkInterfaces/1/MacAddress", json!("0a:00:00:00:00"));
    expect(&doc, "$.NetworkInterfaces[1].MacAddress", "is not a MAC address");
}

#[test]
fn mac_used_twice() {
    let doc = with("/NetworkInterfaces/1/MacAddress", json!("0A:00:00:00:00:01"));
    expect(&doc, "$.NetworkInterfaces[1].MacAddress", "also used by the interface at $.NetworkInterfaces[0]");
}

#[test]
fn interface_listed_twice() {
    let doc = with("/NetworkInterfaces/1/NetworkInterfaceId", json!("eni-1"));
    expect(&doc, "$.NetworkInterfaces[1].NetworkInterfaceId", "listed twice");
}

#[test]
fn interface_without_id() {
    let doc = without("/NetworkInterfaces/1/NetworkInterfaceId");
    expect(&doc, "$.NetworkInterfaces[1].NetworkInterfaceId", "missing");
}

#[test]
fn interface_group_without_id() {
    let doc = with("/NetworkInterfaces/0/Groups/0", json!({"GroupName": "one"}));
    expect(&doc, "$.NetworkInterfaces[0].Groups[0].GroupId", "missing");
}

#[test]
fn negative_connection_tracking_timeout() {
    let doc = with("/NetworkInterfaces/0/ConnectionTrackingConfiguration/UdpTimeout", json!(-30));
    expect(&doc, "$.NetworkInterfaces[0].ConnectionTrackingConfiguration.UdpTimeout", "out of range");
}

#[test]
fn instance_id_with_no_attached_interface() {
    let doc = with("/InstanceId", json!("i-404"));
    expect(&doc, "$.InstanceId", "no interface in NetworkInterfaces is attached to instance i-404");
}

#[test]
fn vpc_with_bad_cidr() {
    let doc = with("/Vpcs/0/CidrBlock", json!("10.0.0.0/16/1"));
    expect(&doc, "$.Vpcs[0].CidrBlock", "is not a CIDR block");
}

#[test]
fn vpc_ipv6_block_of_the_wrong_family() {
    let doc = with("/Vpcs/0/Ipv6CidrBlockAssociationSet/0/Ipv6CidrBlock", json!("10.0.0.0/16"));
    expect(&doc, "$.Vpcs[0].Ipv6CidrBlockAssociationSet[0].Ipv6CidrBlock", "is an IPv4 CIDR block");
}

#[test]
fn subnet_without_id() {
    expect(&without("/Subnets/0/SubnetId"), "$.Subnets[0].SubnetId", "missing");
}

#[test]
fn security_group_entry_not_an_object() {
    let doc = with("/SecurityGroups/0", json!("sg-2"));
    expect(&doc, "$.SecurityGroups[0]", "expected an object, found a string");
}

#[test]
fn host_bits_give_a_warning_and_the_network_part() {
    let doc = with("/SecurityGroupRules/0/CidrIpv4", json!("203.0.113.5/0"));
    let snap = snapshot::parse(&doc.to_string()).unwrap();
    assert_eq!(snap.warnings.len(), 1, "{:?}", snap.warnings);
    assert_eq!(snap.warnings[0].path, "$.SecurityGroupRules[0].CidrIpv4");
    assert!(snap.warnings[0].message.contains("host bits"), "{}", snap.warnings[0]);
    let rule = &snap.rules[0];
    assert_eq!(rule.peer, Peer::Cidr { written: "203.0.113.5/0".into(), net: "0.0.0.0/0".parse().unwrap() });
    assert_eq!(rule.peer.source(), PeerSource::Cidr("203.0.113.5/0".into()));

    let doc = with("/PrefixLists/0/Entries/0/Cidr", json!("192.0.2.77/24"));
    let snap = snapshot::parse(&doc.to_string()).unwrap();
    assert_eq!(snap.warnings.len(), 1);
    assert_eq!(snap.warnings[0].path, "$.PrefixLists[0].Entries[0].Cidr");
    assert_eq!(snap.prefix_lists[0].entries[0].cidr, "192.0.2.0/24".parse().unwrap());
}

#[test]
fn unknown_fields_and_nulls_are_ignored() {
    let mut doc = with("/SomethingNew", json!({"x": [1, 2]}));
    doc["SecurityGroupRules"][0]["Tags"] = json!([{"Key": "k", "Value": "v"}]);
    doc["SecurityGroupRules"][0]["Description"] = Value::Null;
    doc["NetworkInterfaces"][0]["Association"] = json!({"PublicIp": "192.0.2.1"});
    let snap = snapshot::parse(&doc.to_string()).unwrap();
    assert_eq!(snap.rules[0].protocol, Protocol::Tcp(sgmirror_policy::model::PortRange { from: 80, to: 80 }));
    assert_eq!(snap.rules[0].description, None);
}

#[test]
fn load_reports_an_unreadable_file() {
    let err = snapshot::load(std::path::Path::new("/nonexistent/dir/snapshot.json")).unwrap_err();
    assert_eq!(err.path(), "$");
    assert!(err.problem().contains("cannot read snapshot file /nonexistent/dir/snapshot.json"), "{err}");
}
