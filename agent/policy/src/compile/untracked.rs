//! AWS's untracked flows (`sg-semantics.md` §1.4), compiled into `PortValue.flags`.
//!
//! "If a security group rule permits TCP or UDP flows for all traffic (0.0.0.0/0 or
//! ::/0) and there is a corresponding rule in the other direction that permits all
//! response traffic (0.0.0.0/0 or ::/0) for any port (0-65535), then that flow of
//! traffic is not tracked." A `PORTS` entry of a class of family F gets
//! `FLAG_UNTRACKED_TCP` when one of the rules of its match set has a literal /0 CIDR
//! of family F as peer and the other direction has a /0 CIDR rule of family F for all
//! TCP ports (or all protocols); the same for UDP. Only the bits of the protocols the
//! entry can match are set: an entry keyed on a protocol carries at most that
//! protocol's bit, a class-only entry (protocol `-1` rules) may carry both.
//!
//! The kernel tests the bit of the packet's protocol: on the allowing entry (an
//! untracked flow creates no entry), and on the entry the *reversed* packet hits in
//! the other direction's maps (a response of an untracked flow creates none either).
//! The reference evaluator decides the same from the rules
//! (`evaluator::is_untracked`); a property test holds them together.

use ipnet::IpNet;
use sgmirror_common::{FLAG_UNTRACKED_TCP, FLAG_UNTRACKED_UDP};

use crate::model::{Direction, InterfacePolicy, PeerSource, Protocol, proto};

/// What the untracked flags of one direction's entries depend on.
#[derive(Debug)]
pub struct Untracked {
    /// Per rule of the direction (by index): the family of its peer when the snapshot
    /// wrote it as a literal /0 CIDR.
    zero_family: Vec<Option<u8>>,
    /// `[family][protocol]` (IPv4, IPv6 × TCP, UDP): the other direction has a /0
    /// CIDR rule of that family for every port of that protocol.
    responses: [[bool; 2]; 2],
}

/// The two protocols that can be untracked, with their flag bits.
const PROTOCOLS: [(u8, u32); 2] = [(proto::TCP, FLAG_UNTRACKED_TCP), (proto::UDP, FLAG_UNTRACKED_UDP)];

impl Untracked {
    /// The untracked context of `direction`'s rules of `policy`.
    pub fn new(policy: &InterfacePolicy, direction: Direction) -> Self {
        let zero_family = policy.rules(direction).iter().map(|r| zero_cidr_family(&r.source)).collect();
        let other = match direction {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        };
        let mut responses = [[false; 2]; 2];
        for rule in policy.rules(other) {
            let Some(family) = zero_cidr_family(&rule.source) else { continue };
            for (p, (number, _)) in PROTOCOLS.iter().enumerate() {
                if covers_every_port(&rule.protocol, *number) {
                    responses[family_index(family)][p] = true;
                }
            }
        }
        Self { zero_family, responses }
    }

    /// The flags of an entry of a class of `family` that matches `proto` (`None`: a
    /// class-only entry, every protocol) and allows the rules `set` (indices).
    pub fn flags(&self, family: u8, proto: Option<u8>, set: &[u32]) -> u32 {
        let from_zero =
            set.iter().any(|&r| self.zero_family.get(r as usize).copied().flatten() == Some(family));
        if !from_zero {
            return 0;
        }
        let mut flags = 0;
        for (p, (number, bit)) in PROTOCOLS.iter().enumerate() {
            let matches = proto.is_none_or(|n| n == *number);
            if matches && self.responses[family_index(family)][p] {
                flags |= bit;
            }
        }
        flags
    }
}

/// The `PortValue.flags` bit that says a flow of protocol `number` is untracked (0
/// for protocols other than TCP and UDP, which are always tracked).
pub fn untracked_flag(number: u8) -> u32 {
    PROTOCOLS.iter().find(|(n, _)| *n == number).map_or(0, |(_, bit)| *bit)
}

fn family_index(family: u8) -> usize {
    usize::from(family == 6)
}

/// The family (4 or 6) of a peer written as a literal /0 CIDR — `0.0.0.0/0`, `::/0`,
/// or with host bits (`203.0.113.5/0`, which AWS reads as its network part). Prefix
/// lists and groups never count, even when they hold a /0.
pub fn zero_cidr_family(source: &PeerSource) -> Option<u8> {
    let (PeerSource::Cidr(text) | PeerSource::CidrIpv6(text)) = source else { return None };
    match text.trim().parse::<IpNet>().ok()? {
        IpNet::V4(n) if n.prefix_len() == 0 => Some(4),
        IpNet::V6(n) if n.prefix_len() == 0 => Some(6),
        _ => None,
    }
}

