//! `cargo xtask install` and `cargo xtask deb`: sgmirror as a system service.
//!
//! Both ship the same three things from `packaging/`: the binary, the systemd unit
//! (`sgmirror.service`) and the example configuration (`config.toml`, which starts in
//! audit mode). `install` copies them onto this machine (or under `--destdir`);
//! `deb` builds a Debian package whose maintainer scripts are the ones debhelper
//! generates for a systemd unit (enable on install, stop on remove, purge state on
//! purge), plus what sgmirror itself leaves behind: pinned bpffs state, the state,
//! log and runtime directories, and the configuration.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util;

/// The package's version: the workspace's, Debian revision 1.
const DEBIAN_REVISION: &str = "1";
const MAINTAINER: &str = "sgmirror maintainers <sgmirror@example.invalid>";
const HOMEPAGE: &str = "https://example.invalid/sgmirror";
/// Where the unit goes in the package (debhelper's place on bookworm).
const DEB_UNIT_DIR: &str = "lib/systemd/system";
const UNIT: &str = "sgmirror.service";
/// Where the agent pins its state; purge removes it.
const PIN_ROOT: &str = "/sys/fs/bpf/sgmirror";

/// Which build of the agent to ship.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `cargo build --release` (what users get).
    Release,
    /// The debug build (quick, for tests; stripped all the same).
    Debug,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// Builds the agent and returns the path of the binary.
