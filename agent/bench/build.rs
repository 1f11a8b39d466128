//! Builds the reference programs (`ebpf/reference`) for `bpfel-unknown-none` and copies
//! the object into `OUT_DIR`, where `src/reference.rs` embeds it.
//!
//! The same recipe as `agent/dataplane/build.rs` (read its notes): Debian's
//! `rustc`/`cargo` with the prebuilt `core` of `libstd-rust-web-dev-bpf` under
//! `RUSTC_BOOTSTRAP=1`, or a rustup nightly with `rust-src`; both link with
//! `bpf-linker`. The nested build writes to `<target>/ebpf-reference` (not the
//! dataplane's `<target>/ebpf`, so the two nested builds never wait on each other's
//! lock).

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none";
const BPF_TARGET: &str = "bpfel-unknown-none";
const EBPF_BINARY: &str = "sgmirror-bench-ebpf";
const SETUP_HINT: &str = "run `cargo xtask setup` to install the eBPF toolchain";

/// Variables that would make the nested cargo use the outer build's compiler, target,
/// flags or directories; other `CARGO_*` variables are cleared too, except those in
/// [`KEPT_CARGO_PREFIXES`].
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

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let programs = root.join("ebpf/reference");
    for path in [programs.join("src"), programs.join("Cargo.toml"), programs.join("Cargo.lock")] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(message) = build(&root, &programs, &out_dir) {
        eprintln!("error: building the reference eBPF programs failed: {message}");
        std::process::exit(1);
    }
}

fn build(root: &Path, programs: &Path, out_dir: &Path) -> Result<(), String> {
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
        .join("ebpf-reference");
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
    let object = target_dir.join(BPF_TARGET).join("release").join(EBPF_BINARY);
    fs::copy(&object, out_dir.join("reference.o"))
        .map_err(|e| format!("cannot copy {} into OUT_DIR: {e}", object.display()))?;
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
