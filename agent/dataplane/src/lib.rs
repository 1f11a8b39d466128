//! sgmirror's kernel side, seen from userspace: the embedded programs (built from
//! `ebpf/programs` by `build.rs`) — XDP for a link's inbound rules, TC for its
//! outbound rules, sharing one flow table — their loader, attaching and replacing
//! them on a link, their counters and flow table, and the frames to run them on with
//! `BPF_PROG_TEST_RUN`, and the drop log and flow-table counters.
//!
//! ```no_run
//! # fn demo(compiled: &sgmirror_policy::compile::CompiledInterface) -> Result<(), sgmirror_dataplane::DataplaneError> {
//! use sgmirror_dataplane::{LoadOptions, TcAttachMode, XdpAttachMode, load};
//! let mut program = load(compiled, &LoadOptions::default())?; // verified, maps filled
//! program.attach("eth0", XdpAttachMode::Auto, TcAttachMode::Auto)?;
//! let counters = program.stats()?;
//! let flows = program.flow_count()?;
//! let dropped = program.read_drop_records(1024)?; // empty unless `drop_log_rate` > 0
//! # Ok(()) }
//! ```

mod attach;
mod batch;
mod droplog;
mod error;
mod flowstats;
pub mod frame;
mod loader;
mod pins;
mod qdisc;
pub use qdisc::has_clsact;
mod stats;
mod testrun;

pub use attach::{Attached, AttachedMode, TcAttachMode, TcMode, XdpAttachMode};
pub use batch::update_batch;
pub use droplog::DropLogCounters;
pub use error::DataplaneError;
pub use flowstats::FlowCounters;
pub use frame::{FrameOptions, Layout};
pub use loader::{
    DEFAULT_FLOW_CAPACITY, LoadOptions, LoadedProgram, Mode, SHARED_MAPS, VerifierReport, load,
};
pub use pins::{
    PinnedLinks, TCX_LINK_PIN, XDP_LINK_PIN, has_pinned_links, pinned_links, pinned_stats, unpin_links,
};
pub use stats::{DIRECTION_NAMES, Stats, VERDICT_NAMES};
pub use testrun::{KernelDecision, Observation, model_reason, tc_action, xdp_action};

/// The kernel programs: the ELF object `build.rs` compiled from `ebpf/programs`.
pub fn object() -> &'static [u8] {
    static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sgmirror-ebpf.o"));
    OBJECT
}
