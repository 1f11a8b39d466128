//! P2 (drop rates on veth) and P3 (growth with the policy's size), with live traffic
//! as `perf-method.md` recommends: the in-kernel live-frames generator
//! (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` on `gen_tx`) sending 64-byte
//! IPv4/UDP frames from namespace `sgm-bench-gen` to `sgm-bench-rx` over one veth pair,
//! the process (generator and, inline in its softirq, the receiver) on one CPU; every
//! trial in fresh namespaces, the variants interleaved within each repetition, and the
//! best of the repetitions reported.
//!
//! Sources come from the policy's prefixes at random: `gen_tx` writes the next of
//! 65 536 random addresses (random prefix of the pool, random host in it) into each
//! frame. Denied traffic is udp 9 from the sources of the tcp-443 service (known to
//! the rules, denied this port); allowed traffic is udp 9 from the sources of the
//! udp-9 service, delivered to a closed port in the receiving namespace.
//!
//! The receiver's cost per packet is `1e9/pps − 1e9/pps(generator alone)`, the
//! generator alone being the same traffic with the receiving link down.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aya::programs::XdpMode;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use sgmirror_common::{direction, reason, verdict};
use sgmirror_dataplane::{LoadOptions, LoadedProgram, TcAttachMode, XdpAttachMode, load};

use crate::{
    Config,
    frames::{generator_frame, ipv4_header},
    lab::{self, Netns, ifindex},
    nft,
    policy::{self, BenchPolicy, PROBE_PORT, host_v4},
    reference::{GenSources, REF_DROP, REF_LPM, Reference},
    stats,
};

const GEN_LINK: &str = "sgmbga";
const RX_LINK: &str = "sgmbrx";
const GEN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const RX_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Random denied sources (a power of two).
const DENIED_SOURCES: usize = 65_536;
/// Random allowed sources (a power of two): their flows fit the default flow table
/// (65 536 entries) with room, so allowed traffic settles into tracked flows.
pub const ALLOWED_SOURCES: usize = 16_384;
/// Frames per live-frames system call, and per batch inside it.
const CHUNK: u32 = 65_536;
const BATCH: u32 = 64;
/// Time between installing a filter and starting the traffic.
const SETTLE: Duration = Duration::from_millis(500);

/// What receives the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The receiving link is down: the generator's own cost.
    GenOnly,
    /// `ref_drop` in native mode.
    XdpDrop,
    /// Nothing attached: delivered to a closed UDP port.
    NoFilter,
    /// `ref_lpm` in native mode with the policy's prefixes (denied sources: hits, dropped).
    RefLpm,
    /// sgmirror (native or generic XDP) with denied or allowed traffic.
    Sgmirror { generic: bool, traffic: Traffic },
    /// The nftables ruleset.
    Nftables { allow: bool },
    /// iptables (raw PREROUTING) with one ipset per service.
    Ipset { allow: bool },
}

impl Variant {
    /// Name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Variant::GenOnly => "gen-only",
            Variant::XdpDrop => "xdp-drop",
            Variant::NoFilter => "no-filter",
            Variant::RefLpm => "ref-lpm-drop",
            Variant::Sgmirror { generic: false, traffic: Traffic::Deny } => "sgmirror-native-deny",
            Variant::Sgmirror { generic: false, traffic: Traffic::Allow } => "sgmirror-native-allow",
            Variant::Sgmirror { generic: false, traffic: Traffic::AllowNew } => "sgmirror-native-allow-new",
            Variant::Sgmirror { generic: true, traffic: Traffic::Deny } => "sgmirror-generic-deny",
            Variant::Sgmirror { generic: true, traffic: Traffic::Allow } => "sgmirror-generic-allow",
            Variant::Sgmirror { generic: true, traffic: Traffic::AllowNew } => "sgmirror-generic-allow-new",
            Variant::Nftables { allow: false } => "nftables-deny",
            Variant::Nftables { allow: true } => "nftables-allow",
            Variant::Ipset { allow: false } => "ipset-deny",
            Variant::Ipset { allow: true } => "ipset-allow",
        }
    }

    /// Whether the traffic comes from the allowed pool.
    fn allowed_traffic(self) -> bool {
        matches!(
            self,
            Variant::NoFilter
                | Variant::Sgmirror { traffic: Traffic::Allow | Traffic::AllowNew, .. }
                | Variant::Nftables { allow: true }
                | Variant::Ipset { allow: true }
        )
    }

    /// The tool the variant needs, if any.
    fn tool(self) -> Option<&'static str> {
        match self {
            Variant::Nftables { .. } => Some("nft"),
            Variant::Ipset { .. } => Some("ipset"),
            _ => None,
        }
    }
}

