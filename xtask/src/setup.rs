//! `cargo xtask setup`: makes sure the eBPF toolchain and the test tools are installed.
//!
//! The kernel programs (`ebpf/programs`) build for `bpfel-unknown-none`, which needs a
//! `core` library for that target. Two toolchains provide one:
//!
//! * (a) Debian's `rustc-web` + `cargo-web` with the prebuilt `core` of
//!   `libstd-rust-web-dev-bpf` (`/usr/lib/rustlib/bpfel-unknown-none`), used on machines
//!   whose rustup nightly lacks `rust-src` and cannot fetch it;
//! * (b) a rustup nightly with the `rust-src` component (`-Z build-std=core`).
//!
//! Both link with `bpf-linker`. When neither is complete, (a) is installed: its Debian
//! packages, then `bpf-linker` built against Debian's LLVM 22. Everything is checked
//! before anything is installed, so a second run does nothing.
//!
//! The tests also need `promtool` (to validate the metrics exposition and the alerting
//! rules). It comes from Debian's `prometheus` package, which is downloaded and
//! unpacked under `target/tools/prometheus/` with `dpkg -x` — never installed, so no
//! Prometheus service is set up or started on the machine.
//!
//! The AWS-source tests need moto's EC2 emulator: Debian's `python3-venv`, then a
//! virtualenv with a pinned `moto[server]` under `target/tools/moto-venv`
//! (`moto_venv.rs`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{moto_venv, util};

/// Debian packages of toolchain (a).
const DEBIAN_TOOLCHAIN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf"];
/// What building bpf-linker against Debian's LLVM 22 needs.
const LINKER_BUILD_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "zlib1g-dev"];
/// Tools the tests, the demo and the benchmark run: `ip`, `ping`, `ethtool`, `curl`,
/// the netfilter tools the benchmark compares sgmirror with (`iptables`, `nft`,
/// `ipset`), and what the packaging tests use: `systemd-analyze`, `setpriv`,
/// `dpkg-shlibdeps`, `strip`, `lintian`, `debootstrap`; and `python3-venv` for the
/// moto venv of the AWS-source tests.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "ethtool",
    "curl",
    "iptables",
    "nftables",
    "ipset",
    "systemd",
    "util-linux",
    "dpkg-dev",
    "binutils",
    "lintian",
    "debootstrap",
    "python3-venv",
];
/// The Debian package that ships `promtool`.
const PROMTOOL_PACKAGE: &str = "prometheus";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// bpf-linker's feature names follow its LLVM versions; pin the series that has `llvm-22`.
const BPF_LINKER_VERSION: &str = "^0.13";

/// What the tasks that build need after setup.
#[derive(Debug)]
pub struct Ready {
    /// Where bpf-linker lives, when that directory is not on `PATH` already.
    linker_dir: Option<PathBuf>,
}

impl Ready {
    /// Gives a child process a `PATH` with bpf-linker's directory in front when it was
    /// missing there, so that the dataplane build script finds the linker.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        match &self.linker_dir {
            Some(dir) => cmd.env("PATH", path_with(dir)),
            None => cmd,
        }
    }
}

fn path_with(dir: &Path) -> OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&current));
    std::env::join_paths(dirs).unwrap_or(current)
}

/// Which eBPF toolchain is complete, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Toolchain {
    Debian { version: String },
    Nightly,
}

/// What is installed right now.
#[derive(Debug)]
struct State {
    toolchain: Option<Toolchain>,
    linker: Option<(PathBuf, String)>,
    missing_test_packages: Vec<&'static str>,
    /// `promtool`, unpacked from Debian's package under `target/tools/`.
    promtool: Option<PathBuf>,
    /// The moto version in the venv under `target/tools/`, if it works.
    moto: Option<String>,
}

