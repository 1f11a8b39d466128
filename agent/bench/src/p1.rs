//! P1: the program's cost per packet, measured by `BPF_PROG_TEST_RUN` against two
//! reference programs loaded in the same process — `ref_drop` (the floor) and
//! `ref_lpm` (one LPM lookup in a trie with the same prefixes).
//!
//! Every figure is checked to measure the path it names: before timing, one run
//! through [`sgmirror_dataplane::LoadedProgram::judge`] must give the expected
//! verdict and reason, and afterwards the program's own counter for that verdict and
//! reason must have moved by exactly the number of timed repetitions.

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use sgmirror_common::{Timeouts, direction, reason, verdict};
use sgmirror_dataplane::{LoadOptions, LoadedProgram, load, xdp_action};
use sgmirror_policy::{
    compile::{Limits, compile},
    model::{Direction, InterfacePolicy, PeerSource, PortRange, Protocol, Reason, ResolvedRule, Verdict},
};

use crate::{
    Config,
    frames::{ProbeFrames, UNTRACKED_PORT},
    policy::{self, BenchPolicy, Probes},
    reference::{REF_DROP, REF_LPM, REF_LPM_FLOW, Reference, XDP_DROP, XDP_PASS},
    stats::{Measured, Ratio},
};

/// The packet paths P1 measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A new packet from a source no rule covers.
    DenyUnknownSource,
    /// A new packet from a source the rules know, to a port they do not allow.
    DenyKnownSource,
    /// A new packet the rules allow, creating a flow entry.
    AllowNew,
    /// A packet an untracked rule allows: judged by the rules, no entry written.
    AllowUntracked,
    /// A reply on a tracked flow.
    TrackedReply,
    /// A later fragment whose first fragment was allowed.
    LaterFragment,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::DenyUnknownSource,
        Kind::DenyKnownSource,
        Kind::AllowNew,
        Kind::AllowUntracked,
        Kind::TrackedReply,
        Kind::LaterFragment,
    ];

    /// Name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DenyUnknownSource => "deny-unknown-source",
            Kind::DenyKnownSource => "deny-known-source",
            Kind::AllowNew => "allow-new",
            Kind::AllowUntracked => "allow-untracked",
            Kind::TrackedReply => "tracked-reply",
            Kind::LaterFragment => "later-fragment",
        }
    }

    /// What exactly is measured, for the report.
    pub fn path(self) -> &'static str {
        match self {
            Kind::DenyUnknownSource => {
                "udp 9 from a source in no rule's prefix: flow lookup misses, address lookup misses, dropped (reason no-rule)"
            }
            Kind::DenyKnownSource => {
                "udp 9 from a source of the tcp-443 rules: flow lookup misses, address lookup hits, port lookup misses, dropped (no-rule)"
            }
            Kind::AllowNew => {
                "udp 9 allowed by a rule, a new flow on every repetition: the program is loaded with idle timeouts of 0 s, so the \
                 entry the previous repetition wrote has expired and the packet takes the whole new-flow path again (flow lookup, \
                 address lookup, port lookup, rule-hit count, untracked check, entry written); a repeated packet with normal timeouts would be \
                 tracked from its second repetition on. Valid while the program rewrites an expired entry with a full \
                 insert, as a new flow does"
            }
            Kind::AllowUntracked => {
                "udp 7 from the same source, allowed by an untracked rule (udp 7 from 0.0.0.0/0 and ::/0 added to the policy, \
                 with outbound udp on every port to /0): flow lookup misses, address and port lookups hit, no entry is written (checked: the flow \
                 table stays empty); the rules path of a new packet without the insert"
            }
            Kind::TrackedReply => {
                "SYN-ACK from a stranger on a flow opened by an outbound SYN through the TC program (the flow lookup hits and \
                 decides: no address lookup; entry refreshed; reason tracked)"
            }
            Kind::LaterFragment => {
                "later fragment after its allowed first fragment (address lookup, fragment-table lookup; reason fragment)"
            }
        }
    }

    /// The counted verdict and reason of every repetition.
    fn expected(self) -> (u32, u32) {
        match self {
            Kind::DenyUnknownSource | Kind::DenyKnownSource => (verdict::DROP, reason::NO_RULE),
            Kind::AllowNew | Kind::AllowUntracked => (verdict::ALLOW, reason::RULE),
            Kind::TrackedReply => (verdict::ALLOW, reason::TRACKED),
            Kind::LaterFragment => (verdict::ALLOW, reason::FRAGMENT),
        }
    }

    /// Whether the frame's source is in the reference trie (`ref_lpm` drops it).
    fn source_known(self) -> bool {
        !matches!(self, Kind::DenyUnknownSource | Kind::TrackedReply)
    }
}

