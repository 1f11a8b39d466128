//! Attaching, replacing and detaching on a real link: a veth pair in a network
//! namespace private to the test thread. What is on the link is read back the way an
//! operator would see it: XDP with `ip -d -j link show`, TCX through the kernel's
//! TCX query, clsact filters with `tc -j filter show`. Needs root, `ip` and `tc`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use aya::programs::{SchedClassifier, TcAttachType};
use common::*;
use sgmirror_common::{direction, reason, verdict};
use sgmirror_dataplane::{
    Attached, AttachedMode, DataplaneError, LoadedProgram, Mode, TcAttachMode, TcMode, XdpAttachMode,
    has_clsact,
};
use sgmirror_policy::model::Direction;

/// The XDP program attached to `link` as (mode, program id), from iproute2.
fn attached_xdp(link: &str) -> Option<(String, u32)> {
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

/// The ids of the TCX egress programs of `link`.
fn tcx_egress(link: &str) -> Vec<u32> {
    let (_, programs) = SchedClassifier::query_tcx(link, TcAttachType::Egress).expect("TCX query");
    programs.iter().map(aya::programs::ProgramInfo::id).collect()
}

/// The clsact egress filters of `link` as (preference, handle, program id).
fn clsact_egress(link: &str) -> Vec<(u64, String, u32)> {
    let out = Command::new("tc")
        .args(["-j", "filter", "show", "dev", link, "egress"])
        .output()
        .expect("running tc");
    if !out.status.success() || out.stdout.is_empty() {
        return Vec::new();
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tc -j prints JSON");
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let options = f.get("options")?;
            let id = options.get("prog")?.get("id")?.as_u64()?;
            Some((
                f.get("pref")?.as_u64()?,
                options.get("handle")?.as_str()?.to_owned(),
                u32::try_from(id).ok()?,
            ))
        })
        .collect()
}

/// A policy allowing inbound and outbound TCP to `port` from/to anywhere (IPv4).
fn program(port: u16) -> LoadedProgram {
    let mut policy = policy(vec![rule("sgr-in", tcp(port, port), &["0.0.0.0/0"])], &[]);
    policy.egress = vec![egress_rule("sgr-out", tcp(port, port), &["0.0.0.0/0"])];
    load_policy(&policy, Mode::Enforce).0
}

/// Sends one Ethernet frame out of `link` (see [`RawSender::send`]).
fn send_raw(link: &str, frame: &[u8]) -> std::io::Result<()> {
    RawSender::new(link).send(frame)
}

