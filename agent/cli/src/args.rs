//! Command-line interface: what each subcommand takes and what `--help` says.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sgmirror enforces an EC2 instance's security groups on the host itself, with an
/// XDP program whose rules live in LPM-trie maps: defence in depth for when the cloud
/// firewall is misconfigured, bypassed or changed by mistake.
///
/// Results go to stdout (exactly one JSON document with --json); logs and warnings go
/// to stderr (set RUST_LOG=debug for more).
#[derive(Debug, Parser)]
#[command(name = "sgmirror", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enforce a snapshot's security groups on local links until SIGINT/SIGTERM.
    ///
    /// Every interface (ENI) is resolved and compiled before anything is attached: a
    /// bad snapshot or a policy that does not fit attaches nothing. Without --bind,
    /// the snapshot's own interfaces are matched to local links by MAC address. On
    /// exit the programs are detached and a summary of the counters is printed.
    Run(RunArgs),
    /// Resolve and compile a snapshot without touching the kernel, and report per
    /// interface: rules, prefixes per family, permission classes, map sizes, warnings.
    Compile(CompileArgs),
    /// Judge one new packet (no flow state) against an interface's policy and say
    /// why: `{"verdict": "allow"|"drop", "reason": ..., "rules": [...]}` with --json.
    ///
    /// Without --kernel the reference evaluator answers; with --kernel a frame is built
    /// and run through the real XDP program (BPF_PROG_TEST_RUN) loaded with private
    /// maps filled from the snapshot, never the live ones. Exit status is 0 for either
    /// verdict and non-zero only for errors.
    Explain(ExplainArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Drop what the security groups do not allow.
    Enforce,
    /// Count and log what would be dropped, pass everything.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode, falling back to generic mode with a warning.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on every driver, slower.
    Generic,
}

#[derive(Debug, Args)]
pub struct SnapshotArg {
    /// Snapshot document: AWS CLI JSON shapes (SecurityGroupRules or SecurityGroups,
    /// NetworkInterfaces, PrefixLists, Vpcs, Subnets, InstanceId).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArg,
    /// Enforce interface ENI_ID on link LINK (repeatable). Without it, the snapshot's
    /// own interfaces are matched to local links by MAC address.
    #[arg(long = "bind", value_name = "LINK=ENI_ID")]
    pub bind: Vec<String>,
    /// enforce drops what no rule allows; audit only counts it.
    #[arg(long, value_enum, default_value_t = ModeArg::Enforce)]
    pub mode: ModeArg,
    /// How to attach the XDP program.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    /// On exit, also write the counters and per-rule hits as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Log the counters every SECS seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub stats_interval: u64,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArg,
    /// Only these interfaces (repeatable); default: the snapshot's own interfaces.
    #[arg(long = "interface", value_name = "ENI_ID")]
    pub interfaces: Vec<String>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArg,
    /// The interface (ENI) whose policy judges the packet.
    #[arg(long, value_name = "ENI_ID")]
    pub interface: String,
    /// Judge the packet as arriving on the interface (inbound rules).
    #[arg(long, conflicts_with = "egress", required_unless_present = "egress")]
    pub ingress: bool,
    /// Judge the packet as leaving the interface (outbound rules).
    #[arg(long)]
    pub egress: bool,
    /// tcp, udp, icmp, icmpv6 or a protocol number (0-255).
    #[arg(long, value_name = "P")]
    pub proto: String,
    /// Source address.
    #[arg(long, value_name = "ADDR")]
    pub src: std::net::IpAddr,
    /// Destination address.
    #[arg(long, value_name = "ADDR")]
    pub dst: std::net::IpAddr,
    /// TCP/UDP source port.
    #[arg(long, value_name = "N", default_value_t = 40000)]
    pub sport: u16,
    /// TCP/UDP destination port (required for tcp and udp).
    #[arg(long, value_name = "N")]
    pub dport: Option<u16>,
    /// ICMP/ICMPv6 type (required for icmp and icmpv6).
    #[arg(long, value_name = "T")]
    pub icmp_type: Option<u8>,
    /// ICMP/ICMPv6 code.
    #[arg(long, value_name = "C", default_value_t = 0)]
    pub icmp_code: u8,
    /// Ask the real XDP program (BPF_PROG_TEST_RUN, private maps) instead of the
    /// reference evaluator. Needs root (CAP_BPF, CAP_NET_ADMIN).
    #[arg(long)]
    pub kernel: bool,
    /// Print exactly one JSON object.
    #[arg(long)]
    pub json: bool,
}
