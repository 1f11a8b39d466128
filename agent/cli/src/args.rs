//! Command-line interface: what each subcommand takes and what `--help` says.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sgmirror enforces an EC2 instance's security groups on the host itself, with eBPF
/// programs (XDP inbound, TC outbound) whose rules live in LPM-trie maps: defence in
/// depth for when the cloud firewall is misconfigured, bypassed or changed by mistake.
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
    /// Inbound rules are enforced by an XDP program, outbound rules by a TC program;
    /// both share a flow table per interface, so replies to allowed flows pass both
    /// ways as AWS's connection tracking lets them. Every interface (ENI) is resolved,
    /// compiled and verified before anything is attached: a bad snapshot or a policy
    /// that does not fit attaches nothing. Without --bind, the snapshot's own
    /// interfaces are matched to local links by MAC address. The snapshot file is
    /// watched; a changed policy replaces the old one atomically.
    ///
    /// Lifecycle: the XDP and TCX links are pinned in bpffs (under --pin-root), so
    /// stopping the agent (SIGTERM, SIGINT, a crash, kill -9) leaves the last policy
    /// enforced by the kernel; on exit a summary of the counters is printed. A new
    /// agent adopts pinned links by swapping its programs in atomically (never a
    /// second program, never a gap); `sgmirror detach` removes them. With a clsact
    /// egress filter (--tc-mode clsact, kernels before 6.6) nothing can be pinned and
    /// the programs are detached on exit. An XDP program sgmirror did not attach is
    /// refused unless --replace-foreign-xdp; egress uses TCX, so other TC programs
    /// keep running. No usable policy at start (the snapshot is unreadable or bad, or
    /// none of its interfaces is a local link): nothing is attached, the error is
    /// logged and the exit status is 1, so a supervisor retries; enforcement pinned
    /// earlier stays as it was.
    ///
    /// Settings come from the flags and the configuration file (--config; every flag
    /// is a key there, and the file's `[[failsafe]]` entries are peers that always
    /// pass). SIGHUP re-reads the file and refreshes the policy. Under systemd
    /// (NOTIFY_SOCKET) the agent reports readiness once every link is enforced, pings
    /// the watchdog (WATCHDOG_USEC) and reports reloads and the stop.
    Run(Box<RunArgs>),
    /// Resolve and compile a snapshot without touching the kernel, and report per
    /// interface: rules, prefixes per family, permission classes, map sizes, warnings.
    Compile(CompileArgs),
    /// Judge one packet against an interface's policy and say why:
    /// `{"verdict": "allow"|"drop", "reason": ..., "rules": [...]}` with --json.
    ///
    /// Without --trace the packet is new (no flow state); with --trace the packets of
    /// the trace are judged first, so the answer can be "tracked".
    ///
    /// Without --kernel the reference evaluator answers; with --kernel a frame is built
    /// and run through the real program (XDP for --ingress, TC for --egress) with
    /// BPF_PROG_TEST_RUN, loaded with private maps filled from the snapshot, never the
    /// live ones. Exit status is 0 for either verdict and non-zero only for errors.
    Explain(ExplainArgs),
    /// Show what is enforced, per link: its ENI, XDP and TC attach modes (and why XDP
    /// is not native), policy generation and hash, when it was applied, source
    /// health, enforce/audit, and the key counters. Read from the pinned state and the
    /// state directory, so it works while the agent is stopped too; says "not
    /// enforcing" when nothing is pinned.
    Status(StatusArgs),
    /// Remove what sgmirror pinned: detach its programs from every link (or only from
    /// --link) and delete their pins and status records. Idempotent: nothing pinned is
    /// not an error. A running agent keeps its links until it exits; stop it first.
    Detach(DetachArgs),
    /// Report the rules that are probably mistakes, and nothing about those that are
    /// fine: sensitive ports (SSH, RDP, databases, ...) open to 0.0.0.0/0 or ::/0, host
    /// addresses with short prefixes (203.0.113.5/0 is the whole internet to AWS), very
    /// wide port ranges, references to groups or prefix lists that cannot be resolved,
    /// and, with --hits, rules a running agent never matched.
    ///
    /// Findings are sorted by severity (high, medium, low), then rule id; with --json
    /// stdout is exactly one `{"findings": [...]}` document. Lint is advisory: the exit
    /// status is 0 with or without findings, 2 with --fail-on when a finding at or
    /// above that severity exists, and 1 for errors (a bad snapshot or hits file).
    Lint(LintArgs),
    /// Fetch this instance's policy from AWS and write it as a snapshot document.
    ///
    /// Reads the instance and its ENIs from IMDS (IMDSv2), then the EC2 API:
    /// DescribeNetworkInterfaces (own ENIs, and the members of every referenced group),
    /// DescribeSecurityGroupRules (the own groups), DescribeManagedPrefixLists and
    /// GetManagedPrefixListEntries. The document is what `run --snapshot` reads, with
    /// keys in a fixed order and arrays sorted by id, so two snapshots diff cleanly.
    /// Needs no local link. On failure nothing is written and the error names the call.
    Snapshot(SnapshotCmdArgs),
}

