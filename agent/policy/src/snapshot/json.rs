//! A typed walk over a `serde_json::Value` that always knows its JSON path.
//!
//! The snapshot is read by hand rather than through `#[derive(Deserialize)]` because
//! every problem must name the exact place in the document, the AWS CLI's shapes are
//! loose (most keys optional, `null` sometimes printed for absent ones) and unknown
//! keys must be ignored. `null` counts as absent for optional keys.

use serde_json::{Map, Value};

use super::error::SnapshotError;

/// One value of the document and the path that leads to it.
#[derive(Clone, Debug)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: String,
}

/// An object of the document and the path that leads to it.
#[derive(Clone, Debug)]
pub(crate) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

/// How a value is named in "expected X, found Y" messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Node<'a> {
    /// The document's root, `$`.
    pub(crate) fn root(value: &'a Value) -> Self {
        Node { value, path: "$".to_owned() }
    }

    /// A value read on its own (see [`super::sections`]) that lives at `path`.
    pub(crate) fn at(value: &'a Value, path: String) -> Self {
        Node { value, path }
    }

    /// The JSON path of this value.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// An error about this value.
    pub(crate) fn error(&self, problem: impl Into<String>) -> SnapshotError {
        SnapshotError::new(self.path.clone(), problem)
    }

    fn expected(&self, what: &str) -> SnapshotError {
        self.error(format!("expected {what}, found {}", describe(self.value)))
    }

    /// This value as an object.
    pub(crate) fn object(&self) -> Result<Object<'a>, SnapshotError> {
        match self.value {
            Value::Object(map) => Ok(Object { map, path: self.path.clone() }),
            _ => Err(self.expected("an object")),
        }
    }

    /// This value as an array, each element with its own path.
    pub(crate) fn array(&self) -> Result<Vec<Node<'a>>, SnapshotError> {
        match self.value {
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node { value, path: format!("{}[{i}]", self.path) })
                .collect()),
            _ => Err(self.expected("an array")),
        }
    }

    /// This value as a string.
    pub(crate) fn string(&self) -> Result<&'a str, SnapshotError> {
        match self.value {
            Value::String(s) => Ok(s),
            _ => Err(self.expected("a string")),
        }
    }

    /// This value as a boolean.
    pub(crate) fn boolean(&self) -> Result<bool, SnapshotError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.expected("true or false")),
        }
    }

    /// This value as a whole number (range checks are the caller's).
    pub(crate) fn integer(&self) -> Result<i64, SnapshotError> {
        match self.value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(i),
                None if n.is_u64() => Err(self.error(format!("number {n} is out of range"))),
                None => Err(self.error(format!("expected a whole number, found {n}"))),
            },
            _ => Err(self.expected("a number")),
        }
    }
}

impl<'a> Object<'a> {
    /// The path of one of this object's members (present or not).
    pub(crate) fn key_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// An error about this object as a whole.
    pub(crate) fn error(&self, problem: impl Into<String>) -> SnapshotError {
        SnapshotError::new(self.path.clone(), problem)
    }

    /// An error about one member (present or not).
    pub(crate) fn error_at(&self, key: &str, problem: impl Into<String>) -> SnapshotError {
        SnapshotError::new(self.key_path(key), problem)
    }

    /// Whether the key is present and not `null`.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A member, `None` when absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<Node<'a>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Node { value, path: self.key_path(key) }),
        }
    }

    /// A member that must be present.
    pub(crate) fn require(&self, key: &str) -> Result<Node<'a>, SnapshotError> {
        self.get(key).ok_or_else(|| self.error_at(key, "missing"))
    }

    /// A required string member.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, SnapshotError> {
        self.require(key)?.string()
    }

    /// An optional string member.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>, SnapshotError> {
        self.get(key).map(|n| n.string()).transpose()
    }

    /// An optional whole-number member.
    pub(crate) fn opt_integer(&self, key: &str) -> Result<Option<i64>, SnapshotError> {
        self.get(key).map(|n| n.integer()).transpose()
    }

    /// An optional whole-number member from 0 to `u32::MAX`.
    pub(crate) fn opt_u32(&self, key: &str) -> Result<Option<u32>, SnapshotError> {
        match self.opt_integer(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| self.error_at(key, format!("{key} {v} is out of range: expected 0 or more"))),
        }
    }

    /// An optional array member; absent means empty.
    pub(crate) fn opt_array(&self, key: &str) -> Result<Vec<Node<'a>>, SnapshotError> {
        self.get(key).map_or_else(|| Ok(Vec::new()), |n| n.array())
    }

    /// An optional array member, told apart from an absent one.
    pub(crate) fn array_if_present(&self, key: &str) -> Result<Option<Vec<Node<'a>>>, SnapshotError> {
        self.get(key).map(|n| n.array()).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_keys_and_indices() {
        let value: Value = serde_json::json!({"A": [{"B": "x"}, {"B": 3}]});
        let root = Node::root(&value).object().unwrap();
        let items = root.opt_array("A").unwrap();
        assert_eq!(items[1].path(), "$.A[1]");
        let err = items[1].object().unwrap().string("B").unwrap_err();
        assert_eq!(err.to_string(), "$.A[1].B: expected a string, found a number");
        let err = items[0].object().unwrap().string("C").unwrap_err();
        assert_eq!(err.to_string(), "$.A[0].C: missing");
    }

    #[test]
    fn null_is_absent_and_floats_are_not_integers() {
        let value: Value = serde_json::json!({"N": null, "F": 1.5, "B": 1});
        let obj = Node::root(&value).object().unwrap();
        assert!(!obj.has("N"));
        assert_eq!(obj.opt_integer("N").unwrap(), None);
        assert!(obj.opt_integer("F").unwrap_err().problem().contains("whole number"));
        assert!(obj.require("B").unwrap().boolean().unwrap_err().problem().contains("true or false"));
    }
}
