//! Attaching, replacing and detaching on a real link: a veth pair in a network
//! namespace private to the test thread. The program on the link is read back with
//! `ip -d -j link show`, as an operator would. Needs root and `ip` (iproute2).

mod common;

use std::process::Command;

use common::*;
use sgmirror_dataplane::{AttachedMode, DataplaneError, LoadedProgram, Mode, XdpAttachMode};

/// Moves the calling thread into a new, empty network namespace with one veth pair
/// (`sgm0` ⇄ `sgm1`, both up). The namespace disappears with the thread.
fn private_veth() {
    // SAFETY: unshare only changes the calling thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    for args in [
        &["link", "add", "sgm0", "type", "veth", "peer", "name", "sgm1"][..],
        &["link", "set", "sgm0", "up"],
        &["link", "set", "sgm1", "up"],
    ] {
        let status = Command::new("ip").args(args).status().expect("running ip");
        assert!(status.success(), "ip {args:?}");
    }
}

/// The XDP program attached to `link` as (mode, program id), from iproute2.
fn attached(link: &str) -> Option<(String, u32)> {
    let out =
        Command::new("ip").args(["-d", "-j", "link", "show", "dev", link]).output().expect("running ip");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    let xdp = json.get(0)?.get("xdp")?;
    let mode = match xdp.get("mode")?.as_u64()? {
        1 => "native",
        2 => "generic",
        _ => "other",
    };
    let id = xdp.get("prog")?.get("id")?.as_u64()?;
    Some((mode.to_owned(), u32::try_from(id).ok()?))
}

fn program(port: u16) -> LoadedProgram {
    let policy = policy(vec![rule("sgr-web", tcp(port, port), &["0.0.0.0/0"])], &[]);
    load_policy(&policy, Mode::Enforce).0
}

#[test]
fn attach_replace_and_detach_on_a_veth() {
    private_veth();
    let mut current = program(80);
    assert_eq!(current.attach("sgm0", XdpAttachMode::Auto).expect("attach"), AttachedMode::Native);
    let first_id = current.program_id().unwrap();
    assert_eq!(attached("sgm0"), Some(("native".to_owned(), first_id)));
    assert_eq!(current.attached(), Some(("sgm0", AttachedMode::Native)));

    // One program per link: a second attach of the same program is refused.
    assert!(matches!(current.attach("sgm0", XdpAttachMode::Native), Err(DataplaneError::AlreadyAttached(_))));

    // A new generation takes the link over in one step.
    let previous = current.replace(program(443)).expect("replace");
    let second_id = current.program_id().unwrap();
    assert_ne!(first_id, second_id);
    assert_eq!(previous.program_id().unwrap(), first_id);
    assert_eq!(previous.attached(), None);
    assert_eq!(current.attached(), Some(("sgm0", AttachedMode::Native)));
    assert_eq!(attached("sgm0"), Some(("native".to_owned(), second_id)));
    // The old generation going away leaves the new one in place.
    drop(previous);
    assert_eq!(attached("sgm0"), Some(("native".to_owned(), second_id)));

    // Replacing needs an attached program, and a new generation that is not attached.
    let mut detached = program(22);
    assert!(matches!(detached.replace(program(23)), Err(DataplaneError::NotAttached)));

    current.detach().expect("detach");
    assert_eq!(attached("sgm0"), None);
}

#[test]
fn generic_mode_and_detach_on_drop() {
    private_veth();
    let mut p = program(80);
    assert_eq!(p.attach("sgm1", XdpAttachMode::Generic).expect("attach"), AttachedMode::Generic);
    assert_eq!(attached("sgm1"), Some(("generic".to_owned(), p.program_id().unwrap())));
    drop(p);
    assert_eq!(attached("sgm1"), None);
}

#[test]
fn an_unknown_link_is_an_error_without_fallback() {
    private_veth();
    let mut p = program(80);
    let err = p.attach("sgm-missing", XdpAttachMode::Auto).unwrap_err();
    assert!(matches!(err, DataplaneError::Attach { mode: "native", .. }), "{err:?}");
    assert_eq!(p.attached(), None);
}

#[test]
fn an_attached_program_judges_real_traffic() {
    // A frame sent into sgm1 arrives on sgm0, where the program counts it: the
    // attachment is live, not only listed.
    private_veth();
    let mut p = program(80);
    p.attach("sgm0", XdpAttachMode::Native).expect("attach");
    let frame =
        sgmirror_dataplane::frame::build(&tcp_packet("192.0.2.1", "10.0.0.5", 22), &Default::default());
    send_raw("sgm1", &frame);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let drops = p
            .stat(
                sgmirror_common::direction::INGRESS,
                sgmirror_common::verdict::DROP,
                sgmirror_common::reason::NO_RULE,
            )
            .unwrap();
        if drops.packets == 1 {
            assert_eq!(drops.bytes, frame.len() as u64);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the frame never reached the program");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends one Ethernet frame out of `link` through an AF_PACKET socket.
fn send_raw(link: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(link).unwrap();
    // SAFETY: plain socket syscalls on buffers that outlive the calls.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0);
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(sent, frame.len() as isize, "sendto: {error}");
    }
}
