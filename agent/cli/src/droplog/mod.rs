//! The drop log: the kernel's [`DropRecord`]s aggregated per flow over an interval and
//! written as lines with the fields of VPC Flow Logs, version 2.
//!
//! The kernel sends one record per dropped (or, in audit mode, would-be-dropped)
//! packet through the `DROP_LOG` ring buffer, rate-limited per CPU. The agent feeds
//! them to an [`Aggregator`], which sums packets and bytes per flow — interface,
//! addresses, ports, protocol, direction and verdict — and, once per
//! [`Config::interval`] (default [`DEFAULT_INTERVAL`]), hands back one [`FlowLine`] per
//! flow. A [`Sink`] writes them to stdout (the journal, under systemd), an append-only
//! file, or the agent's log.
//!
//! # Line format
//!
//! Exactly the 14 space-separated fields of the VPC Flow Logs default format
//! (version 2), in their order:
//!
//! ```text
//! version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status
//! 2 123456789012 eni-0abc 198.51.100.7 10.0.0.5 40000 22 6 3 180 1700000000 1700000004 REJECT OK
//! ```
//!
//! * `account-id` comes from configuration, `-` when unknown;
//! * `start`/`end` are the Unix seconds at which the agent read the flow's first and
//!   last record of the interval (the ring buffer is drained continuously, so this is
//!   the packet's time to well under a second);
//! * `srcport`/`dstport` are 0 for every protocol but TCP and UDP, ICMP included, as
//!   VPC Flow Logs write them (so all ICMP between two addresses is one flow); a packet
//!   that was not parsed as far as IP has `-` addresses and protocol;
//! * `action` is always `REJECT`: the log holds dropped packets only. Would-be drops of
//!   a link in audit mode are `REJECT` too — they are what enforcement would reject —
//!   and the lines stay at 14 fields; the [`Sink::Log`] sink carries `mode=audit` as
//!   a separate field, and a flow's mode is also that of its interface
//!   (`sgmirror_enforcement_mode`);
//! * `log-status` is `OK`, or `SKIPDATA` for the summary line of the rate limit below.
//!
//! # Rate limit
//!
//! At most [`Config::max_lines`] flow lines per interval (default
//! [`DEFAULT_MAX_LINES`]): the flows with the most packets are written, and the others
//! are summed into one `SKIPDATA` line per interface, with `-` for the fields that no
//! longer apply (addresses, ports, protocol, action) but with the packets, bytes,
//! start and end of the flows it replaces — unlike AWS, which writes `-` there — so the
//! packets of an interval's lines always add up to the records fed in.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sgmirror_common::{DropRecord, direction, verdict};

/// How often aggregated lines are written by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Flow lines per interval by default.
pub const DEFAULT_MAX_LINES: usize = 1000;
/// VPC Flow Logs format version of the lines.
pub const VERSION: u8 = 2;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Settings of the drop log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Aggregation interval.
    pub interval: Duration,
    /// Most flow lines per interval; further flows go into `SKIPDATA` lines.
    pub max_lines: usize,
    /// AWS account id for the `account-id` field; `-` when `None`.
    pub account_id: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { interval: DEFAULT_INTERVAL, max_lines: DEFAULT_MAX_LINES, account_id: None }
    }
}

/// `log-status` of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStatus {
    /// A flow.
    Ok,
    /// The sum of the flows left out by the line limit.
    SkipData,
}

/// One line of the drop log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLine {
    /// `account-id` (`-` when unknown).
    pub account_id: String,
    /// `interface-id`: the ENI.
    pub interface_id: String,
    /// `srcaddr`; `None` for a packet not parsed as IP, and in `SKIPDATA` lines.
    pub src: Option<IpAddr>,
    /// `dstaddr`.
    pub dst: Option<IpAddr>,
    /// `srcport` (0 for protocols without ports).
    pub src_port: u16,
    /// `dstport`.
    pub dst_port: u16,
    /// `protocol`; `None` when not known.
    pub protocol: Option<u8>,
    /// Packets of the flow in the interval.
    pub packets: u64,
    /// Bytes (whole frames) of the flow in the interval.
    pub bytes: u64,
    /// Unix seconds of the first packet.
    pub start: u64,
    /// Unix seconds of the last packet.
    pub end: u64,
    /// `OK` or `SKIPDATA`.
    pub status: LogStatus,
    /// `ingress` or `egress` (not a v2 field; for the [`Sink::Log`] sink).
    pub direction: &'static str,
    /// Would-be drops of a link in audit mode (not a v2 field; for the
    /// [`Sink::Log`] sink).
    pub audit: bool,
}

