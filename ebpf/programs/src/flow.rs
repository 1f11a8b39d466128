//! The flow table: keys oriented from the interface, the per-protocol state machine,
//! idle expiry, and the three things the decision asks of it (is this packet part of
//! a live flow, is this ICMP error about one, remember a new one).
//!
//! Time is `bpf_ktime_get_ns() + CLOCK[0]` (modulo 2^64), so tests can move it
//! forward. An entry is expired when `now - last_seen > timeout` (strictly); a `now`
//! behind `last_seen` (the two programs of a link racing on two CPUs) is age 0.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use sgmirror_common::{FLOW_STATS_KERNEL, FlowKey, FlowValue, direction, flow_state};

use crate::{
    maps::{CLOCK, FLOW_STATS, FLOWS, TIMEOUTS},
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Parsed},
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const NS_PER_S: u64 = 1_000_000_000;

/// The flow clock. Read only where an entry was found or is written: most packets
/// of a busy link find none, and the clock is not free.
#[inline(always)]
pub fn now_ns() -> u64 {
    now_with_offset(clock_offset())
}

/// The flow clock, given [`clock_offset`].
#[inline(always)]
pub fn now_with_offset(offset: u64) -> u64 {
    // SAFETY: a helper without arguments.
    let kernel = unsafe { bpf_ktime_get_ns() };
    kernel.wrapping_add(offset)
}

/// `CLOCK[0]`: what the flow clock adds to the kernel's (0 in production). Cheap: the
/// verifier turns the lookup into a few instructions.
#[inline(always)]
pub fn clock_offset() -> u64 {
    match CLOCK.get_ptr(0) {
        // SAFETY: a valid slot of a one-entry array.
        Some(v) => unsafe { *v },
        None => 0,
    }
}

/// The key of a packet that travels in `dir`, from its addresses, protocol and ports
/// (`sport`/`dport` for TCP/UDP, the echo identifier for ICMP echoes, nothing else).
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "the fields of a packet, inlined")]
fn key(
    family: u8,
    proto: u8,
    addrs: &[[u8; 16]; 2],
    sport: u16,
    dport: u16,
    is_echo: bool,
    echo_id: u16,
    dir: u32,
) -> FlowKey {
    let (local, remote, lport, rport) =
        if dir == direction::INGRESS { (1, 0, dport, sport) } else { (0, 1, sport, dport) };
    let (local_port, remote_port) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (lport, rport),
        IPPROTO_ICMP | IPPROTO_ICMPV6 if is_echo => (echo_id, 0),
        _ => (0, 0),
    };
    FlowKey {
        local: addrs[local],
        remote: addrs[remote],
        local_port,
        remote_port,
        proto,
        family,
        _pad: [0; 2],
    }
}

/// The key of the packet itself, travelling in `dir`.
#[inline(always)]
pub fn packet_key(p: &Parsed, dir: u32) -> FlowKey {
    key(p.family, p.proto, &p.addrs, p.sport, p.port, p.is_echo, p.echo_id, dir)
}

/// The key of the packet an ICMP error travelling in `dir` quotes: that packet
/// travelled the other way.
#[inline(always)]
fn quoted_key(p: &Parsed, dir: u32) -> FlowKey {
    let q = &p.emb;
    let back = if dir == direction::INGRESS { direction::EGRESS } else { direction::INGRESS };
    key(p.family, q.proto, &q.addrs, q.sport, q.dport, q.is_echo, q.echo_id, back)
}

#[inline(always)]
fn expired(last_seen_ns: u64, state: u8, now: u64) -> bool {
    let timeout = u64::from(TIMEOUTS.load().for_state(state)) * NS_PER_S;
    now.saturating_sub(last_seen_ns) > timeout
}

/// Whether an ICMP error with a complete quoted header is about a live flow. Looks
/// only: an error refreshes nothing.
#[inline(always)]
pub fn is_related(p: &Parsed, dir: u32) -> bool {
    let key = quoted_key(p, dir);
    match FLOWS.get_ptr(&key) {
        // SAFETY: a valid map value; a racing update only changes its fields.
        Some(v) => unsafe { !expired((*v).last_seen_ns, (*v).state, now_ns()) },
        None => false,
    }
}

