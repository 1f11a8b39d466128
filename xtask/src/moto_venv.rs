//! The Python virtualenv with moto's EC2 emulator that the AWS-source tests run.
//!
//! The tests (`tests/tests/aws_*.rs`) start `moto_server` as a local EC2 Query-API
//! endpoint and run the fixtures in `tests/fixtures/aws/` (scenario builder, IMDS
//! stand-in, fault proxy) with the venv's Python, which has boto3 (a dependency of moto).
//! moto is pinned: its known bugs (`shared/sg-semantics.md` §3.3) are worked around in
//! the fixtures, and another version may have other ones.
//!
//! The venv lives at `<repo>/target/tools/moto-venv`, next to promtool; `cargo xtask
//! test` tells the tests where (`SGMIRROR_MOTO_VENV`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

/// The moto release the fixtures are written against.
pub const MOTO_VERSION: &str = "5.2.5";
/// The environment variable that tells the tests where the venv is.
pub const VENV_ENV: &str = "SGMIRROR_MOTO_VENV";

/// `<repo>/target/tools/moto-venv`.
pub fn venv_path() -> PathBuf {
    util::repo_root().join("target").join("tools").join("moto-venv")
}

/// The moto version installed in the venv at `venv`, if the venv works (its Python
/// imports moto and boto3, and `moto_server` is there).
pub fn detect(venv: &Path) -> Option<String> {
    if !util::is_executable(&venv.join("bin/moto_server")) {
        return None;
    }
    let out = util::probe_output(
        Command::new(venv.join("bin/python")).args(["-c", "import boto3, moto; print(moto.__version__)"]),
    )?;
    Some(out.trim().to_owned())
}

/// What setup must do about the venv, given the version found there.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The pinned version is installed.
    Nothing,
    /// No working venv: create it, then install.
    Create,
    /// A working venv with another moto: reinstall the pinned one into it.
    Reinstall,
}

/// Decides from what `detect` found.
pub fn plan(found: Option<&str>) -> Plan {
    match found {
        Some(v) if v == MOTO_VERSION => Plan::Nothing,
        Some(_) => Plan::Reinstall,
        None => Plan::Create,
    }
}

/// The `pip install` requirement.
pub fn requirement() -> String {
    format!("moto[server]=={MOTO_VERSION}")
}

/// Creates (or repairs) the venv and installs the pinned moto. Needs `python3` with the
/// `venv` module (Debian: `python3-venv`, installed by setup before this runs) and
/// network access to PyPI.
pub fn install(venv: &Path) -> Result<()> {
    let found = detect(venv);
    match plan(found.as_deref()) {
        Plan::Nothing => return Ok(()),
        Plan::Create => {
            if venv.exists() {
                // A half-made venv (an interrupted earlier run): start again.
                std::fs::remove_dir_all(venv).with_context(|| format!("removing {}", venv.display()))?;
            }
            if let Some(parent) = venv.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            say(&format!("creating the moto venv at {}", venv.display()));
            util::run_loud("setup", Command::new(system_python()).args(["-m", "venv"]).arg(venv))?;
        }
        Plan::Reinstall => {
            say(&format!("moto {} found; installing {MOTO_VERSION}", found.unwrap_or_default()))
        }
    }
    say(&format!("installing {} into the venv (about a minute)", requirement()));
    util::run_loud(
        "setup",
        Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            &requirement(),
        ]),
    )?;
    match detect(venv) {
        Some(v) if v == MOTO_VERSION => Ok(()),
        other => {
            bail!("after pip install the venv at {} has moto {other:?}, not {MOTO_VERSION}", venv.display())
        }
    }
}

/// Debian's Python (which `python3-venv` completes), else whatever `python3` is on PATH.
fn system_python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if util::is_executable(&debian) {
        return debian;
    }
    util::find_in_path("python3").unwrap_or_else(|| PathBuf::from("python3"))
}

fn say(line: &str) {
    eprintln!("[setup] {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_version_is_left_alone() {
        assert_eq!(plan(Some(MOTO_VERSION)), Plan::Nothing);
        assert_eq!(plan(Some("5.1.0")), Plan::Reinstall);
        assert_eq!(plan(None), Plan::Create, "a missing or broken venv is made (again)");
    }

    #[test]
    fn the_requirement_pins_moto_with_its_server_extra() {
        assert_eq!(requirement(), format!("moto[server]=={MOTO_VERSION}"));
    }

    #[test]
    fn the_venv_lives_under_the_repository_target_tools() {
        assert_eq!(venv_path(), util::repo_root().join("target/tools/moto-venv"));
    }

    #[test]
    fn a_directory_without_moto_server_is_not_a_venv() {
        let dir = std::env::temp_dir().join(format!("sgm-xtask-novenv-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        assert_eq!(detect(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
