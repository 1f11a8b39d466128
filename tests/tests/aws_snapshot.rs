//! `sgmirror snapshot` against moto's EC2 emulator, the IMDS stand-in and the paging,
//! fault-injecting proxy (issue 4, acceptance 1 and 2):
//!
//! - the snapshot of each instance of a scenario resolves (with `sgmirror-policy`) to
//!   exactly the policy the scenario builder defined, ENI by ENI and rule by rule;
//! - two snapshots of one state are byte-identical, and endpoints from the environment
//!   give the same document as the flags;
//! - forced pages give a byte-identical document with more calls;
//! - throttling, 5xx and a stalled answer are retried (one extra call each at the
//!   proxy) and give the same document;
//! - a permanent failure exits non-zero naming the call and writes nothing.
//!
//! No kernel and no namespaces: these need no lock, but each starts its own moto.

use std::time::Instant;

use serde_json::json;
use sgmirror_e2e::{
    aws::{Imds, Moto, Proxy, assert_resolves_to, http_with, snapshot, snapshot_ok},
    tempdir::TempDir,
};

/// The scenario "three" with one IMDS stand-in and the proxy.
fn three() -> (Moto, sgmirror_e2e::aws::Scenario, Imds, Proxy) {
    let moto = Moto::start();
    let scenario = moto.build("three");
    let imds = Imds::start(&moto, &scenario.id("i_v4"));
    let proxy = Proxy::start(&moto);
    (moto, scenario, imds, proxy)
}

#[test]
fn each_instance_snapshot_resolves_to_the_scenario_policy() {
    let (_moto, scenario, mut imds, proxy) = three();
    for name in ["i_v4", "i_dual", "i_app"] {
        let iid = scenario.id(name);
        imds.set_instance(&iid);
        let first = snapshot_ok(&proxy, &imds);
        let expected = scenario.expected(&iid);
        assert!(!expected.is_empty());
        assert_resolves_to(&first, &expected);
        let second = snapshot_ok(&proxy, &imds);
        assert_eq!(first, second, "{name}: two snapshots of one state differ");
    }
    // The scenario covers what it claims: the dual-stack instance has three ENIs, the
    // app instance a self-reference and prefix lists of both families.
    assert_eq!(scenario.expected(&scenario.id("i_dual")).len(), 3);
    let app = &scenario.expected(&scenario.id("i_app"))[0];
    assert!(app.ingress.iter().any(|r| r.peers.iter().any(|p| p.to_string() == "10.77.2.31/32")));
    assert!(app.ingress.iter().any(|r| r.peers.iter().any(|p| p.to_string() == "2001:db8:1::/48")));
}

#[test]
fn endpoints_from_the_environment_give_the_same_document() {
    let (_moto, scenario, mut imds, proxy) = three();
    imds.set_instance(&scenario.id("i_app"));
    let by_flags = snapshot_ok(&proxy, &imds);
    proxy.reset_calls();
    let out = snapshot(
        &[],
        &[("AWS_ENDPOINT_URL_EC2", &proxy.url()), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), by_flags);
    assert!(proxy.total() > 0, "the EC2 calls went through the endpoint from the environment");
}

#[test]
fn forced_pages_give_the_same_document() {
    let (_moto, scenario, mut imds, proxy) = three();
    for name in ["i_app", "i_dual"] {
        imds.set_instance(&scenario.id(name));
        proxy.set_page_size(0);
        proxy.reset_calls();
        let unpaged = snapshot_ok(&proxy, &imds);
        let unpaged_calls = proxy.calls();
        for size in [5, 1] {
            proxy.set_page_size(size);
            proxy.reset_calls();
            let paged = snapshot_ok(&proxy, &imds);
            let paged_calls = proxy.calls();
            eprintln!("{name}: unpaged {unpaged_calls:?}, pages of {size}: {paged_calls:?}");
            assert_eq!(paged, unpaged, "{name}: pages of {size} lose or add something");
            if size == 1 {
                // Every call here returned more than one item (the app instance's IPv4
                // prefix list has two entries), so each one was split into pages.
                for (action, n) in &unpaged_calls {
                    assert!(paged_calls[action] > *n, "{name}: {action} was not paged: {paged_calls:?}");
                }
            }
        }
    }
}

#[test]
fn throttling_5xx_and_a_stall_are_retried() {
    let (_moto, scenario, mut imds, proxy) = three();
    imds.set_instance(&scenario.id("i_app"));
    proxy.reset_calls();
    let clean = snapshot_ok(&proxy, &imds);
    let base = proxy.calls();

    let cases = [
        (
            "DescribeSecurityGroupRules",
            json!({"action": "DescribeSecurityGroupRules", "kind": "throttle", "count": 2}),
        ),
        (
            "DescribeNetworkInterfaces",
            json!({"action": "DescribeNetworkInterfaces", "kind": "500", "count": 1}),
        ),
        // Longer than the agent's 10 s attempt timeout: the attempt is cut and retried.
        (
            "DescribeManagedPrefixLists",
            json!({"action": "DescribeManagedPrefixLists", "kind": "stall", "count": 1, "stall_s": 12}),
        ),
    ];
    for (action, fault) in cases {
        let extra = fault["count"].as_u64().unwrap();
        proxy.set_faults(json!([fault]));
        proxy.reset_calls();
        let start = Instant::now();
        let doc = snapshot_ok(&proxy, &imds);
        let calls = proxy.calls();
        eprintln!("{fault}: {:?} in {:?}, calls {calls:?}", action, start.elapsed());
        assert_eq!(doc, clean, "{action}: the retried snapshot differs");
        for (a, n) in &base {
            let want = if a == action { n + extra } else { *n };
            assert_eq!(calls.get(a).copied().unwrap_or(0), want, "{fault}: calls of {a}");
        }
        proxy.clear_faults();
    }
}