/// What sgmirror's traffic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Denied: known sources, a port their rules do not allow.
    Deny,
    /// Allowed, from [`ALLOWED_SOURCES`] sources: after the first round every packet
    /// belongs to a tracked flow (the steady state of allowed traffic).
    Allow,
    /// Allowed, every packet a new flow: loaded with idle timeouts of 0 s, so each
    /// packet finds its flow expired and takes the rules and the entry write again.
    AllowNew,
}

/// The P2 variants, in the order they run within a repetition.
const P2_VARIANTS: [Variant; 12] = [
    Variant::GenOnly,
    Variant::XdpDrop,
    Variant::NoFilter,
    Variant::RefLpm,
    Variant::Sgmirror { generic: false, traffic: Traffic::Deny },
    Variant::Sgmirror { generic: false, traffic: Traffic::Allow },
    Variant::Sgmirror { generic: false, traffic: Traffic::AllowNew },
    Variant::Sgmirror { generic: true, traffic: Traffic::Deny },
    Variant::Sgmirror { generic: true, traffic: Traffic::Allow },
    Variant::Nftables { allow: false },
    Variant::Nftables { allow: true },
    Variant::Ipset { allow: false },
];

/// The P3 variants (plus the generator alone, for the receiver cost).
const P3_VARIANTS: [Variant; 4] = [
    Variant::GenOnly,
    Variant::RefLpm,
    Variant::Sgmirror { generic: false, traffic: Traffic::Deny },
    Variant::Nftables { allow: false },
];

/// One variant's trials at one policy size.
#[derive(Clone, Debug, Serialize)]
pub struct VariantResult {
    /// Variant name.
    pub variant: &'static str,
    /// Prefixes per family of the policy.
    pub prefixes: usize,
    /// Packets per second of each repetition (received by the filter's link; for
    /// gen-only, sent).
    pub pps: Vec<f64>,
    /// Best of `pps`: the statistic.
    pub best_pps: f64,
    /// Median of `pps`, for context.
    pub median_pps: f64,
    /// best / best of xdp-drop (P2 only; 0 when not measured).
    pub ratio_to_xdp_drop: f64,
    /// `1e9/best − 1e9/best(gen-only)`: the receiver's ns per packet.
    pub receiver_ns: f64,
    /// Range of the per-repetition receiver costs (each against that repetition's
    /// gen-only).
    pub receiver_ns_min: f64,
    /// See `receiver_ns_min`.
    pub receiver_ns_max: f64,
    /// The smallest share, over the trials, of the received packets the program
    /// counted on the variant's path (sgmirror: its verdict and reason; ref-lpm: its
    /// hits); none where the filter does not count.
    pub path_share_min: Option<f64>,
}

/// P2's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct P2 {
    /// Prefixes per family of the policy.
    pub prefixes: usize,
    /// Repetitions.
    pub reps: usize,
    /// Seconds per trial.
    pub secs: f64,
    /// Per variant.
    pub variants: Vec<VariantResult>,
    /// Variants not run, and why.
    pub skipped: Vec<String>,
    /// The iptables binary's version line (its backend).
    pub iptables: Option<String>,
}

/// Growth of one program's receiver cost from the smallest to the largest policy.
#[derive(Clone, Debug, Serialize)]
pub struct Growth {
    /// Variant.
    pub variant: &'static str,
    /// Receiver ns per packet at the smallest size.
    pub ns_small: f64,
    /// At the largest size.
    pub ns_large: f64,
    /// `ns_large / ns_small`.
    pub factor: f64,
}

/// P3's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct P3 {
    /// Sizes, prefixes per family.
    pub sizes: Vec<usize>,
    /// Per size and variant.
    pub results: Vec<VariantResult>,
    /// Growth factors.
    pub growth: Vec<Growth>,
}