/// Where the AWS source reaches AWS. Unset: the standard settings (AWS_REGION, the
/// shared config file, AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL,
/// AWS_EC2_METADATA_SERVICE_ENDPOINT), the Region from IMDS last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct AwsArgs {
    /// AWS Region (default: AWS_REGION, the shared config, then IMDS).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// EC2 API endpoint URL (default: AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL, the
    /// shared config, then the Region's endpoint).
    #[arg(long, value_name = "URL")]
    pub ec2_endpoint: Option<String>,
    /// IMDS endpoint URL (default: AWS_EC2_METADATA_SERVICE_ENDPOINT, the shared
    /// config, then http://169.254.169.254).
    #[arg(long, value_name = "URL")]
    pub imds_endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotCmdArgs {
    /// Write the document to FILE (replaced atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    /// Drop what the security groups do not allow.
    Enforce,
    /// Count and log what would be dropped, pass everything.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// Where `run` takes the policy from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceArg {
    /// A snapshot file (--snapshot), watched for changes.
    File,
    /// The EC2 API, from the instance itself.
    Aws,
}

/// The settings of `run`. Every one of them can also be set in the configuration file
/// (see `packaging/config.toml`, key = flag name with `_` for `-`); a flag given on the
/// command line wins over the file, the file wins over the defaults shown here.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Configuration file (TOML). Default: /etc/sgmirror/config.toml if it exists (a
    /// missing default file means the defaults; a missing file given here is an
    /// error). Unknown keys are errors. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the policy comes from: `file` (a snapshot file, --snapshot) or `aws`.
    #[arg(long, value_enum, default_value_t = SourceArg::File)]
    pub source: SourceArg,
    /// Snapshot document (required with --source file): AWS CLI JSON shapes
    /// (SecurityGroupRules or SecurityGroups, NetworkInterfaces, PrefixLists, Vpcs,
    /// Subnets, InstanceId).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
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
    /// How to attach the egress program: TCX where the kernel has it (6.6+), else a
    /// clsact qdisc filter.
    #[arg(long, value_enum, default_value_t = TcModeArg::Auto)]
    pub tc_mode: TcModeArg,
    /// On exit, also write the counters and per-rule hits as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Log the counters every SECS seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub stats_interval: u64,
    /// Check the snapshot file for changes every MS milliseconds (at least 50; also on
    /// SIGHUP); a changed policy is swapped in atomically, a bad one is refused and the
    /// last good policy stays enforced.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub poll_interval_ms: u64,
    /// Capacity of each link's flow table; the least recently used flows are evicted
    /// when it is full.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub flow_capacity: u32,
    /// Where each link's XDP and TCX links and the state its policy generations share
    /// (counters, flow and fragment tables) are pinned in bpffs, in
    /// DIR/v<layout>/netns<inode>-if<index>; bpffs is mounted at /sys/fs/bpf if needed.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    /// Serve Prometheus metrics (text format) on ADDR, at /metrics. Failing to bind
    /// is logged and does not stop enforcement.
    #[arg(long, value_name = "ADDR", default_value_t = crate::metrics::DEFAULT_ADDR)]
    pub metrics_addr: std::net::SocketAddr,
    /// Do not serve metrics.
    #[arg(long)]
    pub no_metrics: bool,
    #[command(flatten)]
    pub drop_log: DropLogArgs,
    /// Where the per-link status records and the pid file are kept (read by
    /// `sgmirror status`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Replace an XDP program that another tool attached to a bound link (it is
    /// removed first, so the link is briefly without one); without this flag such a
    /// link is refused with the program's id and name.
    #[arg(long)]
    pub replace_foreign_xdp: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// With --source aws: read the ENI list and each ENI's groups and addresses from
    /// IMDS every MS milliseconds (free, local); a change triggers an API refresh.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub imds_interval_ms: u64,
    /// With --source aws: refresh from the EC2 API every MS milliseconds even without
    /// a local change (jittered by ±10 %), to see rule, membership and prefix-list
    /// changes.
    #[arg(long, value_name = "MS", default_value_t = 300_000)]
    pub refresh_interval_ms: u64,
    /// The failsafe list: peers that always pass, from the configuration file's
    /// `[[failsafe]]` entries only (empty by default).
    #[arg(skip)]
    pub failsafe: Vec<sgmirror_policy::failsafe::FailsafeEntry>,
}

/// Default of --state-dir.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sgmirror";
/// Default of --pin-root.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sgmirror";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Where the agent pins (its --pin-root).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// The agent's --state-dir.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Print exactly one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Only this link (default: every link sgmirror pinned in this network namespace).
    #[arg(long, value_name = "LINK")]
    pub link: Option<String>,
    /// Where the agent pins (its --pin-root).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// The agent's --state-dir (status records of detached links are removed).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// The drop log: dropped (and, in audit mode, would-be-dropped) packets, aggregated
