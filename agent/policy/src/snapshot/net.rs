//! Addresses, CIDR blocks and MAC addresses as the snapshot writes them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::error::SnapshotError;
use super::json::Node;
use crate::model::Warning;

/// An address family a field accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

/// A CIDR block read from the document.
#[derive(Clone, Debug)]
pub(crate) struct Cidr {
    /// As written (host bits may be set).
    pub(crate) written: String,
    /// The network part, which is what AWS uses.
    pub(crate) net: IpNet,
    /// Set when the written block had host bits set.
    pub(crate) warning: Option<Warning>,
}

/// Parses `ADDRESS/PREFIX` strictly; returns the block as written (not yet truncated).
pub(crate) fn parse_cidr_text(text: &str) -> Result<IpNet, String> {
    let not_cidr = |why: String| format!("{text:?} is not a CIDR block: {why}");
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(not_cidr("expected ADDRESS/PREFIX, e.g. 10.0.0.0/16 or 2001:db8::/56".into()));
    };
    let addr: IpAddr = addr.parse().map_err(|_| not_cidr(format!("{addr:?} is not an IP address")))?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return Err(not_cidr(format!("prefix length {prefix:?} is not a number")));
    }
    let prefix: u8 = prefix.parse().map_err(|_| not_cidr(format!("bad prefix length {prefix:?}")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(not_cidr(format!("prefix length {prefix} is longer than {max}")));
    }
    Ok(match addr {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, prefix).map_err(|e| not_cidr(e.to_string()))?),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, prefix).map_err(|e| not_cidr(e.to_string()))?),
    })
}

/// Reads a CIDR string of the given family (`None`: either). `other_field` names where
/// the other family belongs, for the error message (`"Ipv6Ranges"`).
pub(crate) fn cidr(
    node: &Node<'_>,
    family: Option<Family>,
    other_field: &str,
) -> Result<Cidr, SnapshotError> {
    let text = node.string()?;
    let net = parse_cidr_text(text).map_err(|e| node.error(e))?;
    if let Some(family) = family {
        let found = Family::of(&net);
        if found != family {
            let field = node.path().rsplit('.').next().unwrap_or("this field");
            return Err(node.error(format!(
                "{text} is an {} CIDR block; {field} takes {} only ({} goes in {other_field})",
                found.name(),
                family.name(),
                found.name(),
            )));
        }
    }
    let trunc = net.trunc();
    let warning = (trunc != net).then(|| Warning {
        path: node.path().to_owned(),
        message: format!(
            "{text} has host bits set; read as its network part {trunc}, as AWS does \
             (write {trunc} or a /{} host block to say what you mean)",
            net.max_prefix_len()
        ),
    });
    Ok(Cidr { written: text.to_owned(), net: trunc, warning })
}

/// Reads an IPv4 CIDR block and returns its network part; host bits give a warning.
pub(crate) fn cidr_v4(
    node: &Node<'_>,
    other_field: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Ipv4Net, SnapshotError> {
    let c = cidr(node, Some(Family::V4), other_field)?;
    warnings.extend(c.warning);
    match c.net {
        IpNet::V4(n) => Ok(n),
        IpNet::V6(_) => Err(node.error("expected an IPv4 CIDR block")),
    }
}

/// Reads an IPv6 CIDR block and returns its network part; host bits give a warning.
pub(crate) fn cidr_v6(
    node: &Node<'_>,
    other_field: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Ipv6Net, SnapshotError> {
    let c = cidr(node, Some(Family::V6), other_field)?;
    warnings.extend(c.warning);
    match c.net {
        IpNet::V6(n) => Ok(n),
        IpNet::V4(_) => Err(node.error("expected an IPv6 CIDR block")),
    }
}

/// Reads a single IPv4 address (no prefix).
pub(crate) fn ipv4(node: &Node<'_>) -> Result<Ipv4Addr, SnapshotError> {
    let text = node.string()?;
    text.parse().map_err(|_| node.error(format!("{text:?} is not an IPv4 address")))
}

/// Reads a single IPv6 address (no prefix).
pub(crate) fn ipv6(node: &Node<'_>) -> Result<Ipv6Addr, SnapshotError> {
    let text = node.string()?;
    text.parse().map_err(|_| node.error(format!("{text:?} is not an IPv6 address")))
}

/// Reads a MAC address `aa:bb:cc:dd:ee:ff` (either case) and returns it in lower case,
/// the form Linux prints and links are matched with.
pub(crate) fn mac(node: &Node<'_>) -> Result<String, SnapshotError> {
    let text = node.string()?;
    let parts: Vec<&str> = text.split(':').collect();
    let ok =
        parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(node
            .error(format!("{text:?} is not a MAC address: expected six hex pairs like 0a:1b:2c:3d:4e:5f")));
    }
    Ok(text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_text_is_strict() {
        assert_eq!(parse_cidr_text("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr_text("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert!(parse_cidr_text("10.0.0.0").unwrap_err().contains("expected ADDRESS/PREFIX"));
        assert!(parse_cidr_text("10.0.0.0/33").unwrap_err().contains("longer than 32"));
        assert!(parse_cidr_text("::/129").unwrap_err().contains("longer than 128"));
        assert!(parse_cidr_text("10.0.0/8").unwrap_err().contains("not an IP address"));
        assert!(parse_cidr_text("10.0.0.0/+8").unwrap_err().contains("not a number"));
        assert!(parse_cidr_text("10.0.0.0/").unwrap_err().contains("not a number"));
        assert!(parse_cidr_text("10.0.0.0/0008").unwrap_err().contains("not a number"));
    }

    #[test]
    fn host_bits_become_the_network_part_with_a_warning() {
        let value = serde_json::json!("203.0.113.5/0");
        let c = cidr(&Node::root(&value), Some(Family::V4), "Ipv6Ranges").unwrap();
        assert_eq!(c.net.to_string(), "0.0.0.0/0");
        assert_eq!(c.written, "203.0.113.5/0");
        assert!(c.warning.unwrap().message.contains("host bits"));
        let value = serde_json::json!("203.0.113.0/24");
        assert!(cidr(&Node::root(&value), None, "").unwrap().warning.is_none());
    }

    #[test]
    fn macs_are_lower_cased() {
        let value = serde_json::json!("0A:1B:2c:3D:4e:5F");
        assert_eq!(mac(&Node::root(&value)).unwrap(), "0a:1b:2c:3d:4e:5f");
        for bad in ["0a:1b:2c:3d:4e", "0a-1b-2c-3d-4e-5f", "0a:1b:2c:3d:4e:5g", "a:1b:2c:3d:4e:5f0"] {
            let value = serde_json::json!(bad);
            assert!(mac(&Node::root(&value)).is_err(), "{bad}");
        }
    }
}
