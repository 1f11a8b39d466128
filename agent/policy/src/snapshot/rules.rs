//! `SecurityGroupRules` and `SecurityGroups` → one list of single-peer [`Rule`]s.
//!
//! The two keys are the two API views of the same rules (`sg-semantics.md` §1.1):
//! `describe-security-group-rules` prints one rule per peer with its `sgr-` id;
//! `describe-security-groups` prints permissions with many peers each, which are
//! expanded here into one rule per peer with a synthetic id
//! `GROUP_ID/ingress|egress/PERMISSION_INDEX/SOURCE_INDEX` (sources counted across
//! `IpRanges`, `Ipv6Ranges`, `PrefixListIds`, `UserIdGroupPairs`, in that order).
//! When both keys describe a group, `SecurityGroupRules` wins: it carries the real ids.

use std::collections::BTreeMap;

use super::error::SnapshotError;
use super::json::{Node, Object};
use super::net::{self, Family};
use super::protocol::protocol;
use super::types::{GroupReference, Peer, Rule, RulesFrom, SecurityGroup};
use crate::model::{Direction, Warning};

/// The peer keys of a `SecurityGroupRules` entry, exactly one of which must be present.
const PEER_KEYS: [&str; 4] = ["CidrIpv4", "CidrIpv6", "PrefixListId", "ReferencedGroupInfo"];

/// The rules, groups and warnings of both keys, merged.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) groups: Vec<SecurityGroup>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) warnings: Vec<Warning>,
}

/// One `SecurityGroups` entry, read.
struct GroupEntry {
    group: SecurityGroup,
    rules: Vec<Rule>,
    warnings: Vec<Warning>,
}

/// Reads both keys (either may be absent) and merges them.
pub(crate) fn parse(rule_nodes: &[Node<'_>], group_nodes: &[Node<'_>]) -> Result<Parsed, SnapshotError> {
    let mut out = Parsed::default();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut rule_groups: BTreeMap<String, usize> = BTreeMap::new();
    for node in rule_nodes {
        let rule = security_group_rule(node, &mut out.warnings)?;
        let id_path = format!("{}.SecurityGroupRuleId", node.path());
        if let Some(first) = ids.insert(rule.id.clone(), node.path().to_owned()) {
            return Err(SnapshotError::new(
                id_path,
                format!("rule {} is listed twice (also at {first})", rule.id),
            ));
        }
        if !rule_groups.contains_key(&rule.group_id) {
            rule_groups.insert(rule.group_id.clone(), out.groups.len());
            out.groups.push(SecurityGroup {
                group_id: rule.group_id.clone(),
                group_name: None,
                vpc_id: None,
                owner_id: rule.group_owner_id.clone(),
                rules_from: RulesFrom::SecurityGroupRules,
                path: node.path().to_owned(),
            });
        }
        out.rules.push(rule);
    }

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for node in group_nodes {
        let entry = security_group(node)?;
        let id = &entry.group.group_id;
        if let Some(first) = seen.insert(id.clone(), node.path().to_owned()) {
            return Err(SnapshotError::new(
                format!("{}.GroupId", node.path()),
                format!("group {id} is described twice (also at {first})"),
            ));
        }
        if let Some(&index) = rule_groups.get(id) {
            // SecurityGroupRules wins for the rules; the entry still names the group.
            tracing::debug!(group = %id, "rules taken from SecurityGroupRules, not SecurityGroups");
            let known = &mut out.groups[index];
            known.group_name = entry.group.group_name;
            known.vpc_id = entry.group.vpc_id;
            known.owner_id = known.owner_id.take().or(entry.group.owner_id);
            continue;
        }
        out.groups.push(entry.group);
        out.rules.extend(entry.rules);
        out.warnings.extend(entry.warnings);
    }
    Ok(out)
}

