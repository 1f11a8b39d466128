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

    let decision = if args.kernel { kernel(&policy, &steps)? } else { model(&policy, &steps)? };
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

/// Model time of each step, in nanoseconds: the first at 1 s (so no flow looks older
/// than the clock), then the trace's gaps. The gaps are user input, so a sum past
/// `u64` nanoseconds (about 584 years) is an error naming the gap, not an overflow.
fn times(steps: &[Step]) -> Result<Vec<u64>> {
    let mut now = 1_000_000_000u64;
    let last = steps.len().saturating_sub(1);
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            now = s.after_ms.checked_mul(1_000_000).and_then(|gap| now.checked_add(gap)).with_context(
                || {
                    let field =
                        if i == last { "--after-ms".to_owned() } else { format!("trace $[{i}].after_ms") };
                    format!("{field} {}: the trace's times add up to more than 584 years", s.after_ms)
                },
            )?;
            Ok(now)
        })
        .collect()
}

fn model(policy: &InterfacePolicy, steps: &[Step]) -> Result<Decision> {
    let mut state = LinkState::default();
    let mut last = None;
    for (step, now) in steps.iter().zip(times(steps)?) {
        last = Some(evaluator::judge_stateful(policy, step.direction, &step.packet, now, &mut state));
    }
    Ok(last.expect("the judged packet is always the last step"))
}

/// Runs every step through the real programs (private maps), with the kernel clock
/// moved to the model's time before each packet.
fn kernel(policy: &InterfacePolicy, steps: &[Step]) -> Result<Decision> {
    let compiled = compile::compile(policy, &Limits::default())?;
    let opts = LoadOptions { mode: Mode::Enforce, timeouts: policy.timeouts, ..LoadOptions::default() };
    let program = load(&compiled, &opts).context("loading the programs with private maps (needs root)")?;
    let mut last = None;
    for (step, now) in steps.iter().zip(times(steps)?) {
        set_clock(&program, now)?;
        let frame = frame::build(&step.packet.packet, &frame_options(&step.packet));
        let outcome = program.judge(&frame, step.direction)?;
        let image = compiled.image(step.direction);
        let rules = match outcome.match_id {
            Some(id) => image.match_sets.get(id as usize).cloned().with_context(|| {
                format!(
                    "the kernel answered match set {id}, but the compiled image has {}",
                    image.match_sets.len()
                )
            })?,
            None => Vec::new(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(after_ms: u64) -> Step {
        let spec = PacketSpec {
            proto: "udp".to_owned(),
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            dport: Some(53),
            icmp_type: None,
            icmp_code: 0,
            icmp_id: 0,
            tcp_flags: String::new(),
        };
        Step { direction: Direction::Egress, packet: spec.build(None).unwrap(), after_ms }
    }

    #[test]
    fn times_start_at_one_second_and_add_the_gaps() {
        assert_eq!(
            times(&[step(0), step(5), step(1)]).unwrap(),
            [1_000_000_000, 1_005_000_000, 1_006_000_000]
        );
    }

    #[test]
    fn gaps_past_the_clock_are_errors_naming_the_gap() {
        let err = format!("{:#}", times(&[step(u64::MAX / 2), step(0)]).unwrap_err());
        assert!(err.starts_with("trace $[0].after_ms "), "{err}");
        let err =
            format!("{:#}", times(&[step(u64::MAX / 2_000_000), step(u64::MAX / 2_000_000)]).unwrap_err());
        assert!(err.starts_with("--after-ms "), "{err}");
    }
}
