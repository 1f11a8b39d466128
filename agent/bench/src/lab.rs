//! Throw-away network namespaces and links for the benchmarks, all named `sgm-bench-*`
//! (namespaces) and `sgmb*` (links), so that leftovers of a killed run are found and
//! removed by the next run (and by `cargo xtask`'s cleanup, which removes `sgm-*`
//! namespaces and `sgm*` links).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Prefix of every namespace the benchmarks create.
pub const NETNS_PREFIX: &str = "sgm-bench-";
/// Prefix of every link the benchmarks create in the root namespace.
pub const LINK_PREFIX: &str = "sgmb";

/// Runs `program args…`, returning stdout; an error names the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_input(program, args, None)
}

/// [`run`] with `input` on stdin.
pub fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().with_context(|| format!("cannot run {program}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).with_context(|| format!("writing to {program}"))?;
    }
    let out = child.wait_with_output().with_context(|| format!("waiting for {program}"))?;
    if !out.status.success() {
        let shown: Vec<&str> = args.iter().take(12).copied().collect();
        bail!(
            "`{program} {}` failed ({}): {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted (with its links) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `sgm-bench-<suffix>` (deleting a leftover of that name), with
    /// loopback up and IPv6 off.
    pub fn new(suffix: &str) -> Result<Self> {
        let name = format!("{NETNS_PREFIX}{suffix}");
        let _ = run("ip", &["netns", "delete", &name]);
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        run("ip", &args)
    }

    /// [`Netns::exec`] with `input` on stdin.
    pub fn exec_with_input(&self, argv: &[&str], input: &str) -> Result<String> {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        run_with_input("ip", &args, Some(input))
    }

    /// Moves the calling thread into the namespace until the guard is dropped.
    pub fn enter(&self) -> Result<Entered> {
        let home =
            File::open("/proc/thread-self/ns/net").context("opening this thread's network namespace")?;
        let target = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening network namespace {}", self.name))?;
        setns(&target).with_context(|| format!("entering network namespace {}", self.name))?;
        Ok(Entered { home })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "delete", &self.name]);
    }
}

fn setns(ns: &File) -> Result<()> {
    // SAFETY: setns on a namespace file descriptor we hold open; it affects only the
    // calling thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// The calling thread is in another namespace until this is dropped.
#[derive(Debug)]
pub struct Entered {
    home: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.home) {
            // Staying in the wrong namespace would make later steps act on the lab's
            // links; there is no sane way to continue.
            eprintln!("sgmirror-bench: cannot return to the original network namespace: {e:#}");
            std::process::abort();
        }
    }
}

/// The index of link `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("no link {name}");
    }
    Ok(index)
}

/// A veth pair with one end in the root namespace and the other in a namespace.
#[derive(Debug)]
pub struct RootVeth {
    /// The root end.
    pub root: String,
}

impl RootVeth {
    /// Creates `sgmb<suffix>` in the root namespace, its peer `peer` inside `ns`.
    pub fn new(suffix: &str, ns: &Netns, peer: &str) -> Result<Self> {
        let root = format!("{LINK_PREFIX}{suffix}");
        let _ = run("ip", &["link", "delete", &root]);
        run("ip", &["link", "add", &root, "type", "veth", "peer", "name", peer, "netns", ns.name()])?;
        let link = Self { root };
        run("ip", &["link", "set", &link.root, "address", crate::policy::LOCAL_MAC, "up"])?;
        ns.exec(&["ip", "link", "set", peer, "up"])?;
        Ok(link)
    }
}

impl Drop for RootVeth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "delete", &self.root]);
    }
}

/// Deletes the namespaces and links a killed run left behind.
pub fn remove_leftovers() {
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(NETNS_PREFIX) {
                let _ = run("ip", &["netns", "delete", name]);
            }
        }
    }
    if let Ok(list) = run("ip", &["-o", "link", "show"]) {
        for line in list.lines() {
            let Some(name) = line.split(": ").nth(1) else { continue };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(LINK_PREFIX) {
                let _ = run("ip", &["link", "delete", name]);
            }
        }
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so that the
/// long loops stop at the next check and the guards remove the labs.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// An error when SIGINT or SIGTERM arrived.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
