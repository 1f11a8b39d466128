//! The exposition's exact lines, its validity for Prometheus's own parser and linter
//! (`promtool check metrics`), and the shipped dashboard and alerts: they name only
//! metrics that exist, and the alerts pass `promtool check rules` and fire in
//! `promtool test rules` scenarios.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sgmirror_common::{Counter as KernelCounter, STATS_LEN, direction, reason, stat_index, verdict};
use sgmirror_dataplane::Stats;

use super::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// promtool from Debian's `prometheus` package, unpacked by `cargo xtask setup`.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/tools/prometheus/usr/bin/promtool"));
    assert!(
        path.is_file(),
        "promtool not found at {} (set PROMTOOL, or run `cargo xtask setup`, which unpacks Debian's prometheus package there)",
        path.display()
    );
    path
}

/// Runs promtool with `args` and `stdin`; returns (success, stdout + stderr).
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn sample_stats() -> Stats {
    let mut counters = vec![KernelCounter::default(); STATS_LEN as usize];
    counters[stat_index(direction::INGRESS, verdict::DROP, reason::NO_RULE) as usize] =
        KernelCounter { packets: 7, bytes: 364 };
    counters[stat_index(direction::INGRESS, verdict::ALLOW, reason::TRACKED) as usize] =
        KernelCounter { packets: 4, bytes: 208 };
    counters[stat_index(direction::EGRESS, verdict::ALLOW, reason::RULE) as usize] =
        KernelCounter { packets: 2, bytes: 140 };
    Stats::from_counters(counters)
}

