//! Prefix-list entries cached by (id, version).
//!
//! A list's entries change only with its `Version`, and a list can hold 1 000 entries
//! (10 pages of `GetManagedPrefixListEntries`), so a refresh asks only
//! `DescribeManagedPrefixLists` (one call for every list) and fetches entries only for
//! lists whose version moved.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::PrefixListEntry;

/// id → (version, entries).
#[derive(Clone, Debug, Default)]
pub struct PrefixListCache {
    lists: BTreeMap<String, (i64, Vec<PrefixListEntry>)>,
}

impl PrefixListCache {
    /// The cached entries of `id` when they are of `version`. A list without a version
    /// is never served from the cache.
    pub fn get(&self, id: &str, version: Option<i64>) -> Option<&[PrefixListEntry]> {
        let version = version?;
        match self.lists.get(id) {
            Some((v, entries)) if *v == version => Some(entries),
            _ => None,
        }
    }

    /// Files `entries` under (id, version); without a version nothing is kept.
    pub fn insert(&mut self, id: &str, version: Option<i64>, entries: Vec<PrefixListEntry>) {
        if let Some(version) = version {
            self.lists.insert(id.to_owned(), (version, entries));
        }
    }

    /// Forgets the lists no rule references any more, so the cache stays bounded.
    pub fn retain(&mut self, ids: &[String]) {
        self.lists.retain(|id, _| ids.contains(id));
    }

    /// Number of cached lists.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cidr: &str) -> PrefixListEntry {
        PrefixListEntry::builder().cidr(cidr).build()
    }

    #[test]
    fn served_only_for_the_same_version() {
        let mut cache = PrefixListCache::default();
        cache.insert("pl-1", Some(3), vec![entry("10.0.0.0/8")]);
        assert_eq!(cache.get("pl-1", Some(3)).unwrap().len(), 1);
        assert!(cache.get("pl-1", Some(4)).is_none());
        assert!(cache.get("pl-1", None).is_none());
        assert!(cache.get("pl-2", Some(3)).is_none());
        cache.insert("pl-1", Some(4), vec![]);
        assert!(cache.get("pl-1", Some(3)).is_none());
        assert_eq!(cache.get("pl-1", Some(4)).unwrap().len(), 0);
    }

    #[test]
    fn unversioned_lists_are_not_kept_and_retain_evicts() {
        let mut cache = PrefixListCache::default();
        cache.insert("pl-1", None, vec![entry("10.0.0.0/8")]);
        assert!(cache.is_empty());
        cache.insert("pl-1", Some(1), vec![]);
        cache.insert("pl-2", Some(1), vec![]);
        cache.retain(&["pl-2".to_owned()]);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("pl-2", Some(1)).is_some());
    }
}
