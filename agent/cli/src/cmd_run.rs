//! `sgmirror run`: enforce a snapshot on local links until told to stop.
//!
//! Everything that can fail on bad input (parsing, resolving, compiling, loading
//! through the verifier) happens for every interface before the first attach, so a
//! bad snapshot attaches nothing; if an attach fails, what was attached is detached.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use sgmirror_dataplane::{LoadOptions, LoadedProgram, Mode, XdpAttachMode, load};
use sgmirror_policy::{
    compile::{self, Limits, MapImage},
    resolve, snapshot,
};

use crate::{
    args::{ModeArg, RunArgs, XdpModeArg},
    bindings::{self, Binding},
    summary::{self, InterfaceSummary, Summary},
};

/// One interface being enforced.
struct Enforced {
    binding: Binding,
    image: MapImage,
    rule_ids: Vec<String>,
    program: LoadedProgram,
    xdp_mode: String,
}

pub fn run(args: &RunArgs) -> Result<()> {
    // Installed first, so a SIGTERM that arrives while attaching still ends in a clean
    // detach and a summary rather than in the default action.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    let path = &args.snapshot.snapshot;
    let snap = snapshot::load(path).with_context(|| format!("loading snapshot {}", path.display()))?;
    for w in &snap.warnings {
        tracing::warn!("{w}");
    }
    let chosen = bindings::choose(&snap, &args.bind)?;
    let mode = match args.mode {
        ModeArg::Enforce => Mode::Enforce,
        ModeArg::Audit => Mode::Audit,
    };

    // Phase 1: everything that can fail on bad input, before touching any link.
    let mut prepared = Vec::new();
    for binding in chosen {
        let eni = &binding.interface_id;
        let (policy, warnings) = resolve::resolve_interface(&snap, eni)?;
        for w in &warnings {
            tracing::warn!(interface = %eni, "{w}");
        }
        let compiled = compile::compile(&policy, &Limits::default())
            .with_context(|| format!("compiling the policy of {eni}"))?;
        let program = load(&compiled.ingress, &LoadOptions { mode, shared_pin_dir: None })
            .with_context(|| format!("loading the XDP program for {eni}"))?;
        let rule_ids = policy.ingress.iter().map(|r| r.id.clone()).collect();
        prepared.push((binding, compiled.ingress, rule_ids, program));
    }

    // Phase 2: attach; on any failure, the programs already attached are dropped,
    // which detaches them.
    let xdp_mode = match args.xdp_mode {
        XdpModeArg::Auto => XdpAttachMode::Auto,
        XdpModeArg::Native => XdpAttachMode::Native,
        XdpModeArg::Generic => XdpAttachMode::Generic,
    };
    let mut enforced = Vec::new();
    for (binding, image, rule_ids, mut program) in prepared {
        let used = program
            .attach(&binding.link.name, xdp_mode)
            .with_context(|| format!("attaching to {}", binding.link.name))?;
        enforced.push(Enforced { binding, image, rule_ids, program, xdp_mode: format!("{used:?}").to_lowercase() });
    }
    for e in &enforced {
        tracing::info!(
            link = %e.binding.link.name,
            interface = %e.binding.interface_id,
            xdp = %e.xdp_mode,
            mode = mode_name(mode),
            "enforcing {} ingress rules on {} ({}): {} prefixes, {} classes",
            e.rule_ids.len(),
            e.binding.link.name,
            e.binding.interface_id,
            e.image.addr4.len() + e.image.addr6.len(),
            e.image.classes,
        );
    }
    eprintln!("sgmirror: enforcing ({}) on {} link(s); stop with SIGINT or SIGTERM", mode_name(mode), enforced.len());

    wait_for_stop(&stop, &enforced, args.stats_interval)?;

    let summary = Summary { interfaces: enforced.iter().map(|e| summarize(e, mode)).collect::<Result<_>>()? };
    for e in enforced {
        let link = e.binding.link.name.clone();
        e.program.detach().with_context(|| format!("detaching from {link}"))?;
        tracing::info!(%link, "detached");
    }
    if let Some(file) = &args.summary_json {
        std::fs::write(file, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    summary::print(&summary);
    Ok(())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

fn summarize(e: &Enforced, mode: Mode) -> Result<InterfaceSummary> {
    let stats = e.program.stats()?;
    let hits = e.program.rule_hits()?;
    Ok(InterfaceSummary {
        interface_id: e.binding.interface_id.clone(),
        link: e.binding.link.name.clone(),
        mode: mode_name(mode),
        xdp_mode: e.xdp_mode.clone(),
        counters: summary::counter_rows(&stats),
        rule_hits: summary::rule_hits(&e.rule_ids, &e.image.match_sets, &hits),
    })
}

/// Blocks until SIGINT or SIGTERM, logging counters every `interval` seconds.
fn wait_for_stop(stop: &AtomicBool, enforced: &[Enforced], interval: u64) -> Result<()> {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if interval > 0 && last.elapsed() >= Duration::from_secs(interval) {
            last = Instant::now();
            for e in enforced {
                let rows = summary::counter_rows(&e.program.stats()?);
                let text: Vec<String> =
                    rows.iter().map(|c| format!("{}/{}/{}={}", c.direction, c.verdict, c.reason, c.packets)).collect();
                tracing::info!(link = %e.binding.link.name, "counters: {}", text.join(" "));
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}
