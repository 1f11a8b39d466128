//! The snapshot document, built from IMDS and EC2 answers: the same JSON the file source
//! reads (`sgmirror_policy::snapshot`), in the AWS CLI's shapes and key names.
//!
//! Stable output is a feature: keys are written in a fixed order and every array is
//! sorted by id (addresses and CIDRs by text), so two snapshots of the same state are
//! byte-identical and two of different states diff to exactly what changed. The run
//! loop also relies on it to tell "unchanged" by comparing documents.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{ManagedPrefixList, NetworkInterface, PrefixListEntry, SecurityGroupRule};
use serde_json::{Map, Value, json};

use crate::error::AwsError;
use crate::imds::{ImdsEni, LocalView};

/// Everything one fetch gathered.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// IMDS: instance, ENIs by MAC, VPC and subnet blocks.
    pub view: &'a LocalView,
    /// `DescribeNetworkInterfaces` filtered by `attachment.instance-id`.
    pub own: &'a [NetworkInterface],
    /// `DescribeSecurityGroupRules` of the own groups.
    pub rules: &'a [SecurityGroupRule],
    /// `DescribeNetworkInterfaces` filtered by the referenced groups.
    pub members: &'a [NetworkInterface],
    /// `DescribeManagedPrefixLists` + entries (cached or fetched).
    pub prefix_lists: &'a [(ManagedPrefixList, Vec<PrefixListEntry>)],
}

/// The own groups: every group IMDS or the API lists on an own ENI, sorted.
pub fn own_group_ids(view: &LocalView, own: &[NetworkInterface]) -> Vec<String> {
    let mut ids: BTreeSet<String> =
        view.enis.iter().flat_map(|e| e.security_group_ids.iter().cloned()).collect();
    for eni in own {
        ids.extend(eni.groups().iter().filter_map(|g| g.group_id()).map(str::to_owned));
    }
    ids.into_iter().collect()
}

/// (referenced group ids, prefix-list ids) of `rules`, each sorted and unique.
pub fn references(rules: &[SecurityGroupRule]) -> (Vec<String>, Vec<String>) {
    let groups: BTreeSet<String> = rules
        .iter()
        .filter_map(|r| r.referenced_group_info().and_then(|g| g.group_id()))
        .map(str::to_owned)
        .collect();
    let lists: BTreeSet<String> =
        rules.iter().filter_map(|r| r.prefix_list_id()).map(str::to_owned).collect();
    (groups.into_iter().collect(), lists.into_iter().collect())
}