/// Waits until the counter (direction, verdict, reason) of `p` reaches `packets`.
fn wait_for(p: &LoadedProgram, slot: (u32, u32, u32), packets: u64, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = p.stat(slot.0, slot.1, slot.2).unwrap();
        if c.packets >= packets {
            assert_eq!(c.packets, packets, "{what}: counted more than sent");
            return c.bytes;
        }
        assert!(Instant::now() < deadline, "{what}: the frame never reached the program");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both hooks enforce: a denied frame sent out of sgm0 is dropped by the TC program
/// (counted as egress), and one sent into sgm1 arrives at sgm0's XDP program.
fn check_enforces(p: &LoadedProgram, egress_drops_before: u64) {
    let out = sgmirror_dataplane::frame::build(&tcp_packet("10.0.0.5", "192.0.2.1", 22), &Default::default());
    let sent = send_raw("sgm0", &out);
    assert_eq!(sent.unwrap_err().raw_os_error(), Some(libc::ENOBUFS), "the sender sees the drop");
    let bytes =
        wait_for(p, (direction::EGRESS, verdict::DROP, reason::NO_RULE), egress_drops_before + 1, "egress");
    assert!(bytes >= out.len() as u64);
    let before = p.stat(direction::INGRESS, verdict::DROP, reason::NO_RULE).unwrap().packets;
    let inbound =
        sgmirror_dataplane::frame::build(&tcp_packet("192.0.2.1", "10.0.0.5", 22), &Default::default());
    send_raw("sgm1", &inbound).expect("sending into sgm1");
    wait_for(p, (direction::INGRESS, verdict::DROP, reason::NO_RULE), before + 1, "ingress");
}

#[test]
fn tcx_attach_replace_and_detach_on_a_veth() {
    private_veth();
    let mut current = program(80);
    let attached = current.attach("sgm0", XdpAttachMode::Auto, TcAttachMode::Tcx).expect("attach");
    assert_eq!(attached, Attached { xdp: AttachedMode::Native, tc: TcMode::Tcx });
    let (in1, out1) =
        (current.program_id(Direction::Ingress).unwrap(), current.program_id(Direction::Egress).unwrap());
    assert_eq!(attached_xdp("sgm0"), Some(("native".to_owned(), in1)));
    assert_eq!(tcx_egress("sgm0"), vec![out1]);
    assert_eq!(current.attached(), Some(("sgm0", attached)));
    assert!(!has_clsact("sgm0").unwrap(), "TCX needs no qdisc");
    check_enforces(&current, 0);

    // One attachment per program pair.
    assert!(matches!(
        current.attach("sgm0", XdpAttachMode::Native, TcAttachMode::Tcx),
        Err(DataplaneError::AlreadyAttached(_))
    ));

    // A new generation takes both hooks over.
    let previous = current.replace(program(443)).expect("replace");
    let (in2, out2) =
        (current.program_id(Direction::Ingress).unwrap(), current.program_id(Direction::Egress).unwrap());
    assert!(in1 != in2 && out1 != out2);
    assert_eq!(previous.attached(), None);
    assert_eq!(current.attached(), Some(("sgm0", attached)));
    assert_eq!(attached_xdp("sgm0"), Some(("native".to_owned(), in2)));
    assert_eq!(tcx_egress("sgm0"), vec![out2]);
    drop(previous);
    assert_eq!(tcx_egress("sgm0"), vec![out2], "the old generation going away leaves the new one");
    // The new generation enforces (STATS is private to each load here: it starts at 0).
    check_enforces(&current, 0);

    // Replacing needs an attached program, and a new generation that is not attached.
    let mut detached = program(22);
    assert!(matches!(detached.replace(program(23)), Err(DataplaneError::NotAttached)));

    current.detach().expect("detach");
    assert_eq!(attached_xdp("sgm0"), None);
    assert!(tcx_egress("sgm0").is_empty());
}

#[test]
fn clsact_fallback_attach_replace_and_detach_on_a_veth() {
    private_veth();
    let mut current = program(80);
    let attached = current.attach("sgm0", XdpAttachMode::Generic, TcAttachMode::Clsact).expect("attach");
    assert_eq!(attached, Attached { xdp: AttachedMode::Generic, tc: TcMode::Clsact });
    assert!(has_clsact("sgm0").unwrap(), "the clsact qdisc was created");
    assert!(tcx_egress("sgm0").is_empty(), "not TCX");
    let out1 = current.program_id(Direction::Egress).unwrap();
    let filters = clsact_egress("sgm0");
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert_eq!(filters[0].2, out1);
    check_enforces(&current, 0);

    // The filter is replaced in place: same preference and handle, new program.
    let previous = current.replace(program(443)).expect("replace");
    let out2 = current.program_id(Direction::Egress).unwrap();
    assert_ne!(out1, out2);
    let after = clsact_egress("sgm0");
    assert_eq!(after, vec![(filters[0].0, filters[0].1.clone(), out2)]);
    assert_eq!(
        attached_xdp("sgm0"),
        Some(("generic".to_owned(), current.program_id(Direction::Ingress).unwrap()))
    );
    drop(previous);
    assert_eq!(clsact_egress("sgm0").len(), 1);
    check_enforces(&current, 0);

    // Detach removes the filter and the qdisc created for it.
    current.detach().expect("detach");
    assert!(clsact_egress("sgm0").is_empty());
    assert!(!has_clsact("sgm0").unwrap(), "no leftover clsact qdisc");
    assert_eq!(attached_xdp("sgm0"), None);
}

#[test]
fn a_clsact_qdisc_that_was_there_stays_and_a_dropped_program_cleans_up() {
    private_veth();
    let status = Command::new("tc").args(["qdisc", "add", "dev", "sgm1", "clsact"]).status().unwrap();
    assert!(status.success());
    let mut theirs = program(80);
    theirs.attach("sgm1", XdpAttachMode::Generic, TcAttachMode::Clsact).expect("attach");
    theirs.detach().expect("detach");
    assert!(has_clsact("sgm1").unwrap(), "someone else's qdisc is left alone");
    assert!(clsact_egress("sgm1").is_empty());

    // Dropping an attached program detaches everything, the qdisc it created too.
    let mut ours = program(80);
    ours.attach("sgm0", XdpAttachMode::Generic, TcAttachMode::Clsact).expect("attach");
    assert!(has_clsact("sgm0").unwrap());
    drop(ours);
    assert!(!has_clsact("sgm0").unwrap());
    assert_eq!(attached_xdp("sgm0"), None);
}

#[test]
fn auto_modes_pick_native_xdp_and_tcx_here() {
    private_veth();
    let mut p = program(80);
    let attached = p.attach("sgm1", XdpAttachMode::Auto, TcAttachMode::Auto).expect("attach");
    // veth has native XDP, and this kernel (6.6+) has TCX.
    assert_eq!(attached, Attached { xdp: AttachedMode::Native, tc: TcMode::Tcx });
    drop(p);
    assert_eq!(attached_xdp("sgm1"), None);
    assert!(tcx_egress("sgm1").is_empty());
}

#[test]
fn an_unknown_link_is_an_error_that_leaves_nothing_behind() {
    private_veth();
    let mut p = program(80);
    let err = p.attach("sgm-missing", XdpAttachMode::Auto, TcAttachMode::Tcx).unwrap_err();
    assert!(matches!(err, DataplaneError::Attach { .. }), "{err:?}");
    assert_eq!(p.attached(), None);
    let err = p.attach("sgm-missing", XdpAttachMode::Auto, TcAttachMode::Clsact).unwrap_err();
    assert!(matches!(err, DataplaneError::Qdisc { .. }), "{err:?}");
    // A failing XDP attach after a successful TC attach undoes the TC attach.
    let mut q = program(80);
    q.attach("sgm0", XdpAttachMode::Native, TcAttachMode::Clsact).expect("attach");
    let mut r = program(80);
    let err = r.attach("sgm0", XdpAttachMode::Native, TcAttachMode::Tcx).unwrap_err();
    assert!(matches!(err, DataplaneError::Attach { hook: "XDP", .. }), "{err:?}");
    assert!(tcx_egress("sgm0").is_empty(), "the TCX link of the failed attach is gone");
    assert_eq!(clsact_egress("sgm0").len(), 1, "the first program's filter stays");
}

/// Runs `ip` with `args` in the calling thread's network namespace.
fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("running ip");
    assert!(status.success(), "ip {args:?}");
}

