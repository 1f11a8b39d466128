//! `sgmirror run`: enforce a snapshot on local links until told to stop, swapping in
//! the new policy whenever the snapshot file changes.
//!
//! Everything that can fail on bad input (parsing, resolving, compiling, loading
//! through the verifier) happens for every interface before the first attach, so a
//! bad snapshot attaches nothing; if an attach fails, what was attached is detached.
//! A bad snapshot later on is refused and the last good policy stays enforced.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use sgmirror_dataplane::{LoadOptions, Mode, TcAttachMode, XdpAttachMode};
use sgmirror_policy::{
    compile::{self, CompiledInterface, Limits},
    model::{Direction, InterfacePolicy, Warning},
    resolve,
    snapshot::{self, Snapshot},
};

use crate::{
    args::{ModeArg, RunArgs, TcModeArg, XdpModeArg},
    bindings::{self, Binding},
    bpffs,
    drop_pump::DropPump,
    enforcer::{self, Enforcer, Prepared},
    metrics::{
        self, AgentMetrics, LinkMetrics,
        server::{MetricsServer, ScrapeRequest},
    },
    summary::{self, InterfaceSummary, Summary},
};

/// Removes pinned state directories when dropped (on every way out of `run`).
struct PinDirs(Vec<PathBuf>);