/// Builds the document. Fails when the instance has no ENI at all, or when AWS returned
/// a rule without its identifying fields (better no policy than a wrong one).
pub fn build(inputs: Inputs<'_>) -> Result<Value, AwsError> {
    let view = inputs.view;
    let mut rules = Vec::with_capacity(inputs.rules.len());
    let mut seen_rules = BTreeSet::new();
    for rule in inputs.rules {
        let r = rule_json(rule)?;
        let id = rule.security_group_rule_id().unwrap_or_default().to_owned();
        // Two chunks of a group-id filter never overlap, but be safe against duplicates.
        if seen_rules.insert(id.clone()) {
            rules.push((id, r));
        }
    }
    rules.sort_by(|a, b| a.0.cmp(&b.0));

    // Own ENIs: the API's view when it has the ENI, IMDS's otherwise.
    let mut enis: BTreeMap<String, Value> = BTreeMap::new();
    let imds_by_id: BTreeMap<&str, &ImdsEni> =
        view.enis.iter().map(|e| (e.interface_id.as_str(), e)).collect();
    for eni in inputs.own {
        let Some(id) = eni.network_interface_id() else {
            tracing::warn!(
                "DescribeNetworkInterfaces returned an interface without NetworkInterfaceId; ignored"
            );
            continue;
        };
        enis.insert(id.to_owned(), interface_json(eni, Some(&view.instance_id), imds_by_id.get(id).copied()));
    }
    for eni in &view.enis {
        if !enis.contains_key(&eni.interface_id) {
            tracing::warn!(
                eni = %eni.interface_id,
                "the EC2 API does not list this ENI as attached yet; using what IMDS says about it"
            );
            enis.insert(eni.interface_id.clone(), imds_interface_json(eni, &view.instance_id));
        }
    }
    if enis.is_empty() {
        return Err(AwsError::ImdsData {
            path: "/latest/meta-data/network/interfaces/macs/".into(),
            message: format!("instance {} has no network interface", view.instance_id),
        });
    }
    for eni in inputs.members {
        let Some(id) = eni.network_interface_id() else { continue };
        enis.entry(id.to_owned()).or_insert_with(|| interface_json(eni, None, None));
    }

    let mut lists: Vec<(&str, Value)> = inputs
        .prefix_lists
        .iter()
        .filter_map(|(list, entries)| list.prefix_list_id().map(|id| (id, prefix_list_json(list, entries))))
        .collect();
    lists.sort_by(|a, b| a.0.cmp(b.0));
    lists.dedup_by(|a, b| a.0 == b.0);

    let (vpcs, subnets) = vpcs_and_subnets(view, inputs.own);

    let mut doc = Map::new();
    doc.insert("InstanceId".into(), json!(view.instance_id));
    doc.insert("SecurityGroupRules".into(), Value::Array(rules.into_iter().map(|(_, r)| r).collect()));
    doc.insert("NetworkInterfaces".into(), Value::Array(enis.into_values().collect()));
    doc.insert("PrefixLists".into(), Value::Array(lists.into_iter().map(|(_, l)| l).collect()));
    doc.insert("Vpcs".into(), Value::Array(vpcs));
    doc.insert("Subnets".into(), Value::Array(subnets));
    Ok(Value::Object(doc))
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

/// One `describe-security-group-rules` entry, keys in the CLI's order.
fn rule_json(rule: &SecurityGroupRule) -> Result<Value, AwsError> {
    let missing = |what: &str| AwsError::ApiData {
        operation: "DescribeSecurityGroupRules",
        message: format!(
            "rule {} has no {what}",
            rule.security_group_rule_id().unwrap_or("(without SecurityGroupRuleId)")
        ),
    };
    let mut m = Map::new();
    m.insert(
        "SecurityGroupRuleId".into(),
        json!(rule.security_group_rule_id().ok_or_else(|| missing("id"))?),
    );
    m.insert("GroupId".into(), json!(rule.group_id().ok_or_else(|| missing("GroupId"))?));
    put_str(&mut m, "GroupOwnerId", rule.group_owner_id());
    m.insert("IsEgress".into(), json!(rule.is_egress().ok_or_else(|| missing("IsEgress"))?));
    m.insert("IpProtocol".into(), json!(rule.ip_protocol().ok_or_else(|| missing("IpProtocol"))?));
    if let Some(p) = rule.from_port() {
        m.insert("FromPort".into(), json!(p));
    }
    if let Some(p) = rule.to_port() {
        m.insert("ToPort".into(), json!(p));
    }
    put_str(&mut m, "CidrIpv4", rule.cidr_ipv4());
    put_str(&mut m, "CidrIpv6", rule.cidr_ipv6());
    put_str(&mut m, "PrefixListId", rule.prefix_list_id());
    if let Some(g) = rule.referenced_group_info() {
        let mut r = Map::new();
        put_str(&mut r, "GroupId", g.group_id());
        put_str(&mut r, "UserId", g.user_id());
        put_str(&mut r, "VpcId", g.vpc_id());
        put_str(&mut r, "VpcPeeringConnectionId", g.vpc_peering_connection_id());
        put_str(&mut r, "PeeringStatus", g.peering_status());
        m.insert("ReferencedGroupInfo".into(), Value::Object(r));
    }
    put_str(&mut m, "Description", rule.description());
    Ok(Value::Object(m))
}

/// One `describe-network-interfaces` entry. `own_instance` forces the attachment of an
/// own ENI (the filter guaranteed it); `imds` fills VPC and subnet when the API omits them.
fn interface_json(eni: &NetworkInterface, own_instance: Option<&str>, imds: Option<&ImdsEni>) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "NetworkInterfaceId", eni.network_interface_id());
    put_str(&mut m, "InterfaceType", eni.interface_type().map(|t| t.as_str()));
    if let Some(mac) = eni.mac_address().or(imds.map(|i| i.mac.as_str())) {
        m.insert("MacAddress".into(), json!(mac.to_ascii_lowercase()));
    }
    put_str(&mut m, "VpcId", eni.vpc_id().or(imds.and_then(|i| i.vpc_id.as_deref())));
    put_str(&mut m, "SubnetId", eni.subnet_id().or(imds.and_then(|i| i.subnet_id.as_deref())));
    let mut groups: Vec<(&str, Option<&str>)> =
        eni.groups().iter().filter_map(|g| g.group_id().map(|id| (id, g.group_name()))).collect();
    groups.sort();
    groups.dedup_by(|a, b| a.0 == b.0);
    m.insert(
        "Groups".into(),
        Value::Array(
            groups
                .into_iter()
                .map(|(id, name)| {
                    let mut g = Map::new();
                    g.insert("GroupId".into(), json!(id));
                    put_str(&mut g, "GroupName", name);
                    Value::Object(g)
                })
                .collect(),
        ),
    );
    let primary = eni
        .private_ip_addresses()
        .iter()
        .find(|a| a.primary() == Some(true))
        .and_then(|a| a.private_ip_address())
        .or(eni.private_ip_address());
    let secondaries: Vec<&str> = eni
        .private_ip_addresses()
        .iter()
        .filter_map(|a| a.private_ip_address())
        .filter(|a| Some(*a) != primary)
        .collect();
    private_addresses(&mut m, primary, secondaries);
    ipv6_addresses(&mut m, eni.ipv6_addresses().iter().filter_map(|a| a.ipv6_address()).collect());
    let attachment = eni.attachment();
    let instance = own_instance.or(attachment.and_then(|a| a.instance_id()));
    if attachment.is_some() || own_instance.is_some() {
        let mut a = Map::new();
        put_str(&mut a, "InstanceId", instance);
        let device = attachment
            .and_then(|a| a.device_index())
            .or(imds.and_then(|i| i.device_number.map(|d| d as i32)));
        if let Some(d) = device.filter(|d| *d >= 0) {
            a.insert("DeviceIndex".into(), json!(d));
        }
        if let Some(n) = attachment.and_then(|a| a.network_card_index()).filter(|n| *n >= 0) {
            a.insert("NetworkCardIndex".into(), json!(n));
        }
        m.insert("Attachment".into(), Value::Object(a));
    }
    if let Some(c) = eni.connection_tracking_configuration() {
        // Negative values would be nonsense; leaving them out means "AWS default".
        let mut t = Map::new();
        for (key, v) in [
            ("TcpEstablishedTimeout", c.tcp_established_timeout()),
            ("UdpStreamTimeout", c.udp_stream_timeout()),
            ("UdpTimeout", c.udp_timeout()),
        ] {
            if let Some(v) = v.filter(|v| *v >= 0) {
                t.insert(key.into(), json!(v));
            }
        }
        m.insert("ConnectionTrackingConfiguration".into(), Value::Object(t));
    }
    Value::Object(m)
}