fn build(profile: Profile) -> Result<PathBuf> {
    let mut cmd = Command::new(util::cargo());
    cmd.current_dir(util::repo_root()).args(["build", "-p", "sgmirror"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    util::run_loud("package", &mut cmd)?;
    let bin = util::target_dir()?.join(profile.dir()).join("sgmirror");
    if !bin.is_file() {
        bail!("the build left no binary at {}", bin.display());
    }
    Ok(bin)
}

fn packaging(file: &str) -> PathBuf {
    util::repo_root().join("packaging").join(file)
}

/// The unit with `ExecStart=` pointing at `bin` instead of /usr/bin/sgmirror.
pub fn unit_for(unit: &str, bin: &str) -> String {
    unit.replace("ExecStart=/usr/bin/sgmirror ", &format!("ExecStart={bin} "))
}

fn write_mode(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// A stripped copy of `bin` at `dest` (mode 0755), as Debian wants binaries.
fn install_stripped(bin: &Path, dest: &Path) -> Result<()> {
    write_mode(dest, fs::read(bin).with_context(|| format!("reading {}", bin.display()))?, 0o755)?;
    util::run_quiet(
        Command::new("strip")
            .args(["--strip-unneeded", "--remove-section=.comment", "--remove-section=.note"])
            .arg(dest),
    )
    .context("stripping the binary (binutils)")
}

/// `cargo xtask install [--destdir DIR] [--prefix PREFIX] [--debug]`.
pub fn install(destdir: Option<&Path>, prefix: &str, profile: Profile) -> Result<()> {
    if destdir.is_none() && !util::is_root() {
        bail!("installing into / needs root; run it as root or give --destdir DIR");
    }
    let bin = build(profile)?;
    let root = destdir.map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    let bin_path = format!("{}/bin/sgmirror", prefix.trim_end_matches('/'));

    install_stripped(&bin, &under(&bin_path))?;
    eprintln!("[install] {}", under(&bin_path).display());

    let unit = fs::read_to_string(packaging(UNIT)).context("reading packaging/sgmirror.service")?;
    let unit_path = under("/etc/systemd/system/sgmirror.service");
    write_mode(&unit_path, unit_for(&unit, &bin_path), 0o644)?;
    eprintln!("[install] {}", unit_path.display());

    let config_path = under("/etc/sgmirror/config.toml");
    if config_path.exists() {
        eprintln!("[install] {} exists; left as it is", config_path.display());
    } else {
        write_mode(&config_path, fs::read(packaging("config.toml"))?, 0o644)?;
        eprintln!(
            "[install] {} (starts in audit mode; edit it, then enable the unit)",
            config_path.display()
        );
    }

    // Only a live systemd needs to hear about the new unit.
    let systemd_running = destdir.is_none() && Path::new("/run/systemd/system").is_dir();
    if systemd_running {
        util::run_loud("install", Command::new("systemctl").arg("daemon-reload"))?;
        eprintln!("[install] next: edit /etc/sgmirror/config.toml, then `systemctl enable --now sgmirror`");
    } else {
        eprintln!("[install] systemd is not running here (or --destdir): no daemon-reload");
    }
    Ok(())
}

/// `cargo xtask deb [--debug] [--out-dir DIR]`: builds the package and prints its path.
pub fn deb(profile: Profile, out_dir: Option<&Path>) -> Result<PathBuf> {
    let bin = build(profile)?;
    let out_dir = match out_dir {
        Some(dir) => dir.to_path_buf(),
        None => util::target_dir()?.join("debian"),
    };
    let arch = util::probe_output(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture failed: building a .deb needs dpkg")?
        .trim()
        .to_owned();
    let version = format!("{}-{DEBIAN_REVISION}", env!("CARGO_PKG_VERSION"));
    let name = format!("sgmirror_{version}_{arch}");
    let stage = out_dir.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    install_stripped(&bin, &stage.join("usr/bin/sgmirror"))?;
    write_mode(&stage.join(DEB_UNIT_DIR).join(UNIT), fs::read(packaging(UNIT))?, 0o644)?;
    write_mode(&stage.join("etc/sgmirror/config.toml"), fs::read(packaging("config.toml"))?, 0o644)?;
    let doc = stage.join("usr/share/doc/sgmirror");
    write_mode(&doc.join("copyright"), copyright()?, 0o644)?;
    write_mode(&doc.join("changelog.Debian.gz"), gzip(changelog(&version)?.as_bytes())?, 0o644)?;

    let depends = depends(&stage.join("usr/bin/sgmirror"), &out_dir.join(format!("{name}.shlibdeps")))?;
    let debian = stage.join("DEBIAN");
    write_mode(&debian.join("conffiles"), "/etc/sgmirror/config.toml\n", 0o644)?;
    write_mode(&debian.join("postinst"), POSTINST, 0o755)?;
    write_mode(&debian.join("prerm"), PRERM, 0o755)?;
    write_mode(&debian.join("postrm"), postrm(), 0o755)?;
    write_mode(&debian.join("md5sums"), md5sums(&stage)?, 0o644)?;
    write_mode(
        &debian.join("control"),
        control(&version, &arch, &depends, installed_size_kib(&stage)?),
        0o644,
    )?;

    let deb = out_dir.join(format!("{name}.deb"));
    util::run_quiet(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&stage).arg(&deb))?;
    fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    eprintln!("[deb] built {}", deb.display());
    Ok(deb)
}

/// `Depends:` from the binary's real shared-library needs (`dpkg-shlibdeps`).
/// `tmp` is a scratch directory (removed).
fn depends(bin: &Path, tmp: &Path) -> Result<String> {
    let _ = fs::remove_dir_all(tmp);
    write_mode(
        &tmp.join("debian/control"),
        "Source: sgmirror\n\nPackage: sgmirror\nArchitecture: any\n",
        0o644,
    )?;
    let out = Command::new("dpkg-shlibdeps")
        .arg("-O")
        .arg(format!("-e{}", fs::canonicalize(bin)?.display()))
        .current_dir(tmp)
        .output()
        .context("running dpkg-shlibdeps (dpkg-dev; `cargo xtask setup` installs it)")?;
    let _ = fs::remove_dir_all(tmp);
    if !out.status.success() {
        bail!("dpkg-shlibdeps failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let deps = text
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?;
    Ok(deps.trim().to_owned())
}

fn control(version: &str, arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: sgmirror
Version: {version}
Architecture: {arch}
Maintainer: {MAINTAINER}
Installed-Size: {installed_kib}
Depends: {depends}
Section: net
Priority: optional
Homepage: {HOMEPAGE}
Description: EC2 security groups enforced on the host with eBPF
 sgmirror mirrors an EC2 instance's security groups onto its own network
 links: an XDP program filters inbound and a TC program outbound traffic,
 with AWS's connection-tracking semantics, as defence in depth for when the
 cloud firewall is misconfigured, bypassed or changed by mistake.
 .
 The packaged configuration (/etc/sgmirror/config.toml) starts in audit
 mode: would-be drops are counted and logged, nothing is dropped. The
 systemd unit is enabled on installation.
"
    )
}

/// debhelper's `dh_installsystemd` snippet for an enabled unit.
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	# This will only remove masks created by d-s-h on package removal.
	deb-systemd-helper unmask 'sgmirror.service' >/dev/null || true

	# was-enabled defaults to true, so new installations run enable.
	if deb-systemd-helper --quiet was-enabled 'sgmirror.service'; then
		# Enables the unit on first installation, creates new
		# symlinks on upgrades if the unit file has changed.
		deb-systemd-helper enable 'sgmirror.service' >/dev/null || true
	else
		# Update the statefile to add new symlinks (if any), which need to be
		# cleaned up on purge. Also remove old symlinks.
		deb-systemd-helper update-state 'sgmirror.service' >/dev/null || true
	fi
fi
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			_dh_action=restart
		else
			_dh_action=start
		fi
		deb-systemd-invoke $_dh_action 'sgmirror.service' >/dev/null || true
	fi
fi
exit 0
"#;

/// Stops the unit on removal (not on upgrade: the restart in postinst replaces the
/// agent, which takes over the pinned state), and removes the enforcement: with the
/// binary gone nothing would manage it.
const PRERM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop 'sgmirror.service' >/dev/null || true
fi
if [ "$1" = remove ] && command -v sgmirror >/dev/null 2>&1; then
	sgmirror detach >/dev/null 2>&1 || true
fi
exit 0
"#;

/// debhelper's snippet, plus purging what the agent created at run time.
fn postrm() -> String {
    format!(
        r#"#!/bin/sh
set -e
if [ "$1" = "remove" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper mask 'sgmirror.service' >/dev/null || true
	fi
fi

if [ "$1" = "purge" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper purge 'sgmirror.service' >/dev/null || true
		deb-systemd-helper unmask 'sgmirror.service' >/dev/null || true
	fi
	# Pinned programs and maps (normally gone with `sgmirror detach` in prerm), state,
	# logs, runtime files and the configuration.
	rm -rf {PIN_ROOT} /var/lib/sgmirror /var/log/sgmirror /run/sgmirror /etc/sgmirror
fi
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
exit 0
"#
    )
}

fn copyright() -> Result<String> {
    let mit = fs::read_to_string(util::repo_root().join("LICENSE-MIT")).context("reading LICENSE-MIT")?;
    let mit_body: Vec<String> = mit
        .lines()
        .skip_while(|l| !l.starts_with("Permission is hereby granted"))
        .map(|l| if l.trim().is_empty() { " .".to_owned() } else { format!(" {l}") })
        .collect();
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sgmirror
Source: {HOMEPAGE}

Files: *
Copyright: 2026 The sgmirror authors
License: MIT or Apache-2.0

Files: ebpf/programs/*
Copyright: 2026 The sgmirror authors
License: MIT or GPL-2
Comment: The kernel programs, embedded in /usr/bin/sgmirror.

License: MIT
{}

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.

License: GPL-2
 On Debian systems, the full text of the GNU General Public License version 2
 can be found in /usr/share/common-licenses/GPL-2.
",
        mit_body.join("\n").trim_end_matches(['\n', ' ', '.'])
    ))
}

fn changelog(version: &str) -> Result<String> {
    let date = util::probe_output(Command::new("date").args(["-u", "-R"])).context("running date -R")?;
    Ok(format!(
        "sgmirror ({version}) unstable; urgency=medium\n\n  * Package built by `cargo xtask deb`.\n\n -- {MAINTAINER}  {}\n",
        date.trim()
    ))
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    child.stdin.take().context("gzip stdin")?.write_all(data)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed");
    }
    Ok(out.stdout)
}

/// Every regular file below `stage` except DEBIAN/, relative, sorted.
fn payload_files(stage: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, stage: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let rel = path.strip_prefix(stage)?.to_path_buf();
            if rel.starts_with("DEBIAN") {
                continue;
            }
            if path.is_dir() {
                walk(&path, stage, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(stage, stage, &mut files)?;
    files.sort();
    Ok(files)
}

fn md5sums(stage: &Path) -> Result<String> {
    let files = payload_files(stage)?;
    let out = Command::new("md5sum").args(&files).current_dir(stage).output().context("running md5sum")?;
    if !out.status.success() {
        bail!("md5sum failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn installed_size_kib(stage: &Path) -> Result<u64> {
    let mut kib = 0;
    for f in payload_files(stage)? {
        kib += fs::metadata(stage.join(f))?.len().div_ceil(1024);
    }
    Ok(kib.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_unit_runs_the_installed_binary() {
        let unit = fs::read_to_string(packaging(UNIT)).unwrap();
        assert!(unit.contains("ExecStart=/usr/bin/sgmirror run --config /etc/sgmirror/config.toml"));
        let local = unit_for(&unit, "/usr/local/bin/sgmirror");
        assert!(local.contains("ExecStart=/usr/local/bin/sgmirror run --config /etc/sgmirror/config.toml"));
        assert!(!local.contains("/usr/bin/sgmirror"));
    }

    #[test]
    fn the_maintainer_scripts_enable_stop_and_purge() {
        assert!(POSTINST.contains("deb-systemd-helper enable 'sgmirror.service'"));
        assert!(PRERM.contains("deb-systemd-invoke stop 'sgmirror.service'"));
        assert!(PRERM.contains("sgmirror detach"));
        let postrm = postrm();
        for gone in [PIN_ROOT, "/etc/sgmirror", "/var/lib/sgmirror", "deb-systemd-helper purge"] {
            assert!(postrm.contains(gone), "postrm does not remove {gone}");
        }
    }

    #[test]
    fn the_copyright_file_has_the_mit_text_and_dep5_paragraphs() {
        let text = copyright().unwrap();
        assert!(
            text.starts_with("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
        );
        assert!(text.contains("License: MIT\n Permission is hereby granted"));
        assert!(!text.contains("\n\n\n"));
    }

    #[test]
    fn control_has_the_fields_dpkg_needs() {
        let text = control("0.1.0-1", "amd64", "libc6 (>= 2.34)", 5000);
        for field in [
            "Package: sgmirror\n",
            "Version: 0.1.0-1\n",
            "Architecture: amd64\n",
            "Depends: libc6 (>= 2.34)\n",
        ] {
            assert!(text.contains(field), "{field}");
        }
        assert!(
            text.lines().skip_while(|l| !l.starts_with("Description:")).skip(1).all(|l| l.starts_with(' '))
        );
    }
}
