//! The decision for one packet, in the order the reference evaluator uses, for
//! either direction: the peer is the source of an inbound packet and the
//! destination of an outbound one.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use sgmirror_common::{
    ADDR_EXEMPT, FRAG_TIMEOUT_NS, FragKey, FragValue, PORT_KEY_BITS, PortKey, direction, mode, reason,
    stat_index, verdict,
};

use crate::{
    maps::{ADDR4, ADDR6, FRAGS, MODE, PORTS, RULE_HITS, STATS},
    parse::{FRAG_FIRST, FRAG_LATER, Frame, IPPROTO_ICMPV6, IPPROTO_UDP, L3, Parsed, parse},
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

#[inline(always)]
fn lookup_addr(p: &Parsed, dir: u32) -> AddrHit {
    let peer = if dir == direction::INGRESS { &p.addrs[0] } else { &p.addrs[1] };
    let value = if p.family == 4 {
        ADDR4.get(Key::new(32, [peer[0], peer[1], peer[2], peer[3]]))
    } else {
        ADDR6.get(Key::new(128, *peer))
    };
    match value {
        Some(v) => AddrHit { found: true, exempt: v.flags & ADDR_EXEMPT != 0, class: v.class },
        None => AddrHit { found: false, exempt: false, class: 0 },
    }
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

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// A later fragment passes while its allowed first fragment is recent.
#[inline(always)]
fn later_fragment_allowed(p: &Parsed, dir: u32) -> bool {
    let key = frag_key(p, dir);
    match FRAGS.get_ptr(&key) {
        // SAFETY: a valid map value; a racing update only changes the timestamp.
        Some(v) => now_ns().wrapping_sub(unsafe { (*v).first_seen_ns }) < FRAG_TIMEOUT_NS,
        None => false,
    }
}

#[inline(always)]
fn remember_first_fragment(p: &Parsed, dir: u32) {
    let key = frag_key(p, dir);
    let value = FragValue { first_seen_ns: now_ns() };
    // A full table evicts its least recently used entry; nothing to do on failure.
    let _ = FRAGS.insert(&key, &value, 0);
}

#[inline(always)]
fn count_rule_hit(match_id: u32) {
    if let Some(hits) = RULE_HITS.get_ptr_mut(match_id) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *hits += 1 };
    }
}

/// Judges a packet: `(allowed, reason)`.
#[inline(always)]
pub fn judge(f: &Frame, dir: u32) -> (bool, u32) {
    let mut p = Parsed::new();
    match parse(f, &mut p) {
        L3::Ip => {}
        L3::Arp => return (true, reason::EXEMPT),
        L3::NonIp => return (true, reason::NON_IP),
        L3::Malformed => return (false, reason::MALFORMED),
    }
    let addr = lookup_addr(&p, dir);
    let (allowed, why) = if addr.exempt {
        (true, reason::EXEMPT)
    } else if p.frag == FRAG_LATER {
        return (later_fragment_allowed(&p, dir), reason::FRAGMENT);
    } else if !p.l4_ok {
        return (false, reason::MALFORMED);
    } else if protocol_exempt(&p) {
        (true, reason::EXEMPT)
    } else if !addr.found {
        (false, reason::NO_RULE)
    } else {
        let key = Key::new(PORT_KEY_BITS, PortKey::new(addr.class, p.proto, p.port));
        match PORTS.get(key) {
            Some(v) => {
                count_rule_hit(v.match_id);
                (true, reason::RULE)
            }
            None => (false, reason::NO_RULE),
        }
    };
    if allowed && p.frag == FRAG_FIRST {
        remember_first_fragment(&p, dir);
    }
    (allowed, why)
}

/// Turns a decision into a verdict (audit mode passes what it would drop), counts
/// the packet, and returns whether it passes.
#[inline(always)]
pub fn settle(dir: u32, allowed: bool, why: u32, bytes: u64) -> bool {
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
    v != verdict::DROP
}
