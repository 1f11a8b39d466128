//! Ethernet frames for a [`Packet`], to run the kernel program on: `explain
//! --kernel`, the differential tests and the benchmarks.
//!
//! The frame carries what the program parses, in the shapes the options ask for
//! (VLAN tags, IPv4 options, IPv6 extension headers, Ethernet padding). Checksums
//! are not checked by XDP; the IPv4 header checksum and, for whole packets, the
//! transport checksum are computed anyway so that frames are also valid on a wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sgmirror_policy::model::{Embedded, Fragment, L4, Packet, Transport, proto};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
/// Fragment offset of a later fragment, in 8-byte units (after 1480 bytes).
const LATER_OFFSET: u16 = 185;

/// How to shape a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameOptions {
    /// VLAN ids, outermost first: one tag is 802.1Q, two are 802.1ad + 802.1Q (more
    /// tags than the program accepts make a malformed frame, for tests).
    pub vlan_tags: Vec<u16>,
    /// Bytes of IPv4 options (NOPs), a multiple of 4 up to 40.
    pub ipv4_options_len: usize,
    /// IPv6 extension headers before the fragment header (if any) and the transport
    /// header, in order: 0 (hop-by-hop), 43 (routing), 60 (destination options),
    /// 51 (AH) or 44 (an atomic fragment header).
    pub ipv6_ext_headers: Vec<u8>,
    /// Zero bytes after the IP packet (Ethernet padding).
    pub ethernet_padding: usize,
    /// Bytes after the transport header (or of a later fragment's data, at least 8).
    pub payload_len: usize,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// TCP flags, ICMP echo identifier, and the quoted header of an ICMP error.
    /// `Transport::default()` gives the frames of the stateless tests: TCP SYN, echo
    /// identifier 0x1234, and errors quoting a UDP datagram (port 33434 → 53) from
    /// the packet's destination to its source. Any other value is used as given (an
    /// error without `embedded` still quotes that datagram).
    pub transport: Transport,
}

impl Default for FrameOptions {
    fn default() -> Self {
        Self {
            vlan_tags: Vec::new(),
            ipv4_options_len: 0,
            ipv6_ext_headers: Vec::new(),
            ethernet_padding: 0,
            payload_len: 0,
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            transport: Transport::default(),
        }
    }
}

/// Where the parts of a built frame start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport header (of the fragment data for a later fragment).
    pub l4: usize,
    /// Offset one past the IP packet (where the padding starts).
    pub ip_end: usize,
}

/// Builds the frame of `packet`.
pub fn build(packet: &Packet, opts: &FrameOptions) -> Vec<u8> {
    build_with_layout(packet, opts).0
}

/// Builds the frame of `packet` and tells where its headers are (tests that
/// truncate or corrupt frames need to know).
pub fn build_with_layout(packet: &Packet, opts: &FrameOptions) -> (Vec<u8>, Layout) {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&opts.dst_mac);
    frame.extend_from_slice(&opts.src_mac);
    let tags = opts.vlan_tags.len();
    for (i, vid) in opts.vlan_tags.iter().enumerate() {
        let tpid = if tags >= 2 && i == 0 { ETH_P_8021AD } else { ETH_P_8021Q };
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    let l3 = frame.len() + 2;
    let (ip, l4_in_ip) = match packet.src {
        IpAddr::V4(src) => {
            frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
            ipv4_packet(packet, src, v4(packet.dst), opts)
        }
        IpAddr::V6(src) => {
            frame.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            ipv6_packet(packet, src, v6(packet.dst), opts)
        }
    };
    frame.extend_from_slice(&ip);
    let ip_end = frame.len();
    frame.resize(ip_end + opts.ethernet_padding, 0);
    (frame, Layout { l3, l4: l3 + l4_in_ip, ip_end })
}

