//! The protocol/port entries of each address class: the second LPM lookup.
//!
//! Key bits: class (32) | protocol (8) | port (16). For each class:
//! - its `-1` rules become one /32 entry (class only), which serves every protocol
//!   and every port no other entry covers;
//! - a numbered protocol becomes one /40 entry (class, protocol) with its rules and
//!   the `-1` rules;
//! - TCP/UDP port ranges and ICMP type/code selections are cut into elementary
//!   intervals over which the set of covering rules is constant, and each interval
//!   becomes masked /40…/56 entries whose set also holds the `-1` rules and the
//!   numbered rules of that protocol (the closure again, this time over protocols).
//!
//! Because every entry carries the whole set of rules that allow its packets, the
//! longest match is the answer and no second lookup is needed. Each entry also
//! carries the untracked flags of its set (see [`super::untracked`]).

use std::collections::{BTreeMap, HashMap};

use sgmirror_common::{PORT_KEY_CLASS_BITS, PORT_KEY_PROTO_BITS, PortKey};

use super::ranges::masked_blocks;
use super::untracked::Untracked;
use crate::model::{IcmpMatch, Protocol, ResolvedRule, proto};

/// One port entry with its match set as an index into [`PortTable::sets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// LPM prefix length over the 56 key bits.
    pub prefix_len: u32,
    /// Masked key.
    pub key: PortKey,
    /// Index into [`PortTable::sets`]: the match id.
    pub set: u32,
    /// `FLAG_UNTRACKED_*` of the entry.
    pub flags: u32,
}

/// The port entries of every class, with their distinct match sets.
#[derive(Debug)]
pub struct PortTable<'a> {
    /// Entries in emission order (class by class).
    pub entries: Vec<RawEntry>,
    /// Distinct match sets, in order of first use, as ranks of rule ids (see
    /// [`build`]): equal rank sets are equal id sets.
    pub sets: Vec<Vec<u32>>,
    index: HashMap<Vec<u32>, u32>,
    /// Rank of each rule's id.
    rank: &'a [u32],
    /// Scratch space for the rank set being pushed.
    scratch: Vec<u32>,
}

impl PortTable<'_> {
    /// Adds an entry allowing the rules `set` (rule indices).
    fn push(&mut self, prefix_len: u32, key: PortKey, set: &[u32], flags: u32) {
        self.scratch.clear();
        self.scratch.extend(set.iter().filter_map(|&r| self.rank.get(r as usize)));
        self.scratch.sort_unstable();
        self.scratch.dedup();
        let set = match self.index.get(&self.scratch) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
                self.sets.push(self.scratch.clone());
                self.index.insert(self.scratch.clone(), id);
                id
            }
        };
        self.entries.push(RawEntry { prefix_len, key, set, flags });
    }
}

/// Which limit [`build`] crossed, and the count when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Too many entries.
    Entries(usize),
    /// Too many match sets.
    Sets(usize),
}

/// The rules of one class for one protocol.
#[derive(Default)]
struct ProtocolRules {
    /// Rules for every packet of the protocol (a numbered protocol).
    whole: Vec<u32>,
    /// Rules for an inclusive interval of the 16-bit port field: (from, to, rule).
    spans: Vec<(u16, u16, u32)>,
}

/// What the entries of one direction are built from.
pub struct Input<'r> {
    /// The direction's rules.
    pub rules: &'r [ResolvedRule],
    /// The rule set of each address class.
    pub class_sets: &'r [Vec<u32>],
    /// The family (4 or 6) of each address class.
    pub class_families: &'r [u8],
    /// The untracked context of the direction.
    pub untracked: &'r Untracked,
}

/// Builds the entries of every class. `rank` gives each rule (by index) the rank of
/// its id among the distinct ids, so that match sets are deduplicated by id (two rules
/// may share one). Stops as soon as the table passes `max_entries` or `max_sets`.
pub fn build<'a>(
    input: &Input<'_>,
    rank: &'a [u32],
    max_entries: usize,
    max_sets: usize,
) -> Result<PortTable<'a>, Overflow> {
    let mut table =
        PortTable { entries: Vec::new(), sets: Vec::new(), index: HashMap::new(), rank, scratch: Vec::new() };
    for (class, members) in input.class_sets.iter().enumerate() {
        let family = input.class_families.get(class).copied().unwrap_or(4);
        let class = u32::try_from(class).unwrap_or(u32::MAX);
        class_entries(class, family, members, input, &mut table);
        if table.entries.len() > max_entries {
            return Err(Overflow::Entries(table.entries.len()));
        }
        if table.sets.len() > max_sets {
            return Err(Overflow::Sets(table.sets.len()));
        }
    }
    Ok(table)
}

/// The 16-bit interval an ICMP selection covers: `type << 8 | code`.
fn icmp_span(m: IcmpMatch) -> (u16, u16) {
    match m {
        IcmpMatch::All => (0, u16::MAX),
        IcmpMatch::Type { icmp_type } => {
            let t = u16::from(icmp_type) << 8;
            (t, t | 0xff)
        }
        IcmpMatch::TypeCode { icmp_type, code } => {
            let v = u16::from(icmp_type) << 8 | u16::from(code);
            (v, v)
        }
    }
}

