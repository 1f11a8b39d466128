//! The checks that need only the rule itself (and the prefix lists it names).

use ipnet::IpNet;

use super::{Finding, Kind, Subject};
use crate::model::{Direction, PeerSource, Protocol};
use crate::snapshot::{Peer, Snapshot};

/// Services that should never be reachable from the whole internet, all over tcp:
/// remote shells and desktops, file sharing, and databases whose default port is well
/// known to scanners.
pub const SENSITIVE_PORTS: [(u16, &str); 13] = [
    (20, "FTP data"),
    (21, "FTP"),
    (22, "SSH"),
    (23, "Telnet"),
    (445, "SMB"),
    (1433, "MSSQL"),
    (1521, "Oracle"),
    (3306, "MySQL"),
    (3389, "RDP"),
    (5432, "PostgreSQL"),
    (6379, "Redis"),
    (9200, "Elasticsearch"),
    (27017, "MongoDB"),
];

/// A tcp/udp range of more than this many ports is "wide". A real service uses a few
/// ports, or a passive-FTP / media range of a few hundred; past a thousand a range is
/// usually "everything" written by hand.
pub const WIDE_RANGE: u32 = 1000;

/// Every port, as a span.
const ALL_PORTS: u32 = 65536;

/// The `/0` blocks a rule's peer stands for: a CIDR read as AWS reads it (so
/// `203.0.113.5/0` is `0.0.0.0/0`) or a prefix list's entries. A group never is.
fn world_nets(subject: &Subject<'_>) -> Vec<IpNet> {
    if matches!(subject.resolved.source, PeerSource::Group(_)) {
        return Vec::new();
    }
    subject.resolved.peers.iter().copied().filter(|p| p.prefix_len() == 0).collect()
}

/// How the rule reaches the whole internet, for messages: `0.0.0.0/0`, `pl-1 contains
/// ::/0`, `203.0.113.5/0 is read as 0.0.0.0/0`.
fn world_text(subject: &Subject<'_>, nets: &[IpNet]) -> String {
    let nets = nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ");
    match &subject.resolved.source {
        PeerSource::PrefixList(id) => format!("prefix list {id} contains {nets}"),
        PeerSource::Cidr(written) | PeerSource::CidrIpv6(written) if *written != nets => {
            format!("{written} is read as {nets}")
        }
        _ => nets,
    }
}

/// `world-open-sensitive-port`: an inbound rule from the whole internet that covers a
/// sensitive port over tcp (or `-1`). One finding per rule, naming every such port.
pub(super) fn world_open_sensitive_port(subject: &Subject<'_>) -> Option<Finding> {
    let r = &subject.resolved;
    if r.direction != Direction::Ingress {
        return None;
    }
    let covers: &dyn Fn(u16) -> bool = match &r.protocol {
        Protocol::All => &|_| true,
        Protocol::Tcp(range) => &move |p| (range.from..=range.to).contains(&p),
        _ => return None,
    };
    let open: Vec<(u16, &str)> = SENSITIVE_PORTS.into_iter().filter(|(p, _)| covers(*p)).collect();
    let nets = world_nets(subject);
    if open.is_empty() || nets.is_empty() {
        return None;
    }
    let services = open.iter().map(|(p, name)| format!("{name} ({p})")).collect::<Vec<_>>().join(", ");
    let what = match r.protocol {
        Protocol::All => format!("every protocol and port, including {services}, is"),
        _ if open.len() == 1 => format!("{services} is"),
        _ => format!("{services} are"),
    };
    let message = format!(
        "{what} open to the whole internet ({}): allow only the addresses that need it \
         (a /32, a VPN or office prefix list, or a group)",
        world_text(subject, &nets)
    );
    let mut finding = Finding::new(Kind::WorldOpenSensitivePort, subject, message);
    finding.sensitive_ports = open.into_iter().map(|(p, _)| p).collect();
    Some(finding)
}