fn v4(addr: IpAddr) -> Ipv4Addr {
    match addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The IPv4 packet and the offset of its transport header.
fn ipv4_packet(packet: &Packet, src: Ipv4Addr, dst: Ipv4Addr, opts: &FrameOptions) -> (Vec<u8>, usize) {
    let options = (opts.ipv4_options_len / 4).min(10) * 4;
    let ihl = 20 + options;
    let l4 = transport(packet, &IpAddr::V4(src), &IpAddr::V4(dst), opts);
    let total = ihl + l4.len();
    let (id, flags_offset) = match packet.fragment {
        Fragment::None => (0u16, 0x4000u16),
        // IPv4 identifications are 16 bits.
        Fragment::First(id) => (id as u16, 0x2000),
        Fragment::Later(id) => (id as u16, LATER_OFFSET),
    };
    let mut h = Vec::with_capacity(total);
    h.push(0x40 | (ihl / 4) as u8);
    h.push(0);
    h.extend_from_slice(&(total.min(0xffff) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&flags_offset.to_be_bytes());
    h.push(64);
    h.push(packet.proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.resize(ihl, 1); // NOP options
    let sum = checksum(&h, 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(&l4);
    (h, ihl)
}

/// The IPv6 packet and the offset of its transport header.
fn ipv6_packet(packet: &Packet, src: Ipv6Addr, dst: Ipv6Addr, opts: &FrameOptions) -> (Vec<u8>, usize) {
    let l4 = transport(packet, &IpAddr::V6(src), &IpAddr::V6(dst), opts);
    let fragment = match packet.fragment {
        Fragment::None => None,
        Fragment::First(id) => Some((1u16, id)),
        Fragment::Later(id) => Some((LATER_OFFSET << 3, id)),
    };
    // The chain: the listed headers, then the fragment header, then the transport.
    let mut chain: Vec<u8> = opts.ipv6_ext_headers.clone();
    if fragment.is_some() {
        chain.push(IPPROTO_FRAGMENT);
    }
    let mut ext = Vec::new();
    for (i, &kind) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(packet.proto);
        let is_real_fragment = fragment.is_some() && i == chain.len() - 1;
        match kind {
            IPPROTO_FRAGMENT => {
                let (offset_m, id) = if is_real_fragment { fragment.unwrap_or_default() } else { (0, 0) };
                ext.extend_from_slice(&[next, 0]);
                ext.extend_from_slice(&offset_m.to_be_bytes());
                ext.extend_from_slice(&id.to_be_bytes());
            }
            IPPROTO_AH => {
                // 16 bytes: payload length (16 / 4) - 2 = 2; SPI, sequence, 4-byte ICV.
                ext.extend_from_slice(&[next, 2, 0, 0, 0, 0, 0x01, 0x00, 0, 0, 0, 1, 0, 0, 0, 0]);
            }
            IPPROTO_HOPOPTS | 60 => ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]), // PadN
            _ => ext.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]), // routing, segments left 0
        }
    }
    let first_next = chain.first().copied().unwrap_or(packet.proto);
    let payload_len = ext.len() + l4.len();
    let mut h = Vec::with_capacity(40 + payload_len);
    h.extend_from_slice(&[0x60, 0, 0, 0]);
    h.extend_from_slice(&(payload_len.min(0xffff) as u16).to_be_bytes());
    h.push(first_next);
    h.push(64);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&ext);
    let l4_offset = h.len();
    h.extend_from_slice(&l4);
    (h, l4_offset)
}

fn is_icmp_error(packet: &Packet, icmp_type: u8) -> bool {
    match packet.proto {
        proto::ICMP => matches!(icmp_type, 3 | 11 | 12),
        proto::ICMPV6 => matches!(icmp_type, 1..=4),
        _ => false,
    }
}