/// One `describe-security-group-rules` entry.
fn security_group_rule(node: &Node<'_>, warnings: &mut Vec<Warning>) -> Result<Rule, SnapshotError> {
    let obj = node.object()?;
    let id = obj.string("SecurityGroupRuleId")?.to_owned();
    let group_id = obj.string("GroupId")?.to_owned();
    let group_owner_id = obj.opt_string("GroupOwnerId")?.map(str::to_owned);
    let direction = match obj.require("IsEgress")?.boolean()? {
        true => Direction::Egress,
        false => Direction::Ingress,
    };
    let protocol = protocol(&obj)?;
    let present: Vec<&str> = PEER_KEYS.into_iter().filter(|k| obj.has(k)).collect();
    let key = match present.as_slice() {
        [key] => *key,
        [] => {
            return Err(obj.error(
                "names no peer: a rule needs exactly one of CidrIpv4, CidrIpv6, PrefixListId \
                 or ReferencedGroupInfo",
            ));
        }
        many => {
            return Err(obj.error(format!(
                "names more than one peer ({}): a rule has exactly one of CidrIpv4, CidrIpv6, \
                 PrefixListId or ReferencedGroupInfo",
                many.join(", ")
            )));
        }
    };
    let value = obj.require(key)?;
    let peer = match key {
        "CidrIpv4" => cidr_peer(&value, Family::V4, "CidrIpv6", warnings)?,
        "CidrIpv6" => cidr_peer(&value, Family::V6, "CidrIpv4", warnings)?,
        "PrefixListId" => Peer::PrefixList(value.string()?.to_owned()),
        _ => Peer::Group(group_reference(&value.object()?)?),
    };
    Ok(Rule {
        id,
        group_id,
        group_owner_id,
        direction,
        protocol,
        peer,
        description: obj.opt_string("Description")?.map(str::to_owned),
        path: node.path().to_owned(),
    })
}

/// One `describe-security-groups` entry, its permissions expanded to rules.
fn security_group(node: &Node<'_>) -> Result<GroupEntry, SnapshotError> {
    let obj = node.object()?;
    let group = SecurityGroup {
        group_id: obj.string("GroupId")?.to_owned(),
        group_name: obj.opt_string("GroupName")?.map(str::to_owned),
        vpc_id: obj.opt_string("VpcId")?.map(str::to_owned),
        owner_id: obj.opt_string("OwnerId")?.map(str::to_owned),
        rules_from: RulesFrom::SecurityGroups,
        path: node.path().to_owned(),
    };
    let mut rules = Vec::new();
    let mut warnings = Vec::new();
    for (direction, key) in
        [(Direction::Ingress, "IpPermissions"), (Direction::Egress, "IpPermissionsEgress")]
    {
        for (index, permission) in obj.opt_array(key)?.iter().enumerate() {
            let before = rules.len();
            let expand = Expand { group: &group, direction, permission: index };
            expand.permission(&permission.object()?, &mut rules, &mut warnings)?;
            if rules.len() == before {
                warnings.push(Warning {
                    path: permission.path().to_owned(),
                    message: "this permission names no source (IpRanges, Ipv6Ranges, \
                              PrefixListIds, UserIdGroupPairs); it allows nothing"
                        .to_owned(),
                });
            }
        }
    }
    Ok(GroupEntry { group, rules, warnings })
}

/// Expands one `IpPermission` of one group.
struct Expand<'g> {
    group: &'g SecurityGroup,
    direction: Direction,
    permission: usize,
}

