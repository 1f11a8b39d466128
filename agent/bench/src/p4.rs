//! P4: the control plane — compile time, the atomic swap of a new generation (load
//! with maps created and filled, verification, replacement on an attached link), the
//! agent's peak RSS while enforcing the largest policy, and its CPU use while idle.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sgmirror_dataplane::{LoadOptions, TcAttachMode, XdpAttachMode, load};
use sgmirror_policy::{
    compile::{Limits, compile, compile_direction},
    model::Direction,
};

use crate::{
    Config,
    lab::{Netns, RootVeth},
    policy::{self, ENI},
    reference::Reference,
    stats::Measured,
};

/// One size of the swap measurement (IPv4 prefixes, inbound only).
#[derive(Clone, Debug, Serialize)]
pub struct SwapRow {
    /// IPv4 prefixes of the inbound rules.
    pub prefixes: usize,
    /// Snapshot parse + resolve, ms.
    pub resolve_ms: Measured,
    /// Compiling the inbound direction, ms.
    pub compile_ingress_ms: Measured,
    /// Compiling both directions (what the agent does), ms.
    pub compile_ms: Measured,
    /// Loading the new generation: maps created and filled, both programs verified, ms.
    pub load_ms: Measured,
    /// Of which verification (both programs), ms.
    pub verify_ms: Measured,
    /// Replacing the attached generation (both hooks), ms.
    pub replace_ms: Measured,
    /// compile (both directions) + load + replace, ms: the target's figure.
    pub compile_and_swap_ms: Measured,
    /// The same prefixes inserted one by one into a bare LPM trie (`ref_lpm`'s), ms:
    /// the kernel's floor for filling a trie element by element.
    pub bare_trie_fill_ms: Measured,
    /// The same prefixes inserted into an empty bare trie with one
    /// `BPF_MAP_UPDATE_BATCH` call, ms (no runs where the kernel lacks it).
    pub batch_trie_fill_ms: Measured,
}

/// The agent enforcing a policy.
#[derive(Clone, Debug, Serialize)]
pub struct AgentUse {
    /// Inbound IPv4 prefixes of the policy.
    pub prefixes_v4: usize,
    /// Inbound IPv6 prefixes of the policy.
    pub prefixes_v6: usize,
    /// Bytes of the snapshot file.
    pub snapshot_bytes: usize,
    /// Seconds from start until it said it was enforcing.
    pub startup_s: f64,
    /// `VmHWM`, kB.
    pub peak_rss_kb: u64,
    /// `VmRSS` after the idle window, kB.
    pub rss_kb: u64,
    /// CPU time over the idle window (scheduler run time of all threads), percent of
    /// one CPU.
    pub idle_cpu_percent: f64,
    /// The same from utime + stime (clock-tick resolution).
    pub idle_cpu_ticks_percent: f64,
    /// The idle window, s.
    pub idle_window_s: u64,
}

/// P4's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct P4 {
    /// Per size.
    pub swap: Vec<SwapRow>,
    /// Whether the kernel accepts `BPF_MAP_UPDATE_BATCH` on an LPM trie.
    pub lpm_batch_update: bool,
    /// The agent enforcing the largest swap policy (the targets' figure), when the
    /// binary was given.
    pub agent: Option<AgentUse>,
    /// The agent enforcing as many IPv6 prefixes again (P1's largest policy), for
    /// context.
    pub agent_both_families: Option<AgentUse>,
    /// Why the agent was not measured.
    pub agent_skipped: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `BPF_MAP_UPDATE_BATCH` of one entry on a fresh LPM trie: whether the kernel has it.
fn lpm_batch_supported() -> Result<bool> {
    let net: ipnet::Ipv4Net = "203.0.113.0/24".parse()?;
    let reference = Reference::load(&[], &[], None)?;
    Ok(reference.batch_insert_v4(&[net]).is_ok())
}

