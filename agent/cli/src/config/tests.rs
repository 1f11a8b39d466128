use std::collections::BTreeSet;

use super::*;

const EXAMPLE: &str = include_str!("../../../../packaging/config.toml");

/// The keys the file accepts, as serde lists them when it meets an unknown one: the
/// struct itself is the source, so a new field cannot be missed here.
fn accepted_keys() -> BTreeSet<String> {
    let error = toml::from_str::<FileConfig>("zz_not_a_key = 1").unwrap_err().to_string();
    let list = error.split("expected one of").nth(1).expect("serde lists the fields");
    let keys: BTreeSet<String> = list.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(keys.len() > 20, "{error}");
    keys
}

/// The example with every `#key = value` and `#[[table]]` line uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sgmirror run ARGS` parsed as main does, then resolved against `file`.
fn resolve_with(argv: &[&str], file: &str) -> Result<RunArgs> {
    let matches = Cli::command().try_get_matches_from(["sgmirror", "run"].iter().chain(argv))?;
    let Command::Run(flags) = Cli::from_arg_matches(&matches)?.command else { panic!("not run") };
    let sub = matches.subcommand_matches("run").unwrap();
    merge(&flags, sub, parse(file, Path::new("test.toml"))?)
}

#[test]
fn the_example_parses_and_sets_audit_and_aws() {
    let file = parse(EXAMPLE, Path::new("packaging/config.toml")).unwrap();
    assert_eq!(file.mode, Some(ModeArg::Audit));
    assert_eq!(file.source, Some(SourceArg::Aws));
    assert!(file.failsafe.is_empty(), "the failsafe list is empty by default");
}

#[test]
fn every_key_is_documented_in_the_example() {
    for key in accepted_keys() {
        let documented = EXAMPLE.lines().any(|line| {
            let line = line.trim_start_matches('#');
            line.starts_with(&format!("{key} =")) || line == format!("[[{key}]]")
        });
        assert!(documented, "packaging/config.toml does not show `{key}`");
    }
}

#[test]
fn the_examples_commented_defaults_are_valid_and_cover_every_key() {
    let text = uncommented(EXAMPLE);
    let file = parse(&text, Path::new("uncommented")).unwrap();
    assert_eq!(file.failsafe.len(), 1);
    assert_eq!(file.metrics_addr, Some(crate::metrics::DEFAULT_ADDR));
    assert_eq!(file.poll_interval_ms, Some(2000));
    // Every key is set once uncommented (toml would reject a key set twice).
    let table: toml::Table = toml::from_str(&text).unwrap();
    let set: BTreeSet<String> = table.keys().cloned().collect();
    assert_eq!(set, accepted_keys());
}

#[test]
fn the_commented_defaults_are_the_flags_defaults() {
    // Uncommenting a default must change nothing but the keys the package sets.
    let text = uncommented(EXAMPLE)
        .replace("source = \"aws\"", "source = \"file\"")
        .replace("mode = \"audit\"", "mode = \"enforce\"")
        .replace("summary_json = ", "#summary_json = ")
        .replace("account_id = ", "#account_id = ")
        .replace("\nregion = ", "\n#region = ")
        .replace("ec2_endpoint = ", "#ec2_endpoint = ")
        .replace("imds_endpoint = ", "#imds_endpoint = ")
        .replace("[[failsafe]]", "#[[failsafe]]")
        .replace("cidr = \"203", "#cidr = \"203")
        .replace("protocol = \"tcp\"", "#protocol = \"tcp\"")
        .replace("ports = \"22\"", "#ports = \"22\"")
        .replace("direction = \"ingress\"", "#direction = \"ingress\"");
    let from_file = resolve_with(&[], &text).unwrap();
    let from_flags = resolve_with(&["--snapshot", "/var/lib/sgmirror/snapshot.json"], "").unwrap();
    let mut from_file_cmp = from_file.clone();
    // Timeouts written in the file are AWS's defaults, equal in effect to unset.
    let base = sgmirror_common::Timeouts::default();
    assert_eq!(from_file.timeouts.apply(base), from_flags.timeouts.apply(base));
    from_file_cmp.timeouts = from_flags.timeouts;
    assert_eq!(format!("{from_file_cmp:?}"), format!("{from_flags:?}"));
}

#[test]
fn unknown_keys_are_errors_naming_key_and_line() {
    let error = parse("mode = \"audit\"\npoll_intervall_ms = 5\n", Path::new("/etc/x.toml")).unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("/etc/x.toml"), "{text}");
    assert!(text.contains("poll_intervall_ms"), "{text}");
    assert!(text.contains("line 2"), "{text}");

    let error =
        parse("[[failsafe]]\ncidr = \"10.0.0.1\"\nprotocol = \"tcp\"\nport = \"22\"\n", Path::new("f"))
            .unwrap_err();
    assert!(format!("{error:#}").contains("port"), "{error:#}");
}

