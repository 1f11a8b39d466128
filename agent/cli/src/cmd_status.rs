//! `sgmirror status`: what is enforced, per link, read from the pinned links and
//! counters and the agent's status records — so it answers with the agent stopped.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use sgmirror_dataplane::{pinned_links, pinned_stats};

use crate::{
    args::StatusArgs,
    bpffs, lifecycle,
    metrics::Counter,
    state::{self, LinkRecord},
    summary, xdp_query,
};

#[derive(Debug, Serialize)]
struct Status {
    /// Whether an agent process runs (its pid file names a live sgmirror).
    agent_running: bool,
    agent_pid: Option<u32>,
    /// Whether any link is enforced by pinned programs.
    enforcing: bool,
    links: Vec<LinkStatus>,
}

#[derive(Debug, Serialize)]
struct LinkStatus {
    pin_dir: PathBuf,
    /// The link's name, when known.
    link: Option<String>,
    /// The pinned XDP link's program is the one on the link now.
    attached: bool,
    xdp_program_id: Option<u32>,
    tcx_program_id: Option<u32>,
    /// What the agent recorded at its last apply (absent when it never wrote one).
    record: Option<LinkRecord>,
    /// Non-zero counters, from the pinned counter map.
    counters: Vec<Counter>,
    allowed_packets: u64,
    dropped_packets: u64,
}

pub fn run(args: &StatusArgs) -> Result<()> {
    let agent_pid = state::running_pid(&args.state_dir);
    let links: Vec<LinkStatus> =
        link_dirs(&args.pin_root).into_iter().filter_map(|dir| link_status(&dir, &args.state_dir)).collect();
    let status = Status {
        agent_running: agent_pid.is_some(),
        agent_pid,
        enforcing: links.iter().any(|l| l.attached),
        links,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print(&status, &args.pin_root);
    }
    Ok(())
}

/// The link directories of the current layout, in name order.
fn link_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(bpffs::version_dir(root)) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

fn link_status(dir: &Path, state_dir: &Path) -> Option<LinkStatus> {
    let pins = pinned_links(dir);
    let record = state::read_record(state_dir, dir);
    if pins.xdp_program.is_none() && pins.tcx_program.is_none() && record.is_none() {
        return None;
    }
    let link = record.as_ref().map(|r| r.link.clone()).or_else(|| link_name(dir));
    let on_link = link.as_deref().and_then(|l| xdp_query::attached(l).ok().flatten());
    let attached = pins.xdp_program.is_some() && on_link.map(|p| p.id) == pins.xdp_program;
    let stats = pinned_stats(dir).ok();
    let counters = stats.as_ref().map(summary::counter_rows).unwrap_or_default();
    let sum = |verdict: &str| counters.iter().filter(|c| c.verdict == verdict).map(|c| c.packets).sum();
    Some(LinkStatus {
        pin_dir: dir.to_path_buf(),
        link,
        attached,
        xdp_program_id: pins.xdp_program,
        tcx_program_id: pins.tcx_program,
        record,
        allowed_packets: sum("allow"),
        dropped_packets: sum("drop"),
        counters,
    })
}

/// The name of the link of a directory of this network namespace.
fn link_name(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let ifindex: u32 = name.strip_prefix(&bpffs::netns_prefix().ok()?)?.parse().ok()?;
    if !lifecycle::ifindex_exists(ifindex) {
        return None;
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes a NUL-terminated name of at most IF_NAMESIZE bytes.
    let ptr = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated string.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

fn ago(unix: u64) -> String {
    let now = state::unix_now();
    format!("{} ({}s ago)", state::utc(unix), now.saturating_sub(unix))
}

fn print(status: &Status, root: &Path) {
    match status.agent_pid {
        Some(pid) => println!("agent: running (pid {pid})"),
        None => println!("agent: not running (pinned enforcement stays in force without it)"),
    }
    if !status.enforcing {
        println!("not enforcing: no sgmirror program is pinned and attached under {}", root.display());
    }
    for l in &status.links {
        let name = l.link.as_deref().unwrap_or("(link gone)");
        let state = if l.attached { "enforcing" } else { "NOT attached (stale pins)" };
        println!("{name}: {state}; pins in {}", l.pin_dir.display());
        if let Some(r) = &l.record {
            let fallback =
                r.xdp_fallback_reason.as_deref().map(|why| format!(" ({why})")).unwrap_or_default();
            println!(
                "  interface {}  mode {}  XDP {}{fallback}  TC {}",
                r.interface_id, r.mode, r.xdp_mode, r.tc_mode
            );
            println!(
                "  policy generation {}  hash {}  applied {}",
                r.generation,
                r.policy_hash,
                ago(r.applied_unix)
            );
            let errors: Vec<String> = r.source_errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "  source: last success {}, errors: {}",
                ago(r.source_last_success_unix),
                if errors.is_empty() { "none".to_owned() } else { errors.join(" ") }
            );
        }
        println!(
            "  programs: XDP {}  TCX {}",
            l.xdp_program_id.map_or("-".to_owned(), |id| id.to_string()),
            l.tcx_program_id.map_or("-".to_owned(), |id| id.to_string())
        );
        println!("  allowed {} packets, dropped {} packets", l.allowed_packets, l.dropped_packets);
        for c in l.counters.iter().filter(|c| c.verdict != "allow") {
            println!("    {:<8} {:<6} {:<10} {:>12}", c.direction, c.verdict, c.reason, c.packets);
        }
    }
}