#[test]
fn a_permanent_failure_names_the_call_and_writes_nothing() {
    let (_moto, scenario, mut imds, proxy) = three();
    imds.set_instance(&scenario.id("i_app"));
    let dir = TempDir::new("sgm-awssnap");
    let out_file = dir.path().join("snapshot.json");
    let out_path = out_file.display().to_string();
    std::fs::write(&out_file, "previous\n").unwrap();

    proxy.set_faults(json!([{"action": "DescribeSecurityGroupRules", "kind": "500", "count": -1}]));
    proxy.reset_calls();
    let out = snapshot(
        &["--ec2-endpoint", &proxy.url(), "--imds-endpoint", &imds.url(), "--output", &out_path],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("calls with a permanent 500: {:?}", proxy.calls());
    assert!(!out.status.success(), "snapshot succeeded despite a permanent failure");
    assert!(stderr.contains("DescribeSecurityGroupRules"), "the error does not name the call: {stderr}");
    assert!(proxy.calls()["DescribeSecurityGroupRules"] > 1, "a 500 is retried before giving up");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "previous\n", "the output file was touched");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
    assert!(out.stdout.is_empty());

    // IMDS down: also a failure that names what failed, and nothing written.
    proxy.clear_faults();
    imds.stop();
    let out = snapshot(
        &["--ec2-endpoint", &proxy.url(), "--imds-endpoint", &imds.url(), "--output", &out_path],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("IMDS"), "the error does not name IMDS: {stderr}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "previous\n");
}

/// The IMDS stand-in is what the agent is tested against, so its protocol is tested
/// too: token limits, 401/403/404, listings, and data that follows moto's state.
#[test]
fn the_imds_stand_in_speaks_the_documented_protocol() {
    let (moto, scenario, mut imds, _proxy) = three();
    imds.set_instance(&scenario.id("i_dual"));
    let put = |headers: &[(&str, &str)]| http_with(imds.port, "PUT", "/latest/api/token", headers, "");
    const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
    for bad in ["0", "21601", "-1", "x"] {
        assert_eq!(put(&[(TTL, bad)]).0, 400, "TTL {bad}");
    }
    assert_eq!(put(&[]).0, 400, "a PUT without a TTL");
    assert_eq!(put(&[(TTL, "60"), ("X-Forwarded-For", "10.0.0.1")]).0, 403);
    let (status, token) = put(&[(TTL, "21600")]);
    assert_eq!(status, 200);
    let get = |path: &str, token: &str| {
        http_with(
            imds.port,
            "GET",
            &format!("/latest/meta-data/{path}"),
            &[("X-aws-ec2-metadata-token", token)],
            "",
        )
    };
    assert_eq!(get("instance-id", "").0, 401, "no token");
    assert_eq!(get("instance-id", "bogus").0, 401, "unknown token");
    let (_, short) = put(&[(TTL, "1")]);
    assert_eq!(get("instance-id", &short).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(get("instance-id", &short).0, 401, "expired token");

    assert_eq!(get("instance-id", &token), (200, scenario.id("i_dual")));
    let (_, top) = get("", &token);
    assert!(top.lines().any(|l| l == "network/") && top.lines().any(|l| l == "instance-id"), "{top}");
    let (_, macs) = get("network/interfaces/macs/", &token);
    assert_eq!(macs.lines().count(), 3, "three ENIs: {macs}");
    assert!(macs.lines().all(|l| l.ends_with('/')));
    let eni1 = scenario.expected(&scenario.id("i_dual"))[1].clone();
    let base = format!("network/interfaces/macs/{}/", eni1.mac);
    assert_eq!(get(&format!("{base}interface-id"), &token).1, eni1.eni);
    assert_eq!(get(&format!("{base}local-ipv4s"), &token).1, "10.77.1.21\n10.77.1.22\n10.77.1.23");
    assert_eq!(get(&format!("{base}ipv6s"), &token).1.lines().count(), 2);
    assert_eq!(get(&format!("{base}no-such-item"), &token).0, 404);
    let eni2 = &scenario.expected(&scenario.id("i_dual"))[2];
    assert_eq!(get(&format!("network/interfaces/macs/{}/ipv6s", eni2.mac), &token).0, 404, "no IPv6: absent");

    // Live: a group change in moto shows up (after the stand-in's short cache).
    moto.op(serde_json::json!({"op": "set_groups", "eni": eni1.eni, "groups": [scenario.id("v4")]}));
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(get(&format!("{base}security-group-ids"), &token).1, scenario.id("v4"));
}