/// An own ENI the API did not (yet) list, from IMDS alone.
fn imds_interface_json(eni: &ImdsEni, instance_id: &str) -> Value {
    let mut m = Map::new();
    m.insert("NetworkInterfaceId".into(), json!(eni.interface_id));
    m.insert("MacAddress".into(), json!(eni.mac));
    put_str(&mut m, "VpcId", eni.vpc_id.as_deref());
    put_str(&mut m, "SubnetId", eni.subnet_id.as_deref());
    m.insert(
        "Groups".into(),
        Value::Array(eni.security_group_ids.iter().map(|g| json!({"GroupId": g})).collect()),
    );
    let primary = eni.local_ipv4s.first().map(String::as_str);
    private_addresses(&mut m, primary, eni.local_ipv4s.iter().skip(1).map(String::as_str).collect());
    ipv6_addresses(&mut m, eni.ipv6s.iter().map(String::as_str).collect());
    let mut a = Map::new();
    a.insert("InstanceId".into(), json!(instance_id));
    if let Some(d) = eni.device_number {
        a.insert("DeviceIndex".into(), json!(d));
    }
    if let Some(n) = eni.network_card_index {
        a.insert("NetworkCardIndex".into(), json!(n));
    }
    m.insert("Attachment".into(), Value::Object(a));
    Value::Object(m)
}

