//! The maps and globals of the object. Names are those of `sgmirror_common::names`;
//! the agent sizes `ADDR4`, `ADDR6`, `PORTS` and `RULE_HITS` to each policy at load
//! time, so the sizes here are placeholders.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{LpmTrie, LruHashMap, PerCpuArray},
};
use sgmirror_common::{AddrValue, Counter, FragKey, FragValue, PortKey, PortValue, STATS_LEN, mode};

/// IPv4 peer prefixes → permission class (`BPF_F_NO_PREALLOC` is added by aya).
#[map]
pub static ADDR4: LpmTrie<[u8; 4], AddrValue> = LpmTrie::with_max_entries(1, 0);

/// IPv6 peer prefixes → permission class.
#[map]
pub static ADDR6: LpmTrie<[u8; 16], AddrValue> = LpmTrie::with_max_entries(1, 0);

/// Class/protocol/port → match set.
#[map]
pub static PORTS: LpmTrie<PortKey, PortValue> = LpmTrie::with_max_entries(1, 0);

/// Packets and bytes by `stat_index(direction, verdict, reason)`.
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Hits per match set.
#[map]
pub static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// First fragments that were allowed, shared by both directions.
#[map]
pub static FRAGS: LruHashMap<FragKey, FragValue> = LruHashMap::with_max_entries(16384, 0);

/// `mode::ENFORCE` or `mode::AUDIT`, set by the loader.
#[unsafe(no_mangle)]
pub static MODE: Global<u32> = Global::new(mode::ENFORCE);
