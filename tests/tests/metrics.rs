//! End to end: the agent serves Prometheus metrics while it enforces. After real
//! traffic through a veth pair, a scrape with a real HTTP client (`curl`) shows the
//! exact packet counts per verdict, reason and rule, and the exposition passes
//! `promtool check metrics`. A metrics address that cannot be bound does not stop
//! enforcement.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use sgmirror_e2e::{
    agent::{Agent, read_summary},
    lab::Lab,
    peer::{UdpCounter, udp_send},
    snapshots::{Rule, one_group},
    workspace_root,
};

/// Metrics ports of the tests in this file (unique in the suite).
const PORT_SCRAPE: u16 = 12961;
const PORT_TAKEN: u16 = 12962;
const UDP_PORT: u16 = 7061;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/prometheus/usr/bin/promtool"));
    assert!(path.is_file(), "promtool not found at {}: run `cargo xtask setup`", path.display());
    path
}

/// `GET url` with curl: (status, header lines, body).
fn curl(args: &[&str], url: &str) -> (u16, Vec<String>, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--include"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl (apt-get install curl, or `cargo xtask setup`)");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("the response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut head = head.lines();
    let status = head.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    (status, head.map(str::to_owned).collect(), body.to_owned())
}

/// The value of the series `name{labels}` in an exposition.
fn value(body: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    let line = body
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no series {series} in the scrape:\n{body}"));
    line[prefix.len()..].parse().unwrap_or_else(|_| panic!("not an integer: {line}"))
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sgm-e2e-metrics-{}", sgmirror_e2e::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A lab on 198.18.`k`.0/24 with an agent allowing UDP `UDP_PORT` from .0/25 only:
/// peer .2 is allowed, .200 is denied.
struct Setup {
    lab: Lab,
    dir: PathBuf,
    eni: String,
    host: IpAddr,
    allowed: IpAddr,
    denied: IpAddr,
}

impl Setup {
    fn new(k: u8) -> Setup {
        let lab = Lab::new(
            &[&format!("198.18.{k}.1/24")],
            &[&format!("198.18.{k}.2/24"), &format!("198.18.{k}.200/24")],
        );
        let eni = format!("eni-e2e{k}");
        let dir = tempdir();
        let cidr = format!("198.18.{k}.0/25");
        let rules = [
            Rule {
                id: "sgr-udp61",
                egress: false,
                proto: "udp",
                from: UDP_PORT.into(),
                to: UDP_PORT.into(),
                cidr: &cidr,
            },
            Rule { id: "sgr-out61", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
        ];
        let host = format!("198.18.{k}.1");
        let snapshot = one_group(&eni, "02:00:00:00:61:01", &[&host], &rules);
        std::fs::write(dir.join("snapshot.json"), snapshot.to_string()).unwrap();
        Setup {
            lab,
            dir,
            eni,
            host: ip(&host),
            allowed: ip(&format!("198.18.{k}.2")),
            denied: ip(&format!("198.18.{k}.200")),
        }
    }

    fn start_agent(&self, metrics_addr: &str) -> Agent {
        let snapshot = self.dir.join("snapshot.json");
        let summary = self.dir.join("summary.json");
        let bind = format!("{}={}", self.lab.host_link, self.eni);
        Agent::start(&[
            "--snapshot",
            snapshot.to_str().unwrap(),
            "--bind",
            &bind,
            "--xdp-mode",
            "native",
            "--summary-json",
            summary.to_str().unwrap(),
            "--metrics-addr",
            metrics_addr,
        ])
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_scrape_shows_the_exact_counts_per_verdict_reason_and_rule() {
    let s = Setup::new(61);
    let udp = UdpCounter::start(SocketAddr::new(s.host, UDP_PORT));
    let addr = format!("127.0.0.1:{PORT_SCRAPE}");
    let agent = s.start_agent(&addr);

    // One flow from the allowed source: its first datagram is a rule hit, the other 4
    // pass as part of the tracked flow. 7 datagrams from the denied source are dropped.
    udp_send(&s.lab.netns, s.allowed, SocketAddr::new(s.host, UDP_PORT), 5);
    udp_send(&s.lab.netns, s.denied, SocketAddr::new(s.host, UDP_PORT), 7);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!([udp.received_from(s.allowed), udp.received_from(s.denied)], [5, 0]);

    let (status, headers, body) = curl(&[], &format!("http://{addr}/metrics"));
    assert_eq!(status, 200, "{headers:?}\n{body}");
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
        "{headers:?}"
    );

    let link = format!(r#"interface="{}",link="{}""#, s.eni, s.lab.host_link);
    let packets = |verdict: &str, reason: &str| {
        value(
            &body,
            &format!(
                r#"sgmirror_packets_total{{{link},direction="ingress",verdict="{verdict}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(packets("drop", "no-rule"), 7, "the denied datagrams");
    assert_eq!(packets("allow", "rule"), 1, "the first datagram of the allowed flow");
    assert_eq!(packets("allow", "tracked"), 4, "the rest of the allowed flow");
    assert_eq!(packets("drop", "malformed"), 0);
    assert_eq!(packets("audit", "no-rule"), 0, "enforce mode has no would-be drops");
    // "datagram N": 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 10 bytes per frame.
    assert_eq!(
        value(
            &body,
            &format!(r#"sgmirror_bytes_total{{{link},direction="ingress",verdict="drop",reason="no-rule"}}"#)
        ),
        7 * 52
    );
    assert_eq!(
        value(
            &body,
            &format!(
                r#"sgmirror_rule_hits_total{{rule="sgr-udp61",group="sg-e2e",interface="{}",direction="ingress"}}"#,
                s.eni
            )
        ),
        1,
        "one flow, one hit"
    );
    assert_eq!(
        value(
            &body,
            &format!(
                r#"sgmirror_rule_hits_total{{rule="sgr-out61",group="sg-e2e",interface="{}",direction="egress"}}"#,
                s.eni
            )
        ),
        0,
        "the host sent nothing that needed the egress rule"
    );
    assert_eq!(value(&body, &format!(r#"sgmirror_attach_mode_info{{{link},hook="xdp",mode="native"}}"#)), 1);
    assert_eq!(value(&body, &format!(r#"sgmirror_enforcement_mode{{{link},mode="enforce"}}"#)), 1);
    assert_eq!(value(&body, &format!(r#"sgmirror_enforcement_mode{{{link},mode="audit"}}"#)), 0);
    assert_eq!(value(&body, &format!(r#"sgmirror_policy_generation{{{link}}}"#)), 1);
    assert!(value(&body, &format!(r#"sgmirror_flows{{{link}}}"#)) >= 1, "the allowed flow is tracked");

    // Prometheus's own parser and linter accept the scraped exposition.
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics: {report}");

    // The rest of the HTTP surface.
    let (status, headers, body_head) = curl(&["--head"], &format!("http://{addr}/metrics"));
    assert_eq!(status, 200);
    assert!(body_head.is_empty());
    assert!(headers.iter().any(|h| h.to_ascii_lowercase().starts_with("content-length: ")));
    assert_eq!(curl(&[], &format!("http://{addr}/nothing-here")).0, 404);
    let (status, _, index) = curl(&[], &format!("http://{addr}/"));
    assert_eq!(status, 200);
    assert!(index.contains("/metrics"), "{index}");

    // The scrape and the exit summary read the same counters.
    let (_, exit) = agent.stop();
    assert!(exit.success(), "agent exited with {exit}");
    let summary = read_summary(&s.dir.join("summary.json"));
    let dropped: u64 = summary["interfaces"][0]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "ingress" && c["verdict"] == "drop" && c["reason"] == "no-rule")
        .map(|c| c["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(dropped, 7);
}

#[test]
fn a_metrics_address_in_use_does_not_stop_enforcement() {
    let s = Setup::new(62);
    let _taken = TcpListener::bind(("127.0.0.1", PORT_TAKEN)).expect("the test holds the port");
    let udp = UdpCounter::start(SocketAddr::new(s.host, UDP_PORT));
    let mut agent = s.start_agent(&format!("127.0.0.1:{PORT_TAKEN}"));
    // The failure is logged, naming the address (before or after "enforcing").
    if !agent.log().contains(&format!("127.0.0.1:{PORT_TAKEN}")) {
        agent.wait_for(&format!("127.0.0.1:{PORT_TAKEN}"), Duration::from_secs(10));
    }

    udp_send(&s.lab.netns, s.allowed, SocketAddr::new(s.host, UDP_PORT), 3);
    udp_send(&s.lab.netns, s.denied, SocketAddr::new(s.host, UDP_PORT), 3);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!([udp.received_from(s.allowed), udp.received_from(s.denied)], [3, 0], "still enforcing");
    let (_, exit) = agent.stop();
    assert!(exit.success(), "agent exited with {exit}");
}