/// Everything a size needs, prepared once.
struct SizeCtx {
    policy: BenchPolicy,
    nft: String,
    ipset: String,
    iptables: String,
    gen_deny: Reference,
    gen_allow: Reference,
}

fn sources(pool: &[ipnet::Ipv4Net], count: usize, seed: u64) -> Vec<Ipv4Addr> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| host_v4(&pool[rng.gen_range(0..pool.len())], &mut rng)).collect()
}

fn generator_template() -> Vec<u8> {
    generator_frame(GEN_MAC, RX_MAC, GEN_ADDR, policy::LOCAL_V4, PROBE_PORT)
}

impl SizeCtx {
    fn new(cfg: &Config, n: usize) -> Result<Self> {
        let policy = policy::services(n, cfg.seed)?;
        let header = ipv4_header(&generator_template());
        let deny = GenSources::new(&sources(&policy.pools_v4.denied, DENIED_SOURCES, cfg.seed ^ 1), &header);
        let allow =
            GenSources::new(&sources(&policy.pools_v4.allowed, ALLOWED_SOURCES, cfg.seed ^ 2), &header);
        let nft =
            nft::ruleset(&policy.policy, &format!("nftables ruleset of the {n}-prefix benchmark policy"));
        let (ipset, iptables) = nft::ipset_and_iptables(&policy.policy);
        Ok(Self {
            gen_deny: Reference::load(&[], &[], Some(&deny))?,
            gen_allow: Reference::load(&[], &[], Some(&allow))?,
            policy,
            nft,
            ipset,
            iptables,
        })
    }
}

/// The two namespaces and the veth pair of one trial.
struct Lab {
    sender: Netns,
    rx: Netns,
}

impl Lab {
    fn new() -> Result<Self> {
        let sender = Netns::new("gen")?;
        let rx = Netns::new("rx")?;
        let gen_mac = mac(GEN_MAC);
        let rx_mac = mac(RX_MAC);
        lab::run(
            "ip",
            &[
                "link",
                "add",
                GEN_LINK,
                "netns",
                sender.name(),
                "address",
                &gen_mac,
                "type",
                "veth",
                "peer",
                "name",
                RX_LINK,
                "netns",
                rx.name(),
                "address",
                &rx_mac,
            ],
        )?;
        let local = policy::LOCAL_V4.to_string();
        sender.exec(&["ip", "addr", "add", "198.18.0.1/24", "dev", GEN_LINK])?;
        rx.exec(&["ip", "addr", "add", &format!("{local}/24"), "dev", RX_LINK])?;
        sender.exec(&["ip", "link", "set", GEN_LINK, "up"])?;
        rx.exec(&["ip", "link", "set", RX_LINK, "up"])?;
        sender.exec(&[
            "ip",
            "neigh",
            "replace",
            &local,
            "lladdr",
            &rx_mac,
            "dev",
            GEN_LINK,
            "nud",
            "permanent",
        ])?;
        rx.exec(&[
            "ip",
            "neigh",
            "replace",
            "198.18.0.1",
            "lladdr",
            &gen_mac,
            "dev",
            RX_LINK,
            "nud",
            "permanent",
        ])?;
        // With GRO on, veth polls every frame through NAPI whether or not XDP is
        // attached (and accepts the generator's frames at all).
        rx.exec(&["ethtool", "-K", RX_LINK, "gro", "on"])?;
        Ok(Self { sender, rx })
    }

