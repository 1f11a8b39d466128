//! The benchmark's smoke mode, run by the test suite so that the benchmark cannot rot:
//! every section that runs without live traffic (P1, P4 with the agent, the drop log)
//! on small policies, checked for sane, complete results.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The `sgmirror` binary the agent measurements run: `$SGMIRROR_BIN`, or this
/// workspace's debug build (built here if needed).
fn sgmirror_bin() -> PathBuf {
    if let Ok(path) = std::env::var("SGMIRROR_BIN") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "sgmirror"])
        .current_dir(&root)
        .status()
        .expect("running cargo build -p sgmirror");
    assert!(status.success(), "cargo build -p sgmirror failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() { target } else { root.join(target) };
    target.join("debug").join("sgmirror")
}

fn number(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

#[test]
fn smoke_run_measures_every_section_it_covers() {
    let out = std::env::temp_dir().join(format!("sgm-bench-smoke-{}", std::process::id()));
    let started = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_sgmirror-bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .arg("--agent")
        .arg(sgmirror_bin())
        .output()
        .expect("running sgmirror-bench");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "sgmirror-bench --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.join("smoke.json")).expect("smoke.json written");
    let _ = std::fs::remove_dir_all(&out);
    let report: Value = serde_json::from_str(&text).expect("smoke.json is JSON");

    assert_eq!(report["mode"], "smoke");
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
    assert!(!report["machine"]["kernel"].as_str().unwrap_or("").is_empty());

    // P1: two policies x two families x six paths, each a positive time for all
    // three programs, and sgmirror never cheaper than a bare XDP_DROP.
    let rows = report["p1"]["rows"].as_array().expect("P1 rows");
    assert_eq!(rows.len(), 2 * 2 * 6, "{stdout}");
    for row in rows {
        let sgm = number(row, "/sgmirror_ns/median");
        let lpm = number(row, "/ref_lpm_ns/median");
        let drop = number(row, "/ref_drop_ns/median");
        assert!(sgm > 0.0 && lpm > 0.0 && drop > 0.0, "{row}");
        assert!(sgm >= drop, "sgmirror cheaper than XDP_DROP: {row}");
        assert!((number(row, "/ratio_to_lpm/value") - sgm / lpm).abs() < 1e-9, "{row}");
    }
    for kind in [
        "deny-unknown-source",
        "deny-known-source",
        "allow-new",
        "allow-untracked",
        "tracked-reply",
        "later-fragment",
    ] {
        assert!(rows.iter().any(|r| r["kind"] == kind), "no {kind} row");
    }

    // P4: the swap was timed, and the agent enforced and was measured.
    let swap = &report["p4"]["swap"][0];
    assert_eq!(swap["prefixes"], 1000);
    assert!(number(swap, "/compile_and_swap_ms/median") >= number(swap, "/load_ms/median"));
    assert!(number(&report, "/p4/agent/peak_rss_kb") > 1000.0);
    assert!(number(&report, "/p4/agent/idle_cpu_percent") >= 0.0);

    // The drop log: measured or explicitly not available.
    let drop_log = &report["drop_log"];
    assert!(!drop_log["note"].as_str().unwrap_or("").is_empty());
    if drop_log["available"] == true {
        assert_eq!(drop_log["rows"].as_array().map(Vec::len), Some(4));
    }

    // Targets judged from what ran (no live traffic in smoke mode).
    let targets = report["targets"].as_array().expect("targets");
    assert!(targets.iter().any(|t| t["name"].as_str().unwrap_or("").contains("agent peak RSS")));
    assert!(report["p2"].is_null() && report["p3"].is_null());
    assert!(elapsed.as_secs() < 60, "the smoke run took {elapsed:?}");
}
