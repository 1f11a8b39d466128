//! Header parsing, independent of the program type: Ethernet with up to two VLAN
//! tags, IPv4 with options, IPv6 with a bounded walk of extension headers, and the
//! few transport fields a security group looks at.
//!
//! Every read goes through [`Frame`], which checks the bounds against the end of the
//! bytes the program can read directly; the checks against the length of the packet
//! ([`Frame::len`]) and the end of the IP packet (`ip_end`) are the semantic ones
//! (Ethernet padding after the IP packet is not part of it). At XDP both ends are the
//! same; at TC the readable bytes may be a prefix of a longer packet.
//!
//! Verifier: everything the decision needs is copied out of the packet here, into
//! [`Parsed`]. Header offsets differ between paths (VLAN tags, options, extension
//! headers) and the verifier tracks each path separately while an offset is live;
//! once the offsets are dead the paths converge, so the decision code is verified
//! once instead of once per header layout.

use core::ptr::{copy_nonoverlapping, read_volatile, write_volatile};

use sgmirror_common::MAX_IPV6_EXT_HEADERS;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const MAX_VLAN_TAGS: usize = 2;
/// Offsets past this are malformed. Never reached by a real frame (at most 22 bytes of
/// Ethernet, 40 of IPv6 and 8 extension headers of at most 2048 bytes each), it
/// bounds offsets the verifier has stopped tracking exactly (see [`opaque_offset`]).
const MAX_OFFSET: usize = 0x7fff;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// IP protocol numbers of the transport headers that are parsed.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Fragmentation state of a packet ([`Parsed::frag`]).
pub const FRAG_NONE: u8 = 0;
pub const FRAG_FIRST: u8 = 1;
pub const FRAG_LATER: u8 = 2;

/// The bytes of one frame, as the program context gives them.
#[derive(Clone, Copy)]
pub struct Frame {
    /// First byte readable directly (the Ethernet header).
    pub start: usize,
    /// One past the last byte readable directly.
    pub end: usize,
    /// Length of the whole frame, readable or not (`skb->len` at TC).
    pub len: usize,
}

impl Frame {
    /// The frame of an XDP context: all of it is readable. The length is hidden from
    /// LLVM: knowing `len == end - start`, it would drop bounds checks against `end`
    /// that the semantic checks against `len` imply, and the verifier needs them.
    #[inline(always)]
    pub fn linear(start: usize, end: usize) -> Self {
        let mut slot = 0u64;
        // SAFETY: a stack slot of our own; volatile keeps LLVM from seeing through it.
        let len = unsafe {
            write_volatile(&raw mut slot, (end - start) as u64);
            read_volatile(&raw const slot)
        };
        Self { start, end, len: len as usize }
    }

    /// Length of the whole frame in bytes.
    #[inline(always)]
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the `len` bytes at offset `off` are part of the frame (readable or not).
    #[inline(always)]
    fn holds(&self, off: usize, len: usize) -> bool {
        off + len <= self.len
    }

    /// A pointer to the `len` bytes at offset `off`, if they are inside the frame.
    #[inline(always)]
    fn ptr(&self, off: usize, len: usize) -> Option<*const u8> {
        let p = self.start + off;
        if p + len > self.end {
            return None;
        }
        Some(p as *const u8)
    }

    /// `N` bytes at offset `off`, or `None` when they are not all inside the frame.
    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let p = self.ptr(off, N)?;
        // SAFETY: the N bytes at p are inside the frame (checked by `ptr`).
        Some(unsafe { *(p as *const [u8; N]) })
    }

    /// Copies `len` (≤ 16) bytes at offset `off` into `to`; false when out of the frame.
    #[inline(always)]
    fn copy_to(&self, off: usize, len: usize, to: &mut [u8; 16]) -> bool {
        match self.ptr(off, len) {
            // SAFETY: the source is inside the frame and `to` holds 16 ≥ len bytes.
            Some(p) => unsafe {
                copy_nonoverlapping(p, to.as_mut_ptr(), len);
                true
            },
            None => false,
        }
    }
}

