//! End to end: the agent speaks systemd's notification protocol on a real
//! `NOTIFY_SOCKET` (a unix datagram socket bound by the test), as it does under the
//! packaged `Type=notify` unit with `WatchdogSec=`.
//!
//! `READY=1` comes first, and only once XDP is on the link; `WATCHDOG=1` arrives at
//! the cadence `WATCHDOG_USEC` asks for; SIGHUP gives `RELOADING=1` then `READY=1` and
//! re-reads the configuration file (here the rollout path: from audit to enforce, with
//! a failsafe entry that lets a source the groups deny through, counted as
//! `failsafe-1`); SIGTERM gives `STOPPING=1`, and the agent exits cleanly, leaving
//! its pinned enforcement for `sgmirror detach`. Also: the unit's capabilities (without CAP_SYS_ADMIN) are enough, and
//! configuration errors name the file, the key and the line.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sgmirror_e2e::{
    agent::{PinRoot, read_summary},
    lab::Lab,
    notify::NotifySocket,
    peer::{UdpCounter, udp_send},
    sgmirror_bin,
    snapshots::{Rule, one_group},
};

const UDP_PORT: u16 = 7140;

/// Files of the test; removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent; killed on drop if it is still running. Its pins and state directory
/// (`pins`, dropped after the child) detach what it left enforced.
struct Running {
    child: Child,
    #[allow(dead_code)] // held for its Drop
    pins: PinRoot,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `Some(log)` once the agent has exited (for [`NotifySocket::until`]).
fn exited(agent: &mut Running, log: &std::path::Path) -> Option<String> {
    let status = agent.child.try_wait().unwrap()?;
    Some(format!("{status}; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default()))
}

fn config(snapshot: &std::path::Path, mode: &str, failsafe: Option<&str>) -> String {
    let mut text = format!("snapshot = \"{}\"\nmode = \"{mode}\"\ndrop_log = \"off\"\n", snapshot.display());
    if let Some(cidr) = failsafe {
        text.push_str(&format!(
            "\n[[failsafe]]\ncidr = \"{cidr}\"\nprotocol = \"udp\"\nports = \"{UDP_PORT}\"\n"
        ));
    }
    text
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0);
}

#[test]
fn readiness_watchdog_reload_and_stop_are_notified() {
    let lab = Lab::new(&["198.18.140.1/24"], &["198.18.140.2/24", "198.18.140.200/24", "198.18.140.201/24"]);
    let dir = TempDir(std::env::temp_dir().join(format!("sgm-e2e-notify-{}", sgmirror_e2e::unique_suffix())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let host: IpAddr = "198.18.140.1".parse().unwrap();
    let allowed: IpAddr = "198.18.140.2".parse().unwrap();
    let denied: IpAddr = "198.18.140.200".parse().unwrap();
    let other: IpAddr = "198.18.140.201".parse().unwrap();

    let eni = "eni-e2enotify";
    let rules = [
        Rule {
            id: "sgr-udp140",
            egress: false,
            proto: "udp",
            from: UDP_PORT.into(),
            to: UDP_PORT.into(),
            cidr: "198.18.140.0/25",
        },
        Rule { id: "sgr-out140", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
    ];
    let snapshot = dir.0.join("snapshot.json");
    std::fs::write(&snapshot, one_group(eni, "02:00:00:00:8c:01", &["198.18.140.1"], &rules).to_string())
        .unwrap();
    let config_path = dir.0.join("config.toml");
    // The rollout path: audit first.
    std::fs::write(&config_path, config(&snapshot, "audit", None)).unwrap();

    let socket_path = dir.0.join("notify.sock");
    let socket = NotifySocket::bind(&socket_path);
    let log = dir.0.join("agent.log");
    let summary = dir.0.join("summary.json");
    let pins = PinRoot::new();
    let bind = format!("{}={eni}", lab.host_link);
    let udp = UdpCounter::start(SocketAddr::new(host, UDP_PORT));

    let child = Command::new(sgmirror_bin())
        .args(["run", "--config", config_path.to_str().unwrap(), "--bind", &bind, "--no-metrics"])
        .args(pins.args())
        .args(["--summary-json", summary.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting sgmirror run");
    let mut agent = Running { child, pins };

    // READY=1 is the first message, and by then the policy is on the link.
    let first = socket.until("READY=1", Duration::from_secs(60), || exited(&mut agent, &log));
    assert_eq!(first.len(), 1, "READY=1 must come first: {first:?}");
    assert!(first[0].contains("STATUS=enforcing (audit) on 1 link(s)"), "{first:?}");
    assert!(lab.host_has_xdp(), "READY=1 before XDP was attached");
    udp_send(&lab.netns, allowed, SocketAddr::new(host, UDP_PORT), 3);
    udp_send(&lab.netns, denied, SocketAddr::new(host, UDP_PORT), 3);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!([udp.received_from(allowed), udp.received_from(denied)], [3, 3], "audit passes everything");

    // Watchdog: every WATCHDOG_USEC/2 = 100 ms from the main loop; over 1.5 s about
    // 15, counted loosely (the machine may be busy), and nothing else is sent.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        if let Some(m) = socket.next(Duration::from_millis(300)) {
            assert_eq!(m, "WATCHDOG=1");
            pings += 1;
        }
    }
    assert!((6..=20).contains(&pings), "{pings} watchdog pings in 1.5 s with WATCHDOG_USEC=200000");

    // SIGHUP: the configuration now enforces, with a failsafe entry for the denied
    // source.
    std::fs::write(&config_path, config(&snapshot, "enforce", Some("198.18.140.200/32"))).unwrap();
    signal(&agent.child, libc::SIGHUP);
    let reload: Vec<String> =
        socket.until_ignoring_watchdog("RELOADING=1", Duration::from_secs(10), || exited(&mut agent, &log));
    assert_eq!(reload.len(), 1, "{reload:?}");
    assert!(reload[0].contains("MONOTONIC_USEC="), "{reload:?}");
    let ready: Vec<String> =
        socket.until_ignoring_watchdog("READY=1", Duration::from_secs(30), || exited(&mut agent, &log));
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert!(ready[0].contains("enforcing (enforce) on 1 link(s), 1 failsafe entries"), "{ready:?}");
    udp_send(&lab.netns, denied, SocketAddr::new(host, UDP_PORT), 4);
    udp_send(&lab.netns, other, SocketAddr::new(host, UDP_PORT), 4);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(udp.received_from(denied), 3 + 4, "the failsafe source passes after the reload");
    assert_eq!(udp.received_from(other), 0, "enforce mode after the reload drops the rest");

    // SIGTERM: STOPPING=1, then a clean exit with the programs detached.
    signal(&agent.child, libc::SIGTERM);
    let stopping: Vec<String> =
        socket.until_ignoring_watchdog("STOPPING=1", Duration::from_secs(10), || exited(&mut agent, &log));
    assert_eq!(stopping, ["STOPPING=1"]);
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    // A stopped agent leaves its policy enforced (pinned); `detach` removes it.
    assert!(lab.host_has_xdp(), "a clean stop must leave the pinned enforcement in place");
    let detach = agent.pins.detach(None);
    assert!(detach.status.success(), "{detach:?}");
    assert!(!lab.host_has_xdp(), "XDP left on the link after detach");

    // The failsafe hit is counted as a hit of rule failsafe-1.
    let summary = read_summary(&summary);
    let hits = summary["interfaces"][0]["rule_hits"].as_array().expect("rule_hits").clone();
    let failsafe = hits.iter().find(|h| h["rule"] == "failsafe-1").unwrap_or_else(|| panic!("{hits:?}"));
    assert_eq!(failsafe["packets"], 1, "one flow, one rule hit: {hits:?}");
}

#[test]
fn a_missing_explicit_configuration_is_an_error_naming_it() {
    let out = Command::new(sgmirror_bin())
        .args(["run", "--config", "/nonexistent/sgmirror.toml", "--no-metrics"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/sgmirror.toml"), "{stderr}");
}

#[test]
fn an_unknown_key_is_an_error_naming_key_and_line() {
    let dir = TempDir(std::env::temp_dir().join(format!("sgm-e2e-config-{}", sgmirror_e2e::unique_suffix())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("config.toml");
    std::fs::write(&path, "mode = \"audit\"\n\nflow_capacty = 10\n").unwrap();
    let out =
        Command::new(sgmirror_bin()).args(["run", "--config", path.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("flow_capacty") && stderr.contains("line 3"), "{stderr}");
}

/// The capabilities the packaged unit grants (`CapabilityBoundingSet=`), as setpriv
/// names them (`+bpf,+net_admin,…`).
fn unit_capabilities() -> String {
    let unit =
        std::fs::read_to_string(sgmirror_e2e::workspace_root().join("packaging/sgmirror.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds capabilities");
    assert!(!line.contains("CAP_SYS_ADMIN"), "the unit must not need CAP_SYS_ADMIN");
    line.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The agent, run as root with only the unit's capabilities (bounding set, and
/// no_new_privs as `NoNewPrivileges=yes`), enforces and stops cleanly: the unit's
/// capability list is enough.
#[test]
fn the_units_capabilities_are_enough_to_enforce() {
    let caps = unit_capabilities();
    let lab = Lab::new(&["198.18.141.1/24"], &["198.18.141.2/24", "198.18.141.200/24"]);
    let dir = TempDir(std::env::temp_dir().join(format!("sgm-e2e-caps-{}", sgmirror_e2e::unique_suffix())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let host: IpAddr = "198.18.141.1".parse().unwrap();
    let allowed: IpAddr = "198.18.141.2".parse().unwrap();
    let denied: IpAddr = "198.18.141.200".parse().unwrap();
    let eni = "eni-e2ecaps";
    let rules = [
        Rule {
            id: "sgr-udp141",
            egress: false,
            proto: "udp",
            from: UDP_PORT.into(),
            to: UDP_PORT.into(),
            cidr: "198.18.141.0/25",
        },
        Rule { id: "sgr-out141", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
    ];
    let snapshot = dir.0.join("snapshot.json");
    std::fs::write(&snapshot, one_group(eni, "02:00:00:00:8d:01", &["198.18.141.1"], &rules).to_string())
        .unwrap();
    let config_path = dir.0.join("config.toml");
    std::fs::write(&config_path, config(&snapshot, "enforce", None)).unwrap();
    let socket_path = dir.0.join("notify.sock");
    let socket = NotifySocket::bind(&socket_path);
    let log = dir.0.join("agent.log");
    // The pin root must be under a mounted bpffs: without CAP_SYS_ADMIN the agent
    // cannot mount one.
    let pins = PinRoot::new();
    let bind = format!("{}={eni}", lab.host_link);
    let udp = UdpCounter::start(SocketAddr::new(host, UDP_PORT));

    let child = Command::new("setpriv")
        .args(["--bounding-set", &format!("-all,{caps}"), "--inh-caps", "-all", "--no-new-privs", "--"])
        .arg(sgmirror_bin())
        .args(["run", "--config", config_path.to_str().unwrap(), "--bind", &bind, "--no-metrics"])
        .args(pins.args())
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting sgmirror under setpriv (util-linux)");
    let mut agent = Running { child, pins };
    socket.until("READY=1", Duration::from_secs(60), || exited(&mut agent, &log));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim().to_owned();
    let cap_sys_admin = 1u64 << 21;
    assert_eq!(u64::from_str_radix(&bounding, 16).unwrap() & cap_sys_admin, 0, "CapBnd {bounding}");
    assert!(lab.host_has_xdp());
    udp_send(&lab.netns, allowed, SocketAddr::new(host, UDP_PORT), 2);
    udp_send(&lab.netns, denied, SocketAddr::new(host, UDP_PORT), 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!([udp.received_from(allowed), udp.received_from(denied)], [2, 0]);
    signal(&agent.child, libc::SIGTERM);
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(lab.host_has_xdp(), "a clean stop must leave the pinned enforcement in place");
    let detach = agent.pins.detach(None);
    assert!(detach.status.success(), "{detach:?}");
    assert!(!lab.host_has_xdp());
}