/// Every family has at least one sample.
fn sample() -> AgentMetrics {
    AgentMetrics {
        links: vec![LinkMetrics {
            interface_id: "eni-0abc".into(),
            link: "eth0".into(),
            xdp_mode: "native".into(),
            tc_mode: "tcx".into(),
            mode: "enforce",
            generation: 3,
            applied_unix_seconds: 1_700_000_000.5,
            counters: counters(&sample_stats()),
            rule_hits: vec![
                RuleHit {
                    rule: "sgr-0123".into(),
                    group_id: "sg-0a".into(),
                    direction: "ingress",
                    packets: 1,
                },
                RuleHit {
                    rule: "sgr-0456".into(),
                    group_id: "sg-0a".into(),
                    direction: "egress",
                    packets: 0,
                },
            ],
            flows: 12,
            flow_capacity: 65536,
            flows_evicted: 5,
            drop_records_suppressed: 9,
            drop_records_lost: 1,
        }],
        last_refresh_success_unix_seconds: 1_700_000_100.0,
        source_errors: vec![("imds".into(), 2), ("api".into(), 0)],
        drop_log_lines: 40,
        drop_log_lines_suppressed: 6,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn a_counter_and_a_rule_hit_are_exposed_exactly() {
    let text = render(&sample());
    let lines = lines(&text);
    for expected in [
        "# HELP sgmirror_packets_total Packets judged by the sgmirror programs, by interface, link, direction, verdict and reason.",
        "# TYPE sgmirror_packets_total counter",
        r#"sgmirror_packets_total{interface="eni-0abc",link="eth0",direction="ingress",verdict="drop",reason="no-rule"} 7"#,
        r#"sgmirror_bytes_total{interface="eni-0abc",link="eth0",direction="ingress",verdict="drop",reason="no-rule"} 364"#,
        r#"sgmirror_packets_total{interface="eni-0abc",link="eth0",direction="ingress",verdict="allow",reason="tracked"} 4"#,
        r#"sgmirror_packets_total{interface="eni-0abc",link="eth0",direction="egress",verdict="allow",reason="rule"} 2"#,
        r#"sgmirror_packets_total{interface="eni-0abc",link="eth0",direction="egress",verdict="audit",reason="non-ip"} 0"#,
        "# TYPE sgmirror_rule_hits_total counter",
        r#"sgmirror_rule_hits_total{rule="sgr-0123",group="sg-0a",interface="eni-0abc",direction="ingress"} 1"#,
        r#"sgmirror_rule_hits_total{rule="sgr-0456",group="sg-0a",interface="eni-0abc",direction="egress"} 0"#,
        "# TYPE sgmirror_attach_mode_info gauge",
        r#"sgmirror_attach_mode_info{interface="eni-0abc",link="eth0",hook="xdp",mode="native"} 1"#,
        r#"sgmirror_attach_mode_info{interface="eni-0abc",link="eth0",hook="tc",mode="tcx"} 1"#,
        r#"sgmirror_enforcement_mode{interface="eni-0abc",link="eth0",mode="enforce"} 1"#,
        r#"sgmirror_enforcement_mode{interface="eni-0abc",link="eth0",mode="audit"} 0"#,
        r#"sgmirror_policy_generation{interface="eni-0abc",link="eth0"} 3"#,
        r#"sgmirror_policy_applied_timestamp_seconds{interface="eni-0abc",link="eth0"} 1700000000.5"#,
        r#"sgmirror_flows{interface="eni-0abc",link="eth0"} 12"#,
        r#"sgmirror_flow_table_capacity{interface="eni-0abc",link="eth0"} 65536"#,
        r#"sgmirror_flow_evictions_total{interface="eni-0abc",link="eth0"} 5"#,
        r#"sgmirror_drop_records_suppressed_total{interface="eni-0abc",link="eth0"} 9"#,
        r#"sgmirror_drop_records_lost_total{interface="eni-0abc",link="eth0"} 1"#,
        "sgmirror_last_successful_refresh_timestamp_seconds 1700000100.0",
        r#"sgmirror_source_errors_total{kind="imds"} 2"#,
        r#"sgmirror_source_errors_total{kind="api"} 0"#,
        "sgmirror_drop_log_lines_total 40",
        "sgmirror_drop_log_lines_suppressed_total 6",
        concat!(r#"sgmirror_build_info{version=""#, env!("CARGO_PKG_VERSION"), r#""} 1"#),
    ] {
        assert!(lines.contains(&expected), "missing line {expected:?} in:\n{text}");
    }
}

#[test]
fn every_counter_combination_is_present_once_per_link() {
    let text = render(&sample());
    let per_metric = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(per_metric("sgmirror_packets_total{"), 2 * 3 * 8);
    assert_eq!(per_metric("sgmirror_bytes_total{"), 2 * 3 * 8);
    // Each family is described exactly once, before its samples.
    assert_eq!(text.matches("# TYPE sgmirror_packets_total ").count(), 1);
    let series: BTreeSet<&str> =
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').unwrap().0).collect();
    assert_eq!(series.len(), text.lines().filter(|l| !l.starts_with('#')).count(), "no duplicate series");
}

#[test]
fn rendering_is_deterministic_and_escapes_label_values() {
    let mut m = sample();
    assert_eq!(render(&m), render(&m));
    m.links[0].rule_hits[0].rule = "sg-0a/ingress/0/\"odd\"\\".into();
    let text = render(&m);
    assert!(
        text.contains(r#"sgmirror_rule_hits_total{rule="sg-0a/ingress/0/\"odd\"\\",group="sg-0a""#),
        "{text}"
    );
}

#[test]
fn no_links_still_exposes_the_agent_wide_metrics() {
    let text = render(&AgentMetrics::default());
    assert!(text.contains("sgmirror_last_successful_refresh_timestamp_seconds 0.0\n"), "{text}");
    assert!(!text.contains("sgmirror_packets_total"), "no link, no packet series:\n{text}");
    assert!(!text.contains("# TYPE sgmirror_packets_total"), "no empty family descriptions:\n{text}");
}

#[test]
fn the_exposition_passes_promtool_check_metrics() {
    for m in [sample(), AgentMetrics::default()] {
        let text = render(&m);
        let (ok, out) = run_promtool(&["check", "metrics"], &text);
        assert!(ok && out.trim().is_empty(), "promtool check metrics: {out}\non:\n{text}");
    }
}

#[test]
fn promtool_check_metrics_does_fail_on_bad_input() {
    // Guards the test above against a promtool that accepts anything.
    let (ok, out) = run_promtool(&["check", "metrics"], "# TYPE x counter\nx{a=\"1\"} one\n");
    assert!(!ok, "accepted a malformed exposition: {out}");
}

#[test]
fn the_default_address_is_loopback_and_avoids_the_prometheus_ports() {
    assert!(DEFAULT_ADDR.ip().is_loopback());
    let port = DEFAULT_ADDR.port();
    assert!(![8080, 9090, 9091, 9100].contains(&port));
    assert!(!(9090..=9999).contains(&port), "9090-9999 belongs to Prometheus and its exporters");
    assert!(port < 30000, "below the Kubernetes NodePort and Linux ephemeral ranges");
}

/// Names of the series and families in an exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every `sgmirror_…` metric name mentioned in `text` (recording rules use `sgmirror:`).
fn mentioned_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sgmirror_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        // Skip identifiers that merely end in "sgmirror_" (none expected) or dashboard uids.
        let before = rest[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn read_doc(name: &str) -> String {
    let path = repo_root().join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The PromQL queries of the dashboard's panels and variables.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("every target has an expr").to_owned());
        }
    }
    queries
}

#[test]
fn the_dashboard_is_grafana_json_using_only_exposed_metrics() {
    let text = read_doc("grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["title"].as_str().is_some_and(|t| t.contains("sgmirror")));
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "a Grafana 10 schema");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().expect("panel id")).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 12, "{} queries", queries.len());
    let exposed = exposed_names(&render(&sample()));
    // Panels and template variables alike.
    let used = mentioned_names(&text);
    for wanted in [
        "sgmirror_packets_total",
        "sgmirror_rule_hits_total",
        "sgmirror_flows",
        "sgmirror_flow_table_capacity",
        "sgmirror_attach_mode_info",
        "sgmirror_policy_generation",
        "sgmirror_source_errors_total",
        "sgmirror_drop_records_lost_total",
    ] {
        assert!(used.contains(wanted), "the dashboard does not show {wanted}");
    }
    let unknown: Vec<_> = used.difference(&exposed).collect();
    assert!(unknown.is_empty(), "the dashboard queries metrics that do not exist: {unknown:?}");
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    // promtool parses PromQL in rule files: make each query a recording rule, with
    // Grafana's variables replaced by what Grafana would put there.
    let dashboard: serde_json::Value = serde_json::from_str(&read_doc("grafana-dashboard.json")).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in dashboard_queries(&dashboard).iter().enumerate() {
        let expr = query
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1d")
            .replace("$instance", ".*")
            .replace("$interface", ".*");
        assert!(!expr.contains('$'), "unknown variable in {query}");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = std::env::temp_dir().join(format!("sgm-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard-rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let (ok, out) = run_promtool(&["check", "rules", path.to_str().unwrap()], "");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "promtool check rules on the dashboard's queries: {out}\n{rules}");
}

#[test]
fn the_alerts_pass_promtool_check_rules_and_use_only_exposed_metrics() {
    let path = repo_root().join("docs/prometheus-alerts.yml");
    let (ok, out) = run_promtool(&["check", "rules", path.to_str().unwrap()], "");
    assert!(ok, "promtool check rules: {out}");
    let exposed = exposed_names(&render(&sample()));
    let used = mentioned_names(&read_doc("prometheus-alerts.yml"));
    let unknown: Vec<_> = used.difference(&exposed).collect();
    assert!(unknown.is_empty(), "the alerts use metrics that do not exist: {unknown:?}");
}

#[test]
fn the_alerts_fire_in_promtool_scenarios() {
    let dir = std::env::temp_dir().join(format!("sgm-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alerts = repo_root().join("docs/prometheus-alerts.yml").canonicalize().unwrap();
    let tests = dir.join("alerts-test.yml");
    std::fs::write(&tests, alert_scenarios(&alerts)).unwrap();
    let (ok, out) = run_promtool(&["test", "rules", tests.to_str().unwrap()], "");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "promtool test rules: {out}");
}

/// `promtool test rules` input: series over time and the alerts expected at given
/// times (an alert expected with no labels list means "not firing").
fn alert_scenarios(alerts: &Path) -> String {
    let link = r#"interface="eni-1",link="eth0""#;
    format!(
        r#"rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="sgmirror",instance="h:12971"}}'
        values: '1x5 0x20'
      - series: 'sgmirror_build_info{{job="sgmirror",instance="h:12971",version="0.1.0"}}'
        values: '1x5 _x20'
      - series: 'sgmirror_flows{{job="sgmirror",instance="h:12971",{link}}}'
        values: '95000x30'
      - series: 'sgmirror_flow_table_capacity{{job="sgmirror",instance="h:12971",{link}}}'
        values: '100000x30'
      - series: 'sgmirror_attach_mode_info{{job="sgmirror",instance="h:12971",{link},hook="xdp",mode="generic"}}'
        values: '1x30'
      - series: 'sgmirror_drop_records_lost_total{{job="sgmirror",instance="h:12971",{link}}}'
        values: '0x5 10+10x25'
    alert_rule_test:
      - eval_time: 4m
        alertname: SgmirrorDown
        exp_alerts: []
      - eval_time: 20m
        alertname: SgmirrorMetricsAbsent
        exp_alerts: []
      - eval_time: 20m
        alertname: SgmirrorDown
        exp_alerts:
          - exp_labels:
              severity: critical
              job: sgmirror
              instance: h:12971
            exp_annotations:
              summary: "sgmirror on h:12971 cannot be scraped"
              description: "Prometheus cannot scrape sgmirror's metrics endpoint; the agent may be down (the kernel keeps enforcing the last policy)."
      - eval_time: 20m
        alertname: SgmirrorFlowTableNearlyFull
        exp_alerts:
          - exp_labels:
              severity: warning
              job: sgmirror
              instance: h:12971
              interface: eni-1
              link: eth0
            exp_annotations:
              summary: "Flow table of eni-1 (eth0) on h:12971 is 95% full"
              description: "When the flow table is full, the least recently used flows are evicted and their replies are judged by the rules again; raise the flow-table size."
      - eval_time: 20m
        alertname: SgmirrorXdpGenericMode
        exp_alerts:
          - exp_labels:
              severity: info
              job: sgmirror
              instance: h:12971
              interface: eni-1
              link: eth0
              hook: xdp
              mode: generic
            exp_annotations:
              summary: "XDP runs in generic mode on eni-1 (eth0) on h:12971"
              description: "Native XDP was not available (driver, MTU or channel count); generic mode enforces the same policy at a higher cost per packet. The agent's log says why."
      - eval_time: 20m
        alertname: SgmirrorDropRecordsLost
        exp_alerts:
          - exp_labels:
              severity: warning
              job: sgmirror
              instance: h:12971
              interface: eni-1
              link: eth0
            exp_annotations:
              summary: "Drop records lost on eni-1 (eth0) on h:12971"
              description: "The drop-log ring buffer was full; the drop log misses packets (the counters do not)."

  - interval: 1m
    input_series:
      - series: 'sgmirror_last_successful_refresh_timestamp_seconds{{job="sgmirror",instance="h:12971"}}'
        values: '0x60'
      - series: 'sgmirror_flows{{job="sgmirror",instance="h:12971",{link}}}'
        values: '10x40'
      - series: 'sgmirror_flow_table_capacity{{job="sgmirror",instance="h:12971",{link}}}'
        values: '100000x40'
      - series: 'sgmirror_source_errors_total{{job="sgmirror",instance="h:12971",kind="api"}}'
        values: '0x10 1+1x30'
      - series: 'sgmirror_packets_total{{job="sgmirror",instance="h:12971",{link},direction="ingress",verdict="drop",reason="malformed"}}'
        values: '0x10 0+1000x30'
      - series: 'sgmirror_flow_evictions_total{{job="sgmirror",instance="h:12971",{link}}}'
        values: '0x40'
      - series: 'sgmirror_build_info{{job="sgmirror",instance="h:12972",version="0.1.0"}}'
        values: '1x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: SgmirrorMetricsAbsent
        exp_alerts:
          - exp_labels:
              severity: critical
              job: sgmirror
            exp_annotations:
              summary: "No sgmirror target is scraped"
              description: "No target of the sgmirror job exists any more; check service discovery and the scrape configuration."
      - eval_time: 30m
        alertname: SgmirrorNotEnforcing
        exp_alerts:
          - exp_labels:
              severity: warning
              job: sgmirror
              instance: h:12972
              version: 0.1.0
            exp_annotations:
              summary: "sgmirror on h:12972 enforces on no link"
              description: "The agent runs but has attached to no interface (no policy at first start, or no local link matches an ENI); only the cloud security groups protect the host."
      - eval_time: 30m
        alertname: SgmirrorFlowTableNearlyFull
        exp_alerts: []
      - eval_time: 30m
        alertname: SgmirrorFlowEvictions
        exp_alerts: []
      - eval_time: 30m
        alertname: SgmirrorSourceErrors
        exp_alerts:
          - exp_labels:
              severity: warning
              job: sgmirror
              instance: h:12971
              kind: api
            exp_annotations:
              summary: "sgmirror on h:12971: policy source errors (api)"
              description: "The policy source keeps failing; the last good policy stays enforced, but changes to the security groups are not picked up."
      - eval_time: 30m
        alertname: SgmirrorMalformedDropSpike
        exp_alerts:
          - exp_labels:
              severity: warning
              job: sgmirror
              instance: h:12971
              interface: eni-1
              link: eth0
              direction: ingress
            exp_annotations:
              summary: "Malformed packets dropped on eni-1 (eth0) on h:12971"
              description: "More than 1 malformed packet per second is dropped; this is an attack, a broken peer, or a parser bug (check with sgmirror explain --kernel)."
      - eval_time: 50m
        alertname: SgmirrorPolicyStale
        exp_alerts:
          - exp_labels:
              severity: warning
              job: sgmirror
              instance: h:12971
            exp_annotations:
              summary: "sgmirror on h:12971 has not refreshed its policy for a long time"
              description: "The policy source has not answered successfully for more than 30 minutes (or never); the enforced policy may be out of date."
"#,
        alerts = alerts.display()
    )
}
