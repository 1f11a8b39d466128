//! Native XDP refused by the kernel, forced: a veth pair whose MTU (9000) is above
//! what native XDP on veth takes. With `--xdp-mode auto` the agent falls back to
//! generic XDP, says why in its log, enforces, and shows the mode in `status` and in
//! the `sgmirror_attach_mode_info` metric; with `--xdp-mode native` it refuses with the
//! reason and attaches nothing. (The ENA rules are unit tests of `preflight`.)

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use sgmirror_e2e::{
    agent::{Agent, PinRoot, run_to_end},
    lab::Lab,
    peer::UdpCounter,
    probe::UdpProbe,
    snapshots::{Rule, one_group},
    tempdir::TempDir,
};

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connecting to the metrics server");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn native_xdp_refused_by_the_kernel_falls_back_to_generic_visibly() {
    let lab = Lab::new(&["198.18.105.1/24"], &["198.18.105.2/24"]);
    lab.ns(&["link", "set", &lab.peer_link, "mtu", "9000"]);
    sgmirror_e2e::sh("ip", &["link", "set", &lab.host_link, "mtu", "9000"]);
    let (host, peer): (IpAddr, IpAddr) = ("198.18.105.1".parse().unwrap(), "198.18.105.2".parse().unwrap());
    let rules = [
        Rule { id: "sgr-udp", egress: false, proto: "udp", from: 7100, to: 7100, cidr: "198.18.105.0/24" },
        Rule { id: "sgr-out", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
    ];
    let dir = TempDir::new("sgm-fallback");
    let snap = dir.path().join("snapshot.json");
    std::fs::write(&snap, one_group("eni-fb105", "02:00:00:00:01:05", &["198.18.105.1"], &rules).to_string())
        .unwrap();
    let pins = PinRoot::new();
    let bind = format!("{}=eni-fb105", lab.host_link);
    let base = ["--snapshot", snap.to_str().unwrap(), "--bind", &bind, "--drop-log", "off"];

    // Native only: refused with the kernel's reason, nothing attached.
    let mut args: Vec<String> = ["run"].iter().chain(base.iter()).map(|s| (*s).to_owned()).collect();
    args.extend(["--xdp-mode".into(), "native".into(), "--no-metrics".into()]);
    args.extend(pins.args());
    let out = run_to_end(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "native XDP on MTU 9000 veth was accepted:\n{stderr}");
    assert!(stderr.contains("(native)") && stderr.contains("out of range"), "the reason is given:\n{stderr}");
    assert!(!lab.host_has_xdp(), "nothing attached after the refusal");

    // Auto: generic, with the reason in the log, the status and the metric.
    let mut auto = base.to_vec();
    auto.extend(["--xdp-mode", "auto", "--metrics-addr", "127.0.0.1:0"]);
    let mut agent = Agent::start_in(&auto, &pins);
    agent.wait_for("serving metrics on", Duration::from_secs(10));
    let log = agent.log();
    assert!(
        log.contains("falling back to generic XDP") && log.contains("the kernel refused native XDP"),
        "the fallback and its reason are logged:\n{log}"
    );
    let addr = log
        .lines()
        .find_map(|l| l.split("serving metrics on http://").nth(1)?.split('/').next().map(str::to_owned))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let metrics = scrape(&addr);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sgmirror_attach_mode_info{") && l.contains("hook=\"xdp\""))
        .unwrap_or_else(|| panic!("no XDP attach mode metric:\n{metrics}"));
    assert!(line.contains("mode=\"generic\"") && line.ends_with(" 1"), "{line}");

    let status = pins.status(true);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let record = &json["links"][0]["record"];
    assert_eq!(record["xdp_mode"], "generic", "{json}");
    assert!(record["xdp_fallback_reason"].as_str().unwrap().contains("refused native XDP"), "{json}");
    let ip_link = sgmirror_e2e::sh("ip", &["-d", "link", "show", "dev", &lab.host_link]);
    assert!(ip_link.contains("xdpgeneric"), "generic XDP on the link:\n{ip_link}");

    // And it enforces in generic mode.
    let allowed = UdpCounter::start(SocketAddr::new(host, 7100));
    let denied = UdpCounter::start(SocketAddr::new(host, 7101));
    let probe = UdpProbe::start(
        &lab.netns,
        peer,
        SocketAddr::new(host, 7100),
        SocketAddr::new(host, 7101),
        Duration::from_millis(1),
    );
    std::thread::sleep(Duration::from_millis(400));
    let (sent_allowed, sent_denied) = probe.stop();
    std::thread::sleep(Duration::from_millis(200));
    assert!(sent_denied > 100);
    assert_eq!(denied.received_from(peer), 0, "denied datagrams delivered in generic mode");
    assert_eq!(allowed.received_from(peer) as u64, sent_allowed, "allowed datagrams lost in generic mode");

    let (_, status) = agent.stop();
    assert!(status.success());
    drop(pins);
}
