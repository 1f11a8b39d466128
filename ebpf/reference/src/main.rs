//! The programs the benchmarks (`agent/bench`) measure sgmirror against, and the one
//! that generates their traffic:
//!
//! - `ref_drop`: returns `XDP_DROP` and nothing else — the floor of any XDP program;
//! - `ref_lpm`: the least a prefix filter can do — parse Ethernet and IPv4/IPv6, look
//!   the source address up once in an LPM trie holding the policy's prefixes, count,
//!   drop on a hit and pass on a miss;
//! - `ref_lpm_flow`: the least a *stateful* filter can do — the same parse and LPM
//!   lookup, then one lookup of the packet's 5-tuple in a flow table keyed like
//!   sgmirror's (40 bytes); a flow hit passes, otherwise as `ref_lpm`;
//! - `ref_pass`: returns `XDP_PASS` (the receiver with XDP attached but no filter);
//! - `gen_tx`: returns `XDP_TX`, which `BPF_PROG_TEST_RUN` in live-frames mode turns
//!   into a transmission out of the context's ingress device. When `GEN_MASK` is not 0
//!   it first writes the next source address of `GEN_SRCS` (with the IPv4 header
//!   checksum precomputed for it) into the frame, so the receiver sees sources spread
//!   over the policy's prefixes rather than one cache-hot address.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};

/// IPv4 prefixes of the policy (`BPF_F_NO_PREALLOC` is added by aya); the loader
/// sizes it.
#[map]
static REF4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1, 0);

/// IPv6 prefixes of the policy; the loader sizes it.
#[map]
static REF6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1, 0);

/// `ref_lpm_flow`'s flow table: the 40-byte key of [`flow_key`], any value.
#[map]
static REF_FLOWS: LruHashMap<[u8; 40], u64> = LruHashMap::with_max_entries(65536, 0);

/// `ref_lpm`'s and `ref_lpm_flow`'s packets by outcome: [`HIT`], [`MISS`], [`NON_IP`],
/// [`FLOW_HIT`].
#[map]
static REF_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);

/// Source addresses for `gen_tx`: bytes 0..4 the IPv4 address, 4..6 the IPv4 header
/// checksum of the generator's frame with that source. Indexed by the counter masked
/// with `GEN_MASK`, so the loader sizes it to `GEN_MASK + 1` (a power of two).
#[map]
static GEN_SRCS: Array<[u8; 8]> = Array::with_max_entries(1, 0);

/// `gen_tx`'s position in `GEN_SRCS`, per CPU.
#[map]
static GEN_NEXT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// `GEN_SRCS` entries minus one (a power of two minus one); 0 leaves frames as they are.
#[unsafe(no_mangle)]
static GEN_MASK: Global<u32> = Global::new(0);

const HIT: u32 = 0;
const MISS: u32 = 1;
const NON_IP: u32 = 2;
const FLOW_HIT: u32 = 3;

const ETH_HLEN: usize = 14;
const IPV4_SRC: usize = ETH_HLEN + 12;
const IPV4_CSUM: usize = ETH_HLEN + 10;
const IPV6_SRC: usize = ETH_HLEN + 8;

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = REF_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
}

