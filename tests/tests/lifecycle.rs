//! Production lifecycle, end to end: the agent's links are pinned, so enforcement
//! survives the agent (SIGTERM, kill -9 in the middle of an update), a new agent
//! adopts the pinned links by swapping its programs in atomically (one program on the
//! link, never a gap), `sgmirror status` reads the pinned state with the agent running
//! or stopped, and `sgmirror detach` ends enforcement.
//!
//! Enforcement is probed throughout by a peer sending UDP to an allowed and a denied
//! port every millisecond: a gap would deliver a denied datagram, a wrong drop would
//! lose an allowed one.

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::Duration,
};

use aya::programs::{SchedClassifier, TcAttachType};
use sgmirror_e2e::{
    agent::{Agent, PinRoot, run_to_end},
    lab::Lab,
    peer::UdpCounter,
    probe::UdpProbe,
    snapshots::{Rule, one_group},
    tempdir::TempDir,
};

const ALLOWED_PORT: u16 = 7100;
const DENIED_PORT: u16 = 7101;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The policy: UDP to the allowed port from the lab's /24, all outbound; `extra_port`
/// adds a TCP rule, so two versions differ without changing the probed classes.
fn snapshot(net: u8, extra_port: Option<i32>) -> String {
    let cidr = format!("198.18.{net}.0/24");
    let host = format!("198.18.{net}.1");
    let mut rules = vec![
        Rule { id: "sgr-udp", egress: false, proto: "udp", from: 7100, to: 7100, cidr: &cidr },
        Rule { id: "sgr-out", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
    ];
    if let Some(port) = extra_port {
        rules.push(Rule { id: "sgr-extra", egress: false, proto: "tcp", from: port, to: port, cidr: &cidr });
    }
    one_group("eni-life101", "02:00:00:00:01:01", &[&host], &rules).to_string()
}

struct Setup {
    net: u8,
    host: IpAddr,
    peer: IpAddr,
    lab: Lab,
    dir: TempDir,
    allowed: UdpCounter,
    denied: UdpCounter,
}

impl Setup {
    /// A lab on 198.18.`net`.0/24 (each test its own, as they run in parallel).
    fn new(net: u8) -> Setup {
        let (host, peer) = (ip(&format!("198.18.{net}.1")), ip(&format!("198.18.{net}.2")));
        let lab = Lab::new(&[&format!("{host}/24")], &[&format!("{peer}/24")]);
        let dir = TempDir::new("sgm-life");
        std::fs::write(dir.path().join("snapshot.json"), snapshot(net, None)).unwrap();
        let allowed = UdpCounter::start(SocketAddr::new(host, ALLOWED_PORT));
        let denied = UdpCounter::start(SocketAddr::new(host, DENIED_PORT));
        Setup { net, host, peer, lab, dir, allowed, denied }
    }

    fn snapshot_path(&self) -> String {
        self.dir.path().join("snapshot.json").display().to_string()
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--snapshot".into(),
            self.snapshot_path(),
            "--bind".into(),
            format!("{}=eni-life101", self.lab.host_link),
            "--no-metrics".into(),
            "--drop-log".into(),
            "off".into(),
            "--poll-interval-ms".into(),
            "100000".into(),
        ]
    }

    fn probe(&self) -> UdpProbe {
        UdpProbe::start(
            &self.lab.netns,
            self.peer,
            SocketAddr::new(self.host, ALLOWED_PORT),
            SocketAddr::new(self.host, DENIED_PORT),
            Duration::from_millis(1),
        )
    }

    /// Stops the probe, lets the last datagrams arrive, and checks that every allowed
    /// one was delivered and no denied one was.
    fn check_probe(&self, probe: UdpProbe) -> (u64, u64) {
        let (sent_allowed, sent_denied) = probe.stop();
        std::thread::sleep(Duration::from_millis(300));
        let delivered_allowed = self.allowed.received_from(self.peer) as u64;
        let delivered_denied = self.denied.received_from(self.peer) as u64;
        assert!(
            sent_allowed > 200 && sent_denied > 200,
            "the probe sent too little: {sent_allowed}/{sent_denied}"
        );
        assert_eq!(
            delivered_denied, 0,
            "denied datagrams delivered (a gap in enforcement) of {sent_denied} sent"
        );
        assert_eq!(delivered_allowed, sent_allowed, "allowed datagrams lost (a wrong drop)");
        (sent_allowed, sent_denied)
    }
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The XDP program on `link`: (program id, mode) from iproute2, or `None`.
fn xdp_on(link: &str) -> Option<(u64, u64)> {
    let out = Command::new("ip").args(["-d", "-j", "link", "show", "dev", link]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let xdp = json.get(0)?.get("xdp")?;
    Some((xdp["prog"]["id"].as_u64()?, xdp["mode"].as_u64()?))
}

/// Ids and names of the TCX egress programs on `link`.
fn tcx_on(link: &str) -> Vec<(u32, String)> {
    let (_, programs) = SchedClassifier::query_tcx(link, TcAttachType::Egress).expect("TCX query");
    programs.iter().map(|p| (p.id(), p.name_as_str().unwrap_or("").to_owned())).collect()
}

fn status_json(pins: &PinRoot) -> serde_json::Value {
    let out = pins.status(true);
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

/// Ingress packets dropped for want of a rule, from the pinned counters.
fn ingress_no_rule_drops(status: &serde_json::Value) -> u64 {
    status["links"][0]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "ingress" && c["verdict"] == "drop" && c["reason"] == "no-rule")
        .map(|c| c["packets"].as_u64().unwrap())
        .sum()
}

#[test]
fn kill_9_in_an_update_then_a_new_agent_adopts_without_a_gap() {
    let s = Setup::new(101);
    let pins = PinRoot::new();
    let link = s.lab.host_link.clone();
    let args = s.args();
    let mut agent = Agent::start_in(&refs(&args), &pins);
    let (first_xdp, _) = xdp_on(&link).expect("the first agent attached XDP");
    let probe = s.probe();
    std::thread::sleep(Duration::from_millis(200));

    // Updates in flight: each agent is killed (no clean-up at all) at a different
    // moment after it was told to reload a changed policy — before, while and after
    // the new generation is loaded and swapped in — and the next agent adopts what
    // the kernel holds.
    for (round, delay_ms) in [5u64, 20, 40, 60, 90, 130, 200].into_iter().enumerate() {
        let extra = if round % 2 == 0 { Some(7102) } else { None };
        std::fs::write(s.dir.path().join("snapshot.json"), snapshot(s.net, extra)).unwrap();
        agent.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(delay_ms));
        agent.kill9();
        // No agent for a while: the kernel keeps enforcing the pinned programs.
        std::thread::sleep(Duration::from_millis(100));
        assert!(xdp_on(&link).is_some(), "round {round}: the XDP program went with the killed agent");
        assert_eq!(tcx_on(&link).len(), 1, "round {round}: one TCX program");
        agent = Agent::start_in(&refs(&args), &pins);
        assert!(agent.log().contains("adopted the pinned"), "round {round}: no adoption:\n{}", agent.log());
    }
    agent.kill9();
    std::thread::sleep(Duration::from_millis(300));
    assert!(xdp_on(&link).is_some(), "the XDP program went with the killed agent");
    let stopped = status_json(&pins);
    assert_eq!(stopped["agent_running"], false, "{stopped}");
    assert_eq!(stopped["enforcing"], true, "{stopped}");

    let mut second = Agent::start_in(&refs(&args), &pins);
    assert!(second.log().contains("adopted the pinned"), "the new agent did not adopt:\n{}", second.log());
    std::thread::sleep(Duration::from_millis(300));
    let (_, sent_denied) = s.check_probe(probe);

    let (xdp_id, _) = xdp_on(&link).expect("XDP after the restart");
    assert_ne!(xdp_id, first_xdp, "the new agent's program replaced the old one");
    let tcx = tcx_on(&link);
    assert_eq!(tcx.len(), 1, "exactly one TCX egress program: {tcx:?}");
    let running = status_json(&pins);
    assert_eq!(running["agent_running"], true, "{running}");
    assert_eq!(
        running["links"][0]["xdp_program_id"], xdp_id,
        "the pinned link holds the program on the link"
    );
    assert_eq!(running["links"][0]["tcx_program_id"], tcx[0].0, "{running}");
    assert!(running["links"][0]["record"]["generation"].as_u64().unwrap() >= 8, "{running}");
    // Every denied datagram was dropped by an sgmirror program (other no-rule drops,
    // such as IPv6 multicast listener reports, only add to this).
    let drops = ingress_no_rule_drops(&running);
    assert!(drops >= sent_denied, "{drops} no-rule drops < {sent_denied} denied datagrams sent");

    let (_, status) = second.stop();
    assert!(status.success(), "agent exited with {status}");
    assert_eq!(xdp_on(&link).map(|(id, _)| id), Some(xdp_id), "SIGTERM leaves the pinned program");
    assert_eq!(tcx_on(&link).len(), 1);
    let detach = pins.detach(Some(&link));
    assert!(detach.status.success(), "{detach:?}");
    assert_eq!(xdp_on(&link), None, "detach removes the XDP program");
    assert!(tcx_on(&link).is_empty(), "detach removes the TCX program");
}

#[test]
fn an_upgraded_agent_replaces_the_program_atomically() {
    let s = Setup::new(102);
    let pins = PinRoot::new();
    let link = s.lab.host_link.clone();
    let args = s.args();
    let old = Agent::start_in(&refs(&args), &pins);
    let (old_id, mode) = xdp_on(&link).expect("XDP attached");
    let probe = s.probe();
    std::thread::sleep(Duration::from_millis(300));
    // The "upgrade": the old agent stops (as a package upgrade stops the service),
    // enforcement stays pinned, and a new agent whose program differs (the drop log
    // compiled in, with its own rate) adopts the links.
    let (_, status) = old.stop();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    let mut new_args = args.clone();
    new_args.truncate(new_args.len() - 4);
    new_args.extend(["--drop-log".into(), "log".into(), "--drop-log-rate".into(), "50".into()]);
    new_args.extend(["--poll-interval-ms".into(), "100000".into()]);
    let mut new = Agent::start_in(&refs(&new_args), &pins);
    assert!(new.log().contains("adopted the pinned"), "{}", new.log());
    std::thread::sleep(Duration::from_millis(300));
    s.check_probe(probe);
    let (new_id, new_mode) = xdp_on(&link).expect("XDP after the upgrade");
    assert_ne!(new_id, old_id, "the program on the link changed");
    assert_eq!(new_mode, mode, "the XDP mode is kept");
    assert_eq!(tcx_on(&link).len(), 1, "exactly one TCX egress program");
    drop(new);
}

#[test]
fn status_reports_a_running_and_a_stopped_agent_and_detach_ends_it() {
    let s = Setup::new(103);
    let pins = PinRoot::new();
    let link = s.lab.host_link.clone();

    let none = pins.status(false);
    assert!(none.status.success());
    let text = String::from_utf8_lossy(&none.stdout);
    assert!(text.contains("not enforcing"), "{text}");

    let agent = Agent::start_in(&refs(&s.args()), &pins);
    // A second agent on the same state would swap programs over the first: refused.
    let mut second: Vec<String> = vec!["run".into()];
    second.extend(s.args());
    second.extend(pins.args());
    let out = run_to_end(&refs(&second));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("another sgmirror agent"), "{stderr}");
    let probe = s.probe();
    std::thread::sleep(Duration::from_millis(300));
    let (_, sent_denied) = s.check_probe(probe);

    let running = pins.status(false);
    let text = String::from_utf8_lossy(&running.stdout).into_owned();
    assert!(text.contains(&format!("agent: running (pid {})", agent.pid())), "{text}");
    assert!(text.contains(&format!("{link}: enforcing")), "{text}");
    assert!(text.contains("interface eni-life101  mode enforce  XDP native  TC tcx"), "{text}");
    assert!(text.contains("policy generation 1  hash fnv1a64:"), "{text}");
    let json = status_json(&pins);
    let l = &json["links"][0];
    assert_eq!(l["record"]["interface_id"], "eni-life101");
    assert_eq!(l["record"]["xdp_mode"], "native");
    assert_eq!(l["record"]["mode"], "enforce");
    assert_eq!(l["record"]["source_errors"], serde_json::json!({}));
    assert!(ingress_no_rule_drops(&json) >= sent_denied, "{json}");
    let allowed_then = l["allowed_packets"].as_u64().unwrap();
    assert!(allowed_then >= 200, "{json}");

    let (_, status) = agent.stop();
    assert!(status.success());
    let stopped = pins.status(false);
    let text = String::from_utf8_lossy(&stopped.stdout).into_owned();
    assert!(text.contains("agent: not running"), "{text}");
    assert!(text.contains(&format!("{link}: enforcing")), "{text}");
    let json = status_json(&pins);
    assert_eq!(json["enforcing"], true);
    assert!(
        json["links"][0]["allowed_packets"].as_u64().unwrap() >= allowed_then,
        "counters read from the pins"
    );

    // No usable policy at the next start: nothing is touched, the pinned policy stays.
    let xdp_before = xdp_on(&link);
    std::fs::write(s.dir.path().join("snapshot.json"), "{\"SecurityGroupRules\": 7}").unwrap();
    let mut bad: Vec<String> = vec!["run".into()];
    bad.extend(s.args());
    bad.extend(pins.args());
    let out = run_to_end(&refs(&bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no usable policy at start"), "{stderr}");
    assert_eq!(xdp_on(&link), xdp_before, "the pinned enforcement is untouched");

    let out = pins.detach(None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("detached: "), "{text}");
    assert_eq!(xdp_on(&link), None);
    let again = pins.detach(None);
    let text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success() && text.contains("nothing to detach"), "detach is idempotent: {text}");
    let after = pins.status(false);
    assert!(String::from_utf8_lossy(&after.stdout).contains("not enforcing"));
}

#[test]
fn pins_of_a_link_that_is_gone_are_removed_at_the_next_start() {
    let pins = PinRoot::new();
    let gone = Setup::new(106);
    let agent = Agent::start_in(&refs(&gone.args()), &pins);
    let (_, status) = agent.stop();
    assert!(status.success());
    let dirs = |root: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(root.join("v1"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    assert_eq!(dirs(&pins.pin_root).len(), 1, "the stopped agent's pins stay");
    drop(gone); // deletes the link; the kernel detaches its programs, the pins stay

    let next = Setup::new(107);
    let mut agent = Agent::start_in(&refs(&next.args()), &pins);
    assert!(agent.log().contains("removing the pins of a link that no longer exists"), "{}", agent.log());
    let left = dirs(&pins.pin_root);
    assert_eq!(left.len(), 1, "only the new link's pins: {left:?}");
    let ifindex = sgmirror_e2e::foreign::ifindex(&next.lab.host_link);
    assert!(left[0].ends_with(&format!("-if{ifindex}")), "{left:?}");
}