    fn rx_packets(&self) -> Result<u64> {
        let out = self.rx.exec(&["ip", "-s", "-j", "link", "show", RX_LINK])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -s -j link`")?;
        v[0]["stats64"]["rx"]["packets"].as_u64().context("no rx packet counter")
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// What a variant attached; detached when dropped (before the namespaces go).
#[derive(Default)]
struct Installed {
    _reference: Option<Reference>,
    _sgmirror: Option<LoadedProgram>,
}

fn install(v: Variant, ctx: &SizeCtx, lab: &Lab) -> Result<Installed> {
    Ok(match v {
        Variant::GenOnly => {
            lab.rx.exec(&["ip", "link", "set", RX_LINK, "down"])?;
            Installed::default()
        }
        Variant::NoFilter => Installed::default(),
        Variant::XdpDrop | Variant::RefLpm => {
            let (prog, v4) =
                if v == Variant::XdpDrop { (REF_DROP, &[][..]) } else { (REF_LPM, &ctx.policy.v4[..]) };
            let mut r = Reference::load(v4, &[], None)?;
            let _inside = lab.rx.enter()?;
            r.attach(prog, RX_LINK, XdpMode::Driver)?;
            Installed { _reference: Some(r), ..Installed::default() }
        }
        Variant::Sgmirror { generic, traffic } => {
            let opts = match traffic {
                Traffic::AllowNew => {
                    LoadOptions { timeouts: crate::p1::zero_timeouts(), ..LoadOptions::default() }
                }
                Traffic::Deny | Traffic::Allow => LoadOptions::default(),
            };
            let mut p = load(&ctx.policy.compiled, &opts)?;
            let mode = if generic { XdpAttachMode::Generic } else { XdpAttachMode::Native };
            let _inside = lab.rx.enter()?;
            p.attach(RX_LINK, mode, TcAttachMode::Auto)?;
            Installed { _sgmirror: Some(p), ..Installed::default() }
        }
        Variant::Nftables { .. } => {
            lab.rx.exec_with_input(&["nft", "-f", "-"], &ctx.nft)?;
            Installed::default()
        }
        Variant::Ipset { .. } => {
            lab.rx.exec_with_input(&["ipset", "restore"], &ctx.ipset)?;
            lab.rx.exec_with_input(&["iptables-restore"], &ctx.iptables)?;
            Installed::default()
        }
    })
}

/// Sends for `secs` from the generator namespace; returns (frames sent, seconds).
fn generate(generator: &Reference, lab: &Lab, secs: f64) -> Result<(u64, f64)> {
    let frame = generator_template();
    let _inside = lab.sender.enter()?;
    let index = ifindex(GEN_LINK)?;
    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
    let len = u32::try_from(frame.len())?;
    let md: [u32; 6] = [0, len, 0, index, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        lab::check_interrupted()?;
        generator.generate(&frame, &ctx, CHUNK, BATCH)?;
        sent += u64::from(CHUNK);
    }
    Ok((sent, started.elapsed().as_secs_f64()))
}

/// The counter of the path a variant's packets must take: sgmirror's (verdict,
/// reason), or `ref_lpm`'s hits.
fn path_count(v: Variant, installed: &Installed) -> Result<Option<u64>> {
    let expected = match v {
        Variant::Sgmirror { traffic: Traffic::Deny, .. } => (verdict::DROP, reason::NO_RULE),
        Variant::Sgmirror { traffic: Traffic::Allow, .. } => (verdict::ALLOW, reason::TRACKED),
        Variant::Sgmirror { traffic: Traffic::AllowNew, .. } => (verdict::ALLOW, reason::RULE),
        Variant::RefLpm => {
            return installed._reference.as_ref().map(|r| r.lpm_counts().map(|c| c[0])).transpose();
        }
        _ => return Ok(None),
    };
    match &installed._sgmirror {
        Some(p) => Ok(Some(p.stat(direction::INGRESS, expected.0, expected.1)?.packets)),
        None => Ok(None),
    }
}

/// Share of the packets that must take the variant's path: tracked allowed traffic
/// starts with one round of new flows, everything else takes its path from the first
/// packet.
fn min_share(v: Variant) -> f64 {
    if let Variant::Sgmirror { traffic: Traffic::Allow, .. } = v { 0.9 } else { 0.99 }
}

/// What one trial measured.
struct TrialResult {
    pps: f64,
    /// Share of the received packets counted on the variant's path, where the
    /// program counts it.
    path_share: Option<f64>,
}

/// One trial: fresh namespaces, the variant installed, traffic, the rate.
fn trial(ctx: &SizeCtx, v: Variant, secs: f64) -> Result<TrialResult> {
    let lab = Lab::new()?;
    let installed = install(v, ctx, &lab).with_context(|| format!("installing {}", v.name()))?;
    std::thread::sleep(SETTLE);
    let generator = if v.allowed_traffic() { &ctx.gen_allow } else { &ctx.gen_deny };
    let before = if v == Variant::GenOnly { 0 } else { lab.rx_packets()? };
    let path_before = path_count(v, &installed)?;
    let (sent, elapsed) = generate(generator, &lab, secs)?;
    let received = if v == Variant::GenOnly { sent } else { lab.rx_packets()? - before };
    let path_after = path_count(v, &installed)?;
    drop(installed);
    drop(lab);
    if received == 0 {
        bail!("{}: no packet arrived", v.name());
    }
    let path_share = match (path_before, path_after) {
        (Some(a), Some(b)) => Some((b - a) as f64 / received as f64),
        _ => None,
    };
    if let Some(share) = path_share
        && share < min_share(v)
    {
        bail!(
            "{}: only {:.1} % of the packets took the path the variant names; the figure would not measure it",
            v.name(),
            share * 100.0
        );
    }
    Ok(TrialResult { pps: received as f64 / elapsed, path_share })
}

fn available(tool: &str) -> bool {
    lab::run("sh", &["-c", &format!("command -v {tool}")]).is_ok()
}

/// Runs the variants at each size, interleaved within each repetition; results per
/// (size, variant) in run order.
fn campaign(
    cfg: &Config,
    sizes: &[usize],
    variants: &[Variant],
    label: &str,
    skipped: &mut Vec<String>,
) -> Result<Vec<VariantResult>> {
    let mut usable: Vec<Variant> = Vec::new();
    for v in variants {
        match v.tool() {
            Some(tool) if !available(tool) => {
                let note = format!("{}: `{tool}` is not installed (cargo xtask setup installs it)", v.name());
                eprintln!("[{label}] skipping {note}");
                if !skipped.contains(&note) {
                    skipped.push(note);
                }
            }
            _ => usable.push(*v),
        }
    }
    let mut contexts = Vec::new();
    for &n in sizes {
        eprintln!("[{label}] preparing the {n}-prefix policy and its rulesets");
        contexts.push(SizeCtx::new(cfg, n)?);
    }
    let mut pps: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); usable.len()]; sizes.len()];
    let mut shares: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); usable.len()]; sizes.len()];
    for rep in 0..cfg.reps {
        for (si, ctx) in contexts.iter().enumerate() {
            for (vi, v) in usable.iter().enumerate() {
                lab::check_interrupted()?;
                let t = trial(ctx, *v, cfg.secs)
                    .with_context(|| format!("{label} trial {} at {}", v.name(), sizes[si]))?;
                let share =
                    t.path_share.map(|s| format!(" ({:.1} % on its path)", s * 100.0)).unwrap_or_default();
                eprintln!(
                    "[{label}] rep {rep} size {:>6} {:<26} {:>12.0} pps{share}",
                    sizes[si],
                    v.name(),
                    t.pps
                );
                pps[si][vi].push(t.pps);
                if let Some(s) = t.path_share {
                    shares[si][vi].push(s);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (si, &n) in sizes.iter().enumerate() {
        let gen_idx = usable.iter().position(|v| *v == Variant::GenOnly);
        let drop_idx = usable.iter().position(|v| *v == Variant::XdpDrop);
        for (vi, v) in usable.iter().enumerate() {
            let runs = &pps[si][vi];
            let best = stats::max(runs);
            let (gen_best, gen_runs) = match gen_idx {
                Some(g) => (stats::max(&pps[si][g]), pps[si][g].clone()),
                None => (0.0, Vec::new()),
            };
            let per_rep: Vec<f64> = runs.iter().zip(&gen_runs).map(|(r, g)| 1e9 / r - 1e9 / g).collect();
            let receiver =
                |best: f64| if gen_best > 0.0 && best > 0.0 { 1e9 / best - 1e9 / gen_best } else { 0.0 };
            out.push(VariantResult {
                variant: v.name(),
                prefixes: n,
                best_pps: best,
                median_pps: stats::median(runs),
                ratio_to_xdp_drop: drop_idx.map_or(0.0, |d| stats::ratio(best, stats::max(&pps[si][d]))),
                receiver_ns: if *v == Variant::GenOnly { 0.0 } else { receiver(best) },
                receiver_ns_min: if *v == Variant::GenOnly { 0.0 } else { stats::min(&per_rep) },
                receiver_ns_max: if *v == Variant::GenOnly { 0.0 } else { stats::max(&per_rep) },
                pps: runs.clone(),
                path_share_min: (!shares[si][vi].is_empty()).then(|| stats::min(&shares[si][vi])),
            });
        }
    }
    Ok(out)
}

fn print_results(title: &str, results: &[VariantResult]) {
    println!("\n{title}");
    println!(
        "{:>8} {:<26} {:>12} {:>12} {:>9} {:>12} {:>16}",
        "prefixes", "variant", "best pps", "median pps", "x drop", "rx ns/pkt", "[per-rep range]"
    );
    for r in results {
        println!(
            "{:>8} {:<26} {:>12.0} {:>12.0} {:>9.3} {:>12.0} {:>16}",
            r.prefixes,
            r.variant,
            r.best_pps,
            r.median_pps,
            r.ratio_to_xdp_drop,
            r.receiver_ns,
            format!("{:.0}-{:.0}", r.receiver_ns_min, r.receiver_ns_max)
        );
    }
}

/// Runs P2 and/or P3; writes the P2 nftables ruleset into `out` when given.
pub fn run(cfg: &Config, p2: bool, p3: bool, out: Option<&Path>) -> Result<(Option<P2>, Option<P3>)> {
    lab::catch_interrupts();
    for tool in ["ip", "ethtool"] {
        if !available(tool) {
            bail!("`{tool}` is not installed (cargo xtask setup installs it)");
        }
    }
    let mut p2_out = None;
    if p2 {
        let mut result = P2 { prefixes: cfg.p2_size, reps: cfg.reps, secs: cfg.secs, ..P2::default() };
        result.iptables = lab::run("iptables", &["-V"]).ok().map(|s| s.trim().to_owned());
        if let Some(dir) = out {
            let policy = policy::services(cfg.p2_size, cfg.seed)?;
            std::fs::create_dir_all(dir)?;
            let title = format!("nftables ruleset of the {}-prefix benchmark policy (P2)", cfg.p2_size);
            std::fs::write(
                dir.join(format!("nftables-{}.nft", cfg.p2_size)),
                nft::ruleset(&policy.policy, &title),
            )?;
        }
        result.variants = campaign(cfg, &[cfg.p2_size], &P2_VARIANTS, "p2", &mut result.skipped)?;
        print_results(
            &format!(
                "P2 drop rate on veth ({} prefixes per family, best of {} x {} s, one CPU)",
                cfg.p2_size, cfg.reps, cfg.secs
            ),
            &result.variants,
        );
        p2_out = Some(result);
    }
    let mut p3_out = None;
    if p3 && !cfg.p3_sizes.is_empty() {
        let mut skipped = Vec::new();
        let results = campaign(cfg, &cfg.p3_sizes, &P3_VARIANTS, "p3", &mut skipped)?;
        print_results("P3 growth with the policy's size (random sources, best of reps)", &results);
        let small = cfg.p3_sizes.iter().copied().min().unwrap_or(0);
        let large = cfg.p3_sizes.iter().copied().max().unwrap_or(0);
        let mut growth = Vec::new();
        for v in P3_VARIANTS.iter().filter(|v| **v != Variant::GenOnly) {
            let at = |n: usize| {
                results.iter().find(|r| r.variant == v.name() && r.prefixes == n).map(|r| r.receiver_ns)
            };
            if let (Some(a), Some(b)) = (at(small), at(large)) {
                growth.push(Growth {
                    variant: v.name(),
                    ns_small: a,
                    ns_large: b,
                    factor: stats::ratio(b, a),
                });
            }
        }
        println!("\nP3 growth factor of the receiver's ns/packet from {small} to {large} prefixes:");
        for g in &growth {
            println!("  {:<24} {:>8.0} -> {:>8.0} ns  x{:.2}", g.variant, g.ns_small, g.ns_large, g.factor);
        }
        p3_out = Some(P3 { sizes: cfg.p3_sizes.clone(), results, growth });
    }
    Ok((p2_out, p3_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_unique() {
        let mut names: Vec<&str> = P2_VARIANTS.iter().chain(&P3_VARIANTS).map(|v| v.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn only_allow_variants_and_the_no_filter_baseline_send_allowed_traffic() {
        assert!(Variant::NoFilter.allowed_traffic());
        assert!(Variant::Sgmirror { generic: true, traffic: Traffic::AllowNew }.allowed_traffic());
        assert!(!Variant::RefLpm.allowed_traffic());
        assert!(!Variant::Nftables { allow: false }.allowed_traffic());
    }
}
