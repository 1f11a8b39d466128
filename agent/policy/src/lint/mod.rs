//! `sgmirror lint`: the rules of a snapshot that are probably mistakes, and only those.
//!
//! Lint reads the rules that apply to the interfaces it is given (by default the
//! snapshot's own, [`Snapshot::own_interface_ids`]); a rule shared by several of them is
//! reported once. Each [`Finding`] has a severity, a [`Kind`], the rule and a one-line
//! message that says what is wrong and what to do. A rule that is fine produces nothing.
//!
//! - `world-open-sensitive-port` (high): an inbound rule from `0.0.0.0/0` or `::/0` — a
//!   CIDR read as AWS reads it (`203.0.113.5/0` counts), or a prefix list with such an
//!   entry — covers one of [`SENSITIVE_PORTS`] over tcp or `-1`. One finding per rule,
//!   naming every such port.
//! - `host-address-short-prefix` (high): a CIDR, or an entry of the prefix list a rule
//!   names, has host bits set: AWS reads `203.0.113.5/0` as the whole internet.
//! - `wide-port-range` (medium): an inbound tcp/udp rule opens more than [`WIDE_RANGE`]
//!   ports but not all of them; from the whole internet, also all of them, and `-1`.
//! - `unresolvable-reference` (medium): a rule names a group or prefix list the resolver
//!   cannot expand ([`crate::resolve`] says why): the rule allows nothing.
//! - `unused-rule` (low), given a running agent's counters ([`Hits`]): the rule is listed
//!   with 0 packets on every interface that lists it.
//!
//! Deliberately not findings: every port (or `-1`) from a peer that is not the whole
//! internet (a VPC block, a group: "trust this peer" is a choice, not a slip), and any
//! outbound rule to the whole internet (AWS's default egress rule is exactly that).

mod checks;
mod hits;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use checks::{SENSITIVE_PORTS, WIDE_RANGE};
pub use hits::{Hits, HitsError, InterfaceHits, RuleHit};

use crate::model::{Direction, IcmpMatch, PeerSource, Protocol, ResolvedRule, Warning};
use crate::resolve::{self, ResolveError};
use crate::snapshot::{Rule, Snapshot};

/// How bad a finding is. Ordered most severe first, so sorting puts `high` on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Exposes the instance now: fix it.
    High,
    /// Probably broader (or narrower) than meant: look at it.
    Medium,
    /// Clutter: worth a clean-up.
    Low,
}

impl Severity {
    /// `"high"`, `"medium"` or `"low"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// Whether `self` is `threshold` or more severe (`High.at_least(Medium)` is true).
    pub fn at_least(self, threshold: Severity) -> bool {
        self <= threshold
    }
}

/// What a finding is about; serialised as its kebab-case id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A service that should never face the internet does.
    WorldOpenSensitivePort,
    /// A host address written with a short prefix: AWS reads the network part.
    HostAddressShortPrefix,
    /// Far more ports than a service needs.
    WidePortRange,
    /// A referenced group or prefix list the snapshot cannot expand.
    UnresolvableReference,
    /// No packet matched the rule while the agent counted.
    UnusedRule,
}

impl Kind {
    /// The kebab-case id (`world-open-sensitive-port`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WorldOpenSensitivePort => "world-open-sensitive-port",
            Kind::HostAddressShortPrefix => "host-address-short-prefix",
            Kind::WidePortRange => "wide-port-range",
            Kind::UnresolvableReference => "unresolvable-reference",
            Kind::UnusedRule => "unused-rule",
        }
    }

    /// Every finding of a kind has the same severity.
    pub fn severity(self) -> Severity {
        match self {
            Kind::WorldOpenSensitivePort | Kind::HostAddressShortPrefix => Severity::High,
            Kind::WidePortRange | Kind::UnresolvableReference => Severity::Medium,
            Kind::UnusedRule => Severity::Low,
        }
    }
}

