//! Address classes: every distinct rule prefix (and every exempt address) gets the
//! *closure* of its rules — the rules of every prefix that contains it — because an
//! LPM lookup returns only the longest match (`prior-art.md` §2.1). Prefixes of one
//! family with the same closure share one class id; the families never share one,
//! because whether a flow is tracked depends on the family (`sg-semantics.md` §1.4)
//! and that is decided per `PORTS` entry, that is per class.
//!
//! The walk is O(n log n): sorted by (network, length), the rule prefixes that
//! contain the current one are exactly the stack of enclosing prefixes left after
//! popping those that do not contain it, and the deepest of them already holds the
//! closure of all the others.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sgmirror_common::{ADDR_EXEMPT, AddrValue};

use crate::model::ResolvedRule;

/// Rule sets (indices into the direction's rules, sorted) and their class ids.
#[derive(Debug, Default)]
pub struct Classes {
    /// The rule set of each class, indexed by class id.
    pub sets: Vec<Vec<u32>>,
    /// The address family (4 or 6) of each class, indexed by class id.
    pub families: Vec<u8>,
    index: HashMap<(u8, Vec<u32>), u32>,
}

impl Classes {
    /// The class of a rule set in a family, allocated on first sight.
    fn intern(&mut self, family: u8, set: Vec<u32>) -> u32 {
        let key = (family, set);
        if let Some(&class) = self.index.get(&key) {
            return class;
        }
        // Class ids are u32 in the kernel key; more sets than prefixes cannot exist,
        // and the prefix limit is far below u32::MAX.
        let class = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        self.sets.push(key.1.clone());
        self.families.push(family);
        self.index.insert(key, class);
        class
    }
}

/// The address entries of one direction, both families, and their classes.
#[derive(Debug, Default)]
pub struct AddressClasses {
    /// IPv4 entries, sorted by network.
    pub v4: Vec<(Ipv4Net, AddrValue)>,
    /// IPv6 entries, sorted by network.
    pub v6: Vec<(Ipv6Net, AddrValue)>,
    /// The rule set of each class.
    pub classes: Classes,
}

/// Marker in the (prefix, rule) list for an exempt address.
const EXEMPT_MARK: u32 = u32::MAX;

/// A prefix type the walk can handle.
trait Prefix: Copy + Ord {
    /// 4 or 6.
    const FAMILY: u8;
    fn encloses(&self, other: &Self) -> bool;
}

impl Prefix for Ipv4Net {
    const FAMILY: u8 = 4;
    fn encloses(&self, other: &Self) -> bool {
        self.contains(other)
    }
}

impl Prefix for Ipv6Net {
    const FAMILY: u8 = 6;
    fn encloses(&self, other: &Self) -> bool {
        self.contains(other)
    }
}

/// Classifies the peers of `rules` and the `exempt` addresses.
pub fn classify(rules: &[ResolvedRule], exempt: &[IpAddr]) -> AddressClasses {
    let mut v4: Vec<(Ipv4Net, u32)> = Vec::new();
    let mut v6: Vec<(Ipv6Net, u32)> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(EXEMPT_MARK - 1);
        for net in &rule.peers {
            match net.trunc() {
                IpNet::V4(n) => v4.push((n, index)),
                IpNet::V6(n) => v6.push((n, index)),
            }
        }
    }
    for addr in exempt {
        match *addr {
            IpAddr::V4(a) => v4.push((Ipv4Net::from(a), EXEMPT_MARK)),
            IpAddr::V6(a) => v6.push((Ipv6Net::from(a), EXEMPT_MARK)),
        }
    }
    let mut classes = Classes::default();
    let v4 = walk(v4, &mut classes);
    let v6 = walk(v6, &mut classes);
    AddressClasses { v4, v6, classes }
}

/// Sorts the (prefix, rule) pairs and assigns each distinct prefix its closure class.
fn walk<P: Prefix>(mut pairs: Vec<(P, u32)>, classes: &mut Classes) -> Vec<(P, AddrValue)> {
    pairs.sort_unstable();
    pairs.dedup();
    let mut out: Vec<(P, AddrValue)> = Vec::new();
    // Enclosing prefixes of the current one, outermost first, with their classes.
    let mut stack: Vec<(P, u32)> = Vec::new();
    // Many prefixes add the same rules under the same parent (the thousands of members
    // of one referenced group under a /0 rule): merge and hash each combination once.
    let mut derived: HashMap<(u32, Vec<u32>), u32> = HashMap::new();
    let mut i = 0;
    while i < pairs.len() {
        let net = pairs[i].0;
        let mut direct = Vec::new();
        let mut exempt = false;
        while i < pairs.len() && pairs[i].0 == net {
            match pairs[i].1 {
                EXEMPT_MARK => exempt = true,
                rule => direct.push(rule),
            }
            i += 1;
        }
        while stack.last().is_some_and(|(top, _)| !top.encloses(&net)) {
            stack.pop();
        }
        let class = match stack.last() {
            None => classes.intern(P::FAMILY, direct),
            Some(&(_, parent)) => {
                let inherited = &classes.sets[parent as usize];
                if direct.iter().all(|r| inherited.binary_search(r).is_ok()) {
                    parent
                } else if let Some(&class) = derived.get(&(parent, direct.clone())) {
                    class
                } else {
                    let class = classes.intern(P::FAMILY, merge(inherited, &direct));
                    derived.insert((parent, direct), class);
                    class
                }
            }
        };
        stack.push((net, class));
        let flags = if exempt { ADDR_EXEMPT } else { 0 };
        out.push((net, AddrValue { class, flags }));
    }
    out
}

