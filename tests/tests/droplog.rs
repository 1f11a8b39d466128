//! The drop log end to end: a flood of denied packets through a veth pair becomes
//! VPC Flow Logs lines, no more than the configured number per interval, whose
//! packet counts add up to the kernel's own drop counter; and the kernel's rate limit
//! holds the records back when it is low.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use sgmirror_e2e::{
    agent::{Agent, read_summary},
    lab::Lab,
    peer::in_netns,
    snapshots::{Rule, one_group},
};

fn dropped(summary: &serde_json::Value) -> u64 {
    summary["interfaces"][0]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "ingress" && c["verdict"] == "drop")
        .map(|c| c["packets"].as_u64().unwrap())
        .sum()
}

/// Sends `datagrams` denied datagrams from each of `flows` source ports.
fn flood(netns: &str, src: IpAddr, dst: SocketAddr, flows: usize, datagrams: usize) {
    in_netns(netns, move || {
        let sockets: Vec<UdpSocket> =
            (0..flows).map(|_| UdpSocket::bind(SocketAddr::new(src, 0)).unwrap()).collect();
        for _ in 0..datagrams {
            for s in &sockets {
                s.send_to(b"denied", dst).unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

struct Run {
    lines: Vec<Vec<String>>,
    kernel_drops: u64,
}

fn run(k: u8, rate: &str, flows: usize, datagrams: usize) -> Run {
    let lab = Lab::new(&[&format!("198.18.{k}.1/24")], &[&format!("198.18.{k}.2/24")]);
    let dir = std::env::temp_dir().join(format!("sgm-droplog-{}", sgmirror_e2e::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let snapshot = dir.join("snapshot.json");
    let eni = format!("eni-drop{k}");
    let doc = one_group(
        &eni,
        "02:00:00:00:00:bb",
        &[&format!("198.18.{k}.1")],
        &[Rule { id: "sgr-out", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" }],
    );
    std::fs::write(&snapshot, doc.to_string()).unwrap();
    let log = dir.join("drops.log");
    let summary = dir.join("summary.json");
    let bind = format!("{}={eni}", lab.host_link);
    let agent = Agent::start(&[
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--bind",
        &bind,
        "--no-metrics",
        "--drop-log",
        log.to_str().unwrap(),
        "--drop-log-rate",
        rate,
        "--drop-log-interval",
        "60",
        "--drop-log-max-lines",
        "50",
        "--account-id",
        "123456789012",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let host: IpAddr = format!("198.18.{k}.1").parse().unwrap();
    flood(&lab.netns, format!("198.18.{k}.2").parse().unwrap(), SocketAddr::new(host, 9), flows, datagrams);
    std::thread::sleep(Duration::from_millis(300));
    let (_, status) = agent.stop();
    assert!(status.success());
    let lines: Vec<Vec<String>> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect();
    let kernel_drops = dropped(&read_summary(&summary));
    std::fs::remove_dir_all(&dir).unwrap();
    Run { lines, kernel_drops }
}

fn packets(lines: &[Vec<String>]) -> u64 {
    lines.iter().map(|l| l[8].parse::<u64>().unwrap()).sum()
}

#[test]
fn a_flood_becomes_at_most_the_configured_lines_adding_up_to_the_kernel_counters() {
    // 120 flows of 20 datagrams: more flows than the 50 lines allowed per interval.
    let r = run(63, "100000", 120, 20);
    assert_eq!(r.kernel_drops, 2400, "every datagram was dropped and counted");
    for l in &r.lines {
        assert_eq!(l.len(), 14, "VPC Flow Logs v2 has 14 fields: {l:?}");
        assert_eq!(l[0], "2");
        assert_eq!(l[1], "123456789012");
        assert_eq!(l[2], "eni-drop63");
    }
    let ok: Vec<_> = r.lines.iter().filter(|l| l[13] == "OK").collect();
    let skipped: Vec<_> = r.lines.iter().filter(|l| l[13] == "SKIPDATA").collect();
    assert_eq!(ok.len(), 50, "the line limit holds");
    assert_eq!(skipped.len(), 1, "the other flows are summed in one SKIPDATA line");
    for l in &ok {
        assert_eq!(
            (l[3].as_str(), l[4].as_str(), l[6].as_str(), l[7].as_str()),
            ("198.18.63.2", "198.18.63.1", "9", "17")
        );
        assert_eq!(l[8], "20", "each flow's 20 datagrams are one line");
        assert_eq!(l[12], "REJECT");
    }
    assert_eq!(packets(&r.lines), r.kernel_drops, "the log adds up to the kernel counter");
}

#[test]
fn the_kernel_rate_limit_holds_records_back() {
    // 10 records per second per CPU: a burst of 600 drops in about a second gets at
    // most a second's bucket plus the refill, per CPU.
    let r = run(64, "10", 30, 20);
    assert_eq!(r.kernel_drops, 600);
    let logged = packets(&r.lines);
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(logged > 0, "some records get through");
    assert!(logged <= 10 * cpus * 4, "{logged} records logged at 10/s per CPU");
}