/// per flow and written as VPC Flow Logs version 2 lines.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct DropLogArgs {
    /// Where drop-log lines go: `stdout` (the journal under systemd), `log` (the
    /// agent's log on stderr), `off`, or a file path to append to.
    #[arg(long, value_name = "stdout|log|off|FILE", default_value = "stdout")]
    pub drop_log: String,
    /// Drop records the kernel may send per second per CPU; the rest are counted as
    /// suppressed (sgmirror_drop_records_suppressed_total).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub drop_log_rate: u32,
    /// Seconds over which drop records are aggregated into one line per flow.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub drop_log_interval: u64,
    /// Most lines per interval; the flows beyond it are summed into one SKIPDATA line.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub drop_log_max_lines: usize,
    /// AWS account id for the lines' account-id field (`-` when not given).
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
}

/// Idle timeouts of tracked flows, in seconds. Each overrides, for every interface,
/// AWS's default and the interface's `ConnectionTrackingConfiguration`.
#[derive(Debug, Args, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutArgs {
    /// Established TCP (AWS default 432000).
    #[arg(long, value_name = "SECS")]
    pub tcp_established_timeout: Option<u32>,
    /// TCP opening or closing (default 120; AWS documents none).
    #[arg(long, value_name = "SECS")]
    pub tcp_other_timeout: Option<u32>,
    /// UDP, one direction or a single request/response (AWS default 30).
    #[arg(long, value_name = "SECS")]
    pub udp_timeout: Option<u32>,
    /// UDP with more than one request/response (AWS default 180).
    #[arg(long, value_name = "SECS")]
    pub udp_stream_timeout: Option<u32>,
    /// ICMP and ICMPv6 (default 30; AWS documents none).
    #[arg(long, value_name = "SECS")]
    pub icmp_timeout: Option<u32>,
    /// Other protocols (AWS: 600).
    #[arg(long, value_name = "SECS")]
    pub other_timeout: Option<u32>,
}

impl TimeoutArgs {
    /// `base` with every timeout given on the command line replaced.
    pub fn apply(&self, base: sgmirror_common::Timeouts) -> sgmirror_common::Timeouts {
        sgmirror_common::Timeouts {
            tcp_established: self.tcp_established_timeout.unwrap_or(base.tcp_established),
            tcp_other: self.tcp_other_timeout.unwrap_or(base.tcp_other),
            udp: self.udp_timeout.unwrap_or(base.udp),
            udp_stream: self.udp_stream_timeout.unwrap_or(base.udp_stream),
            icmp: self.icmp_timeout.unwrap_or(base.icmp),
            other: self.other_timeout.unwrap_or(base.other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcModeArg {
    /// TCX where the kernel has it, a clsact filter otherwise.
    Auto,
    /// TCX only (Linux 6.6+): coexists with other TC programs.
    Tcx,
    /// A filter on a clsact qdisc (created if missing, removed if we created it).
    Clsact,
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
    /// ICMP/ICMPv6 echo identifier.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub icmp_id: u16,
    /// TCP flags as letters: S (SYN), A (ACK), F (FIN), R (RST). A new connection
    /// starts with S.
    #[arg(long, value_name = "FLAGS", default_value = "S")]
    pub tcp_flags: String,
    /// Packets seen before the judged one, so that it can be part of a tracked flow:
    /// a JSON array of `{"direction": "ingress"|"egress", "proto", "src", "dst",
    /// "sport", "dport", "icmp_type", "icmp_code", "icmp_id", "tcp_flags",
    /// "after_ms", "quotes"}` (`after_ms`: time since the previous packet; `quotes`:
    /// index of the entry an ICMP error quotes; `tcp_flags` defaults to A, a packet of
    /// an open connection). direction, proto, src and dst are always required; dport
    /// and icmp_type as for the flags.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Milliseconds between the last trace packet and the judged one.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub after_ms: u64,
    /// For an ICMP error: index of the trace entry it quotes (default: a flow that is
    /// not tracked).
    #[arg(long, value_name = "N")]
    pub quotes: Option<usize>,
    /// Ask the real kernel programs (BPF_PROG_TEST_RUN, private maps) instead of the
    /// reference evaluator. Needs root (CAP_BPF, CAP_NET_ADMIN).
    #[arg(long)]
    pub kernel: bool,
    /// Print exactly one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArg,
    /// Only the rules of these interfaces (repeatable); default: the snapshot's own
    /// interfaces. A rule shared by several is reported once.
    #[arg(long = "interface", value_name = "ENI_ID")]
    pub interfaces: Vec<String>,
    /// Print exactly one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A running agent's counters (the file `sgmirror run --summary-json` writes):
    /// rules listed with 0 packets are reported as unused.
    #[arg(long, value_name = "FILE")]
    pub hits: Option<PathBuf>,
    /// Exit with status 2 when a finding of this severity or higher exists.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<SeverityArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    /// Exposes the instance now.
    High,
    /// Probably not what was meant.
    Medium,
    /// Clutter.
    Low,
}
