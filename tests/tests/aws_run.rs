//! `sgmirror run --source aws` with real traffic (issue 4, acceptance 3).
//!
//! The agent runs in the root namespace on the host end of a veth pair whose MAC is the
//! MAC moto gave the instance's device-0 ENI; the peer end is in a namespace and sends
//! TCP connects from the lab addresses, which are also the ENIs' addresses in moto
//! (10.77.1.0/24), so the kernel's verdicts are the ones EC2 would give. Each change
//! made in moto — a rule authorised, a rule revoked, a prefix-list entry added, a member
//! ENI gaining a secondary address, the own ENI's groups changed — must flip the verdict
//! of real traffic within the refresh interval (+10 % jitter) + 2 s; an ENI attached
//! later is enforced on a second veth whose MAC matches it, and released on detach; and
//! with every API call failing, then IMDS down as well, the last good policy stays
//! enforced, until both come back and a change made meanwhile is picked up.
//!
//! Run under `flock /tmp/sgm-e2e.lock` with the other e2e tests (as root).

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use serde_json::json;
use sgmirror_e2e::{
    agent::{Agent, PinRoot},
    aws::{Imds, Moto, Proxy, aws_env, run_args, set_mac},
    lab::Lab,
    peer::{TcpServer, tcp_connects},
};

const REFRESH_MS: u64 = 1000;
/// The refresh interval with its +10 % jitter, plus the 2 s the issue allows.
const PROPAGATION: Duration = Duration::from_millis(REFRESH_MS * 11 / 10 + 2000);
/// For attach/detach: IMDS may list a MAC whose items are gone a moment later (the
/// stand-in reads moto live, as EC2 may race too); the agent then retries after 2 s.
const ATTACH_DETACH: Duration = Duration::from_millis(REFRESH_MS * 11 / 10 + 4000);
const HOST: &str = "10.77.1.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn connects(lab: &Lab, src: &str, dst: &str, port: u16) -> bool {
    tcp_connects(&lab.netns, ip(src), SocketAddr::new(ip(dst), port), Duration::from_millis(300))
}

