//! `sgmirror-bench`: measures sgmirror against reference programs, nftables and ipset
//! (issue 7), prints a table and writes JSON and SVG plots.
//!
//! Run it through `cargo xtask bench [--smoke]`, which builds it in release mode and
//! pins it to CPU 0 with `taskset -c 0`, as `perf-method.md` prescribes. It needs
//! root: it loads BPF programs and creates network namespaces (all named `sgm-bench-*`,
//! removed afterwards, also on errors).
//!
//! Sections, in priority order: P1 per-packet cost (`p1`), P4 control plane (`p4`),
//! the drop log's cost (`droplog`), P2 drop rates on veth (`p2`), P3 growth (`p3`).
//! `--smoke` is a tiny run (repeat 10^4, one run, small policies, no P2/P3) for the
//! test suite.

mod droplog;
mod frames;
mod lab;
mod live;
mod machine;
mod nft;
mod p1;
mod p4;
mod policy;
mod reference;
mod report;
mod stats;
mod svg;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Benchmarks sgmirror's data plane and control plane (needs root).
#[derive(Debug, Parser)]
#[command(name = "sgmirror-bench", version, about)]
struct Args {
    /// A tiny run for the test suite: repeat 10^4, one run, small policies, no live
    /// traffic; finishes in seconds.
    #[arg(long)]
    smoke: bool,
    /// Where to write `results.json`, the SVG plots and the nftables ruleset (nothing
    /// is written without it).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The `sgmirror` binary, for the agent's peak RSS and idle CPU (P4); skipped
    /// without it.
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Sections to run, comma-separated: p1, p4, droplog, p2, p3 (default: all; P2
    /// and P3 never in smoke mode).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    only: Vec<String>,
    /// Seed of the generated policies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Repetitions of each live-traffic variant (best of these is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Seconds of live traffic per trial.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Policy sizes (prefixes per family) of P1, replacing the defaults.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    p1_sizes: Vec<usize>,
    /// Leave out the AWS-maximum rule-count policy from P1.
    #[arg(long)]
    no_aws_max: bool,
}

/// What one run measures.
#[derive(Clone, Debug)]
pub struct Config {
    /// Smoke mode.
    pub smoke: bool,
    /// `BPF_PROG_TEST_RUN` repetitions per run.
    pub repeat: u32,
    /// Runs per figure (median taken).
    pub runs: usize,
    /// P1 policy sizes (prefixes per family).
    pub p1_sizes: Vec<usize>,
    /// Whether P1 includes the AWS-maximum rule count.
    pub aws_max: bool,
    /// P4 sizes (IPv4 prefixes, inbound).
    pub p4_sizes: Vec<usize>,
    /// Policy size whose drop path is measured with the drop log on and off.
    pub droplog_size: usize,
    /// Live-traffic repetitions.
    pub reps: usize,
    /// Live-traffic trial length.
    pub secs: f64,
    /// P2 policy size.
    pub p2_size: usize,
    /// P3 sizes.
    pub p3_sizes: Vec<usize>,
    /// Seed.
    pub seed: u64,
    /// The agent binary.
    pub agent: Option<PathBuf>,
    /// Idle-CPU observation window.
    pub idle_secs: u64,
}

impl Config {
    fn new(args: &Args) -> Self {
        let mut cfg = Self::defaults(args);
        if !args.p1_sizes.is_empty() {
            cfg.p1_sizes.clone_from(&args.p1_sizes);
        }
        cfg.aws_max &= !args.no_aws_max;
        cfg
    }