/// The union of two sorted sets, sorted.
pub fn merge(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, PeerSource, Protocol};

    fn rule(peers: &[&str]) -> ResolvedRule {
        ResolvedRule {
            id: String::new(),
            group_id: String::new(),
            direction: Direction::Ingress,
            protocol: Protocol::All,
            source: PeerSource::Group(String::new()),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn set_of(c: &AddressClasses, value: AddrValue) -> &[u32] {
        &c.classes.sets[value.class as usize]
    }

    #[test]
    fn merge_is_a_sorted_union() {
        assert_eq!(merge(&[1, 3, 5], &[2, 3, 6, 7]), [1, 2, 3, 5, 6, 7]);
        assert_eq!(merge(&[], &[4]), [4]);
        assert_eq!(merge(&[4], &[]), [4]);
    }

    #[test]
    fn nested_prefixes_inherit_every_enclosing_rule() {
        let rules = [
            rule(&["0.0.0.0/0"]),
            rule(&["10.0.0.0/8"]),
            rule(&["10.1.0.0/16", "192.168.0.0/16"]),
            rule(&["10.2.0.0/16"]),
        ];
        let c = classify(&rules, &[]);
        let got: Vec<(String, Vec<u32>)> =
            c.v4.iter().map(|(n, v)| (n.to_string(), set_of(&c, *v).to_vec())).collect();
        let want = [
            ("0.0.0.0/0", vec![0]),
            ("10.0.0.0/8", vec![0, 1]),
            ("10.1.0.0/16", vec![0, 1, 2]),
            ("10.2.0.0/16", vec![0, 1, 3]),
            ("192.168.0.0/16", vec![0, 2]),
        ];
        let want: Vec<(String, Vec<u32>)> = want.iter().map(|(n, s)| ((*n).to_owned(), s.clone())).collect();
        assert_eq!(got, want);
        assert!(c.v4.iter().all(|(_, v)| v.flags == 0));
    }

    #[test]
    fn a_sibling_after_a_deep_branch_does_not_inherit_it() {
        let rules = [rule(&["10.0.0.0/8"]), rule(&["10.0.0.0/24"]), rule(&["10.0.1.0/24"])];
        let c = classify(&rules, &[]);
        let sets: Vec<&[u32]> = c.v4.iter().map(|(_, v)| set_of(&c, *v)).collect();
        assert_eq!(sets, [&[0][..], &[0, 1][..], &[0, 2][..]]);
    }

    #[test]
    fn same_closure_same_class_and_host_bits_are_ignored() {
        let rules = [rule(&["10.0.0.0/8", "10.1.0.0/16"]), rule(&["172.16.0.0/12", "192.168.1.9/24"])];
        let c = classify(&rules, &[]);
        assert_eq!(c.v4.len(), 4);
        assert_eq!(c.v4[0].1.class, c.v4[1].1.class, "10.1/16 adds nothing to 10/8");
        assert_eq!(c.v4[2].1.class, c.v4[3].1.class);
        assert_eq!(c.v4[3].0.to_string(), "192.168.1.0/24");
        assert_eq!(c.classes.sets.len(), 2);
    }

    #[test]
    fn exempt_addresses_get_a_flagged_host_entry_with_their_closure() {
        let rules = [rule(&["169.254.0.0/16", "169.254.169.254/32"]), rule(&["::/0"])];
        let exempt: Vec<IpAddr> = vec!["169.254.169.254".parse().unwrap(), "fd00:ec2::254".parse().unwrap()];
        let c = classify(&rules, &exempt);
        assert_eq!(c.v4.len(), 2);
        assert_eq!(c.v4[1].0.to_string(), "169.254.169.254/32");
        assert_eq!(c.v4[1].1.flags, ADDR_EXEMPT);
        assert_eq!(set_of(&c, c.v4[1].1), [0]);
        assert_eq!(c.v6.len(), 2);
        assert_eq!(c.v6[1].0.to_string(), "fd00:ec2::254/128");
        assert_eq!(c.v6[1].1.flags, ADDR_EXEMPT);
        assert_eq!(set_of(&c, c.v6[1].1), [1]);
        // Class ids are unique across the families.
        assert_ne!(c.v4[0].1.class, c.v6[0].1.class);
    }

    #[test]
    fn the_families_never_share_a_class() {
        // One rule, both families, the same closure: still two classes.
        let rules = [rule(&["0.0.0.0/0", "::/0"])];
        let c = classify(&rules, &[]);
        assert_eq!(c.classes.sets, [vec![0], vec![0]]);
        assert_eq!(c.classes.families, [4, 6]);
        assert_eq!(c.classes.families[c.v4[0].1.class as usize], 4);
        assert_eq!(c.classes.families[c.v6[0].1.class as usize], 6);
    }
}
