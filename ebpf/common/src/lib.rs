//! The kernel ABI of sgmirror: every map key and value shared by the eBPF programs
//! and the agent, with explicit padding and a compile-time size check each.
//!
//! Changing the size or meaning of anything here is a layout change: bump
//! [`LAYOUT_VERSION`], which names the pinned directory, so that a new agent never
//! reads a pinned map written with an older layout.
#![no_std]

use core::mem::size_of;

/// Version of the map layout; pinned objects live under `.../v{LAYOUT_VERSION}/`.
pub const LAYOUT_VERSION: u32 = 1;

/// Packet direction, as seen from the protected interface.
pub mod direction {
    /// Packets arriving on the link (XDP).
    pub const INGRESS: u32 = 0;
    /// Packets leaving through the link (TC).
    pub const EGRESS: u32 = 1;
    /// Number of directions.
    pub const COUNT: u32 = 2;
}

/// What happened to a packet.
pub mod verdict {
    /// Passed because the policy allows it.
    pub const ALLOW: u32 = 0;
    /// Dropped (enforce mode).
    pub const DROP: u32 = 1;
    /// Would have been dropped, passed because the link is in audit mode.
    pub const AUDIT: u32 = 2;
    /// Number of verdicts.
    pub const COUNT: u32 = 3;
}

/// Why a packet got its verdict. The names used in metrics and `explain` output are in
/// [`reason::NAMES`].
pub mod reason {
    /// A security-group rule allows it.
    pub const RULE: u32 = 0;
    /// Traffic that security groups never filter (AWS service addresses, ARP, ND, DHCP).
    pub const EXEMPT: u32 = 1;
    /// No rule allows it.
    pub const NO_RULE: u32 = 2;
    /// A later fragment: passes only when its first fragment passed.
    pub const FRAGMENT: u32 = 3;
    /// A header that cannot be parsed safely (truncated, bad length, chain too long).
    pub const MALFORMED: u32 = 4;
    /// Part of a tracked flow (reply or related ICMP error).
    pub const TRACKED: u32 = 5;
    /// The operator's failsafe list.
    pub const FAILSAFE: u32 = 6;
    /// Not IPv4 or IPv6 (security groups filter IP only).
    pub const NON_IP: u32 = 7;
    /// Number of reasons.
    pub const COUNT: u32 = 8;
    /// Names, indexed by reason.
    pub const NAMES: [&str; COUNT as usize] = [
        "rule",
        "exempt",
        "no-rule",
        "fragment",
        "malformed",
        "tracked",
        "failsafe",
        "non-ip",
    ];
}

/// Index into the `STATS` per-CPU array.
#[inline(always)]
pub const fn stat_index(direction: u32, verdict: u32, reason: u32) -> u32 {
    (direction * verdict::COUNT + verdict) * reason::COUNT + reason
}

/// Number of slots in the `STATS` array.
pub const STATS_LEN: u32 = direction::COUNT * verdict::COUNT * reason::COUNT;

/// Link mode, set as the `MODE` global at load time.
pub mod mode {
    /// Drop what the policy does not allow.
    pub const ENFORCE: u32 = 0;
    /// Count and pass what would be dropped.
    pub const AUDIT: u32 = 1;
}

/// A per-CPU packet and byte counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (whole frames, from the Ethernet header on).
    pub bytes: u64,
}
const _: () = assert!(size_of::<Counter>() == 16);

/// Flag in [`AddrValue::flags`]: the address is exempt from security groups (AWS
/// service address); packets from (ingress) or to (egress) it always pass.
pub const ADDR_EXEMPT: u32 = 1;

/// Value of an address LPM entry (`ADDR4`/`ADDR6`, keyed by the peer address).
///
/// `class` names the set of protocol/port permissions that apply to every address
/// under this prefix, including those of every broader rule prefix (the closure),
/// because an LPM lookup only returns the longest match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrValue {
    /// Permission class, the leading 32 bits of a [`PortKey`].
    pub class: u32,
    /// `ADDR_*` flags.
    pub flags: u32,
}
const _: () = assert!(size_of::<AddrValue>() == 8);

