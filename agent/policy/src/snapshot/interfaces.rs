//! `NetworkInterfaces` as `describe-network-interfaces` prints them.
//!
//! Only private addresses are kept: a referenced group stands for its members' private
//! addresses, never their public or Elastic IPs (`Association` is ignored).

use std::collections::BTreeMap;

use super::error::SnapshotError;
use super::json::Node;
use super::net;
use super::types::{ConnectionTracking, NetworkInterface};

/// Reads every interface; ids and MACs must be unique.
pub(crate) fn parse(nodes: &[Node<'_>]) -> Result<Vec<NetworkInterface>, SnapshotError> {
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut macs: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let eni = interface(node)?;
        if let Some(first) = ids.insert(eni.id.clone(), eni.path.clone()) {
            return Err(SnapshotError::new(
                format!("{}.NetworkInterfaceId", eni.path),
                format!("interface {} is listed twice (also at {first})", eni.id),
            ));
        }
        if let Some(mac) = &eni.mac
            && let Some(first) = macs.insert(mac.clone(), eni.path.clone())
        {
            return Err(SnapshotError::new(
                format!("{}.MacAddress", eni.path),
                format!("MAC address {mac} is also used by the interface at {first}"),
            ));
        }
        out.push(eni);
    }
    Ok(out)
}

fn interface(node: &Node<'_>) -> Result<NetworkInterface, SnapshotError> {
    let obj = node.object()?;
    let id = obj.string("NetworkInterfaceId")?.to_owned();

    let mut groups: Vec<String> = Vec::new();
    for g in obj.opt_array("Groups")? {
        let group = g.object()?;
        let group_id = group.string("GroupId")?;
        if groups.iter().any(|x| x == group_id) {
            return Err(group.error_at("GroupId", format!("group {group_id} is listed twice")));
        }
        groups.push(group_id.to_owned());
    }

    let mac = obj.get("MacAddress").map(|n| net::mac(&n)).transpose()?;

    let mut private_ipv4 = Vec::new();
    if let Some(n) = obj.get("PrivateIpAddress") {
        private_ipv4.push(net::ipv4(&n)?);
    }
    for entry in obj.opt_array("PrivateIpAddresses")? {
        let entry = entry.object()?;
        let addr = net::ipv4(&entry.require("PrivateIpAddress")?)?;
        if let Some(primary) = entry.get("Primary") {
            primary.boolean()?;
        }
        if !private_ipv4.contains(&addr) {
            private_ipv4.push(addr);
        }
    }

    let mut ipv6 = Vec::new();
    for entry in obj.opt_array("Ipv6Addresses")? {
        let addr = net::ipv6(&entry.object()?.require("Ipv6Address")?)?;
        if !ipv6.contains(&addr) {
            ipv6.push(addr);
        }
    }

    let (mut instance_id, mut device_index, mut network_card_index) = (None, None, None);
    if let Some(attachment) = obj.get("Attachment") {
        let attachment = attachment.object()?;
        instance_id = attachment.opt_string("InstanceId")?.map(str::to_owned);
        device_index = attachment.opt_u32("DeviceIndex")?;
        network_card_index = attachment.opt_u32("NetworkCardIndex")?;
    }

    let connection_tracking = obj
        .get("ConnectionTrackingConfiguration")
        .map(|n| {
            let c = n.object()?;
            Ok::<_, SnapshotError>(ConnectionTracking {
                tcp_established_timeout: c.opt_u32("TcpEstablishedTimeout")?,
                udp_stream_timeout: c.opt_u32("UdpStreamTimeout")?,
                udp_timeout: c.opt_u32("UdpTimeout")?,
            })
        })
        .transpose()?;

    Ok(NetworkInterface {
        id,
        groups,
        mac,
        private_ipv4,
        ipv6,
        instance_id,
        device_index,
        network_card_index,
        vpc_id: obj.opt_string("VpcId")?.map(str::to_owned),
        subnet_id: obj.opt_string("SubnetId")?.map(str::to_owned),
        connection_tracking,
        path: node.path().to_owned(),
    })
}
