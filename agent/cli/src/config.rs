//! The configuration file of `sgmirror run`: one TOML document whose keys are the
//! long flags of `run` (with `_` for `-`), plus the `[[failsafe]]` list.
//!
//! Precedence: a flag given on the command line, then the file, then the flag's
//! default. The default file (`/etc/sgmirror/config.toml`) may be missing — that
//! means the defaults — but a file named with `--config` must exist. Unknown keys
//! are errors, so a typo cannot silently leave a setting at its default; parse errors
//! name the key and the line.
//!
//! The same resolution runs again on SIGHUP ([`reload`]), from the original command
//! line, so what the command line fixed stays fixed.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::{ArgMatches, CommandFactory, FromArgMatches, parser::ValueSource};
use serde::Deserialize;
use sgmirror_policy::failsafe::FailsafeEntry;

use crate::args::{Cli, Command, ModeArg, RunArgs, SourceArg, TcModeArg, XdpModeArg};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/sgmirror/config.toml";

/// The file, as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    source: Option<SourceArg>,
    snapshot: Option<PathBuf>,
    bind: Option<Vec<String>>,
    mode: Option<ModeArg>,
    xdp_mode: Option<XdpModeArg>,
    tc_mode: Option<TcModeArg>,
    summary_json: Option<PathBuf>,
    stats_interval: Option<u64>,
    poll_interval_ms: Option<u64>,
    flow_capacity: Option<u32>,
    pin_root: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    replace_foreign_xdp: Option<bool>,
    tcp_established_timeout: Option<u32>,
    tcp_other_timeout: Option<u32>,
    udp_timeout: Option<u32>,
    udp_stream_timeout: Option<u32>,
    icmp_timeout: Option<u32>,
    other_timeout: Option<u32>,
    metrics_addr: Option<SocketAddr>,
    no_metrics: Option<bool>,
    drop_log: Option<String>,
    drop_log_rate: Option<u32>,
    drop_log_interval: Option<u64>,
    drop_log_max_lines: Option<usize>,
    account_id: Option<String>,
    region: Option<String>,
    ec2_endpoint: Option<String>,
    imds_endpoint: Option<String>,
    imds_interval_ms: Option<u64>,
    refresh_interval_ms: Option<u64>,
    #[serde(default)]
    failsafe: Vec<FailsafeConfig>,
}

/// One `[[failsafe]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailsafeConfig {
    /// Address or prefix: the source (ingress) or destination (egress).
    cidr: String,
    /// tcp, udp, icmp, icmpv6, all, or a protocol number.
    protocol: String,
    /// `22` or `1000-2000` (tcp/udp; default: every port).
    ports: Option<String>,
    /// ingress (default) or egress.
    direction: Option<String>,
}

/// Parses a configuration document; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<FileConfig> {
    // toml's message carries the line, the column and the offending key.
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", origin.display(), e.to_string().trim_end()))
}

/// Reads the configuration file `explicit` (must exist) or the default one (may be
/// missing).
pub fn read(explicit: Option<&Path>) -> Result<FileConfig> {
    match explicit {
        Some(path) => read_at(path, true),
        None => read_at(Path::new(DEFAULT_PATH), false),
    }
}

/// Reads `path`; when it is missing, an error if `must_exist`, else the defaults.
fn read_at(path: &Path, must_exist: bool) -> Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            tracing::info!(path = %path.display(), "reading the configuration");
            parse(&text, path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            tracing::info!(path = %path.display(), "no configuration file; using the defaults and the flags");
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading the configuration file {}", path.display())),
    }
}

/// The settings of `run`: `flags` (parsed by clap, with `matches` telling which were
/// given on the command line) merged with the configuration file.
pub fn resolve(flags: &RunArgs, matches: &ArgMatches) -> Result<RunArgs> {
    let file = read(flags.config.as_deref())?;
    merge(flags, matches, file)
}