/// The transport header and payload (the data of a later fragment).
fn transport(packet: &Packet, src: &IpAddr, dst: &IpAddr, opts: &FrameOptions) -> Vec<u8> {
    if let Fragment::Later(_) = packet.fragment {
        return vec![0xab; opts.payload_len.max(8)];
    }
    let (sport, dport) = match packet.l4 {
        L4::Ports { src, dst } => (src, dst),
        _ => (0, 0),
    };
    let (icmp_type, code) = match packet.l4 {
        L4::Icmp { icmp_type, code } => (icmp_type, code),
        _ => (0, 0),
    };
    let legacy = opts.transport == Transport::default();
    let tcp_flags = if legacy { 0x02 } else { opts.transport.tcp_flags };
    let echo_id = if legacy { 0x1234 } else { opts.transport.icmp_id };
    let mut t = Vec::new();
    let checksum_at = match packet.proto {
        proto::TCP => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&1u32.to_be_bytes()); // sequence
            t.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
            t.extend_from_slice(&[5 << 4, tcp_flags]); // data offset 5
            t.extend_from_slice(&0xffffu16.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            Some(16)
        }
        proto::UDP => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&((8 + opts.payload_len).min(0xffff) as u16).to_be_bytes());
            t.extend_from_slice(&[0, 0]);
            Some(6)
        }
        proto::ICMP | proto::ICMPV6 => {
            t.extend_from_slice(&[icmp_type, code, 0, 0]);
            t.extend_from_slice(&echo_id.to_be_bytes()); // identifier (or unused)
            t.extend_from_slice(&[0, 1]); // sequence (or unused)
            if is_icmp_error(packet, icmp_type) {
                match &opts.transport.embedded {
                    Some(quoted) => t.extend_from_slice(&quoted_packet(quoted)),
                    None => t.extend_from_slice(&embedded_header(src, dst)),
                }
            }
            Some(2)
        }
        _ => {
            if let L4::Ports { .. } = packet.l4 {
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
            }
            None
        }
    };
    t.resize(t.len() + opts.payload_len, 0);
    if let (Some(at), Fragment::None) = (checksum_at, packet.fragment) {
        // ICMP for IPv4 has no pseudo-header; TCP, UDP and ICMPv6 do.
        let initial = if packet.proto == proto::ICMP && src.is_ipv4() {
            0
        } else {
            pseudo_header_sum(src, dst, packet.proto, t.len())
        };
        let mut sum = checksum(&t, initial);
        if packet.proto == proto::UDP && sum == 0 {
            sum = 0xffff;
        }
        t[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    t
}

/// The IP header and first 8 bytes of the packet an ICMP error is about: a UDP
/// datagram the protected host sent to the peer (`src` of the error).
fn embedded_header(src: &IpAddr, dst: &IpAddr) -> Vec<u8> {
    let udp = [0x82, 0x9a, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]; // 33434 → 53
    let mut h = Vec::new();
    match (dst, src) {
        (IpAddr::V4(me), IpAddr::V4(peer)) => {
            h.extend_from_slice(&[0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, proto::UDP, 0, 0]);
            h.extend_from_slice(&me.octets());
            h.extend_from_slice(&peer.octets());
            let sum = checksum(&h, 0);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        _ => {
            h.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, proto::UDP, 64]);
            h.extend_from_slice(&v6(*dst).octets());
            h.extend_from_slice(&v6(*src).octets());
        }
    }
    h.extend_from_slice(&udp);
    h
}

/// The IP header and first 8 bytes of the packet an ICMP error quotes: an IPv4
/// header without options, or a 40-byte IPv6 header (no extension headers), then the
/// ports (TCP, UDP and, when given, other protocols) or the ICMP type, code and echo
/// identifier.
fn quoted_packet(q: &Embedded) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8);
    match q.l4 {
        L4::Ports { src, dst } => {
            l4.extend_from_slice(&src.to_be_bytes());
            l4.extend_from_slice(&dst.to_be_bytes());
            // TCP: the sequence number; UDP: length and checksum.
            l4.extend_from_slice(&[0, 8, 0, 0]);
        }
        L4::Icmp { icmp_type, code } => {
            l4.extend_from_slice(&[icmp_type, code, 0, 0]);
            l4.extend_from_slice(&q.icmp_id.to_be_bytes());
            l4.extend_from_slice(&[0, 1]);
        }
        L4::None => l4.resize(8, 0),
    }
    let mut h = Vec::with_capacity(48 + 8);
    match (q.src, q.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.extend_from_slice(&[0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, q.proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = checksum(&h, 0);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (s, d) => {
            h.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, q.proto, 64]);
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
        }
    }
    h.extend_from_slice(&l4);
    h
}