impl fmt::Display for FlowLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION} {} {} ", self.account_id, self.interface_id)?;
        match self.status {
            LogStatus::Ok => {
                write_opt(f, self.src)?;
                f.write_str(" ")?;
                write_opt(f, self.dst)?;
                write!(f, " {} {} ", self.src_port, self.dst_port)?;
                write_opt(f, self.protocol)?;
                write!(f, " {} {} {} {} REJECT OK", self.packets, self.bytes, self.start, self.end)
            }
            LogStatus::SkipData => {
                write!(f, "- - - - - {} {} {} {} - SKIPDATA", self.packets, self.bytes, self.start, self.end)
            }
        }
    }
}

fn write_opt(f: &mut fmt::Formatter<'_>, v: Option<impl fmt::Display>) -> fmt::Result {
    match v {
        Some(v) => write!(f, "{v}"),
        None => f.write_str("-"),
    }
}

/// What makes two records the same flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    interface_id: String,
    direction: u8,
    audit: bool,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    protocol: Option<u8>,
    src_port: u16,
    dst_port: u16,
}

impl FlowKey {
    fn of(interface_id: &str, r: &DropRecord) -> FlowKey {
        let (src, dst, protocol) = match r.family {
            4 => (Some(v4(&r.src)), Some(v4(&r.dst)), Some(r.proto)),
            6 => (
                Some(IpAddr::V6(Ipv6Addr::from(r.src))),
                Some(IpAddr::V6(Ipv6Addr::from(r.dst))),
                Some(r.proto),
            ),
            _ => (None, None, None),
        };
        let has_ports = matches!(protocol, Some(PROTO_TCP | PROTO_UDP));
        FlowKey {
            interface_id: interface_id.to_owned(),
            direction: r.direction,
            audit: u32::from(r.verdict) == verdict::AUDIT,
            src,
            dst,
            protocol,
            src_port: if has_ports { r.src_port } else { 0 },
            dst_port: if has_ports { r.dst_port } else { 0 },
        }
    }
}

fn v4(addr: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}

fn direction_name(d: u8) -> &'static str {
    if u32::from(d) == direction::EGRESS { "egress" } else { "ingress" }
}

/// Packets, bytes and times of one flow in the current interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowStats {
    packets: u64,
    bytes: u64,
    start: u64,
    end: u64,
}

/// Sums drop records per flow and hands back the lines once per interval.
#[derive(Debug)]
pub struct Aggregator {
    config: Config,
    flows: BTreeMap<FlowKey, FlowStats>,
    window_start: SystemTime,
    lines_written: u64,
    flows_suppressed: u64,
}

impl Aggregator {
    /// An aggregator whose first interval starts at `now`.
    pub fn new(config: Config, now: SystemTime) -> Aggregator {
        Aggregator {
            config,
            flows: BTreeMap::new(),
            window_start: now,
            lines_written: 0,
            flows_suppressed: 0,
        }
    }

    /// Adds one record, read from the ring buffer of `interface_id`'s link at `now`.
    pub fn record(&mut self, interface_id: &str, record: &DropRecord, now: SystemTime) {
        let t = unix_seconds(now);
        let stats = self.flows.entry(FlowKey::of(interface_id, record)).or_insert(FlowStats {
            packets: 0,
            bytes: 0,
            start: t,
            end: t,
        });
        stats.packets += 1;
        stats.bytes += u64::from(record.bytes);
        stats.start = stats.start.min(t);
        stats.end = stats.end.max(t);
    }

    /// When the current interval ends.
    #[cfg(test)]
    pub fn next_due(&self) -> SystemTime {
        self.window_start + self.config.interval
    }

    /// The lines of the interval when it is over (and a new one starts at `now`);
    /// nothing before that. A clock that went backwards ends the interval too.
    pub fn tick(&mut self, now: SystemTime) -> Vec<FlowLine> {
        let over = now.duration_since(self.window_start).map_or(true, |d| d >= self.config.interval);
        if !over {
            return Vec::new();
        }
        self.window_start = now;
        self.drain()
    }

