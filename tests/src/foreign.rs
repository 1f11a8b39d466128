//! Programs of "another tool": a minimal XDP program (XDP_PASS) attached through
//! netlink from a pin, as `ip link set dev X xdp pinned PATH` does, and a minimal TCX
//! egress program (TCX_NEXT: hand the packet on) held by a `bpf_link`. Both are built
//! from raw instructions with the `bpf(2)` syscall, so the test needs no object file.
//! Dropping them detaches and unloads them.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use crate::sh;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_TCX_EGRESS: u32 = 47;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    // SAFETY: bpf(2) with a zero-padded attribute buffer of the size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn put(attr: &mut [u8; 128], offset: usize, bytes: &[u8]) {
    attr[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// Loads `r0 = ret; exit` as a program of `prog_type` named `name`.
fn load(prog_type: u32, ret: i32, name: &str, expected_attach_type: u32) -> OwnedFd {
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // mov r0, imm
    insns[4..8].copy_from_slice(&ret.to_le_bytes());
    insns[8] = 0x95; // exit
    let license = c"GPL";
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &prog_type.to_le_bytes());
    put(&mut attr, 4, &2u32.to_le_bytes());
    put(&mut attr, 8, &(insns.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_le_bytes());
    let mut prog_name = [0u8; 16];
    prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    put(&mut attr, 48, &prog_name);
    put(&mut attr, 68, &expected_attach_type.to_le_bytes());
    bpf(BPF_PROG_LOAD, &mut attr).unwrap_or_else(|e| panic!("loading the foreign program {name}: {e}"))
}

/// A foreign XDP program attached (generic mode) to a link through netlink.
pub struct ForeignXdp {
    link: String,
    pin: PathBuf,
}

impl ForeignXdp {
    /// Attaches `xdp_foreign` (it passes every packet) to `link`.
    pub fn attach(link: &str) -> ForeignXdp {
        let fd = load(BPF_PROG_TYPE_XDP, 2, "xdp_foreign", 0);
        let pin = PathBuf::from(format!("/sys/fs/bpf/sgmirror-test-foreign-{}", crate::unique_suffix()));
        let path = std::ffi::CString::new(pin.display().to_string()).unwrap();
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &(path.as_ptr() as u64).to_le_bytes());
        put(&mut attr, 8, &(fd.as_raw_fd() as u32).to_le_bytes());
        bpf(BPF_OBJ_PIN, &mut attr).unwrap_or_else(|e| panic!("pinning the foreign program: {e}"));
        let foreign = ForeignXdp { link: link.to_owned(), pin };
        sh("ip", &["link", "set", "dev", link, "xdpgeneric", "pinned", &foreign.pin.display().to_string()]);
        foreign
    }
}

impl Drop for ForeignXdp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pin);
        // Only if it is still ours: never remove what replaced it.
        let out = std::process::Command::new("ip").args(["-d", "link", "show", "dev", &self.link]).output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("xdp_foreign")) {
            let _ = std::process::Command::new("ip")
                .args(["link", "set", "dev", &self.link, "xdpgeneric", "off"])
                .output();
        }
    }
}

/// A foreign TCX egress program (`tcx_foreign`, hands every packet on), attached by
/// a `bpf_link` this value holds.
pub struct ForeignTcx {
    _link: OwnedFd,
    _prog: OwnedFd,
}

impl ForeignTcx {
    /// Attaches it to the link with index `ifindex`.
    pub fn attach(ifindex: u32) -> ForeignTcx {
        let prog = load(BPF_PROG_TYPE_SCHED_CLS, -1, "tcx_foreign", BPF_TCX_EGRESS);
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &(prog.as_raw_fd() as u32).to_le_bytes());
        put(&mut attr, 4, &ifindex.to_le_bytes());
        put(&mut attr, 8, &BPF_TCX_EGRESS.to_le_bytes());
        let link = bpf(BPF_LINK_CREATE, &mut attr)
            .unwrap_or_else(|e| panic!("attaching the foreign TCX program: {e}"));
        ForeignTcx { _link: link, _prog: prog }
    }
}

/// The index of `link` in this namespace.
pub fn ifindex(link: &str) -> u32 {
    let name = std::ffi::CString::new(link).unwrap();
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no link {link}");
    index
}