impl Expand<'_> {
    fn permission(
        &self,
        obj: &Object<'_>,
        rules: &mut Vec<Rule>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), SnapshotError> {
        let protocol = protocol(obj)?;
        let mut sources: Vec<(Node<'_>, Peer, Option<String>)> = Vec::new();
        for node in obj.opt_array("IpRanges")? {
            let src = node.object()?;
            let peer = cidr_peer(&src.require("CidrIp")?, Family::V4, "Ipv6Ranges", warnings)?;
            sources.push((node, peer, description(&src)?));
        }
        for node in obj.opt_array("Ipv6Ranges")? {
            let src = node.object()?;
            let peer = cidr_peer(&src.require("CidrIpv6")?, Family::V6, "IpRanges", warnings)?;
            sources.push((node, peer, description(&src)?));
        }
        for node in obj.opt_array("PrefixListIds")? {
            let src = node.object()?;
            let peer = Peer::PrefixList(src.string("PrefixListId")?.to_owned());
            sources.push((node, peer, description(&src)?));
        }
        for node in obj.opt_array("UserIdGroupPairs")? {
            let src = node.object()?;
            let peer = Peer::Group(group_reference(&src)?);
            sources.push((node, peer, description(&src)?));
        }
        for (index, (node, peer, description)) in sources.into_iter().enumerate() {
            rules.push(Rule {
                id: format!(
                    "{}/{}/{}/{index}",
                    self.group.group_id,
                    self.direction.as_str(),
                    self.permission
                ),
                group_id: self.group.group_id.clone(),
                group_owner_id: self.group.owner_id.clone(),
                direction: self.direction,
                protocol,
                peer,
                description,
                path: node.path().to_owned(),
            });
        }
        Ok(())
    }
}

fn description(obj: &Object<'_>) -> Result<Option<String>, SnapshotError> {
    Ok(obj.opt_string("Description")?.map(str::to_owned))
}

