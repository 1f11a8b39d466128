//! `sgmirror run`: enforce a snapshot on local links until told to stop, swapping in
//! the new policy whenever the source's changes: the snapshot file, or with
//! `--source aws` IMDS and the EC2 API (`source_aws.rs`), which also attach to ENIs
//! attached while running and detach from those detached.
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
    failsafe::{self, FailsafeEntry},
    model::{Direction, InterfacePolicy, Warning},
    resolve,
    snapshot::{self, Snapshot},
};

use crate::{
    args::{ModeArg, RunArgs, TcModeArg, XdpModeArg},
    bindings::{self, Binding},
    bpffs, config,
    drop_pump::DropPump,
    enforcer::{self, Enforcer, Prepared},
    lifecycle,
    metrics::{
        self, AgentMetrics, LinkMetrics,
        server::{MetricsServer, ScrapeRequest},
    },
    notify::Notifier,
    state,
    summary::{self, InterfaceSummary, Summary},
};

/// Says loudly that nothing is attached because there is no usable policy.
fn no_policy(e: &anyhow::Error) {
    tracing::error!(
        "no usable policy at start: attaching nothing (the cloud security groups still protect; \
         enforcement pinned by an earlier agent stays as it was): {e:#}"
    );
}

/// Writes the status record of every link (errors are logged: status is advisory).
fn write_records(enforcers: &[Enforcer], args: &RunArgs, health: &SourceHealth) {
    for e in enforcers {
        let record = state::LinkRecord {
            interface_id: e.binding.interface_id.clone(),
            link: e.binding.link.name.clone(),
            ifindex: e.binding.link.ifindex,
            netns: bpffs::netns_inode().unwrap_or(0),
            pin_dir: e.pin_dir.clone(),
            xdp_mode: e.attached.xdp.as_str().to_owned(),
            xdp_fallback_reason: e.fallback_reason.clone(),
            tc_mode: e.attached.tc.as_str().to_owned(),
            mode: mode_name(mode_of(args)).to_owned(),
            generation: e.generation,
            policy_hash: e.policy_hash().to_owned(),
            applied_unix: state::unix(e.applied_at),
            source_last_success_unix: state::unix(health.last_success),
            source_errors: health.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            agent_pid: std::process::id(),
            written_unix: state::unix_now(),
        };
        if let Err(err) = state::write_record(&args.state_dir, &record) {
            tracing::warn!(link = %record.link, "writing the status record: {err:#}");
        }
    }
}

/// Removes, when dropped, the pin directories that hold no pinned link: a run that
/// fails before attaching leaves nothing, one that enforces leaves its pins.
struct PinDirs(Vec<PathBuf>);

impl Drop for PinDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            if sgmirror_dataplane::has_pinned_links(dir) {
                continue;
            }
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

