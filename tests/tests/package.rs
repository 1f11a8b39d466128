//! The service packaging: the systemd unit passes `systemd-analyze verify`; the Debian
//! package built by `cargo xtask deb` passes lintian without errors, installs into a
//! debootstrapped Debian root (chroot, with a `policy-rc.d` that forbids starting
//! services) with its files in place and the unit enabled, and purges cleanly.
//!
//! The minimal Debian root is made once with `debootstrap --variant=minbase bookworm`
//! and cached as a tarball under the target directory, so re-runs only unpack it.
//! Needs root (chroot), `lintian`, `debootstrap`, `systemd-analyze` and network
//! access for the first debootstrap (`cargo xtask setup` installs the tools).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use sgmirror_e2e::{sgmirror_bin, workspace_root};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// A directory removed on drop (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sgm-{what}-{}", sgmirror_e2e::unique_suffix()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a command; (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(cmd: &mut Command) -> String {
    let (ok, text) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

/// A root holding what `systemd-analyze verify` follows: the system's units, the
/// unit under test in /etc/systemd/system, the programs its Exec lines name.
fn verify_unit(unit_text: &str) -> (bool, String) {
    let root = TempDir::new("verify");
    let r = &root.0;
    fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    must(Command::new("cp").arg("-a").arg("/usr/lib/systemd/system").arg(r.join("usr/lib/systemd/")));
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    fs::copy("/usr/bin/kill", r.join("usr/bin/kill")).unwrap();
    fs::copy(sgmirror_bin(), r.join("usr/bin/sgmirror")).unwrap();
    fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
    fs::write(r.join("etc/systemd/system/sgmirror.service"), unit_text).unwrap();
    let (ok, text) = run(Command::new("systemd-analyze")
        .arg(format!("--root={}", r.display()))
        .args(["verify", "sgmirror.service"]));
    // verify exits 0 on some problems it only reports: any output is a problem.
    (ok && text.trim().is_empty(), text)
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string(workspace_root().join("packaging/sgmirror.service")).unwrap();
    let (ok, text) = verify_unit(&unit);
    assert!(ok, "systemd-analyze verify:\n{text}");

    // The check can fail: a misspelt setting is reported.
    let (ok, text) = verify_unit(&unit.replace("NotifyAccess=main", "NotifyAccess=mian"));
    assert!(!ok && text.contains("mian"), "a broken unit passed: {text}");

    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RuntimeDirectory=sgmirror",
        "StateDirectory=sgmirror",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(needed)), "the unit lacks {needed}");
    }
    let bounding = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("bounded");
    assert!(!bounding.contains("CAP_SYS_ADMIN"), "{bounding}");
}

/// `cargo xtask deb --debug` into `out`; the package's path.
fn build_deb(out: &Path) -> PathBuf {
    sgmirror_bin(); // builds the agent first, outside the xtask's own output
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["run", "--quiet", "-p", "xtask", "--", "deb", "--debug", "--out-dir"])
        .arg(out)
        .current_dir(workspace_root())
        .output()
        .expect("running cargo xtask deb");
    assert!(output.status.success(), "cargo xtask deb:\n{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let deb =
        PathBuf::from(stdout.lines().rfind(|l| l.ends_with(".deb")).expect("xtask deb prints the path"));
    assert!(deb.is_file(), "{}", deb.display());
    deb
}