    fn defaults(args: &Args) -> Self {
        if args.smoke {
            Self {
                smoke: true,
                repeat: 10_000,
                runs: 1,
                p1_sizes: vec![10, 1000],
                aws_max: false,
                p4_sizes: vec![1000],
                droplog_size: 1000,
                reps: 1,
                secs: 0.5,
                p2_size: 1000,
                p3_sizes: vec![],
                seed: args.seed,
                agent: args.agent.clone(),
                idle_secs: 1,
            }
        } else {
            Self {
                smoke: false,
                repeat: 1_000_000,
                runs: 5,
                p1_sizes: vec![10, 1000, 10_000, 100_000],
                aws_max: true,
                p4_sizes: vec![1000, 10_000, 100_000],
                droplog_size: 10_000,
                reps: args.reps.max(1),
                secs: args.secs,
                p2_size: 10_000,
                p3_sizes: vec![10, 1000, 10_000, 100_000],
                seed: args.seed,
                agent: args.agent.clone(),
                idle_secs: 10,
            }
        }
    }
}

fn wanted(args: &Args, section: &str) -> bool {
    let live = matches!(section, "p2" | "p3");
    if args.smoke && live {
        return false;
    }
    args.only.is_empty() || args.only.iter().any(|s| s == section)
}

fn run(args: &Args) -> Result<()> {
    for s in &args.only {
        if !["p1", "p4", "droplog", "p2", "p3"].contains(&s.as_str()) {
            bail!("unknown section {s:?} (p1, p4, droplog, p2, p3)");
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("sgmirror-bench needs root (it loads BPF programs and creates network namespaces)");
    }
    let cfg = Config::new(args);
    let mut report = report::Report::new(machine::Machine::describe(), &cfg);
    if report.machine.affinity.len() != 1 {
        eprintln!(
            "sgmirror-bench: warning: not pinned to one CPU (allowed: {:?}); run it with `taskset -c 0` as `cargo xtask bench` does",
            report.machine.affinity
        );
    }
    println!(
        "sgmirror-bench ({}) on {} ({} CPUs), kernel {}, commit {}",
        if cfg.smoke { "smoke" } else { "full" },
        report.machine.cpu_model,
        report.machine.cpus,
        report.machine.kernel,
        report.machine.commit
    );
    lab::remove_leftovers();
    let save = |report: &report::Report| -> Result<()> {
        if let Some(dir) = &args.out {
            report.write(dir).with_context(|| format!("writing the results under {}", dir.display()))?;
        }
        Ok(())
    };
    let policies = if wanted(args, "p1") {
        p1::policies(&cfg)?
    } else if wanted(args, "droplog") {
        vec![policy::services(cfg.droplog_size, cfg.seed)?]
    } else {
        Vec::new()
    };
    if wanted(args, "p1") {
        report.p1 = Some(p1::run(&cfg, &policies)?);
        save(&report)?;
    }
    if wanted(args, "p4") {
        report.p4 = Some(p4::run(&cfg)?);
        save(&report)?;
    }
    if wanted(args, "droplog") {
        let p = policies.iter().find(|p| p.name == cfg.droplog_size.to_string()).or(policies.last());
        if let Some(p) = p {
            report.drop_log = Some(droplog::run(&cfg, p)?);
            save(&report)?;
        }
    }
    drop(policies);
    if wanted(args, "p2") || wanted(args, "p3") {
        let ruleset_dir = args.out.clone();
        let (p2, p3) = live::run(&cfg, wanted(args, "p2"), wanted(args, "p3"), ruleset_dir.as_deref())?;
        report.p2 = p2;
        report.p3 = p3;
    }
    report.evaluate_targets();
    report.print_targets();
    save(&report)?;
    if let Some(dir) = &args.out {
        println!("\nresults written to {}", dir.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = run(&args);
    lab::remove_leftovers();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sgmirror-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn smoke_mode_is_small_and_skips_live_traffic() {
        let args = Args::try_parse_from(["sgmirror-bench", "--smoke"]).unwrap();
        let cfg = Config::new(&args);
        assert_eq!(cfg.repeat, 10_000);
        assert_eq!(cfg.runs, 1);
        assert!(!wanted(&args, "p2") && !wanted(&args, "p3"));
        assert!(wanted(&args, "p1") && wanted(&args, "p4"));
        let full = Config::new(&Args::try_parse_from(["sgmirror-bench"]).unwrap());
        assert_eq!((full.repeat, full.runs), (1_000_000, 5));
        assert!(full.p1_sizes.contains(&100_000) && full.aws_max);
    }
}