impl State {
    fn detect() -> State {
        let toolchain = detect_debian().or_else(detect_nightly);
        let linker = util::find_cargo_tool("bpf-linker").map(|p| {
            let version = util::probe_output(Command::new(&p).arg("--version")).unwrap_or_default();
            (p, version.trim().to_owned())
        });
        let missing_test_packages = TEST_PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)).collect();
        let promtool = Some(promtool_path()).filter(|p| util::is_executable(p));
        let moto = moto_venv::detect(&moto_venv::venv_path());
        State { toolchain, linker, missing_test_packages, promtool, moto }
    }

    fn complete(&self) -> bool {
        self.toolchain.is_some()
            && self.linker.is_some()
            && self.missing_test_packages.is_empty()
            && self.promtool.is_some()
            && self.moto_ok()
    }

    fn moto_ok(&self) -> bool {
        moto_venv::plan(self.moto.as_deref()) == moto_venv::Plan::Nothing
    }

    fn print(&self) {
        match &self.toolchain {
            Some(Toolchain::Debian { version }) => say(&format!(
                "eBPF toolchain: Debian rustc-web ({version}) with core for bpfel-unknown-none … ok"
            )),
            Some(Toolchain::Nightly) => say("eBPF toolchain: rustup nightly with rust-src … ok"),
            None => say(
                "eBPF toolchain: neither Debian rustc-web with bpfel core nor a rustup nightly with rust-src … missing",
            ),
        }
        match &self.linker {
            Some((path, version)) => say(&format!("bpf-linker: {} ({version}) … ok", path.display())),
            None => say("bpf-linker: … missing"),
        }
        for p in TEST_PACKAGES {
            let status = if self.missing_test_packages.contains(p) { "missing" } else { "ok" };
            say(&format!("Debian package {p} … {status}"));
        }
        match &self.promtool {
            Some(path) => say(&format!("promtool: {} … ok", path.display())),
            None => say(&format!(
                "promtool: {} … missing (unpacked from Debian's {PROMTOOL_PACKAGE} package)",
                promtool_path().display()
            )),
        }
        let venv = moto_venv::venv_path();
        match &self.moto {
            Some(v) if self.moto_ok() => say(&format!("moto venv: {} (moto {v}) … ok", venv.display())),
            Some(v) => say(&format!(
                "moto venv: {} has moto {v}, not {} … missing",
                venv.display(),
                moto_venv::MOTO_VERSION
            )),
            None => {
                say(&format!("moto venv: {} (moto {}) … missing", venv.display(), moto_venv::MOTO_VERSION))
            }
        }
    }

    /// Debian packages to install to complete this state with toolchain (a).
    fn packages_to_install(&self) -> Vec<&'static str> {
        let mut wanted: Vec<&'static str> = Vec::new();
        if self.toolchain.is_none() {
            wanted.extend(DEBIAN_TOOLCHAIN_PACKAGES);
        }
        if self.linker.is_none() {
            wanted.extend(LINKER_BUILD_PACKAGES);
        }
        wanted.retain(|p| !dpkg_installed(p));
        wanted.extend(&self.missing_test_packages);
        wanted
    }
}

/// `cargo xtask setup [--check]`.
pub fn run(check: bool) -> Result<()> {
    if check {
        let state = State::detect();
        state.print();
        if !state.complete() {
            bail!("something is missing; `cargo xtask setup` (as root) installs it");
        }
        say("all ok");
        return Ok(());
    }
    ensure().map(|_| ())
}

/// Checks, installs what is missing, checks again. Used by `setup` and by every task
/// that builds.
pub fn ensure() -> Result<Ready> {
    let state = State::detect();
    state.print();
    if !state.complete() {
        install(&state)?;
        let after = State::detect();
        after.print();
        if !after.complete() {
            bail!("setup installed what it could, but something is still missing (see above)");
        }
        say("all ok");
        return ready(&after);
    }
    say("all ok");
    ready(&state)
}

fn ready(state: &State) -> Result<Ready> {
    let Some((linker, _)) = &state.linker else { bail!("bpf-linker is missing") };
    let on_path = util::find_in_path("bpf-linker").is_some();
    let linker_dir = if on_path { None } else { linker.parent().map(Path::to_path_buf) };
    if let Some(dir) = &linker_dir {
        say(&format!("note: {} is not on PATH; the tasks add it for their builds", dir.display()));
    }
    Ok(Ready { linker_dir })
}

