//! `sgmirror explain` on the web-server example: the reference evaluator and the
//! real XDP program (through BPF_PROG_TEST_RUN) give the same, expected answers, as
//! exactly one JSON object on stdout.

use serde_json::Value;
use sgmirror_e2e::{agent::run_to_end, workspace_root};

fn example() -> (String, String) {
    let path = workspace_root().join("examples/web-server.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let eni = doc["NetworkInterfaces"][0]["NetworkInterfaceId"].as_str().unwrap().to_owned();
    (path.to_str().unwrap().to_owned(), eni)
}

fn explain(snapshot: &str, eni: &str, packet: &[&str], kernel: bool) -> Value {
    let mut args = vec!["explain", "--snapshot", snapshot, "--interface", eni, "--ingress", "--json"];
    args.extend_from_slice(packet);
    if kernel {
        args.push("--kernel");
    }
    let out = run_to_end(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "explain {packet:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "exactly one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn model_and_kernel_agree_on_the_web_server() {
    let (snapshot, eni) = example();
    // (packet flags, verdict, reason, how many rules allow it)
    let table: &[(&[&str], &str, &str, usize)] = &[
        (
            &["--proto", "tcp", "--src", "192.0.2.77", "--dst", "10.0.1.10", "--dport", "443"],
            "allow",
            "rule",
            1,
        ),
        (
            &["--proto", "tcp", "--src", "2001:db8:ffff::9", "--dst", "2001:db8:0:1::10", "--dport", "80"],
            "allow",
            "rule",
            1,
        ),
        (
            &["--proto", "tcp", "--src", "198.51.100.7", "--dst", "10.0.1.10", "--dport", "3389"],
            "allow",
            "rule",
            1,
        ),
        (
            &["--proto", "tcp", "--src", "198.51.100.8", "--dst", "10.0.1.10", "--dport", "3389"],
            "drop",
            "no-rule",
            0,
        ),
        (
            &["--proto", "tcp", "--src", "192.0.2.77", "--dst", "10.0.1.10", "--dport", "22"],
            "drop",
            "no-rule",
            0,
        ),
        (
            &["--proto", "udp", "--src", "192.0.2.77", "--dst", "10.0.1.10", "--dport", "443"],
            "drop",
            "no-rule",
            0,
        ),
        (
            &["--proto", "icmp", "--src", "203.0.113.9", "--dst", "10.0.1.10", "--icmp-type", "8"],
            "allow",
            "rule",
            1,
        ),
        (
            &["--proto", "icmp", "--src", "192.0.2.77", "--dst", "10.0.1.10", "--icmp-type", "8"],
            "drop",
            "no-rule",
            0,
        ),
        (
            &["--proto", "icmp", "--src", "203.0.113.9", "--dst", "10.0.1.10", "--icmp-type", "13"],
            "drop",
            "no-rule",
            0,
        ),
        (
            &["--proto", "udp", "--src", "169.254.169.254", "--dst", "10.0.1.10", "--dport", "40000"],
            "allow",
            "exempt",
            0,
        ),
        (&["--proto", "50", "--src", "192.0.2.77", "--dst", "10.0.1.10"], "drop", "no-rule", 0),
    ];
    for (packet, verdict, reason, nrules) in table {
        let model = explain(&snapshot, &eni, packet, false);
        let kernel = explain(&snapshot, &eni, packet, true);
        assert_eq!(model, kernel, "model and kernel disagree on {packet:?}");
        assert_eq!(model["verdict"], *verdict, "{packet:?}: {model}");
        assert_eq!(model["reason"], *reason, "{packet:?}: {model}");
        assert_eq!(model["rules"].as_array().unwrap().len(), *nrules, "{packet:?}: {model}");
    }
}

#[test]
fn bad_explain_arguments_are_errors_not_verdicts() {
    let (snapshot, eni) = example();
    for bad in [
        vec!["--proto", "tcp", "--src", "192.0.2.77", "--dst", "10.0.1.10"],
        vec!["--proto", "gre", "--src", "192.0.2.77", "--dst", "10.0.1.10"],
        vec!["--proto", "tcp", "--src", "192.0.2.77", "--dst", "2001:db8::1", "--dport", "80"],
    ] {
        let mut args = vec!["explain", "--snapshot", &snapshot, "--interface", &eni, "--ingress", "--json"];
        args.extend_from_slice(&bad);
        let out = run_to_end(&args);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(out.stdout.is_empty());
    }
    let out = run_to_end(&[
        "explain",
        "--snapshot",
        &snapshot,
        "--interface",
        "eni-nope",
        "--ingress",
        "--proto",
        "tcp",
        "--src",
        "192.0.2.77",
        "--dst",
        "10.0.1.10",
        "--dport",
        "80",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("eni-nope"));
}

#[test]
fn a_trace_makes_replies_tracked_in_the_model_and_in_the_kernel() {
    let (snapshot, eni) = example();
    let dir = std::env::temp_dir().join(format!("sgm-trace-{}", sgmirror_e2e::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.json");
    // The web server opens a connection out (allowed by its egress-all rule).
    std::fs::write(
        &trace,
        r#"[{"direction": "egress", "proto": "tcp", "src": "10.0.1.10", "dst": "198.51.100.50",
             "sport": 40000, "dport": 443, "tcp_flags": "S"}]"#,
    )
    .unwrap();
    let trace = trace.to_str().unwrap();
    let reply = [
        "--proto",
        "tcp",
        "--src",
        "198.51.100.50",
        "--dst",
        "10.0.1.10",
        "--sport",
        "443",
        "--dport",
        "40000",
    ];
    let run = |extra: &[&str], kernel: bool| {
        let mut args: Vec<&str> = reply.to_vec();
        args.extend_from_slice(extra);
        explain(&snapshot, &eni, &args, kernel)
    };
    for kernel in [false, true] {
        let untraced = run(&["--tcp-flags", "SA"], kernel);
        assert_eq!(
            (untraced["verdict"].as_str(), untraced["reason"].as_str()),
            (Some("drop"), Some("no-rule"))
        );
        let traced = run(&["--tcp-flags", "SA", "--trace", trace], kernel);
        assert_eq!((traced["verdict"].as_str(), traced["reason"].as_str()), (Some("allow"), Some("tracked")));
        // A connection still opening is forgotten after 120 s idle.
        let late = run(&["--tcp-flags", "SA", "--trace", trace, "--after-ms", "121000"], kernel);
        assert_eq!(late["reason"], "no-rule", "kernel={kernel}: {late}");
        // A fragmentation-needed error quoting the connection is related to it.
        let error = explain(
            &snapshot,
            &eni,
            &[
                "--proto",
                "icmp",
                "--src",
                "203.0.113.1",
                "--dst",
                "10.0.1.10",
                "--icmp-type",
                "3",
                "--icmp-code",
                "4",
                "--trace",
                trace,
                "--quotes",
                "0",
            ],
            kernel,
        );
        assert_eq!((error["verdict"].as_str(), error["reason"].as_str()), (Some("allow"), Some("tracked")));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn egress_is_explained_by_the_model_and_the_kernel_alike() {
    let (snapshot, eni) = example();
    let out = |kernel: bool| {
        let mut args = vec![
            "explain",
            "--snapshot",
            &snapshot,
            "--interface",
            &eni,
            "--egress",
            "--json",
            "--proto",
            "udp",
            "--src",
            "10.0.1.10",
            "--dst",
            "198.51.100.9",
            "--dport",
            "53",
        ];
        if kernel {
            args.push("--kernel");
        }
        let o = run_to_end(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let model = out(false);
    assert_eq!(model, out(true));
    assert_eq!(model["verdict"], "allow");
    assert_eq!(model["reason"], "rule");
}
