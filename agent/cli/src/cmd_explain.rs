//! `sgmirror explain`: one new packet, one interface, the verdict and why.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sgmirror_dataplane::{FrameOptions, LoadOptions, Mode, frame, load};
use sgmirror_policy::{
    compile::{self, Limits},
    evaluator,
    model::{Decision, Direction, Reason, Verdict},
    resolve, snapshot,
};

use crate::{args::ExplainArgs, packet_arg};

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
    let packet = packet_arg::packet(args)?;
    let decision = if args.kernel {
        if direction == Direction::Egress {
            bail!("--kernel --egress is not supported yet: the egress program arrives with stateful enforcement");
        }
        let compiled = compile::compile(&policy, &Limits::default())?;
        let image = &compiled.ingress;
        let program = load(image, &LoadOptions { mode: Mode::Enforce, shared_pin_dir: None })
            .context("loading the XDP program with private maps (needs root)")?;
        let frame = frame::build(&packet, &FrameOptions::default());
        let outcome = program.judge(&frame)?;
        let rules = outcome.match_id.map(|id| image.match_sets[id as usize].clone()).unwrap_or_default();
        Decision { verdict: outcome.verdict, reason: outcome.reason, rules }
    } else {
        evaluator::verdict(&policy, direction, &packet)
    };
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
