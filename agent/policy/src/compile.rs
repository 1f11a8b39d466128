//! The compiler: an [`InterfacePolicy`] becomes the images of the kernel maps, one
//! per direction.
//!
//! The kernel judges a packet with exactly two LPM lookups (`DESIGN.md` §3,
//! `prior-art.md` §2.2):
//!
//! 1. the peer address in `ADDR4`/`ADDR6` → an [`AddrValue`]: the address's *class*
//!    (the set of rules whose prefixes contain it, closure applied, see `closure.rs`)
//!    and the `ADDR_EXEMPT` flag for AWS service addresses;
//! 2. `class | protocol | port` in `PORTS` → a [`PortValue`]: the *match set*, the
//!    rules that allow the packet, as an index into [`MapImage::match_sets`] (see
//!    `ports.rs`).
//!
//! No match at either step means no rule allows the packet. [`MapImage::judge`]
//! replays those lookups in userspace, so property tests can hold the images against
//! the reference evaluator.
//!
//! Each `PORTS` value also says whether the TCP and UDP flows it allows are
//! *untracked* (AWS's rule, see `untracked.rs` and [`untracked_flag`]); that
//! depends on the other direction's rules, so each direction is compiled with the
//! whole policy in view. Classes are per family for the same reason.

mod closure;
mod image;
mod ports;
mod ranges;
mod untracked;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;
use sgmirror_common::{AddrValue, PortKey, PortValue};

use crate::model::{Direction, InterfacePolicy, ResolvedRule};

pub use image::{ImageLookup, ImageSummary, packet_key};
pub use ranges::masked_blocks;
pub use untracked::{covers_every_port, untracked_flag, zero_cidr_family};

/// Capacities of the kernel maps; a policy that needs more is refused, never
/// truncated (a truncated policy would silently drop allowed traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries of `ADDR4`, and of `ADDR6`, per direction.
    pub max_prefixes_per_family: usize,
    /// Entries of `PORTS` per direction.
    pub max_port_entries: usize,
    /// Match sets (rule-hit counters) per direction.
    pub max_match_sets: usize,
}

impl Default for Limits {
    /// Sized for the AWS maxima (`sg-semantics.md` §1.7): 1 000 rules per direction,
    /// prefix lists of 1 000 entries and thousands of referenced addresses, with room.
    fn default() -> Self {
        Self { max_prefixes_per_family: 262_144, max_port_entries: 262_144, max_match_sets: 65_536 }
    }
}

/// What did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `ADDR4` entries.
    Ipv4Prefixes,
    /// `ADDR6` entries.
    Ipv6Prefixes,
    /// `PORTS` entries.
    PortEntries,
    /// Match sets.
    MatchSets,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Ipv4Prefixes => "IPv4 prefixes",
            Resource::Ipv6Prefixes => "IPv6 prefixes",
            Resource::PortEntries => "protocol/port entries",
            Resource::MatchSets => "match sets",
        })
    }
}

/// Why a policy could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A map would overflow.
    #[error(
        "interface {interface}, {dir} rules: {count} {resource} do not fit the limit of {limit}",
        dir = .direction.as_str()
    )]
    TooLarge {
        /// The interface (`eni-…`).
        interface: String,
        /// The direction whose image overflowed.
        direction: Direction,
        /// Which map.
        resource: Resource,
        /// Entries needed (for port entries and match sets: the count when the limit was
        /// crossed).
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// One entry of the `PORTS` trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// LPM prefix length over the key's 56 data bits (32 = class only, 40 = class and
    /// protocol, up to 56 = one port or ICMP type/code).
    pub prefix_len: u32,
    /// The key, bits past `prefix_len` zero.
    pub key: PortKey,
    /// The match set and the untracked flags.
    pub value: PortValue,
}

/// The maps of one direction of one interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapImage {
    /// `ADDR4`: sorted, unique networks.
    #[serde(serialize_with = "image::serialize_addrs")]
    pub addr4: Vec<(Ipv4Net, AddrValue)>,
    /// `ADDR6`: sorted, unique networks.
    #[serde(serialize_with = "image::serialize_addrs")]
    pub addr6: Vec<(Ipv6Net, AddrValue)>,
    /// `PORTS`: sorted by key, then prefix length.
    pub ports: Vec<PortEntry>,
    /// Indexed by `PortValue::match_id`: the ids of the rules that allow (sorted).
    pub match_sets: Vec<Vec<String>>,
    /// Number of address classes.
    pub classes: u32,
    /// Rules of this direction in the policy, including those that allow nothing.
    pub rules: usize,
}