pub fn run(initial: &RunArgs) -> Result<()> {
    // SIGHUP may change the reloadable settings (see `reload_settings`).
    let mut settings = initial.clone();
    let args = &mut settings;
    let mut notifier = Notifier::from_env();
    // Installed first, so a signal that arrives while attaching still ends in a clean
    // stop and a summary rather than in the default action.
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing the SIGHUP handler")?;

    let mut source = PolicySource::new(args)?;
    // No usable policy at start: the file source attaches nothing and exits non-zero
    // (the error says why); the AWS source keeps retrying, loudly. Either way,
    // enforcement an earlier agent pinned stays in force untouched.
    let Some((snap, chosen)) = source.first(args, &stop, &mut notifier)? else {
        tracing::info!("stopped before any policy arrived; nothing attached");
        return Ok(());
    };
    let _lock = state::lock(&args.state_dir)?;
    bpffs::prepare(&args.pin_root)?;
    lifecycle::remove_stale(&args.pin_root)?;

    // Phase 1: everything that can fail on bad input, before touching any link.
    let mut pin_dirs = PinDirs(Vec::new());
    let mut prepared = Vec::new();
    for binding in chosen {
        let dir = bpffs::link_dir(&args.pin_root, binding.link.ifindex)?;
        let plan = lifecycle::check_link(&binding, &dir, args.replace_foreign_xdp)?;
        if matches!(plan, lifecycle::Plan::Fresh { .. }) && dir.exists() {
            tracing::warn!(dir = %dir.display(), "removing pinned state left by an earlier run");
            bpffs::remove_link_dir(&dir)?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        pin_dirs.0.push(dir.clone());
        let next = prepare(&snap, &binding, &dir, args).inspect_err(no_policy)?;
        prepared.push((binding, dir, next, plan));
    }

    // Phase 2: attach or adopt; on any failure, the enforcers attached fresh are
    // dropped, which detaches them, and their pins are removed.
    let (xdp, tc) = attach_modes(args);
    let mut enforcers = Vec::new();
    for (binding, dir, mut next, plan) in prepared {
        let previous = state::read_record(&args.state_dir, &dir).map_or(0, |r| r.generation);
        let placement = lifecycle::place(&mut next.program, &binding, &dir, plan, xdp, tc)?;
        let generation = if placement.adopted { previous + 1 } else { 1 };
        enforcers.push(Enforcer::placed(binding, dir, next, placement, generation));
    }
    for e in &enforcers {
        let c = e.compiled();
        tracing::info!(
            link = %e.binding.link.name,
            interface = %e.binding.interface_id,
            xdp = e.attached.xdp.as_str(),
            tc = e.attached.tc.as_str(),
            mode = mode_name(mode_of(args)),
            adopted = e.adopted,
            "enforcing {} inbound and {} outbound rules: {} + {} prefixes",
            c.ingress.rules,
            c.egress.rules,
            c.ingress.addr4.len() + c.ingress.addr6.len(),
            c.egress.addr4.len() + c.egress.addr6.len(),
        );
    }
    let mut health = SourceHealth { last_success: SystemTime::now(), errors: BTreeMap::new() };
    let mut last_good = snap;
    if source.is_aws() {
        for e in &enforcers {
            tracing::info!("aws: attached link={} eni={}", e.binding.link.name, e.binding.interface_id);
        }
        tracing::info!(links = enforcers.len(), "aws: policy applied generation=1");
    }
    if let Err(e) = state::write_pid(&args.state_dir) {
        tracing::warn!("{e:#}; `sgmirror status` will not know the agent runs");
    }
    write_records(&enforcers, args, &health);
    eprintln!(
        "sgmirror: enforcing ({}) on {} link(s); stop with SIGINT or SIGTERM",
        mode_name(mode_of(args)),
        enforcers.len()
    );
    // Only now: every bound link has its first policy.
    notifier.ready(&status_line(args, enforcers.len()));

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
    let mut drop_log = DropPump::new(&args.drop_log)?;

    let mut generation = 1u64;
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        notifier.watchdog();
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
        if hup {
            notifier.reloading();
            reload_settings(args, &mut drop_log, &mut enforcers)?;
        }
        let ctx = Turn { args, health: &mut health, pin_dirs: &mut pin_dirs, generation: &mut generation };
        if source.turn(hup, &mut enforcers, &mut last_good, ctx) {
            write_records(&enforcers, args, &health);
        }
        if hup {
            notifier.ready(&status_line(args, enforcers.len()));
        }
        if args.stats_interval > 0 && last_stats.elapsed() >= Duration::from_secs(args.stats_interval) {
            last_stats = Instant::now();
            log_counters(&enforcers);
        }
    }
    tracing::info!("stopping");
    notifier.stopping();
    if let Some(pump) = drop_log.as_mut() {
        pump.finish(&mut enforcers);
    }

    let summary =
        Summary { interfaces: enforcers.iter().map(|e| summarize(e, mode_of(args))).collect::<Result<_>>()? };
    // Pinned links stay attached: the kernel goes on enforcing the last policy until
    // a new agent adopts them or `sgmirror detach` removes them.
    let mut kept = 0;
    for e in enforcers {
        let link = e.binding.link.name.clone();
        if e.pinned() {
            kept += 1;
            continue;
        }
        state::remove_record(&args.state_dir, &e.pin_dir);
        e.detach().with_context(|| format!("detaching from {link}"))?;
        tracing::info!(%link, "detached");
    }
    if kept > 0 {
        tracing::info!(
            "{kept} link(s) stay enforced, pinned under {}; `sgmirror detach` removes them",
            args.pin_root.display()
        );
    }
    state::remove_pid(&args.state_dir);
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
fn compile_policy(
    snap: &Snapshot,
    eni: &str,
    failsafe: &[FailsafeEntry],
) -> Result<(InterfacePolicy, CompiledInterface, Vec<Warning>)> {
    let (mut policy, warnings) = resolve::resolve_interface(snap, eni)?;
    // The failsafe list joins the policy as plain allow rules before compiling, so
    // the kernel needs nothing special for it.
    failsafe::apply(&mut policy, failsafe);
    let compiled = compile::compile(&policy, &Limits::default())
        .with_context(|| format!("compiling the policy of {eni}"))?;
    Ok((policy, compiled, warnings))
}

/// Resolves, compiles and verifies the policy of one binding.
fn prepare(snap: &Snapshot, binding: &Binding, dir: &Path, args: &RunArgs) -> Result<Prepared> {
    let (policy, compiled, warnings) = compile_policy(snap, &binding.interface_id, &args.failsafe)?;
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

/// Swaps in every link's policy from `snap` that changed, and returns how many links
/// got a new one. Any failure leaves the affected link's last good policy enforced,
/// and says so. With `force`, every link's programs are reloaded even if its policy
/// is unchanged.
fn apply(
    snap: &Snapshot,
    enforcers: &mut [Enforcer],
    args: &RunArgs,
    health: &mut SourceHealth,
    force: bool,
) -> usize {
    let mut failed = false;
    let mut applied = 0;
    for e in enforcers.iter_mut() {
        let link = e.binding.link.name.clone();
        let result = (|| -> Result<bool> {
            let (policy, compiled, warnings) = compile_policy(snap, &e.binding.interface_id, &args.failsafe)?;
            if !force && &compiled == e.compiled() && policy.timeouts == e.policy().timeouts {
                return Ok(false);
            }
            let next = load_policy(&e.binding, policy, compiled, warnings, &e.pin_dir, args)?;
            e.replace(next)?;
            Ok(true)
        })();
        match result {
            Ok(true) => {
                applied += 1;
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
    applied
}

/// How the policy source is doing, for the metrics.
struct SourceHealth {
    /// Last time the source was read and everything in it applied (or unchanged).
    last_success: SystemTime,
    /// Failures by kind: `read` (file gone), `snapshot` (does not parse),
    /// `policy` (resolving, compiling or swapping failed for a link), and for the AWS
    /// source `imds` and `api` (a call failed), `links` (attaching to a new ENI failed).
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

/// For `systemctl status`.
fn status_line(args: &RunArgs, links: usize) -> String {
    let failsafe = match args.failsafe.len() {
        0 => String::new(),
        n => format!(", {n} failsafe entries"),
    };
    format!("enforcing ({}) on {links} link(s){failsafe}", mode_name(mode_of(args)))
}

/// SIGHUP: re-reads the configuration file (and the original command line) and takes
/// over what can change while running — mode, failsafe list, timeouts, intervals and
/// the drop log; the caller then reloads every link's programs. The settings that need
/// a restart keep their running values, with a warning; a configuration that cannot
/// be used changes nothing.
fn reload_settings(
    args: &mut RunArgs,
    drop_log: &mut Option<DropPump>,
    enforcers: &mut [Enforcer],
) -> Result<()> {
    let new = match config::reload() {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("the configuration cannot be used; the running settings stay: {e:#}");
            return Ok(());
        }
    };
    let restart = config::restart_only_changes(args, &new);
    if !restart.is_empty() {
        tracing::warn!(
            "changed settings that take effect only on a restart, kept as they are: {}",
            restart.join(", ")
        );
    }
    if new.drop_log != args.drop_log {
        if let Some(pump) = drop_log.as_mut() {
            pump.finish(enforcers);
        }
        *drop_log = DropPump::new(&new.drop_log)?;
        args.drop_log = new.drop_log.clone();
    }
    if new.mode != args.mode {
        tracing::info!("mode: {} -> {}", mode_name(mode_of(args)), mode_name(mode_of(&new)));
    }
    if new.failsafe != args.failsafe {
        tracing::info!("failsafe list: {} entries", new.failsafe.len());
    }
    args.mode = new.mode;
    args.failsafe = new.failsafe;
    args.timeouts = new.timeouts;
    args.stats_interval = new.stats_interval;
    args.poll_interval_ms = new.poll_interval_ms;
    args.imds_interval_ms = new.imds_interval_ms;
    args.refresh_interval_ms = new.refresh_interval_ms;
    tracing::info!("configuration reloaded");
    Ok(())
}

/// Where the policy comes from, and when to look again: the shared loop calls
/// [`PolicySource::turn`] every turn; compiling, swapping, attaching, status and metrics
/// are the same for both sources.
enum PolicySource {
    /// A snapshot file, polled by fingerprint every `poll_interval_ms`.
    File { path: PathBuf, fingerprint: Option<(SystemTime, u64)>, last_poll: Instant },
    /// IMDS + the EC2 API.
    #[cfg(feature = "aws")]
    Aws(Box<crate::source_aws::AwsPolicySource>),
}

/// What a turn may change besides the links.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
struct Turn<'a> {
    args: &'a RunArgs,
    health: &'a mut SourceHealth,
    pin_dirs: &'a mut PinDirs,
    /// Policies applied by this agent (the AWS source's `generation=N`).
    generation: &'a mut u64,
}

impl PolicySource {
    fn new(args: &RunArgs) -> Result<Self> {
        match args.source {
            crate::args::SourceArg::File => {
                let path = args.snapshot.clone().context("no snapshot file given (--snapshot)")?;
                Ok(PolicySource::File {
                    fingerprint: file_fingerprint(&path),
                    path,
                    last_poll: Instant::now(),
                })
            }
            #[cfg(feature = "aws")]
            crate::args::SourceArg::Aws => {
                Ok(PolicySource::Aws(Box::new(crate::source_aws::AwsPolicySource::new(args)?)))
            }
            #[cfg(not(feature = "aws"))]
            crate::args::SourceArg::Aws => {
                anyhow::bail!(
                    "source `aws` is not built into this sgmirror (built without the `aws` cargo feature)"
                )
            }
        }
    }

    fn is_aws(&self) -> bool {
        !matches!(self, PolicySource::File { .. })
    }

    /// The first policy and the links it binds. The file source fails at once; the AWS
    /// source retries (with backoff, each failure logged) until a policy that binds at
    /// least one local link arrives, or until stopped (`None`).
    #[cfg_attr(not(feature = "aws"), allow(unused_variables))]
    fn first(
        &mut self,
        args: &RunArgs,
        stop: &AtomicBool,
        notifier: &mut Notifier,
    ) -> Result<Option<(Snapshot, Vec<Binding>)>> {
        match self {
            PolicySource::File { path, .. } => {
                let snap = load_snapshot(path).inspect_err(no_policy)?;
                let chosen = bindings::choose(&snap, &args.bind).inspect_err(no_policy)?;
                Ok(Some((snap, chosen)))
            }
            #[cfg(feature = "aws")]
            PolicySource::Aws(aws) => {
                use crate::source_aws::Outcome;
                let mut said = false;
                while !stop.load(Ordering::Relaxed) {
                    notifier.watchdog();
                    match aws.poll() {
                        Outcome::Changed(snap) => match bindings::choose(&snap, &args.bind) {
                            Ok(chosen) => return Ok(Some((*snap, chosen))),
                            Err(e) => {
                                tracing::error!(
                                    "aws: no usable policy yet, attaching nothing (the cloud security groups still \
                                     protect): {e:#}"
                                );
                                aws.retry_later();
                            }
                        },
                        Outcome::Failed { .. } if !said => {
                            said = true;
                            tracing::error!(
                                "aws: no policy yet: attaching nothing until the first fetch succeeds (the cloud \
                                 security groups still protect; enforcement pinned earlier stays as it was)"
                            );
                        }
                        _ => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                Ok(None)
            }
        }
    }

    /// One turn of the main loop: looks at the source when due and applies what
    /// changed. Returns whether it looked (so the status records are rewritten).
    /// After SIGHUP (`hup`) every link's programs are reloaded from the last good
    /// policy: the mode, the failsafe list or the timeouts may have changed.
    #[cfg_attr(not(feature = "aws"), allow(clippy::ptr_arg))]
    fn turn(
        &mut self,
        hup: bool,
        enforcers: &mut Vec<Enforcer>,
        last_good: &mut Snapshot,
        t: Turn<'_>,
    ) -> bool {
        match self {
            PolicySource::File { path, fingerprint, last_poll } => {
                let poll = Duration::from_millis(t.args.poll_interval_ms.max(50));
                if !hup && last_poll.elapsed() < poll {
                    return false;
                }
                *last_poll = Instant::now();
                let now = file_fingerprint(path);
                if hup || now != *fingerprint {
                    *fingerprint = now;
                    match load_snapshot(path) {
                        Ok(snap) => {
                            apply(&snap, enforcers, t.args, t.health, hup);
                            *last_good = snap;
                        }
                        Err(e) => {
                            *t.health.errors.entry("snapshot").or_default() += 1;
                            tracing::error!(
                                "the snapshot changed but cannot be used; the last good policy stays enforced: {e:#}"
                            );
                        }
                    }
                } else if now.is_some() {
                    t.health.last_success = SystemTime::now();
                } else {
                    *t.health.errors.entry("read").or_default() += 1;
                }
                true
            }
            #[cfg(feature = "aws")]
            PolicySource::Aws(aws) => {
                use crate::source_aws::Outcome;
                if hup {
                    aws.set_intervals(t.args);
                    apply(last_good, enforcers, t.args, t.health, true);
                    aws.request_refresh("reload");
                }
                let mut looked = hup;
                if aws.links_check_due() && reconcile(last_good, enforcers, t.args, t.health, t.pin_dirs) {
                    *t.generation += 1;
                    tracing::info!(
                        links = enforcers.len(),
                        "aws: policy applied generation={}",
                        t.generation
                    );
                    looked = true;
                }
                match aws.poll() {
                    Outcome::Idle => looked,
                    Outcome::Unchanged => {
                        t.health.last_success = SystemTime::now();
                        tracing::info!("aws: policy unchanged");
                        true
                    }
                    Outcome::Failed { kind } => {
                        *t.health.errors.entry(kind).or_default() += 1;
                        true
                    }
                    Outcome::Changed(snap) => {
                        let links_changed = reconcile(&snap, enforcers, t.args, t.health, t.pin_dirs);
                        let applied = apply(&snap, enforcers, t.args, t.health, false);
                        *last_good = *snap;
                        if applied > 0 || links_changed {
                            *t.generation += 1;
                            tracing::info!(
                                links = enforcers.len(),
                                "aws: policy applied generation={}",
                                t.generation
                            );
                        } else {
                            tracing::info!(
                                "aws: policy unchanged (the inputs changed, no link's policy did)"
                            );
                        }
                        true
                    }
                }
            }
        }
    }
}

/// Follows ENIs attached and detached while running: an own ENI whose MAC is now a
/// local link gets an enforcer; an enforcer whose ENI is no longer the instance's (or
/// whose link is gone) is detached, its pins and status record removed. With explicit
/// `--bind`, the bindings are fixed and nothing changes here. Returns whether any link
/// was attached or detached.
#[cfg(feature = "aws")]
fn reconcile(
    snap: &Snapshot,
    enforcers: &mut Vec<Enforcer>,
    args: &RunArgs,
    health: &mut SourceHealth,
    pin_dirs: &mut PinDirs,
) -> bool {
    if !args.bind.is_empty() {
        return false;
    }
    let local = match crate::links::all() {
        Ok(local) => local,
        Err(e) => {
            tracing::warn!("listing local links: {e:#}; attachments left as they are");
            return false;
        }
    };
    let own = snap.own_interface_ids();
    let wanted: Vec<Binding> = snap
        .interface_macs()
        .into_iter()
        .filter(|(eni, _)| own.contains(eni))
        .filter_map(|(eni, mac)| {
            local.iter().find(|l| l.mac == mac).map(|l| Binding { link: l.clone(), interface_id: eni })
        })
        .collect();
    let same = |a: &Binding, b: &Binding| {
        a.interface_id == b.interface_id && a.link.name == b.link.name && a.link.ifindex == b.link.ifindex
    };
    let mut changed = false;

    let (keep, gone): (Vec<Enforcer>, Vec<Enforcer>) =
        std::mem::take(enforcers).into_iter().partition(|e| wanted.iter().any(|w| same(w, &e.binding)));
    *enforcers = keep;
    for e in gone {
        changed = true;
        let (link, eni, dir) =
            (e.binding.link.name.clone(), e.binding.interface_id.clone(), e.pin_dir.clone());
        state::remove_record(&args.state_dir, &dir);
        if let Err(err) = e.detach() {
            // A link that went away with its ENI took the programs with it.
            tracing::debug!(%link, "detaching: {err:#}");
        }
        if let Err(err) = bpffs::remove_link_dir(&dir) {
            tracing::warn!(dir = %dir.display(), "removing pinned state: {err}");
        }
        tracing::info!("aws: detached link={link} eni={eni}");
    }

    for binding in wanted {
        if enforcers.iter().any(|e| same(&e.binding, &binding)) {
            continue;
        }
        if enforcers.iter().any(|e| e.binding.link.name == binding.link.name) {
            continue; // the link enforces another ENI; it was detached above if unwanted
        }
        let (link, eni) = (binding.link.name.clone(), binding.interface_id.clone());
        match attach_one(snap, binding, args, pin_dirs) {
            Ok(e) => {
                changed = true;
                tracing::info!(xdp = e.attached.xdp.as_str(), "aws: attached link={link} eni={eni}");
                enforcers.push(e);
            }
            Err(err) => {
                *health.errors.entry("links").or_default() += 1;
                tracing::error!("aws: cannot attach link={link} eni={eni}: {err:#}");
            }
        }
    }
    changed
}

/// Prepares and attaches (or adopts) one link while running, as the start does.
#[cfg(feature = "aws")]
fn attach_one(snap: &Snapshot, binding: Binding, args: &RunArgs, pin_dirs: &mut PinDirs) -> Result<Enforcer> {
    let dir = bpffs::link_dir(&args.pin_root, binding.link.ifindex)?;
    let plan = lifecycle::check_link(&binding, &dir, args.replace_foreign_xdp)?;
    if matches!(plan, lifecycle::Plan::Fresh { .. }) && dir.exists() {
        bpffs::remove_link_dir(&dir)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !pin_dirs.0.contains(&dir) {
        pin_dirs.0.push(dir.clone());
    }
    let mut next = prepare(snap, &binding, &dir, args)?;
    let previous = state::read_record(&args.state_dir, &dir).map_or(0, |r| r.generation);
    let (xdp, tc) = attach_modes(args);
    let placement = lifecycle::place(&mut next.program, &binding, &dir, plan, xdp, tc)?;
    let generation = if placement.adopted { previous + 1 } else { 1 };
    Ok(Enforcer::placed(binding, dir, next, placement, generation))
}
