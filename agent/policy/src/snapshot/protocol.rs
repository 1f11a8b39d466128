//! `IpProtocol`, `FromPort` and `ToPort` → [`Protocol`], with AWS's rules for each
//! protocol (`sg-semantics.md` §1.1).
//!
//! - `tcp`/`udp` (or `6`/`17`): a port range 0–65535 is required, `FromPort ≤ ToPort`.
//! - `icmp` (or `1`): `FromPort` is the type and `ToPort` the code, each -1 (all) to 255,
//!   both required; "if you specify all ICMP types, you must specify all codes".
//! - `icmpv6` (or `58`): the same, but the pair may be left out (all types and codes).
//! - `-1` and any other number: all traffic of that protocol; ports are ignored, as AWS
//!   ignores them ("regardless of any port range you specify").

use super::error::SnapshotError;
use super::json::Object;
use crate::model::{IcmpMatch, PortRange, Protocol, proto};

/// What `IpProtocol` names, before ports are considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtocolName {
    /// `-1`.
    All,
    /// `tcp` / `6`.
    Tcp,
    /// `udp` / `17`.
    Udp,
    /// `icmp` / `1`.
    Icmp,
    /// `icmpv6` / `58`.
    Icmpv6,
    /// Any other protocol number.
    Number(u8),
}

/// Reads an `IpProtocol` value: a name (any case), `-1`, or a decimal number 0–255,
/// canonicalising 6/17/1/58 to their names.
pub(crate) fn parse_protocol_name(text: &str) -> Result<ProtocolName, String> {
    let unknown = || {
        format!(
            "unknown protocol {text:?}: expected tcp, udp, icmp, icmpv6, -1 (all) or a \
             protocol number from 0 to 255"
        )
    };
    match text.to_ascii_lowercase().as_str() {
        "tcp" => return Ok(ProtocolName::Tcp),
        "udp" => return Ok(ProtocolName::Udp),
        "icmp" => return Ok(ProtocolName::Icmp),
        "icmpv6" => return Ok(ProtocolName::Icmpv6),
        "-1" => return Ok(ProtocolName::All),
        _ => {}
    }
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    let number: u8 = text.parse().map_err(|_| unknown())?;
    Ok(match number {
        proto::TCP => ProtocolName::Tcp,
        proto::UDP => ProtocolName::Udp,
        proto::ICMP => ProtocolName::Icmp,
        proto::ICMPV6 => ProtocolName::Icmpv6,
        n => ProtocolName::Number(n),
    })
}

/// Reads `IpProtocol`, `FromPort` and `ToPort` of a rule or an `IpPermission` (both use
/// the same keys).
pub(crate) fn protocol(obj: &Object<'_>) -> Result<Protocol, SnapshotError> {
    let key = "IpProtocol";
    let name = parse_protocol_name(obj.string(key)?).map_err(|e| obj.error_at(key, e))?;
    // Ports are read (and type-checked) whatever the protocol.
    let from = obj.opt_integer("FromPort")?;
    let to = obj.opt_integer("ToPort")?;
    match name {
        ProtocolName::All => Ok(Protocol::All),
        ProtocolName::Number(n) => Ok(Protocol::Number(n)),
        ProtocolName::Tcp => Ok(Protocol::Tcp(port_range(obj, "tcp", from, to)?)),
        ProtocolName::Udp => Ok(Protocol::Udp(port_range(obj, "udp", from, to)?)),
        ProtocolName::Icmp => Ok(Protocol::Icmp(icmp_match(obj, "icmp", from, to, false)?)),
        ProtocolName::Icmpv6 => Ok(Protocol::Icmpv6(icmp_match(obj, "icmpv6", from, to, true)?)),
    }
}

