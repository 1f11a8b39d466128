//! The demo's throw-away lab: one network namespace (the peer) joined to the root
//! namespace (the protected host) by a veth pair.
//!
//! The agent runs in the root namespace on purpose: a process started with
//! `ip netns exec` sees a remounted `/sys`, and its bpffs pins would die with it.
//!
//! ```text
//!  root namespace (host)                    sgm-demo-peer (peer)
//!  sgmd-h0  198.18.0.1/24       <── veth ──> sgmd-p0  198.18.0.2/24, 203.0.113.9/32,
//!           2001:db8:100::1/64                        198.51.100.7/32, 198.51.100.8/32,
//!           routes 203.0.113.0/24, 198.51.100.0/24    2001:db8:100::2/64
//! ```
//!
//! Only documentation addresses (RFC 5737, RFC 3849) and the benchmarking range
//! (198.18.0.0/15, RFC 2544) are used, and the routes point at the veth, so no demo
//! packet leaves the machine. The link subnet is not 192.0.2.0/24 because machines of
//! this project's kind use that range for their own uplink. Before building anything,
//! the lab checks that no address or route of the root namespace overlaps its subnets,
//! and refuses to start if one does rather than disturb the host's networking.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::util;

pub const PEER_NS: &str = "sgm-demo-peer";
pub const HOST_LINK: &str = "sgmd-h0";
pub const PEER_LINK: &str = "sgmd-p0";

pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// A source inside the echo-request rule's 203.0.113.0/24.
pub const ICMP_SOURCE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The one /32 the RDP rule allows.
pub const RDP_ALLOWED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// Its neighbour, which no rule allows on 3389.
pub const RDP_DENIED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);

/// Every subnet the lab puts on the host side: the link's own, and the two the rule
/// sources live in (routed over the veth).
const HOST_SUBNETS: [&str; 4] = ["198.18.0.0/24", "203.0.113.0/24", "198.51.100.0/24", "2001:db8:100::/64"];

/// The lab; dropping it deletes the namespace and the links.
pub struct Lab {
    _private: (),
}

impl Lab {
    /// Removes a previous run's leftovers, then builds the lab.
    pub fn create() -> Result<Lab> {
        destroy();
        check_no_overlap()?;
        // From here on, a failure part-way drops the guard, which removes what exists.
        let lab = Lab { _private: () };
        for args in commands() {
            util::run_quiet(Command::new("ip").args(&args))
                .with_context(|| format!("cannot build the lab: `ip {}`", args.join(" ")))?;
        }
        wait_until_up()?;
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        destroy();
    }
}

/// The `ip` invocations that build the lab, in order.
fn commands() -> Vec<Vec<String>> {
    let host = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let peer = |s: &str| {
        let mut v = vec!["-n".to_owned(), PEER_NS.to_owned()];
        v.extend(s.split_whitespace().map(str::to_owned));
        v
    };
    vec![
        host(&format!("netns add {PEER_NS}")),
        host(&format!("link add {HOST_LINK} type veth peer name {PEER_LINK} netns {PEER_NS}")),
        host(&format!("addr add {HOST_V4}/24 dev {HOST_LINK}")),
        host(&format!("-6 addr add {HOST_V6}/64 dev {HOST_LINK} nodad")),
        host(&format!("link set {HOST_LINK} up")),
        host(&format!("route add {} dev {HOST_LINK}", HOST_SUBNETS[1])),
        host(&format!("route add {} dev {HOST_LINK}", HOST_SUBNETS[2])),
        peer("link set lo up"),
        peer(&format!("addr add {PEER_V4}/24 dev {PEER_LINK}")),
        peer(&format!("addr add {ICMP_SOURCE}/32 dev {PEER_LINK}")),
        peer(&format!("addr add {RDP_ALLOWED}/32 dev {PEER_LINK}")),
        peer(&format!("addr add {RDP_DENIED}/32 dev {PEER_LINK}")),
        peer(&format!("-6 addr add {PEER_V6}/64 dev {PEER_LINK} nodad")),
        peer(&format!("link set {PEER_LINK} up")),
    ]
}

/// Fails when an address or a route (other than a default route) of the root namespace
/// overlaps one of the lab's subnets: adding the lab would then change how the host
/// reaches those addresses.
fn check_no_overlap() -> Result<()> {
    for subnet in HOST_SUBNETS {
        let family = if subnet.contains(':') { "-6" } else { "-4" };
        let addrs = util::probe_output(Command::new("ip").args([family, "-o", "addr", "show", "to", subnet]))
            .unwrap_or_default();
        if let Some(line) = addrs.lines().find(|l| !l.trim().is_empty()) {
            bail!(
                "the lab's subnet {subnet} overlaps an address of this host ({}); not touching it",
                line.trim()
            );
        }
        for selector in ["root", "match"] {
            let routes =
                util::probe_output(Command::new("ip").args([family, "route", "show", selector, subnet]))
                    .unwrap_or_default();
            if let Some(line) = routes.lines().find(|l| !l.trim().is_empty() && !l.starts_with("default")) {
                bail!(
                    "the lab's subnet {subnet} overlaps a route of this host ({}); not touching it",
                    line.trim()
                );
            }
        }
    }
    Ok(())
}

/// Waits for the veth carrier, so the first probe does not race the link coming up.
fn wait_until_up() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = util::probe_output(Command::new("ip").args(["-o", "link", "show", "dev", HOST_LINK]))
            .unwrap_or_default();
        if out.contains("LOWER_UP") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{HOST_LINK} did not come up within 5 s: {}", out.trim());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes the namespace (which takes the veth pair with it) and the host link.
fn destroy() {
    let _ = util::probe_output(Command::new("ip").args(["netns", "delete", PEER_NS]));
    if util::probe_output(Command::new("ip").args(["link", "show", "dev", HOST_LINK])).is_some() {
        let _ = util::probe_output(Command::new("ip").args(["link", "delete", "dev", HOST_LINK]));
    }
}

/// Runs `f` on a thread that has joined the peer namespace.
///
/// Network namespaces are per thread, and a socket stays in the namespace it was
/// created in, so the rest of the process keeps the root namespace.
pub fn in_peer<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    std::thread::spawn(move || -> Result<T> {
        let path = format!("/var/run/netns/{PEER_NS}");
        let ns = File::open(&path).with_context(|| format!("cannot open {path}"))?;
        // SAFETY: `ns` is an open namespace file descriptor; setns only changes this
        // thread's network namespace, and this thread ends after `f`.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setns into the peer namespace");
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("the peer-namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_command_targets_the_peer_namespace_and_names_stay_short() {
        let cmds = commands();
        let on_peer: Vec<_> =
            cmds.iter().filter(|c| c.iter().any(|a| a == PEER_LINK || a == "lo") && c[0] != "link").collect();
        assert_eq!(on_peer.len(), 7);
        for c in on_peer {
            assert_eq!(&c[..2], ["-n", PEER_NS], "{c:?}");
        }
        // Link names must fit IFNAMSIZ and match the cleanup's `sgm` prefix.
        for name in [HOST_LINK, PEER_LINK] {
            assert!(name.len() < 16 && name.starts_with("sgm"));
        }
        assert!(PEER_NS.starts_with("sgm-"));
    }
}