#[test]
fn bad_values_name_the_line() {
    let error = parse("\n\nmode = \"enforcing\"\n", Path::new("c.toml")).unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("line 3") && text.contains("enforcing"), "{text}");
    let error = parse("flow_capacity = -1\n", Path::new("c.toml")).unwrap_err();
    assert!(format!("{error:#}").contains("line 1"), "{error:#}");
}

#[test]
fn flags_win_over_the_file_and_the_file_over_the_defaults() {
    let file = "snapshot = \"/a.json\"\nmode = \"audit\"\npoll_interval_ms = 500\nudp_timeout = 7\nbind = [\"x=eni-1\"]\ndrop_log = \"off\"\n";
    let args = resolve_with(&[], file).unwrap();
    assert_eq!(args.snapshot.as_deref(), Some(Path::new("/a.json")));
    assert_eq!(args.mode, ModeArg::Audit);
    assert_eq!(args.poll_interval_ms, 500);
    assert_eq!(args.timeouts.udp_timeout, Some(7));
    assert_eq!(args.bind, vec!["x=eni-1"]);
    assert_eq!(args.drop_log.drop_log, "off");
    assert_eq!(args.flow_capacity, 65536, "not in the file: the flag's default");

    let args = resolve_with(
        &[
            "--snapshot",
            "/b.json",
            "--mode",
            "enforce",
            "--poll-interval-ms",
            "2000",
            "--bind",
            "y=eni-2",
            "--udp-timeout",
            "9",
        ],
        file,
    )
    .unwrap();
    assert_eq!(args.snapshot.as_deref(), Some(Path::new("/b.json")));
    assert_eq!(args.mode, ModeArg::Enforce, "a flag equal to the default still wins");
    assert_eq!(args.poll_interval_ms, 2000);
    assert_eq!(args.bind, vec!["y=eni-2"]);
    assert_eq!(args.timeouts.udp_timeout, Some(9));
    assert_eq!(args.drop_log.drop_log, "off");
}

#[test]
fn failsafe_entries_are_checked_and_numbered() {
    let file = "snapshot = \"/a.json\"\n[[failsafe]]\ncidr = \"203.0.113.7\"\nprotocol = \"tcp\"\nports = \"22\"\n\n[[failsafe]]\ncidr = \"2001:db8::/64\"\nprotocol = \"icmpv6\"\ndirection = \"egress\"\n";
    let args = resolve_with(&[], file).unwrap();
    assert_eq!(args.failsafe.len(), 2);
    assert_eq!(args.failsafe[0].cidr.to_string(), "203.0.113.7/32");

    let bad = "snapshot = \"/a.json\"\n[[failsafe]]\ncidr = \"203.0.113.7\"\nprotocol = \"tcp\"\n[[failsafe]]\ncidr = \"10.0.0.1\"\nprotocol = \"tcp\"\nports = \"22-\"\n";
    let text = format!("{:#}", resolve_with(&[], bad).unwrap_err());
    assert!(text.contains("failsafe entry 2") && text.contains("22-"), "{text}");
}

#[test]
fn a_snapshot_is_required_for_the_file_source() {
    let text = format!("{:#}", resolve_with(&[], "mode = \"audit\"").unwrap_err());
    assert!(text.contains("--snapshot"), "{text}");
}

#[test]
fn a_missing_file_is_an_error_only_when_named() {
    let dir = std::env::temp_dir().join(format!("sgm-config-test-{}", std::process::id()));
    let missing = dir.join("nope.toml");
    let text = format!("{:#}", read_at(&missing, true).unwrap_err());
    assert!(text.contains(&missing.display().to_string()), "{text}");
    let defaults = read_at(&missing, false).unwrap();
    assert!(defaults.mode.is_none() && defaults.failsafe.is_empty());
}

#[test]
fn restart_only_changes_are_named() {
    let a = resolve_with(&["--snapshot", "/a"], "").unwrap();
    let mut b = a.clone();
    b.mode = ModeArg::Audit;
    b.poll_interval_ms = 1;
    assert!(restart_only_changes(&a, &b).is_empty());
    b.flow_capacity = 5;
    b.pin_root = "/x".into();
    assert_eq!(restart_only_changes(&a, &b), ["pin_root", "flow_capacity"]);
}

#[cfg(feature = "aws")]
#[test]
fn aws_keys_are_read_and_flags_win() {
    let file = "source = \"aws\"\nregion = \"eu-west-1\"\nimds_endpoint = \"http://127.0.0.1:1\"\nimds_interval_ms = 700\n";
    let args = resolve_with(&["--region", "us-east-1"], file).unwrap();
    assert_eq!(args.aws.region.as_deref(), Some("us-east-1"));
    assert_eq!(args.aws.imds_endpoint.as_deref(), Some("http://127.0.0.1:1"));
    assert_eq!(args.imds_interval_ms, 700);
    assert_eq!(args.refresh_interval_ms, 300_000);
    let error = resolve_with(&["--imds-interval-ms", "5"], file).unwrap_err();
    assert!(format!("{error:#}").contains("imds_interval_ms"), "{error:#}");
}
