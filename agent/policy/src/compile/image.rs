//! Reading a [`MapImage`] the way the kernel does: the two LPM lookups, the decision
//! order, and the size of what gets loaded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Serialize, Serializer};
use sgmirror_common::{ADDR_EXEMPT, AddrValue, PORT_KEY_BITS, PORT_KEY_CLASS_BITS, PortKey};

use super::{MapImage, PortEntry};
use crate::exempt;
use crate::model::{Decision, Direction, Fragment, L4, Packet, Reason, Verdict, proto};

/// What the two lookups say about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLookup {
    /// The peer address carries `ADDR_EXEMPT`.
    Exempt,
    /// A port entry matched: these rules allow it.
    Allowed {
        /// Index into [`MapImage::match_sets`].
        match_id: u32,
        /// The entry's `FLAG_UNTRACKED_*` bits (test the packet's protocol with
        /// [`super::untracked_flag`]).
        flags: u32,
    },
    /// The address or the port lookup missed.
    NoRule,
}

/// Sizes of an image, for `sgmirror compile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// Rules of the direction in the policy.
    pub rules: usize,
    /// `ADDR4` entries.
    pub prefixes_v4: usize,
    /// `ADDR6` entries.
    pub prefixes_v6: usize,
    /// Address classes.
    pub classes: u32,
    /// `PORTS` entries.
    pub port_entries: usize,
    /// Distinct sets of allowing rules.
    pub match_sets: usize,
    /// Estimated kernel memory of the three tries, in bytes.
    pub map_bytes: usize,
}

/// Per-entry overhead of a kernel LPM trie node (`struct lpm_trie_node`, rounded up
/// with allocator slack), on top of the key and value.
const NODE_OVERHEAD: usize = 48;
/// An LPM key is a `u32` prefix length followed by the data.
const LPM_PREFIX_FIELD: usize = 4;

impl MapImage {
    /// The longest `ADDR4`/`ADDR6` match of `peer`.
    pub fn lookup_addr(&self, peer: IpAddr) -> Option<AddrValue> {
        match peer {
            IpAddr::V4(a) => longest_v4(&self.addr4, a),
            IpAddr::V6(a) => longest_v6(&self.addr6, a),
        }
    }

    /// The longest `PORTS` match of a full key.
    pub fn lookup_port(&self, key: PortKey) -> Option<&PortEntry> {
        let bits = key_bits(&key);
        (PORT_KEY_CLASS_BITS..=PORT_KEY_BITS).rev().find_map(|len| {
            let masked = bits_key(bits & key_mask(len));
            self.ports
                .binary_search_by(|e| (e.key, e.prefix_len).cmp(&(masked, len)))
                .ok()
                .and_then(|i| self.ports.get(i))
        })
    }

    /// The kernel's two lookups for a packet of protocol `proto` from/to `peer`, in the
    /// evaluator's order but without fragment or protocol-exemption handling.
    pub fn lookup(&self, peer: IpAddr, proto: u8, l4: L4) -> ImageLookup {
        let Some(addr) = self.lookup_addr(peer) else { return ImageLookup::NoRule };
        if addr.flags & ADDR_EXEMPT != 0 {
            return ImageLookup::Exempt;
        }
        match self.lookup_port(packet_key(addr.class, proto, l4)) {
            Some(entry) => ImageLookup::Allowed { match_id: entry.value.match_id, flags: entry.value.flags },
            None => ImageLookup::NoRule,
        }
    }

    /// The decision for one packet with no fragment history, in the evaluator's
    /// order: exempt address, later fragment (dropped: no history), protocol
    /// exemption, rules. Equal to [`crate::evaluator::verdict`] when the image is
    /// right.
    pub fn judge(&self, direction: Direction, packet: &Packet) -> Decision {
        let lookup = self.lookup(packet.peer(direction), packet.proto, packet.l4);
        let (verdict, reason, rules) = match lookup {
            ImageLookup::Exempt => (Verdict::Allow, Reason::Exempt, Vec::new()),
            _ if matches!(packet.fragment, Fragment::Later(_)) => {
                (Verdict::Drop, Reason::Fragment, Vec::new())
            }
            _ if exempt::is_protocol_exempt(packet) => (Verdict::Allow, Reason::Exempt, Vec::new()),
            ImageLookup::Allowed { match_id, .. } => match self.match_sets.get(match_id as usize) {
                Some(set) => (Verdict::Allow, Reason::Rule, set.clone()),
                None => (Verdict::Drop, Reason::NoRule, Vec::new()),
            },
            ImageLookup::NoRule => (Verdict::Drop, Reason::NoRule, Vec::new()),
        };
        Decision { verdict, reason, rules }
    }