/// The cached minimal Debian root as a tarball, made on first use (under a lock, as
/// tests may run in parallel).
fn debian_root_tarball() -> PathBuf {
    let dir = target_dir().join("debootstrap");
    fs::create_dir_all(&dir).unwrap();
    let tarball = dir.join(format!("{SUITE}-minbase.tar"));
    let lock = fs::File::create(dir.join(".lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file we own; released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if tarball.is_file() {
        return tarball;
    }
    let root = TempDir::new("debootstrap");
    let started = Instant::now();
    must(Command::new("debootstrap").args(["--variant=minbase", SUITE]).arg(&root.0).arg(MIRROR));
    eprintln!("debootstrap --variant=minbase {SUITE}: {:.0?}", started.elapsed());
    let partial = dir.join("partial.tar");
    must(Command::new("tar").arg("-C").arg(&root.0).args(["--numeric-owner", "-cf"]).arg(&partial).arg("."));
    fs::rename(&partial, &tarball).unwrap();
    tarball
}

fn in_chroot(root: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new("chroot")
        .arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C"))
}

#[test]
fn the_package_passes_lintian_installs_enabled_and_purges_cleanly() {
    let out = TempDir::new("deb");
    let deb = build_deb(&out.0);

    // lintian: warnings are fine, errors are not.
    let (_, lint) = run(Command::new("lintian").args(["--tag-display-limit", "0"]).arg(&deb));
    let errors: Vec<&str> = lint.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    let (ok, _) = run(Command::new("lintian").args(["--fail-on", "error"]).arg(&deb));
    assert!(ok, "lintian --fail-on error failed:\n{lint}");

    // A fresh minimal Debian, where services must not start.
    let tarball = debian_root_tarball();
    let root_dir = TempDir::new("chroot");
    let root = root_dir.0.as_path();
    let started = Instant::now();
    must(Command::new("tar").arg("-C").arg(root).args(["--numeric-owner", "-xf"]).arg(&tarball));
    eprintln!("unpacking the Debian root: {:.1?}", started.elapsed());
    let policy = root.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n").unwrap();
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(&deb, root.join("tmp/sgmirror.deb")).unwrap();

    let (ok, text) = in_chroot(root, &["dpkg", "-i", "/tmp/sgmirror.deb"]);
    assert!(ok, "dpkg -i in the chroot:\n{text}");
    let (_, status) = in_chroot(root, &["dpkg-query", "-W", "-f", "${Status}", "sgmirror"]);
    assert_eq!(status, "install ok installed");

    let wants = root.join("etc/systemd/system/multi-user.target.wants/sgmirror.service");
    for file in [
        "usr/bin/sgmirror",
        "lib/systemd/system/sgmirror.service",
        "etc/sgmirror/config.toml",
        "usr/share/doc/sgmirror/copyright",
    ] {
        assert!(root.join(file).is_file(), "/{file} not installed");
    }
    let link = fs::read_link(&wants)
        .unwrap_or_else(|e| panic!("the unit is not enabled ({}): {e}", wants.display()));
    assert_eq!(link, Path::new("/lib/systemd/system/sgmirror.service"));
    let config = fs::read_to_string(root.join("etc/sgmirror/config.toml")).unwrap();
    assert!(config.lines().any(|l| l == "mode = \"audit\""), "the packaged configuration starts in audit");
    // The binary runs in the plain Debian root: its Depends are enough.
    let (ok, version) = in_chroot(root, &["/usr/bin/sgmirror", "--version"]);
    assert!(ok && version.starts_with("sgmirror "), "{version}");

    // What a running agent leaves: pinned state, state and log directories; and an
    // edited configuration.
    for dir in ["sys/fs/bpf/sgmirror/v1/7", "var/lib/sgmirror", "var/log/sgmirror"] {
        fs::create_dir_all(root.join(dir)).unwrap();
        fs::write(root.join(dir).join("state"), "x").unwrap();
    }
    fs::write(root.join("etc/sgmirror/config.toml"), format!("{config}\n# edited\n")).unwrap();

    let (ok, text) = in_chroot(root, &["dpkg", "--purge", "sgmirror"]);
    assert!(ok, "dpkg --purge in the chroot:\n{text}");
    let (_, status) = in_chroot(root, &["dpkg-query", "-W", "-f", "${Status}", "sgmirror"]);
    assert!(!status.contains("installed"), "still known to dpkg: {status}");
    for gone in [
        "usr/bin/sgmirror",
        "lib/systemd/system/sgmirror.service",
        "etc/sgmirror",
        "etc/systemd/system/multi-user.target.wants/sgmirror.service",
        "var/lib/systemd/deb-systemd-helper-enabled/sgmirror.service.dsh-also",
        "var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/sgmirror.service",
        "sys/fs/bpf/sgmirror",
        "var/lib/sgmirror",
        "var/log/sgmirror",
    ] {
        assert!(fs::symlink_metadata(root.join(gone)).is_err(), "/{gone} is left after purge");
    }
}

#[test]
fn xtask_install_puts_binary_unit_and_config_in_place_and_keeps_an_edited_config() {
    sgmirror_bin();
    let dest = TempDir::new("install");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let install = || {
        must(
            Command::new(&cargo)
                .args(["run", "--quiet", "-p", "xtask", "--", "install", "--debug", "--destdir"])
                .arg(&dest.0)
                .current_dir(workspace_root()),
        )
    };
    let said = install();
    let d = &dest.0;
    assert!(d.join("usr/local/bin/sgmirror").is_file(), "{said}");
    let unit = fs::read_to_string(d.join("etc/systemd/system/sgmirror.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/sgmirror run --config /etc/sgmirror/config.toml"),
        "{unit}"
    );
    let packaged = fs::read_to_string(workspace_root().join("packaging/config.toml")).unwrap();
    assert_eq!(fs::read_to_string(d.join("etc/sgmirror/config.toml")).unwrap(), packaged);
    assert!(said.contains("no daemon-reload"), "{said}");

    // A second install keeps the operator's configuration.
    fs::write(d.join("etc/sgmirror/config.toml"), "mode = \"enforce\"\n").unwrap();
    let said = install();
    assert_eq!(fs::read_to_string(d.join("etc/sgmirror/config.toml")).unwrap(), "mode = \"enforce\"\n");
    assert!(said.contains("left as it is"), "{said}");
}
