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
    pub const NAMES: [&str; COUNT as usize] =
        ["rule", "exempt", "no-rule", "fragment", "malformed", "tracked", "failsafe", "non-ip"];
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
    /// `FLAG_UNTRACKED_*`: flows this entry allows are not tracked (AWS's rule: a /0
    /// rule with an all-ports /0 rule for the responses in the other direction).
    pub flags: u32,
}
const _: () = assert!(size_of::<PortValue>() == 8);

/// [`PortValue::flags`]: TCP flows allowed through this entry are untracked.
pub const FLAG_UNTRACKED_TCP: u32 = 1;
/// [`PortValue::flags`]: UDP flows allowed through this entry are untracked.
pub const FLAG_UNTRACKED_UDP: u32 = 2;

/// Key of the `FLOWS` table, oriented from the interface: `local` is the interface's
/// address, `remote` the peer's, whichever side sent the packet. IPv4 addresses fill
/// the first 4 bytes. TCP/UDP carry their ports; ICMP echo request/reply carries the
/// echo identifier in `local_port` (`remote_port` 0); every other protocol, and other
/// ICMP types, has both ports 0 (AWS tracks them by address and protocol only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The interface's address.
    pub local: [u8; 16],
    /// The peer's address.
    pub remote: [u8; 16],
    /// Local port or echo identifier (host byte order).
    pub local_port: u16,
    /// Remote port (host byte order).
    pub remote_port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// Value of the `FLOWS` table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// Clock (see `CLOCK`) of the last packet of the flow.
    pub last_seen_ns: u64,
    /// [`direction`] of the packet that created the entry.
    pub initiator: u8,
    /// One of [`flow_state`].
    pub state: u8,
    /// Always zero.
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<FlowValue>() == 16);

/// States of a tracked flow; each picks an idle timeout from [`Timeouts`].
pub mod flow_state {
    /// TCP, opened with a SYN, no packet from the other side yet (`tcp_other`).
    pub const TCP_OPENING: u8 = 1;
    /// TCP with packets both ways, or adopted mid-stream (`tcp_established`).
    pub const TCP_ESTABLISHED: u8 = 2;
    /// TCP after a FIN or RST (`tcp_other`).
    pub const TCP_CLOSING: u8 = 3;
    /// UDP, initiator-side packets only (`udp`).
    pub const UDP_NEW: u8 = 4;
    /// UDP with one reply (`udp`).
    pub const UDP_REPLIED: u8 = 5;
    /// UDP with more than one request/response (`udp_stream`).
    pub const UDP_STREAM: u8 = 6;
    /// ICMP/ICMPv6 (`icmp`).
    pub const ICMP: u8 = 7;
    /// Any other protocol (`other`).
    pub const OTHER: u8 = 8;
}

/// Idle timeouts per flow class in seconds, the `TIMEOUTS` global of each load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Established TCP (AWS `TcpEstablishedTimeout`).
    pub tcp_established: u32,
    /// TCP opening or closing (undocumented by AWS).
    pub tcp_other: u32,
    /// UDP, one direction or a single request/response (AWS `UdpTimeout`).
    pub udp: u32,
    /// UDP with more than one request/response (AWS `UdpStreamTimeout`).
    pub udp_stream: u32,
    /// ICMP and ICMPv6 (undocumented by AWS).
    pub icmp: u32,
    /// Every other protocol (AWS: 600 s).
    pub other: u32,
}
const _: () = assert!(size_of::<Timeouts>() == 24);

impl Timeouts {
    /// AWS's defaults, and nf_conntrack's values where AWS documents none.
    pub const DEFAULT: Timeouts =
        Timeouts { tcp_established: 432_000, tcp_other: 120, udp: 30, udp_stream: 180, icmp: 30, other: 600 };