/// One measured (policy, family, kind).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Policy name.
    pub policy: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The path.
    pub kind: Kind,
    /// sgmirror's ingress program, ns per packet.
    pub sgmirror_ns: Measured,
    /// `ref_lpm` on the same frame.
    pub ref_lpm_ns: Measured,
    /// `ref_drop` on the same frame.
    pub ref_drop_ns: Measured,
    /// `ref_lpm_flow` (LPM lookup and flow-table lookup; a flow hit for the tracked
    /// reply, misses otherwise) on the same frame: context, the floor of a stateful
    /// verdict.
    pub ref_lpm_flow_ns: Measured,
    /// sgmirror / ref_lpm.
    pub ratio_to_lpm: Ratio,
    /// sgmirror / ref_lpm_flow.
    pub ratio_to_lpm_flow: Ratio,
    /// sgmirror / ref_drop.
    pub ratio_to_drop: Ratio,
}

/// The size of one benchmarked policy.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySize {
    /// Name.
    pub name: String,
    /// Inbound rules.
    pub rules_in: usize,
    /// Outbound rules.
    pub rules_out: usize,
    /// Distinct inbound IPv4 prefixes (what `ref_lpm`'s trie holds).
    pub prefixes_v4: usize,
    /// Distinct inbound IPv6 prefixes.
    pub prefixes_v6: usize,
    /// Entries of sgmirror's inbound IPv4 trie (prefixes plus exempt addresses and
    /// closure entries).
    pub trie_v4: usize,
    /// Entries of sgmirror's inbound IPv6 trie.
    pub trie_v6: usize,
    /// Entries of the inbound class/protocol/port trie.
    pub port_entries: usize,
    /// Address classes.
    pub classes: u32,
}

impl PolicySize {
    /// The sizes of `p`.
    pub fn of(p: &BenchPolicy) -> Self {
        Self {
            name: p.name.clone(),
            rules_in: p.policy.ingress.len(),
            rules_out: p.policy.egress.len(),
            prefixes_v4: p.v4.len(),
            prefixes_v6: p.v6.len(),
            trie_v4: p.compiled.ingress.addr4.len(),
            trie_v6: p.compiled.ingress.addr6.len(),
            port_entries: p.compiled.ingress.ports.len(),
            classes: p.compiled.ingress.classes,
        }
    }
}

/// P1's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct P1 {
    /// Repetitions per test run.
    pub repeat: u32,
    /// Test runs per figure.
    pub runs: usize,
    /// The policies.
    pub policies: Vec<PolicySize>,
    /// The measurements.
    pub rows: Vec<Row>,
    /// What each kind measures.
    pub paths: Vec<(Kind, &'static str)>,
    /// What the reference programs do.
    pub references: Vec<(&'static str, &'static str)>,
}

/// The reference programs, for the report.
const REFERENCES: [(&str, &str); 3] = [
    ("ref_drop", "returns XDP_DROP: the floor of any XDP program"),
    (
        "ref_lpm",
        "parses Ethernet and IPv4/IPv6, one LPM lookup of the source address in a trie holding the policy's distinct \
         inbound prefixes, a per-CPU counter; drops on a hit, passes on a miss",
    ),
    (
        "ref_lpm_flow",
        "ref_lpm plus one lookup of the packet's 5-tuple in an LRU hash with sgmirror's 40-byte flow key (a hit for the \
         tracked reply, whose flow is inserted beforehand; misses otherwise): the floor of a stateful verdict, for context",
    ),
];

/// The two loads of one policy: normal timeouts, and timeouts of 0 s for
/// [`Kind::AllowNew`].
struct Loads {
    stateful: LoadedProgram,
    expiring: LoadedProgram,
    /// The policy plus an untracked rule: udp 7 from `0.0.0.0/0` and `::/0`, with
    /// outbound udp to `0.0.0.0/0` and `::/0` on every port, which makes it untracked.
    untracked: LoadedProgram,
}

