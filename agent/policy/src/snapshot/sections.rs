//! Reading the document's top level without turning all of it into one
//! `serde_json::Value` tree at once.
//!
//! A `Value` costs about 300 bytes per small object, so a snapshot whose prefix lists
//! hold 100 000 entries (3 MB of JSON) became 30 MB of tree, the largest part of the
//! agent's peak memory. The top level is read as raw JSON text per key instead; the
//! big arrays are then read one element at a time, each element as its own small
//! `Value` that is dropped once converted, with the same paths in errors.

use std::collections::BTreeMap;

use serde_json::{Map, Value, value::RawValue};

use super::{SnapshotError, invalid_json, json::Node};

/// Top-level keys read element by element rather than as one tree.
const STREAMED: &[&str] = &["PrefixLists"];

/// The document split in two: a tree of every top-level member except the
/// [`STREAMED`] ones, and those as raw text.
pub(crate) struct Sections<'a> {
    pub root: Value,
    streamed: BTreeMap<String, &'a RawValue>,
}

impl<'a> Sections<'a> {
    /// Splits `json`. A document that is not an object is returned whole as `root`, so
    /// that the usual checks name the problem with the usual words.
    pub(crate) fn split(json: &'a str) -> Result<Self, SnapshotError> {
        let members: BTreeMap<String, &'a RawValue> = match serde_json::from_str(json) {
            Ok(members) => members,
            Err(_) => {
                let root: Value = serde_json::from_str(json).map_err(|e| invalid_json(&e))?;
                return Ok(Sections { root, streamed: BTreeMap::new() });
            }
        };
        let mut root = Map::new();
        let mut streamed = BTreeMap::new();
        for (key, raw) in members {
            if STREAMED.contains(&key.as_str()) {
                streamed.insert(key, raw);
            } else {
                let value = serde_json::from_str(raw.get()).map_err(|e| invalid_json(&e))?;
                root.insert(key, value);
            }
        }
        Ok(Sections { root: Value::Object(root), streamed })
    }

    /// The raw text of a [`STREAMED`] member, if present.
    pub(crate) fn streamed(&self, key: &str) -> Option<&'a RawValue> {
        self.streamed.get(key).copied()
    }
}

/// Calls `each` with every element of the JSON array `raw` (at `path`); absent and
/// `null` are an empty array, anything else that is not an array is an error.
pub(crate) fn for_each_element(
    raw: Option<&RawValue>,
    path: &str,
    mut each: impl FnMut(Node<'_>) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let Some(raw) = raw else { return Ok(()) };
    let items: Vec<&RawValue> = match serde_json::from_str::<Option<Vec<&RawValue>>>(raw.get()) {
        Ok(items) => items.unwrap_or_default(),
        Err(_) => {
            // Not an array: let the tree walk say what it is instead.
            let value: Value = serde_json::from_str(raw.get()).map_err(|e| invalid_json(&e))?;
            Node::at(&value, path.to_owned()).array()?;
            return Ok(());
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let value: Value = serde_json::from_str(item.get()).map_err(|e| invalid_json(&e))?;
        each(Node::at(&value, format!("{path}[{i}]")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_members_are_kept_apart_and_read_in_order() {
        let s = Sections::split(r#"{"A": 1, "PrefixLists": [{"x": 1}, {"x": 2}]}"#).unwrap();
        assert_eq!(s.root, serde_json::json!({"A": 1}));
        let mut seen = Vec::new();
        for_each_element(s.streamed("PrefixLists"), "$.PrefixLists", |n| {
            seen.push(n.path().to_owned());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["$.PrefixLists[0]", "$.PrefixLists[1]"]);
    }

    #[test]
    fn null_and_absent_are_empty_and_other_types_are_errors() {
        let s = Sections::split(r#"{"PrefixLists": null}"#).unwrap();
        for_each_element(s.streamed("PrefixLists"), "$.PrefixLists", |_| panic!("no element")).unwrap();
        for_each_element(None, "$.PrefixLists", |_| panic!("no element")).unwrap();
        let s = Sections::split(r#"{"PrefixLists": {"a": 1}}"#).unwrap();
        let err = for_each_element(s.streamed("PrefixLists"), "$.PrefixLists", |_| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), "$.PrefixLists: expected an array, found an object");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_returned_whole() {
        let s = Sections::split("[1, 2]").unwrap();
        assert_eq!(s.root, serde_json::json!([1, 2]));
        assert!(Sections::split("{").is_err());
    }
}