/// `flags` with every setting that was not given on the command line taken from
/// `file` where the file has it.
pub fn merge(flags: &RunArgs, matches: &ArgMatches, file: FileConfig) -> Result<RunArgs> {
    let mut args = flags.clone();
    let given = |id: &str| matches!(matches.value_source(id), Some(ValueSource::CommandLine));
    macro_rules! take {
        ($($key:ident => $($field:ident).+),* $(,)?) => {$(
            if !given(stringify!($key)) {
                if let Some(value) = file.$key {
                    args.$($field).+ = value;
                }
            }
        )*};
    }
    macro_rules! take_some {
        ($($key:ident => $($field:ident).+),* $(,)?) => {$(
            if !given(stringify!($key)) && file.$key.is_some() {
                args.$($field).+ = file.$key;
            }
        )*};
    }
    take!(
        source => source,
        bind => bind,
        mode => mode,
        xdp_mode => xdp_mode,
        tc_mode => tc_mode,
        stats_interval => stats_interval,
        poll_interval_ms => poll_interval_ms,
        flow_capacity => flow_capacity,
        pin_root => pin_root,
        state_dir => state_dir,
        replace_foreign_xdp => replace_foreign_xdp,
        metrics_addr => metrics_addr,
        no_metrics => no_metrics,
        drop_log => drop_log.drop_log,
        drop_log_rate => drop_log.drop_log_rate,
        drop_log_interval => drop_log.drop_log_interval,
        drop_log_max_lines => drop_log.drop_log_max_lines,
        imds_interval_ms => imds_interval_ms,
        refresh_interval_ms => refresh_interval_ms,
    );
    take_some!(
        snapshot => snapshot,
        summary_json => summary_json,
        account_id => drop_log.account_id,
        tcp_established_timeout => timeouts.tcp_established_timeout,
        tcp_other_timeout => timeouts.tcp_other_timeout,
        udp_timeout => timeouts.udp_timeout,
        udp_stream_timeout => timeouts.udp_stream_timeout,
        icmp_timeout => timeouts.icmp_timeout,
        other_timeout => timeouts.other_timeout,
        region => aws.region,
        ec2_endpoint => aws.ec2_endpoint,
        imds_endpoint => aws.imds_endpoint,
    );
    args.failsafe = file
        .failsafe
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FailsafeEntry::parse(&f.cidr, &f.protocol, f.ports.as_deref(), f.direction.as_deref())
                .with_context(|| format!("failsafe entry {} (failsafe-{})", i + 1, i + 1))
        })
        .collect::<Result<_>>()?;
    check(&args)?;
    Ok(args)
}

/// What no single flag can check: combinations.
fn check(args: &RunArgs) -> Result<()> {
    match args.source {
        SourceArg::File if args.snapshot.is_none() => {
            bail!(
                "no snapshot: give --snapshot FILE or `snapshot = \"FILE\"` in the configuration (source = file)"
            )
        }
        SourceArg::File => Ok(()),
        SourceArg::Aws if !cfg!(feature = "aws") => {
            bail!(
                "source `aws` is not built into this sgmirror (built without the `aws` cargo feature); \
                 use source = \"file\" with a snapshot, or a build with the feature"
            )
        }
        SourceArg::Aws if args.imds_interval_ms < 100 || args.refresh_interval_ms < 1000 => {
            bail!("imds_interval_ms must be at least 100 and refresh_interval_ms at least 1000")
        }
        SourceArg::Aws => Ok(()),
    }
}

/// The settings of `run` again, from the process's own command line and the
/// configuration file as it is now (for SIGHUP).
pub fn reload() -> Result<RunArgs> {
    let matches =
        Cli::command().try_get_matches_from(std::env::args_os()).context("re-reading the command line")?;
    let cli = Cli::from_arg_matches(&matches).context("re-reading the command line")?;
    match (cli.command, matches.subcommand()) {
        (Command::Run(flags), Some(("run", sub))) => resolve(&flags, sub),
        _ => bail!("not running `sgmirror run`"),
    }
}

/// The settings that only take effect on a restart, by name, whose value differs
/// between `old` and `new` (a reload keeps the old values and says so).
pub fn restart_only_changes(old: &RunArgs, new: &RunArgs) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! differs {
        ($($name:literal => $($field:ident).+),* $(,)?) => {$(
            if old.$($field).+ != new.$($field).+ {
                changed.push($name);
            }
        )*};
    }
    differs!(
        "source" => source,
        "snapshot" => snapshot,
        "bind" => bind,
        "xdp_mode" => xdp_mode,
        "tc_mode" => tc_mode,
        "pin_root" => pin_root,
        "state_dir" => state_dir,
        "flow_capacity" => flow_capacity,
        "metrics_addr" => metrics_addr,
        "no_metrics" => no_metrics,
        "summary_json" => summary_json,
        "region" => aws.region,
        "ec2_endpoint" => aws.ec2_endpoint,
        "imds_endpoint" => aws.imds_endpoint,
    );
    changed
}

#[cfg(test)]
mod tests;
