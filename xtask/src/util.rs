//! Small helpers shared by the tasks: running commands, finding tools, root checks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The repository root (the xtask crate sits one level below it).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs us (`cargo xtask` sets `CARGO`), so nested builds use the same
/// toolchain as the developer's own `cargo build`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether we run with an effective uid of 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails with a message saying why root is needed.
pub fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{why} needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces); run it as root, e.g. `sudo -E cargo xtask …`"
        );
    }
    Ok(())
}

/// The command line as a user would type it, for progress output.
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .collect();
    let program = cmd.get_program().to_string_lossy();
    // Show `cargo` rather than rustup's full toolchain path.
    let program =
        if program.ends_with("/cargo") && program.contains("/.rustup/") { "cargo".into() } else { program };
    parts.push(program.into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs a command with inherited stdio after printing it with `prefix`; fails on a
/// non-zero exit.
pub fn run_loud(prefix: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("[{prefix}] $ {}", describe(cmd));
    let status =
        cmd.stdin(Stdio::null()).status().with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout when it succeeds; `None` when it cannot
/// be started or fails (used for probing what is installed).
pub fn probe_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command quietly, failing with its stderr when it fails.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out =
        cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", describe(cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Finds an executable on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

/// Finds a tool installed by `cargo install`: on `PATH`, or in cargo's bin directory
/// (`$CARGO_HOME/bin`, else `~/.cargo/bin`), which a non-login shell may lack on `PATH`.
pub fn find_cargo_tool(name: &str) -> Option<PathBuf> {
    find_in_path(name).or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let p = home.join("bin").join(name);
        is_executable(&p).then_some(p)
    })
}

/// Whether `p` is a file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The workspace's target directory as cargo sees it (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        bail!("`cargo metadata` failed ({})", out.status);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`cargo metadata` printed invalid JSON")?;
    let dir = meta["target_directory"].as_str().context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_env_program_and_args() {
        let mut cmd = Command::new("cargo");
        cmd.env("A", "1").args(["test", "--workspace"]);
        assert_eq!(describe(&cmd), "A=1 cargo test --workspace");
    }

    #[test]
    fn finds_sh_but_not_a_made_up_tool() {
        assert!(find_in_path("sh").is_some());
        assert!(find_cargo_tool("no-such-tool-sgmirror-xtask").is_none());
    }

    #[test]
    fn repo_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn probe_output_is_none_for_a_failing_command() {
        assert!(probe_output(&mut Command::new("false")).is_none());
        assert_eq!(probe_output(Command::new("echo").arg("hi")).as_deref(), Some("hi\n"));
    }
}