impl Drop for PinDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            if let Err(e) = bpffs::remove_link_dir(dir) {
                tracing::warn!(dir = %dir.display(), "removing pinned state: {e}");
            }
            // The layout-version directory and the root, when nothing else is left in them.
            for parent in dir.ancestors().skip(1).take(2) {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

pub fn run(args: &RunArgs) -> Result<()> {
    // Installed first, so a signal that arrives while attaching still ends in a clean
    // detach and a summary rather than in the default action.
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing the SIGHUP handler")?;

    let path = &args.snapshot.snapshot;
    let mut fingerprint = file_fingerprint(path);
    let snap = load_snapshot(path)?;
    let chosen = bindings::choose(&snap, &args.bind)?;
    bpffs::prepare(&args.pin_root)?;

    // Phase 1: everything that can fail on bad input, before touching any link.
    let mut pin_dirs = PinDirs(Vec::new());
    let mut prepared = Vec::new();
    for binding in chosen {
        let dir = bpffs::link_dir(&args.pin_root, binding.link.ifindex)?;
        if dir.exists() {
            tracing::warn!(dir = %dir.display(), "removing pinned state left by an earlier run");
            bpffs::remove_link_dir(&dir)?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        pin_dirs.0.push(dir.clone());
        let next = prepare(&snap, &binding, &dir, args)?;
        prepared.push((binding, dir, next));
    }

    // Phase 2: attach; on any failure, the enforcers already attached are dropped,
    // which detaches them, and the pins are removed.
    let (xdp, tc) = attach_modes(args);
    let mut enforcers = Vec::new();
    for (binding, dir, next) in prepared {
        enforcers.push(Enforcer::attach(binding, dir, next, xdp, tc)?);
    }
    for e in &enforcers {
        let c = e.compiled();
        tracing::info!(
            link = %e.binding.link.name,
            interface = %e.binding.interface_id,
            xdp = e.attached.xdp.as_str(),
            tc = e.attached.tc.as_str(),
            mode = mode_name(mode_of(args)),
            "enforcing {} inbound and {} outbound rules: {} + {} prefixes",
            c.ingress.rules,
            c.egress.rules,
            c.ingress.addr4.len() + c.ingress.addr6.len(),
            c.egress.addr4.len() + c.egress.addr6.len(),
        );
    }
    eprintln!(
        "sgmirror: enforcing ({}) on {} link(s); stop with SIGINT or SIGTERM",
        mode_name(mode_of(args)),
        enforcers.len()
    );

    let (scrape_tx, scrapes) = mpsc::channel::<ScrapeRequest>();
    let _server = if args.no_metrics {
        None
    } else {
        match MetricsServer::start(args.metrics_addr, scrape_tx) {
            Ok(server) => {
                tracing::info!("serving metrics on http://{}/metrics", server.local_addr());
                Some(server)
            }
            Err(e) => {
                tracing::error!("cannot serve metrics on {}: {e}; enforcing without them", args.metrics_addr);
                None
            }
        }
    };
    let mut health = SourceHealth { last_success: SystemTime::now(), errors: BTreeMap::new() };
    let mut drop_log = DropPump::new(&args.drop_log)?;

    let poll = Duration::from_millis(args.poll_interval_ms.max(50));
    let mut last_poll = Instant::now();
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Waiting for a scrape is the loop's sleep: scrapes are answered at once, and
        // counters are read from the kernel at scrape time.
        if let Ok(request) = scrapes.recv_timeout(Duration::from_millis(50)) {
            let metrics = collect_metrics(&enforcers, args, &health, drop_log.as_ref());
            let _ = request.reply.send(metrics::render(&metrics));
        }
        if let Some(pump) = drop_log.as_mut() {
            pump.turn(&mut enforcers);
        }
        let hup = reload.swap(false, Ordering::Relaxed);
        if hup || last_poll.elapsed() >= poll {
            last_poll = Instant::now();
            let now = file_fingerprint(path);
            if hup || now != fingerprint {
                fingerprint = now;
                refresh(path, &mut enforcers, args, &mut health);
            } else if now.is_some() {
                health.last_success = SystemTime::now();
            } else {
                *health.errors.entry("read").or_default() += 1;
            }
        }
        if args.stats_interval > 0 && last_stats.elapsed() >= Duration::from_secs(args.stats_interval) {
            last_stats = Instant::now();
            log_counters(&enforcers);
        }
    }
    tracing::info!("stopping");
    if let Some(pump) = drop_log.as_mut() {
        pump.finish(&mut enforcers);
    }

    let summary =
        Summary { interfaces: enforcers.iter().map(|e| summarize(e, mode_of(args))).collect::<Result<_>>()? };
    for e in enforcers {
        let link = e.binding.link.name.clone();
        e.detach().with_context(|| format!("detaching from {link}"))?;
        tracing::info!(%link, "detached");
    }
    drop(pin_dirs);
    if let Some(file) = &args.summary_json {
        std::fs::write(file, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    summary::print(&summary);
    Ok(())
}

fn load_snapshot(path: &Path) -> Result<Snapshot> {
    let snap = snapshot::load(path).with_context(|| format!("loading snapshot {}", path.display()))?;
    for w in &snap.warnings {
        tracing::warn!("{w}");
    }
    Ok(snap)
}

/// The resolved and compiled policy of one interface, and the resolver's warnings
/// (left to the caller: a refresh only reports them for a policy that changed).
fn compile_policy(snap: &Snapshot, eni: &str) -> Result<(InterfacePolicy, CompiledInterface, Vec<Warning>)> {
    let (policy, warnings) = resolve::resolve_interface(snap, eni)?;
    let compiled = compile::compile(&policy, &Limits::default())
        .with_context(|| format!("compiling the policy of {eni}"))?;
    Ok((policy, compiled, warnings))
}

/// Resolves, compiles and verifies the policy of one binding.
fn prepare(snap: &Snapshot, binding: &Binding, dir: &Path, args: &RunArgs) -> Result<Prepared> {
    let (policy, compiled, warnings) = compile_policy(snap, &binding.interface_id)?;
    load_policy(binding, policy, compiled, warnings, dir, args)
}

/// Reports the warnings of a policy about to be enforced and loads it through the
/// verifier, with the link's shared state pinned in `dir`.
fn load_policy(
    binding: &Binding,
    policy: InterfacePolicy,
    compiled: CompiledInterface,
    warnings: Vec<Warning>,
    dir: &Path,
    args: &RunArgs,
) -> Result<Prepared> {
    for w in &warnings {
        tracing::warn!(interface = %binding.interface_id, "{w}");
    }
    let opts = LoadOptions {
        mode: mode_of(args),
        shared_pin_dir: Some(dir.to_path_buf()),
        timeouts: args.timeouts.apply(policy.timeouts),
        flow_capacity: args.flow_capacity,
        // The kernel sends no records at all when the log is off.
        drop_log_rate: if args.drop_log.drop_log == "off" { 0 } else { args.drop_log.drop_log_rate },
    };
    enforcer::prepare(policy, compiled, &opts)
}

/// Re-reads the snapshot and swaps in every policy that changed. Any failure leaves
/// the affected link's last good policy enforced, and says so.
fn refresh(path: &Path, enforcers: &mut [Enforcer], args: &RunArgs, health: &mut SourceHealth) {
    let snap = match load_snapshot(path) {
        Ok(snap) => snap,
        Err(e) => {
            *health.errors.entry("snapshot").or_default() += 1;
            tracing::error!(
                "the snapshot changed but cannot be used; the last good policy stays enforced: {e:#}"
            );
            return;
        }
    };
    let mut failed = false;
    for e in enforcers.iter_mut() {
        let link = e.binding.link.name.clone();
        let result = (|| -> Result<bool> {
            let (policy, compiled, warnings) = compile_policy(&snap, &e.binding.interface_id)?;
            if &compiled == e.compiled() && policy.timeouts == e.policy().timeouts {
                return Ok(false);
            }
            let next = load_policy(&e.binding, policy, compiled, warnings, &e.pin_dir, args)?;
            e.replace(next)?;
            Ok(true)
        })();
        match result {
            Ok(true) => {
                tracing::info!(%link, generation = e.generation, "applied policy generation {}", e.generation)
            }
            Ok(false) => tracing::info!(%link, "the snapshot changed, this link's policy did not"),
            Err(err) => {
                failed = true;
                tracing::error!(%link, "new policy refused; the last good policy stays enforced: {err:#}");
            }
        }
    }
    if failed {
        *health.errors.entry("policy").or_default() += 1;
    } else {
        health.last_success = SystemTime::now();
    }
}

/// How the policy source is doing, for the metrics.
struct SourceHealth {
    /// Last time the source was read and everything in it applied (or unchanged).
    last_success: SystemTime,
    /// Failures by kind: `read` (file gone), `snapshot` (does not parse),
    /// `policy` (resolving, compiling or swapping failed for a link).
    errors: BTreeMap<&'static str, u64>,
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Everything a scrape shows, read from the kernel now.
fn collect_metrics(
    enforcers: &[Enforcer],
    args: &RunArgs,
    health: &SourceHealth,
    drop_log: Option<&DropPump>,
) -> AgentMetrics {
    let links = enforcers
        .iter()
        .map(|e| {
            let drop_counters = e.drop_log_counters().unwrap_or_default();
            let hits: BTreeMap<String, u64> =
                e.rule_hits().unwrap_or_default().into_iter().map(|h| (h.rule, h.packets)).collect();
            let mut rule_hits = Vec::new();
            for direction in [Direction::Ingress, Direction::Egress] {
                for r in e.policy().rules(direction) {
                    rule_hits.push(metrics::RuleHit {
                        rule: r.id.clone(),
                        group_id: r.group_id.clone(),
                        direction: direction.as_str(),
                        packets: hits.get(&r.id).copied().unwrap_or(0),
                    });
                }
            }
            LinkMetrics {
                interface_id: e.binding.interface_id.clone(),
                link: e.binding.link.name.clone(),
                xdp_mode: e.attached.xdp.as_str().to_owned(),
                tc_mode: e.attached.tc.as_str().to_owned(),
                mode: mode_name(mode_of(args)),
                generation: e.generation,
                applied_unix_seconds: unix_seconds(e.applied_at),
                counters: metrics::counters(&e.stats().unwrap_or_default()),
                rule_hits,
                flows: e.flow_count().unwrap_or(0) as u64,
                flow_capacity: u64::from(args.flow_capacity),
                flows_evicted: e.flows_evicted().unwrap_or(0),
                drop_records_suppressed: drop_counters.suppressed,
                drop_records_lost: drop_counters.lost,
            }
        })
        .collect();
    AgentMetrics {
        links,
        last_refresh_success_unix_seconds: unix_seconds(health.last_success),
        source_errors: health.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        drop_log_lines: drop_log.map_or(0, DropPump::lines_written),
        drop_log_lines_suppressed: drop_log.map_or(0, DropPump::flows_suppressed),
    }
}

/// Modification time and length: cheap, and enough to notice a rewritten file.
fn file_fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn attach_modes(args: &RunArgs) -> (XdpAttachMode, TcAttachMode) {
    let xdp = match args.xdp_mode {
        XdpModeArg::Auto => XdpAttachMode::Auto,
        XdpModeArg::Native => XdpAttachMode::Native,
        XdpModeArg::Generic => XdpAttachMode::Generic,
    };
    let tc = match args.tc_mode {
        TcModeArg::Auto => TcAttachMode::Auto,
        TcModeArg::Tcx => TcAttachMode::Tcx,
        TcModeArg::Clsact => TcAttachMode::Clsact,
    };
    (xdp, tc)
}

fn mode_of(args: &RunArgs) -> Mode {
    match args.mode {
        ModeArg::Enforce => Mode::Enforce,
        ModeArg::Audit => Mode::Audit,
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

fn summarize(e: &Enforcer, mode: Mode) -> Result<InterfaceSummary> {
    Ok(InterfaceSummary {
        interface_id: e.binding.interface_id.clone(),
        link: e.binding.link.name.clone(),
        mode: mode_name(mode),
        xdp_mode: e.attached.xdp.as_str().to_owned(),
        tc_mode: e.attached.tc.as_str().to_owned(),
        generation: e.generation,
        flows: e.flow_count()?,
        counters: summary::counter_rows(&e.stats()?),
        rule_hits: e.rule_hits()?,
    })
}

fn log_counters(enforcers: &[Enforcer]) {
    for e in enforcers {
        match e.stats() {
            Ok(stats) => {
                let text: Vec<String> = summary::counter_rows(&stats)
                    .iter()
                    .map(|c| format!("{}/{}/{}={}", c.direction, c.verdict, c.reason, c.packets))
                    .collect();
                tracing::info!(link = %e.binding.link.name, "counters: {}", text.join(" "));
            }
            Err(err) => tracing::warn!(link = %e.binding.link.name, "reading counters: {err:#}"),
        }
    }
}
