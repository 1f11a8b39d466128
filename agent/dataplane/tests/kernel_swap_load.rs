//! Atomic policy swap under load: while frames of a class both policies allow and a
//! class both deny stream into a veth, the link's programs are swapped between two
//! different policies 1 000 times. Every frame must see the whole old policy or the
//! whole new one — never a mix, never an empty map — so the programs' own counters
//! (shared by both generations through pinned maps) must show exactly as many
//! allowed frames as were sent of the allowed class and exactly as many drops as were
//! sent of the denied class. Flows are judged one by one (idle timeouts of 0), so
//! every frame goes through the policy maps. Needs root and `ip`.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use sgmirror_common::{direction, reason, verdict};
use sgmirror_dataplane::{LoadOptions, Mode, Stats, TcAttachMode, XdpAttachMode};

const SWAPS: usize = 1000;

fn ingress(stats: &Stats, v: u32) -> u64 {
    (0..reason::COUNT).map(|r| stats.get(direction::INGRESS, v, r).packets).sum()
}

#[test]
fn a_thousand_swaps_under_load_never_mix_or_empty_the_policy() {
    private_veth();
    let bpffs = private_bpffs();
    let opts = LoadOptions {
        mode: Mode::Enforce,
        shared_pin_dir: Some(bpffs.0.join("link")),
        timeouts: STATELESS,
        ..LoadOptions::default()
    };
    // Both allow UDP to 7000 from the peer and deny UDP to 7001; otherwise they
    // differ (prefixes, port ranges, an extra TCP rule), so each has its own maps.
    let a = policy(vec![rule("sgr-a", udp(7000, 7000), &["198.18.106.0/24"])], &[]);
    let b = policy(
        vec![
            rule("sgr-b1", udp(6990, 7000), &["198.18.106.0/25", "2001:db8:106::/64"]),
            rule("sgr-b2", tcp(443, 443), &["0.0.0.0/0"]),
        ],
        &[],
    );
    let (mut current, _) = load_with(&a, &opts);
    let (mut spare, _) = load_with(&b, &opts);
    current.attach("sgm0", XdpAttachMode::Native, TcAttachMode::Tcx).expect("attach");
    let before = current.stats().unwrap();

    let allowed = sgmirror_dataplane::frame::build(
        &udp_packet("198.18.106.2", "198.18.106.1", 40000, 7000),
        &Default::default(),
    );
    let denied = sgmirror_dataplane::frame::build(
        &udp_packet("198.18.106.2", "198.18.106.1", 40000, 7001),
        &Default::default(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    // A new thread inherits this thread's network namespace.
    let sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            let socket = RawSender::new("sgm1");
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..8 {
                    if socket.send(&allowed).is_ok() {
                        sent[0].fetch_add(1, Ordering::Relaxed);
                    }
                    if socket.send(&denied).is_ok() {
                        sent[1].fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Paced below what the veth queue holds, so nothing is lost before
                // the program sees it.
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let sent_at_start = sent[0].load(Ordering::Relaxed);
    for _ in 0..SWAPS {
        let previous = current.replace(spare).expect("swap");
        spare = previous;
        std::thread::sleep(Duration::from_micros(500));
    }
    let swap_time = started.elapsed();
    let during = sent[0].load(Ordering::Relaxed) - sent_at_start;
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let (sent_allowed, sent_denied) = (sent[0].load(Ordering::Relaxed), sent[1].load(Ordering::Relaxed));

    // Wait for the last frames to be counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        let got = current.stats().unwrap().since(&before);
        if ingress(&got, verdict::ALLOW) + ingress(&got, verdict::DROP) >= sent_allowed + sent_denied
            || Instant::now() > deadline
        {
            break got;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "{SWAPS} swaps in {swap_time:?}; {during} allowed frames sent during the swaps; \
         {sent_allowed} allowed and {sent_denied} denied in all"
    );
    assert!(during >= 1000, "too little traffic during the swaps: {during}");
    assert_eq!(
        ingress(&got, verdict::DROP),
        sent_denied,
        "drops = denied frames sent (no allowed frame dropped)"
    );
    assert_eq!(
        got.get(direction::INGRESS, verdict::DROP, reason::NO_RULE).packets,
        sent_denied,
        "every drop is for want of a rule"
    );
    assert_eq!(
        ingress(&got, verdict::ALLOW),
        sent_allowed,
        "allows = allowed frames sent (no denied frame allowed)"
    );
    assert_eq!(
        got.get(direction::INGRESS, verdict::ALLOW, reason::RULE).packets,
        sent_allowed,
        "every allowed frame was allowed by a rule"
    );
    // Both generations took turns on the link.
    assert_ne!(current.program_id(sgmirror_policy::model::Direction::Ingress).unwrap(), 0);
    current.detach().expect("detach");
    drop(spare);
}
