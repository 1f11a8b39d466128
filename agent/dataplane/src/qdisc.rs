//! The `clsact` qdisc that legacy TC filters hang off (kernels without TCX), created
//! and deleted over rtnetlink: sgmirror creates it when the link has none and deletes
//! it on detach only if it created it, so another user's clsact survives.
//!
//! aya can add a clsact qdisc but cannot tell "added" from "was there already"
//! (both end in its own error type) and cannot delete one, hence these two requests.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// `TC_H_CLSACT` (= `TC_H_INGRESS`): the clsact qdisc's parent.
const TC_H_CLSACT: u32 = 0xffff_fff1;
/// The clsact qdisc's handle, `ffff:`.
const CLSACT_HANDLE: u32 = 0xffff_0000;
const TCA_KIND: u16 = 1;

/// `struct tcmsg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcMsg {
    family: u8,
    _pad1: u8,
    _pad2: u16,
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

/// One request: header, tcmsg, and the `TCA_KIND` attribute `"clsact\0"` (padded).
#[repr(C)]
struct Request {
    header: libc::nlmsghdr,
    tc: TcMsg,
    kind_len: u16,
    kind_type: u16,
    kind: [u8; 8],
}

/// Creates the link's clsact qdisc; `Ok(false)` when it has one already.
pub fn add_clsact(ifindex: u32) -> io::Result<bool> {
    let flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL;
    match request(libc::RTM_NEWQDISC, flags, ifindex) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the link's clsact qdisc (and every filter on it). A link or qdisc that is
/// gone already is not an error.
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    match request(libc::RTM_DELQDISC, 0, ifindex) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)) => Ok(()),
        other => other,
    }
}

/// Whether the link `ifname` has a clsact qdisc (asks for it by handle).
pub fn has_clsact(ifname: &str) -> io::Result<bool> {
    match request(libc::RTM_GETQDISC, 0, ifindex(ifname)?) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends one clsact request and waits for the kernel's acknowledgement (or, for a
/// get, its answer).
fn request(kind: u16, flags: i32, ifindex: u32) -> io::Result<()> {
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: a plain socket call; the descriptor is owned right away.
    let fd =
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = Request {
        header: libc::nlmsghdr {
            nlmsg_len: size_of::<Request>() as u32,
            nlmsg_type: kind,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK | flags) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        tc: TcMsg {
            family: libc::AF_UNSPEC as u8,
            _pad1: 0,
            _pad2: 0,
            ifindex,
            handle: CLSACT_HANDLE,
            parent: TC_H_CLSACT,
            info: 0,
        },
        kind_len: 4 + 7,
        kind_type: TCA_KIND,
        kind: *b"clsact\0\0",
    };
    // SAFETY: sends the bytes of `req`, which is `repr(C)` without uninitialised
    // padding (every field is written, the struct has no implicit gaps).
    let sent = unsafe { libc::send(socket.as_raw_fd(), (&raw const req).cast(), size_of::<Request>(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: receives into `buf`, which outlives the call.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut off = 0;
        while off + size_of::<libc::nlmsghdr>() <= n {
            // SAFETY: the header lies within the received bytes; read unaligned.
            let header: libc::nlmsghdr = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let len = header.nlmsg_len as usize;
            if len < size_of::<libc::nlmsghdr>() || off + len > n {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
            }
            match i32::from(header.nlmsg_type) {
                libc::NLMSG_ERROR => {
                    let at = off + size_of::<libc::nlmsghdr>();
                    if at + 4 > n {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error"));
                    }
                    let code = i32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
                    return if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) };
                }
                // The answer to a get: the qdisc exists.
                t if t == i32::from(libc::RTM_NEWQDISC) && kind == libc::RTM_GETQDISC => return Ok(()),
                libc::NLMSG_DONE => return Ok(()),
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

/// The index of the link `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: reads the NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 { Err(io::Error::last_os_error()) } else { Ok(index) }
}
