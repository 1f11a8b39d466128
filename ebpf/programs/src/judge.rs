//! The decision for one packet, for either direction: the peer is the source of an
//! inbound packet and the destination of an outbound one. The order is the one the
//! reference evaluator uses (`judge_stateful`), because the order decides the reason:
//!
//! 0. headers that cannot be parsed → drop, `malformed`. Then, for a packet that is
//! not a later fragment, has a complete transport header and is not exempt by
//! protocol: 1. an ICMP error about a live flow → allow, `tracked` (nothing
//! refreshed); 2. a packet of a live flow → allow, `tracked` (the entry is
//! refreshed). The flow table comes first because most packets belong to a flow, and
//! then one hash lookup decides; flows are never created for exempt traffic, so this
//! only changes the reason of an exempt peer's packet on a flow created before its
//! address became exempt. Then, for every packet: 3. exempt peer → allow; 4. later
//! fragment → allowed when its first fragment was; then a transport header cut short
//! → drop, `malformed`; 5. exempt protocol → allow; 6. the rules of the direction →
//! allow, creating a flow unless the packet is an ICMP error, its flow is untracked
//! or it is a response of an untracked flow; or drop; 7. an allowed first fragment
//! is remembered. Audit mode passes what would be dropped (in `settle`); such a
//! packet was not allowed, so it creates nothing.

use aya_ebpf::maps::lpm_trie::Key;
use sgmirror_common::{
    ADDR_EXEMPT, FLAG_UNTRACKED_TCP, FLAG_UNTRACKED_UDP, FRAG_TIMEOUT_NS, FragKey, FragValue, PORT_KEY_BITS,
    PortKey, direction, mode, reason, stat_index, verdict,
};

use crate::{
    droplog, flow,
    maps::{ADDR4, ADDR6, EADDR4, EADDR6, EPORTS, ERULE_HITS, FRAGS, MODE, PORTS, RULE_HITS, STATS},
    parse::{FRAG_FIRST, FRAG_LATER, Frame, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, L3, Parsed, parse},
};

/// ICMPv6 neighbour discovery and MLD types (`exempt::ICMPV6_EXEMPT_TYPES`).
#[inline(always)]
fn is_nd_or_mld(icmp_type: u8) -> bool {
    matches!(icmp_type, 130..=137 | 143)
}

/// DHCPv4 and DHCPv6 (`exempt::DHCP_PORT_PAIRS`).
#[inline(always)]
fn is_dhcp(sport: u16, dport: u16) -> bool {
    matches!((sport, dport), (67, 68) | (68, 67) | (547, 546) | (546, 547))
}

/// Whether the packet is exempt by protocol alone.
#[inline(always)]
fn protocol_exempt(p: &Parsed) -> bool {
    match p.proto {
        IPPROTO_ICMPV6 => p.family == 6 && is_nd_or_mld(p.icmp_type),
        IPPROTO_UDP => is_dhcp(p.sport, p.port),
        _ => false,
    }
}

/// The result of the address lookup. Plain fields rather than an `Option` of the
/// map value: LLVM speculates reads of an absent payload, which the verifier
/// rejects as reads of uninitialised registers.
#[derive(Clone, Copy)]
struct AddrHit {
    found: bool,
    exempt: bool,
    class: u32,
}

/// Looks `peer` up in the address trie of `dir`'s rules.
#[inline(always)]
fn lookup_addr(family: u8, peer: &[u8; 16], dir: u32) -> AddrHit {
    let value = if family == 4 {
        let key = Key::new(32, [peer[0], peer[1], peer[2], peer[3]]);
        if dir == direction::INGRESS { ADDR4.get(key) } else { EADDR4.get(key) }
    } else {
        let key = Key::new(128, *peer);
        if dir == direction::INGRESS { ADDR6.get(key) } else { EADDR6.get(key) }
    };
    match value {
        Some(v) => AddrHit { found: true, exempt: v.flags & ADDR_EXEMPT != 0, class: v.class },
        None => AddrHit { found: false, exempt: false, class: 0 },
    }
}