    /// Idle timeout of a flow in `state`, in seconds.
    #[inline(always)]
    pub const fn for_state(&self, state: u8) -> u32 {
        match state {
            flow_state::TCP_ESTABLISHED => self.tcp_established,
            flow_state::TCP_OPENING | flow_state::TCP_CLOSING => self.tcp_other,
            flow_state::UDP_STREAM => self.udp_stream,
            flow_state::UDP_NEW | flow_state::UDP_REPLIED => self.udp,
            flow_state::ICMP => self.icmp,
            _ => self.other,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

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
    /// The flow clock (`bpf_ktime_get_ns` plus `CLOCK`, as [`FlowValue::last_seen_ns`])
    /// when the first fragment passed.
    pub first_seen_ns: u64,
}
const _: () = assert!(size_of::<FragValue>() == 8);

/// How long after its first fragment a later fragment is still admitted (the
/// kernel's IPv6 reassembly timeout, `ip6frag_time`, which is the longer of the two).
pub const FRAG_TIMEOUT_NS: u64 = 60 * 1_000_000_000;

/// Longest chain of IPv6 extension headers walked before a packet is `malformed`.
pub const MAX_IPV6_EXT_HEADERS: u32 = 8;

/// A dropped (or, in audit mode, would-be-dropped) packet, as the kernel reports it
/// through the `DROP_LOG` ring buffer. Fixed size; addresses as in [`FlowKey`].
/// Whatever the packet did not get far enough to have is zero: a packet that is not
/// IP, or whose IP header is malformed, has family 0 and zero addresses; a later
/// fragment or a cut-short transport header has zero ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropRecord {
    /// `bpf_ktime_get_ns` (plus `CLOCK`) when the packet was judged.
    pub time_ns: u64,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (TCP/UDP), or ICMP type << 8 | code; host byte order.
    pub src_port: u16,
    /// Destination port (TCP/UDP), or the ICMP echo identifier (0 for other ICMP
    /// types); host byte order.
    pub dst_port: u16,
    /// Frame length in bytes.
    pub bytes: u32,
    /// IP protocol number (0 when the packet was not parsed that far).
    pub proto: u8,
    /// 4, 6, or 0 when not IP.
    pub family: u8,
    /// [`direction`].
    pub direction: u8,
    /// [`reason`].
    pub reason: u8,
    /// [`verdict`]: DROP, or AUDIT for would-be drops.
    pub verdict: u8,
    /// Always zero.
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<DropRecord>() == 64);

/// Size in bytes of the `DROP_LOG` ring buffer: about 3600 [`DropRecord`]s (64 bytes
/// plus the kernel's 8-byte header each), drained by the agent every few tens of
/// milliseconds. A power of two and a multiple of the page size, as the kernel
/// requires.
pub const DROP_LOG_BYTES: u32 = 256 * 1024;

/// One record, in billionths: the unit of [`DropBucket::nanotokens`].
pub const DROP_TOKEN: u64 = 1_000_000_000;

/// Kernel-side rate limit of drop records: a token bucket per CPU (the one entry of
/// the per-CPU `DROP_BUCKET` array), with the `DROP_LOG_RATE` global as both its
/// refill rate (records per second per CPU) and its capacity (a burst of one second);
/// a rate of 0 turns the log off, and the verifier then removes the whole log path.
///
/// Tokens are counted in billionths of a record, so that the refill is exact integer
/// nanosecond arithmetic on the flow clock without a division: `elapsed_ns * rate`
/// billionths, capped at `rate * 10^9`. A record takes [`DROP_TOKEN`]. The bucket
/// starts full (it was last refilled at time 0, and the flow clock is more than a
/// second past that).
///
/// Reading the clock is a helper call, which would be most of what a drop costs
/// with the log on; so while the bucket is empty, the clock is read at most once per
/// kernel tick (a jiffy, which the verifier inlines as one load) and per `CLOCK`
/// value: a packet in the same tick with the same `CLOCK` as the last read finds no
/// new token without looking. Refills are still credited exactly from the nanosecond
/// clock; a token is at most one tick (1–10 ms) late.
///
/// Each drop or would-be drop with the log on is counted exactly once per CPU, in one
/// of: a record in the ring buffer, [`suppressed`](Self::suppressed) (no token), or
/// [`lost`](Self::lost) (a token, but the ring buffer was full).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropBucket {
    /// Tokens left, in billionths of a record (at most `rate * 10^9`).
    pub nanotokens: u64,
    /// Flow clock (see `CLOCK`) up to which refills have been credited; a clock
    /// behind it (a test moving `CLOCK` back) credits nothing.
    pub refilled_ns: u64,
    /// Records not sent because the bucket was empty.
    pub suppressed: u64,
    /// Records not sent because the ring buffer was full (the reader fell behind).
    pub lost: u64,
    /// `jiffies` when the clock was last read.
    pub read_jiffies: u64,
    /// `CLOCK[0]` when the clock was last read.
    pub read_offset: u64,
}
const _: () = assert!(size_of::<DropBucket>() == 48);