/// What the link and network layers turned out to be.
pub enum L3 {
    Ip,
    Arp,
    NonIp,
    Malformed,
}

/// Everything the decision needs, copied out of the packet.
#[derive(Clone, Copy)]
pub struct Parsed {
    /// 4 or 6.
    pub family: u8,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// `FRAG_*`.
    pub frag: u8,
    /// False when the transport header the protocol needs is cut short.
    pub l4_ok: bool,
    /// IPv4 identification (zero-extended) or IPv6 fragment identification.
    pub frag_id: u32,
    /// TCP/UDP destination port, ICMP `type << 8 | code`, 0 for other protocols.
    pub port: u16,
    /// TCP/UDP source port, else 0.
    pub sport: u16,
    /// ICMP/ICMPv6 type, else 0.
    pub icmp_type: u8,
    /// TCP flags byte, else 0.
    pub tcp_flags: u8,
    /// An ICMP/ICMPv6 echo request or reply (its identifier is in `echo_id`).
    pub is_echo: bool,
    /// The echo identifier.
    pub echo_id: u16,
    /// Source and destination addresses; an IPv4 address fills the first 4 bytes.
    pub addrs: [[u8; 16]; 2],
    /// An ICMP/ICMPv6 error type (never creates a flow).
    pub is_error: bool,
    /// An error whose quoted header is complete: `emb` is set.
    pub quote_ok: bool,
    /// The quoted packet: its protocol, ports (TCP/UDP), whether it is an echo and its
    /// identifier, and its source and destination addresses.
    pub emb: Quoted,
}

impl Parsed {
    /// Verifier workaround: makes every scalar field an unknown value to the
    /// verifier (the values do not change). Parsing leaves each header layout and
    /// protocol with its own constants and ranges (family 4 or 6, a protocol compared
    /// with 6, flags known to be 0 or 1, ports known to be 0), and the verifier would
    /// check the whole decision once for each such combination; with the fields
    /// forgotten the paths merge and the decision is checked once. The same
    /// byte-wise write and word read as [`opaque_offset`], for 28 bytes.
    #[inline(always)]
    pub fn launder(&mut self) {
        let mut words = [0u32; 7];
        let bytes = words.as_mut_ptr().cast::<u8>();
        let fields: [u8; 28] = [
            self.family,
            self.proto,
            self.frag,
            self.l4_ok as u8,
            self.frag_id as u8,
            (self.frag_id >> 8) as u8,
            (self.frag_id >> 16) as u8,
            (self.frag_id >> 24) as u8,
            self.port as u8,
            (self.port >> 8) as u8,
            self.sport as u8,
            (self.sport >> 8) as u8,
            self.icmp_type,
            self.tcp_flags,
            self.is_echo as u8,
            self.is_error as u8,
            self.echo_id as u8,
            (self.echo_id >> 8) as u8,
            self.quote_ok as u8,
            self.emb.proto,
            self.emb.sport as u8,
            (self.emb.sport >> 8) as u8,
            self.emb.dport as u8,
            (self.emb.dport >> 8) as u8,
            self.emb.echo_id as u8,
            (self.emb.echo_id >> 8) as u8,
            self.emb.is_echo as u8,
            0,
        ];
        // SAFETY: 28 bytes into the 28 bytes of `words`, then its words back; volatile
        // keeps LLVM from folding the round trip.
        let w = unsafe {
            for (i, b) in fields.iter().enumerate() {
                write_volatile(bytes.add(i), *b);
            }
            [
                read_volatile(&raw const words[0]),
                read_volatile(&raw const words[1]),
                read_volatile(&raw const words[2]),
                read_volatile(&raw const words[3]),
                read_volatile(&raw const words[4]),
                read_volatile(&raw const words[5]),
                read_volatile(&raw const words[6]),
            ]
        };
        let w = w.map(u32::from_le);
        self.family = w[0] as u8;
        self.proto = (w[0] >> 8) as u8;
        self.frag = (w[0] >> 16) as u8;
        self.l4_ok = (w[0] >> 24) as u8 != 0;
        self.frag_id = w[1];
        self.port = w[2] as u16;
        self.sport = (w[2] >> 16) as u16;
        self.icmp_type = w[3] as u8;
        self.tcp_flags = (w[3] >> 8) as u8;
        self.is_echo = (w[3] >> 16) as u8 != 0;
        self.is_error = (w[3] >> 24) as u8 != 0;
        self.echo_id = w[4] as u16;
        self.quote_ok = (w[4] >> 16) as u8 != 0;
        self.emb.proto = (w[4] >> 24) as u8;
        self.emb.sport = w[5] as u16;
        self.emb.dport = (w[5] >> 16) as u16;
        self.emb.echo_id = w[6] as u16;
        self.emb.is_echo = (w[6] >> 16) as u8 != 0;
    }
}

