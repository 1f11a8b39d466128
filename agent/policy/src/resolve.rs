//! Snapshot → the resolved policy of one interface (ENI).
//!
//! AWS enforces per ENI the union of the allow rules of the ENI's groups
//! (`sg-semantics.md` §1.1, §1.6). Resolving turns each rule's peer into concrete
//! prefixes, as they stand in the snapshot:
//!
//! - a CIDR block is its network part;
//! - a prefix list is its entries;
//! - a referenced group (its own group included) is the private IPv4 addresses,
//!   primary and secondary, and the IPv6 addresses of every ENI in the snapshot that
//!   holds the group, as /32 and /128 — never public or Elastic IPs, which AWS does not
//!   match either.
//!
//! A peer that cannot be resolved (a prefix list or group that is not in the snapshot, a
//! group across a peering connection or in another account whose members are not
//! visible, a stale peering) allows nothing — the safe reading — and is reported as a
//! warning, never dropped silently.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::exempt::FIXED_ADDRESSES;
use crate::model::{Direction, InterfacePolicy, ResolvedRule, Warning};
use crate::snapshot::{GroupReference, NetworkInterface, Peer, Rule, Snapshot};

/// Why an interface cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The id is not in the snapshot's `NetworkInterfaces`.
    #[error("interface {0} is not in the snapshot's NetworkInterfaces")]
    UnknownInterface(String),
}

/// Resolves the policy of one interface: the union of its groups' rules (by group in
/// the interface's order, then in document order) with every peer expanded, its own
/// addresses, and the addresses AWS never filters for it.
///
/// The warnings are this interface's only; the snapshot's own parse warnings are in
/// [`Snapshot::warnings`].
pub fn resolve_interface(
    snapshot: &Snapshot,
    interface_id: &str,
) -> Result<(InterfacePolicy, Vec<Warning>), ResolveError> {
    let eni = snapshot
        .interface(interface_id)
        .ok_or_else(|| ResolveError::UnknownInterface(interface_id.to_owned()))?;
    let mut resolver = Resolver { snapshot, members: HashMap::new(), warnings: Vec::new() };

    if eni.groups.is_empty() {
        resolver.warn(
            format!("{}.Groups", eni.path),
            format!("interface {} has no security groups; all its traffic is dropped", eni.id),
        );
    }
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    for (index, group_id) in eni.groups.iter().enumerate() {
        if snapshot.group(group_id).is_none() {
            resolver.warn(
                format!("{}.Groups[{index}]", eni.path),
                format!(
                    "group {group_id} of {} has no rules in the snapshot; it allows nothing \
                     beyond the other groups",
                    eni.id
                ),
            );
        }
        for rule in snapshot.rules_of(group_id) {
            let resolved = ResolvedRule {
                id: rule.id.clone(),
                group_id: rule.group_id.clone(),
                direction: rule.direction,
                protocol: rule.protocol,
                source: rule.peer.source(),
                peers: resolver.peers(rule),
            };
            match rule.direction {
                Direction::Ingress => ingress.push(resolved),
                Direction::Egress => egress.push(resolved),
            }
        }
    }
    let exempt = resolver.exempt(eni);

    let policy = InterfacePolicy {
        interface_id: eni.id.clone(),
        mac: eni.mac.clone(),
        groups: eni.groups.clone(),
        addresses: eni.addresses(),
        ingress,
        egress,
        exempt,
        timeouts: timeouts(eni.connection_tracking),
    };
    Ok((policy, resolver.warnings))
}

/// AWS's default idle timeouts with the interface's own `ConnectionTrackingConfiguration`
/// applied over them.
fn timeouts(configured: Option<crate::snapshot::ConnectionTracking>) -> crate::model::Timeouts {
    let mut timeouts = crate::model::Timeouts::DEFAULT;
    if let Some(c) = configured {
        timeouts.tcp_established = c.tcp_established_timeout.unwrap_or(timeouts.tcp_established);
        timeouts.udp = c.udp_timeout.unwrap_or(timeouts.udp);
        timeouts.udp_stream = c.udp_stream_timeout.unwrap_or(timeouts.udp_stream);
    }
    timeouts
}

/// The state of one resolution: member addresses per group (computed once) and the
/// warnings so far.
struct Resolver<'s> {
    snapshot: &'s Snapshot,
    members: HashMap<&'s str, Vec<IpNet>>,
    warnings: Vec<Warning>,
}

impl<'s> Resolver<'s> {
    fn warn(&mut self, path: String, message: String) {
        self.warnings.push(Warning { path, message });
    }

    /// The prefixes a rule's peer stands for, sorted and deduplicated.
    fn peers(&mut self, rule: &'s Rule) -> Vec<IpNet> {
        let mut peers = match &rule.peer {
            Peer::Cidr { net, .. } => vec![*net],
            Peer::PrefixList(id) => match self.snapshot.prefix_list(id) {
                Some(list) => list.entries.iter().map(|e| e.cidr).collect(),
                None => {
                    self.warn(
                        rule.path.clone(),
                        format!(
                            "rule {} references prefix list {id}, which is not in PrefixLists; \
                             the rule allows nothing",
                            rule.id
                        ),
                    );
                    Vec::new()
                }
            },
            Peer::Group(reference) => self.group_peers(rule, reference),
        };
        peers.sort();
        peers.dedup();
        peers
    }

