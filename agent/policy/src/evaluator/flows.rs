//! Tracked flows (`sg-semantics.md` §1.4): how a packet names its flow, how a flow's
//! state moves, and when it expires. The same definitions as the kernel's `FLOWS`
//! table, whose key and value types ([`FlowKey`], [`FlowValue`]) are used as they are.
//!
//! **Keys** are oriented from the interface: `local` is the interface's side (the
//! destination of an inbound packet, the source of an outbound one), `remote` the
//! peer, so both directions of a flow share one key. TCP and UDP carry their ports;
//! ICMP/ICMPv6 echo requests and replies carry the echo identifier as `local_port`
//! (`remote_port` 0); every other ICMP message and every other protocol has both
//! ports 0 — AWS tracks those by address and protocol only. ICMP is recognised by
//! the protocol number, whatever the IP version: protocol 1 is ICMP (echo 8/0,
//! errors 3, 11, 12), protocol 58 is ICMPv6 (echo 128/129, errors 1–4).
//!
//! **States** (`flow_state`), each with its idle timeout from [`Timeouts::for_state`]:
//! - TCP: a flow created by a SYN without ACK is `TCP_OPENING`; one created by any
//!   other TCP packet (a connection that existed before enforcement began, seen
//!   mid-stream) is `TCP_ESTABLISHED`. An opening flow becomes established on a
//!   packet in the direction opposite to its initiator. A later packet with FIN or
//!   RST, in either direction, makes it `TCP_CLOSING`, for good.
//! - UDP: `UDP_NEW` until a packet goes the other way (`UDP_REPLIED`), then
//!   `UDP_STREAM` on the next packet from the initiator's side — "more than one
//!   request/response".
//! - ICMP/ICMPv6: `ICMP`. Anything else: `OTHER`.
//!
//! **Expiry**: a flow is expired when `now - last_seen_ns` is *strictly greater*
//! than its state's timeout; an expired flow is as good as absent.

use std::net::IpAddr;

use sgmirror_common::{FlowKey, FlowValue, Timeouts, direction as dir, flow_state};

use super::opposite;
use crate::model::{Direction, L4, Packet, StatefulPacket, Transport, proto, tcp_flags};

/// Nanoseconds per second.
const NS_PER_S: u64 = 1_000_000_000;

/// Whether the packet is an ICMP or ICMPv6 error: ICMP destination unreachable (3),
/// time exceeded (11), parameter problem (12); ICMPv6 destination unreachable (1),
/// packet too big (2), time exceeded (3), parameter problem (4).
pub fn is_icmp_error(packet: &Packet) -> bool {
    match (packet.proto, packet.l4) {
        (proto::ICMP, L4::Icmp { icmp_type, .. }) => matches!(icmp_type, 3 | 11 | 12),
        (proto::ICMPV6, L4::Icmp { icmp_type, .. }) => matches!(icmp_type, 1..=4),
        _ => false,
    }
}

/// Whether the packet is an ICMP echo request or reply (8, 0) or an ICMPv6 one
/// (128, 129): its flow is named by the echo identifier.
pub fn is_icmp_echo(packet: &Packet) -> bool {
    match (packet.proto, packet.l4) {
        (proto::ICMP, L4::Icmp { icmp_type, .. }) => matches!(icmp_type, 0 | 8),
        (proto::ICMPV6, L4::Icmp { icmp_type, .. }) => matches!(icmp_type, 128 | 129),
        _ => false,
    }
}

/// The key of the flow a packet travelling in `direction` belongs to.
pub fn flow_key(direction: Direction, packet: &StatefulPacket) -> FlowKey {
    let p = &packet.packet;
    let (local, remote) = match direction {
        Direction::Ingress => (p.dst, p.src),
        Direction::Egress => (p.src, p.dst),
    };
    let (local_port, remote_port) = match (p.proto, p.l4) {
        (proto::TCP | proto::UDP, L4::Ports { src, dst }) => match direction {
            Direction::Ingress => (dst, src),
            Direction::Egress => (src, dst),
        },
        _ if is_icmp_echo(p) => (packet.transport.icmp_id, 0),
        _ => (0, 0),
    };
    FlowKey {
        local: address_bytes(local),
        remote: address_bytes(remote),
        local_port,
        remote_port,
        proto: p.proto,
        family: if local.is_ipv4() { 4 } else { 6 },
        _pad: [0; 2],
    }
}

