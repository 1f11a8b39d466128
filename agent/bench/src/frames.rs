//! The frames the measurements send, built with the dataplane's frame builder (the
//! one its differential tests use), so every frame is one the program parses fully.

use std::net::{IpAddr, Ipv4Addr};

use sgmirror_dataplane::frame::{self, FrameOptions};
use sgmirror_policy::model::{Fragment, L4, Packet, Transport, proto, tcp_flags};

use crate::policy::{PROBE_PORT, Probes};

/// Bytes after the transport header: a 64-byte IPv4/UDP frame, as in
/// `perf-method.md`.
const PAYLOAD: usize = 22;
/// The fragment identification of the fragment probes.
const FRAG_ID: u32 = 0x4242;
/// The local port of the tracked connection.
const LOCAL_PORT: u16 = 40000;

fn options(flags: u8) -> FrameOptions {
    FrameOptions {
        payload_len: PAYLOAD,
        transport: Transport { tcp_flags: flags, ..Transport::default() },
        ..FrameOptions::default()
    }
}

fn packet(src: IpAddr, dst: IpAddr, proto_number: u8, sport: u16, dport: u16, fragment: Fragment) -> Packet {
    let l4 = match (proto_number, fragment) {
        (_, Fragment::Later(_)) => L4::None,
        (proto::TCP | proto::UDP, _) => L4::Ports { src: sport, dst: dport },
        _ => L4::Icmp { icmp_type: 8, code: 0 },
    };
    Packet { src, dst, proto: proto_number, l4, fragment }
}

/// The frames of one family's probes.
pub struct ProbeFrames {
    /// udp 9 from a source no rule covers.
    pub deny_addr: Vec<u8>,
    /// The denied probe from a source the rules know.
    pub deny_port: Vec<u8>,
    /// The allowed probe (a new flow).
    pub allow: Vec<u8>,
    /// Outbound TCP SYN from this host to the stranger: opens the tracked flow.
    pub open_outbound: Vec<u8>,
    /// The stranger's SYN-ACK back: a reply on that tracked flow.
    pub tracked_reply: Vec<u8>,
    /// The first fragment of the allowed probe.
    pub first_fragment: Vec<u8>,
    /// A later fragment of it.
    pub later_fragment: Vec<u8>,
    /// udp [`UNTRACKED_PORT`] from the allowed source: allowed by an untracked rule
    /// (see [`crate::p1`]).
    pub allow_untracked: Vec<u8>,
}

/// The port of the untracked rule P1 adds (udp 7, echo).
pub const UNTRACKED_PORT: u16 = 7;

impl ProbeFrames {
    /// Builds the frames of `p`.
    pub fn new(p: &Probes) -> Self {
        let build = |pk: Packet, flags: u8| frame::build(&pk, &options(flags));
        let none = Fragment::None;
        let (a_src, a_proto, a_port) = p.allowed;
        let (d_src, d_proto, d_port) = p.denied;
        Self {
            deny_addr: build(packet(p.stranger, p.local, proto::UDP, 5353, PROBE_PORT, none), 0),
            deny_port: build(packet(d_src, p.local, d_proto, 5353, d_port, none), 0),
            allow: build(packet(a_src, p.local, a_proto, 5353, a_port, none), 0),
            open_outbound: build(
                packet(p.local, p.stranger, proto::TCP, LOCAL_PORT, 443, none),
                tcp_flags::SYN,
            ),
            tracked_reply: build(
                packet(p.stranger, p.local, proto::TCP, 443, LOCAL_PORT, none),
                tcp_flags::SYN | tcp_flags::ACK,
            ),
            first_fragment: build(packet(a_src, p.local, a_proto, 5353, a_port, Fragment::First(FRAG_ID)), 0),
            later_fragment: build(packet(a_src, p.local, a_proto, 5353, a_port, Fragment::Later(FRAG_ID)), 0),
            allow_untracked: build(packet(a_src, p.local, proto::UDP, 5353, UNTRACKED_PORT, none), 0),
        }
    }
}

/// The one's-complement checksum of an IPv4 header whose checksum field is zero.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 =
        header.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The live generator's frame: 64 bytes of Ethernet + IPv4 + UDP to `dst:dport` from
/// `src:5353`, no UDP checksum (allowed for IPv4; the generator rewrites the source).
pub fn generator_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: u16,
) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len: u16 = 64 - 14;
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = proto::UDP;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
    }
    let sum = ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f[34..36].copy_from_slice(&5353u16.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// The IPv4 header of a generator frame.
pub fn ipv4_header(frame: &[u8]) -> [u8; 20] {
    let mut h = [0u8; 20];
    h.copy_from_slice(&frame[14..34]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071-style example: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn generator_frame_has_a_valid_header_checksum() {
        let f = generator_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
            9,
        );
        assert_eq!(f.len(), 64);
        // Summing a header with its checksum gives 0xffff, i.e. a zero complement.
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
    }
}