/// Emits the entries of one class of `family` (see the module documentation).
fn class_entries(class: u32, family: u8, members: &[u32], input: &Input<'_>, table: &mut PortTable<'_>) {
    let (rules, untracked) = (input.rules, input.untracked);
    let mut all = Vec::new();
    let mut by_proto: BTreeMap<u8, ProtocolRules> = BTreeMap::new();
    for &r in members {
        let Some(rule) = rules.get(r as usize) else { continue };
        let (number, span) = match rule.protocol {
            Protocol::All => {
                all.push(r);
                continue;
            }
            Protocol::Number(n) => {
                by_proto.entry(n).or_default().whole.push(r);
                continue;
            }
            Protocol::Tcp(range) => (proto::TCP, (range.from, range.to)),
            Protocol::Udp(range) => (proto::UDP, (range.from, range.to)),
            Protocol::Icmp(m) => (proto::ICMP, icmp_span(m)),
            Protocol::Icmpv6(m) => (proto::ICMPV6, icmp_span(m)),
        };
        // An inverted range allows nothing, as in the evaluator; it needs no entry.
        if span.0 <= span.1 {
            by_proto.entry(number).or_default().spans.push((span.0, span.1, r));
        }
    }
    if !all.is_empty() {
        let flags = untracked.flags(family, None, &all);
        table.push(PORT_KEY_CLASS_BITS, PortKey::new(class, 0, 0), &all, flags);
    }
    for (number, rules) in by_proto {
        let mut base = all.clone();
        base.extend_from_slice(&rules.whole);
        base.sort_unstable();
        let intervals = elementary_intervals(&rules.spans);
        // A span over the whole field is itself a /40 entry, with a superset of `base`.
        let whole_field = intervals.first().is_some_and(|(lo, hi, _)| *lo == 0 && *hi == u16::MAX);
        if !rules.whole.is_empty() && !whole_field {
            let flags = untracked.flags(family, Some(number), &base);
            table.push(PORT_KEY_PROTO_BITS, PortKey::new(class, number, 0), &base, flags);
        }
        for (lo, hi, covering) in intervals {
            let mut set = base.clone();
            set.extend_from_slice(&covering);
            set.sort_unstable();
            set.dedup();
            let flags = untracked.flags(family, Some(number), &set);
            for (start, len) in masked_blocks(lo, hi) {
                table.push(PORT_KEY_PROTO_BITS + len, PortKey::new(class, number, start), &set, flags);
            }
        }
    }
}

/// Cuts the spans into maximal intervals over which the set of covering rules is
/// constant and non-empty: `(from, to, rules sorted)`, ascending.
fn elementary_intervals(spans: &[(u16, u16, u32)]) -> Vec<(u16, u16, Vec<u32>)> {
    // Events at u32 positions so that `to + 1` never overflows: (position, is_start, rule).
    let mut events: Vec<(u32, bool, u32)> = Vec::with_capacity(spans.len() * 2);
    for &(from, to, rule) in spans {
        events.push((u32::from(from), true, rule));
        events.push((u32::from(to) + 1, false, rule));
    }
    events.sort_unstable();
    let mut out: Vec<(u16, u16, Vec<u32>)> = Vec::new();
    // Rules covering the current position, with multiplicity (a rule can appear twice
    // only if a caller lists it twice; counting keeps that harmless).
    let mut active: BTreeMap<u32, u32> = BTreeMap::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, start, rule) = events[i];
            if start {
                *active.entry(rule).or_default() += 1;
            } else if let Some(n) = active.get_mut(&rule) {
                *n -= 1;
                if *n == 0 {
                    active.remove(&rule);
                }
            }
            i += 1;
        }
        let Some(&(next, _, _)) = events.get(i) else { break };
        if active.is_empty() || at > u32::from(u16::MAX) {
            continue;
        }
        let set: Vec<u32> = active.keys().copied().collect();
        // Positions are ≤ 65536 and `at` < `next`, so `at` and `next - 1` fit u16.
        let (lo, hi) = (at as u16, (next - 1) as u16);
        match out.last_mut() {
            Some(last) if u32::from(last.1) + 1 == at && last.2 == set => last.1 = hi,
            _ => out.push((lo, hi, set)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementary_intervals_split_at_every_change() {
        let spans = [(10, 20, 0), (15, 30, 1), (25, 25, 2), (40, 50, 3)];
        let got = elementary_intervals(&spans);
        let want = vec![
            (10, 14, vec![0]),
            (15, 20, vec![0, 1]),
            (21, 24, vec![1]),
            (25, 25, vec![1, 2]),
            (26, 30, vec![1]),
            (40, 50, vec![3]),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn elementary_intervals_reach_the_top_of_the_field() {
        let got = elementary_intervals(&[(0, 65535, 0), (65535, 65535, 1)]);
        assert_eq!(got, vec![(0, 65534, vec![0]), (65535, 65535, vec![0, 1])]);
    }

    #[test]
    fn icmp_spans() {
        assert_eq!(icmp_span(IcmpMatch::All), (0, 65535));
        assert_eq!(icmp_span(IcmpMatch::Type { icmp_type: 3 }), (0x300, 0x3ff));
        assert_eq!(icmp_span(IcmpMatch::TypeCode { icmp_type: 8, code: 0 }), (0x800, 0x800));
        assert_eq!(icmp_span(IcmpMatch::TypeCode { icmp_type: 255, code: 255 }), (0xffff, 0xffff));
    }
}