/// `PrivateIpAddress` and `PrivateIpAddresses`: the primary first, then the others sorted.
fn private_addresses(m: &mut Map<String, Value>, primary: Option<&str>, mut others: Vec<&str>) {
    others.sort_unstable();
    others.dedup();
    others.retain(|a| Some(*a) != primary);
    put_str(m, "PrivateIpAddress", primary);
    let mut list: Vec<Value> =
        primary.into_iter().map(|p| json!({"PrivateIpAddress": p, "Primary": true})).collect();
    list.extend(others.into_iter().map(|a| json!({"PrivateIpAddress": a, "Primary": false})));
    m.insert("PrivateIpAddresses".into(), Value::Array(list));
}

fn ipv6_addresses(m: &mut Map<String, Value>, mut addrs: Vec<&str>) {
    addrs.sort_unstable();
    addrs.dedup();
    m.insert(
        "Ipv6Addresses".into(),
        Value::Array(addrs.into_iter().map(|a| json!({"Ipv6Address": a})).collect()),
    );
}

/// A `describe-managed-prefix-lists` object plus `Entries`, sorted by CIDR.
fn prefix_list_json(list: &ManagedPrefixList, entries: &[PrefixListEntry]) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "PrefixListId", list.prefix_list_id());
    put_str(&mut m, "PrefixListName", list.prefix_list_name());
    put_str(&mut m, "AddressFamily", list.address_family());
    if let Some(v) = list.version() {
        m.insert("Version".into(), json!(v));
    }
    put_str(&mut m, "OwnerId", list.owner_id());
    let mut es: Vec<(&str, Option<&str>)> =
        entries.iter().filter_map(|e| e.cidr().map(|c| (c, e.description()))).collect();
    es.sort();
    es.dedup_by(|a, b| a.0 == b.0);
    m.insert(
        "Entries".into(),
        Value::Array(
            es.into_iter()
                .map(|(cidr, d)| {
                    let mut e = Map::new();
                    e.insert("Cidr".into(), json!(cidr));
                    put_str(&mut e, "Description", d);
                    Value::Object(e)
                })
                .collect(),
        ),
    );
    Value::Object(m)
}