/// Both directions of one interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompiledInterface {
    /// `eni-…`.
    pub interface_id: String,
    /// Inbound maps.
    pub ingress: MapImage,
    /// Outbound maps.
    pub egress: MapImage,
}

impl CompiledInterface {
    /// The image of one direction.
    pub fn image(&self, direction: Direction) -> &MapImage {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Compiles both directions of an interface's policy.
pub fn compile(policy: &InterfacePolicy, limits: &Limits) -> Result<CompiledInterface, CompileError> {
    let ingress = compile_direction(policy, Direction::Ingress, limits)?;
    let egress = compile_direction(policy, Direction::Egress, limits)?;
    Ok(CompiledInterface { interface_id: policy.interface_id.clone(), ingress, egress })
}

/// Compiles one direction.
pub fn compile_direction(
    policy: &InterfacePolicy,
    direction: Direction,
    limits: &Limits,
) -> Result<MapImage, CompileError> {
    let too_large = |resource, count, limit| CompileError::TooLarge {
        interface: policy.interface_id.clone(),
        direction,
        resource,
        count,
        limit,
    };
    let rules = policy.rules(direction);
    let addresses = closure::classify(rules, &policy.exempt);
    let max_prefixes = limits.max_prefixes_per_family;
    if addresses.v4.len() > max_prefixes {
        return Err(too_large(Resource::Ipv4Prefixes, addresses.v4.len(), max_prefixes));
    }
    if addresses.v6.len() > max_prefixes {
        return Err(too_large(Resource::Ipv6Prefixes, addresses.v6.len(), max_prefixes));
    }
    let (ids, rank) = id_ranks(rules);
    let untracked = untracked::Untracked::new(policy, direction);
    let input = ports::Input {
        rules,
        class_sets: &addresses.classes.sets,
        class_families: &addresses.classes.families,
        untracked: &untracked,
    };
    let built = ports::build(&input, &rank, limits.max_port_entries, limits.max_match_sets);
    let table = built.map_err(|overflow| match overflow {
        ports::Overflow::Entries(n) => too_large(Resource::PortEntries, n, limits.max_port_entries),
        ports::Overflow::Sets(n) => too_large(Resource::MatchSets, n, limits.max_match_sets),
    })?;
    let match_sets: Vec<Vec<String>> = table
        .sets
        .iter()
        .map(|set| set.iter().filter_map(|&i| ids.get(i as usize)).map(|id| (*id).to_owned()).collect())
        .collect();
    let mut port_entries: Vec<PortEntry> = table
        .entries
        .iter()
        .map(|e| PortEntry {
            prefix_len: e.prefix_len,
            key: e.key,
            value: PortValue { match_id: e.set, flags: e.flags },
        })
        .collect();
    port_entries.sort_unstable_by_key(|e| (e.key, e.prefix_len));

    let image = MapImage {
        addr4: addresses.v4,
        addr6: addresses.v6,
        ports: port_entries,
        match_sets,
        classes: u32::try_from(addresses.classes.sets.len()).unwrap_or(u32::MAX),
        rules: rules.len(),
    };
    tracing::debug!(
        interface = %policy.interface_id,
        direction = direction.as_str(),
        prefixes_v4 = image.addr4.len(),
        prefixes_v6 = image.addr6.len(),
        classes = image.classes,
        port_entries = image.ports.len(),
        match_sets = image.match_sets.len(),
        "compiled"
    );
    Ok(image)
}

/// The distinct rule ids, sorted, and the rank of each rule's id among them.
///
/// Match sets are sets of rule *ids*: numbering rules by the rank of their id lets
/// two rules that share an id (which the resolver should not produce) share a set,
/// and keeps every set sorted by id.
fn id_ranks(rules: &[ResolvedRule]) -> (Vec<&str>, Vec<u32>) {
    let mut ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rank = rules
        .iter()
        .map(|r| {
            ids.binary_search(&r.id.as_str()).ok().and_then(|i| u32::try_from(i).ok()).unwrap_or(u32::MAX)
        })
        .collect();
    (ids, rank)
}

#[cfg(test)]
mod tests;