fn install(state: &State) -> Result<()> {
    let packages = state.packages_to_install();
    let build_linker = state.linker.is_none();
    if state.toolchain.is_none() && packages.is_empty() && !build_linker {
        bail!(
            "the Debian packages {} are installed but the toolchain is incomplete ({DEBIAN_RUSTC}, {DEBIAN_CARGO} or {DEBIAN_BPF_CORE} missing); reinstall them with `apt-get install --reinstall`",
            DEBIAN_TOOLCHAIN_PACKAGES.join(" ")
        );
    }
    if (!packages.is_empty() || build_linker) && !util::is_root() {
        let mut what = packages.join(" ");
        if build_linker {
            what.push_str(if what.is_empty() { "bpf-linker" } else { " and bpf-linker" });
        }
        bail!(
            "setup must install {what}, which needs root: run `cargo xtask setup` as root (e.g. `sudo -E cargo xtask setup`)"
        );
    }
    if !packages.is_empty() {
        if util::find_in_path("apt-get").is_none() {
            bail!(
                "apt-get not found: install the equivalents of these Debian packages by hand: {}",
                packages.join(" ")
            );
        }
        say(&format!("installing Debian packages: {}", packages.join(" ")));
        util::run_loud("setup", apt().args(["-q", "update"]))?;
        util::run_loud(
            "setup",
            apt()
                .args(["-q", "-o", "Dpkg::Use-Pty=0", "install", "-y", "--no-install-recommends"])
                .args(&packages),
        )?;
    }
    if build_linker {
        say("installing bpf-linker, built against Debian's LLVM 22 (takes a minute or two)");
        let mut cmd = Command::new(util::cargo());
        cmd.env("LLVM_PREFIX", LLVM_PREFIX)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            // Outside the workspace, so its config and target directory play no part.
            .current_dir(std::env::temp_dir());
        util::run_loud("setup", &mut cmd)?;
    }
    if state.promtool.is_none() {
        fetch_promtool()?;
    }
    if !state.moto_ok() {
        moto_venv::install(&moto_venv::venv_path())?;
    }
    Ok(())
}

/// Where `promtool` is unpacked; the tests look for it there (or in `$PROMTOOL`).
pub fn promtool_path() -> PathBuf {
    tools_dir().join("prometheus/usr/bin/promtool")
}

/// `<repo>/target/tools`: a fixed place, whatever `CARGO_TARGET_DIR` says, so the tests
/// find the tools without asking cargo.
fn tools_dir() -> PathBuf {
    util::repo_root().join("target").join("tools")
}

/// Downloads Debian's `prometheus` package and unpacks it under `target/tools/` with
/// `dpkg -x`: promtool without installing (or starting) the Prometheus service.
fn fetch_promtool() -> Result<()> {
    if util::find_in_path("apt-get").is_none() || util::find_in_path("dpkg").is_none() {
        bail!(
            "promtool is missing and apt-get/dpkg are not available: put a promtool binary at {} or set PROMTOOL",
            promtool_path().display()
        );
    }
    let dir = tools_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for old in debs_in(&dir)? {
        std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    say(&format!("downloading Debian's {PROMTOOL_PACKAGE} package for promtool (not installing it)"));
    let download = || {
        let mut cmd = apt();
        // Root downloads into a directory the `_apt` sandbox user may not reach.
        cmd.args(["-q", "-o", "APT::Sandbox::User=root", "download", PROMTOOL_PACKAGE]).current_dir(&dir);
        util::run_loud("setup", &mut cmd)
    };
    if let Err(first) = download() {
        if !util::is_root() {
            return Err(first.context(
                "the package lists may be missing; `apt-get update` needs root: run `cargo xtask setup` as root",
            ));
        }
        say("download failed; refreshing the package lists and trying again");
        util::run_loud("setup", apt().args(["-q", "update"]))?;
        download()?;
    }
    let deb = debs_in(&dir)?
        .into_iter()
        .next()
        .with_context(|| format!("apt-get download left no {PROMTOOL_PACKAGE}_*.deb in {}", dir.display()))?;
    let unpacked = dir.join("prometheus");
    util::run_loud("setup", Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    std::fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    if !util::is_executable(&promtool_path()) {
        bail!("{} holds no usr/bin/promtool", deb.display());
    }
    say(&format!("promtool: {} … ok", promtool_path().display()));
    Ok(())
}

/// The downloaded `prometheus_*.deb` files in `dir`.
fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut debs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_promtool_deb(name) {
            debs.push(path);
        }
    }
    debs.sort();
    Ok(debs)
}

fn is_promtool_deb(file_name: &str) -> bool {
    file_name.starts_with(&format!("{PROMTOOL_PACKAGE}_")) && file_name.ends_with(".deb")
}

fn apt() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Toolchain (a): Debian's rustc with the prebuilt core for bpfel-unknown-none.
fn detect_debian() -> Option<Toolchain> {
    if !Path::new(DEBIAN_CARGO).exists() || !Path::new(DEBIAN_BPF_CORE).join("lib").is_dir() {
        return None;
    }
    let version = util::probe_output(Command::new(DEBIAN_RUSTC).arg("-V"))?;
    Some(Toolchain::Debian { version: version.split(" (").next().unwrap_or(&version).trim().to_owned() })
}