/// Polls until a connect from `src` to HOST:`port` gives `want`; returns how long it
/// took, failing (with the agent's log) when it takes longer than `limit`.
fn wait_verdict(
    agent: &mut Agent,
    lab: &Lab,
    src: &str,
    port: u16,
    want: bool,
    limit: Duration,
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        if connects(lab, src, HOST, port) == want {
            let took = start.elapsed();
            eprintln!("[aws_run] {what}: verdict flipped after {took:?}");
            return took;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: {src} -> {HOST}:{port} still not {want} after {limit:?}; the agent's log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn changes_in_ec2_flip_real_traffic_within_the_refresh_interval() {
    let moto = Moto::start();
    let scenario = moto.build("lab");
    let iid = scenario.id("i_lab");
    let mut imds = Imds::start(&moto, &iid);
    let proxy = Proxy::start(&moto);
    let eni0 = scenario.id("i_lab_eni0");
    let mac0 = scenario.0["instances"][&iid][0]["mac"].as_str().unwrap().to_owned();

    let lab = Lab::new(&[&format!("{HOST}/24")], &["10.77.1.20/24", "10.77.1.21/24", "10.77.1.22/24"]);
    set_mac(&lab.host_link, &mac0);
    let _servers: Vec<TcpServer> = [8080, 8081, 8082, 9090, 7070, 6060, 5556]
        .iter()
        .map(|p| TcpServer::start(SocketAddr::new(ip(HOST), *p)))
        .collect();

    let pins = PinRoot::new();
    let args = run_args(&proxy, &imds, REFRESH_MS, 250);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Agent::spawn_with_env(&args, &aws_env(), &pins);
    agent.wait_for("aws: policy applied", Duration::from_secs(60));
    assert!(lab.host_has_xdp(), "the link with the ENI's MAC is not enforced");

    // The scenario's policy, by real traffic.
    assert!(connects(&lab, "10.77.1.20", HOST, 8080), "8080 from .20 is allowed by a CIDR rule");
    for (src, port) in
        [("10.77.1.20", 8081), ("10.77.1.21", 9090), ("10.77.1.22", 7070), ("10.77.1.20", 6060)]
    {
        assert!(!connects(&lab, src, HOST, port), "{src} -> {port} is not allowed yet");
    }

    let web = scenario.id("web");
    let mut took = Vec::new();

    moto.op(json!({"op": "authorize", "group": web, "proto": "tcp", "from": 8081, "to": 8081, "cidr": "10.77.1.20/32"}));
    took.push((
        "rule authorised",
        wait_verdict(&mut agent, &lab, "10.77.1.20", 8081, true, PROPAGATION, "authorise"),
    ));

    moto.op(json!({"op": "revoke", "group": web, "rule": scenario.id("rule_8080")}));
    took.push((
        "rule revoked",
        wait_verdict(&mut agent, &lab, "10.77.1.20", 8080, false, PROPAGATION, "revoke"),
    ));

    moto.op(json!({"op": "pl_add", "pl": scenario.id("pl"), "cidr": "10.77.1.22/32"}));
    took.push((
        "prefix-list entry added",
        wait_verdict(&mut agent, &lab, "10.77.1.22", 7070, true, PROPAGATION, "prefix list"),
    ));

    moto.op(json!({"op": "assign_ip", "eni": scenario.id("member"), "ip": "10.77.1.21"}));
    took.push((
        "member gained an address",
        wait_verdict(&mut agent, &lab, "10.77.1.21", 9090, true, PROPAGATION, "member address"),
    ));

    moto.op(json!({"op": "set_groups", "eni": eni0, "groups": [web, scenario.id("extra")]}));
    took.push((
        "own groups changed",
        wait_verdict(&mut agent, &lab, "10.77.1.20", 6060, true, PROPAGATION, "own groups"),
    ));

    // An ENI attached while running: a second veth whose MAC is the new ENI's.
    let lab2 = Lab::new(&["10.77.2.10/24"], &["10.77.2.20/24"]);
    let _server2 = TcpServer::start(SocketAddr::new(ip("10.77.2.10"), 5555));
    let eni = moto.op(json!({"op": "create_eni", "subnet": scenario.id("sub2"), "ip": "10.77.2.10", "groups": [scenario.id("extra")]}));
    set_mac(&lab2.host_link, eni["mac"].as_str().unwrap());
    let lab2_connects = || {
        tcp_connects(
            &lab2.netns,
            ip("10.77.2.20"),
            SocketAddr::new(ip("10.77.2.10"), 5555),
            Duration::from_millis(300),
        )
    };
    assert!(lab2_connects(), "the second link is not enforced before its ENI is attached");
    let att = moto.op(json!({"op": "attach", "eni": eni["eni"], "instance": iid, "device": 1}));
    let start = Instant::now();
    agent.wait_for(&format!("aws: attached link={}", lab2.host_link), ATTACH_DETACH);
    took.push(("ENI attached", start.elapsed()));
    assert!(lab2.host_has_xdp());
    assert!(!lab2_connects(), "the attached ENI's groups allow nothing on 5555");
    moto.op(json!({"op": "detach", "attachment": att["attachment"]}));
    let start = Instant::now();
    agent.wait_for(&format!("aws: detached link={}", lab2.host_link), ATTACH_DETACH);
    took.push(("ENI detached", start.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !lab2_connects() {
        assert!(Instant::now() < deadline, "the detached link still drops traffic");
    }

    // Every EC2 call failing (IMDS up): the refresh fails, the last good policy stays.
    proxy.set_faults(json!([{"action": "*", "kind": "500", "count": -1}]));
    agent.wait_for("aws: source failed", Duration::from_secs(15));
    assert!(connects(&lab, "10.77.1.20", HOST, 6060), "an allowed flow was cut by a failing API");
    assert!(!connects(&lab, "10.77.1.20", HOST, 5556), "a denied flow passed with a failing API");
    // And IMDS down too.
    imds.stop();
    agent.wait_for("aws: source failed", Duration::from_secs(15));
    // A change made in the outage must not show up yet, and the old verdicts hold.
    moto.op(json!({"op": "authorize", "group": web, "proto": "tcp", "from": 8082, "to": 8082, "cidr": "10.77.1.20/32"}));
    for _ in 0..3 {
        assert!(connects(&lab, "10.77.1.20", HOST, 6060), "an allowed flow was cut during the outage");
        assert!(connects(&lab, "10.77.1.21", HOST, 9090), "an allowed flow was cut during the outage");
        assert!(!connects(&lab, "10.77.1.20", HOST, 5556), "a denied flow passed during the outage");
        assert!(!connects(&lab, "10.77.1.20", HOST, 8082), "the outage applied a change it could not see");
        std::thread::sleep(Duration::from_millis(700));
    }
    imds.restart();
    proxy.clear_faults();
    took.push((
        "recovery after the outage",
        wait_verdict(
            &mut agent,
            &lab,
            "10.77.1.20",
            8082,
            true,
            PROPAGATION + Duration::from_secs(10),
            "recovery",
        ),
    ));

    eprintln!("[aws_run] propagation: {took:?}");
    eprintln!("[aws_run] calls: {:?}", proxy.calls());
    let (_, status) = agent.stop();
    assert!(status.success(), "the agent exited with {status}");
}
