//! Builds the reference programs (`ebpf/reference`) for `bpfel-unknown-none` and copies
//! the object into `OUT_DIR`, where `src/reference.rs` embeds it (how: `ebpf/build`).
//! The nested build writes to `<target>/ebpf-reference`, not the dataplane's
//! `<target>/ebpf`, so the two nested builds never wait on each other's lock.

use std::path::PathBuf;

use sgmirror_ebpf_build::{Crate, build_or_exit};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let programs = root.join("ebpf/reference");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("reference.o");
    let paths = [programs.join("src"), programs.join("Cargo.toml"), programs.join("Cargo.lock")];
    let krate = Crate {
        root: &root,
        dir: &programs,
        binary: "sgmirror-bench-ebpf",
        target_subdir: "ebpf-reference",
        object: &out,
    };
    build_or_exit(&krate, &paths, "the reference eBPF programs");
}
