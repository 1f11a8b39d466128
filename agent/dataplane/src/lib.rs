//! sgmirror's kernel side, seen from userspace: the embedded XDP program (built from
//! `ebpf/programs` by `build.rs`), its loader, attaching and replacing it on a link,
//! its counters, and the frames to run it on with `BPF_PROG_TEST_RUN`.
//!
//! ```no_run
//! # fn demo(image: &sgmirror_policy::compile::MapImage) -> Result<(), sgmirror_dataplane::DataplaneError> {
//! use sgmirror_dataplane::{LoadOptions, XdpAttachMode, load};
//! let mut program = load(image, &LoadOptions::default())?; // verified, maps filled
//! program.attach("eth0", XdpAttachMode::Auto)?;
//! let counters = program.stats()?;
//! # Ok(()) }
//! ```

mod attach;
mod error;
pub mod frame;
mod loader;
mod stats;
mod testrun;

pub use attach::{AttachedMode, XdpAttachMode};
pub use error::DataplaneError;
pub use frame::{FrameOptions, Layout};
pub use loader::{LoadOptions, LoadedProgram, Mode, load};
pub use stats::{DIRECTION_NAMES, Stats, VERDICT_NAMES};
pub use testrun::{KernelDecision, Observation, model_reason, xdp_action};

/// The kernel programs: the ELF object `build.rs` compiled from `ebpf/programs`.
pub fn object() -> &'static [u8] {
    static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sgmirror-ebpf.o"));
    OBJECT
}
