//! The validated content of a snapshot: what the resolver reads.
//!
//! Everything here has been checked; addresses and CIDR blocks are parsed (network part
//! only), protocols canonicalised, MACs lower-cased. Each item keeps the JSON path it
//! came from, so later warnings can point back into the document.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{Direction, PeerSource, Protocol};

/// One allow rule with one peer, from `SecurityGroupRules` or expanded from a
/// `SecurityGroups` permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The `sgr-` id, or `GROUP_ID/ingress|egress/PERMISSION_INDEX/SOURCE_INDEX` for rules
    /// expanded from `SecurityGroups`.
    pub id: String,
    /// The group the rule belongs to.
    pub group_id: String,
    /// The account that owns the group (`GroupOwnerId` / `OwnerId`), when given.
    pub group_owner_id: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// What it allows.
    pub protocol: Protocol,
    /// The source (inbound) or destination (outbound).
    pub peer: Peer,
    /// The rule's description; no enforcement meaning.
    pub description: Option<String>,
    /// JSON path of the rule (`$.SecurityGroupRules[4]`) or of its source element
    /// (`$.SecurityGroups[1].IpPermissions[0].UserIdGroupPairs[0]`).
    pub path: String,
}

/// The peer a rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A CIDR block (`CidrIpv4`/`CidrIpv6`, `IpRanges`/`Ipv6Ranges`).
    Cidr {
        /// As written; host bits may be set.
        written: String,
        /// The network part, which is what AWS enforces.
        net: IpNet,
    },
    /// A managed prefix list id.
    PrefixList(String),
    /// A referenced security group.
    Group(GroupReference),
}

impl Peer {
    /// What the snapshot named, in the model's terms.
    pub fn source(&self) -> PeerSource {
        match self {
            Peer::Cidr { written, net: IpNet::V4(_) } => PeerSource::Cidr(written.clone()),
            Peer::Cidr { written, net: IpNet::V6(_) } => PeerSource::CidrIpv6(written.clone()),
            Peer::PrefixList(id) => PeerSource::PrefixList(id.clone()),
            Peer::Group(r) => PeerSource::Group(r.group_id.clone()),
        }
    }
}

/// `ReferencedGroupInfo` / a `UserIdGroupPair`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReference {
    /// The referenced group.
    pub group_id: String,
    /// The account that owns it.
    pub user_id: Option<String>,
    /// Its VPC.
    pub vpc_id: Option<String>,
    /// The peering connection it is reached through.
    pub vpc_peering_connection_id: Option<String>,
    /// That peering connection's status (`active`, `deleted`, …).
    pub peering_status: Option<String>,
}

/// Where a group's rules were taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesFrom {
    /// `SecurityGroupRules` (used whenever it has rules of the group).
    SecurityGroupRules,
    /// A `SecurityGroups` entry's `IpPermissions` / `IpPermissionsEgress`.
    SecurityGroups,
}

/// A security group the snapshot describes (its rules are in [`super::Snapshot::rules`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub group_id: String,
    /// `GroupName`, when described in `SecurityGroups`.
    pub group_name: Option<String>,
    /// `VpcId`, when described in `SecurityGroups`.
    pub vpc_id: Option<String>,
    /// Owning account (`OwnerId` / `GroupOwnerId`).
    pub owner_id: Option<String>,
    /// Which key its rules come from.
    pub rules_from: RulesFrom,
    /// JSON path of its `SecurityGroups` entry or of its first rule.
    pub path: String,
}

/// A network interface (ENI) from `NetworkInterfaces`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkInterface {
    /// `eni-…`.
    pub id: String,
    /// Its security groups, in the order the snapshot lists them.
    pub groups: Vec<String>,
    /// MAC address, lower case.
    pub mac: Option<String>,
    /// Private IPv4 addresses: the primary first, then the secondaries (no duplicates).
    pub private_ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// `Attachment.InstanceId`.
    pub instance_id: Option<String>,
    /// `Attachment.DeviceIndex`.
    pub device_index: Option<u32>,
    /// `Attachment.NetworkCardIndex`.
    pub network_card_index: Option<u32>,
    /// `VpcId`.
    pub vpc_id: Option<String>,
    /// `SubnetId`.
    pub subnet_id: Option<String>,
    /// `ConnectionTrackingConfiguration`, when the snapshot has it.
    pub connection_tracking: Option<ConnectionTracking>,
    /// JSON path (`$.NetworkInterfaces[2]`).
    pub path: String,
}

impl NetworkInterface {
    /// All private addresses: IPv4 (primary first) then IPv6. Never public ones.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let v4 = self.private_ipv4.iter().copied().map(IpAddr::V4);
        v4.chain(self.ipv6.iter().copied().map(IpAddr::V6)).collect()
    }
}

/// An ENI's idle timeouts in seconds (`ConnectionTrackingConfiguration`); `None` means
/// the AWS default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTracking {
    /// `TcpEstablishedTimeout`.
    pub tcp_established_timeout: Option<u32>,
    /// `UdpStreamTimeout`.
    pub udp_stream_timeout: Option<u32>,
    /// `UdpTimeout`.
    pub udp_timeout: Option<u32>,
}

/// `AddressFamily` of a managed prefix list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFamily {
    /// `IPv4`.
    Ipv4,
    /// `IPv6`.
    Ipv6,
}

impl AddressFamily {
    /// `"IPv4"` or `"IPv6"`, as AWS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "IPv4",
            AddressFamily::Ipv6 => "IPv6",
        }
    }
}

/// A managed prefix list with its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixList {
    /// `pl-…`.
    pub id: String,
    /// `PrefixListName`.
    pub name: Option<String>,
    /// `AddressFamily`; when given, every entry is of that family.
    pub address_family: Option<AddressFamily>,
    /// `Version`.
    pub version: Option<i64>,
    /// `Entries`.
    pub entries: Vec<PrefixListEntry>,
    /// JSON path.
    pub path: String,
}

/// One prefix-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixListEntry {
    /// As written.
    pub written: String,
    /// Network part.
    pub cidr: IpNet,
    /// `Description`.
    pub description: Option<String>,
}

/// A VPC from `Vpcs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vpc {
    /// `vpc-…`.
    pub id: String,
    /// The primary IPv4 block (`CidrBlock`, else the first associated block).
    pub cidr_block: Option<Ipv4Net>,
    /// Every IPv4 block (`CidrBlock` and `CidrBlockAssociationSet`), no duplicates.
    pub cidr_blocks: Vec<Ipv4Net>,
    /// IPv6 blocks.
    pub ipv6_cidr_blocks: Vec<Ipv6Net>,
    /// JSON path.
    pub path: String,
}

/// A subnet from `Subnets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// `VpcId`.
    pub vpc_id: Option<String>,
    /// IPv4 block (absent on IPv6-only subnets).
    pub cidr_block: Option<Ipv4Net>,
    /// IPv6 blocks.
    pub ipv6_cidr_blocks: Vec<Ipv6Net>,
    /// JSON path.
    pub path: String,
}