/// `Vpcs` and `Subnets` in `describe-vpcs` / `describe-subnets` shapes, from IMDS's CIDR
/// paths (free; no DescribeVpcs/DescribeSubnets calls, no extra IAM actions).
fn vpcs_and_subnets(view: &LocalView, own: &[NetworkInterface]) -> (Vec<Value>, Vec<Value>) {
    #[derive(Default)]
    struct VpcAcc {
        primary: Option<String>,
        v4: BTreeSet<String>,
        v6: BTreeSet<String>,
    }
    #[derive(Default)]
    struct SubnetAcc {
        vpc: Option<String>,
        v4: Option<String>,
        v6: BTreeSet<String>,
    }
    let api: BTreeMap<&str, &NetworkInterface> =
        own.iter().filter_map(|e| e.network_interface_id().map(|id| (id, e))).collect();
    let mut vpcs: BTreeMap<String, VpcAcc> = BTreeMap::new();
    let mut subnets: BTreeMap<String, SubnetAcc> = BTreeMap::new();
    for eni in &view.enis {
        let api_eni = api.get(eni.interface_id.as_str());
        let vpc_id = eni.vpc_id.clone().or_else(|| api_eni.and_then(|e| e.vpc_id()).map(str::to_owned));
        let subnet_id =
            eni.subnet_id.clone().or_else(|| api_eni.and_then(|e| e.subnet_id()).map(str::to_owned));
        if let Some(vpc_id) = &vpc_id {
            let acc = vpcs.entry(vpc_id.clone()).or_default();
            if acc.primary.is_none() {
                acc.primary = eni.vpc_ipv4_cidr_block.clone();
            }
            acc.v4.extend(eni.vpc_ipv4_cidr_block.iter().cloned());
            acc.v4.extend(eni.vpc_ipv4_cidr_blocks.iter().cloned());
            acc.v6.extend(eni.vpc_ipv6_cidr_blocks.iter().cloned());
        }
        if let Some(subnet_id) = subnet_id {
            let acc = subnets.entry(subnet_id).or_default();
            acc.vpc = acc.vpc.take().or(vpc_id);
            acc.v4 = acc.v4.take().or_else(|| eni.subnet_ipv4_cidr_block.clone());
            acc.v6.extend(eni.subnet_ipv6_cidr_blocks.iter().cloned());
        }
    }
    let vpcs = vpcs
        .into_iter()
        .map(|(id, acc)| {
            let mut m = Map::new();
            m.insert("VpcId".into(), json!(id));
            put_str(&mut m, "CidrBlock", acc.primary.as_deref().or(acc.v4.iter().next().map(String::as_str)));
            m.insert(
                "CidrBlockAssociationSet".into(),
                Value::Array(acc.v4.iter().map(|c| json!({"CidrBlock": c})).collect()),
            );
            m.insert(
                "Ipv6CidrBlockAssociationSet".into(),
                Value::Array(acc.v6.iter().map(|c| json!({"Ipv6CidrBlock": c})).collect()),
            );
            Value::Object(m)
        })
        .collect();
    let subnets = subnets
        .into_iter()
        .map(|(id, acc)| {
            let mut m = Map::new();
            m.insert("SubnetId".into(), json!(id));
            put_str(&mut m, "VpcId", acc.vpc.as_deref());
            put_str(&mut m, "CidrBlock", acc.v4.as_deref());
            m.insert(
                "Ipv6CidrBlockAssociationSet".into(),
                Value::Array(acc.v6.iter().map(|c| json!({"Ipv6CidrBlock": c})).collect()),
            );
            Value::Object(m)
        })
        .collect();
    (vpcs, subnets)
}

