//! Generations of one link share `STATS` and `FRAGS` through pinned maps, and only
//! those: a new policy does not lose the counters or the fragments in flight. Uses a
//! bpffs mounted in a mount namespace private to the test thread. Needs root.

mod common;

use common::*;
use sgmirror_common::{direction, names, reason, verdict};
use sgmirror_dataplane::{FrameOptions, LoadOptions, Mode, frame, load, xdp_action};
use sgmirror_policy::compile::{Limits, compile};
use sgmirror_policy::model::Fragment;

/// A bpffs mounted for this thread only; unmounted and removed on drop.
struct PrivateBpffs(std::path::PathBuf);

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: unmounts our own mount, in our own mount namespace.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Mounts a fresh bpffs, visible to this thread only.
fn private_bpffs() -> PrivateBpffs {
    // SAFETY: unshare and mount only affect the calling thread's mount namespace.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare: {}", std::io::Error::last_os_error());
        // Keep our mounts from propagating back to the host.
        let root = c"/";
        let rc = libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        assert_eq!(rc, 0, "making / private: {}", std::io::Error::last_os_error());
    }
    let dir = std::env::temp_dir().join(format!(
        "sgm-bpffs-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let target = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: as above.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    assert_eq!(rc, 0, "mounting bpffs: {}", std::io::Error::last_os_error());
    PrivateBpffs(dir)
}

#[test]
fn a_new_generation_keeps_counters_and_fragments_but_not_the_policy() {
    let bpffs = private_bpffs();
    let pins = bpffs.0.join("link-sgm0");
    let opts = LoadOptions { mode: Mode::Enforce, shared_pin_dir: Some(pins.clone()) };
    let web = policy(vec![rule("sgr-web", tcp(80, 80), &["0.0.0.0/0"])], &[]);
    let ssh = policy(vec![rule("sgr-ssh", tcp(22, 22), &["0.0.0.0/0"])], &[]);
    let first_gen = load(&compile(&web, &Limits::default()).unwrap().ingress, &opts).expect("load");
    assert!(pins.join(names::STATS).exists() && pins.join(names::FRAGS).exists());

    let first_fragment = first_of_web();
    let bytes = frame::build(&first_fragment, &FrameOptions::default());
    assert_eq!(first_gen.test_run(&bytes).unwrap(), xdp_action::PASS);

    let second_gen = load(&compile(&ssh, &Limits::default()).unwrap().ingress, &opts).expect("load");
    // The counters carried over.
    let rule_pass = second_gen.stat(direction::INGRESS, verdict::ALLOW, reason::RULE).unwrap();
    assert_eq!(rule_pass.packets, 1);
    // The first fragment allowed by the old policy admits its later fragment.
    let later = frame::build(&later_of(&first_fragment, 0x77), &FrameOptions::default());
    assert_eq!(second_gen.test_run(&later).unwrap(), xdp_action::PASS);
    assert_eq!(second_gen.stat(direction::INGRESS, verdict::ALLOW, reason::FRAGMENT).unwrap().packets, 1);
    // But the policy is the new one: port 80 is no longer allowed, and the rule hits
    // are those of the new image.
    let web_again = frame::build(&tcp_packet("192.0.2.1", "10.0.0.5", 80), &FrameOptions::default());
    assert_eq!(second_gen.test_run(&web_again).unwrap(), xdp_action::DROP);
    assert_eq!(second_gen.rule_hits().unwrap(), vec![0]);
    assert_eq!(first_gen.stats().unwrap(), second_gen.stats().unwrap(), "one STATS map");

    // Private maps (no pin directory) start from zero.
    let private = load(&compile(&web, &Limits::default()).unwrap().ingress, &LoadOptions::default()).unwrap();
    assert_eq!(private.stats().unwrap().packets(), 0);
    assert_eq!(private.test_run(&later).unwrap(), xdp_action::DROP);
}

fn first_of_web() -> sgmirror_policy::model::Packet {
    let p = tcp_packet("192.0.2.1", "10.0.0.5", 80);
    sgmirror_policy::model::Packet { fragment: Fragment::First(0x77), ..p }
}
