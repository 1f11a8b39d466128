//! The one error type of the crate.

use std::path::PathBuf;

use aya::{EbpfError, maps::MapError, programs::ProgramError};

/// What can go wrong between the embedded object and an enforcing link.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The object could not be loaded (maps created, pinned maps opened, relocations).
    #[error("loading the eBPF object")]
    Load(#[source] EbpfError),
    /// The object lacks a map the agent needs (an object and agent of different builds).
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    /// The object lacks a program.
    #[error("the eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    /// A map could not be read or written.
    #[error("map `{map}`")]
    Map {
        /// Map name.
        map: &'static str,
        /// What the kernel said.
        #[source]
        source: MapError,
    },
    /// The verifier rejected a program, or the kernel refused to load it.
    #[error("filling the policy map `{map}`")]
    Fill {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("loading the program `{program}` into the kernel (verifier)")]
    Verifier {
        /// The program's name.
        program: &'static str,
        /// What the kernel said.
        #[source]
        source: ProgramError,
    },
    /// The kernel's information about the program could not be read.
    #[error("reading the program's kernel information")]
    ProgramInfo(#[source] ProgramError),
    /// `BPF_PROG_TEST_RUN` failed (a frame shorter than an Ethernet header, for one).
    #[error("BPF_PROG_TEST_RUN on a {len}-byte frame")]
    TestRun {
        /// Frame length.
        len: usize,
        /// What the kernel said.
        #[source]
        source: ProgramError,
    },
    /// The counters did not move the way one test run moves them.
    #[error("cannot tell the outcome of the test run from the counters: {0}")]
    Counters(String),
    /// Attaching to a link failed.
    #[error("attaching {hook} to {link} ({mode})")]
    Attach {
        /// `"XDP"` or `"TC egress"`.
        hook: &'static str,
        /// Link name.
        link: String,
        /// Requested mode.
        mode: &'static str,
        /// What the kernel said (boxed: the largest of the variants).
        #[source]
        source: Box<ProgramError>,
    },
    /// Replacing a program on a link failed.
    #[error("replacing the {hook} program on {link}")]
    Replace {
        /// `"XDP"` or `"TC egress"`.
        hook: &'static str,
        /// Link name.
        link: String,
        /// What the kernel said.
        #[source]
        source: ProgramError,
    },
    /// Detaching from a link failed.
    #[error("detaching {hook} from {link}")]
    Detach {
        /// `"XDP"`, `"TC egress"` or `"clsact qdisc"`.
        hook: &'static str,
        /// Link name.
        link: String,
        /// What the kernel said.
        #[source]
        source: ProgramError,
    },
    /// The link's `clsact` qdisc could not be created or inspected.
    #[error("setting up the clsact qdisc of {link}")]
    Qdisc {
        /// Link name.
        link: String,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// The program is attached already (one program, one link).
    #[error("the program is attached to {0} already")]
    AlreadyAttached(String),
    /// The operation needs an attached program.
    #[error("the program is not attached")]
    NotAttached,
    /// The directory for shared pinned maps could not be created.
    #[error("creating the pin directory {path}")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
    /// A link could not be pinned, or a pinned link could not be opened or adopted.
    #[error("pinned link {path}: {what}")]
    Pin {
        /// The pin.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}

impl DataplaneError {
    pub(crate) fn map(map: &'static str) -> impl FnOnce(MapError) -> Self {
        move |source| DataplaneError::Map { map, source }
    }

    pub(crate) fn fill(map: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| DataplaneError::Fill { map, source }
    }
}
