//! The run's report: every section's results, the targets judged against
//! them, `results.json` and the SVG plots.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::{
    Config,
    droplog::DropLog,
    live::{P2, P3, VariantResult},
    machine::Machine,
    p1::{Kind, P1},
    p4::P4,
    svg::{self, Series},
};

/// One target of the issue, judged.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// Section and figure.
    pub name: String,
    /// The target as the issue states it.
    pub limit: String,
    /// What was measured (value and spread).
    pub measured: String,
    /// Met, missed, or not measured in this run.
    pub met: Option<bool>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The machine and the source.
    pub machine: Machine,
    /// `full` or `smoke`.
    pub mode: &'static str,
    /// P1.
    pub p1: Option<P1>,
    /// P4.
    pub p4: Option<P4>,
    /// The drop log's cost.
    pub drop_log: Option<DropLog>,
    /// P2.
    pub p2: Option<P2>,
    /// P3.
    pub p3: Option<P3>,
    /// The targets.
    pub targets: Vec<Target>,
}

/// The policy size the P1 targets are judged at.
const TARGET_PREFIXES: &str = "10000";

impl Report {
    /// An empty report of a run on `machine`.
    pub fn new(machine: Machine, cfg: &Config) -> Self {
        Self {
            machine,
            mode: if cfg.smoke { "smoke" } else { "full" },
            p1: None,
            p4: None,
            drop_log: None,
            p2: None,
            p3: None,
            targets: Vec::new(),
        }
    }

