//! A veth pair whose host end stays in the root namespace and whose peer end lives
//! in a fresh network namespace.

use std::process::Command;

use crate::{sh, unique_suffix};

/// A throw-away lab: namespace `sgm-<suffix>`, link `sgmh<suffix>` in the root
/// namespace, link `sgmp<suffix>` in the namespace. Removed on drop.
pub struct Lab {
    /// Network namespace of the peer.
    pub netns: String,
    /// Root-namespace end (where the agent enforces).
    pub host_link: String,
    /// Namespace end.
    pub peer_link: String,
}

impl Lab {
    /// Creates the pair and brings both ends up, with the given addresses (CIDR
    /// notation; IPv6 ones are added with `nodad` so they are usable at once).
    pub fn new(host_addrs: &[&str], peer_addrs: &[&str]) -> Lab {
        let suffix = unique_suffix();
        let lab = Lab {
            netns: format!("sgm-{suffix}"),
            host_link: format!("sgmh{suffix}"),
            peer_link: format!("sgmp{suffix}"),
        };
        sh("ip", &["netns", "add", &lab.netns]);
        sh(
            "ip",
            &[
                "link",
                "add",
                &lab.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &lab.peer_link,
                "netns",
                &lab.netns,
            ],
        );
        for addr in host_addrs {
            add_addr(None, &lab.host_link, addr);
        }
        for addr in peer_addrs {
            add_addr(Some(&lab.netns), &lab.peer_link, addr);
        }
        sh("ip", &["link", "set", &lab.host_link, "up"]);
        lab.ns(&["link", "set", &lab.peer_link, "up"]);
        lab.ns(&["link", "set", "lo", "up"]);
        lab
    }

    /// Runs `ip -n NETNS ARGS`.
    pub fn ns(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.netns.as_str()];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// Routes `cidr` from the root namespace over the host link (so replies to extra
    /// peer addresses go back through the pair).
    pub fn route_to_peer(&self, cidr: &str) {
        sh("ip", &["route", "add", cidr, "dev", &self.host_link]);
    }

    /// Default route inside the namespace, through the pair.
    pub fn peer_default_route(&self, via_v4: Option<&str>, via_v6: Option<&str>) {
        if let Some(gw) = via_v4 {
            self.ns(&["route", "add", "default", "via", gw]);
        }
        if let Some(gw) = via_v6 {
            self.ns(&["-6", "route", "add", "default", "via", gw]);
        }
    }

    /// Whether an XDP program is attached to the host link.
    pub fn host_has_xdp(&self) -> bool {
        let out = sh("ip", &["-d", "link", "show", "dev", &self.host_link]);
        out.contains("xdp")
    }
}

fn add_addr(netns: Option<&str>, link: &str, addr: &str) {
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["addr", "add", addr, "dev", link]);
    if addr.contains(':') {
        args.push("nodad");
    }
    sh("ip", &args);
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer end, which deletes the pair.
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}
