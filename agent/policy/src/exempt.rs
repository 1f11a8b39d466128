//! Traffic that security groups never filter (`sg-semantics.md` §1.5), plus the
//! link-layer and configuration protocols a host cannot live without.
//!
//! Two kinds, both fixed and not configurable (the operator's *failsafe* list is a
//! different thing): addresses (checked against the peer address) and protocols
//! (checked on the packet's headers). The kernel program implements the protocol
//! checks itself; the addresses are compiled into the address tries with
//! `ADDR_EXEMPT`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{L4, Packet, proto};

/// Link-local AWS service addresses, the same on every instance.
pub const FIXED_ADDRESSES: [IpAddr; 9] = [
    // Instance metadata service.
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    // Route 53 Resolver (link-local form of AmazonProvidedDNS).
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
    // Windows license activation.
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 250)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 251)),
    // Amazon Time Sync Service.
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 123)),
    // ECS task metadata endpoint.
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    // IPv6 instance metadata, resolver and time sync (Nitro).
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x253)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x123)),
];

/// ICMPv6 types that are neighbour discovery or multicast listener discovery:
/// MLD query/report/done (130–132), router solicitation/advertisement (133, 134),
/// neighbour solicitation/advertisement (135, 136), redirect (137), MLDv2 report (143).
pub const ICMPV6_EXEMPT_TYPES: [u8; 9] = [130, 131, 132, 133, 134, 135, 136, 137, 143];

/// UDP port pairs (source, destination) of DHCPv4 and DHCPv6, both directions.
pub const DHCP_PORT_PAIRS: [(u16, u16); 4] = [(67, 68), (68, 67), (547, 546), (546, 547)];

/// Whether a packet is exempt by protocol alone: IPv6 neighbour discovery and MLD,
/// DHCPv4 and DHCPv6. ARP is not IP and never reaches this function.
pub fn is_protocol_exempt(packet: &Packet) -> bool {
    match (packet.proto, packet.l4) {
        (proto::ICMPV6, L4::Icmp { icmp_type, .. }) => {
            packet.src.is_ipv6() && ICMPV6_EXEMPT_TYPES.contains(&icmp_type)
        }
        (proto::UDP, L4::Ports { src, dst }) => DHCP_PORT_PAIRS.contains(&(src, dst)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fragment;

    fn packet(src: IpAddr, proto: u8, l4: L4) -> Packet {
        Packet { src, dst: src, proto, l4, fragment: Fragment::None }
    }

    #[test]
    fn neighbour_discovery_is_exempt_only_over_ipv6() {
        let v6: IpAddr = "fe80::1".parse().unwrap();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let ns = L4::Icmp { icmp_type: 135, code: 0 };
        assert!(is_protocol_exempt(&packet(v6, proto::ICMPV6, ns)));
        assert!(!is_protocol_exempt(&packet(v4, proto::ICMPV6, ns)));
        let echo = L4::Icmp { icmp_type: 128, code: 0 };
        assert!(!is_protocol_exempt(&packet(v6, proto::ICMPV6, echo)));
    }

    #[test]
    fn dhcp_needs_both_ports() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(is_protocol_exempt(&packet(a, proto::UDP, L4::Ports { src: 67, dst: 68 })));
        assert!(!is_protocol_exempt(&packet(a, proto::UDP, L4::Ports { src: 1000, dst: 68 })));
        assert!(!is_protocol_exempt(&packet(a, proto::TCP, L4::Ports { src: 67, dst: 68 })));
    }
}
