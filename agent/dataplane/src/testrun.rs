//! Running the real program on a frame with `BPF_PROG_TEST_RUN`, without a link: what
//! `explain --kernel`, the differential tests and the benchmarks use.

use aya::programs::{TestRun as _, TestRunOptions};
use sgmirror_common::{direction, reason, verdict};
use sgmirror_policy::model::{Reason, Verdict};

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

/// What the kernel program did with one frame, read from its return value and from
/// the counters it moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelDecision {
    /// The XDP action returned.
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
    /// The XDP action returned.
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

impl LoadedProgram {
    /// Runs the program once on `frame` and returns its XDP action.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, DataplaneError> {
        Ok(self.test_run_repeat(frame, 1)?.0)
    }

    /// Runs the program `repeat` times on `frame`: the XDP action and the kernel's
    /// mean time per run in nanoseconds (for benchmarks; pin the thread to a CPU).
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<(u32, u64), DataplaneError> {
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::default() };
        let result = self
            .xdp()?
            .test_run(opts)
            .map_err(|source| DataplaneError::TestRun { len: frame.len(), source })?;
        let ns = u64::try_from(result.duration.as_nanos()).unwrap_or(u64::MAX);
        Ok((result.return_value, ns))
    }

    /// Runs the program once on `frame` and reads which counters moved: the counted
    /// direction, verdict and reason, and the match set.
    ///
    /// Meant for a program that is not attached: packets arriving from a link at the
    /// same time would move the counters too.
    pub fn observe(&self, frame: &[u8]) -> Result<Observation, DataplaneError> {
        let stats_before = self.stats()?;
        let hits_before = self.rule_hits()?;
        let action = self.test_run(frame)?;
        let moved = self.stats()?.since(&stats_before);
        let mut slots = moved.nonzero();
        let ((direction, verdict, reason), counter) =
            slots.next().ok_or_else(|| DataplaneError::Counters("no counter moved".to_owned()))?;
        if slots.next().is_some() || counter.packets != 1 {
            return Err(DataplaneError::Counters(format!("unexpected counter changes: {moved:?}")));
        }
        let hits_after = self.rule_hits()?;
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
        Ok(Observation { action, direction, verdict, reason, bytes: counter.bytes, match_id })
    }

    /// Runs the program once on `frame` and tells the verdict, the reason and the
    /// match set in the policy model's terms (see [`LoadedProgram::observe`]).
    ///
    /// Frames that are not IP (reason `non-ip`) are an error, as the policy model has
    /// no reason for them.
    pub fn judge(&self, frame: &[u8]) -> Result<KernelDecision, DataplaneError> {
        let seen = self.observe(frame)?;
        if seen.direction != direction::INGRESS {
            return Err(DataplaneError::Counters(format!("counted in direction {}", seen.direction)));
        }
        let reason = model_reason(seen.reason).ok_or_else(|| {
            DataplaneError::Counters(format!(
                "reason `{}` has no policy-model equivalent",
                reason_name(seen.reason)
            ))
        })?;
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
        _ => None,
    }
}

fn reason_name(code: u32) -> &'static str {
    reason::NAMES.get(code as usize).copied().unwrap_or("unknown")
}