/// Toolchain (b): a rustup nightly with rust-src.
fn detect_nightly() -> Option<Toolchain> {
    let rustup = util::find_cargo_tool("rustup")?;
    let installed = util::probe_output(Command::new(rustup).args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    has_rust_src(&installed).then_some(Toolchain::Nightly)
}

fn has_rust_src(component_list: &str) -> bool {
    component_list.lines().any(|l| l.trim() == "rust-src" || l.trim().starts_with("rust-src "))
}

/// Whether dpkg has the package installed (`dpkg-query -W -f='${Status}'`).
fn dpkg_installed(package: &str) -> bool {
    util::probe_output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| is_installed_status(&s))
}

fn is_installed_status(status: &str) -> bool {
    status.trim() == "install ok installed"
}

fn say(line: &str) {
    eprintln!("[setup] {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_must_be_fully_installed() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status("install ok unpacked"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn rust_src_is_found_only_as_a_whole_component_name() {
        assert!(has_rust_src("cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n"));
        assert!(!has_rust_src("cargo-x86_64-unknown-linux-gnu\nrust-std-x86_64-unknown-linux-gnu\n"));
        assert!(!has_rust_src("rust-src-extra\n"));
    }

    #[test]
    fn a_complete_state_installs_nothing() {
        let state = State {
            toolchain: Some(Toolchain::Nightly),
            linker: Some((PathBuf::from("/x/bpf-linker"), "bpf-linker 0.13.0".into())),
            missing_test_packages: vec![],
            promtool: Some(PathBuf::from("/x/promtool")),
            moto: Some(moto_venv::MOTO_VERSION.into()),
        };
        assert!(state.complete());
        assert!(state.packages_to_install().is_empty());
    }

    #[test]
    fn a_missing_test_package_is_installed() {
        let state = State {
            toolchain: Some(Toolchain::Nightly),
            linker: Some((PathBuf::from("/x/bpf-linker"), String::new())),
            missing_test_packages: vec!["iputils-ping"],
            promtool: Some(PathBuf::from("/x/promtool")),
            moto: Some(moto_venv::MOTO_VERSION.into()),
        };
        assert!(!state.complete());
        assert_eq!(state.packages_to_install(), ["iputils-ping"]);
    }

    #[test]
    fn a_missing_promtool_makes_setup_incomplete_but_installs_no_package() {
        let state = State {
            toolchain: Some(Toolchain::Nightly),
            linker: Some((PathBuf::from("/x/bpf-linker"), String::new())),
            missing_test_packages: vec![],
            promtool: None,
            moto: Some(moto_venv::MOTO_VERSION.into()),
        };
        assert!(!state.complete());
        assert!(state.packages_to_install().is_empty(), "promtool is unpacked, not installed");
    }

    #[test]
    fn a_missing_or_other_moto_makes_setup_incomplete_but_installs_no_package() {
        for moto in [None, Some("4.0.0".to_owned())] {
            let state = State {
                toolchain: Some(Toolchain::Nightly),
                linker: Some((PathBuf::from("/x/bpf-linker"), String::new())),
                missing_test_packages: vec![],
                promtool: Some(PathBuf::from("/x/promtool")),
                moto,
            };
            assert!(!state.complete());
            assert!(state.packages_to_install().is_empty(), "the venv is made with pip, not apt");
        }
    }

    #[test]
    fn promtool_lives_under_the_repository_target_tools() {
        assert_eq!(promtool_path(), util::repo_root().join("target/tools/prometheus/usr/bin/promtool"));
        assert!(is_promtool_deb("prometheus_2.42.0+ds-5+deb12u1_amd64.deb"));
        assert!(!is_promtool_deb("prometheus-node-exporter_1.5.0-1_amd64.deb"));
        assert!(!is_promtool_deb("prometheus_2.42.0.deb.partial"));
    }

    #[test]
    fn ready_puts_the_linker_dir_first_on_path_only_when_needed() {
        let ready = Ready { linker_dir: Some(PathBuf::from("/opt/linker-bin")) };
        let mut cmd = Command::new("true");
        ready.apply(&mut cmd);
        let (_, path) = cmd.get_envs().find(|(k, _)| *k == "PATH").unwrap();
        let first = std::env::split_paths(path.unwrap()).next().unwrap();
        assert_eq!(first, PathBuf::from("/opt/linker-bin"));

        let mut untouched = Command::new("true");
        Ready { linker_dir: None }.apply(&mut untouched);
        assert_eq!(untouched.get_envs().count(), 0);
    }
}