/// Measures one size.
fn swap_row(
    cfg: &Config,
    n: usize,
    runs: usize,
    link_attached: &mut sgmirror_dataplane::LoadedProgram,
) -> Result<SwapRow> {
    let (doc, _) = policy::services_snapshot(n, false, cfg.seed);
    let text = doc.to_string();
    let mut t = [(); 9].map(|()| Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let snap = sgmirror_policy::snapshot::parse(&text)?;
        let (policy, _) = sgmirror_policy::resolve::resolve_interface(&snap, ENI)?;
        t[0].push(ms(started.elapsed()));
        let started = Instant::now();
        let _image = compile_direction(&policy, Direction::Ingress, &Limits::default())?;
        t[1].push(ms(started.elapsed()));
        let started = Instant::now();
        let compiled = compile(&policy, &Limits::default())?;
        let compile_time = started.elapsed();
        t[2].push(ms(compile_time));
        let started = Instant::now();
        let next = load(&compiled, &LoadOptions::default())?;
        let load_time = started.elapsed();
        t[3].push(ms(load_time));
        let verify = next.verifier_report(Direction::Ingress).load_time
            + next.verifier_report(Direction::Egress).load_time;
        t[4].push(ms(verify));
        let started = Instant::now();
        let previous = link_attached.replace(next)?;
        let replace_time = started.elapsed();
        t[5].push(ms(replace_time));
        drop(previous);
        t[6].push(ms(compile_time + load_time + replace_time));
        let v4: Vec<ipnet::Ipv4Net> = compiled.ingress.addr4.iter().map(|(n, _)| *n).collect();
        let mut reference = Reference::create(v4.len(), 1, None)?;
        let started = Instant::now();
        reference.fill(&v4, &[])?;
        t[7].push(ms(started.elapsed()));
        drop(reference);
        let reference = Reference::create(v4.len(), 1, None)?;
        let started = Instant::now();
        let batched = reference.batch_insert_v4(&v4);
        t[8].push(if batched.is_ok() { ms(started.elapsed()) } else { f64::NAN });
        drop(reference);
    }
    let [a, b, c, d, e, f, g, h, i] = t;
    Ok(SwapRow {
        prefixes: n,
        resolve_ms: Measured::of(a),
        compile_ingress_ms: Measured::of(b),
        compile_ms: Measured::of(c),
        load_ms: Measured::of(d),
        verify_ms: Measured::of(e),
        replace_ms: Measured::of(f),
        compile_and_swap_ms: Measured::of(g),
        bare_trie_fill_ms: Measured::of(h),
        batch_trie_fill_ms: Measured::of(i.into_iter().filter(|x| x.is_finite()).collect()),
    })
}

/// Runs P4.
pub fn run(cfg: &Config) -> Result<P4> {
    let mut out = P4 { lpm_batch_update: lpm_batch_supported()?, ..P4::default() };
    println!("\nP4 control plane (IPv4 prefixes, inbound; median ms over {} runs)", swap_runs(cfg));
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>10} {:>10}",
        "prefixes",
        "resolve",
        "comp-in",
        "compile",
        "load",
        "verify",
        "replace",
        "comp+swap",
        "bare-fill",
        "batch-fill"
    );
    {
        let ns = Netns::new("p4")?;
        ns.exec(&["ip", "link", "add", "sgmb4a", "type", "veth", "peer", "name", "sgmb4b"])?;
        ns.exec(&["ip", "link", "set", "sgmb4a", "up"])?;
        ns.exec(&["ip", "link", "set", "sgmb4b", "up"])?;
        let (doc, _) = policy::services_snapshot(10, false, cfg.seed);
        let (_, compiled) = policy::pipeline(&doc)?;
        let mut attached = load(&compiled, &LoadOptions::default())?;
        {
            let _inside = ns.enter()?;
            attached.attach("sgmb4a", XdpAttachMode::Native, TcAttachMode::Auto)?;
        }
        for &n in &cfg.p4_sizes {
            let row = swap_row(cfg, n, swap_runs(cfg), &mut attached)
                .with_context(|| format!("P4 swap with {n} prefixes"))?;
            println!(
                "{:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.2} {:>12.1} {:>10.1} {:>10.1}",
                n,
                row.resolve_ms.median,
                row.compile_ingress_ms.median,
                row.compile_ms.median,
                row.load_ms.median,
                row.verify_ms.median,
                row.replace_ms.median,
                row.compile_and_swap_ms.median,
                row.bare_trie_fill_ms.median,
                row.batch_trie_fill_ms.median
            );
            out.swap.push(row);
        }
        drop(attached);
    }
    println!(
        "LPM trie batch update (BPF_MAP_UPDATE_BATCH): {}",
        if out.lpm_batch_update { "supported" } else { "not supported by this kernel" }
    );
    match &cfg.agent {
        Some(bin) => {
            let largest = cfg.p4_sizes.iter().copied().max().unwrap_or(1000);
            let agent = agent_use(cfg, bin, largest, false).context("measuring the agent")?;
            print_agent(&agent);
            out.agent = Some(agent);
            if !cfg.smoke {
                let agent = agent_use(cfg, bin, largest, true).context("measuring the agent")?;
                print_agent(&agent);
                out.agent_both_families = Some(agent);
            }
        }
        None => {
            let why = "no --agent binary given".to_owned();
            println!("agent RSS / idle CPU: not measured ({why})");
            out.agent_skipped = Some(why);
        }
    }
    Ok(out)
}