/// `policy` with the untracked rule of [`Loads::untracked`].
fn with_untracked_rule(policy: &InterfacePolicy) -> InterfacePolicy {
    let mut p = policy.clone();
    for (cidr, source) in
        [("0.0.0.0/0", PeerSource::Cidr("0.0.0.0/0".into())), ("::/0", PeerSource::CidrIpv6("::/0".into()))]
    {
        p.ingress.push(ResolvedRule {
            id: format!("sgr-bench-untracked-{}", p.ingress.len()),
            group_id: "sg-bench-untracked".into(),
            direction: Direction::Ingress,
            protocol: Protocol::Udp(PortRange { from: UNTRACKED_PORT, to: UNTRACKED_PORT }),
            source,
            peers: cidr.parse().into_iter().collect(),
        });
        // Untracked needs a /0 rule for every UDP port the other way; the services
        // policy has one (all traffic), the aws-max policy does not.
        p.egress.push(ResolvedRule {
            id: format!("sgr-bench-untracked-out-{}", p.egress.len()),
            group_id: "sg-bench-untracked".into(),
            direction: Direction::Egress,
            protocol: Protocol::Udp(PortRange { from: 0, to: u16::MAX }),
            source: if cidr.contains(':') {
                PeerSource::CidrIpv6(cidr.into())
            } else {
                PeerSource::Cidr(cidr.into())
            },
            peers: cidr.parse().into_iter().collect(),
        });
    }
    p
}

/// Idle timeouts of 0 s: every flow has expired by its next packet.
pub fn zero_timeouts() -> Timeouts {
    Timeouts { tcp_established: 0, tcp_other: 0, udp: 0, udp_stream: 0, icmp: 0, other: 0 }
}

fn load_policy(p: &BenchPolicy) -> Result<Loads> {
    let stateful = load(&p.compiled, &LoadOptions::default()).context("loading sgmirror")?;
    let opts = LoadOptions { timeouts: zero_timeouts(), ..LoadOptions::default() };
    let expiring = load(&p.compiled, &opts).context("loading sgmirror with zero timeouts")?;
    let compiled = compile(&with_untracked_rule(&p.policy), &Limits::default())?;
    let untracked =
        load(&compiled, &LoadOptions::default()).context("loading sgmirror with an untracked rule")?;
    Ok(Loads { stateful, expiring, untracked })
}

fn expect_decision(
    program: &LoadedProgram,
    frame: &[u8],
    dir: Direction,
    verdict_expected: Verdict,
    reason_expected: Reason,
    what: &str,
) -> Result<()> {
    let d = program.judge(frame, dir).with_context(|| format!("judging {what}"))?;
    ensure!(
        d.verdict == verdict_expected && d.reason == reason_expected,
        "{what}: the kernel says {:?}/{:?}, the benchmark needs {verdict_expected:?}/{reason_expected:?}",
        d.verdict,
        d.reason
    );
    Ok(())
}

