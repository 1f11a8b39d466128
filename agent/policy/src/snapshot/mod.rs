//! The snapshot: one JSON document in the AWS CLI's own shapes (`DESIGN.md` §2), so a
//! user can assemble one with `aws ec2 describe-*` and sgmirror can write one itself.
//!
//! ```json
//! {
//!   "InstanceId": "i-0123456789abcdef0",
//!   "SecurityGroupRules": [ … describe-security-group-rules … ],
//!   "SecurityGroups": [ … describe-security-groups … ],
//!   "NetworkInterfaces": [ … describe-network-interfaces … ],
//!   "PrefixLists": [ { "PrefixListId": "pl-…", "Entries": [ { "Cidr": "…" } ] } ],
//!   "Vpcs": [ … describe-vpcs … ],
//!   "Subnets": [ … describe-subnets … ]
//! }
//! ```
//!
//! `NetworkInterfaces` (non-empty) and at least one of `SecurityGroupRules` /
//! `SecurityGroups` are required; everything else is optional and unknown keys are
//! ignored. The whole document is validated before [`parse`] returns, so a bad
//! snapshot never yields a half-read policy; every error names its JSON path.

mod error;
mod interfaces;
mod json;
mod net;
mod network;
mod protocol;
mod rules;
mod sections;
mod types;

use std::path::Path;

pub use error::SnapshotError;
use json::Node;
pub use types::{
    AddressFamily, ConnectionTracking, GroupReference, NetworkInterface, Peer, PrefixList, PrefixListEntry,
    Rule, RulesFrom, SecurityGroup, Subnet, Vpc,
};

use crate::model::Warning;

/// A validated snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `InstanceId`: the instance whose interfaces are "own".
    pub instance_id: Option<String>,
    /// Every group the rules keys describe, `SecurityGroupRules` groups first.
    pub groups: Vec<SecurityGroup>,
    /// Every rule, one peer each, in document order (`SecurityGroupRules` first).
    pub rules: Vec<Rule>,
    /// `NetworkInterfaces`: own interfaces and members of referenced groups.
    pub interfaces: Vec<NetworkInterface>,
    /// `PrefixLists`.
    pub prefix_lists: Vec<PrefixList>,
    /// `Vpcs`.
    pub vpcs: Vec<Vpc>,
    /// `Subnets`.
    pub subnets: Vec<Subnet>,
    /// Things read but worth a look (a CIDR with host bits set, a permission without
    /// sources). Resolving adds its own, per interface.
    pub warnings: Vec<Warning>,
}

/// Parses and validates a snapshot document.
pub fn parse(json: &str) -> Result<Snapshot, SnapshotError> {
    let sections = sections::Sections::split(json)?;
    let root = Node::root(&sections.root).object()?;

    let interface_nodes = root.require("NetworkInterfaces")?.array()?;
    if interface_nodes.is_empty() {
        return Err(
            root.error_at("NetworkInterfaces", "is empty: list at least the instance's own interfaces")
        );
    }
    let rule_nodes = root.array_if_present("SecurityGroupRules")?;
    let group_nodes = root.array_if_present("SecurityGroups")?;
    if rule_nodes.is_none() && group_nodes.is_none() {
        return Err(root.error(
            "needs SecurityGroupRules or SecurityGroups (either may be an empty array): \
             without them no rule is known",
        ));
    }
    let instance_id = root.opt_string("InstanceId")?.map(str::to_owned);

    let parsed =
        rules::parse(rule_nodes.as_deref().unwrap_or_default(), group_nodes.as_deref().unwrap_or_default())?;
    let mut warnings = parsed.warnings;
    let interfaces = interfaces::parse(&interface_nodes)?;
    let prefix_lists = network::prefix_lists(sections.streamed("PrefixLists"), &mut warnings)?;
    let vpcs = network::vpcs(&root.opt_array("Vpcs")?, &mut warnings)?;
    let subnets = network::subnets(&root.opt_array("Subnets")?, &mut warnings)?;

    if let Some(instance) = &instance_id
        && !interfaces.iter().any(|i| i.instance_id.as_deref() == Some(instance))
    {
        return Err(root.error_at(
            "InstanceId",
            format!(
                "no interface in NetworkInterfaces is attached to instance {instance} \
                 (Attachment.InstanceId)"
            ),
        ));
    }

    Ok(Snapshot {
        instance_id,
        groups: parsed.groups,
        rules: parsed.rules,
        interfaces,
        prefix_lists,
        vpcs,
        subnets,
        warnings,
    })
}

