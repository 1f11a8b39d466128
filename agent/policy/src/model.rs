//! The resolved policy of one interface, and the packets it judges.
//!
//! This is the contract between the resolver (which builds it from a snapshot), the
//! reference evaluator and the compiler (which both read it).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// Which way a rule or packet goes, seen from the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Inbound: rules name a source; packets arrive on the link.
    Ingress,
    /// Outbound: rules name a destination; packets leave through the link.
    Egress,
}

impl Direction {
    /// `"ingress"` or `"egress"`, as in synthetic rule ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// An inclusive TCP/UDP destination-port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port (≥ `from`).
    pub to: u16,
}

/// ICMP/ICMPv6 type and code selection (`FromPort` = type, `ToPort` = code, -1 = all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "match")]
pub enum IcmpMatch {
    /// Every type and code.
    All,
    /// One type, every code.
    Type {
        /// ICMP type.
        icmp_type: u8,
    },
    /// One type and code.
    TypeCode {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
}

/// What traffic a rule allows, canonicalised (`6` is `tcp`, `58` is `icmpv6`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "protocol")]
pub enum Protocol {
    /// `-1`: every protocol, every port.
    All,
    /// TCP to a port range.
    Tcp(PortRange),
    /// UDP to a port range.
    Udp(PortRange),
    /// ICMP (protocol 1) types/codes.
    Icmp(IcmpMatch),
    /// ICMPv6 (protocol 58) types/codes.
    Icmpv6(IcmpMatch),
    /// Any other protocol number: all of its traffic.
    Number(u8),
}

/// IP protocol numbers used across the crate.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

impl Protocol {
    /// The protocol number a packet must carry, or `None` for `-1`.
    pub fn number(&self) -> Option<u8> {
        match self {
            Protocol::All => None,
            Protocol::Tcp(_) => Some(proto::TCP),
            Protocol::Udp(_) => Some(proto::UDP),
            Protocol::Icmp(_) => Some(proto::ICMP),
            Protocol::Icmpv6(_) => Some(proto::ICMPV6),
            Protocol::Number(n) => Some(*n),
        }
    }
}

/// Where the peers of a rule came from, as the snapshot wrote it (for explain and lint).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum PeerSource {
    /// `CidrIpv4` / `IpRanges[].CidrIp`, as written (host bits may be set).
    Cidr(String),
    /// `CidrIpv6` / `Ipv6Ranges[].CidrIpv6`, as written.
    CidrIpv6(String),
    /// A managed prefix list id.
    PrefixList(String),
    /// A referenced security group id.
    Group(String),
}

/// One resolved allow rule: one peer source, its protocol, and the concrete prefixes
/// that source stands for now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedRule {
    /// The `sgr-` id, or `GROUP_ID/ingress|egress/PERMISSION_INDEX/SOURCE_INDEX` when the
    /// snapshot has no rule ids.
    pub id: String,
    /// The group the rule belongs to.
    pub group_id: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// What it allows.
    pub protocol: Protocol,
    /// What the snapshot named as peer.
    pub source: PeerSource,
    /// The prefixes the peer expands to (network part only). Empty when the peer
    /// could not be resolved: then the rule allows nothing.
    pub peers: Vec<IpNet>,
}

/// The policy of one interface (ENI): the union of its groups' rules, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfacePolicy {
    /// `eni-…`.
    pub interface_id: String,
    /// MAC address, lower case `aa:bb:cc:dd:ee:ff`, when the snapshot gives one.
    pub mac: Option<String>,
    /// Security groups attached to the interface.
    pub groups: Vec<String>,
    /// The interface's own private addresses.
    pub addresses: Vec<IpAddr>,
    /// Inbound rules of all its groups.
    pub ingress: Vec<ResolvedRule>,
    /// Outbound rules of all its groups.
    pub egress: Vec<ResolvedRule>,
    /// Addresses security groups never filter for this interface (AWS service
    /// addresses, the VPC+2 resolver, subnet routers): packets from them (ingress) or
    /// to them (egress) always pass.
    pub exempt: Vec<IpAddr>,
    /// Idle timeouts of tracked flows: AWS's defaults, overridden by the interface's
    /// `ConnectionTrackingConfiguration` and then by the operator's configuration.
    #[serde(skip)]
    pub timeouts: Timeouts,
}

