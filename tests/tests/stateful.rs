//! End to end, both families: the ingress (XDP) and egress (TC) programs share a flow
//! table, so the host's own connections get their replies with no inbound rule, an
//! outbound rule can block a destination, tracked flows survive the removal of their
//! rule while untracked ones are cut at once, path-MTU errors for tracked flows reach
//! the host, connections older than the agent survive its start, idle flows expire,
//! and a full flow table evicts its least recently used entries.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use sgmirror_e2e::{
    agent::{Agent, read_summary},
    icmp::{Quoted, Sniffer, send_too_big},
    lab::Lab,
    peer::{Conn, TcpEcho, TcpServer, UdpEcho, in_netns, ping, tcp_connects, udp_roundtrip},
    sh,
    snapshots::{Rule, one_group},
};

const SHORT: Duration = Duration::from_millis(1200);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A lab on 198.18.K.0/24 and 2001:db8:K::/64: host .1/::1, peers .2/::2 and .3/::3.
struct Setup {
    lab: Lab,
    dir: PathBuf,
    eni: String,
    host: [IpAddr; 2],
    p: [IpAddr; 2],
    q: [IpAddr; 2],
}

impl Setup {
    fn new(k: u8) -> Setup {
        let (h4, h6) = (format!("198.18.{k}.1/24"), format!("2001:db8:{k}::1/64"));
        let peers: Vec<String> = vec![
            format!("198.18.{k}.2/24"),
            format!("198.18.{k}.3/24"),
            format!("2001:db8:{k}::2/64"),
            format!("2001:db8:{k}::3/64"),
        ];
        let peer_refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        let lab = Lab::new(&[&h4, &h6], &peer_refs);
        let dir = std::env::temp_dir().join(format!("sgm-stateful-{}", sgmirror_e2e::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Setup {
            lab,
            dir,
            eni: format!("eni-e2e{k}"),
            host: [ip(&format!("198.18.{k}.1")), ip(&format!("2001:db8:{k}::1"))],
            p: [ip(&format!("198.18.{k}.2")), ip(&format!("2001:db8:{k}::2"))],
            q: [ip(&format!("198.18.{k}.3")), ip(&format!("2001:db8:{k}::3"))],
        }
    }

    fn snapshot(&self) -> PathBuf {
        self.dir.join("snapshot.json")
    }

    fn write_policy(&self, rules: &[Rule<'_>]) {
        let host: Vec<String> = self.host.iter().map(IpAddr::to_string).collect();
        let host: Vec<&str> = host.iter().map(String::as_str).collect();
        let doc = one_group(&self.eni, "02:00:00:00:00:aa", &host, rules);
        // Write then rename, so the agent never reads half a file.
        let tmp = self.dir.join("snapshot.json.tmp");
        std::fs::write(&tmp, doc.to_string()).unwrap();
        std::fs::rename(&tmp, self.snapshot()).unwrap();
    }

    fn start_agent(&self, extra: &[&str]) -> Agent {
        let bind = format!("{}={}", self.lab.host_link, self.eni);
        let summary = self.dir.join("summary.json");
        let snapshot = self.snapshot();
        let mut args = vec![
            "--snapshot",
            snapshot.to_str().unwrap(),
            "--bind",
            &bind,
            "--summary-json",
            summary.to_str().unwrap(),
            "--poll-interval-ms",
            "200",
        ];
        args.extend_from_slice(extra);
        Agent::start(&args)
    }

    fn summary(&self) -> serde_json::Value {
        read_summary(&self.dir.join("summary.json"))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn egress_all<'a>() -> [Rule<'a>; 2] {
    [
        Rule { id: "sgr-out4", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
        Rule { id: "sgr-out6", egress: true, proto: "-1", from: -1, to: -1, cidr: "::/0" },
    ]
}

fn counter(summary: &serde_json::Value, direction: &str, verdict: &str, reason: &str) -> u64 {
    summary["interfaces"][0]["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == direction && c["verdict"] == verdict && c["reason"] == reason)
        .map(|c| c["packets"].as_u64().unwrap())
        .sum()
}

/// Opens a connection from the host (root namespace).
fn host_conn(src: IpAddr, dst: IpAddr, port: u16) -> Option<Conn> {
    Conn::open(src, SocketAddr::new(dst, port), SHORT)
}

/// Opens a connection from the peer namespace.
fn peer_conn(netns: &str, src: IpAddr, dst: IpAddr, port: u16) -> Option<Conn> {
    in_netns(netns, move || Conn::open(src, SocketAddr::new(dst, port), SHORT))
}

fn host_udp_roundtrip(src: IpAddr, dst: IpAddr, port: u16) -> bool {
    let socket = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
    udp_roundtrip(&socket, SocketAddr::new(dst, port), SHORT)
}

fn host_ping(src: IpAddr, dst: IpAddr) -> u32 {
    let out = std::process::Command::new("ping")
        .args(["-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-I", &src.to_string(), &dst.to_string()])
        .output()
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split(", ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()))
        .unwrap_or_else(|| panic!("unexpected ping output: {text}"))
}

#[test]
fn outbound_flows_get_replies_unsolicited_inbound_is_dropped_and_egress_rules_block() {
    let s = Setup::new(51);
    // No inbound rule at all; outbound only to the peer p.
    s.write_policy(&[
        Rule { id: "sgr-to-p4", egress: true, proto: "-1", from: -1, to: -1, cidr: "198.18.51.2/32" },
        Rule { id: "sgr-to-p6", egress: true, proto: "-1", from: -1, to: -1, cidr: "2001:db8:51::2/128" },
    ]);
    for addr in s.p.iter().chain(&s.q) {
        let addr = *addr;
        in_netns(&s.lab.netns, move || {
            std::mem::forget(TcpEcho::start(SocketAddr::new(addr, 7020)));
            std::mem::forget(UdpEcho::start(SocketAddr::new(addr, 7021)));
        });
    }
    let _listeners: Vec<TcpServer> =
        s.host.iter().map(|h| TcpServer::start(SocketAddr::new(*h, 7022))).collect();
    let agent = s.start_agent(&[]);

    for family in 0..2 {
        let (host, p, q) = (s.host[family], s.p[family], s.q[family]);
        let mut conn = host_conn(host, p, 7020).unwrap_or_else(|| panic!("host → {p}: TCP connect"));
        assert!(conn.echo(b"hello"), "host → {p}: TCP replies");
        assert!(host_udp_roundtrip(host, p, 7021), "host → {p}: UDP request/response");
        assert_eq!(host_ping(host, p), 2, "host → {p}: echo replies");
        assert!(host_conn(host, q, 7020).is_none(), "host → {q}: no outbound rule, blocked");
        assert!(!host_udp_roundtrip(host, q, 7021), "host → {q}: UDP blocked");
        assert_eq!(host_ping(host, q), 0, "host → {q}: ping blocked");
        assert!(
            !tcp_connects(&s.lab.netns, p, SocketAddr::new(host, 7022), SHORT),
            "{p} → host: unsolicited TCP"
        );
        assert_eq!(ping(&s.lab.netns, p, host, 2), 0, "{p} → host: unsolicited ping");
    }
    let (_, status) = agent.stop();
    assert!(status.success());
    let summary = s.summary();
    assert!(counter(&summary, "ingress", "allow", "tracked") > 0);
    assert!(counter(&summary, "egress", "allow", "rule") > 0);
    assert!(counter(&summary, "egress", "drop", "no-rule") > 0);
    assert!(counter(&summary, "ingress", "drop", "no-rule") > 0);
    assert_eq!(summary["interfaces"][0]["tc_mode"], "tcx");
}

#[test]
fn removing_a_rule_keeps_tracked_flows_and_cuts_untracked_ones() {
    let s = Setup::new(52);
    let [out4, out6] = egress_all();
    let inbound = [
        // From one address: tracked.
        Rule { id: "sgr-t4", egress: false, proto: "tcp", from: 7030, to: 7030, cidr: "198.18.52.2/32" },
        Rule { id: "sgr-t6", egress: false, proto: "tcp", from: 7030, to: 7030, cidr: "2001:db8:52::2/128" },
        // From the world, with outbound all to the world: untracked.
        Rule { id: "sgr-u4", egress: false, proto: "tcp", from: 7031, to: 7031, cidr: "0.0.0.0/0" },
        Rule { id: "sgr-u6", egress: false, proto: "tcp", from: 7031, to: 7031, cidr: "::/0" },
    ];
    let mut rules = inbound.to_vec();
    rules.extend([out4, out6]);
    s.write_policy(&rules);
    for h in s.host {
        std::mem::forget(TcpEcho::start(SocketAddr::new(h, 7030)));
        std::mem::forget(TcpEcho::start(SocketAddr::new(h, 7031)));
    }
    let mut agent = s.start_agent(&[]);

    let mut conns = Vec::new();
    for family in 0..2 {
        let (host, p) = (s.host[family], s.p[family]);
        let mut tracked = peer_conn(&s.lab.netns, p, host, 7030).expect("tracked connect");
        let mut untracked = peer_conn(&s.lab.netns, p, host, 7031).expect("untracked connect");
        assert!(tracked.echo(b"before"), "{p}: tracked flow works");
        assert!(untracked.echo(b"before"), "{p}: untracked flow works");
        conns.push((tracked, untracked));
    }

    s.write_policy(&egress_all());
    agent.wait_for("applied policy generation 2", Duration::from_secs(10));

    for (family, (tracked, untracked)) in conns.iter_mut().enumerate() {
        let (host, p) = (s.host[family], s.p[family]);
        assert!(tracked.echo(b"after"), "{p}: the tracked connection survives its rule's removal");
        assert!(!untracked.echo(b"after"), "{p}: the untracked connection is cut at once");
        assert!(peer_conn(&s.lab.netns, p, host, 7030).is_none(), "{p}: a new connection needs the rule");
    }
    let (_, status) = agent.stop();
    assert!(status.success());
    assert_eq!(s.summary()["interfaces"][0]["generation"], 2);
}

#[test]
fn path_mtu_errors_for_tracked_flows_reach_the_host() {
    let s = Setup::new(53);
    s.write_policy(&egress_all());
    for p in s.p {
        in_netns(&s.lab.netns, move || std::mem::forget(TcpEcho::start(SocketAddr::new(p, 7040))));
    }
    let agent = s.start_agent(&[]);
    for family in 0..2 {
        let (host, p) = (s.host[family], s.p[family]);
        let sniffer = Sniffer::new(family == 0);
        let mut conn = host_conn(host, p, 7040).expect("connect");
        assert!(conn.echo(b"x"));
        let tracked = Quoted { src: conn.local_addr(), dst: SocketAddr::new(p, 7040) };
        send_too_big(&s.lab.netns, p, tracked);
        assert!(
            sniffer.saw_too_big(p, Duration::from_secs(2)),
            "{p}: error about a tracked flow reaches the host"
        );
        let unknown = Quoted { src: SocketAddr::new(host, 1), dst: SocketAddr::new(p, 9) };
        send_too_big(&s.lab.netns, p, unknown);
        assert!(
            !sniffer.saw_too_big(p, Duration::from_secs(1)),
            "{p}: error about no flow is judged by the rules"
        );
    }
    let (_, status) = agent.stop();
    assert!(status.success());
}

#[test]
fn a_connection_opened_before_the_agent_survives_its_start() {
    let s = Setup::new(54);
    s.write_policy(&egress_all());
    for p in s.p {
        in_netns(&s.lab.netns, move || std::mem::forget(TcpEcho::start(SocketAddr::new(p, 7050))));
    }
    let mut conns: Vec<Conn> = (0..2).map(|f| host_conn(s.host[f], s.p[f], 7050).expect("connect")).collect();
    for c in &mut conns {
        assert!(c.echo(b"before the agent"));
    }
    let agent = s.start_agent(&[]);
    for c in &mut conns {
        assert!(c.echo(b"after the agent started"), "an existing connection keeps working");
    }
    let listeners: Vec<TcpServer> =
        s.host.iter().map(|h| TcpServer::start(SocketAddr::new(*h, 7051))).collect();
    for (family, l) in listeners.iter().enumerate() {
        assert!(!tcp_connects(&s.lab.netns, s.p[family], l.addr(), SHORT), "new inbound connections are not");
    }
    let (_, status) = agent.stop();
    assert!(status.success());
}

#[test]
fn idle_flows_expire_after_their_configured_timeouts() {
    let s = Setup::new(55);
    s.write_policy(&egress_all());
    let agent = s.start_agent(&["--udp-timeout", "2", "--udp-stream-timeout", "2"]);
    for family in 0..2 {
        let (host, p) = (s.host[family], s.p[family]);
        let peer = in_netns(&s.lab.netns, move || UdpSocket::bind(SocketAddr::new(p, 7060)).unwrap());
        peer.set_read_timeout(Some(SHORT)).unwrap();
        let local = UdpSocket::bind(SocketAddr::new(host, 0)).unwrap();
        local.set_read_timeout(Some(SHORT)).unwrap();
        let host_addr = local.local_addr().unwrap();
        let mut buf = [0u8; 32];

        local.send_to(b"request", SocketAddr::new(p, 7060)).unwrap();
        peer.recv_from(&mut buf).expect("the request arrives");
        std::thread::sleep(Duration::from_millis(1000));
        peer.send_to(b"reply within the timeout", host_addr).unwrap();
        assert!(local.recv_from(&mut buf).is_ok(), "{p}: a reply inside the UDP timeout passes");
        std::thread::sleep(Duration::from_millis(3000));
        peer.send_to(b"reply after the timeout", host_addr).unwrap();
        assert!(local.recv_from(&mut buf).is_err(), "{p}: after the idle timeout the flow is gone");
    }
    let (_, status) = agent.stop();
    assert!(status.success());
}

#[test]
fn the_clsact_fallback_enforces_egress_and_leaves_nothing_behind() {
    let s = Setup::new(56);
    s.write_policy(&[Rule {
        id: "sgr-to-p4",
        egress: true,
        proto: "-1",
        from: -1,
        to: -1,
        cidr: "198.18.56.2/32",
    }]);
    for a in [s.p[0], s.q[0]] {
        in_netns(&s.lab.netns, move || std::mem::forget(TcpEcho::start(SocketAddr::new(a, 7070))));
    }
    let agent = s.start_agent(&["--tc-mode", "clsact"]);
    assert!(sh("tc", &["qdisc", "show", "dev", &s.lab.host_link]).contains("clsact"));
    let mut conn = host_conn(s.host[0], s.p[0], 7070).expect("allowed destination");
    assert!(conn.echo(b"via clsact"));
    assert!(host_conn(s.host[0], s.q[0], 7070).is_none(), "blocked destination");
    let (_, status) = agent.stop();
    assert!(status.success());
    assert_eq!(s.summary()["interfaces"][0]["tc_mode"], "clsact");
    assert!(!sh("tc", &["qdisc", "show", "dev", &s.lab.host_link]).contains("clsact"), "qdisc removed");
}

#[test]
fn a_full_flow_table_evicts_the_least_recently_used_flows() {
    let s = Setup::new(57);
    s.write_policy(&egress_all());
    let agent = s.start_agent(&["--flow-capacity", "64"]);
    let p = s.p[0];
    let peer = in_netns(&s.lab.netns, move || UdpSocket::bind(SocketAddr::new(p, 7080)).unwrap());
    peer.set_read_timeout(Some(SHORT)).unwrap();
    let mut buf = [0u8; 32];
    let sockets: Vec<UdpSocket> = (0..300)
        .map(|_| {
            let local = UdpSocket::bind(SocketAddr::new(s.host[0], 0)).unwrap();
            local.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            local.send_to(b"open", SocketAddr::new(p, 7080)).unwrap();
            peer.recv_from(&mut buf).expect("request arrives");
            local
        })
        .collect();
    let answered = |local: &UdpSocket| {
        peer.send_to(b"late reply", local.local_addr().unwrap()).unwrap();
        let mut b = [0u8; 32];
        local.recv_from(&mut b).is_ok()
    };
    let newest_alive = sockets[295..].iter().filter(|l| answered(l)).count();
    let oldest_alive = sockets[..10].iter().filter(|l| answered(l)).count();
    assert_eq!(newest_alive, 5, "the most recent flows are still tracked");
    assert_eq!(oldest_alive, 0, "the oldest flows were evicted");
    let (_, status) = agent.stop();
    assert!(status.success());
    let flows = s.summary()["interfaces"][0]["flows"].as_u64().unwrap();
    assert!(flows <= 64, "{flows} flows in a table of 64");
}