fn cidr_peer(
    node: &Node<'_>,
    family: Family,
    other_field: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Peer, SnapshotError> {
    let cidr = net::cidr(node, Some(family), other_field)?;
    warnings.extend(cidr.warning);
    Ok(Peer::Cidr { written: cidr.written, net: cidr.net })
}

/// `ReferencedGroupInfo` or a `UserIdGroupPair` (same fields).
fn group_reference(obj: &Object<'_>) -> Result<GroupReference, SnapshotError> {
    Ok(GroupReference {
        group_id: obj.string("GroupId")?.to_owned(),
        user_id: obj.opt_string("UserId")?.map(str::to_owned),
        vpc_id: obj.opt_string("VpcId")?.map(str::to_owned),
        vpc_peering_connection_id: obj.opt_string("VpcPeeringConnectionId")?.map(str::to_owned),
        peering_status: obj.opt_string("PeeringStatus")?.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{IcmpMatch, PortRange, Protocol};

    fn run(rules: Value, groups: Value) -> Result<Parsed, SnapshotError> {
        let doc = json!({"SecurityGroupRules": rules, "SecurityGroups": groups});
        let root = Node::root(&doc).object().unwrap();
        parse(&root.opt_array("SecurityGroupRules")?, &root.opt_array("SecurityGroups")?)
    }

    fn ids(parsed: &Parsed) -> Vec<&str> {
        parsed.rules.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn permissions_expand_to_one_rule_per_source_with_synthetic_ids() {
        let groups = json!([{
            "GroupId": "sg-1",
            "GroupName": "web",
            "OwnerId": "111122223333",
            "IpPermissions": [
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                 "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "192.0.2.0/24"}],
                 "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}],
                 "PrefixListIds": [{"PrefixListId": "pl-1"}],
                 "UserIdGroupPairs": [{"GroupId": "sg-2", "UserId": "111122223333"}]},
                {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
                 "UserIdGroupPairs": [{"GroupId": "sg-1"}]}
            ],
            "IpPermissionsEgress": [
                {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            ]
        }]);
        let parsed = run(json!([]), groups).unwrap();
        assert_eq!(
            ids(&parsed),
            [
                "sg-1/ingress/0/0",
                "sg-1/ingress/0/1",
                "sg-1/ingress/0/2",
                "sg-1/ingress/0/3",
                "sg-1/ingress/0/4",
                "sg-1/ingress/1/0",
                "sg-1/egress/0/0",
            ]
        );
        let r = &parsed.rules;
        assert_eq!(r[2].peer.source(), crate::model::PeerSource::CidrIpv6("2001:db8::/32".into()));
        assert_eq!(r[3].peer, Peer::PrefixList("pl-1".into()));
        assert!(matches!(&r[4].peer, Peer::Group(g) if g.group_id == "sg-2"));
        assert_eq!(r[4].path, "$.SecurityGroups[0].IpPermissions[0].UserIdGroupPairs[0]");
        assert_eq!(r[0].path, "$.SecurityGroups[0].IpPermissions[0].IpRanges[0]");
        assert_eq!(r[0].protocol, Protocol::Tcp(PortRange { from: 80, to: 80 }));
        assert_eq!(r[5].protocol, Protocol::Icmp(IcmpMatch::Type { icmp_type: 8 }));
        assert_eq!(r[6].direction, Direction::Egress);
        assert_eq!(r[6].protocol, Protocol::All);
        assert_eq!(r[0].group_owner_id.as_deref(), Some("111122223333"));
        assert!(parsed.warnings.is_empty());
        assert_eq!(parsed.groups.len(), 1);
        assert_eq!(parsed.groups[0].rules_from, RulesFrom::SecurityGroups);
    }

    #[test]
    fn security_group_rules_win_over_security_groups_for_the_same_group() {
        let rules = json!([{
            "SecurityGroupRuleId": "sgr-a", "GroupId": "sg-1", "IsEgress": false,
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIpv4": "192.0.2.1/32"
        }]);
        let groups = json!([
            {"GroupId": "sg-1", "GroupName": "one",
             "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                                "IpRanges": [{"CidrIp": "10.0.0.5/8"}]}]},
            {"GroupId": "sg-2",
             "IpPermissions": [{"IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
                                "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]}
        ]);
        let parsed = run(rules, groups).unwrap();
        assert_eq!(ids(&parsed), ["sgr-a", "sg-2/ingress/0/0"]);
        // The ignored permission's host-bits warning is not reported: it is not used.
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let one = &parsed.groups[0];
        assert_eq!(one.group_id, "sg-1");
        assert_eq!(one.rules_from, RulesFrom::SecurityGroupRules);
        assert_eq!(one.group_name.as_deref(), Some("one"));
        assert_eq!(parsed.groups[1].rules_from, RulesFrom::SecurityGroups);
    }

    #[test]
    fn ignored_permissions_are_still_validated() {
        let rules = json!([{
            "SecurityGroupRuleId": "sgr-a", "GroupId": "sg-1", "IsEgress": true,
            "IpProtocol": "-1", "CidrIpv4": "0.0.0.0/0"
        }]);
        let groups = json!([{"GroupId": "sg-1",
            "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80,
                               "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]}]);
        let err = run(rules, groups).unwrap_err();
        assert_eq!(err.path(), "$.SecurityGroups[0].IpPermissions[0].FromPort");
    }

    #[test]
    fn a_permission_without_sources_warns() {
        let groups = json!([{"GroupId": "sg-1",
            "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80}]}]);
        let parsed = run(json!([]), groups).unwrap();
        assert!(parsed.rules.is_empty());
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].path, "$.SecurityGroups[0].IpPermissions[0]");
    }

    #[test]
    fn duplicates_are_errors() {
        let rule = json!({"SecurityGroupRuleId": "sgr-a", "GroupId": "sg-1", "IsEgress": true,
                          "IpProtocol": "-1", "CidrIpv4": "0.0.0.0/0"});
        let err = run(json!([rule, rule]), json!([])).unwrap_err();
        assert_eq!(err.path(), "$.SecurityGroupRules[1].SecurityGroupRuleId");
        let err = run(json!([]), json!([{"GroupId": "sg-1"}, {"GroupId": "sg-1"}])).unwrap_err();
        assert_eq!(err.path(), "$.SecurityGroups[1].GroupId");
        assert!(err.problem().contains("described twice"));
    }
}
