//! `sgmirror explain`: one packet, one interface, the verdict and why — after an
//! optional trace of earlier packets, so that flow state can be explained too.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sgmirror_dataplane::{FrameOptions, LoadOptions, LoadedProgram, Mode, frame, load};
use sgmirror_policy::{
    compile::{self, Limits},
    evaluator::{self, LinkState},
    model::{Decision, Direction, InterfacePolicy, Reason, StatefulPacket, Verdict},
    resolve, snapshot,
};

use crate::{
    args::ExplainArgs,
    packet_arg::PacketSpec,
    trace::{self, Step},
};

#[derive(Serialize)]
struct Answer<'a> {
    verdict: Verdict,
    reason: Reason,
    rules: &'a [String],
}

pub fn run(args: &ExplainArgs) -> Result<()> {
    let path = &args.snapshot.snapshot;
    let snap = snapshot::load(path).with_context(|| format!("loading snapshot {}", path.display()))?;
    let (policy, warnings) = resolve::resolve_interface(&snap, &args.interface)?;
    for w in snap.warnings.iter().chain(&warnings) {
        tracing::warn!("{w}");
    }
    let direction = if args.egress { Direction::Egress } else { Direction::Ingress };
    let mut steps = match &args.trace {
        Some(file) => trace::load(file)?,
        None => Vec::new(),
    };
    let quoted = match args.quotes {
        Some(i) if i >= steps.len() => bail!("--quotes {i}: the trace has {} entries", steps.len()),
        Some(i) => Some(steps[i].packet),
        None => None,
    };
    let packet = PacketSpec::from_args(args).build(quoted.as_ref())?;
    steps.push(Step { direction, packet, after_ms: args.after_ms });

    let decision = if args.kernel { kernel(&policy, &steps)? } else { model(&policy, &steps) };
    let answer = Answer { verdict: decision.verdict, reason: decision.reason, rules: &decision.rules };
    if args.json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        let verdict = serde_json::to_value(answer.verdict)?;
        let reason = serde_json::to_value(answer.reason)?;
        println!(
            "{} ({}){}",
            verdict.as_str().unwrap_or_default(),
            reason.as_str().unwrap_or_default(),
            if answer.rules.is_empty() { String::new() } else { format!(": {}", answer.rules.join(", ")) }
        );
    }
    Ok(())
}

/// Model time of each step: the first at 1 s (so no flow looks older than the
/// clock), then the trace's gaps.
fn times(steps: &[Step]) -> Vec<u64> {
    let mut now = 1_000_000_000u64;
    steps
        .iter()
        .map(|s| {
            now += s.after_ms * 1_000_000;
            now
        })
        .collect()
}

fn model(policy: &InterfacePolicy, steps: &[Step]) -> Decision {
    let mut state = LinkState::default();
    let mut last = None;
    for (step, now) in steps.iter().zip(times(steps)) {
        last = Some(evaluator::judge_stateful(policy, step.direction, &step.packet, now, &mut state));
    }
    last.expect("the judged packet is always the last step")
}

/// Runs every step through the real programs (private maps), with the kernel clock
/// moved to the model's time before each packet.
fn kernel(policy: &InterfacePolicy, steps: &[Step]) -> Result<Decision> {
    let compiled = compile::compile(policy, &Limits::default())?;
    let opts = LoadOptions { mode: Mode::Enforce, timeouts: policy.timeouts, ..LoadOptions::default() };
    let program = load(&compiled, &opts).context("loading the programs with private maps (needs root)")?;
    let mut last = None;
    for (step, now) in steps.iter().zip(times(steps)) {
        set_clock(&program, now)?;
        let frame = frame::build(&step.packet.packet, &frame_options(&step.packet));
        let outcome = program.judge(&frame, step.direction)?;
        let image = compiled.image(step.direction);
        let rules = outcome.match_id.map(|id| image.match_sets[id as usize].clone()).unwrap_or_default();
        last = Some(Decision { verdict: outcome.verdict, reason: outcome.reason, rules });
    }
    Ok(last.expect("the judged packet is always the last step"))
}

fn frame_options(packet: &StatefulPacket) -> FrameOptions {
    FrameOptions { transport: packet.transport, ..FrameOptions::default() }
}

/// Makes the kernel's clock (ktime + CLOCK) read `model_ns` now.
fn set_clock(program: &LoadedProgram, model_ns: u64) -> Result<()> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a timespec we own; CLOCK_MONOTONIC is bpf_ktime_get_ns's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ktime = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    program.set_clock_offset(model_ns.wrapping_sub(ktime))?;
    Ok(())
}
