//! Removes what crashed test or demo runs may have left behind.
//!
//! Tests and the demo name everything they create with an `sgm` prefix (network
//! namespaces `sgm-*`, links `sgm*`, bpffs pins `sgmirror-test*`) so that a later run can
//! find and remove the leftovers of one that was killed before its guards ran.
//!
//! The AWS-source tests also start processes: `moto_server` from the moto venv and the
//! fixtures of `tests/fixtures/aws/` (IMDS stand-in, fault proxy). Leftovers are found
//! by those paths on their command lines, never by a program name alone.

use std::path::Path;
use std::process::Command;

use crate::{moto_venv, util};

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
    kill_fixture_processes(prefix);
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

/// Kills the processes the AWS-source tests started (their command line names the moto
/// venv or the AWS fixtures directory), except this process.
fn kill_fixture_processes(prefix: &str) {
    let venv = moto_venv::venv_path().display().to_string();
    let fixtures = util::repo_root().join("tests/fixtures/aws").display().to_string();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = cmdline_text(&raw);
        if is_fixture_process(&cmdline, &venv, &fixtures) {
            // SAFETY: kill(2) with a pid read from /proc; at worst it is gone already.
            let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            if rc == 0 {
                eprintln!("[{prefix}] killed leftover test process {pid}: {cmdline}");
            }
        }
    }
}

/// `/proc/PID/cmdline` (NUL-separated) as one line.
fn cmdline_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).split('\0').filter(|a| !a.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Whether a command line is one of the AWS tests' processes: a program of the moto
/// venv, or a script from the fixtures directory.
fn is_fixture_process(cmdline: &str, venv: &str, fixtures: &str) -> bool {
    cmdline
        .split(' ')
        .any(|arg| arg.starts_with(&format!("{venv}/")) || arg.starts_with(&format!("{fixtures}/")))
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
    fn fixture_processes_are_recognised_by_path_only() {
        let (venv, fix) = ("/r/target/tools/moto-venv", "/r/tests/fixtures/aws");
        assert!(is_fixture_process(
            "/r/target/tools/moto-venv/bin/python /r/target/tools/moto-venv/bin/moto_server -H 127.0.0.1",
            venv,
            fix
        ));
        assert!(is_fixture_process(
            "/usr/bin/python3 /r/tests/fixtures/aws/imds.py http://127.0.0.1:1 i-1",
            venv,
            fix
        ));
        assert!(!is_fixture_process("/tmp/other/bin/moto_server -p 5000", venv, fix));
        assert!(!is_fixture_process("vim /r/target/tools/moto-venv-notes", venv, fix));
        assert_eq!(cmdline_text(b"python\0imds.py\0"), "python imds.py");
    }

    #[test]
    fn parses_link_list_with_peers() {
        let list = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n\
                    7: sgmd-h0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n";
        assert_eq!(link_names(list).collect::<Vec<_>>(), ["lo", "sgmd-h0"]);
    }
}
