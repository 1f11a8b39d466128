//! Running the real programs on a frame with `BPF_PROG_TEST_RUN`, without a link:
//! what `explain --kernel`, the differential tests and the benchmarks use. Ingress
//! runs the XDP program on the frame; egress runs the TC program on an skb the kernel
//! builds from the same bytes (the Ethernet frame).

use aya::programs::{TestRun as _, TestRunOptions};
use sgmirror_common::{direction, reason, verdict};
use sgmirror_policy::model::{Direction, Reason, Verdict};

use crate::{DataplaneError, LoadedProgram};

/// XDP action codes (`enum xdp_action`).
pub mod xdp_action {
    /// An error in the program.
    pub const ABORTED: u32 = 0;
    /// Dropped.
    pub const DROP: u32 = 1;
    /// Passed to the network stack.
    pub const PASS: u32 = 2;
}

/// The TC program's return codes, as `BPF_PROG_TEST_RUN` reports them (a `u32`).
pub mod tc_action {
    /// `TC_ACT_UNSPEC` (-1): passed on to the next program, or sent when there is none.
    pub const PASS: u32 = u32::MAX;
    /// `TC_ACT_SHOT`: dropped.
    pub const DROP: u32 = 2;
}

/// Whether a program's return code lets the packet through.
pub(crate) fn passes(direction: Direction, action: u32) -> bool {
    match direction {
        Direction::Ingress => action == xdp_action::PASS,
        Direction::Egress => action == tc_action::PASS,
    }
}

fn direction_code(direction: Direction) -> u32 {
    match direction {
        Direction::Ingress => direction::INGRESS,
        Direction::Egress => direction::EGRESS,
    }
}

/// What the kernel program did with one frame, read from its return value and from
/// the counters it moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelDecision {
    /// The program's return code ([`xdp_action`] for ingress, [`tc_action`] for egress).
    pub action: u32,
    /// What the policy says: `Drop` also in audit mode, where the action is PASS.
    pub verdict: Verdict,
    /// The counted verdict (`sgmirror_common::verdict`): ALLOW, DROP or AUDIT.
    pub verdict_code: u32,
    /// Why.
    pub reason: Reason,
    /// The match set whose hit counter moved (the rules that allowed the packet).
    pub match_id: Option<u32>,
}

/// What one test run did, in the kernel's codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The program's return code ([`xdp_action`] or [`tc_action`]).
    pub action: u32,
    /// The counted direction (`sgmirror_common::direction`).
    pub direction: u32,
    /// The counted verdict (`sgmirror_common::verdict`).
    pub verdict: u32,
    /// The counted reason (`sgmirror_common::reason`).
    pub reason: u32,
    /// The bytes counted (the frame length).
    pub bytes: u64,
    /// The match set whose hit counter moved.
    pub match_id: Option<u32>,
}

impl KernelDecision {
    /// Whether the packet went through (allowed, or audited).
    pub fn passed(&self) -> bool {
        self.verdict_code != verdict::DROP
    }
}

impl LoadedProgram {
    /// Runs one direction's program once on `frame` and returns its return code.
    pub fn test_run(&self, frame: &[u8], direction: Direction) -> Result<u32, DataplaneError> {
        Ok(self.test_run_repeat(frame, direction, 1)?.0)
    }

    /// Runs one direction's program `repeat` times on `frame`: the return code and
    /// the kernel's mean time per run in nanoseconds (for benchmarks; pin the thread
    /// to a CPU).
    pub fn test_run_repeat(
        &self,
        frame: &[u8],
        direction: Direction,
        repeat: u32,
    ) -> Result<(u32, u64), DataplaneError> {
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::default() };
        let result = match direction {
            Direction::Ingress => self.xdp()?.test_run(opts),
            Direction::Egress => self.tc()?.test_run(opts),
        }
        .map_err(|source| DataplaneError::TestRun { len: frame.len(), source })?;
        let ns = u64::try_from(result.duration.as_nanos()).unwrap_or(u64::MAX);
        Ok((result.return_value, ns))
    }

    /// Runs one direction's program once on `frame` and reads which counters moved:
    /// the counted direction, verdict and reason, and the match set.
    ///
    /// Meant for programs that are not attached: packets arriving from a link at the
    /// same time would move the counters too.
    pub fn observe(&self, frame: &[u8], direction: Direction) -> Result<Observation, DataplaneError> {
        let stats_before = self.stats()?;
        let hits_before = self.rule_hits(direction)?;
        let action = self.test_run(frame, direction)?;
        let moved = self.stats()?.since(&stats_before);
        let mut slots = moved.nonzero();
        let ((counted_direction, verdict, reason), counter) =
            slots.next().ok_or_else(|| DataplaneError::Counters("no counter moved".to_owned()))?;
        if slots.next().is_some() || counter.packets != 1 {
            return Err(DataplaneError::Counters(format!("unexpected counter changes: {moved:?}")));
        }
        let hits_after = self.rule_hits(direction)?;
        let moved_ids: Vec<u32> = hits_after
            .iter()
            .zip(&hits_before)
            .enumerate()
            .filter(|(_, (after, before))| after != before)
            .map(|(id, _)| id as u32)
            .collect();
        let match_id = match moved_ids.as_slice() {
            [] => None,
            [id] => Some(*id),
            more => return Err(DataplaneError::Counters(format!("several match sets moved: {more:?}"))),
        };
        Ok(Observation {
            action,
            direction: counted_direction,
            verdict,
            reason,
            bytes: counter.bytes,
            match_id,
        })
    }

    /// Runs one direction's program once on `frame` and tells the verdict, the reason
    /// and the match set in the policy model's terms (see [`LoadedProgram::observe`]).
    ///
    /// Frames that are not IP (reason `non-ip`) are an error, as the policy model has
    /// no reason for them.
    pub fn judge(&self, frame: &[u8], direction: Direction) -> Result<KernelDecision, DataplaneError> {
        let seen = self.observe(frame, direction)?;
        if seen.direction != direction_code(direction) {
            return Err(DataplaneError::Counters(format!("counted in direction {}", seen.direction)));
        }
        let reason = model_reason(seen.reason).ok_or_else(|| {
            DataplaneError::Counters(format!(
                "reason `{}` has no policy-model equivalent",
                reason_name(seen.reason)
            ))
        })?;
        if passes(direction, seen.action) != (seen.verdict != verdict::DROP) {
            return Err(DataplaneError::Counters(format!(
                "return code {:#x} disagrees with the counted verdict {}",
                seen.action, seen.verdict
            )));
        }
        let verdict = if seen.verdict == verdict::ALLOW { Verdict::Allow } else { Verdict::Drop };
        Ok(KernelDecision {
            action: seen.action,
            verdict,
            verdict_code: seen.verdict,
            reason,
            match_id: seen.match_id,
        })
    }
}

/// The policy model's reason for a kernel reason code.
pub fn model_reason(code: u32) -> Option<Reason> {
    match code {
        reason::RULE => Some(Reason::Rule),
        reason::EXEMPT => Some(Reason::Exempt),
        reason::NO_RULE => Some(Reason::NoRule),
        reason::FRAGMENT => Some(Reason::Fragment),
        reason::MALFORMED => Some(Reason::Malformed),
        reason::TRACKED => Some(Reason::Tracked),
        _ => None,
    }
}

fn reason_name(code: u32) -> &'static str {
    reason::NAMES.get(code as usize).copied().unwrap_or("unknown")
}