    /// Judges every target the run measured.
    pub fn evaluate_targets(&mut self) {
        let mut t = Vec::new();
        if let Some(p1) = &self.p1 {
            let at = |kind: Kind| -> Vec<&crate::p1::Row> {
                p1.rows.iter().filter(|r| r.policy == TARGET_PREFIXES && r.kind == kind).collect()
            };
            let mut judge = |name: &str, limit: f64, kinds: &[Kind]| {
                let rows: Vec<_> = kinds.iter().flat_map(|k| at(*k)).collect();
                if rows.is_empty() {
                    return;
                }
                let worst = rows.iter().map(|r| r.ratio_to_lpm.value).fold(0.0, f64::max);
                let measured = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {:.2}x [{:.2}-{:.2}] ({:.0} vs {:.0} ns)",
                            r.family,
                            r.kind.name(),
                            r.ratio_to_lpm.value,
                            r.ratio_to_lpm.min,
                            r.ratio_to_lpm.max,
                            r.sgmirror_ns.median,
                            r.ref_lpm_ns.median
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                t.push(Target {
                    name: format!("P1 {name} at 10 000 prefixes"),
                    limit: format!("<= {limit:.1}x ref_lpm"),
                    measured: format!("worst {worst:.2}x: {measured}"),
                    met: Some(worst <= limit),
                });
            };
            judge(
                "new-packet verdict",
                2.0,
                &[Kind::DenyUnknownSource, Kind::DenyKnownSource, Kind::AllowNew, Kind::AllowUntracked],
            );
            judge("tracked-reply path", 1.5, &[Kind::TrackedReply]);
        }
        if let Some(p2) = &self.p2 {
            let get = |name: &str| p2.variants.iter().find(|v| v.variant == name);
            let rx = |v: &VariantResult| {
                format!("{:.0} ns [{:.0}-{:.0}]", v.receiver_ns, v.receiver_ns_min, v.receiver_ns_max)
            };
            let sgm = get("sgmirror-native-deny");
            for (other, limit) in [("nftables-deny", 0.4), ("ipset-deny", 0.5)] {
                let (Some(s), Some(o)) = (sgm, get(other)) else { continue };
                let r = crate::stats::ratio(s.receiver_ns, o.receiver_ns);
                t.push(Target {
                    name: format!("P2 denied-packet receiver cost vs {other}"),
                    limit: format!("<= {limit:.1}x"),
                    measured: format!("{r:.2}x: sgmirror {} vs {}", rx(s), rx(o)),
                    met: Some(r <= limit),
                });
            }
            if let Some(base) = get("no-filter") {
                for name in ["sgmirror-native-allow", "sgmirror-native-allow-new", "sgmirror-generic-allow"] {
                    let Some(v) = get(name) else { continue };
                    let extra = crate::stats::ratio(v.receiver_ns - base.receiver_ns, base.receiver_ns);
                    t.push(Target {
                        name: format!("P2 allowed packets over no filter ({name})"),
                        limit: "<= +15 %".into(),
                        measured: format!("{:+.1} %: {} vs no filter {}", extra * 100.0, rx(v), rx(base)),
                        met: Some(extra <= 0.15),
                    });
                }
            }
        }
        if let Some(p3) = &self.p3 {
            let g = |name: &str| p3.growth.iter().find(|g| g.variant == name);
            if let (Some(s), Some(l)) = (g("sgmirror-native-deny"), g("ref-lpm-drop")) {
                let nft = g("nftables-deny");
                let vs = crate::stats::ratio(s.factor, l.factor);
                let below_nft = nft.is_none_or(|n| s.factor < n.factor);
                t.push(Target {
                    name: "P3 growth factor 10 -> 100 000 prefixes".into(),
                    limit: "sgmirror <= 1.2x ref_lpm's, and below nftables'".into(),
                    measured: format!(
                        "sgmirror x{:.2} ({:.0} -> {:.0} ns), ref_lpm x{:.2}, ratio {vs:.2}; nftables {}",
                        s.factor,
                        s.ns_small,
                        s.ns_large,
                        l.factor,
                        nft.map_or("not measured".into(), |n| format!(
                            "x{:.2} ({:.0} -> {:.0} ns)",
                            n.factor, n.ns_small, n.ns_large
                        ))
                    ),
                    met: Some(vs <= 1.2 && below_nft),
                });
            }
        }
        if let Some(p4) = &self.p4 {
            if let Some(row) = p4.swap.iter().max_by_key(|r| r.prefixes).filter(|r| r.prefixes >= 100_000) {
                let m = &row.compile_and_swap_ms;
                t.push(Target {
                    name: "P4 compile + swap of 100 000 prefixes".into(),
                    limit: "< 200 ms".into(),
                    measured: format!(
                        "{:.0} ms [{:.0}-{:.0}]: compile {:.1}, load {:.0} (verifier {:.0}), replace {:.1} ms",
                        m.median,
                        m.min,
                        m.max,
                        row.compile_ms.median,
                        row.load_ms.median,
                        row.verify_ms.median,
                        row.replace_ms.median
                    ),
                    met: Some(m.median < 200.0),
                });
            }
            if let Some(a) = &p4.agent {
                let both = p4.agent_both_families.as_ref().map_or(String::new(), |b| {
                    format!(
                        "; with {} IPv6 prefixes too: {:.1} MB peak, {:.1} MB resident",
                        b.prefixes_v6,
                        b.peak_rss_kb as f64 / 1024.0,
                        b.rss_kb as f64 / 1024.0
                    )
                });
                t.push(Target {
                    name: format!("P4 agent peak RSS ({} IPv4 prefixes)", a.prefixes_v4),
                    limit: "< 40 MB".into(),
                    measured: format!(
                        "{:.1} MB (VmHWM), {:.1} MB resident after start-up{both}",
                        a.peak_rss_kb as f64 / 1024.0,
                        a.rss_kb as f64 / 1024.0
                    ),
                    met: Some((a.peak_rss_kb as f64) < 40.0 * 1024.0),
                });
                t.push(Target {
                    name: "P4 agent idle CPU".into(),
                    limit: "< 0.5 %".into(),
                    measured: format!("{:.3} % over {} s", a.idle_cpu_percent, a.idle_window_s),
                    met: Some(a.idle_cpu_percent < 0.5),
                });
            }
        }
        if let Some(d) = &self.drop_log {
            let worst = d.rows.iter().map(|r| r.ratio.value).fold(0.0, f64::max);
            t.push(Target {
                name: "issue 6: drop path with the drop log on vs off".into(),
                limit: "<= +5 %".into(),
                measured: if d.available {
                    format!("{:+.1} % (worst path)", (worst - 1.0) * 100.0)
                } else {
                    d.note.clone()
                },
                met: d.available.then_some(worst <= 1.05),
            });
        }
        self.targets = t;
    }