    fn group_peers(&mut self, rule: &Rule, reference: &'s GroupReference) -> Vec<IpNet> {
        let group = reference.group_id.as_str();
        let nothing = |what: String| {
            format!("rule {} references group {group}{what}; the rule allows nothing", rule.id)
        };
        if let Some(status) = &reference.peering_status
            && !status.eq_ignore_ascii_case("active")
        {
            let pcx = reference.vpc_peering_connection_id.as_deref().unwrap_or("(unnamed)");
            let message = nothing(format!(" across peering connection {pcx}, which is {status}, not active"));
            self.warn(rule.path.clone(), message);
            return Vec::new();
        }
        let members = self.members(group);
        if !members.is_empty() {
            return members;
        }
        let other_account = match (&reference.user_id, &rule.group_owner_id) {
            (Some(user), Some(owner)) => user != owner,
            _ => false,
        };
        let invisible = ", and none of its member interfaces are in NetworkInterfaces";
        let message = if let Some(pcx) = &reference.vpc_peering_connection_id {
            Some(nothing(format!(" across peering connection {pcx}{invisible}")))
        } else if other_account {
            let user = reference.user_id.as_deref().unwrap_or_default();
            Some(nothing(format!(" of account {user}{invisible}")))
        } else if !self.is_known(group) {
            Some(nothing(
                ", which is not in the snapshot (no rules, no member interfaces): it may be \
                 stale, deleted, or in a peer VPC"
                    .to_owned(),
            ))
        } else {
            // A group that exists but has no members right now: nothing to allow, as in AWS.
            None
        };
        if let Some(message) = message {
            self.warn(rule.path.clone(), message);
        }
        Vec::new()
    }

    /// Whether the snapshot knows the group at all: described by the rules keys or held
    /// by some interface.
    fn is_known(&self, group: &str) -> bool {
        self.snapshot.group(group).is_some()
            || self.snapshot.interfaces.iter().any(|i| i.groups.iter().any(|g| g == group))
    }

    /// The private addresses of every interface that holds `group`, as host prefixes.
    fn members(&mut self, group: &'s str) -> Vec<IpNet> {
        let snapshot = self.snapshot;
        self.members
            .entry(group)
            .or_insert_with(|| {
                snapshot
                    .interfaces
                    .iter()
                    .filter(|i| i.groups.iter().any(|g| g == group))
                    .flat_map(|i| i.addresses())
                    .map(host_prefix)
                    .collect()
            })
            .clone()
    }

    /// `exempt::FIXED_ADDRESSES`, the VPC's DNS resolver (primary IPv4 block base + 2)
    /// and the subnet router (subnet base + 1), sorted.
    fn exempt(&mut self, eni: &NetworkInterface) -> Vec<IpAddr> {
        let mut exempt: Vec<IpAddr> = FIXED_ADDRESSES.to_vec();
        if let Some(vpc_id) = &eni.vpc_id {
            match self.snapshot.vpc(vpc_id) {
                Some(vpc) => exempt.extend(vpc.cidr_block.and_then(|b| offset(b, 2))),
                None if !self.snapshot.vpcs.is_empty() => self.warn(
                    format!("{}.VpcId", eni.path),
                    format!(
                        "VPC {vpc_id} of {} is not in Vpcs: its DNS resolver (VPC base + 2) is \
                         not exempt, so DNS to it needs a rule",
                        eni.id
                    ),
                ),
                None => {}
            }
        }
        if let Some(subnet_id) = &eni.subnet_id {
            match self.snapshot.subnet(subnet_id) {
                Some(subnet) => exempt.extend(subnet.cidr_block.and_then(|b| offset(b, 1))),
                None if !self.snapshot.subnets.is_empty() => self.warn(
                    format!("{}.SubnetId", eni.path),
                    format!(
                        "subnet {subnet_id} of {} is not in Subnets: its router (subnet base + \
                         1) is not exempt",
                        eni.id
                    ),
                ),
                None => {}
            }
        }
        exempt.sort();
        exempt.dedup();
        exempt
    }
}

/// `addr` as a /32 or /128.
fn host_prefix(addr: IpAddr) -> IpNet {
    match addr {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::from(a)),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::from(a)),
    }
}

/// The address `n` after the block's base, when the block is that big.
fn offset(block: Ipv4Net, n: u32) -> Option<IpAddr> {
    let addr = Ipv4Addr::from(u32::from(block.network()).checked_add(n)?);
    block.contains(&addr).then_some(IpAddr::V4(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_inside_the_block() {
        let block: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        assert_eq!(offset(block, 2), Some("10.0.0.2".parse().unwrap()));
        let tiny: Ipv4Net = "10.0.0.4/31".parse().unwrap();
        assert_eq!(offset(tiny, 1), Some("10.0.0.5".parse().unwrap()));
        assert_eq!(offset(tiny, 2), None);
        let top: Ipv4Net = "255.255.255.255/32".parse().unwrap();
        assert_eq!(offset(top, 1), None);
    }

    #[test]
    fn unknown_interface_is_an_error() {
        let snap = crate::snapshot::parse(
            r#"{"SecurityGroupRules": [], "NetworkInterfaces": [{"NetworkInterfaceId": "eni-a"}]}"#,
        )
        .unwrap();
        let err = resolve_interface(&snap, "eni-b").unwrap_err();
        assert_eq!(err, ResolveError::UnknownInterface("eni-b".into()));
        assert!(err.to_string().contains("eni-b"));
    }
}