/// The thread id of the caller (to move a link into its network namespace).
fn gettid() -> i32 {
    // SAFETY: no arguments, no memory.
    unsafe { libc::gettid() }
}

#[test]
fn stateful_enforcement_on_real_tcp_and_ping() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    private_veth();
    // The peer: a thread in a network namespace of its own holding sgm1, with an echo
    // server; it reports back whether it could connect to us unsolicited.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<i32>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        // SAFETY: only this thread's namespace changes.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        ready_tx.send(gettid()).unwrap();
        go_rx.recv().unwrap();
        ip(&["addr", "add", "10.0.0.9/24", "dev", "sgm1"]);
        ip(&["addr", "add", "fd00:5e::9/64", "dev", "sgm1", "nodad"]);
        ip(&["link", "set", "sgm1", "up"]);
        ip(&["link", "set", "lo", "up"]);
        let listeners: Vec<TcpListener> = ["10.0.0.9:7777", "[fd00:5e::9]:7777"]
            .iter()
            .map(|a| TcpListener::bind(a).expect("bind"))
            .collect();
        go_rx.recv().unwrap();
        for l in &listeners {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).expect("write");
            }
        }
        // Unsolicited, to a port we listen on: must not get through.
        go_rx.recv().unwrap();
        let ours: SocketAddr = "10.0.0.5:7778".parse().unwrap();
        let got_through = TcpStream::connect_timeout(&ours, Duration::from_millis(700)).is_ok();
        // The namespace, and with it the veth pair, lives as long as this thread.
        ready_tx.send(i32::from(got_through)).unwrap();
        go_rx.recv().unwrap();
    });
    let tid = ready_rx.recv().unwrap();
    ip(&["link", "set", "sgm1", "netns", &tid.to_string()]);
    go_tx.send(()).unwrap();
    ip(&["addr", "add", "10.0.0.5/24", "dev", "sgm0"]);
    ip(&["addr", "add", "fd00:5e::5/64", "dev", "sgm0", "nodad"]);
    ip(&["link", "set", "sgm0", "up"]);
    ip(&["link", "set", "lo", "up"]);
    let _ours = TcpListener::bind("10.0.0.5:7778").expect("bind");

    // No inbound rules at all; everything out.
    let mut policy = policy(Vec::new(), &[]);
    policy.egress = vec![
        egress_rule("sgr-out4", sgmirror_policy::model::Protocol::All, &["0.0.0.0/0"]),
        egress_rule("sgr-out6", sgmirror_policy::model::Protocol::All, &["::/0"]),
    ];
    let (mut p, _) = load_with(&policy, &sgmirror_dataplane::LoadOptions::default());
    p.attach("sgm0", XdpAttachMode::Native, TcAttachMode::Tcx).expect("attach");
    std::thread::sleep(Duration::from_millis(200));
    go_tx.send(()).unwrap();

    for target in ["10.0.0.9:7777", "[fd00:5e::9]:7777"] {
        let addr: SocketAddr = target.parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect out");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Enough to be segmented (GSO/TSO skbs at TC egress).
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let writer = {
            let mut w = s.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                w.write_all(&data).unwrap();
                w.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("echo");
        writer.join().unwrap();
        assert!(back == data, "{target}: {} of {} bytes echoed", back.len(), data.len());
    }
    for target in ["10.0.0.9", "fd00:5e::9"] {
        let out = Command::new("ping").args(["-c", "2", "-W", "2", target]).output().unwrap();
        assert!(
            out.status.success(),
            "ping {target}: {}{}\n{:?}\n{:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            p.stats().unwrap(),
            p.flows().unwrap()
        );
    }
    go_tx.send(()).unwrap();
    let unsolicited_got_through = ready_rx.recv().unwrap() != 0;
    assert!(!unsolicited_got_through, "an unsolicited connection got in");

    let stats = p.stats().unwrap();
    let get = |d, v, r| stats.get(d, v, r).packets;
    assert!(get(direction::EGRESS, verdict::ALLOW, reason::RULE) >= 4, "{stats:?}");
    assert!(get(direction::INGRESS, verdict::ALLOW, reason::TRACKED) >= 20, "{stats:?}");
    assert!(get(direction::INGRESS, verdict::DROP, reason::NO_RULE) >= 1, "{stats:?}");
    assert_eq!(get(direction::EGRESS, verdict::DROP, reason::MALFORMED), 0, "{stats:?}");
    assert_eq!(get(direction::INGRESS, verdict::DROP, reason::MALFORMED), 0, "{stats:?}");
    assert!(p.flow_count().unwrap() >= 4);
    go_tx.send(()).unwrap();
    peer.join().unwrap();
}