pub use sgmirror_common::Timeouts;

impl InterfacePolicy {
    /// The rules of one direction.
    pub fn rules(&self, direction: Direction) -> &[ResolvedRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// A warning found while resolving; never fatal, always reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// JSON path in the snapshot the warning is about (`$.SecurityGroupRules[3]`).
    pub path: String,
    /// What is wrong and what sgmirror does about it.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Transport details of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP or UDP ports.
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP or ICMPv6 type and code.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
    },
    /// Another protocol, or a later fragment (no transport header).
    None,
}

/// Fragmentation state of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// A whole packet (IPv6 atomic fragments count as whole).
    None,
    /// The first fragment (offset 0, more fragments follow) with its identification.
    First(u32),
    /// A later fragment (offset > 0) with its identification: no transport header.
    Later(u32),
}

/// A well-formed IP packet, as the evaluator and the frame builder see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// Upper-layer protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// Transport details (`L4::None` for later fragments).
    pub l4: L4,
    /// Fragmentation.
    pub fragment: Fragment,
}

impl Packet {
    /// The address a rule of `direction` matches against: the source of an inbound
    /// packet, the destination of an outbound one.
    pub fn peer(&self, direction: Direction) -> IpAddr {
        match direction {
            Direction::Ingress => self.src,
            Direction::Egress => self.dst,
        }
    }
}

/// A packet's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Passes.
    Allow,
    /// Dropped.
    Drop,
}

/// Why; the names match `sgmirror_common::reason::NAMES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// A rule allows it.
    Rule,
    /// Security groups never filter it.
    Exempt,
    /// No rule allows it.
    NoRule,
    /// A later fragment (allowed when its first fragment was).
    Fragment,
    /// Headers that cannot be parsed safely.
    Malformed,
    /// Part of a tracked flow: a packet of it, or an ICMP error about it.
    Tracked,
}

impl Reason {
    /// Index in `sgmirror_common::reason`.
    pub fn code(self) -> u32 {
        use sgmirror_common::reason;
        match self {
            Reason::Rule => reason::RULE,
            Reason::Exempt => reason::EXEMPT,
            Reason::NoRule => reason::NO_RULE,
            Reason::Fragment => reason::FRAGMENT,
            Reason::Malformed => reason::MALFORMED,
            Reason::Tracked => reason::TRACKED,
        }
    }
}

/// The evaluator's answer: verdict, reason, and every rule that allows the packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow or drop.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// Ids of all rules that allow the packet (sorted, deduplicated).
    pub rules: Vec<String>,
}

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The header that an ICMP/ICMPv6 error message quotes: the packet that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Embedded {
    /// Source of the quoted packet.
    pub src: IpAddr,
    /// Destination of the quoted packet.
    pub dst: IpAddr,
    /// Its protocol.
    pub proto: u8,
    /// Its ports, or its ICMP type and code.
    pub l4: L4,
    /// Its ICMP echo identifier (0 for other protocols).
    pub icmp_id: u16,
}

/// What stateful judging needs beyond [`Packet`]: the TCP flags, the ICMP echo
/// identifier, and the quoted header of an ICMP error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transport {
    /// TCP flags (`tcp_flags::*`), 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 echo identifier, 0 for other messages and protocols.
    pub icmp_id: u16,
    /// For ICMP errors (v4 types 3, 11, 12; v6 types 1–4): the quoted packet.
    pub embedded: Option<Embedded>,
}

/// A packet with the transport details stateful judging needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatefulPacket {
    /// Addresses, protocol, ports, fragmentation.
    pub packet: Packet,
    /// Flags, echo identifier, quoted header.
    pub transport: Transport,
}
