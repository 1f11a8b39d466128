//! The drop log: one [`DropRecord`] per dropped (or, in audit mode, would-be-dropped)
//! packet through the `DROP_LOG` ring buffer, rate-limited by a token bucket per CPU
//! (`DropBucket`, whose documentation has the arithmetic).
//!
//! Only packets that were not allowed come here, after they were counted. With
//! `DROP_LOG_RATE` 0 the first test is on a read-only global, so the verifier
//! removes everything after it: "off" costs nothing. With the log on, a packet the
//! bucket has no token for costs a few loads, compares and one store, and no helper
//! call (a clock read once per tick at most; see `DropBucket`); only the packets
//! that get a token pay for the clock and the ring buffer.

use aya_ebpf::helpers::bpf_jiffies64;
use sgmirror_common::{DROP_TOKEN, DropBucket, DropRecord};

use crate::{
    flow,
    maps::{DROP_BUCKET, DROP_LOG, DROP_LOG_RATE},
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, Parsed},
};

/// `BPF_RB_NO_WAKEUP`: the agent polls the ring buffer on a timer rather than
/// waiting on its file descriptor, so a record needs no wakeup (which the kernel
/// sends through an interrupt).
const BPF_RB_NO_WAKEUP: u64 = 1;

/// Takes a record's worth of tokens from `b` at flow-clock time `now`, after
/// crediting the refill since the last call; false when there is not enough.
#[inline(always)]
fn take_token(b: &mut DropBucket, rate: u64, now: u64) -> bool {
    let full = rate * DROP_TOKEN;
    let elapsed = now.saturating_sub(b.refilled_ns);
    // A second refills the bucket from empty; capping first keeps the product small
    // (rate < 2^32, elapsed < 2^30: no overflow, and the sum below stays < 2^63).
    let refill = if elapsed >= DROP_TOKEN { full } else { elapsed * rate };
    let tokens = b.nanotokens + refill;
    let tokens = if tokens > full { full } else { tokens };
    b.refilled_ns += elapsed;
    if tokens < DROP_TOKEN {
        b.nanotokens = tokens;
        return false;
    }
    b.nanotokens = tokens - DROP_TOKEN;
    true
}

/// The record of a packet: ports as `DropRecord` documents them, addresses only once
/// the IP header was read whole (`family` set).
#[inline(always)]
fn record(p: &Parsed, dir: u32, verdict: u32, why: u32, bytes: u64, now: u64) -> DropRecord {
    let icmp = p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6;
    let (src_port, dst_port) = if icmp { (p.port, p.echo_id) } else { (p.sport, p.port) };
    let (src, dst) = if p.family != 0 { (p.addrs[0], p.addrs[1]) } else { ([0; 16], [0; 16]) };
    DropRecord {
        time_ns: now,
        src,
        dst,
        src_port,
        dst_port,
        bytes: bytes as u32,
        proto: p.proto,
        family: p.family,
        direction: dir as u8,
        reason: why as u8,
        verdict: verdict as u8,
        _pad: [0; 7],
    }
}

/// Logs a packet that was not allowed (`verdict` DROP or AUDIT), if the log is on
/// and the bucket has a token; otherwise counts it as suppressed (no token) or lost
/// (ring buffer full).
#[inline(always)]
pub fn log_drop(p: &Parsed, dir: u32, verdict: u32, why: u32, bytes: u64) {
    let rate = DROP_LOG_RATE.load();
    if rate == 0 {
        return;
    }
    let Some(bucket) = DROP_BUCKET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU array. Programs on one CPU run one at a
    // time, except where a test run in process context is interrupted by a
    // softirq's; then an update may be lost, as for the `STATS` counters.
    let bucket = unsafe { &mut *bucket };
    // SAFETY: a helper without arguments (inlined by the verifier as a load).
    let jiffies = unsafe { bpf_jiffies64() };
    let offset = flow::clock_offset();
    if bucket.nanotokens < DROP_TOKEN && jiffies == bucket.read_jiffies && offset == bucket.read_offset {
        // Empty, and no time has passed that the last read did not see.
        bucket.suppressed += 1;
        return;
    }
    bucket.read_jiffies = jiffies;
    bucket.read_offset = offset;
    let now = flow::now_with_offset(offset);
    if !take_token(bucket, u64::from(rate), now) {
        bucket.suppressed += 1;
        return;
    }
    match DROP_LOG.reserve::<DropRecord>(0) {
        Some(mut entry) => {
            entry.write(record(p, dir, verdict, why, bytes, now));
            entry.submit(BPF_RB_NO_WAKEUP);
        }
        None => bucket.lost += 1,
    }
}
