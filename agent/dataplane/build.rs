//! Builds the kernel programs (`ebpf/programs`) for `bpfel-unknown-none` and copies
//! the object into `OUT_DIR`, where `src/object.rs` embeds it (how: `ebpf/build`).

use std::path::PathBuf;

use sgmirror_ebpf_build::{Crate, build_or_exit};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let programs = root.join("ebpf/programs");
    let common = root.join("ebpf/common");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("sgmirror-ebpf.o");
    let paths = [
        programs.join("src"),
        programs.join("Cargo.toml"),
        programs.join("Cargo.lock"),
        common.join("src"),
        common.join("Cargo.toml"),
    ];
    let krate =
        Crate { root: &root, dir: &programs, binary: "sgmirror-ebpf", target_subdir: "ebpf", object: &out };
    build_or_exit(&krate, &paths, "the eBPF programs");
}