#[xdp]
pub fn ref_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn ref_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn ref_lpm(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_HLEN > end {
        count(NON_IP);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 14 bytes of the Ethernet header are inside the packet (checked above).
    let ethertype = unsafe { *((start + 12) as *const [u8; 2]) };
    let hit = match ethertype {
        [0x08, 0x00] if start + IPV4_SRC + 4 <= end => {
            // SAFETY: the 4 bytes at IPV4_SRC are inside the packet (checked above).
            let src = unsafe { *((start + IPV4_SRC) as *const [u8; 4]) };
            REF4.get(Key::new(32, src)).is_some()
        }
        [0x86, 0xdd] if start + IPV6_SRC + 16 <= end => {
            // SAFETY: the 16 bytes at IPV6_SRC are inside the packet (checked above).
            let src = unsafe { *((start + IPV6_SRC) as *const [u8; 16]) };
            REF6.get(Key::new(128, src)).is_some()
        }
        _ => {
            count(NON_IP);
            return xdp_action::XDP_PASS;
        }
    };
    if hit {
        count(HIT);
        xdp_action::XDP_DROP
    } else {
        count(MISS);
        xdp_action::XDP_PASS
    }
}

/// The flow key of an IPv4 or IPv6 packet without options or extension headers:
/// source and destination address (16 bytes each, IPv4 in the first 4), source and
/// destination port (0 for other protocols), protocol, family, 2 bytes of padding.
#[inline(always)]
fn flow_key(start: usize, end: usize, v6: bool) -> Option<[u8; 40]> {
    let mut key = [0u8; 40];
    let (proto, l4) = if v6 {
        if start + ETH_HLEN + 40 > end {
            return None;
        }
        // SAFETY: the 40-byte IPv6 header is inside the packet (checked above).
        unsafe {
            key[0..16].copy_from_slice(&*((start + IPV6_SRC) as *const [u8; 16]));
            key[16..32].copy_from_slice(&*((start + IPV6_SRC + 16) as *const [u8; 16]));
            (*((start + ETH_HLEN + 6) as *const u8), ETH_HLEN + 40)
        }
    } else {
        if start + ETH_HLEN + 20 > end {
            return None;
        }
        // SAFETY: the 20-byte IPv4 header is inside the packet (checked above).
        unsafe {
            key[0..4].copy_from_slice(&*((start + IPV4_SRC) as *const [u8; 4]));
            key[16..20].copy_from_slice(&*((start + IPV4_SRC + 4) as *const [u8; 4]));
            (*((start + ETH_HLEN + 9) as *const u8), ETH_HLEN + 20)
        }
    };
    if (proto == 6 || proto == 17) && start + l4 + 4 <= end {
        // SAFETY: the 4 port bytes are inside the packet (checked above).
        let ports = unsafe { *((start + l4) as *const [u8; 4]) };
        key[32..36].copy_from_slice(&ports);
    }
    key[36] = proto;
    key[37] = if v6 { 6 } else { 4 };
    Some(key)
}

#[xdp]
pub fn ref_lpm_flow(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_HLEN > end {
        count(NON_IP);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 14 bytes of the Ethernet header are inside the packet (checked above).
    let ethertype = unsafe { *((start + 12) as *const [u8; 2]) };
    let (hit, v6) = match ethertype {
        [0x08, 0x00] if start + IPV4_SRC + 4 <= end => {
            // SAFETY: the 4 bytes at IPV4_SRC are inside the packet (checked above).
            let src = unsafe { *((start + IPV4_SRC) as *const [u8; 4]) };
            (REF4.get(Key::new(32, src)).is_some(), false)
        }
        [0x86, 0xdd] if start + IPV6_SRC + 16 <= end => {
            // SAFETY: the 16 bytes at IPV6_SRC are inside the packet (checked above).
            let src = unsafe { *((start + IPV6_SRC) as *const [u8; 16]) };
            (REF6.get(Key::new(128, src)).is_some(), true)
        }
        _ => {
            count(NON_IP);
            return xdp_action::XDP_PASS;
        }
    };
    if let Some(key) = flow_key(start, end, v6)
        && REF_FLOWS.get_ptr(&key).is_some()
    {
        count(FLOW_HIT);
        return xdp_action::XDP_PASS;
    }
    if hit {
        count(HIT);
        xdp_action::XDP_DROP
    } else {
        count(MISS);
        xdp_action::XDP_PASS
    }
}

#[xdp]
pub fn gen_tx(ctx: XdpContext) -> u32 {
    let mask = GEN_MASK.load();
    if mask != 0 {
        next_source(&ctx, mask);
    }
    xdp_action::XDP_TX
}

/// Writes the next source address and its header checksum into an IPv4 frame.
#[inline(always)]
fn next_source(ctx: &XdpContext, mask: u32) {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + IPV4_SRC + 4 > end {
        return;
    }
    // SAFETY: the Ethernet header is inside the packet (checked above).
    if unsafe { *((start + 12) as *const [u8; 2]) } != [0x08, 0x00] {
        return;
    }
    let Some(next) = GEN_NEXT.get_ptr_mut(0) else { return };
    // SAFETY: a per-CPU slot, used only by this CPU.
    let i = unsafe {
        let i = *next;
        *next = i.wrapping_add(1);
        i
    };
    let Some(entry) = GEN_SRCS.get(i & mask) else { return };
    let entry = *entry;
    // SAFETY: both writes are inside the IPv4 header, inside the packet (checked above).
    unsafe {
        *((start + IPV4_CSUM) as *mut [u8; 2]) = [entry[4], entry[5]];
        *((start + IPV4_SRC) as *mut [u8; 4]) = [entry[0], entry[1], entry[2], entry[3]];
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