/// `host-address-short-prefix`: the rule's CIDR, or an entry of the prefix list it
/// names, has host bits set. Returns the finding and the JSON paths whose parse
/// warnings it replaces.
pub(super) fn host_address_short_prefix(
    subject: &Subject<'_>,
    snapshot: &Snapshot,
) -> Option<(Finding, Vec<String>)> {
    let (message, path) = match &subject.rule.peer {
        Peer::Cidr { written, net } => {
            let as_written: IpNet = written.parse().ok()?;
            if as_written == *net {
                return None;
            }
            (host_bits_message(written, as_written, *net), subject.rule.path.clone())
        }
        Peer::PrefixList(id) => {
            let list = snapshot.prefix_list(id)?;
            let bad: Vec<String> = list
                .entries
                .iter()
                .filter_map(|e| {
                    let as_written: IpNet = e.written.parse().ok()?;
                    (as_written != e.cidr).then(|| host_bits_message(&e.written, as_written, e.cidr))
                })
                .collect();
            if bad.is_empty() {
                return None;
            }
            (format!("prefix list {id}: {}", bad.join("; ")), list.path.clone())
        }
        Peer::Group(_) => return None,
    };
    Some((Finding::new(Kind::HostAddressShortPrefix, subject, message), vec![path]))
}

/// `203.0.113.5/0 has host bits set: AWS reads it as 0.0.0.0/0 (every IPv4 address), not
/// the host 203.0.113.5; …`.
fn host_bits_message(written: &str, as_written: IpNet, net: IpNet) -> String {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    let size = match (net.prefix_len(), net) {
        (0, IpNet::V4(_)) => "every IPv4 address".to_owned(),
        (0, IpNet::V6(_)) => "every IPv6 address".to_owned(),
        _ if host_bits < 64 => format!("{} addresses", 1u64 << host_bits),
        _ => format!("2^{host_bits} addresses"),
    };
    let addr = as_written.addr();
    format!(
        "{written} has host bits set: AWS reads it as {net} ({size}), not the host {addr}; write \
         {addr}/{} for the host, or {net} if the whole block is meant",
        net.max_prefix_len()
    )
}

/// `wide-port-range`: an inbound tcp/udp rule opening more than [`WIDE_RANGE`] ports but
/// not all of them; from the whole internet also all of them, and `-1`.
pub(super) fn wide_port_range(subject: &Subject<'_>) -> Option<Finding> {
    let r = &subject.resolved;
    if r.direction != Direction::Ingress {
        return None;
    }
    let (name, span) = match r.protocol {
        Protocol::Tcp(p) => ("tcp", u32::from(p.to) - u32::from(p.from) + 1),
        Protocol::Udp(p) => ("udp", u32::from(p.to) - u32::from(p.from) + 1),
        Protocol::All => ("-1", ALL_PORTS),
        _ => return None,
    };
    let nets = world_nets(subject);
    let message = if !nets.is_empty() {
        if span <= WIDE_RANGE {
            return None;
        }
        let what = match r.protocol {
            Protocol::All => "every protocol and port is".to_owned(),
            _ if span == ALL_PORTS => format!("every {name} port is"),
            _ => format!("{span} {name} ports are"),
        };
        format!(
            "{what} open to the whole internet ({}): allow only the protocols and ports the \
             instance serves",
            world_text(subject, &nets)
        )
    } else {
        if span <= WIDE_RANGE || span == ALL_PORTS {
            return None;
        }
        format!(
            "{span} {name} ports are open to {}: list only the ports the service uses (more \
             than {WIDE_RANGE} is rarely meant)",
            source_text(&r.source)
        )
    };
    Some(Finding::new(Kind::WidePortRange, subject, message))
}

fn source_text(source: &PeerSource) -> String {
    match source {
        PeerSource::Cidr(s) | PeerSource::CidrIpv6(s) => s.clone(),
        PeerSource::PrefixList(id) => format!("prefix list {id}"),
        PeerSource::Group(id) => format!("group {id}"),
    }
}