/// The flow-identifying fields of the packet quoted by an ICMP error.
#[derive(Clone, Copy)]
pub struct Quoted {
    pub proto: u8,
    pub is_echo: bool,
    pub sport: u16,
    pub dport: u16,
    pub echo_id: u16,
    pub addrs: [[u8; 16]; 2],
}

impl Parsed {
    #[inline(always)]
    pub const fn new() -> Self {
        Self {
            family: 0,
            proto: 0,
            frag: FRAG_NONE,
            l4_ok: false,
            frag_id: 0,
            port: 0,
            sport: 0,
            icmp_type: 0,
            tcp_flags: 0,
            is_echo: false,
            echo_id: 0,
            addrs: [[0; 16]; 2],
            is_error: false,
            quote_ok: false,
            emb: Quoted { proto: 0, is_echo: false, sport: 0, dport: 0, echo_id: 0, addrs: [[0; 16]; 2] },
        }
    }
}

/// Verifier workaround: returns `off` (≤ [`MAX_OFFSET`]) unchanged, or `None` when it is
/// larger, and makes the verifier forget its exact range. The extension-header walk
/// otherwise gives each combination of header lengths its own range, and the
/// verifier explores every one of them separately (hundreds of thousands of
/// instructions); with the range forgotten, the walk's paths converge.
#[inline(always)]
fn opaque_offset(off: usize) -> Option<usize> {
    let mut slot = 0u32;
    let bytes = (&raw mut slot).cast::<u8>();
    // SAFETY: the four bytes of `slot`. A value written byte by byte and read back as
    // a word is an unknown word to the verifier; volatile keeps LLVM from folding it.
    let value = unsafe {
        write_volatile(bytes, off as u8);
        write_volatile(bytes.add(1), (off >> 8) as u8);
        write_volatile(bytes.add(2), (off >> 16) as u8);
        write_volatile(bytes.add(3), (off >> 24) as u8);
        read_volatile(&raw const slot)
    };
    let value = u32::from_le(value) as usize;
    if off > MAX_OFFSET || value > MAX_OFFSET {
        return None;
    }
    Some(value)
}

#[inline(always)]
fn be16(b0: u8, b1: u8) -> u16 {
    u16::from_be_bytes([b0, b1])
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

#[inline(always)]
fn is_ipv6_ext(nexthdr: u8) -> bool {
    matches!(nexthdr, IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS)
}

/// Parses the frame into `out`.
#[inline(always)]
pub fn parse(f: &Frame, out: &mut Parsed) -> L3 {
    // The ethertype is the last field of the Ethernet header.
    let Some(eth_type) = f.read::<2>(ETH_HLEN - 2) else {
        return L3::Malformed;
    };
    let mut ethertype = be16(eth_type[0], eth_type[1]);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if !is_vlan(ethertype) {
            break;
        }
        let Some(tag) = f.read::<VLAN_HLEN>(off) else {
            return L3::Malformed;
        };
        ethertype = be16(tag[2], tag[3]);
        off += VLAN_HLEN;
    }
    match ethertype {
        ETH_P_IP => ipv4(f, off, out),
        ETH_P_IPV6 => ipv6(f, off, out),
        ETH_P_ARP => L3::Arp,
        // A third tag.
        t if is_vlan(t) => L3::Malformed,
        _ => L3::NonIp,
    }
}

