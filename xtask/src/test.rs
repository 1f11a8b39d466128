//! `cargo xtask test` and `cargo xtask lint`.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cleanup, moto_venv, setup, util};

/// Random packets the kernel differential test sends with `--full`.
const FULL_DIFF_PACKETS: &str = "1000000";

/// `cargo xtask test [--full] [-- <cargo test args>]`: setup, then the whole suite, with
/// leftovers of crashed runs removed before and after.
pub fn run_tests(full: bool, cargo_args: &[String]) -> Result<()> {
    util::require_root("`cargo xtask test` (the tests load XDP programs and create network namespaces)")?;
    let ready = setup::ensure()?;
    cleanup::leftovers("test");

    let mut cmd = Command::new(util::cargo());
    ready.apply(cmd.current_dir(util::repo_root()));
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        cmd.env("RUST_BACKTRACE", "1");
    }
    // The AWS-source tests run moto and their fixtures from this venv.
    cmd.env(moto_venv::VENV_ENV, moto_venv::venv_path());
    if full {
        cmd.env("SGMIRROR_DIFF_PACKETS", FULL_DIFF_PACKETS);
    }
    cmd.args(["test", "--workspace"]).args(cargo_args);
    let result = util::run_loud("test", &mut cmd);

    cleanup::leftovers("test");
    result.map_err(|e| anyhow::anyhow!("tests failed: {e:#}"))
}

/// `cargo xtask lint`: rustfmt and clippy over the workspace, and rustfmt over the eBPF
/// crate (which is outside the workspace and built by its own toolchain).
pub fn run_lint() -> Result<()> {
    let ready = setup::ensure()?;
    let root = util::repo_root();
    let mut failed = Vec::new();

    let mut fmt = Command::new(util::cargo());
    fmt.current_dir(&root).args(["fmt", "--all", "--check"]);
    if util::run_loud("lint", &mut fmt).is_err() {
        failed.push("cargo fmt (run `cargo fmt --all`)".to_owned());
    }

    // The kernel crates are their own workspaces, outside the root one.
    for krate in ["ebpf/programs", "ebpf/reference"] {
        let manifest = format!("{krate}/Cargo.toml");
        if !root.join(&manifest).exists() {
            continue;
        }
        let mut fmt_ebpf = Command::new(util::cargo());
        fmt_ebpf.current_dir(&root).args(["fmt", "--all", "--check", "--manifest-path", &manifest]);
        if util::run_loud("lint", &mut fmt_ebpf).is_err() {
            failed.push(format!("cargo fmt of {krate} (run `cargo fmt --all --manifest-path {manifest}`)"));
        }
    }

    let mut clippy = Command::new(util::cargo());
    ready.apply(clippy.current_dir(&root)).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    if util::run_loud("lint", &mut clippy).is_err() {
        failed.push("cargo clippy".to_owned());
    }

    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    eprintln!("[lint] ok");
    Ok(())
}
