//! Compiles an eBPF crate for `bpfel-unknown-none` from a build script, with the
//! toolchain this machine has. Used by `agent/dataplane` (the kernel programs) and
//! `agent/bench` (the reference programs).
//!
//! The eBPF crates need a `core` library for the BPF target, which the rustup stable
//! toolchain that builds the agent does not have. Two toolchains provide one:
//!
//! * Debian's `rustc`/`cargo` with the prebuilt `core` of `libstd-rust-web-dev-bpf`
//!   (`/usr/lib/rustlib/bpfel-unknown-none`), run with `RUSTC_BOOTSTRAP=1`;
//! * a rustup nightly with `rust-src` (`-Z build-std=core`).
//!
//! Both link with `bpf-linker`. The nested build writes to `<target>/<subdir>`, where
//! `<target>` is `CARGO_TARGET_DIR` when set and `<root>/target` otherwise, rather
//! than `OUT_DIR`, so it is shared by the debug and release builds of the agent and
//! only recompiles when the eBPF sources change.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none";
const BPF_TARGET: &str = "bpfel-unknown-none";
const SETUP_HINT: &str = "run `cargo xtask setup` to install the eBPF toolchain";

/// Variables that cargo sets for build scripts, or that configure the outer build,
/// and would make the nested cargo use the wrong compiler, target, flags or
/// directories. Every other `CARGO_*` variable is cleared too, except the few in
/// [`KEPT_CARGO_PREFIXES`] that configure cargo itself (registry, network, home).
const CLEARED: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTUP_TOOLCHAIN",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    "MAKEFLAGS",
    "MFLAGS",
];

const KEPT_CARGO_PREFIXES: &[&str] =
    &["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_", "CARGO_TERM_"];

enum Toolchain {
    Debian,
    Nightly { rustup: PathBuf },
}

/// What to build and where its object goes.
pub struct Crate<'a> {
    /// The workspace root (`<root>/target` is the default target directory).
    pub root: &'a Path,
    /// The eBPF crate's directory (its own workspace, excluded from the outer one).
    pub dir: &'a Path,
    /// Its binary's name.
    pub binary: &'a str,
    /// The nested build's directory under the target directory: one per crate, so
    /// two nested builds never wait on each other's lock.
    pub target_subdir: &'a str,
    /// Where the object is copied.
    pub object: &'a Path,
}

/// Prints the `rerun-if-changed` lines of `paths` and of the target directory's
/// variable, then builds `krate` and copies its object; on failure prints the error
/// with `what` and exits 1, which is how a build script fails.
pub fn build_or_exit(krate: &Crate<'_>, paths: &[PathBuf], what: &str) {
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    if let Err(message) = build(krate) {
        eprintln!("error: building {what} failed: {message}");
        std::process::exit(1);
    }
}

/// Builds `krate` for `bpfel-unknown-none` in release mode and copies its object.
pub fn build(krate: &Crate<'_>) -> Result<(), String> {
    let Crate { root, dir: programs, binary, target_subdir, object: out } = *krate;
    let linker =
        find_tool("bpf-linker").ok_or_else(|| format!("bpf-linker is not installed; {SETUP_HINT}"))?;
    let toolchain = detect_toolchain().ok_or_else(|| {
        format!(
            "no toolchain can build for {BPF_TARGET}: neither Debian's rustc with {DEBIAN_BPF_CORE} \
             nor a rustup nightly with rust-src; {SETUP_HINT}"
        )
    })?;
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_absolute() { dir } else { root.join(dir) })
        .unwrap_or_else(|| root.join("target"))
        .join(target_subdir);
    let mut cmd = match &toolchain {
        Toolchain::Debian => Command::new(DEBIAN_CARGO),
        Toolchain::Nightly { rustup } => Command::new(rustup),
    };
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let cargo_specific = (name.starts_with("CARGO") || name.starts_with("__CARGO"))
            && !KEPT_CARGO_PREFIXES.iter().any(|p| name.starts_with(p));
        if cargo_specific || CLEARED.contains(&name) {
            cmd.env_remove(name);
        }
    }
    match &toolchain {
        Toolchain::Debian => {
            cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1").arg("build");
        }
        Toolchain::Nightly { .. } => {
            cmd.args(["run", "nightly", "cargo", "build", "-Z", "build-std=core"]);
        }
    }
    cmd.current_dir(programs)
        .args(["--release", "--target", BPF_TARGET, "--manifest-path"])
        .arg(programs.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("PATH", path_with(linker.parent().unwrap_or(Path::new("/"))));

    let output = cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return Err(format!("the nested cargo build exited with {} (its output is above)", output.status));
    }
    let object = target_dir.join(BPF_TARGET).join("release").join(binary);
    fs::copy(&object, out)
        .map_err(|e| format!("cannot copy {} to {}: {e}", object.display(), out.display()))?;
    Ok(())
}

fn detect_toolchain() -> Option<Toolchain> {
    if Path::new(DEBIAN_RUSTC).exists()
        && Path::new(DEBIAN_CARGO).exists()
        && Path::new(DEBIAN_BPF_CORE).is_dir()
    {
        return Some(Toolchain::Debian);
    }
    let rustup = find_tool("rustup")?;
    let installed = Command::new(&rustup)
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()?;
    let listed = String::from_utf8_lossy(&installed.stdout);
    (installed.status.success() && listed.lines().any(|l| l.starts_with("rust-src")))
        .then_some(Toolchain::Nightly { rustup })
}

/// A tool on `PATH` or in cargo's bin directory (where `cargo install` puts it).
fn find_tool(name: &str) -> Option<PathBuf> {
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `PATH` with `dir` in front.
fn path_with(dir: &Path) -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(env::split_paths(&current));
    env::join_paths(dirs).unwrap_or(current)
}