    /// Prints the targets.
    pub fn print_targets(&self) {
        println!("\nTargets");
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            println!("  [{verdict}] {} ({}): {}", t.name, t.limit, t.measured);
        }
    }

    /// Writes `results.json` (or `smoke.json` in smoke mode) and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let name = if self.mode == "smoke" { "smoke.json" } else { "results.json" };
        std::fs::write(dir.join(name), serde_json::to_string_pretty(self)? + "\n")?;
        if self.mode == "smoke" {
            return Ok(());
        }
        for (file, text) in self.plots() {
            std::fs::write(dir.join(file), text)?;
        }
        Ok(())
    }

    fn plots(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(p1) = &self.p1 {
            for family in ["ipv4", "ipv6"] {
                let size = |name: &str| name.parse::<f64>().ok();
                let mut series: Vec<Series> = Kind::ALL
                    .iter()
                    .map(|k| Series {
                        name: format!("sgmirror {}", k.name()),
                        points: p1
                            .rows
                            .iter()
                            .filter(|r| r.family == family && r.kind == *k)
                            .filter_map(|r| Some((size(&r.policy)?, r.sgmirror_ns.median)))
                            .collect(),
                    })
                    .collect();
                series.push(Series {
                    name: "ref_lpm".into(),
                    points: p1
                        .rows
                        .iter()
                        .filter(|r| r.family == family && r.kind == Kind::DenyKnownSource)
                        .filter_map(|r| Some((size(&r.policy)?, r.ref_lpm_ns.median)))
                        .collect(),
                });
                series.push(Series {
                    name: "ref_lpm_flow (tracked reply)".into(),
                    points: p1
                        .rows
                        .iter()
                        .filter(|r| r.family == family && r.kind == Kind::TrackedReply)
                        .filter_map(|r| Some((size(&r.policy)?, r.ref_lpm_flow_ns.median)))
                        .collect(),
                });
                series.push(Series {
                    name: "ref_drop".into(),
                    points: p1
                        .rows
                        .iter()
                        .filter(|r| r.family == family && r.kind == Kind::DenyKnownSource)
                        .filter_map(|r| Some((size(&r.policy)?, r.ref_drop_ns.median)))
                        .collect(),
                });
                out.push((
                    format!("p1-{family}.svg"),
                    svg::line_chart(
                        &format!("P1 per-packet cost, {family} (BPF_PROG_TEST_RUN, median)"),
                        "prefixes per family",
                        "ns per packet",
                        &series,
                    ),
                ));
            }
        }
        if let Some(p2) = &self.p2 {
            let bars: Vec<(String, f64)> = p2
                .variants
                .iter()
                .filter(|v| v.variant != "gen-only")
                .map(|v| (v.variant.to_owned(), v.receiver_ns))
                .collect();
            out.push((
                "p2.svg".into(),
                svg::bar_chart(
                    &format!("P2 receiver cost on veth, {} prefixes (best of {})", p2.prefixes, p2.reps),
                    "ns/pkt",
                    &bars,
                ),
            ));
        }
        if let Some(p3) = &self.p3 {
            let names: Vec<&str> = {
                let mut n: Vec<&str> =
                    p3.results.iter().map(|r| r.variant).filter(|v| *v != "gen-only").collect();
                n.dedup();
                n.sort_unstable();
                n.dedup();
                n
            };
            let series: Vec<Series> = names
                .iter()
                .map(|name| Series {
                    name: (*name).to_owned(),
                    points: p3
                        .results
                        .iter()
                        .filter(|r| r.variant == *name)
                        .map(|r| (r.prefixes as f64, r.receiver_ns))
                        .collect(),
                })
                .collect();
            out.push((
                "p3.svg".into(),
                svg::line_chart(
                    "P3 receiver cost vs policy size (random sources)",
                    "prefixes per family",
                    "ns per packet",
                    &series,
                ),
            ));
        }
        if let Some(p4) = &self.p4 {
            let line = |name: &str, f: &dyn Fn(&crate::p4::SwapRow) -> f64| Series {
                name: name.into(),
                points: p4.swap.iter().map(|r| (r.prefixes as f64, f(r))).collect(),
            };
            let series = vec![
                line("compile + swap", &|r| r.compile_and_swap_ms.median),
                line("load (create, fill, verify)", &|r| r.load_ms.median),
                line("verifier", &|r| r.verify_ms.median),
                line("bare trie fill", &|r| r.bare_trie_fill_ms.median),
                line("batch trie fill", &|r| r.batch_trie_fill_ms.median),
                line("compile", &|r| r.compile_ms.median),
                line("replace", &|r| r.replace_ms.median),
            ];
            out.push((
                "p4.svg".into(),
                svg::line_chart(
                    "P4 control plane: one family, one direction",
                    "IPv4 prefixes",
                    "ms",
                    &series,
                ),
            ));
        }
        out
    }
}
