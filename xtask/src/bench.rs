//! `cargo xtask bench [--smoke]`: builds the benchmark and the agent in release mode
//! and runs the benchmark pinned to CPU 0 (`taskset -c 0`), as `perf-method.md`
//! prescribes for these 2-core machines.
//!
//! A full run writes `docs/bench/results.json`, the SVG plots and the nftables ruleset
//! it compared against; `--smoke` is the tiny run the test suite also does, written
//! under the target directory so that it never replaces the published results.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::{cleanup, setup, util};

/// The CPU the benchmark is pinned to.
const CPU: &str = "0";

/// The benchmark's command line: pinned, with the output directory and the agent.
fn bench_command(target: &Path, out: &Path, smoke: bool, extra: &[String]) -> Command {
    let release = target.join("release");
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(CPU).arg(release.join("sgmirror-bench"));
    if smoke {
        cmd.arg("--smoke");
    }
    cmd.arg("--out").arg(out).arg("--agent").arg(release.join("sgmirror")).args(extra);
    cmd
}

/// Where the results go.
fn out_dir(root: &Path, target: &Path, smoke: bool) -> PathBuf {
    if smoke { target.join("bench-smoke") } else { root.join("docs").join("bench") }
}

/// `cargo xtask bench [--smoke] [-- <sgmirror-bench args>]`.
pub fn run(smoke: bool, extra: &[String]) -> Result<()> {
    util::require_root("`cargo xtask bench` (it loads BPF programs and creates network namespaces)")?;
    if util::find_in_path("taskset").is_none() {
        bail!("taskset (util-linux) is missing; the benchmark must run pinned to one CPU");
    }
    let ready = setup::ensure()?;
    let root = util::repo_root();
    let mut build = Command::new(util::cargo());
    // The agent is built without the AWS source (`--no-default-features`): the
    // benchmarks never use it, and aws-sdk-ec2 alone takes ~18 minutes in release.
    ready.apply(build.current_dir(&root)).args([
        "build",
        "--release",
        "--no-default-features",
        "-p",
        "sgmirror-bench",
        "-p",
        "sgmirror",
    ]);
    util::run_loud("bench", &mut build)?;

    let target = util::target_dir()?;
    let out = out_dir(&root, &target, smoke);
    cleanup::leftovers("bench");
    let mut cmd = bench_command(&target, &out, smoke, extra);
    let result = util::run_loud("bench", cmd.current_dir(&root));
    cleanup::leftovers("bench");
    result?;
    eprintln!("[bench] results in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn args(cmd: &Command) -> Vec<OsString> {
        cmd.get_args().map(OsString::from).collect()
    }

    #[test]
    fn the_benchmark_runs_pinned_to_one_cpu_with_the_release_agent() {
        let cmd = bench_command(Path::new("/t"), Path::new("/o"), false, &["--only".into(), "p1".into()]);
        assert_eq!(cmd.get_program(), "taskset");
        let a = args(&cmd);
        assert_eq!(a[..3], [OsString::from("-c"), "0".into(), "/t/release/sgmirror-bench".into()]);
        assert!(!a.contains(&OsString::from("--smoke")));
        let agent = a.iter().position(|x| x == "--agent").unwrap();
        assert_eq!(a[agent + 1], OsString::from("/t/release/sgmirror"));
        assert_eq!(a[a.len() - 2..], [OsString::from("--only"), "p1".into()]);
    }

    #[test]
    fn smoke_results_stay_out_of_the_published_directory() {
        assert_eq!(out_dir(Path::new("/r"), Path::new("/t"), false), Path::new("/r/docs/bench"));
        assert_eq!(out_dir(Path::new("/r"), Path::new("/t"), true), Path::new("/t/bench-smoke"));
        let cmd = bench_command(Path::new("/t"), Path::new("/o"), true, &[]);
        assert!(args(&cmd).contains(&OsString::from("--smoke")));
    }
}
