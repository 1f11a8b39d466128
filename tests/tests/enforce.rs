//! End to end: the agent enforces a policy on the root end of a veth pair; real TCP,
//! UDP and ICMP from allowed and denied sources in a namespace are delivered or
//! dropped as the policy says, and the counters and per-rule hits match the traffic.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use sgmirror_e2e::{
    agent::{Agent, PinRoot, read_summary},
    lab::Lab,
    peer::{TcpServer, UdpCounter, ping, tcp_connects, udp_send},
    snapshots::{Rule, one_group},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hits(summary: &serde_json::Value, rule: &str) -> u64 {
    summary["interfaces"][0]["rule_hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["rule"] == rule)
        .unwrap_or_else(|| panic!("no rule {rule} in {summary}"))["packets"]
        .as_u64()
        .unwrap()
}

fn counter(summary: &serde_json::Value, verdict: &str, reason: &str) -> u64 {
    summary["interfaces"][0]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "ingress" && c["verdict"] == verdict && c["reason"] == reason)
        .map(|c| c["packets"].as_u64().unwrap())
        .sum()
}

#[test]
fn allowed_sources_get_through_and_denied_ones_do_not() {
    let lab = Lab::new(
        &["198.18.41.1/24", "2001:db8:41::1/64"],
        &["198.18.41.2/24", "198.18.41.200/24", "2001:db8:41::2/64", "2001:db8:41::1:2/64"],
    );
    let host4 = ip("198.18.41.1");
    let host6 = ip("2001:db8:41::1");
    let (allowed4, denied4) = (ip("198.18.41.2"), ip("198.18.41.200"));
    let (allowed6, denied6) = (ip("2001:db8:41::2"), ip("2001:db8:41::1:2"));

    let rule = |id, proto, from, to, cidr| Rule { id, egress: false, proto, from, to, cidr };
    let snapshot = one_group(
        "eni-e2e41",
        "02:00:00:00:41:01",
        &["198.18.41.1", "2001:db8:41::1"],
        &[
            rule("sgr-tcp4", "tcp", 7001, 7001, "198.18.41.0/25"),
            rule("sgr-udp4", "udp", 7002, 7002, "198.18.41.0/25"),
            rule("sgr-icmp4", "icmp", 8, -1, "198.18.41.0/25"),
            rule("sgr-tcp6", "tcp", 7001, 7001, "2001:db8:41::/120"),
            rule("sgr-udp6", "udp", 7002, 7002, "2001:db8:41::/120"),
            rule("sgr-icmp6", "icmpv6", 128, -1, "2001:db8:41::/120"),
            Rule { id: "sgr-out4", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
            Rule { id: "sgr-out6", egress: true, proto: "-1", from: -1, to: -1, cidr: "::/0" },
        ],
    );
    let dir = tempdir();
    let snap_path = dir.join("snapshot.json");
    std::fs::write(&snap_path, snapshot.to_string()).unwrap();
    let summary_path = dir.join("summary.json");

    let _tcp4 = TcpServer::start(SocketAddr::new(host4, 7001));
    let _tcp6 = TcpServer::start(SocketAddr::new(host6, 7001));
    let udp4 = UdpCounter::start(SocketAddr::new(host4, 7002));
    let udp6 = UdpCounter::start(SocketAddr::new(host6, 7002));

    let bind = format!("{}=eni-e2e41", lab.host_link);
    let pins = PinRoot::new();
    let agent = Agent::start_in(
        &[
            "--snapshot",
            snap_path.to_str().unwrap(),
            "--bind",
            &bind,
            "--xdp-mode",
            "native",
            "--summary-json",
            summary_path.to_str().unwrap(),
        ],
        &pins,
    );
    assert!(lab.host_has_xdp(), "no XDP program on {}", lab.host_link);

    for src in [allowed4, denied4, allowed6, denied6] {
        let dst = SocketAddr::new(if src.is_ipv4() { host4 } else { host6 }, 7002);
        udp_send(&lab.netns, src, dst, 5);
    }
    let pings: Vec<u32> = [allowed4, denied4, allowed6, denied6]
        .iter()
        .map(|&src| ping(&lab.netns, src, if src.is_ipv4() { host4 } else { host6 }, 3))
        .collect();
    let connects: Vec<bool> = [allowed4, denied4, allowed6, denied6]
        .iter()
        .map(|&src| {
            let dst = SocketAddr::new(if src.is_ipv4() { host4 } else { host6 }, 7001);
            tcp_connects(&lab.netns, src, dst, Duration::from_millis(1500))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let (stdout, status) = agent.stop();
    assert!(status.success(), "agent exited with {status}");
    assert!(stdout.contains("sgr-udp4"), "the exit summary lists the rules: {stdout}");
    assert!(lab.host_has_xdp(), "the pinned programs keep enforcing after the agent exits");
    let detach = pins.detach(None);
    assert!(detach.status.success(), "detach: {detach:?}");
    assert!(!lab.host_has_xdp(), "`sgmirror detach` removes the pinned programs");

    assert_eq!(
        [udp4.received_from(allowed4), udp4.received_from(denied4)],
        [5, 0],
        "UDP over IPv4 from the allowed and the denied source"
    );
    assert_eq!([udp6.received_from(allowed6), udp6.received_from(denied6)], [5, 0], "UDP over IPv6");
    assert_eq!(pings, [3, 0, 3, 0], "ping replies: allowed4, denied4, allowed6, denied6");
    assert_eq!(connects, [true, false, true, false], "TCP connects: allowed4, denied4, allowed6, denied6");

    let summary = read_summary(&summary_path);
    assert_eq!(summary["interfaces"][0]["xdp_mode"], "native");
    // Each exchange is one flow: its first packet is allowed by the rule (a hit) and
    // starts a tracked flow (the sources are not 0.0.0.0/0, so AWS tracks them); every
    // later packet of it passes as part of the flow.
    for rule in ["sgr-udp4", "sgr-udp6", "sgr-icmp4", "sgr-icmp6", "sgr-tcp4", "sgr-tcp6"] {
        assert_eq!(hits(&summary, rule), 1, "{rule}: one flow, one hit");
    }
    assert_eq!(counter(&summary, "allow", "rule"), 6, "six flows opened by a rule");
    // 4 more datagrams and 2 more echo requests per family, and the rest of each TCP
    // exchange (ACK, FIN, ACK at least).
    let tracked = counter(&summary, "allow", "tracked");
    assert!(tracked >= 2 * (4 + 2 + 2), "ingress allow/tracked = {tracked}");
    // Denied: 5 + 5 datagrams, 3 + 3 echo requests, and each refused SYN with at most
    // one retransmission inside the 1.5 s connect timeout.
    let denied = counter(&summary, "drop", "no-rule");
    assert!((18..=20).contains(&denied), "drop/no-rule = {denied}");
    assert!(counter(&summary, "allow", "exempt") > 0, "ARP and neighbour discovery pass as exempt");
    assert_eq!(counter(&summary, "drop", "malformed"), 0);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sgm-e2e-{}", sgmirror_e2e::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
