//! The maps and globals of the object. Names are those of `sgmirror_common::names`;
//! the agent sizes the policy maps (`ADDR4`, `ADDR6`, `PORTS`, `RULE_HITS` and their
//! egress twins) to each policy at load time, so their sizes here are placeholders.
//! Both programs of a link share one object, so they share every map: `STATS`,
//! `FRAGS`, `FLOWS`, `FLOW_STATS`, `CLOCK` and the drop log (`DROP_LOG`,
//! `DROP_BUCKET`) are per link, the policy maps per direction.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use sgmirror_common::{
    AddrValue, Counter, DROP_LOG_BYTES, DropBucket, FLOW_STATS_LEN, FlowKey, FlowStats, FlowValue, FragKey,
    FragValue, PortKey, PortValue, STATS_LEN, Timeouts, mode,
};

/// IPv4 source prefixes of the inbound rules → permission class (`BPF_F_NO_PREALLOC`
/// is added by aya).
#[map]
pub static ADDR4: LpmTrie<[u8; 4], AddrValue> = LpmTrie::with_max_entries(1, 0);

/// IPv6 source prefixes of the inbound rules → permission class.
#[map]
pub static ADDR6: LpmTrie<[u8; 16], AddrValue> = LpmTrie::with_max_entries(1, 0);

/// Inbound class/protocol/port → match set.
#[map]
pub static PORTS: LpmTrie<PortKey, PortValue> = LpmTrie::with_max_entries(1, 0);

/// Hits per inbound match set.
#[map]
pub static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// IPv4 destination prefixes of the outbound rules → permission class.
#[map]
pub static EADDR4: LpmTrie<[u8; 4], AddrValue> = LpmTrie::with_max_entries(1, 0);

/// IPv6 destination prefixes of the outbound rules → permission class.
#[map]
pub static EADDR6: LpmTrie<[u8; 16], AddrValue> = LpmTrie::with_max_entries(1, 0);

/// Outbound class/protocol/port → match set.
#[map]
pub static EPORTS: LpmTrie<PortKey, PortValue> = LpmTrie::with_max_entries(1, 0);

/// Hits per outbound match set.
#[map]
pub static ERULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Packets and bytes by `stat_index(direction, verdict, reason)`.
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// First fragments that were allowed, keyed with their direction.
#[map]
pub static FRAGS: LruHashMap<FragKey, FragValue> = LruHashMap::with_max_entries(16384, 0);

/// Tracked flows of the link, written by whichever direction allowed the first
/// packet; the loader sets the size.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(65536, 0);

/// Nanoseconds added (modulo 2^64) to `bpf_ktime_get_ns` for the flow clock: a test
/// hook that moves time forward without sleeping; 0 in production.
#[map]
pub static CLOCK: Array<u64> = Array::with_max_entries(1, 0);

/// `mode::ENFORCE` or `mode::AUDIT`, set by the loader.
#[unsafe(no_mangle)]
pub static MODE: Global<u32> = Global::new(mode::ENFORCE);

/// Idle timeouts of the link's flows, set by the loader.
#[unsafe(no_mangle)]
pub static TIMEOUTS: Global<Timeouts> = Global::new(Timeouts::DEFAULT);

/// Entries written to and replaced in `FLOWS`, for the agent's eviction estimate
/// (`FlowStats`); the programs write slot `FLOW_STATS_KERNEL` only.
#[map]
pub static FLOW_STATS: PerCpuArray<FlowStats> = PerCpuArray::with_max_entries(FLOW_STATS_LEN, 0);

/// Drop records for the agent's drop log.
#[map]
pub static DROP_LOG: RingBuf = RingBuf::with_byte_size(DROP_LOG_BYTES, 0);

/// The drop log's rate limit: one token bucket per CPU.
#[map]
pub static DROP_BUCKET: PerCpuArray<DropBucket> = PerCpuArray::with_max_entries(1, 0);

/// Drop records per second per CPU, set by the loader; 0 (the default) turns the
/// drop log off, and the verifier then removes its code as dead.
#[unsafe(no_mangle)]
pub static DROP_LOG_RATE: Global<u32> = Global::new(0);
