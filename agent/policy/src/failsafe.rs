//! The failsafe list: sources (inbound) or destinations (outbound) that the operator
//! configures to always pass, whatever the security groups say — e.g. an
//! administrator's SSH source, so that a wrong policy cannot lock them out.
//!
//! Not to be confused with *exempt traffic* (`exempt.rs`): that is what AWS itself
//! never filters, fixed and not configurable. The failsafe list is empty by default.
//!
//! Entries become extra allow rules added to each interface's resolved policy before
//! it is compiled (ids `failsafe-1`, `failsafe-2`, … in configuration order, group
//! [`GROUP`]), so the reference evaluator, the compiler and the kernel programs all
//! agree about them without a separate kernel path, and their hits are counted as the
//! hits of those rules.

use std::fmt;

use ipnet::IpNet;
use thiserror::Error;

use crate::model::{Direction, IcmpMatch, InterfacePolicy, PeerSource, PortRange, Protocol, ResolvedRule};

/// The group id the failsafe rules carry (it is not an AWS group: no `sg-` prefix).
pub const GROUP: &str = "failsafe";

/// One failsafe entry, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailsafeEntry {
    /// The peer: the source of inbound packets, the destination of outbound ones.
    pub cidr: IpNet,
    /// What passes (ports for TCP/UDP; every type for ICMP).
    pub protocol: Protocol,
    /// Which way.
    pub direction: Direction,
}

/// A failsafe entry that cannot be used; the message names the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FailsafeError {
    /// `cidr` is not an address or prefix.
    #[error("cidr `{0}` is not an IPv4/IPv6 address or prefix (e.g. 203.0.113.7/32)")]
    Cidr(String),
    /// `protocol` is not known.
    #[error("protocol `{0}` is not tcp, udp, icmp, icmpv6, all or a number 0-255")]
    Protocol(String),
    /// `ports` is malformed.
    #[error("ports `{0}` is not a port (22) or an inclusive range (1000-2000) within 0-65535")]
    Ports(String),
    /// `ports` given where the protocol has none.
    #[error("ports are only meaningful for tcp and udp, not for protocol `{0}`")]
    PortsWithoutPorts(String),
    /// `direction` is not known.
    #[error("direction `{0}` is not ingress or egress")]
    Direction(String),
}

impl FailsafeEntry {
    /// Checks one entry as written in the configuration. `ports` defaults to every
    /// port (TCP/UDP only), `direction` to `ingress`.
    pub fn parse(
        cidr: &str,
        protocol: &str,
        ports: Option<&str>,
        direction: Option<&str>,
    ) -> Result<Self, FailsafeError> {
        let net = match cidr.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => cidr
                .parse::<std::net::IpAddr>()
                .map(IpNet::from)
                .map_err(|_| FailsafeError::Cidr(cidr.to_owned()))?,
        };
        let direction = match direction.unwrap_or("ingress") {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => return Err(FailsafeError::Direction(other.to_owned())),
        };
        let number = match protocol.to_ascii_lowercase().as_str() {
            "all" | "-1" => None,
            "tcp" => Some(crate::model::proto::TCP),
            "udp" => Some(crate::model::proto::UDP),
            "icmp" => Some(crate::model::proto::ICMP),
            "icmpv6" => Some(crate::model::proto::ICMPV6),
            other => Some(other.parse::<u8>().map_err(|_| FailsafeError::Protocol(protocol.to_owned()))?),
        };
        let range = ports.map(parse_ports).transpose()?;
        let protocol_value = match (number, range) {
            (Some(crate::model::proto::TCP), r) => {
                Protocol::Tcp(r.unwrap_or(PortRange { from: 0, to: 65535 }))
            }
            (Some(crate::model::proto::UDP), r) => {
                Protocol::Udp(r.unwrap_or(PortRange { from: 0, to: 65535 }))
            }
            (_, Some(_)) => return Err(FailsafeError::PortsWithoutPorts(protocol.to_owned())),
            (None, None) => Protocol::All,
            (Some(crate::model::proto::ICMP), None) => Protocol::Icmp(IcmpMatch::All),
            (Some(crate::model::proto::ICMPV6), None) => Protocol::Icmpv6(IcmpMatch::All),
            (Some(n), None) => Protocol::Number(n),
        };
        Ok(Self { cidr: net.trunc(), protocol: protocol_value, direction })
    }
}

impl fmt::Display for FailsafeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.direction.as_str(), self.cidr, self.protocol)
    }
}

/// `22` or `1000-2000`.
fn parse_ports(text: &str) -> Result<PortRange, FailsafeError> {
    let bad = || FailsafeError::Ports(text.to_owned());
    let (from, to) = match text.split_once('-') {
        Some((a, b)) => {
            (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?)
        }
        None => {
            let p = text.trim().parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if from > to {
        return Err(bad());
    }
    Ok(PortRange { from, to })
}

/// The rule id of the `index`-th entry (0-based): `failsafe-1`, `failsafe-2`, …
pub fn rule_id(index: usize) -> String {
    format!("failsafe-{}", index + 1)
}

/// Adds the failsafe entries to `policy` as allow rules. A no-op for an empty list.
pub fn apply(policy: &mut InterfacePolicy, entries: &[FailsafeEntry]) {
    for (index, entry) in entries.iter().enumerate() {
        let text = entry.cidr.to_string();
        let source = match entry.cidr {
            IpNet::V4(_) => PeerSource::Cidr(text),
            IpNet::V6(_) => PeerSource::CidrIpv6(text),
        };
        let rule = ResolvedRule {
            id: rule_id(index),
            group_id: GROUP.to_owned(),
            direction: entry.direction,
            protocol: entry.protocol,
            source,
            peers: vec![entry.cidr],
        };
        match entry.direction {
            Direction::Ingress => policy.ingress.push(rule),
            Direction::Egress => policy.egress.push(rule),
        }
    }
}

#[cfg(test)]
mod tests;
