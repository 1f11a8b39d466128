//! `sgmirror compile`: resolve and compile, report sizes and warnings, touch nothing.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sgmirror_policy::{
    compile::{self, ImageSummary, Limits},
    model::Warning,
    resolve, snapshot,
};

use crate::args::CompileArgs;

#[derive(Serialize)]
struct InterfaceReport {
    interface_id: String,
    groups: Vec<String>,
    ingress: ImageSummary,
    egress: ImageSummary,
    warnings: Vec<Warning>,
}

#[derive(Serialize)]
struct Report {
    interfaces: Vec<InterfaceReport>,
    warnings: Vec<Warning>,
}

pub fn run(args: &CompileArgs) -> Result<()> {
    let path = &args.snapshot.snapshot;
    let snap = snapshot::load(path).with_context(|| format!("loading snapshot {}", path.display()))?;
    let ids = if args.interfaces.is_empty() { snap.own_interface_ids() } else { args.interfaces.clone() };
    if ids.is_empty() {
        bail!("the snapshot has no interfaces to compile");
    }
    let mut interfaces = Vec::new();
    for id in &ids {
        let (policy, warnings) = resolve::resolve_interface(&snap, id)?;
        let compiled = compile::compile(&policy, &Limits::default())?;
        interfaces.push(InterfaceReport {
            interface_id: id.clone(),
            groups: policy.groups.clone(),
            ingress: compiled.ingress.summary(),
            egress: compiled.egress.summary(),
            warnings,
        });
    }
    let report = Report { interfaces, warnings: snap.warnings.clone() };
    for w in report.warnings.iter().chain(report.interfaces.iter().flat_map(|i| &i.warnings)) {
        tracing::warn!("{w}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "{:<24} {:<8} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10}",
        "INTERFACE", "DIR", "RULES", "PFX-V4", "PFX-V6", "CLASSES", "PORTS", "SETS", "MAP-BYTES"
    );
    for i in &report.interfaces {
        for (dir, s) in [("ingress", &i.ingress), ("egress", &i.egress)] {
            println!(
                "{:<24} {:<8} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10}",
                i.interface_id,
                dir,
                s.rules,
                s.prefixes_v4,
                s.prefixes_v6,
                s.classes,
                s.port_entries,
                s.match_sets,
                s.map_bytes
            );
        }
        println!("  groups: {}; warnings: {}", i.groups.join(", "), i.warnings.len());
    }
}