    /// The lines of everything aggregated so far, at once (on shutdown).
    pub fn drain(&mut self) -> Vec<FlowLine> {
        let flows = std::mem::take(&mut self.flows);
        let mut flows: Vec<(FlowKey, FlowStats)> = flows.into_iter().collect();
        let mut skipped: Vec<(FlowKey, FlowStats)> = Vec::new();
        if flows.len() > self.config.max_lines {
            // Keep the biggest flows; the sort is stable, so ties keep key order.
            flows.sort_by_key(|f| std::cmp::Reverse(f.1.packets));
            skipped = flows.split_off(self.config.max_lines);
            flows.sort_by(|a, b| a.0.cmp(&b.0)); // back to key order
        }
        let account = self.config.account_id.clone().unwrap_or_else(|| "-".to_owned());
        let mut lines: Vec<FlowLine> = flows
            .into_iter()
            .map(|(k, s)| FlowLine {
                account_id: account.clone(),
                interface_id: k.interface_id,
                src: k.src,
                dst: k.dst,
                src_port: k.src_port,
                dst_port: k.dst_port,
                protocol: k.protocol,
                packets: s.packets,
                bytes: s.bytes,
                start: s.start,
                end: s.end,
                status: LogStatus::Ok,
                direction: direction_name(k.direction),
                audit: k.audit,
            })
            .collect();
        self.flows_suppressed += skipped.len() as u64;
        let mut per_interface: BTreeMap<String, (FlowStats, bool)> = BTreeMap::new();
        for (k, s) in skipped {
            let entry = per_interface
                .entry(k.interface_id)
                .or_insert((FlowStats { packets: 0, bytes: 0, start: s.start, end: s.end }, true));
            entry.0.packets += s.packets;
            entry.0.bytes += s.bytes;
            entry.0.start = entry.0.start.min(s.start);
            entry.0.end = entry.0.end.max(s.end);
            entry.1 &= k.audit;
        }
        lines.extend(per_interface.into_iter().map(|(interface_id, (s, audit))| FlowLine {
            account_id: account.clone(),
            interface_id,
            src: None,
            dst: None,
            src_port: 0,
            dst_port: 0,
            protocol: None,
            packets: s.packets,
            bytes: s.bytes,
            start: s.start,
            end: s.end,
            status: LogStatus::SkipData,
            direction: "-",
            audit,
        }));
        self.lines_written += lines.len() as u64;
        lines
    }

    /// Lines handed out so far (flow and `SKIPDATA` lines), for
    /// `sgmirror_drop_log_lines_total`.
    pub fn lines_written(&self) -> u64 {
        self.lines_written
    }

    /// Flows summed into `SKIPDATA` lines so far, for
    /// `sgmirror_drop_log_lines_suppressed_total`.
    pub fn flows_suppressed(&self) -> u64 {
        self.flows_suppressed
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where drop-log lines go.
#[derive(Debug)]
pub enum Sink {
    /// Standard output, one line per flow (the journal, when run by systemd).
    Stdout,
    /// A file, opened for appending (created when missing).
    File {
        /// The file's path, for messages.
        path: PathBuf,
        /// The open file.
        file: File,
    },
    /// The agent's log (`tracing`, target `sgmirror::droplog`), with `mode` and
    /// `direction` as fields beside the line.
    Log,
}

impl Sink {
    /// Where the lines go, for messages.
    pub fn describe(&self) -> String {
        match self {
            Sink::Stdout => "stdout".to_owned(),
            Sink::File { path, .. } => path.display().to_string(),
            Sink::Log => "the log".to_owned(),
        }
    }

    /// Opens `path` for appending, creating it (mode 0640) when missing.
    pub fn append(path: &Path) -> io::Result<Sink> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new().append(true).create(true).mode(0o640).open(path)?;
        Ok(Sink::File { path: path.to_path_buf(), file })
    }

    /// Writes `lines`, one per line.
    pub fn write(&mut self, lines: &[FlowLine]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(joined(lines).as_bytes())?;
                out.flush()
            }
            // One write per batch: with O_APPEND, concurrent writers never interleave
            // within it.
            Sink::File { file, .. } => file.write_all(joined(lines).as_bytes()),
            Sink::Log => {
                for line in lines {
                    let mode = if line.audit { "audit" } else { "enforce" };
                    tracing::info!(target: "sgmirror::droplog", mode, direction = line.direction, "{line}");
                }
                Ok(())
            }
        }
    }
}

