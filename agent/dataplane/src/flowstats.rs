//! The flow table's bookkeeping (`FLOW_STATS`), and from it an estimate of the
//! evictions of the least-recently-used table, which the kernel does not count.

use aya::maps::{PerCpuArray, PerCpuValues};
use serde::Serialize;
use sgmirror_common::{FLOW_STATS_AGENT, FLOW_STATS_LEN, FlowStats, names};

use crate::{DataplaneError, LoadedProgram};

/// What happened to the flow table, summed over CPUs since the counters were created
/// (with the pinned maps: since the link was first enforced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounters {
    /// Entries the programs wrote (new flows, and flows created again over their
    /// expired entry).
    pub created: u64,
    /// Of those, the ones that overwrote an expired entry of the same flow: the table
    /// did not grow.
    pub expired_replaced: u64,
    /// Entries deleted from userspace ([`LoadedProgram::clear_flows`]).
    pub deleted: u64,
}

impl FlowCounters {
    /// Estimated evictions given `live` entries in the table now:
    /// `created − expired_replaced − deleted − live`, at least 0. Approximate: two
    /// CPUs creating the same flow at once count it twice, and the table changes while
    /// it is walked (see `sgmirror_common::FlowStats`). Read the counters before
    /// counting the entries, so that flows created in between make the estimate low
    /// rather than high.
    pub fn evictions(&self, live: usize) -> u64 {
        self.created
            .saturating_sub(self.expired_replaced)
            .saturating_sub(self.deleted)
            .saturating_sub(live as u64)
    }
}

impl LoadedProgram {
    /// The flow table's counters, summed over CPUs.
    pub fn flow_counters(&self) -> Result<FlowCounters, DataplaneError> {
        let array = self.per_cpu_array::<FlowStats>(names::FLOW_STATS)?;
        let mut sum = FlowCounters::default();
        for slot in 0..FLOW_STATS_LEN {
            for s in array.get(&slot, 0).map_err(DataplaneError::map(names::FLOW_STATS))?.iter() {
                sum.created += s.created;
                sum.expired_replaced += s.expired_replaced;
                sum.deleted += s.deleted;
            }
        }
        Ok(sum)
    }

    /// Flows evicted from the table so far, estimated from [`LoadedProgram::flow_counters`]
    /// and [`LoadedProgram::flow_count`] (see [`FlowCounters::evictions`]). Walks the
    /// table: one system call per entry.
    pub fn flows_evicted_estimate(&self) -> Result<u64, DataplaneError> {
        let counters = self.flow_counters()?;
        Ok(counters.evictions(self.flow_count()?))
    }

    /// Adds `n` to the agent's count of deleted entries (CPU 0 of its slot, which the
    /// programs never write).
    pub(crate) fn count_deleted_flows(&mut self, n: u64) -> Result<(), DataplaneError> {
        if n == 0 {
            return Ok(());
        }
        let map =
            self.ebpf.map_mut(names::FLOW_STATS).ok_or(DataplaneError::MissingMap(names::FLOW_STATS))?;
        let mut array: PerCpuArray<_, FlowStats> =
            PerCpuArray::try_from(map).map_err(DataplaneError::map(names::FLOW_STATS))?;
        let mut per_cpu: Vec<FlowStats> =
            array.get(&FLOW_STATS_AGENT, 0).map_err(DataplaneError::map(names::FLOW_STATS))?.to_vec();
        if let Some(first) = per_cpu.first_mut() {
            first.deleted += n;
        }
        // As many values as the kernel gave: cannot fail.
        let values = PerCpuValues::try_from(per_cpu).map_err(|io_error| DataplaneError::Map {
            map: names::FLOW_STATS,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "per-CPU values",
                io_error,
            }),
        })?;
        array.set(FLOW_STATS_AGENT, values, 0).map_err(DataplaneError::map(names::FLOW_STATS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evictions_subtract_what_left_otherwise_and_never_go_negative() {
        let c = FlowCounters { created: 100, expired_replaced: 10, deleted: 5 };
        assert_eq!(c.evictions(60), 25);
        assert_eq!(c.evictions(85), 0);
        assert_eq!(c.evictions(200), 0, "flows created while the table was walked");
        assert_eq!(FlowCounters::default().evictions(0), 0);
    }
}