    /// Estimated kernel memory of `ADDR4`, `ADDR6` and `PORTS` with these entries.
    pub fn map_bytes(&self) -> usize {
        let per = |data: usize, value: usize| LPM_PREFIX_FIELD + data + value + NODE_OVERHEAD;
        self.addr4.len() * per(4, size_of::<AddrValue>())
            + self.addr6.len() * per(16, size_of::<AddrValue>())
            + self.ports.len() * per(size_of::<PortKey>(), size_of::<sgmirror_common::PortValue>())
    }

    /// Sizes, for `sgmirror compile`.
    pub fn summary(&self) -> ImageSummary {
        ImageSummary {
            rules: self.rules,
            prefixes_v4: self.addr4.len(),
            prefixes_v6: self.addr6.len(),
            classes: self.classes,
            port_entries: self.ports.len(),
            match_sets: self.match_sets.len(),
            map_bytes: self.map_bytes(),
        }
    }
}

/// The `PORTS` key of a packet: TCP/UDP by destination port, ICMP/ICMPv6 by
/// `type << 8 | code`, anything else by protocol alone (port 0).
pub fn packet_key(class: u32, proto: u8, l4: L4) -> PortKey {
    let port = match (proto, l4) {
        (proto::TCP | proto::UDP, L4::Ports { dst, .. }) => dst,
        (proto::ICMP | proto::ICMPV6, L4::Icmp { icmp_type, code }) => {
            u16::from(icmp_type) << 8 | u16::from(code)
        }
        _ => 0,
    };
    PortKey::new(class, proto, port)
}

fn longest_v4(entries: &[(Ipv4Net, AddrValue)], addr: Ipv4Addr) -> Option<AddrValue> {
    (0..=32u8).rev().find_map(|len| {
        let net = Ipv4Net::new(addr, len).ok()?.trunc();
        entries.binary_search_by(|(n, _)| n.cmp(&net)).ok().map(|i| entries[i].1)
    })
}

fn longest_v6(entries: &[(Ipv6Net, AddrValue)], addr: Ipv6Addr) -> Option<AddrValue> {
    (0..=128u8).rev().find_map(|len| {
        let net = Ipv6Net::new(addr, len).ok()?.trunc();
        entries.binary_search_by(|(n, _)| n.cmp(&net)).ok().map(|i| entries[i].1)
    })
}

/// The 56 data bits of a key, most significant first, in the low bits of a u64.
fn key_bits(key: &PortKey) -> u64 {
    u64::from(u32::from_be_bytes(key.class)) << 24
        | u64::from(key.proto) << 16
        | u64::from(u16::from_be_bytes(key.port))
}

fn bits_key(bits: u64) -> PortKey {
    // Each narrowing keeps exactly the field's bits.
    PortKey::new((bits >> 24) as u32, (bits >> 16) as u8, bits as u16)
}

/// The mask of the first `len` of the 56 key bits.
fn key_mask(len: u32) -> u64 {
    let all = (1u64 << PORT_KEY_BITS) - 1;
    all & !(all >> len)
}

impl PortEntry {
    /// Whether the key has no bits set past `prefix_len` and the prefix fits the key
    /// (what the kernel's LPM trie expects).
    pub fn is_masked(&self) -> bool {
        let bits = key_bits(&self.key);
        self.prefix_len <= PORT_KEY_BITS && bits & !key_mask(self.prefix_len) == 0 && self.key._pad == 0
    }
}

/// One address entry as JSON.
#[derive(Serialize)]
struct AddrEntryView<N> {
    net: N,
    class: u32,
    flags: u32,
}

/// Serialises `ADDR4`/`ADDR6` as `[{"net": "10.0.0.0/8", "class": 1, "flags": 0}, …]`.
pub(super) fn serialize_addrs<N: Serialize + Copy, S: Serializer>(
    entries: &[(N, AddrValue)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(entries.iter().map(|(net, v)| AddrEntryView {
        net: *net,
        class: v.class,
        flags: v.flags,
    }))
}

impl Serialize for PortEntry {
    /// `{"prefix_len": 48, "class": 1, "proto": 6, "port": 1024, "match_id": 3, "flags": 0}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View {
            prefix_len: u32,
            class: u32,
            proto: u8,
            port: u16,
            match_id: u32,
            flags: u32,
        }
        View {
            prefix_len: self.prefix_len,
            class: u32::from_be_bytes(self.key.class),
            proto: self.key.proto,
            port: u16::from_be_bytes(self.key.port),
            match_id: self.value.match_id,
            flags: self.value.flags,
        }
        .serialize(serializer)
    }
}
