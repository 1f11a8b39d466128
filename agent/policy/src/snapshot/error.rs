//! The one error type of snapshot parsing: a JSON path and what is wrong there.

/// A snapshot that cannot be used, with the place in the document that says why.
///
/// Displayed as `<json path>: <problem>`, e.g.
/// `$.SecurityGroupRules[3].FromPort: FromPort 443 is greater than ToPort 80`. The path
/// uses `$` for the root, `.Key` for object members and `[index]` for array elements,
/// so a user can find the spot with `jq` or an editor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct SnapshotError {
    path: String,
    problem: String,
}

impl SnapshotError {
    /// An error at `path` (`$`, `$.Key`, `$.Key[0]`, …).
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        SnapshotError { path: path.into(), problem: problem.into() }
    }

    /// Where in the document: `$.SecurityGroups[0].IpPermissions[1].FromPort`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong there, without the path.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}