/// Puts the program in the state the kind needs and checks one packet takes the path.
fn prepare<'a>(
    loads: &'a Loads,
    frames: &'a ProbeFrames,
    kind: Kind,
) -> Result<(&'a LoadedProgram, &'a [u8])> {
    let ingress = Direction::Ingress;
    Ok(match kind {
        Kind::DenyUnknownSource => {
            expect_decision(
                &loads.stateful,
                &frames.deny_addr,
                ingress,
                Verdict::Drop,
                Reason::NoRule,
                kind.name(),
            )?;
            (&loads.stateful, &frames.deny_addr)
        }
        Kind::DenyKnownSource => {
            expect_decision(
                &loads.stateful,
                &frames.deny_port,
                ingress,
                Verdict::Drop,
                Reason::NoRule,
                kind.name(),
            )?;
            (&loads.stateful, &frames.deny_port)
        }
        Kind::AllowNew => {
            expect_decision(
                &loads.expiring,
                &frames.allow,
                ingress,
                Verdict::Allow,
                Reason::Rule,
                kind.name(),
            )?;
            // The entry just written is already expired (timeouts of 0 s).
            expect_decision(
                &loads.expiring,
                &frames.allow,
                ingress,
                Verdict::Allow,
                Reason::Rule,
                kind.name(),
            )?;
            (&loads.expiring, &frames.allow)
        }
        Kind::AllowUntracked => {
            let frame = &frames.allow_untracked;
            expect_decision(&loads.untracked, frame, ingress, Verdict::Allow, Reason::Rule, kind.name())?;
            expect_decision(&loads.untracked, frame, ingress, Verdict::Allow, Reason::Rule, kind.name())?;
            ensure!(loads.untracked.flow_count()? == 0, "the untracked rule created a flow entry");
            (&loads.untracked, frame)
        }
        Kind::TrackedReply => {
            let open = &frames.open_outbound;
            expect_decision(
                &loads.stateful,
                open,
                Direction::Egress,
                Verdict::Allow,
                Reason::Rule,
                "the outbound SYN",
            )?;
            expect_decision(
                &loads.stateful,
                &frames.tracked_reply,
                ingress,
                Verdict::Allow,
                Reason::Tracked,
                kind.name(),
            )?;
            (&loads.stateful, &frames.tracked_reply)
        }
        Kind::LaterFragment => {
            let first = &frames.first_fragment;
            expect_decision(
                &loads.stateful,
                first,
                ingress,
                Verdict::Allow,
                Reason::Rule,
                "the first fragment",
            )?;
            expect_decision(
                &loads.stateful,
                &frames.later_fragment,
                ingress,
                Verdict::Allow,
                Reason::Fragment,
                kind.name(),
            )?;
            (&loads.stateful, &frames.later_fragment)
        }
    })
}

/// Times one kind: `runs` rounds of sgmirror, `ref_lpm`, `ref_drop` and `ref_lpm_flow`
/// on the same frame, interleaved.
fn measure(
    cfg: &Config,
    loads: &Loads,
    reference: &Reference,
    frames: &ProbeFrames,
    kind: Kind,
) -> Result<[Measured; 4]> {
    let (program, frame) = prepare(loads, frames, kind)?;
    let (v, r) = kind.expected();
    let before = program.stat(direction::INGRESS, v, r)?.packets;
    let action = if v == verdict::DROP { xdp_action::DROP } else { xdp_action::PASS };
    let lpm_action = if kind.source_known() { XDP_DROP } else { XDP_PASS };
    let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let flow_hits_before = reference.lpm_counts()?[3];
    for _ in 0..cfg.runs {
        let (a, ns) = program.test_run_repeat(frame, Direction::Ingress, cfg.repeat)?;
        ensure!(a == action, "{}: sgmirror returned {a}, expected {action}", kind.name());
        times[0].push(ns as f64);
        let (a, ns) = reference.test_run(REF_LPM, frame, cfg.repeat)?;
        ensure!(a == lpm_action, "{}: ref_lpm returned {a}, expected {lpm_action}", kind.name());
        times[1].push(ns as f64);
        let (a, ns) = reference.test_run(REF_DROP, frame, cfg.repeat)?;
        ensure!(a == XDP_DROP, "ref_drop returned {a}");
        times[2].push(ns as f64);
        let (a, ns) = reference.test_run(REF_LPM_FLOW, frame, cfg.repeat)?;
        let flow_action = if kind == Kind::TrackedReply { XDP_PASS } else { lpm_action };
        ensure!(a == flow_action, "{}: ref_lpm_flow returned {a}, expected {flow_action}", kind.name());
        times[3].push(ns as f64);
    }
    let flow_hits = reference.lpm_counts()?[3] - flow_hits_before;
    let expected_hits = if kind == Kind::TrackedReply { cfg.runs as u64 * u64::from(cfg.repeat) } else { 0 };
    ensure!(
        flow_hits == expected_hits,
        "{}: ref_lpm_flow found {flow_hits} flows, expected {expected_hits}",
        kind.name()
    );
    let moved = program.stat(direction::INGRESS, v, r)?.packets - before;
    let expected = cfg.runs as u64 * u64::from(cfg.repeat);
    if moved != expected {
        bail!(
            "{}: {moved} of {expected} repetitions were counted as {}/{}: the figure would not measure the path it names",
            kind.name(),
            verdict_name(v),
            reason::NAMES[r as usize]
        );
    }
    let [a, b, c, d] = times;
    Ok([Measured::of(a), Measured::of(b), Measured::of(c), Measured::of(d)])
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        verdict::ALLOW => "allow",
        verdict::DROP => "drop",
        _ => "audit",
    }
}

