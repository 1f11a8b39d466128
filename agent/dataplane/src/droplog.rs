//! Reading the drop log: the records the programs send through the `DROP_LOG` ring
//! buffer, and the counters of the records they did not send (`DROP_BUCKET`).
//!
//! The ring buffer is pinned with the link's shared state, so every generation of a
//! link writes to the same one. Its one consumer position lives in the kernel (in a
//! page shared with the reader), and [`LoadedProgram::read_drop_records`] maps the
//! buffer afresh on each call, starting from that position: any generation can be
//! read, the old one before a replacement and the new one after, and nothing is read
//! twice or skipped across the switch.

use aya::maps::RingBuf;
use serde::Serialize;
use sgmirror_common::{DropBucket, DropRecord, names};

use crate::{DataplaneError, LoadedProgram};

/// The drop records the kernel did not send, summed over CPUs since the counters were
/// created (with the pinned maps: since the link was first enforced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DropLogCounters {
    /// Not sent because the per-CPU rate limit had no token left.
    pub suppressed: u64,
    /// Not sent because the ring buffer was full: the reader fell behind.
    pub lost: u64,
}

/// A record from the bytes of one ring-buffer entry; `None` when the size is not that
/// of a record (an object and agent of different builds).
fn parse_record(bytes: &[u8]) -> Option<DropRecord> {
    if bytes.len() != size_of::<DropRecord>() {
        return None;
    }
    // SAFETY: exactly `size_of::<DropRecord>()` bytes, and every bit pattern is a valid
    // `DropRecord` (integers and byte arrays only). The entry is 8-byte aligned in
    // the mapping, but an unaligned read does not rely on it.
    Some(unsafe { bytes.as_ptr().cast::<DropRecord>().read_unaligned() })
}

impl LoadedProgram {
    /// Takes up to `max` records waiting in the drop log, oldest first, without
    /// blocking (an empty vector when there are none). Call it often enough that the
    /// ring buffer (`sgmirror_common::DROP_LOG_BYTES`, about 3600 records) does not
    /// fill up: every 50 ms keeps up with 72 000 records per second.
    ///
    /// Any generation of a link may be read (they share the pinned buffer; see the
    /// module documentation), but only by one caller at a time: there is one
    /// consumer position, and two readers at once would read records twice.
    /// Records stay in the buffer until they are read; those not taken because of
    /// `max` are there for the next call. The programs send no wakeups
    /// (`BPF_RB_NO_WAKEUP`): poll on a timer rather than waiting on the map's file
    /// descriptor.
    pub fn read_drop_records(&mut self, max: usize) -> Result<Vec<DropRecord>, DataplaneError> {
        let map = self.ebpf.map(names::DROP_LOG).ok_or(DataplaneError::MissingMap(names::DROP_LOG))?;
        let mut ring = RingBuf::try_from(map).map_err(DataplaneError::map(names::DROP_LOG))?;
        let mut records = Vec::new();
        let mut malformed = 0usize;
        while records.len() < max {
            let Some(item) = ring.next() else { break };
            match parse_record(&item) {
                Some(record) => records.push(record),
                None => malformed += 1,
            }
        }
        if malformed > 0 {
            tracing::warn!(entries = malformed, "drop-log entries of the wrong size skipped");
        }
        Ok(records)
    }

    /// The drop records not sent (rate-limited, or the ring buffer full), summed over
    /// CPUs.
    pub fn drop_log_counters(&self) -> Result<DropLogCounters, DataplaneError> {
        let array = self.per_cpu_array::<DropBucket>(names::DROP_BUCKET)?;
        let per_cpu = array.get(&0, 0).map_err(DataplaneError::map(names::DROP_BUCKET))?;
        Ok(per_cpu.iter().fold(DropLogCounters::default(), |sum, b| DropLogCounters {
            suppressed: sum.suppressed + b.suppressed,
            lost: sum.lost + b.lost,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_from_exactly_their_bytes() {
        let record = DropRecord {
            time_ns: 7,
            src: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            src_port: 40000,
            dst_port: 22,
            bytes: 74,
            proto: 6,
            family: 4,
            verdict: 1,
            reason: 2,
            ..DropRecord::default()
        };
        // SAFETY: a `repr(C)` struct of integers, viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&record).cast::<u8>(), size_of::<DropRecord>())
        };
        assert_eq!(parse_record(bytes), Some(record));
        // Misaligned by one byte: still read correctly.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        assert_eq!(parse_record(&shifted[1..]), Some(record));
        assert_eq!(parse_record(&bytes[..63]), None);
        assert_eq!(parse_record(&[0; 72]), None);
    }
}
