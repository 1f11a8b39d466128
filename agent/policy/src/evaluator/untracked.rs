//! AWS's untracked flows, read straight from the rules (`sg-semantics.md` §1.4):
//!
//! > If a security group rule permits TCP or UDP flows for all traffic (0.0.0.0/0 or
//! > ::/0) and there is a corresponding rule in the other direction that permits all
//! > response traffic (0.0.0.0/0 or ::/0) for any port (0-65535), then that flow of
//! > traffic is not tracked.
//!
//! Read per address family, as the documentation's worked example shows (removing
//! only the IPv4 outbound rule makes IPv4 flows tracked and leaves IPv6 alone). "All
//! traffic" is a literal /0 CIDR rule (`0.0.0.0/0`, `::/0`, or a /0 written with host
//! bits); prefix lists and groups never count. "Any port" is protocol `-1`, or the
//! protocol with 0–65535, or the protocol by number. ICMP and every other protocol
//! are always tracked.
//!
//! An untracked flow leaves no trace: its packets are judged by the rules every
//! time, and so are its responses — a packet is a *response of an untracked flow*
//! when the reversed packet would be allowed by the other direction's rules as an
//! untracked flow. Neither creates a flow entry.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{allowing_rules, allows, opposite};
use crate::model::{Direction, InterfacePolicy, L4, Packet, PeerSource, Protocol, proto};

/// Whether a packet of `direction`, allowed by the rules whose ids are `allowing`,
/// is an untracked flow: one of those rules names all of the packet's family as a
/// literal /0 CIDR, and the other direction has a /0 CIDR rule of the same family
/// for every port of the packet's protocol. Always false for protocols other than
/// TCP and UDP.
pub fn is_untracked(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &Packet,
    allowing: &[String],
) -> bool {
    if !matches!(packet.proto, proto::TCP | proto::UDP) {
        return false;
    }
    let family = family(packet.peer(direction));
    let opened_to_everyone = policy.rules(direction).iter().any(|rule| {
        allowing.contains(&rule.id)
            && allows(rule, direction, packet)
            && slash_zero_family(&rule.source) == Some(family)
    });
    let answered_to_everyone = policy.rules(opposite(direction)).iter().any(|rule| {
        slash_zero_family(&rule.source) == Some(family) && every_port_of(&rule.protocol, packet.proto)
    });
    opened_to_everyone && answered_to_everyone
}

/// Whether a packet of `direction` is a response of an untracked flow: a TCP or UDP
/// packet whose reverse (addresses and ports swapped) the other direction's rules
/// allow as an untracked flow.
pub fn is_response_of_untracked(policy: &InterfacePolicy, direction: Direction, packet: &Packet) -> bool {
    if !matches!(packet.proto, proto::TCP | proto::UDP) {
        return false;
    }
    let l4 = match packet.l4 {
        L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
        other => other,
    };
    let reversed = Packet { src: packet.dst, dst: packet.src, l4, ..*packet };
    let other = opposite(direction);
    let allowing = allowing_rules(policy, other, &reversed);
    !allowing.is_empty() && is_untracked(policy, other, &reversed, &allowing)
}

fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 4 } else { 6 }
}

/// The family of a rule's peer when it is written as a /0 CIDR.
fn slash_zero_family(source: &PeerSource) -> Option<u8> {
    match source {
        PeerSource::Cidr(text) | PeerSource::CidrIpv6(text) => match text.trim().parse::<IpNet>() {
            Ok(net) if net.prefix_len() == 0 => Some(family(net.addr())),
            _ => None,
        },
        PeerSource::PrefixList(_) | PeerSource::Group(_) => None,
    }
}

/// Whether a rule allows every port of `number` (TCP or UDP).
fn every_port_of(protocol: &Protocol, number: u8) -> bool {
    match protocol {
        Protocol::All => true,
        Protocol::Number(n) => *n == number,
        Protocol::Tcp(range) if number == proto::TCP => range.from == 0 && range.to == 65535,
        Protocol::Udp(range) if number == proto::UDP => range.from == 0 && range.to == 65535,
        _ => false,
    }
}