/// The key of the flow an ICMP error travelling in `direction` is about: the packet
/// it quotes travelled the other way. `None` when the packet is not an ICMP error or
/// quotes no usable header.
pub fn related_flow_key(direction: Direction, packet: &StatefulPacket) -> Option<FlowKey> {
    if !is_icmp_error(&packet.packet) {
        return None;
    }
    let quoted = packet.transport.embedded?;
    let as_packet = StatefulPacket {
        packet: Packet {
            src: quoted.src,
            dst: quoted.dst,
            proto: quoted.proto,
            l4: quoted.l4,
            fragment: crate::model::Fragment::None,
        },
        transport: Transport { tcp_flags: 0, icmp_id: quoted.icmp_id, embedded: None },
    };
    Some(flow_key(opposite(direction), &as_packet))
}

/// An address as the kernel stores it: IPv4 in the first 4 bytes, the rest zero.
fn address_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => {
            let mut out = [0; 16];
            out[..4].copy_from_slice(&a.octets());
            out
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// The kernel's code for a direction (`sgmirror_common::direction`).
pub(super) fn direction_code(direction: Direction) -> u8 {
    match direction {
        Direction::Ingress => dir::INGRESS as u8,
        Direction::Egress => dir::EGRESS as u8,
    }
}

/// The state of a flow created by a packet of `protocol` with `flags` (TCP flags).
pub(super) fn initial_state(protocol: u8, flags: u8) -> u8 {
    match protocol {
        proto::TCP if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 => flow_state::TCP_OPENING,
        proto::TCP => flow_state::TCP_ESTABLISHED,
        proto::UDP => flow_state::UDP_NEW,
        proto::ICMP | proto::ICMPV6 => flow_state::ICMP,
        _ => flow_state::OTHER,
    }
}

/// The state of a flow after a packet with TCP `flags` in direction `code` (a
/// `sgmirror_common::direction` value).
pub(super) fn next_state(flow: &FlowValue, code: u8, flags: u8) -> u8 {
    let reply = code != flow.initiator;
    match flow.state {
        flow_state::TCP_OPENING | flow_state::TCP_ESTABLISHED
            if flags & (tcp_flags::FIN | tcp_flags::RST) != 0 =>
        {
            flow_state::TCP_CLOSING
        }
        flow_state::TCP_OPENING if reply => flow_state::TCP_ESTABLISHED,
        flow_state::UDP_NEW if reply => flow_state::UDP_REPLIED,
        flow_state::UDP_REPLIED if !reply => flow_state::UDP_STREAM,
        state => state,
    }
}

/// Whether a flow is expired at `now`: idle for strictly longer than its state's
/// timeout. A clock behind `last_seen_ns` counts as no time passed.
pub fn is_expired(flow: &FlowValue, timeouts: &Timeouts, now: u64) -> bool {
    let timeout = u64::from(timeouts.for_state(flow.state)) * NS_PER_S;
    now.saturating_sub(flow.last_seen_ns) > timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Embedded, Fragment};

    fn packet(src: &str, dst: &str, proto: u8, l4: L4) -> StatefulPacket {
        StatefulPacket {
            packet: Packet {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                proto,
                l4,
                fragment: Fragment::None,
            },
            transport: Transport::default(),
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    #[test]
    fn both_directions_of_a_connection_share_one_key() {
        let out = packet("10.0.0.5", "192.0.2.7", proto::TCP, L4::Ports { src: 40000, dst: 443 });
        let back = packet("192.0.2.7", "10.0.0.5", proto::TCP, L4::Ports { src: 443, dst: 40000 });
        let key = flow_key(Direction::Egress, &out);
        assert_eq!(key, flow_key(Direction::Ingress, &back));
        assert_eq!(
            key,
            FlowKey {
                local: v4([10, 0, 0, 5]),
                remote: v4([192, 0, 2, 7]),
                local_port: 40000,
                remote_port: 443,
                proto: proto::TCP,
                family: 4,
                _pad: [0; 2],
            }
        );
        // The same packet seen in the other direction is another flow.
        assert_ne!(key, flow_key(Direction::Ingress, &out));
    }

    #[test]
    fn echo_uses_the_identifier_other_icmp_and_protocols_only_addresses() {
        let mut ping =
            packet("2001:db8::1", "2001:db8::2", proto::ICMPV6, L4::Icmp { icmp_type: 128, code: 0 });
        ping.transport.icmp_id = 77;
        let key = flow_key(Direction::Egress, &ping);
        assert_eq!((key.local_port, key.remote_port, key.family), (77, 0, 6));
        let mut pong =
            packet("2001:db8::2", "2001:db8::1", proto::ICMPV6, L4::Icmp { icmp_type: 129, code: 0 });
        pong.transport.icmp_id = 77;
        assert_eq!(flow_key(Direction::Ingress, &pong), key);
        // An ICMPv4 echo type number inside ICMPv6 is not an echo.
        let mut odd = packet("2001:db8::2", "2001:db8::1", proto::ICMPV6, L4::Icmp { icmp_type: 8, code: 0 });
        odd.transport.icmp_id = 77;
        assert_eq!(flow_key(Direction::Ingress, &odd).local_port, 0);
        let esp = packet("10.0.0.5", "192.0.2.7", 50, L4::None);
        let key = flow_key(Direction::Egress, &esp);
        assert_eq!((key.local_port, key.remote_port, key.proto), (0, 0, 50));
        let stamp = packet("10.0.0.5", "192.0.2.7", proto::ICMP, L4::Icmp { icmp_type: 13, code: 0 });
        assert_eq!(flow_key(Direction::Egress, &stamp).local_port, 0);
    }

    #[test]
    fn an_error_names_the_flow_of_the_packet_it_quotes() {
        // We (10.0.0.5) sent UDP to 192.0.2.7:53; a router says it is unreachable.
        let request = packet("10.0.0.5", "192.0.2.7", proto::UDP, L4::Ports { src: 5353, dst: 53 });
        let mut error = packet("198.51.100.1", "10.0.0.5", proto::ICMP, L4::Icmp { icmp_type: 3, code: 3 });
        error.transport.embedded = Some(Embedded {
            src: "10.0.0.5".parse().unwrap(),
            dst: "192.0.2.7".parse().unwrap(),
            proto: proto::UDP,
            l4: L4::Ports { src: 5353, dst: 53 },
            icmp_id: 0,
        });
        assert_eq!(related_flow_key(Direction::Ingress, &error), Some(flow_key(Direction::Egress, &request)));
        // Not an error, or an error without a quoted header: no related flow.
        let mut echo = error;
        echo.packet.l4 = L4::Icmp { icmp_type: 0, code: 0 };
        assert_eq!(related_flow_key(Direction::Ingress, &echo), None);
        error.transport.embedded = None;
        assert_eq!(related_flow_key(Direction::Ingress, &error), None);
    }

    #[test]
    fn errors_and_echoes_by_protocol_and_type() {
        let icmp = |p, t| packet("10.0.0.1", "10.0.0.2", p, L4::Icmp { icmp_type: t, code: 0 }).packet;
        for t in [3, 11, 12] {
            assert!(is_icmp_error(&icmp(proto::ICMP, t)));
        }
        for t in [1, 2, 3, 4] {
            assert!(is_icmp_error(&icmp(proto::ICMPV6, t)));
        }
        for (p, t) in
            [(proto::ICMP, 0), (proto::ICMP, 4), (proto::ICMP, 8), (proto::ICMPV6, 0), (proto::ICMPV6, 11)]
        {
            assert!(!is_icmp_error(&icmp(p, t)), "{p} {t}");
        }
        assert!(is_icmp_echo(&icmp(proto::ICMP, 8)) && is_icmp_echo(&icmp(proto::ICMP, 0)));
        assert!(is_icmp_echo(&icmp(proto::ICMPV6, 128)) && is_icmp_echo(&icmp(proto::ICMPV6, 129)));
        assert!(!is_icmp_echo(&icmp(proto::ICMPV6, 0)));
    }

    #[test]
    fn tcp_states() {
        use tcp_flags::{ACK, FIN, RST, SYN};
        assert_eq!(initial_state(proto::TCP, SYN), flow_state::TCP_OPENING);
        assert_eq!(initial_state(proto::TCP, SYN | ACK), flow_state::TCP_ESTABLISHED);
        assert_eq!(initial_state(proto::TCP, ACK), flow_state::TCP_ESTABLISHED);
        assert_eq!(initial_state(proto::TCP, FIN | ACK), flow_state::TCP_ESTABLISHED);
        let (i, e) = (dir::INGRESS as u8, dir::EGRESS as u8);
        let flow = |state| FlowValue { last_seen_ns: 0, initiator: e, state, _pad: [0; 6] };
        let opening = flow(flow_state::TCP_OPENING);
        assert_eq!(next_state(&opening, e, SYN), flow_state::TCP_OPENING);
        assert_eq!(next_state(&opening, i, SYN | ACK), flow_state::TCP_ESTABLISHED);
        assert_eq!(next_state(&opening, i, RST), flow_state::TCP_CLOSING);
        let established = flow(flow_state::TCP_ESTABLISHED);
        assert_eq!(next_state(&established, e, ACK), flow_state::TCP_ESTABLISHED);
        assert_eq!(next_state(&established, i, FIN | ACK), flow_state::TCP_CLOSING);
        let closing = flow(flow_state::TCP_CLOSING);
        assert_eq!(next_state(&closing, i, ACK), flow_state::TCP_CLOSING);
        assert_eq!(next_state(&closing, e, SYN), flow_state::TCP_CLOSING);
    }

    #[test]
    fn udp_states() {
        let (i, e) = (dir::INGRESS as u8, dir::EGRESS as u8);
        assert_eq!(initial_state(proto::UDP, 0), flow_state::UDP_NEW);
        let flow = |state| FlowValue { last_seen_ns: 0, initiator: e, state, _pad: [0; 6] };
        assert_eq!(next_state(&flow(flow_state::UDP_NEW), e, 0), flow_state::UDP_NEW);
        assert_eq!(next_state(&flow(flow_state::UDP_NEW), i, 0), flow_state::UDP_REPLIED);
        assert_eq!(next_state(&flow(flow_state::UDP_REPLIED), i, 0), flow_state::UDP_REPLIED);
        assert_eq!(next_state(&flow(flow_state::UDP_REPLIED), e, 0), flow_state::UDP_STREAM);
        assert_eq!(next_state(&flow(flow_state::UDP_STREAM), i, 0), flow_state::UDP_STREAM);
        // TCP flags mean nothing to other protocols.
        assert_eq!(initial_state(proto::ICMP, tcp_flags::RST), flow_state::ICMP);
        assert_eq!(initial_state(proto::ICMPV6, 0), flow_state::ICMP);
        assert_eq!(initial_state(47, 0), flow_state::OTHER);
        assert_eq!(next_state(&flow(flow_state::ICMP), i, tcp_flags::FIN), flow_state::ICMP);
        assert_eq!(next_state(&flow(flow_state::OTHER), i, tcp_flags::FIN), flow_state::OTHER);
    }

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        let t = Timeouts::DEFAULT;
        let flow = FlowValue { last_seen_ns: 1_000, initiator: 0, state: flow_state::UDP_NEW, _pad: [0; 6] };
        let limit = 1_000 + 30 * NS_PER_S;
        assert!(!is_expired(&flow, &t, limit));
        assert!(is_expired(&flow, &t, limit + 1));
        assert!(!is_expired(&flow, &t, 0), "a clock behind the entry is no time passed");
        let stream = FlowValue { state: flow_state::UDP_STREAM, ..flow };
        assert!(!is_expired(&stream, &t, limit + 1));
        assert!(is_expired(&stream, &t, 1_000 + 180 * NS_PER_S + 1));
    }
}
