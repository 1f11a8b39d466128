//! Snapshot documents built by tests, in the AWS CLI's `describe-security-group-rules`
//! shape.

use serde_json::{Value, json};

/// One inbound or outbound rule with a CIDR peer.
#[derive(Clone, Copy, Debug)]
pub struct Rule<'a> {
    /// `sgr-…`.
    pub id: &'a str,
    /// Outbound when true.
    pub egress: bool,
    /// `IpProtocol`.
    pub proto: &'a str,
    /// `FromPort` (ICMP type).
    pub from: i32,
    /// `ToPort` (ICMP code).
    pub to: i32,
    /// `CidrIpv4` or `CidrIpv6`.
    pub cidr: &'a str,
}

/// A snapshot with one group `sg-e2e` holding `rules`, and one interface `eni` in it.
pub fn one_group(eni: &str, mac: &str, addrs: &[&str], rules: &[Rule<'_>]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            let mut v = json!({
                "SecurityGroupRuleId": r.id, "GroupId": "sg-e2e", "IsEgress": r.egress,
                "IpProtocol": r.proto, "FromPort": r.from, "ToPort": r.to,
            });
            let key = if r.cidr.contains(':') { "CidrIpv6" } else { "CidrIpv4" };
            v[key] = json!(r.cidr);
            v
        })
        .collect();
    let v4: Vec<Value> =
        addrs.iter().filter(|a| !a.contains(':')).map(|a| json!({"PrivateIpAddress": a})).collect();
    let v6: Vec<Value> =
        addrs.iter().filter(|a| a.contains(':')).map(|a| json!({"Ipv6Address": a})).collect();
    json!({
        "InstanceId": "i-e2e",
        "SecurityGroupRules": rules,
        "NetworkInterfaces": [{
            "NetworkInterfaceId": eni,
            "MacAddress": mac,
            "Groups": [{"GroupId": "sg-e2e", "GroupName": "e2e"}],
            "PrivateIpAddresses": v4,
            "Ipv6Addresses": v6,
            "Attachment": {"InstanceId": "i-e2e", "DeviceIndex": 0},
        }],
    })
}