fn joined(lines: &[FlowLine]) -> String {
    let mut text = String::with_capacity(lines.len() * 110);
    for line in lines {
        use fmt::Write as _;
        let _ = writeln!(text, "{line}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn rec4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16, bytes: u32) -> DropRecord {
        let mut r = DropRecord {
            proto,
            family: 4,
            src_port: sport,
            dst_port: dport,
            bytes,
            direction: direction::INGRESS as u8,
            verdict: verdict::DROP as u8,
            reason: sgmirror_common::reason::NO_RULE as u8,
            ..DropRecord::default()
        };
        r.src[..4].copy_from_slice(&src);
        r.dst[..4].copy_from_slice(&dst);
        r
    }

    fn config(max_lines: usize) -> Config {
        Config { interval: Duration::from_secs(10), max_lines, account_id: Some("123456789012".into()) }
    }

    #[test]
    fn records_of_one_flow_are_summed_with_first_and_last_times() {
        let mut agg = Aggregator::new(config(10), at(T0));
        let r = rec4([198, 51, 100, 7], [10, 0, 0, 5], PROTO_TCP, 40000, 22, 60);
        agg.record("eni-0abc", &r, at(T0 + 1));
        agg.record("eni-0abc", &DropRecord { bytes: 74, ..r }, at(T0 + 3));
        agg.record("eni-0abc", &r, at(T0 + 4));
        assert!(agg.tick(at(T0 + 9)).is_empty(), "the interval is not over");
        let lines = agg.tick(at(T0 + 10));
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].to_string(),
            "2 123456789012 eni-0abc 198.51.100.7 10.0.0.5 40000 22 6 3 194 1700000001 1700000004 REJECT OK"
        );
        assert_eq!(lines[0].to_string().split(' ').count(), 14);
        assert!(agg.tick(at(T0 + 21)).is_empty(), "a new interval starts empty");
        assert_eq!(agg.lines_written(), 1);
    }

    #[test]
    fn flows_are_kept_apart_by_every_key_field() {
        let mut agg = Aggregator::new(Config { account_id: None, ..config(100) }, at(T0));
        let base = rec4([198, 51, 100, 7], [10, 0, 0, 5], PROTO_UDP, 5000, 53, 50);
        let variants = [
            base,
            DropRecord { src_port: 5001, ..base },
            DropRecord { dst_port: 54, ..base },
            DropRecord { proto: PROTO_TCP, ..base },
            DropRecord { direction: direction::EGRESS as u8, ..base },
            DropRecord { verdict: verdict::AUDIT as u8, ..base },
            rec4([198, 51, 100, 8], [10, 0, 0, 5], PROTO_UDP, 5000, 53, 50),
        ];
        for r in &variants {
            agg.record("eni-0abc", r, at(T0));
            agg.record("eni-0abc", r, at(T0));
        }
        agg.record("eni-0def", &base, at(T0));
        let lines = agg.drain();
        assert_eq!(lines.len(), variants.len() + 1);
        assert!(lines.iter().all(|l| l.account_id == "-" && l.to_string().starts_with("2 - eni-0")));
        assert_eq!(lines.iter().map(|l| l.packets).sum::<u64>(), 2 * variants.len() as u64 + 1);
        let audit: Vec<_> = lines.iter().filter(|l| l.audit).collect();
        assert_eq!(audit.len(), 1);
        assert!(audit[0].to_string().ends_with(" REJECT OK"), "audit lines keep the 14 fields");
        assert_eq!(lines.iter().filter(|l| l.direction == "egress").count(), 1);
    }

    #[test]
    fn icmp_has_ports_zero_and_one_flow_per_address_pair() {
        let mut agg = Aggregator::new(config(10), at(T0));
        // Echo requests with two identifiers and a destination-unreachable.
        agg.record("eni-0abc", &rec4([198, 51, 100, 7], [10, 0, 0, 5], 1, 8 << 8, 77, 98), at(T0));
        agg.record("eni-0abc", &rec4([198, 51, 100, 7], [10, 0, 0, 5], 1, 8 << 8, 78, 98), at(T0));
        agg.record("eni-0abc", &rec4([198, 51, 100, 7], [10, 0, 0, 5], 1, 3 << 8 | 1, 0, 70), at(T0 + 2));
        let lines = agg.drain();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].to_string(),
            "2 123456789012 eni-0abc 198.51.100.7 10.0.0.5 0 0 1 3 266 1700000000 1700000002 REJECT OK"
        );
    }

    #[test]
    fn ipv6_and_unparsed_packets() {
        let mut agg = Aggregator::new(config(10), at(T0));
        let mut r6 = DropRecord {
            family: 6,
            proto: 58,
            src_port: 128 << 8,
            dst_port: 9,
            bytes: 118,
            verdict: verdict::DROP as u8,
            ..DropRecord::default()
        };
        r6.src = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets();
        r6.dst = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        agg.record("eni-0abc", &r6, at(T0));
        let garbage = DropRecord { bytes: 20, verdict: verdict::DROP as u8, ..DropRecord::default() };
        agg.record("eni-0abc", &garbage, at(T0));
        let text: Vec<String> = agg.drain().iter().map(ToString::to_string).collect();
        // Flows come out in key order: an unparsed packet (no address) first.
        assert_eq!(
            text,
            [
                "2 123456789012 eni-0abc - - 0 0 - 1 20 1700000000 1700000000 REJECT OK",
                "2 123456789012 eni-0abc 2001:db8::7 2001:db8::1 0 0 58 1 118 1700000000 1700000000 REJECT OK",
            ]
        );
    }

    #[test]
    fn beyond_the_line_limit_flows_are_summed_into_skipdata_and_nothing_is_lost() {
        const N: usize = 20;
        let mut agg = Aggregator::new(config(N), at(T0));
        let mut fed_packets = 0;
        let mut fed_bytes = 0;
        // N + 5 flows; flow i has i + 1 packets, so the 5 smallest are the ones left out.
        for i in 0..N + 5 {
            for _ in 0..=i {
                let r = rec4([198, 51, 100, i as u8], [10, 0, 0, 5], PROTO_UDP, 1000, 53, 40 + i as u32);
                agg.record("eni-0abc", &r, at(T0 + i as u64 % 7));
                fed_packets += 1;
                fed_bytes += 40 + i as u64;
            }
        }
        let lines = agg.tick(at(T0 + 10));
        assert_eq!(lines.len(), N + 1, "N flow lines and one SKIPDATA line");
        let skip: Vec<_> = lines.iter().filter(|l| l.status == LogStatus::SkipData).collect();
        assert_eq!(skip.len(), 1);
        assert_eq!(skip[0].packets, 1 + 2 + 3 + 4 + 5, "the five smallest flows");
        assert_eq!(
            skip[0].to_string(),
            format!(
                "2 123456789012 eni-0abc - - - - - 15 {} 1700000000 1700000004 - SKIPDATA",
                40 + 2 * 41 + 3 * 42 + 4 * 43 + 5 * 44
            )
        );
        assert_eq!(lines.iter().map(|l| l.packets).sum::<u64>(), fed_packets, "packets add up");
        assert_eq!(lines.iter().map(|l| l.bytes).sum::<u64>(), fed_bytes, "bytes add up");
        assert!(lines.iter().filter(|l| l.status == LogStatus::Ok).all(|l| l.packets > 5));
        assert_eq!(agg.flows_suppressed(), 5);
        assert_eq!(agg.lines_written(), N as u64 + 1);
    }

    #[test]
    fn skipdata_is_per_interface() {
        let mut agg = Aggregator::new(config(1), at(T0));
        for (eni, n) in [("eni-a", 3), ("eni-b", 2), ("eni-c", 1)] {
            for _ in 0..n {
                agg.record(eni, &rec4([198, 51, 100, 1], [10, 0, 0, 5], PROTO_TCP, 1, 2, 60), at(T0));
            }
        }
        let lines = agg.drain();
        let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with("2 123456789012 eni-a 198.51.100.1 "), "{text:?}");
        assert_eq!(text[1], "2 123456789012 eni-b - - - - - 2 120 1700000000 1700000000 - SKIPDATA");
        assert_eq!(text[2], "2 123456789012 eni-c - - - - - 1 60 1700000000 1700000000 - SKIPDATA");
        assert_eq!(agg.flows_suppressed(), 2);
    }

    #[test]
    fn a_clock_that_goes_back_ends_the_interval() {
        let mut agg = Aggregator::new(config(10), at(T0));
        agg.record("eni-a", &rec4([1, 1, 1, 1], [2, 2, 2, 2], PROTO_TCP, 1, 2, 60), at(T0));
        assert_eq!(agg.next_due(), at(T0 + 10));
        assert_eq!(agg.tick(at(T0 - 100)).len(), 1);
        assert_eq!(agg.next_due(), at(T0 - 90));
    }

    #[test]
    fn the_file_sink_appends() {
        let dir = std::env::temp_dir().join(format!("sgm-droplog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("drops.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut agg = Aggregator::new(config(10), at(T0));
        agg.record("eni-a", &rec4([1, 1, 1, 1], [2, 2, 2, 2], PROTO_TCP, 1, 2, 60), at(T0));
        let lines = agg.drain();
        let mut sink = Sink::append(&path).unwrap();
        sink.write(&lines).unwrap();
        sink.write(&lines).unwrap();
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let expected = "2 123456789012 eni-a 1.1.1.1 2.2.2.2 1 2 6 1 60 1700000000 1700000000 REJECT OK";
        assert_eq!(text, format!("earlier\n{expected}\n{expected}\n"));
    }
}
