//! The pure half of sgmirror: everything between a snapshot document and the map
//! images the kernel programs read, with no kernel involved.
//!
//! `snapshot` (AWS CLI JSON) → `resolve` (per interface: prefix lists and referenced
//! groups expanded) → [`model::InterfacePolicy`] → `compile` (map images) — and, as the
//! oracle for all of it, `evaluator` (a naive reading of the AWS documentation).

pub mod compile;
pub mod evaluator;
pub mod exempt;
pub mod failsafe;
pub mod lint;
pub mod model;
pub mod resolve;
pub mod snapshot;