#[inline(always)]
fn ipv4(f: &Frame, ip: usize, out: &mut Parsed) -> L3 {
    // Verifier: the fixed header is checked on its own, before the variable total
    // length, so that the reads below are covered by a constant range.
    if f.ptr(ip, 20).is_none() {
        return L3::Malformed;
    }
    let Some(h) = f.read::<12>(ip) else {
        return L3::Malformed;
    };
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total = be16(h[2], h[3]) as usize;
    if h[0] >> 4 != 4 || ihl < 20 || total < ihl || !f.holds(ip, total) {
        return L3::Malformed;
    }
    if !f.copy_to(ip + 12, 4, &mut out.addrs[0]) || !f.copy_to(ip + 16, 4, &mut out.addrs[1]) {
        return L3::Malformed;
    }
    let frag_field = be16(h[6], h[7]);
    out.frag = if frag_field & 0x1fff != 0 {
        FRAG_LATER
    } else if frag_field & 0x2000 != 0 {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
    out.family = 4;
    out.proto = h[9];
    out.frag_id = u32::from(be16(h[4], h[5]));
    transport(f, ip + ihl, ip + total, out);
    L3::Ip
}

#[inline(always)]
fn ipv6(f: &Frame, ip: usize, out: &mut Parsed) -> L3 {
    // Verifier: the fixed header first, as for IPv4.
    if f.ptr(ip, 40).is_none() {
        return L3::Malformed;
    }
    let Some(h) = f.read::<8>(ip) else {
        return L3::Malformed;
    };
    let ip_end = ip + 40 + be16(h[4], h[5]) as usize;
    if h[0] >> 4 != 6 || !f.holds(ip, ip_end - ip) {
        return L3::Malformed;
    }
    if !f.copy_to(ip + 8, 16, &mut out.addrs[0]) || !f.copy_to(ip + 24, 16, &mut out.addrs[1]) {
        return L3::Malformed;
    }
    let mut nexthdr = h[6];
    let mut off = ip + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_ext(nexthdr) {
            break;
        }
        let Some(here) = opaque_offset(off) else {
            return L3::Malformed;
        };
        off = here;
        let Some(e) = f.read::<8>(off) else {
            return L3::Malformed;
        };
        let len = match nexthdr {
            IPPROTO_FRAGMENT => 8,
            IPPROTO_AH => (e[1] as usize + 2) * 4,
            _ => (e[1] as usize + 1) * 8,
        };
        if off + len > ip_end {
            return L3::Malformed;
        }
        if nexthdr == IPPROTO_FRAGMENT {
            let offset_m = be16(e[2], e[3]);
            let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if offset_m >> 3 != 0 {
                // A later fragment: what follows is not a header of this packet.
                out.frag = FRAG_LATER;
                out.frag_id = id;
                nexthdr = e[0];
                break;
            }
            if offset_m & 1 != 0 {
                out.frag = FRAG_FIRST;
                out.frag_id = id;
            }
        }
        nexthdr = e[0];
        off += len;
    }
    if out.frag != FRAG_LATER && is_ipv6_ext(nexthdr) {
        // The chain is longer than the bound.
        return L3::Malformed;
    }
    let Some(l4) = opaque_offset(off) else {
        return L3::Malformed;
    };
    out.family = 6;
    out.proto = nexthdr;
    transport(f, l4, ip_end, out);
    L3::Ip
}