/// The document as the `snapshot` command writes it: pretty, with a final newline.
pub fn to_text(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{
        ConnectionTrackingConfiguration, GroupIdentifier, NetworkInterfaceAttachment,
        NetworkInterfaceIpv6Address, NetworkInterfacePrivateIpAddress, ReferencedSecurityGroup,
    };

    use super::*;

    const INSTANCE: &str = "i-0123";

    fn view() -> LocalView {
        LocalView {
            instance_id: INSTANCE.into(),
            region: "us-east-1".into(),
            enis: vec![ImdsEni {
                mac: "02:00:00:00:00:01".into(),
                interface_id: "eni-own".into(),
                security_group_ids: vec!["sg-web".into()],
                local_ipv4s: vec!["10.0.1.10".into()],
                ipv6s: vec![],
                vpc_id: Some("vpc-1".into()),
                subnet_id: Some("subnet-1".into()),
                vpc_ipv4_cidr_block: Some("10.0.0.0/16".into()),
                vpc_ipv4_cidr_blocks: vec!["10.0.0.0/16".into(), "10.1.0.0/16".into()],
                vpc_ipv6_cidr_blocks: vec!["2001:db8:100::/56".into()],
                subnet_ipv4_cidr_block: Some("10.0.1.0/24".into()),
                subnet_ipv6_cidr_blocks: vec!["2001:db8:100::/64".into()],
                device_number: Some(0),
                network_card_index: Some(0),
            }],
        }
    }

    fn eni(id: &str, mac: &str, groups: &[&str], ips: &[&str], instance: Option<&str>) -> NetworkInterface {
        let mut b = NetworkInterface::builder().network_interface_id(id).mac_address(mac).vpc_id("vpc-1");
        for g in groups {
            b = b.groups(GroupIdentifier::builder().group_id(*g).build());
        }
        for (i, ip) in ips.iter().enumerate() {
            b = b.private_ip_addresses(
                NetworkInterfacePrivateIpAddress::builder().private_ip_address(*ip).primary(i == 0).build(),
            );
        }
        if let Some(instance) = instance {
            b = b.attachment(
                NetworkInterfaceAttachment::builder().instance_id(instance).device_index(0).build(),
            );
        }
        b.build()
    }

    fn rule(id: &str, group: &str, egress: bool) -> aws_sdk_ec2::types::builders::SecurityGroupRuleBuilder {
        SecurityGroupRule::builder().security_group_rule_id(id).group_id(group).is_egress(egress)
    }

    fn rules() -> Vec<SecurityGroupRule> {
        vec![
            rule("sgr-3", "sg-web", false)
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .referenced_group_info(
                    ReferencedSecurityGroup::builder().group_id("sg-db").user_id("123").build(),
                )
                .build(),
            rule("sgr-1", "sg-web", false)
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .cidr_ipv4("0.0.0.0/0")
                .build(),
            rule("sgr-2", "sg-web", true)
                .ip_protocol("-1")
                .from_port(-1)
                .to_port(-1)
                .cidr_ipv4("0.0.0.0/0")
                .build(),
            rule("sgr-4", "sg-web", false)
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .prefix_list_id("pl-admin")
                .build(),
        ]
    }

    fn own() -> Vec<NetworkInterface> {
        let mut e =
            eni("eni-own", "02:00:00:00:00:01", &["sg-web"], &["10.0.1.10", "10.0.1.11"], Some(INSTANCE));
        e.connection_tracking_configuration = Some(
            ConnectionTrackingConfiguration::builder().tcp_established_timeout(3600).udp_timeout(-5).build(),
        );
        e.ipv6_addresses =
            Some(vec![NetworkInterfaceIpv6Address::builder().ipv6_address("2001:db8:100::10").build()]);
        e.subnet_id = Some("subnet-1".into());
        vec![e]
    }

    fn members() -> Vec<NetworkInterface> {
        vec![
            eni("eni-db2", "02:00:00:00:00:03", &["sg-db"], &["10.0.2.21"], Some("i-other")),
            eni("eni-db1", "02:00:00:00:00:02", &["sg-db"], &["10.0.2.20"], None),
        ]
    }

    fn lists() -> Vec<(ManagedPrefixList, Vec<PrefixListEntry>)> {
        vec![(
            ManagedPrefixList::builder()
                .prefix_list_id("pl-admin")
                .prefix_list_name("admins")
                .address_family("IPv4")
                .version(3)
                .build(),
            vec![
                PrefixListEntry::builder().cidr("203.0.113.0/24").build(),
                PrefixListEntry::builder().cidr("198.51.100.0/24").description("office").build(),
            ],
        )]
    }

    fn doc() -> Value {
        let (v, o, r, m, l) = (view(), own(), rules(), members(), lists());
        build(Inputs { view: &v, own: &o, rules: &r, members: &m, prefix_lists: &l }).unwrap()
    }

    #[test]
    fn the_document_parses_as_a_snapshot_with_own_and_member_interfaces() {
        let doc = doc();
        let snap = sgmirror_policy::snapshot::parse(&to_text(&doc)).unwrap();
        assert_eq!(snap.instance_id.as_deref(), Some(INSTANCE));
        assert_eq!(snap.own_interface_ids(), ["eni-own"]);
        assert_eq!(snap.interfaces.len(), 3);
        assert_eq!(snap.rules.len(), 4);
        let own = snap.interface("eni-own").unwrap();
        assert_eq!(own.private_ipv4.len(), 2);
        assert_eq!(own.ipv6.len(), 1);
        assert_eq!(own.connection_tracking.unwrap().tcp_established_timeout, Some(3600));
        assert_eq!(own.connection_tracking.unwrap().udp_timeout, None);
        assert_eq!(snap.prefix_list("pl-admin").unwrap().entries.len(), 2);
        let vpc = snap.vpc("vpc-1").unwrap();
        assert_eq!(vpc.cidr_blocks.len(), 2);
        assert_eq!(vpc.ipv6_cidr_blocks.len(), 1);
        assert_eq!(snap.subnet("subnet-1").unwrap().cidr_block.unwrap().to_string(), "10.0.1.0/24");
    }

    #[test]
    fn keys_are_in_a_fixed_order_and_arrays_sorted_by_id() {
        let doc = doc();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["InstanceId", "SecurityGroupRules", "NetworkInterfaces", "PrefixLists", "Vpcs", "Subnets"]
        );
        let ids = |key: &str, id: &str| -> Vec<String> {
            doc[key].as_array().unwrap().iter().map(|v| v[id].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(ids("SecurityGroupRules", "SecurityGroupRuleId"), ["sgr-1", "sgr-2", "sgr-3", "sgr-4"]);
        assert_eq!(ids("NetworkInterfaces", "NetworkInterfaceId"), ["eni-db1", "eni-db2", "eni-own"]);
        let entries: Vec<&str> = doc["PrefixLists"][0]["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Cidr"].as_str().unwrap())
            .collect();
        assert_eq!(entries, ["198.51.100.0/24", "203.0.113.0/24"]);
        let rule_keys: Vec<&String> = doc["SecurityGroupRules"][2].as_object().unwrap().keys().collect();
        assert_eq!(
            rule_keys,
            [
                "SecurityGroupRuleId",
                "GroupId",
                "IsEgress",
                "IpProtocol",
                "FromPort",
                "ToPort",
                "ReferencedGroupInfo"
            ]
        );
    }

    #[test]
    fn input_order_does_not_change_the_text() {
        let (v, o, mut r, mut m, mut l) = (view(), own(), rules(), members(), lists());
        let a =
            to_text(&build(Inputs { view: &v, own: &o, rules: &r, members: &m, prefix_lists: &l }).unwrap());
        r.reverse();
        m.reverse();
        l[0].1.reverse();
        let b =
            to_text(&build(Inputs { view: &v, own: &o, rules: &r, members: &m, prefix_lists: &l }).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn an_own_eni_the_api_misses_comes_from_imds_and_own_wins_over_member() {
        let v = view();
        let r = rules();
        // The own ENI is also a member of a referenced group (self reference): listed once, as own.
        let m = vec![eni("eni-own", "02:00:00:00:00:01", &["sg-web"], &["10.0.1.10"], None)];
        let doc = build(Inputs { view: &v, own: &[], rules: &r, members: &m, prefix_lists: &[] }).unwrap();
        let snap = sgmirror_policy::snapshot::parse(&doc.to_string()).unwrap();
        assert_eq!(snap.interfaces.len(), 1);
        assert_eq!(snap.own_interface_ids(), ["eni-own"]);
        let own = snap.interface("eni-own").unwrap();
        assert_eq!(own.groups, ["sg-web"]);
        assert_eq!(own.device_index, Some(0));
        assert_eq!(own.vpc_id.as_deref(), Some("vpc-1"));
    }

    #[test]
    fn no_interface_at_all_and_rules_without_ids_are_errors() {
        let v = LocalView { instance_id: INSTANCE.into(), region: "r".into(), enis: vec![] };
        assert!(build(Inputs { view: &v, own: &[], rules: &[], members: &[], prefix_lists: &[] }).is_err());
        let v = view();
        let bad = vec![SecurityGroupRule::builder().group_id("sg-web").build()];
        let err =
            build(Inputs { view: &v, own: &[], rules: &bad, members: &[], prefix_lists: &[] }).unwrap_err();
        assert!(err.to_string().contains("DescribeSecurityGroupRules"), "{err}");
    }

    #[test]
    fn groups_and_references_are_collected_sorted() {
        let v = view();
        let mut o = own();
        o[0].groups = Some(vec![GroupIdentifier::builder().group_id("sg-extra").build()]);
        assert_eq!(own_group_ids(&v, &o), ["sg-extra", "sg-web"]);
        let (groups, lists) = references(&rules());
        assert_eq!(groups, ["sg-db"]);
        assert_eq!(lists, ["pl-admin"]);
    }
}