fn port_range(
    obj: &Object<'_>,
    name: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<PortRange, SnapshotError> {
    let (Some(from), Some(to)) = (from, to) else {
        let key = if from.is_none() { "FromPort" } else { "ToPort" };
        return Err(
            obj.error_at(key, format!("missing: {name} needs FromPort and ToPort (a port range 0–65535)"))
        );
    };
    let check = |key: &str, value: i64| {
        u16::try_from(value).map_err(|_| {
            let hint = if value == -1 { " (for every port write 0 and 65535)" } else { "" };
            obj.error_at(key, format!("{key} {value} is out of range: {name} ports go from 0 to 65535{hint}"))
        })
    };
    let (from_port, to_port) = (check("FromPort", from)?, check("ToPort", to)?);
    if from_port > to_port {
        return Err(
            obj.error_at("FromPort", format!("FromPort {from_port} is greater than ToPort {to_port}"))
        );
    }
    Ok(PortRange { from: from_port, to: to_port })
}

fn icmp_match(
    obj: &Object<'_>,
    name: &str,
    from: Option<i64>,
    to: Option<i64>,
    optional: bool,
) -> Result<IcmpMatch, SnapshotError> {
    let (icmp_type, code) = match (from, to) {
        (Some(t), Some(c)) => (t, c),
        (None, None) if optional => return Ok(IcmpMatch::All),
        _ => {
            let key = if from.is_none() { "FromPort" } else { "ToPort" };
            let needs = if optional {
                "needs both FromPort (type) and ToPort (code), or neither"
            } else {
                "needs FromPort (type) and ToPort (code), -1 for all"
            };
            return Err(obj.error_at(key, format!("missing: {name} {needs}")));
        }
    };
    let check = |key: &str, what: &str, value: i64| {
        if (-1..=255).contains(&value) {
            Ok(u8::try_from(value).ok())
        } else {
            Err(obj.error_at(
                key,
                format!(
                    "{key} ({name} {what}) {value} is out of range: \
                     it goes from -1 (all) to 255"
                ),
            ))
        }
    };
    let icmp_type = check("FromPort", "type", icmp_type)?;
    let code_value = code;
    let code = check("ToPort", "code", code)?;
    match (icmp_type, code) {
        (None, None) => Ok(IcmpMatch::All),
        (None, Some(_)) => Err(obj.error_at(
            "ToPort",
            format!("{name} type -1 (all types) needs code -1 (all codes), found code {code_value}"),
        )),
        (Some(icmp_type), None) => Ok(IcmpMatch::Type { icmp_type }),
        (Some(icmp_type), Some(code)) => Ok(IcmpMatch::TypeCode { icmp_type, code }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::snapshot::json::Node;

    fn read(value: serde_json::Value) -> Result<Protocol, SnapshotError> {
        protocol(&Node::root(&value).object().unwrap())
    }

    #[test]
    fn names_and_numbers_are_canonicalised() {
        let cases = [
            ("tcp", ProtocolName::Tcp),
            ("TCP", ProtocolName::Tcp),
            ("6", ProtocolName::Tcp),
            ("006", ProtocolName::Tcp),
            ("17", ProtocolName::Udp),
            ("Udp", ProtocolName::Udp),
            ("1", ProtocolName::Icmp),
            ("ICMP", ProtocolName::Icmp),
            ("58", ProtocolName::Icmpv6),
            ("icmpv6", ProtocolName::Icmpv6),
            ("-1", ProtocolName::All),
            ("50", ProtocolName::Number(50)),
            ("0", ProtocolName::Number(0)),
            ("255", ProtocolName::Number(255)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_protocol_name(text), Ok(want), "{text}");
        }
        for bad in ["gre", "all", "256", "300", "-2", "+6", " 6", "", "1000", "tcp "] {
            let err = parse_protocol_name(bad).unwrap_err();
            assert!(err.contains("unknown protocol"), "{bad}: {err}");
        }
    }

    #[test]
    fn numbered_tcp_keeps_its_ports() {
        let p = read(json!({"IpProtocol": "6", "FromPort": 22, "ToPort": 22})).unwrap();
        assert_eq!(p, Protocol::Tcp(PortRange { from: 22, to: 22 }));
        let p = read(json!({"IpProtocol": "17", "FromPort": 53, "ToPort": 54})).unwrap();
        assert_eq!(p, Protocol::Udp(PortRange { from: 53, to: 54 }));
    }

    #[test]
    fn all_and_numbers_ignore_ports() {
        let p = read(json!({"IpProtocol": "-1", "FromPort": -1, "ToPort": -1})).unwrap();
        assert_eq!(p, Protocol::All);
        let p = read(json!({"IpProtocol": "50", "FromPort": 9, "ToPort": 1})).unwrap();
        assert_eq!(p, Protocol::Number(50));
        let p = read(json!({"IpProtocol": "-1"})).unwrap();
        assert_eq!(p, Protocol::All);
        // Still type-checked.
        let err = read(json!({"IpProtocol": "-1", "FromPort": "x"})).unwrap_err();
        assert_eq!(err.path(), "$.FromPort");
    }

    #[test]
    fn icmp_type_and_code() {
        let p = read(json!({"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1})).unwrap();
        assert_eq!(p, Protocol::Icmp(IcmpMatch::Type { icmp_type: 8 }));
        let p = read(json!({"IpProtocol": "1", "FromPort": 3, "ToPort": 4})).unwrap();
        assert_eq!(p, Protocol::Icmp(IcmpMatch::TypeCode { icmp_type: 3, code: 4 }));
        let p = read(json!({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1})).unwrap();
        assert_eq!(p, Protocol::Icmp(IcmpMatch::All));
        let p = read(json!({"IpProtocol": "58"})).unwrap();
        assert_eq!(p, Protocol::Icmpv6(IcmpMatch::All));
        let p = read(json!({"IpProtocol": "icmpv6", "FromPort": 128, "ToPort": 0})).unwrap();
        assert_eq!(p, Protocol::Icmpv6(IcmpMatch::TypeCode { icmp_type: 128, code: 0 }));
        let err = read(json!({"IpProtocol": "icmp"})).unwrap_err();
        assert_eq!(err.path(), "$.FromPort");
        let err = read(json!({"IpProtocol": "icmpv6", "FromPort": 128})).unwrap_err();
        assert_eq!(err.path(), "$.ToPort");
        assert!(err.problem().contains("or neither"));
        let err = read(json!({"IpProtocol": "icmp", "FromPort": 8, "ToPort": 256})).unwrap_err();
        assert_eq!(err.path(), "$.ToPort");
    }

    #[test]
    fn tcp_ranges() {
        let err = read(json!({"IpProtocol": "tcp", "FromPort": -1, "ToPort": -1})).unwrap_err();
        assert_eq!(err.path(), "$.FromPort");
        assert!(err.problem().contains("out of range"));
        let err = read(json!({"IpProtocol": "udp", "FromPort": 0})).unwrap_err();
        assert_eq!(err.path(), "$.ToPort");
        let p = read(json!({"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535})).unwrap();
        assert_eq!(p, Protocol::Tcp(PortRange { from: 0, to: 65535 }));
    }
}