/// The result of the class/protocol/port lookup (plain fields, as [`AddrHit`]).
#[derive(Clone, Copy)]
struct PortHit {
    found: bool,
    match_id: u32,
    flags: u32,
}

/// Looks a class, protocol and port (or ICMP type/code) up in `dir`'s rules.
#[inline(always)]
fn lookup_ports(class: u32, proto: u8, port: u16, dir: u32) -> PortHit {
    let key = Key::new(PORT_KEY_BITS, PortKey::new(class, proto, port));
    let value = if dir == direction::INGRESS { PORTS.get(key) } else { EPORTS.get(key) };
    match value {
        Some(v) => PortHit { found: true, match_id: v.match_id, flags: v.flags },
        None => PortHit { found: false, match_id: 0, flags: 0 },
    }
}

/// Whether the match set behind `flags` makes flows of `proto` untracked.
#[inline(always)]
fn untracked(flags: u32, proto: u8) -> bool {
    match proto {
        IPPROTO_TCP => flags & FLAG_UNTRACKED_TCP != 0,
        IPPROTO_UDP => flags & FLAG_UNTRACKED_UDP != 0,
        _ => false,
    }
}

/// Whether a TCP/UDP packet of `dir` is a response of an untracked flow: the
/// reversed packet (addresses and ports swapped) is allowed by the other direction's
/// rules through a match set that is untracked for the protocol. The peer stays the
/// same address; the reversed packet's destination port is this one's source port.
#[inline(always)]
fn response_of_untracked(p: &Parsed, peer: &[u8; 16], dir: u32) -> bool {
    if p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP {
        return false;
    }
    let back = if dir == direction::INGRESS { direction::EGRESS } else { direction::INGRESS };
    let addr = lookup_addr(p.family, peer, back);
    if !addr.found {
        return false;
    }
    let hit = lookup_ports(addr.class, p.proto, p.sport, back);
    hit.found && untracked(hit.flags, p.proto)
}

#[inline(always)]
fn frag_key(p: &Parsed, dir: u32) -> FragKey {
    FragKey {
        src: p.addrs[0],
        dst: p.addrs[1],
        id: p.frag_id,
        proto: p.proto,
        family: p.family,
        direction: dir as u8,
        _pad: 0,
    }
}

/// A later fragment passes while its allowed first fragment is recent (on the flow
/// clock, so that tests can move it, too).
#[inline(always)]
fn later_fragment_allowed(p: &Parsed, dir: u32) -> bool {
    let key = frag_key(p, dir);
    match FRAGS.get_ptr(&key) {
        // SAFETY: a valid map value; a racing update only changes the timestamp.
        Some(v) => flow::now_ns().saturating_sub(unsafe { (*v).first_seen_ns }) < FRAG_TIMEOUT_NS,
        None => false,
    }
}

#[inline(always)]
fn remember_first_fragment(p: &Parsed, dir: u32) {
    let key = frag_key(p, dir);
    let value = FragValue { first_seen_ns: flow::now_ns() };
    // A full table evicts its least recently used entry; nothing to do on failure.
    let _ = FRAGS.insert(&key, &value, 0);
}

#[inline(always)]
fn count_rule_hit(match_id: u32, dir: u32) {
    let slot = if dir == direction::INGRESS {
        RULE_HITS.get_ptr_mut(match_id)
    } else {
        ERULE_HITS.get_ptr_mut(match_id)
    };
    if let Some(hits) = slot {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *hits += 1 };
    }
}

/// The decision about one packet.
#[derive(Clone, Copy)]
pub struct Judgement {
    /// Whether the policy allows it.
    pub allowed: bool,
    /// `reason::*`.
    pub why: u32,
    /// What it wrote to the flow table, as [`flow::create`] returns it (0: nothing).
    pub flow_write: u64,
}