/// Reads and parses a snapshot file.
pub fn load(path: &Path) -> Result<Snapshot, SnapshotError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SnapshotError::new("$", format!("cannot read snapshot file {}: {e}", path.display())))?;
    parse(&text)
}

/// `$: not valid JSON at line 3 column 5: expected `:``.
fn invalid_json(e: &serde_json::Error) -> SnapshotError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    SnapshotError::new("$", format!("not valid JSON at line {} column {}: {what}", e.line(), e.column()))
}

impl Snapshot {
    /// Interfaces whose `Attachment.InstanceId` is `InstanceId`; every interface when the
    /// snapshot has no `InstanceId`.
    pub fn own_interface_ids(&self) -> Vec<String> {
        self.interfaces
            .iter()
            .filter(|i| match &self.instance_id {
                Some(instance) => i.instance_id.as_ref() == Some(instance),
                None => true,
            })
            .map(|i| i.id.clone())
            .collect()
    }

    /// (interface id, MAC in lower case) of every interface that has a MAC.
    pub fn interface_macs(&self) -> Vec<(String, String)> {
        self.interfaces.iter().filter_map(|i| i.mac.as_ref().map(|m| (i.id.clone(), m.clone()))).collect()
    }

    /// Whether `NetworkInterfaces` has this interface.
    pub fn has_interface(&self, id: &str) -> bool {
        self.interface(id).is_some()
    }

    /// One interface by id.
    pub fn interface(&self, id: &str) -> Option<&NetworkInterface> {
        self.interfaces.iter().find(|i| i.id == id)
    }

    /// One group by id, when the rules keys describe it.
    pub fn group(&self, id: &str) -> Option<&SecurityGroup> {
        self.groups.iter().find(|g| g.group_id == id)
    }

    /// One prefix list by id.
    pub fn prefix_list(&self, id: &str) -> Option<&PrefixList> {
        self.prefix_lists.iter().find(|p| p.id == id)
    }

    /// One VPC by id.
    pub fn vpc(&self, id: &str) -> Option<&Vpc> {
        self.vpcs.iter().find(|v| v.id == id)
    }

    /// One subnet by id.
    pub fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// The rules of one group, in document order.
    pub fn rules_of<'a>(&'a self, group_id: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.group_id == group_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
      "InstanceId": "i-1",
      "SecurityGroups": [],
      "NetworkInterfaces": [
        {"NetworkInterfaceId": "eni-a", "MacAddress": "0A:00:00:00:00:01",
         "Attachment": {"InstanceId": "i-1", "DeviceIndex": 0}},
        {"NetworkInterfaceId": "eni-b", "MacAddress": "0a:00:00:00:00:02",
         "Attachment": {"InstanceId": "i-2"}},
        {"NetworkInterfaceId": "eni-c"}
      ]
    }"#;

    #[test]
    fn own_interfaces_follow_the_instance_id() {
        let snap = parse(MINIMAL).unwrap();
        assert_eq!(snap.own_interface_ids(), ["eni-a"]);
        assert!(snap.has_interface("eni-c"));
        assert!(!snap.has_interface("eni-z"));
        assert_eq!(
            snap.interface_macs(),
            [
                ("eni-a".to_owned(), "0a:00:00:00:00:01".to_owned()),
                ("eni-b".to_owned(), "0a:00:00:00:00:02".to_owned())
            ]
        );
        let mut doc: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
        doc.as_object_mut().unwrap().remove("InstanceId");
        let snap = parse(&doc.to_string()).unwrap();
        assert_eq!(snap.own_interface_ids(), ["eni-a", "eni-b", "eni-c"]);
    }

    #[test]
    fn instance_id_must_name_an_attached_interface() {
        let doc = MINIMAL.replacen(r#""InstanceId": "i-1","#, r#""InstanceId": "i-9","#, 1);
        let err = parse(&doc).unwrap_err();
        assert_eq!(err.path(), "$.InstanceId");
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let err = parse("{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        assert_eq!(err.path(), "$");
        assert!(err.problem().starts_with("not valid JSON at line 3 column 7: "), "{err}");
        assert!(!err.problem().ends_with("column 7"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let err = load(Path::new("/nonexistent/snap.json")).unwrap_err();
        assert_eq!(err.path(), "$");
        assert!(err.problem().contains("/nonexistent/snap.json"), "{err}");
    }
}