fn pseudo_header_sum(src: &IpAddr, dst: &IpAddr, protocol: u8, len: usize) -> u32 {
    let mut bytes = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.extend_from_slice(&[0, protocol]);
            bytes.extend_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
        }
        _ => {
            bytes.extend_from_slice(&v6(*src).octets());
            bytes.extend_from_slice(&v6(*dst).octets());
            bytes.extend_from_slice(&(len as u32).to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, protocol]);
        }
    }
    sum_words(&bytes, 0)
}

fn sum_words(bytes: &[u8], initial: u32) -> u32 {
    let mut sum = initial;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    sum
}

/// The Internet checksum (RFC 1071) of `bytes`, starting from a partial sum.
fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = sum_words(bytes, initial);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src: &str, dst: &str, protocol: u8, l4: L4, fragment: Fragment) -> Packet {
        Packet { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto: protocol, l4, fragment }
    }

    #[test]
    fn ipv4_tcp_frame_has_the_fields_and_a_valid_header_checksum() {
        let p = packet(
            "198.51.100.7",
            "10.0.0.5",
            proto::TCP,
            L4::Ports { src: 40000, dst: 443 },
            Fragment::None,
        );
        let opts = FrameOptions {
            vlan_tags: vec![7],
            ipv4_options_len: 8,
            ethernet_padding: 6,
            ..Default::default()
        };
        let (f, layout) = build_with_layout(&p, &opts);
        assert_eq!(&f[12..14], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(&f[16..18], &ETH_P_IP.to_be_bytes());
        assert_eq!(layout.l3, 18);
        assert_eq!(f[18], 0x47, "version 4, ihl 7");
        assert_eq!(layout.l4, 18 + 28);
        assert_eq!(u16::from_be_bytes([f[20], f[21]]) as usize, 28 + 20);
        assert_eq!(checksum(&f[18..18 + 28], 0), 0, "header checksum verifies");
        assert_eq!(&f[layout.l4 + 2..layout.l4 + 4], &443u16.to_be_bytes());
        assert_eq!(layout.ip_end + 6, f.len());
        // The TCP checksum verifies over the pseudo-header.
        let pseudo = pseudo_header_sum(&p.src, &p.dst, proto::TCP, 20);
        assert_eq!(checksum(&f[layout.l4..layout.ip_end], pseudo), 0);
    }

    #[test]
    fn ipv6_chain_links_next_headers_and_ends_in_a_fragment_header() {
        let p = packet(
            "2001:db8::1",
            "2001:db8::2",
            proto::UDP,
            L4::Ports { src: 5, dst: 53 },
            Fragment::First(77),
        );
        let opts = FrameOptions { ipv6_ext_headers: vec![0, 60, 43, 51], ..Default::default() };
        let (f, layout) = build_with_layout(&p, &opts);
        let ip = layout.l3;
        assert_eq!(f[ip + 6], 0, "hop-by-hop first");
        let mut off = ip + 40;
        let mut seen = Vec::new();
        let mut next = f[ip + 6];
        while next != proto::UDP {
            seen.push(next);
            let len = match next {
                IPPROTO_FRAGMENT => 8,
                IPPROTO_AH => (usize::from(f[off + 1]) + 2) * 4,
                _ => (usize::from(f[off + 1]) + 1) * 8,
            };
            if next == IPPROTO_FRAGMENT {
                assert_eq!(u16::from_be_bytes([f[off + 2], f[off + 3]]), 1, "offset 0, M=1");
                assert_eq!(u32::from_be_bytes([f[off + 4], f[off + 5], f[off + 6], f[off + 7]]), 77);
            }
            next = f[off];
            off += len;
        }
        assert_eq!(seen, [0, 60, 43, 51, 44]);
        assert_eq!(off, layout.l4);
        assert_eq!(u16::from_be_bytes([f[ip + 4], f[ip + 5]]) as usize, f.len() - ip - 40);
    }

    #[test]
    fn transport_sets_flags_echo_ids_and_the_quoted_packet() {
        let syn_ack =
            packet("10.0.0.5", "192.0.2.1", proto::TCP, L4::Ports { src: 80, dst: 4000 }, Fragment::None);
        let opts = FrameOptions {
            transport: Transport { tcp_flags: 0x12, ..Transport::default() },
            ..Default::default()
        };
        let (f, layout) = build_with_layout(&syn_ack, &opts);
        assert_eq!(f[layout.l4 + 13], 0x12);
        // The default keeps the stateless tests' SYN.
        let (f, layout) = build_with_layout(&syn_ack, &FrameOptions::default());
        assert_eq!(f[layout.l4 + 13], 0x02);

        let echo = packet(
            "2001:db8::1",
            "2001:db8::2",
            proto::ICMPV6,
            L4::Icmp { icmp_type: 128, code: 0 },
            Fragment::None,
        );
        let opts = FrameOptions {
            transport: Transport { icmp_id: 0xbeef, ..Transport::default() },
            ..Default::default()
        };
        let (f, layout) = build_with_layout(&echo, &opts);
        assert_eq!(&f[layout.l4 + 4..layout.l4 + 6], &[0xbe, 0xef]);
        let pseudo = pseudo_header_sum(&echo.src, &echo.dst, proto::ICMPV6, layout.ip_end - layout.l4);
        assert_eq!(checksum(&f[layout.l4..layout.ip_end], pseudo), 0, "ICMPv6 checksum verifies");

        let quoted = Embedded {
            src: "2001:db8::2".parse().unwrap(),
            dst: "2001:db8::9".parse().unwrap(),
            proto: proto::TCP,
            l4: L4::Ports { src: 5555, dst: 443 },
            icmp_id: 0,
        };
        let too_big = packet(
            "2001:db8::9",
            "2001:db8::2",
            proto::ICMPV6,
            L4::Icmp { icmp_type: 2, code: 0 },
            Fragment::None,
        );
        let opts = FrameOptions {
            transport: Transport { embedded: Some(quoted), ..Transport::default() },
            ..Default::default()
        };
        let (f, layout) = build_with_layout(&too_big, &opts);
        let q = layout.l4 + 8;
        assert_eq!(layout.ip_end - q, 40 + 8);
        assert_eq!(f[q] >> 4, 6);
        assert_eq!(f[q + 6], proto::TCP);
        assert_eq!(&f[q + 8..q + 24], &"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(&f[q + 40..q + 44], &[0x15, 0xb3, 0x01, 0xbb]);

        let quoted4 = Embedded {
            src: "10.0.0.5".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            proto: proto::ICMP,
            l4: L4::Icmp { icmp_type: 8, code: 0 },
            icmp_id: 77,
        };
        let exceeded =
            packet("192.0.2.1", "10.0.0.5", proto::ICMP, L4::Icmp { icmp_type: 11, code: 0 }, Fragment::None);
        let opts = FrameOptions {
            transport: Transport { embedded: Some(quoted4), ..Transport::default() },
            ..Default::default()
        };
        let (f, layout) = build_with_layout(&exceeded, &opts);
        let q = layout.l4 + 8;
        assert_eq!(layout.ip_end - q, 28);
        assert_eq!(checksum(&f[q..q + 20], 0), 0, "quoted header checksum verifies");
        assert_eq!(&f[q + 20..q + 22], &[8, 0]);
        assert_eq!(&f[q + 24..q + 26], &77u16.to_be_bytes());
    }

    #[test]
    fn icmp_errors_embed_a_header_and_later_fragments_carry_no_transport_header() {
        let unreachable =
            packet("192.0.2.1", "10.0.0.5", proto::ICMP, L4::Icmp { icmp_type: 3, code: 4 }, Fragment::None);
        let (f, layout) = build_with_layout(&unreachable, &FrameOptions::default());
        assert_eq!(layout.ip_end - layout.l4, 8 + 20 + 8);
        assert_eq!(f[layout.l4 + 8], 0x45, "embedded IPv4 header");
        assert_eq!(checksum(&f[layout.l4..layout.ip_end], 0), 0, "ICMP checksum verifies");

        let later = packet("192.0.2.1", "10.0.0.5", proto::TCP, L4::None, Fragment::Later(0x1234));
        let (f, layout) = build_with_layout(&later, &FrameOptions::default());
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 0x1234);
        assert_eq!(u16::from_be_bytes([f[20], f[21]]) & 0x1fff, LATER_OFFSET);
        assert_eq!(layout.ip_end - layout.l4, 8);
    }
}