/// Whether a rule's protocol allows every port of `number` (TCP or UDP): `-1`, the
/// protocol with 0–65535, or the protocol by number (all of its traffic).
pub fn covers_every_port(protocol: &Protocol, number: u8) -> bool {
    match *protocol {
        Protocol::All => true,
        Protocol::Tcp(r) => number == proto::TCP && r.from == 0 && r.to == u16::MAX,
        Protocol::Udp(r) => number == proto::UDP && r.from == 0 && r.to == u16::MAX,
        Protocol::Number(n) => n == number,
        Protocol::Icmp(_) | Protocol::Icmpv6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IcmpMatch, PortRange, ResolvedRule};

    fn rule(direction: Direction, protocol: Protocol, source: PeerSource) -> ResolvedRule {
        let peers = match &source {
            PeerSource::Cidr(t) | PeerSource::CidrIpv6(t) => vec![t.parse::<IpNet>().unwrap().trunc()],
            _ => vec!["0.0.0.0/0".parse().unwrap()],
        };
        ResolvedRule {
            id: "sgr-x".to_owned(),
            group_id: "sg-1".to_owned(),
            direction,
            protocol,
            source,
            peers,
        }
    }

    fn cidr(t: &str) -> PeerSource {
        if t.contains(':') { PeerSource::CidrIpv6(t.to_owned()) } else { PeerSource::Cidr(t.to_owned()) }
    }

    fn tcp(from: u16, to: u16) -> Protocol {
        Protocol::Tcp(PortRange { from, to })
    }

    #[test]
    fn zero_cidrs_are_literal_slash_zero_cidrs() {
        assert_eq!(zero_cidr_family(&cidr("0.0.0.0/0")), Some(4));
        assert_eq!(zero_cidr_family(&cidr("203.0.113.5/0")), Some(4));
        assert_eq!(zero_cidr_family(&cidr("::/0")), Some(6));
        assert_eq!(zero_cidr_family(&cidr("2001:db8::1/0")), Some(6));
        assert_eq!(zero_cidr_family(&cidr("0.0.0.0/1")), None);
        assert_eq!(zero_cidr_family(&cidr("::/1")), None);
        assert_eq!(zero_cidr_family(&cidr("bogus")), None);
        assert_eq!(zero_cidr_family(&PeerSource::PrefixList("pl-1".to_owned())), None);
        assert_eq!(zero_cidr_family(&PeerSource::Group("sg-1".to_owned())), None);
    }

    #[test]
    fn only_tcp_and_udp_have_a_flag() {
        assert_eq!(untracked_flag(proto::TCP), FLAG_UNTRACKED_TCP);
        assert_eq!(untracked_flag(proto::UDP), FLAG_UNTRACKED_UDP);
        assert_eq!(untracked_flag(proto::ICMP), 0);
        assert_eq!(untracked_flag(50), 0);
    }

    #[test]
    fn every_port_means_all_protocols_the_full_range_or_the_number() {
        assert!(covers_every_port(&Protocol::All, proto::TCP));
        assert!(covers_every_port(&tcp(0, 65535), proto::TCP));
        assert!(!covers_every_port(&tcp(0, 65535), proto::UDP));
        assert!(!covers_every_port(&tcp(1, 65535), proto::TCP));
        assert!(!covers_every_port(&tcp(0, 65534), proto::TCP));
        assert!(covers_every_port(&Protocol::Udp(PortRange { from: 0, to: 65535 }), proto::UDP));
        assert!(covers_every_port(&Protocol::Number(proto::UDP), proto::UDP));
        assert!(!covers_every_port(&Protocol::Number(50), proto::UDP));
        assert!(!covers_every_port(&Protocol::Icmp(IcmpMatch::All), proto::TCP));
    }

    #[test]
    fn flags_need_both_halves_in_the_same_family() {
        let policy = InterfacePolicy {
            ingress: vec![
                rule(Direction::Ingress, tcp(80, 80), cidr("0.0.0.0/0")),
                rule(Direction::Ingress, tcp(80, 80), cidr("::/0")),
                rule(Direction::Ingress, tcp(22, 22), cidr("203.0.113.1/32")),
                rule(Direction::Ingress, Protocol::All, cidr("0.0.0.0/0")),
            ],
            egress: vec![rule(Direction::Egress, Protocol::All, cidr("0.0.0.0/0"))],
            ..InterfacePolicy::default()
        };
        let u = Untracked::new(&policy, Direction::Ingress);
        assert_eq!(u.flags(4, Some(proto::TCP), &[0]), FLAG_UNTRACKED_TCP);
        // No IPv6 rule for the responses.
        assert_eq!(u.flags(6, Some(proto::TCP), &[1]), 0);
        // Not a /0 peer; but any /0 rule in the set is enough.
        assert_eq!(u.flags(4, Some(proto::TCP), &[2]), 0);
        assert_eq!(u.flags(4, Some(proto::TCP), &[0, 2]), FLAG_UNTRACKED_TCP);
        // A class-only entry serves both protocols; an entry keyed on another protocol
        // carries no bit.
        assert_eq!(u.flags(4, None, &[3]), FLAG_UNTRACKED_TCP | FLAG_UNTRACKED_UDP);
        assert_eq!(u.flags(4, Some(50), &[3]), 0);
        assert_eq!(u.flags(4, Some(proto::UDP), &[3]), FLAG_UNTRACKED_UDP);
        // The egress side: its /0 rule is untracked only if ingress allows every port.
        let e = Untracked::new(&policy, Direction::Egress);
        assert_eq!(e.flags(4, None, &[0]), FLAG_UNTRACKED_TCP | FLAG_UNTRACKED_UDP);
        let narrow = InterfacePolicy { ingress: policy.ingress[..3].to_vec(), ..policy };
        let e = Untracked::new(&narrow, Direction::Egress);
        assert_eq!(e.flags(4, None, &[0]), 0);
    }
}