/// The state after a packet of a live flow in `dir`.
#[inline(always)]
fn next_state(state: u8, initiator: u8, dir: u32, tcp_flags: u8) -> u8 {
    let reply = u32::from(initiator) != dir;
    let tcp_flags = tcp_flags;
    match state {
        flow_state::TCP_OPENING | flow_state::TCP_ESTABLISHED => {
            if tcp_flags & (TCP_FIN | TCP_RST) != 0 {
                flow_state::TCP_CLOSING
            } else if reply {
                flow_state::TCP_ESTABLISHED
            } else {
                state
            }
        }
        flow_state::UDP_NEW if reply => flow_state::UDP_REPLIED,
        flow_state::UDP_REPLIED if !reply => flow_state::UDP_STREAM,
        _ => state,
    }
}

/// What the flow table holds for a key ([`refresh`]): nothing.
pub const ABSENT: u64 = 0;
/// An entry past its idle timeout: as good as absent, but creating the flow again
/// overwrites it rather than adding one (see `FlowStats`).
pub const EXPIRED: u64 = 1;
/// A live flow.
pub const LIVE: u64 = 2;

/// If `key` is a live flow, records the packet (time, state). An expired entry
/// counts as absent; it is overwritten if the packet creates a flow. Returns
/// [`ABSENT`], [`EXPIRED`] or [`LIVE`]: plain numbers, so that the difference between
/// the first two reaches [`create`] as arithmetic; a comparison would be a branch,
/// and the verifier would then check all that follows twice.
#[inline(always)]
pub fn refresh(key: &FlowKey, dir: u32, tcp_flags: u8) -> u64 {
    let Some(v) = FLOWS.get_ptr_mut(key) else {
        return ABSENT;
    };
    // SAFETY: a valid map value. Two CPUs updating one flow at once may lose one
    // update of the timestamp or state, as conntrack may; both are monotonic.
    unsafe {
        let state = (*v).state;
        let now = now_ns();
        if expired((*v).last_seen_ns, state, now) {
            return EXPIRED;
        }
        (*v).last_seen_ns = now;
        (*v).state = next_state(state, (*v).initiator, dir, tcp_flags);
    }
    LIVE
}

/// The state of a flow created by a packet of `proto` with `tcp_flags`.
#[inline(always)]
fn first_state(proto: u8, tcp_flags: u8) -> u8 {
    let tcp_flags = tcp_flags;
    match proto {
        IPPROTO_TCP if tcp_flags & TCP_SYN != 0 && tcp_flags & TCP_ACK == 0 => flow_state::TCP_OPENING,
        // A packet of a connection that existed before the entry (agent start).
        IPPROTO_TCP => flow_state::TCP_ESTABLISHED,
        IPPROTO_UDP => flow_state::UDP_NEW,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => flow_state::ICMP,
        _ => flow_state::OTHER,
    }
}

/// [`create`]'s result: an entry was written.
const WROTE: u64 = 1;
/// [`create`]'s result: the entry written replaced an expired one.
const REPLACED: u64 = 2;

/// Creates an entry for a packet of `dir` allowed by the rules, over an expired one
/// when `found` (what [`refresh`] returned: [`ABSENT`] or [`EXPIRED`]) says so.
/// Returns what to count with [`count_write`]: 0 when nothing was written, else
/// [`WROTE`], plus [`REPLACED`] over an expired entry (arithmetic, not a branch: see
/// [`refresh`]).
#[inline(always)]
pub fn create(key: &FlowKey, dir: u32, proto: u8, tcp_flags: u8, found: u64) -> u64 {
    let value = FlowValue {
        last_seen_ns: now_ns(),
        initiator: dir as u8,
        state: first_state(proto, tcp_flags),
        _pad: [0; 6],
    };
    // BPF_ANY: a full table evicts its least recently used entry; nothing to do on
    // failure (the packet is allowed by the rules anyway) but not to count it.
    match FLOWS.insert(key, &value, 0) {
        Ok(()) => WROTE | (found & EXPIRED) * REPLACED,
        Err(_) => 0,
    }
}

/// Counts what [`create`] wrote in `FLOW_STATS` (see `FlowStats`).
#[inline(always)]
pub fn count_write(wrote: u64) {
    if let Some(s) = FLOW_STATS.get_ptr_mut(FLOW_STATS_KERNEL) {
        // SAFETY: this CPU's slot of a per-CPU array (as the `STATS` counters).
        unsafe {
            (*s).created += wrote & WROTE;
            (*s).expired_replaced += (wrote & REPLACED) >> 1;
        }
    }
}
