//! Removes what crashed test or demo runs may have left behind.
//!
//! Tests and the demo name everything they create with an `sgm` prefix (network
//! namespaces `sgm-*`, links `sgm*`, bpffs pins `sgmirror-test*`) so that a later run can
//! find and remove the leftovers of one that was killed before its guards ran.

use std::path::Path;
use std::process::Command;

use crate::util;

/// bpffs directories that tests pin into.
const BPFFS: &str = "/sys/fs/bpf";
const TEST_PIN_PREFIX: &str = "sgmirror-test";
/// The demo's pin roots (`xtask/src/agent.rs`).
const DEMO_PIN_PREFIX: &str = "sgmirror-demo";

/// Deletes leftover `sgm-*` namespaces, `sgm*` links in this namespace and test pins.
/// Best effort: reports what it removed and what it could not remove, never fails.
pub fn leftovers(prefix: &str) {
    if let Some(list) = util::probe_output(Command::new("ip").args(["netns", "list"])) {
        for ns in netns_names(&list).filter(|n| n.starts_with("sgm-")) {
            remove(
                prefix,
                &format!("network namespace {ns}"),
                Command::new("ip").args(["netns", "delete", ns]),
            );
        }
    }
    if let Some(list) = util::probe_output(Command::new("ip").args(["-o", "link", "show"])) {
        for link in link_names(&list).filter(|l| l.starts_with("sgm")) {
            // Deleting one end of a veth pair deletes the other: it may be gone already.
            if util::probe_output(Command::new("ip").args(["link", "show", "dev", link])).is_some() {
                remove(
                    prefix,
                    &format!("link {link}"),
                    Command::new("ip").args(["link", "delete", "dev", link]),
                );
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(BPFFS) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEST_PIN_PREFIX) || name.starts_with(DEMO_PIN_PREFIX) {
                remove_pins(prefix, &entry.path());
            }
        }
    }
}

fn remove(prefix: &str, what: &str, cmd: &mut Command) {
    match util::run_quiet(cmd) {
        Ok(()) => eprintln!("[{prefix}] removed leftover {what}"),
        Err(e) => eprintln!("[{prefix}] warning: cannot remove leftover {what}: {e:#}"),
    }
}

fn remove_pins(prefix: &str, path: &Path) {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match result {
        Ok(()) => eprintln!("[{prefix}] removed leftover pins {}", path.display()),
        Err(e) => eprintln!("[{prefix}] warning: cannot remove leftover pins {}: {e}", path.display()),
    }
}

/// Names from `ip netns list` (`NAME` or `NAME (id: N)` per line).
fn netns_names(list: &str) -> impl Iterator<Item = &str> {
    list.lines().filter_map(|l| l.split_whitespace().next())
}

/// Names from `ip -o link show` (`N: NAME[@PEER]: <FLAGS> …` per line).
fn link_names(list: &str) -> impl Iterator<Item = &str> {
    list.lines().filter_map(|l| {
        let name = l.split(": ").nth(1)?;
        Some(name.split('@').next().unwrap_or(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_netns_list() {
        let list = "sgm-e2e-1 (id: 0)\nother\n";
        assert_eq!(netns_names(list).collect::<Vec<_>>(), ["sgm-e2e-1", "other"]);
    }

    #[test]
    fn parses_link_list_with_peers() {
        let list = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n\
                    7: sgmd-h0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n";
        assert_eq!(link_names(list).collect::<Vec<_>>(), ["lo", "sgmd-h0"]);
    }
}
