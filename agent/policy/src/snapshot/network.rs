//! `PrefixLists`, `Vpcs` and `Subnets`: the address data rules and exemptions refer to.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use ipnet::IpNet;

use super::error::SnapshotError;
use super::json::Node;
use super::net;
use super::types::{AddressFamily, PrefixList, PrefixListEntry, Subnet, Vpc};
use crate::model::Warning;

/// Fails when `id` was already seen, naming the first place.
fn unique(
    seen: &mut BTreeMap<String, String>,
    id: &str,
    node: &Node<'_>,
    key: &str,
    what: &str,
) -> Result<(), SnapshotError> {
    match seen.insert(id.to_owned(), node.path().to_owned()) {
        Some(first) => Err(SnapshotError::new(
            format!("{}.{key}", node.path()),
            format!("{what} {id} is listed twice (also at {first})"),
        )),
        None => Ok(()),
    }
}

/// Reads `PrefixLists`: the `describe-managed-prefix-lists` object plus its `Entries`
/// from `get-managed-prefix-list-entries`.
pub(crate) fn prefix_lists(
    lists: Option<&RawValue>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<PrefixList>, SnapshotError> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    super::sections::for_each_element(lists, "$.PrefixLists", |node| {
        out.push(prefix_list(&node, &mut seen, warnings)?);
        Ok(())
    })?;
    Ok(out)
}

/// One element of `PrefixLists`.
fn prefix_list(
    node: &Node<'_>,
    seen: &mut BTreeMap<String, String>,
    warnings: &mut Vec<Warning>,
) -> Result<PrefixList, SnapshotError> {
    let obj = node.object()?;
    let id = obj.string("PrefixListId")?;
    unique(seen, id, node, "PrefixListId", "prefix list")?;
    let address_family = match obj.opt_string("AddressFamily")? {
        None => None,
        Some(f) if f.eq_ignore_ascii_case("ipv4") => Some(AddressFamily::Ipv4),
        Some(f) if f.eq_ignore_ascii_case("ipv6") => Some(AddressFamily::Ipv6),
        Some(f) => {
            return Err(
                obj.error_at("AddressFamily", format!("unknown address family {f:?}: expected IPv4 or IPv6"))
            );
        }
    };
    let entry_nodes = obj.require("Entries").map_err(|_| {
        obj.error_at("Entries", "missing: add the list's entries (aws ec2 get-managed-prefix-list-entries)")
    })?;
    let mut entries = Vec::new();
    for entry in entry_nodes.array()? {
        let e = entry.object()?;
        let cidr_node = e.require("Cidr")?;
        let cidr = net::cidr(&cidr_node, None, "")?;
        let family = match cidr.net {
            IpNet::V4(_) => AddressFamily::Ipv4,
            IpNet::V6(_) => AddressFamily::Ipv6,
        };
        if let Some(want) = address_family
            && want != family
        {
            return Err(cidr_node.error(format!(
                "{} is an {} CIDR block but the prefix list's AddressFamily is {}",
                cidr.written,
                family.as_str(),
                want.as_str()
            )));
        }
        warnings.extend(cidr.warning);
        entries.push(PrefixListEntry {
            written: cidr.written,
            cidr: cidr.net,
            description: e.opt_string("Description")?.map(str::to_owned),
        });
    }
    Ok(PrefixList {
        id: id.to_owned(),
        name: obj.opt_string("PrefixListName")?.map(str::to_owned),
        address_family,
        version: obj.opt_integer("Version")?,
        entries,
        path: node.path().to_owned(),
    })
}

/// Reads `Vpcs` (`describe-vpcs`).
pub(crate) fn vpcs(nodes: &[Node<'_>], warnings: &mut Vec<Warning>) -> Result<Vec<Vpc>, SnapshotError> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let obj = node.object()?;
        let id = obj.string("VpcId")?;
        unique(&mut seen, id, node, "VpcId", "VPC")?;
        let cidr_block = match obj.get("CidrBlock") {
            Some(n) => Some(net::cidr_v4(&n, "Ipv6CidrBlockAssociationSet", warnings)?),
            None => None,
        };
        let mut cidr_blocks: Vec<_> = cidr_block.into_iter().collect();
        for assoc in obj.opt_array("CidrBlockAssociationSet")? {
            let n = assoc.object()?.require("CidrBlock")?;
            let block = net::cidr_v4(&n, "Ipv6CidrBlockAssociationSet", warnings)?;
            if !cidr_blocks.contains(&block) {
                cidr_blocks.push(block);
            }
        }
        let ipv6_cidr_blocks = ipv6_blocks(&obj, warnings)?;
        out.push(Vpc {
            id: id.to_owned(),
            cidr_block: cidr_block.or_else(|| cidr_blocks.first().copied()),
            cidr_blocks,
            ipv6_cidr_blocks,
            path: node.path().to_owned(),
        });
    }
    Ok(out)
}

/// Reads `Subnets` (`describe-subnets`).
pub(crate) fn subnets(nodes: &[Node<'_>], warnings: &mut Vec<Warning>) -> Result<Vec<Subnet>, SnapshotError> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let obj = node.object()?;
        let id = obj.string("SubnetId")?;
        unique(&mut seen, id, node, "SubnetId", "subnet")?;
        let cidr_block = match obj.get("CidrBlock") {
            Some(n) => Some(net::cidr_v4(&n, "Ipv6CidrBlockAssociationSet", warnings)?),
            None => None,
        };
        out.push(Subnet {
            id: id.to_owned(),
            vpc_id: obj.opt_string("VpcId")?.map(str::to_owned),
            cidr_block,
            ipv6_cidr_blocks: ipv6_blocks(&obj, warnings)?,
            path: node.path().to_owned(),
        });
    }
    Ok(out)
}

fn ipv6_blocks(
    obj: &super::json::Object<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<ipnet::Ipv6Net>, SnapshotError> {
    let mut blocks = Vec::new();
    for assoc in obj.opt_array("Ipv6CidrBlockAssociationSet")? {
        let n = assoc.object()?.require("Ipv6CidrBlock")?;
        let block = net::cidr_v6(&n, "CidrBlock", warnings)?;
        if !blocks.contains(&block) {
            blocks.push(block);
        }
    }
    Ok(blocks)
}