/// Reads the transport fields at offset `l4` of an IP packet ending at `ip_end`;
/// sets `l4_ok` to false when the header the protocol needs is cut short. Later
/// fragments have no transport header.
#[inline(always)]
fn transport(f: &Frame, l4: usize, ip_end: usize, out: &mut Parsed) {
    let need = match out.proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_ICMPV6 => 8,
        _ => 0,
    };
    if out.frag == FRAG_LATER || need == 0 {
        out.l4_ok = true;
        return;
    }
    if l4 + need > ip_end {
        return;
    }
    let Some(t) = f.read::<8>(l4) else {
        return;
    };
    match out.proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            out.port = be16(t[0], t[1]);
            out.icmp_type = t[0];
            out.is_echo = is_echo(out.proto, t[0]);
            out.echo_id = if out.is_echo { be16(t[4], t[5]) } else { 0 };
            out.is_error = is_error(out.proto, t[0]);
            if out.is_error {
                out.quote_ok = quoted(f, l4 + 8, ip_end, out.family, &mut out.emb);
            }
        }
        IPPROTO_TCP => {
            let Some(flags) = f.read::<1>(l4 + 13) else {
                return;
            };
            out.sport = be16(t[0], t[1]);
            out.port = be16(t[2], t[3]);
            out.tcp_flags = flags[0];
        }
        _ => {
            out.sport = be16(t[0], t[1]);
            out.port = be16(t[2], t[3]);
        }
    }
    out.l4_ok = true;
}

/// An ICMP echo request or reply (v4 8/0, v6 128/129), whose identifier is tracked.
#[inline(always)]
fn is_echo(proto: u8, icmp_type: u8) -> bool {
    match proto {
        IPPROTO_ICMP => icmp_type == 8 || icmp_type == 0,
        _ => icmp_type == 128 || icmp_type == 129,
    }
}

/// An ICMP error that quotes the packet it is about: destination unreachable, time
/// exceeded, parameter problem (v4 3, 11, 12); v6 also packet too big (1–4).
#[inline(always)]
fn is_error(proto: u8, icmp_type: u8) -> bool {
    match proto {
        IPPROTO_ICMP => icmp_type == 3 || icmp_type == 11 || icmp_type == 12,
        _ => icmp_type >= 1 && icmp_type <= 4,
    }
}

/// Reads the header an ICMP error quotes, at `off`: an IPv4 header (with its IHL) or
/// a 40-byte IPv6 header (extension headers are not walked), of the error's own
/// family, followed by at least 8 bytes (ports, or ICMP type, code and identifier).
/// False when it is cut short or is not such a header.
#[inline(always)]
fn quoted(f: &Frame, off: usize, ip_end: usize, family: u8, q: &mut Quoted) -> bool {
    let l4 = if family == 4 {
        if off + 20 > ip_end {
            return false;
        }
        let Some(h) = f.read::<12>(off) else {
            return false;
        };
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        if h[0] >> 4 != 4 || ihl < 20 {
            return false;
        }
        if !f.copy_to(off + 12, 4, &mut q.addrs[0]) || !f.copy_to(off + 16, 4, &mut q.addrs[1]) {
            return false;
        }
        q.proto = h[9];
        off + ihl
    } else {
        if off + 40 > ip_end {
            return false;
        }
        let Some(h) = f.read::<8>(off) else {
            return false;
        };
        if h[0] >> 4 != 6 {
            return false;
        }
        if !f.copy_to(off + 8, 16, &mut q.addrs[0]) || !f.copy_to(off + 24, 16, &mut q.addrs[1]) {
            return false;
        }
        q.proto = h[6];
        off + 40
    };
    if l4 + 8 > ip_end {
        return false;
    }
    let Some(t) = f.read::<8>(l4) else {
        return false;
    };
    match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            q.sport = be16(t[0], t[1]);
            q.dport = be16(t[2], t[3]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            q.is_echo = is_echo(q.proto, t[0]);
            q.echo_id = if q.is_echo { be16(t[4], t[5]) } else { 0 };
        }
        _ => {}
    }
    true
}
