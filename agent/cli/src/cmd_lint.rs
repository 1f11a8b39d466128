//! `sgmirror lint`: the snapshot's rules that are probably mistakes, as a table or one
//! JSON document. Advisory: exit 0 with or without findings, unless `--fail-on` says
//! otherwise (then 2); errors exit 1 like every other command.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;
use sgmirror_policy::{
    lint::{self, Finding, Hits, Options, Severity},
    snapshot,
};

use crate::args::{LintArgs, SeverityArg};

/// Exit status when `--fail-on` finds a finding at or above its severity.
const EXIT_FINDINGS: i32 = 2;

#[derive(Serialize)]
struct Document<'a> {
    findings: &'a [Finding],
}

pub fn run(args: &LintArgs) -> Result<()> {
    let path = &args.snapshot.snapshot;
    let snap = snapshot::load(path).with_context(|| format!("loading snapshot {}", path.display()))?;
    let hits = match &args.hits {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading hits file {}", file.display()))?;
            Some(Hits::parse(&text).with_context(|| format!("reading hits file {}", file.display()))?)
        }
        None => None,
    };
    let report = lint::lint(&snap, &Options { interfaces: &args.interfaces, hits: hits.as_ref() })?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&Document { findings: &report.findings })?);
    } else {
        print_table(&report.findings);
    }

    if let Some(threshold) = args.fail_on.map(severity) {
        let failing = report.findings.iter().filter(|f| f.severity.at_least(threshold)).count();
        if failing > 0 {
            std::io::stdout().flush().context("writing the findings")?;
            eprintln!(
                "sgmirror: {failing} finding(s) at or above {} (--fail-on {})",
                threshold.as_str(),
                threshold.as_str()
            );
            std::process::exit(EXIT_FINDINGS);
        }
    }
    Ok(())
}

fn severity(arg: SeverityArg) -> Severity {
    match arg {
        SeverityArg::High => Severity::High,
        SeverityArg::Medium => Severity::Medium,
        SeverityArg::Low => Severity::Low,
    }
}

/// One row per finding, its message indented on the next line.
fn print_table(findings: &[Finding]) {
    if findings.is_empty() {
        println!("no findings");
        return;
    }
    let header = ["SEVERITY", "KIND", "RULE", "GROUP", "DIR", "PROTO", "PORTS", "SOURCE"];
    let rows: Vec<[String; 8]> = findings
        .iter()
        .map(|f| {
            [
                f.severity.as_str().to_owned(),
                f.kind.as_str().to_owned(),
                f.rule.clone(),
                f.group_id.clone(),
                f.direction.as_str().to_owned(),
                f.protocol.clone(),
                f.ports_text(),
                f.source.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    println!("{}", line(&header));
    for (row, finding) in rows.iter().zip(findings) {
        println!("{}", line(&row.each_ref().map(String::as_str)));
        println!("  {}", finding.message);
    }
}