/// One problem with one rule.
///
/// Ports are numbers: `from`/`to` for tcp, udp, `-1` and numbered protocols (the last
/// two as `0`–`65535`); `icmp_type`/`icmp_code` for icmp and icmpv6 (`-1`: any). The
/// fields that do not apply are left out of the JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What.
    pub kind: Kind,
    /// The `sgr-` id, or the synthetic `GROUP/ingress|egress/PERM/SOURCE` id.
    pub rule: String,
    /// The rule's group.
    pub group_id: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1` or a protocol number.
    pub protocol: String,
    /// First port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u16>,
    /// Last port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u16>,
    /// ICMP type, `-1` for any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i16>,
    /// ICMP code, `-1` for any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<i16>,
    /// The peer as the snapshot wrote it: a CIDR (host bits and all), a `pl-` or `sg-` id.
    pub source: String,
    /// `cidr`, `cidr-ipv6`, `prefix-list` or `group`.
    pub source_kind: &'static str,
    /// `world-open-sensitive-port`: the sensitive ports the rule opens.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitive_ports: Vec<u16>,
    /// The linted interfaces the rule applies to.
    pub interfaces: Vec<String>,
    /// JSON path of the rule in the snapshot.
    pub path: String,
    /// What is wrong and what to do, on one line.
    pub message: String,
}

/// What to lint.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Interfaces whose rules are linted; empty: the snapshot's own interfaces.
    pub interfaces: &'a [String],
    /// A running agent's counters, for `unused-rule`.
    pub hits: Option<&'a Hits>,
}

/// Lint's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sorted by severity (high first), then rule id, then kind.
    pub findings: Vec<Finding>,
    /// Things worth a look that are not findings (an interface without groups, a hits
    /// file for other interfaces, snapshot warnings no finding already says).
    pub warnings: Vec<Warning>,
}

/// Why lint cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    /// An interface to lint is not in the snapshot.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Nothing to lint.
    #[error("the snapshot has no interfaces to lint")]
    NoInterfaces,
}

/// A rule in scope: the snapshot's rule, its resolved peers, and where it applies.
pub(crate) struct Subject<'s> {
    pub(crate) rule: &'s Rule,
    pub(crate) resolved: ResolvedRule,
    pub(crate) interfaces: Vec<String>,
}

/// Lints the rules of `options.interfaces` (default: the snapshot's own interfaces).
pub fn lint(snapshot: &Snapshot, options: &Options<'_>) -> Result<Report, LintError> {
    let mut ids: Vec<String> = if options.interfaces.is_empty() {
        snapshot.own_interface_ids()
    } else {
        options.interfaces.to_vec()
    };
    dedup_keep_order(&mut ids);
    if ids.is_empty() {
        return Err(LintError::NoInterfaces);
    }

    let by_path: HashMap<&str, &Rule> = snapshot.rules.iter().map(|r| (r.path.as_str(), r)).collect();
    let by_id: HashMap<&str, &Rule> = snapshot.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut subjects: BTreeMap<String, Subject<'_>> = BTreeMap::new();
    // Rule id → the resolver's reason it cannot expand the rule's peer.
    let mut unresolved: BTreeMap<String, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    for id in &ids {
        let (policy, resolve_warnings) = resolve::resolve_interface(snapshot, id)?;
        for resolved in policy.ingress.into_iter().chain(policy.egress) {
            let Some(&rule) = by_id.get(resolved.id.as_str()) else { continue };
            subjects
                .entry(resolved.id.clone())
                .or_insert_with(|| Subject { rule, resolved, interfaces: Vec::new() })
                .interfaces
                .push(id.clone());
        }
        // The resolver reports an unexpandable peer at the rule's own path; everything
        // else it says (no groups, no VPC) is about the interface.
        for w in resolve_warnings {
            match by_path.get(w.path.as_str()) {
                Some(rule) if subjects.get(&rule.id).is_some_and(|s| s.resolved.peers.is_empty()) => {
                    unresolved.entry(rule.id.clone()).or_insert(w.message);
                }
                _ => warnings.push(w),
            }
        }
    }

    let mut findings = Vec::new();
    let mut covered: Vec<String> = Vec::new();
    for subject in subjects.values() {
        findings.extend(checks::world_open_sensitive_port(subject));
        if let Some((finding, paths)) = checks::host_address_short_prefix(subject, snapshot) {
            findings.push(finding);
            covered.extend(paths);
        }
        findings.extend(checks::wide_port_range(subject));
        if let Some(reason) = unresolved.get(&subject.resolved.id) {
            let message = format!("{reason}; correct the reference, or remove the rule if it is stale");
            findings.push(Finding::new(Kind::UnresolvableReference, subject, message));
        }
    }
    if let Some(hits) = options.hits {
        findings.extend(hits::unused_rules(hits, &subjects, snapshot, &mut warnings));
    }
    findings.sort_by(|a, b| (a.severity, &a.rule, a.kind).cmp(&(b.severity, &b.rule, b.kind)));

    // Snapshot warnings a host-bits finding already says are not repeated.
    let said = |w: &Warning| covered.iter().any(|p| w.path == *p || w.path.starts_with(&format!("{p}.")));
    let mut all_warnings: Vec<Warning> = snapshot.warnings.iter().filter(|w| !said(w)).cloned().collect();
    all_warnings.extend(warnings);
    Ok(Report { findings, warnings: all_warnings })
}

impl Finding {
    /// A finding about `subject`, with the rule's protocol, ports and source filled in.
    pub(crate) fn new(kind: Kind, subject: &Subject<'_>, message: String) -> Finding {
        let r = &subject.resolved;
        let (protocol, from, to, icmp) = protocol_fields(r.protocol);
        let (source_kind, source) = match &r.source {
            PeerSource::Cidr(s) => ("cidr", s),
            PeerSource::CidrIpv6(s) => ("cidr-ipv6", s),
            PeerSource::PrefixList(s) => ("prefix-list", s),
            PeerSource::Group(s) => ("group", s),
        };
        Finding {
            severity: kind.severity(),
            kind,
            rule: r.id.clone(),
            group_id: r.group_id.clone(),
            direction: r.direction,
            protocol,
            from,
            to,
            icmp_type: icmp.map(|(t, _)| t),
            icmp_code: icmp.map(|(_, c)| c),
            source: source.clone(),
            source_kind,
            sensitive_ports: Vec::new(),
            interfaces: subject.interfaces.clone(),
            path: subject.rule.path.clone(),
            message,
        }
    }

    /// The ports as text: `3389`, `1024-65535`, `0-65535`; for icmp `TYPE:CODE` (`8:-1`).
    pub fn ports_text(&self) -> String {
        match (self.from, self.to, self.icmp_type, self.icmp_code) {
            (Some(from), Some(to), _, _) if from == to => from.to_string(),
            (Some(from), Some(to), _, _) => format!("{from}-{to}"),
            (_, _, Some(t), Some(c)) => format!("{t}:{c}"),
            _ => String::new(),
        }
    }
}

type IcmpFields = Option<(i16, i16)>;

/// (protocol text, from, to, icmp type/code) of a protocol.
fn protocol_fields(protocol: Protocol) -> (String, Option<u16>, Option<u16>, IcmpFields) {
    let icmp = |m: IcmpMatch| match m {
        IcmpMatch::All => (-1, -1),
        IcmpMatch::Type { icmp_type } => (i16::from(icmp_type), -1),
        IcmpMatch::TypeCode { icmp_type, code } => (i16::from(icmp_type), i16::from(code)),
    };
    match protocol {
        Protocol::All => ("-1".into(), Some(0), Some(u16::MAX), None),
        Protocol::Tcp(r) => ("tcp".into(), Some(r.from), Some(r.to), None),
        Protocol::Udp(r) => ("udp".into(), Some(r.from), Some(r.to), None),
        Protocol::Icmp(m) => ("icmp".into(), None, None, Some(icmp(m))),
        Protocol::Icmpv6(m) => ("icmpv6".into(), None, None, Some(icmp(m))),
        Protocol::Number(n) => (n.to_string(), Some(0), Some(u16::MAX), None),
    }
}

fn dedup_keep_order(ids: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}

#[cfg(test)]
mod tests;