impl Judgement {
    #[inline(always)]
    const fn new(allowed: bool, why: u32) -> Self {
        Self { allowed, why, flow_write: 0 }
    }
}

/// Judges a packet. What was parsed of it is left in `p` (for the drop log).
#[inline(always)]
pub fn judge(f: &Frame, dir: u32, p: &mut Parsed) -> Judgement {
    match parse(f, p) {
        L3::Ip => {}
        L3::Arp => return Judgement::new(true, reason::EXEMPT),
        L3::NonIp => return Judgement::new(true, reason::NON_IP),
        L3::Malformed => return Judgement::new(false, reason::MALFORMED),
    }
    p.launder();
    let p = &*p;
    let peer = if dir == direction::INGRESS { p.addrs[0] } else { p.addrs[1] };
    let j = if p.frag != FRAG_LATER && p.l4_ok && !protocol_exempt(p) {
        flow_then_rules(p, &peer, dir)
    } else {
        let addr = lookup_addr(p.family, &peer, dir);
        if addr.exempt {
            Judgement::new(true, reason::EXEMPT)
        } else if p.frag == FRAG_LATER {
            return Judgement::new(later_fragment_allowed(p, dir), reason::FRAGMENT);
        } else if !p.l4_ok {
            return Judgement::new(false, reason::MALFORMED);
        } else {
            // What is left: exempt by protocol.
            Judgement::new(true, reason::EXEMPT)
        }
    };
    if j.allowed && p.frag == FRAG_FIRST {
        remember_first_fragment(p, dir);
    }
    j
}

/// Steps 1, 2 and 6 for a packet with a complete transport header that is not
/// exempt by protocol: the flow table first, so that a packet of a live flow (the
/// common case) costs one hash lookup and no address lookup; then the exempt peer;
/// then the rules.
#[inline(always)]
fn flow_then_rules(p: &Parsed, peer: &[u8; 16], dir: u32) -> Judgement {
    if p.quote_ok && flow::is_related(p, dir) {
        return Judgement::new(true, reason::TRACKED);
    }
    let key = flow::packet_key(p, dir);
    let found = flow::refresh(&key, dir, p.tcp_flags);
    if found == flow::LIVE {
        return Judgement::new(true, reason::TRACKED);
    }
    let addr = lookup_addr(p.family, peer, dir);
    if addr.exempt {
        return Judgement::new(true, reason::EXEMPT);
    }
    if !addr.found {
        return Judgement::new(false, reason::NO_RULE);
    }
    let hit = lookup_ports(addr.class, p.proto, p.port, dir);
    if !hit.found {
        return Judgement::new(false, reason::NO_RULE);
    }
    count_rule_hit(hit.match_id, dir);
    let mut j = Judgement::new(true, reason::RULE);
    if !p.is_error && !untracked(hit.flags, p.proto) && !response_of_untracked(p, peer, dir) {
        j.flow_write = flow::create(&key, dir, p.proto, p.tcp_flags, found);
    }
    j
}

/// Turns a decision into a verdict (audit mode passes what it would drop), counts
/// the packet (and the flow it created), logs it if it was not allowed, and returns
/// whether it passes. The flow is counted here rather than where it is created:
/// there, the extra map access made the verifier check much of the program twice.
#[inline(always)]
pub fn settle(p: &Parsed, dir: u32, j: Judgement, bytes: u64) -> bool {
    let Judgement { allowed, why, flow_write } = j;
    let v = if allowed {
        verdict::ALLOW
    } else if MODE.load() == mode::AUDIT {
        verdict::AUDIT
    } else {
        verdict::DROP
    };
    if let Some(c) = STATS.get_ptr_mut(stat_index(dir, v, why)) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
    if flow_write != 0 {
        flow::count_write(flow_write);
    }
    if !allowed {
        droplog::log_drop(p, dir, v, why, bytes);
    }
    v != verdict::DROP
}
