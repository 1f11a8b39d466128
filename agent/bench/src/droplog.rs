//! The drop log's cost (issue 6: at most 5 % more per dropped packet with the log on):
//! P1's denied paths timed with the kernel's drop log off and on, in one process,
//! runs interleaved.
//!
//! "On" uses the agent's default rate limit: under a flood of denied packets — which
//! is what `BPF_PROG_TEST_RUN` with 10^6 repetitions is — the per-CPU token bucket is
//! empty after its first few records, so nearly every packet pays the bucket check and
//! the suppressed counter, and a few pay a ring-buffer record. That is the drop path's
//! cost during a flood, the case the limit exists for.

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use sgmirror_common::names;
use sgmirror_dataplane::{LoadOptions, LoadedProgram, load, xdp_action};
use sgmirror_policy::{compile::CompiledInterface, model::Direction};

use crate::{
    Config,
    frames::ProbeFrames,
    p1::{self, Kind},
    policy::BenchPolicy,
    stats::{Measured, Ratio},
};

/// Records per second per CPU with the log on (the agent's default, `--drop-log-rate`).
pub const RATE_ON: u32 = 200;
/// Loads of each setting in a full run.
const LOADS: usize = 3;

/// Packets the drop log of each program of a pair counted as suppressed or lost.
fn counted(pair: &[LoadedProgram; 2]) -> Result<[u64; 2]> {
    let mut out = [0; 2];
    for (slot, program) in out.iter_mut().zip(pair) {
        let c = program.drop_log_counters()?;
        *slot = c.suppressed + c.lost;
    }
    Ok(out)
}

/// One denied path with the log off and on.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The path.
    pub kind: Kind,
    /// ns per packet, log off.
    pub off_ns: Measured,
    /// ns per packet, log on.
    pub on_ns: Measured,
    /// on / off.
    pub ratio: Ratio,
}

/// The drop log comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DropLog {
    /// Whether this build's kernel program and loader have a drop log.
    pub available: bool,
    /// What was measured, or why nothing was.
    pub note: String,
    /// The policy.
    pub policy: String,
    /// Records per second per CPU with the log on.
    pub rate_on: u32,
    /// Loads of each setting (each timed `runs` times).
    pub loads: usize,
    /// Per denied path.
    pub rows: Vec<Row>,
}

/// Whether the embedded kernel object defines the drop-log ring buffer and its rate.
fn kernel_has_drop_log() -> bool {
    let object = sgmirror_dataplane::object();
    let has = |name: &str| {
        let needle: Vec<u8> = name.bytes().chain(std::iter::once(0)).collect();
        object.windows(needle.len()).any(|w| w == needle.as_slice())
    };
    has(names::DROP_LOG) && has(names::DROP_LOG_RATE)
}

/// Loads `compiled` with the drop log at `rate` records per second per CPU (0: off).
fn load_with_drop_log(compiled: &CompiledInterface, rate: u32) -> Result<LoadedProgram> {
    Ok(load(compiled, &LoadOptions { drop_log_rate: rate, ..LoadOptions::default() })?)
}

/// Runs the comparison on `p`'s denied paths.
pub fn run(cfg: &Config, p: &BenchPolicy) -> Result<DropLog> {
    let mut out = DropLog { policy: p.name.clone(), rate_on: RATE_ON, ..DropLog::default() };
    println!("\nDrop log on vs off ({} prefixes per family, denied packets)", p.name);
    if !kernel_has_drop_log() {
        out.note =
            "drop log not available in this build: the kernel program has no DROP_LOG ring buffer".into();
        println!("{}", out.note);
        return Ok(out);
    }
    // Each load is a new program whose JIT image lands at a new address; between
    // loads the same path varies by several per cent (`perf-method.md`), so both
    // settings are loaded several times and every load is timed.
    let loads = if cfg.smoke { 1 } else { LOADS };
    let mut programs: Vec<[LoadedProgram; 2]> = Vec::new();
    for _ in 0..loads {
        let off = load_with_drop_log(&p.compiled, 0).context("loading with the drop log off")?;
        let on = load_with_drop_log(&p.compiled, RATE_ON).context("loading with the drop log on")?;
        programs.push([off, on]);
    }
    out.available = true;
    out.loads = loads;
    out.note = format!(
        "denied paths with the drop log off (rate 0) and on ({RATE_ON} records/s per CPU, the bucket empty during the \
         flood: checked, all packets but the bucket's tokens are counted as suppressed); {loads} loads of each, \
         runs interleaved"
    );
    println!("{:<5} {:<20} {:>9} {:>9} {:>8} {:>12}", "fam", "path", "off ns", "on ns", "on/off", "[range]");
    for family in ["ipv4", "ipv6"] {
        let frames = ProbeFrames::new(p1::probes(p, family));
        for (kind, frame) in
            [(Kind::DenyUnknownSource, &frames.deny_addr), (Kind::DenyKnownSource, &frames.deny_port)]
        {
            let before: Vec<[u64; 2]> = programs.iter().map(counted).collect::<Result<_>>()?;
            let mut times = [Vec::new(), Vec::new()];
            let started = std::time::Instant::now();
            for _ in 0..cfg.runs {
                for pair in &programs {
                    for (i, program) in pair.iter().enumerate() {
                        let (action, ns) = program.test_run_repeat(frame, Direction::Ingress, cfg.repeat)?;
                        ensure!(
                            action == xdp_action::DROP,
                            "{}: the denied frame was not dropped",
                            kind.name()
                        );
                        times[i].push(ns as f64);
                    }
                }
            }
            let packets = cfg.runs as u64 * u64::from(cfg.repeat);
            // At most a burst (one second's worth) plus the refill since got a token.
            let tokens = u64::from(RATE_ON) * (2 + started.elapsed().as_secs());
            for (pair, before) in programs.iter().zip(&before) {
                let after = counted(pair)?;
                ensure!(after[0] == before[0], "{}: the drop log counted packets while off", kind.name());
                let suppressed = after[1] - before[1];
                ensure!(
                    suppressed + tokens >= packets,
                    "{}: only {suppressed} of {packets} packets were held back by the drop log's rate limit",
                    kind.name()
                );
            }
            let [a, b] = times;
            let (off_ns, on_ns) = (Measured::of(a), Measured::of(b));
            let row = Row { family, kind, ratio: Ratio::of(&on_ns, &off_ns), off_ns, on_ns };
            println!(
                "{:<5} {:<20} {:>9.0} {:>9.0} {:>8.3} {:>12}",
                family,
                kind.name(),
                row.off_ns.median,
                row.on_ns.median,
                row.ratio.value,
                format!("{:.3}-{:.3}", row.ratio.min, row.ratio.max)
            );
            out.rows.push(row);
        }
    }
    Ok(out)
}