/// Flow-table bookkeeping, per CPU, in the `FLOW_STATS` array: how many entries were
/// written and how many left other than by eviction, so that the agent can tell the
/// evictions of the least-recently-used table, which the kernel does not count.
///
/// ```text
/// evicted ≈ created − expired_replaced − deleted − entries now in FLOWS
/// ```
///
/// summed over both slots and every CPU. Approximate because (1) two CPUs racing to
/// create the same flow both count it, though it is one entry (each race adds one
/// phantom eviction); (2) the table is walked entry by entry while packets keep
/// changing it; (3) an entry that existed before the counters did (a pinned table
/// from an older agent) is counted as live but was never created. The estimate is
/// clamped at zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// New entries written (insertions that succeeded, replacements included).
    pub created: u64,
    /// Insertions that overwrote an expired entry of the same key (the table did not
    /// grow).
    pub expired_replaced: u64,
    /// Entries deleted from userspace (written by the agent into
    /// [`FLOW_STATS_AGENT`], CPU 0; always zero in the kernel's slot).
    pub deleted: u64,
}
const _: () = assert!(size_of::<FlowStats>() == 24);

/// Slot of `FLOW_STATS` the programs write (`created`, `expired_replaced`).
pub const FLOW_STATS_KERNEL: u32 = 0;
/// Slot of `FLOW_STATS` the agent writes (`deleted`); the programs never touch it, so
/// the agent's read-modify-write cannot lose a kernel update.
pub const FLOW_STATS_AGENT: u32 = 1;
/// Number of slots in the `FLOW_STATS` array.
pub const FLOW_STATS_LEN: u32 = 2;

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
    /// IPv4 destination-address LPM trie of the outbound rules.
    pub const EADDR4: &str = "EADDR4";
    /// IPv6 destination-address LPM trie of the outbound rules.
    pub const EADDR6: &str = "EADDR6";
    /// Class/protocol/port LPM trie of the outbound rules.
    pub const EPORTS: &str = "EPORTS";
    /// Per-CPU hits per outbound match set.
    pub const ERULE_HITS: &str = "ERULE_HITS";
    /// Tracked flows, shared by both programs of a link.
    pub const FLOWS: &str = "FLOWS";
    /// One u64: nanoseconds added to the kernel clock (a test hook; 0 in production).
    pub const CLOCK: &str = "CLOCK";
    /// The XDP ingress program.
    pub const XDP_INGRESS: &str = "sgm_xdp_in";
    /// The TC egress program.
    pub const TC_EGRESS: &str = "sgm_tc_out";
    /// Global: [`super::mode`] of the link.
    pub const MODE: &str = "MODE";
    /// Global: [`super::Timeouts`] of the link.
    pub const TIMEOUTS: &str = "TIMEOUTS";
    /// Ring buffer of [`super::DropRecord`]s.
    pub const DROP_LOG: &str = "DROP_LOG";
    /// Per-CPU [`super::DropBucket`] (one entry).
    pub const DROP_BUCKET: &str = "DROP_BUCKET";
    /// Global u32: drop records per second per CPU (0: off).
    pub const DROP_LOG_RATE: &str = "DROP_LOG_RATE";
    /// Per-CPU [`super::FlowStats`], [`super::FLOW_STATS_LEN`] slots.
    pub const FLOW_STATS: &str = "FLOW_STATS";
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
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for Timeouts {}
    unsafe impl aya::Pod for DropRecord {}
    unsafe impl aya::Pod for DropBucket {}
    unsafe impl aya::Pod for FlowStats {}
}