/// Data of a `PORTS` LPM key. Bits, most significant first: class (32), protocol (8),
/// port (16). TCP/UDP use the destination port; ICMP and ICMPv6 use `type << 8 | code`;
/// other protocols use 0. A rule for all protocols is a /32 entry (class only), one
/// for all ports of a protocol /40, a port range is a set of masked ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    /// Class, big-endian.
    pub class: [u8; 4],
    /// IP protocol number.
    pub proto: u8,
    /// Port or ICMP type/code, big-endian.
    pub port: [u8; 2],
    /// Never part of a prefix; always zero.
    pub _pad: u8,
}
const _: () = assert!(size_of::<PortKey>() == 8);

/// Prefix length of a fully specified [`PortKey`].
pub const PORT_KEY_BITS: u32 = 56;
/// Prefix length of the class part of a [`PortKey`].
pub const PORT_KEY_CLASS_BITS: u32 = 32;
/// Prefix length of the class and protocol part of a [`PortKey`].
pub const PORT_KEY_PROTO_BITS: u32 = 40;

impl PortKey {
    /// Builds a key from host-order values.
    #[inline(always)]
    pub const fn new(class: u32, proto: u8, port: u16) -> Self {
        Self { class: class.to_be_bytes(), proto, port: port.to_be_bytes(), _pad: 0 }
    }
}

/// Value of a `PORTS` entry: the set of rules that allow a packet of this
/// class/protocol/port, as an index into the `RULE_HITS` per-CPU array. The agent
/// keeps the set behind each index, so hits map back to `sgr-` ids.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortValue {
    /// Index of the match set.
    pub match_id: u32,
}
const _: () = assert!(size_of::<PortValue>() == 4);

/// Key of the `FRAGS` table: a first fragment that was allowed lets its later
/// fragments through. IPv4 addresses fill the first 4 bytes of each address field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IPv4 identification (zero-extended) or IPv6 fragment identification.
    pub id: u32,
    /// Upper-layer protocol.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// [`direction`] the fragments travel in.
    pub direction: u8,
    /// Always zero.
    pub _pad: u8,
}
const _: () = assert!(size_of::<FragKey>() == 40);

/// Value of the `FRAGS` table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    /// `bpf_ktime_get_ns` when the first fragment passed.
    pub first_seen_ns: u64,
}
const _: () = assert!(size_of::<FragValue>() == 8);

/// How long after its first fragment a later fragment is still admitted (the
/// kernel's IPv6 reassembly timeout, `ip6frag_time`, which is the longer of the two).
pub const FRAG_TIMEOUT_NS: u64 = 60 * 1_000_000_000;

/// Longest chain of IPv6 extension headers walked before a packet is `malformed`.
pub const MAX_IPV6_EXT_HEADERS: u32 = 8;

/// Names of the maps and programs in the object, as the loader finds them.
pub mod names {
    /// IPv4 peer-address LPM trie.
    pub const ADDR4: &str = "ADDR4";
    /// IPv6 peer-address LPM trie.
    pub const ADDR6: &str = "ADDR6";
    /// Class/protocol/port LPM trie.
    pub const PORTS: &str = "PORTS";
    /// Per-CPU counters by direction, verdict and reason.
    pub const STATS: &str = "STATS";
    /// Per-CPU hits per match set.
    pub const RULE_HITS: &str = "RULE_HITS";
    /// Allowed first fragments.
    pub const FRAGS: &str = "FRAGS";
    /// The XDP ingress program.
    pub const XDP_INGRESS: &str = "sgm_xdp_in";
    /// Global: [`super::mode`] of the link.
    pub const MODE: &str = "MODE";
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are `repr(C)` with explicit padding and only integer fields.
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for AddrValue {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortValue {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragValue {}
}