/// The policies of P1 (and of the drop-log comparison).
pub fn policies(cfg: &Config) -> Result<Vec<BenchPolicy>> {
    let mut out = Vec::new();
    for &n in &cfg.p1_sizes {
        out.push(policy::services(n, cfg.seed).with_context(|| format!("generating the {n}-prefix policy"))?);
    }
    if cfg.aws_max {
        out.push(policy::aws_max(cfg.seed).context("generating the aws-max policy")?);
    }
    Ok(out)
}

/// Runs P1 over `policies`.
pub fn run(cfg: &Config, policies: &[BenchPolicy]) -> Result<P1> {
    let mut out = P1 {
        repeat: cfg.repeat,
        runs: cfg.runs,
        paths: Kind::ALL.iter().map(|k| (*k, k.path())).collect(),
        references: REFERENCES.to_vec(),
        ..P1::default()
    };
    println!(
        "\nP1 per-packet cost (BPF_PROG_TEST_RUN, repeat {}, {} runs, median ns/packet)",
        cfg.repeat, cfg.runs
    );
    for kind in Kind::ALL {
        println!("  {:<20} {}", kind.name(), kind.path());
    }
    for (name, what) in REFERENCES {
        println!("  {name:<20} {what}");
    }
    println!(
        "{:<9} {:<5} {:<20} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11} {:>7} {:>8}",
        "policy",
        "fam",
        "path",
        "sgmirror",
        "ref_lpm",
        "ref_drop",
        "lpm+flow",
        "x lpm",
        "[range]",
        "x drop",
        "x l+flow"
    );
    for p in policies {
        out.policies.push(PolicySize::of(p));
        let started = std::time::Instant::now();
        let loads = load_policy(p)?;
        let loaded = started.elapsed();
        let mut reference = Reference::load(&p.v4, &p.v6, None)?;
        for probes in [&p.probes_v4, &p.probes_v6] {
            reference.insert_flow(&ProbeFrames::new(probes).tracked_reply)?;
        }
        eprintln!(
            "[p1] policy {}: sgmirror loaded twice in {:.2} s, reference in {:.2} s",
            p.name,
            loaded.as_secs_f64(),
            (started.elapsed() - loaded).as_secs_f64()
        );
        for (family, probes) in [("ipv4", &p.probes_v4), ("ipv6", &p.probes_v6)] {
            let frames = ProbeFrames::new(probes);
            for kind in Kind::ALL {
                let [sgm, lpm, drop, lpm_flow] = measure(cfg, &loads, &reference, &frames, kind)
                    .with_context(|| format!("P1 {} {family} {}", p.name, kind.name()))?;
                let row = Row {
                    policy: p.name.clone(),
                    family,
                    kind,
                    ratio_to_lpm: Ratio::of(&sgm, &lpm),
                    ratio_to_drop: Ratio::of(&sgm, &drop),
                    ratio_to_lpm_flow: Ratio::of(&sgm, &lpm_flow),
                    ref_lpm_flow_ns: lpm_flow,
                    sgmirror_ns: sgm,
                    ref_lpm_ns: lpm,
                    ref_drop_ns: drop,
                };
                println!(
                    "{:<9} {:<5} {:<20} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>7.2} {:>11} {:>7.1} {:>8.2}",
                    row.policy,
                    family,
                    kind.name(),
                    row.sgmirror_ns.median,
                    row.ref_lpm_ns.median,
                    row.ref_drop_ns.median,
                    row.ref_lpm_flow_ns.median,
                    row.ratio_to_lpm.value,
                    format!("{:.2}-{:.2}", row.ratio_to_lpm.min, row.ratio_to_lpm.max),
                    row.ratio_to_drop.value,
                    row.ratio_to_lpm_flow.value
                );
                out.rows.push(row);
            }
        }
    }
    Ok(out)
}

/// Probes of a policy by family name (the drop-log comparison reuses them).
pub fn probes<'a>(p: &'a BenchPolicy, family: &str) -> &'a Probes {
    if family == "ipv6" { &p.probes_v6 } else { &p.probes_v4 }
}
