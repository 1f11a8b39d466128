//! `sgmirror run --source aws` under systemd's notification protocol: readiness means
//! a policy is enforced. While every EC2 call fails at start, the agent attaches
//! nothing and sends no `READY=1` (the unit stays "activating"; the cloud security
//! groups still protect); once the API answers, XDP is on the link before `READY=1`
//! arrives. SIGHUP gives `RELOADING=1`, a fresh fetch from the API and `READY=1` again;
//! SIGTERM gives `STOPPING=1`.
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
    notify::NotifySocket,
    peer::{TcpServer, tcp_connects},
    tempdir::TempDir,
};

const HOST: &str = "10.77.1.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn readiness_waits_for_the_first_policy_from_aws_and_reload_fetches_again() {
    let moto = Moto::start();
    let scenario = moto.build("lab");
    let iid = scenario.id("i_lab");
    let imds = Imds::start(&moto, &iid);
    let proxy = Proxy::start(&moto);
    let mac0 = scenario.0["instances"][&iid][0]["mac"].as_str().unwrap().to_owned();

    let lab = Lab::new(&[&format!("{HOST}/24")], &["10.77.1.20/24"]);
    set_mac(&lab.host_link, &mac0);
    let _servers: Vec<TcpServer> =
        [8080, 5556].iter().map(|p| TcpServer::start(SocketAddr::new(ip(HOST), *p))).collect();
    let connects = |port: u16| {
        tcp_connects(
            &lab.netns,
            ip("10.77.1.20"),
            SocketAddr::new(ip(HOST), port),
            Duration::from_millis(300),
        )
    };

    let dir = TempDir::new("sgm-e2e-awsnotify");
    let socket = NotifySocket::bind(&dir.path().join("notify.sock"));
    let mut env = aws_env();
    env.push(("NOTIFY_SOCKET".into(), socket.path().display().to_string()));
    env.push(("WATCHDOG_USEC".into(), "1000000".into()));

    // Every EC2 call fails from the start.
    proxy.set_faults(json!([{"action": "*", "kind": "500", "count": -1}]));
    let pins = PinRoot::new();
    let args = run_args(&proxy, &imds, 60_000, 250);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Agent::spawn_with_env(&args, &env, &pins);
    agent.wait_for("aws: no policy yet", Duration::from_secs(60));
    // A few failed fetches (retried after 2 s, then 4 s): nothing attached, no READY=1.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if let Some(m) = socket.next(Duration::from_millis(200)) {
            assert!(!m.starts_with("READY=1"), "READY=1 without a policy: {m:?}");
        }
        assert!(!lab.host_has_xdp(), "XDP attached without a policy; log:\n{}", agent.log());
    }
    assert!(connects(8080) && connects(5556), "nothing is enforced before the first policy");
    assert!(agent.exited().is_none(), "the agent gave up instead of retrying:\n{}", agent.log());

    // The API answers: the next retry fetches, attaches and only then says READY=1.
    proxy.clear_faults();
    let ready = socket.until_ignoring_watchdog("READY=1", Duration::from_secs(30), || {
        agent.exited().map(|s| format!("{s}; log:\n{}", agent.log()))
    });
    assert_eq!(ready.len(), 1, "READY=1 must be the first message after the policy: {ready:?}");
    assert!(lab.host_has_xdp(), "READY=1 before XDP was attached");
    assert!(connects(8080), "the scenario allows 8080 from 10.77.1.20");
    assert!(!connects(5556), "the scenario allows nothing on 5556");

    // SIGHUP: RELOADING=1, one more fetch from the API (the slow timer is 60 s away),
    // READY=1; the verdicts hold.
    proxy.reset_calls();
    agent.signal(libc::SIGHUP);
    let reload = socket.until_ignoring_watchdog("RELOADING=1", Duration::from_secs(10), || {
        agent.exited().map(|s| format!("{s}; log:\n{}", agent.log()))
    });
    assert_eq!(reload.len(), 1, "{reload:?}");
    let ready = socket.until_ignoring_watchdog("READY=1", Duration::from_secs(30), || {
        agent.exited().map(|s| format!("{s}; log:\n{}", agent.log()))
    });
    assert_eq!(ready.len(), 1, "{ready:?}");
    let calls = proxy.calls();
    assert!(
        calls.get("DescribeSecurityGroupRules").copied().unwrap_or(0) >= 1,
        "SIGHUP did not refresh from the API: {calls:?}"
    );
    assert!(connects(8080) && !connects(5556), "the verdicts changed across the reload");

    // SIGTERM: STOPPING=1 and a clean exit, the pinned enforcement left in place.
    agent.signal(libc::SIGTERM);
    let stopping = socket.until_ignoring_watchdog("STOPPING=1", Duration::from_secs(10), || {
        agent.exited().map(|s| format!("{s}; log:\n{}", agent.log()))
    });
    assert_eq!(stopping, ["STOPPING=1"]);
    let (_, status) = agent.stop();
    assert!(status.success(), "exit {status:?}");
    assert!(lab.host_has_xdp(), "a clean stop must leave the pinned enforcement in place");
    let detach = pins.detach(None);
    assert!(detach.status.success(), "{detach:?}");
    assert!(!lab.host_has_xdp(), "XDP left on the link after detach");
}