fn print_agent(a: &AgentUse) {
    println!(
        "agent enforcing {} IPv4 + {} IPv6 prefixes ({:.1} MB snapshot): started in {:.1} s, peak RSS {} kB, RSS {} kB, \
         idle CPU {:.3} % over {} s",
        a.prefixes_v4,
        a.prefixes_v6,
        a.snapshot_bytes as f64 / 1e6,
        a.startup_s,
        a.peak_rss_kb,
        a.rss_kb,
        a.idle_cpu_percent,
        a.idle_window_s
    );
}

fn swap_runs(cfg: &Config) -> usize {
    if cfg.smoke { 1 } else { 3 }
}

/// A child process killed (SIGTERM, then SIGKILL) and reaped when dropped.
struct AgentProcess {
    child: Child,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// CPU time of every thread of `pid` so far, in ns (`/proc/PID/task/*/schedstat`,
/// finer than the clock ticks of `/proc/PID/stat`).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(&path) {
            total += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    Ok(utime + stime)
}

/// Runs `sgmirror run` on a veth (root end; its peer in a namespace) with the largest
/// policy, and reads its memory and idle CPU.
fn agent_use(cfg: &Config, bin: &Path, n: usize, v6: bool) -> Result<AgentUse> {
    let (doc, _) = policy::services_snapshot(n, v6, cfg.seed);
    let dir = std::env::temp_dir().join(format!("sgm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let snapshot = dir.join("snapshot.json");
    let text = doc.to_string();
    std::fs::write(&snapshot, &text)?;
    let pins = PathBuf::from(format!("/sys/fs/bpf/sgmirror-test-bench-{}", std::process::id()));
    let result = agent_in_lab(cfg, bin, &snapshot, &pins).map(|mut a| {
        a.prefixes_v4 = n;
        a.prefixes_v6 = if v6 { n } else { 0 };
        a.snapshot_bytes = text.len();
        a
    });
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn agent_in_lab(cfg: &Config, bin: &Path, snapshot: &Path, pins: &Path) -> Result<AgentUse> {
    let ns = Netns::new("agent")?;
    let veth = RootVeth::new("ag0", &ns, "sgmbag1")?;
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("run")
        // Never an installed /etc/sgmirror/config.toml: only these flags.
        .args(["--config", "/dev/null"])
        .arg("--snapshot")
        .arg(snapshot)
        .arg("--bind")
        .arg(format!("{}={ENI}", veth.root))
        .arg("--no-metrics")
        .arg("--pin-root")
        .arg(pins)
        .arg("--state-dir")
        .arg(snapshot.with_file_name("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let agent = AgentProcess { child };
    let pid = agent.child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let enforcing = line.contains("enforcing (");
            if tx.send((enforcing, line)).is_err() {
                // Keep draining so the agent never blocks on a full pipe.
                continue;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok((true, _)) => break,
            Ok((false, line)) => log.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => bail!("the agent did not start enforcing; its log:\n{}", log.join("\n")),
        }
    }
    let startup_s = started.elapsed().as_secs_f64();
    // Let start-up work (the first snapshot poll, allocator trimming) settle.
    std::thread::sleep(Duration::from_secs(1));
    let (t0, n0) = (cpu_ticks(pid)?, cpu_ns(pid)?);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(cfg.idle_secs));
    let ticks = cpu_ticks(pid)? - t0;
    let cpu_time_ns = cpu_ns(pid)?.saturating_sub(n0);
    let window = w0.elapsed().as_secs_f64();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let peak_rss_kb = status_kb(pid, "VmHWM:")?;
    let rss_kb = status_kb(pid, "VmRSS:")?;
    drop(agent);
    drop(veth);
    drop(ns);
    Ok(AgentUse {
        prefixes_v4: 0,
        prefixes_v6: 0,
        snapshot_bytes: 0,
        startup_s,
        peak_rss_kb,
        rss_kb,
        idle_cpu_percent: cpu_time_ns as f64 / 1e9 / window * 100.0,
        idle_cpu_ticks_percent: ticks as f64 / hz / window * 100.0,
        idle_window_s: cfg.idle_secs,
    })
}
