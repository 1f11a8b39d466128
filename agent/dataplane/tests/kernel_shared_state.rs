//! Generations of one link share the maps of `SHARED_MAPS` (the counters, the
//! fragments and flows in flight, the clock, the drop log) through pinned maps, and
//! only those: a new policy does not lose the counters, the fragments in flight or
//! the tracked flows (the drop log has its own test in `kernel_drop_log.rs`). Uses a
//! bpffs mounted in a mount namespace private to the test thread. Needs root.

mod common;

use common::*;
use sgmirror_common::{direction, names, reason, verdict};
use sgmirror_dataplane::{FrameOptions, LoadOptions, SHARED_MAPS, frame, load, xdp_action};
use sgmirror_policy::compile::{Limits, compile};
use sgmirror_policy::model::{Direction, Fragment, Transport};

#[test]
fn a_new_generation_keeps_counters_and_fragments_but_not_the_policy() {
    let bpffs = private_bpffs();
    let pins = bpffs.0.join("link-sgm0");
    let opts = LoadOptions { shared_pin_dir: Some(pins.clone()), ..LoadOptions::default() };
    // Sources in 192.0.2.0/24 only: the web rule is tracked.
    let web = policy(vec![rule("sgr-web", tcp(80, 80), &["192.0.2.0/24"])], &[]);
    let ssh = policy(vec![rule("sgr-ssh", tcp(22, 22), &["192.0.2.0/24"])], &[]);
    let first_gen = load(&compile(&web, &Limits::default()).unwrap(), &opts).expect("load");
    for name in [names::STATS, names::FRAGS, names::FLOWS, names::CLOCK] {
        assert!(SHARED_MAPS.contains(&name));
    }
    for name in SHARED_MAPS {
        assert!(pins.join(name).exists(), "{name} is pinned");
    }

    let first_fragment = first_of_web();
    let bytes = frame::build(&first_fragment, &FrameOptions::default());
    assert_eq!(first_gen.test_run(&bytes, Direction::Ingress).unwrap(), xdp_action::PASS);
    assert_eq!(first_gen.flow_count().unwrap(), 1, "the allowed SYN created a flow");

    let second_gen = load(&compile(&ssh, &Limits::default()).unwrap(), &opts).expect("load");
    assert_eq!(second_gen.flows().unwrap(), first_gen.flows().unwrap(), "one FLOWS map");
    // The counters carried over.
    let rule_pass = second_gen.stat(direction::INGRESS, verdict::ALLOW, reason::RULE).unwrap();
    assert_eq!(rule_pass.packets, 1);
    // The first fragment allowed by the old policy admits its later fragment.
    let later = frame::build(&later_of(&first_fragment, 0x77), &FrameOptions::default());
    assert_eq!(second_gen.test_run(&later, Direction::Ingress).unwrap(), xdp_action::PASS);
    assert_eq!(second_gen.stat(direction::INGRESS, verdict::ALLOW, reason::FRAGMENT).unwrap().packets, 1);
    // The tracked connection survives the rule's removal: its next packet passes as
    // tracked under the new generation.
    let ack = Transport { tcp_flags: 0x10, ..Transport::default() };
    let web_again = frame::build(
        &tcp_packet("192.0.2.1", "10.0.0.5", 80),
        &FrameOptions { transport: ack, ..FrameOptions::default() },
    );
    assert_eq!(second_gen.test_run(&web_again, Direction::Ingress).unwrap(), xdp_action::PASS);
    assert_eq!(second_gen.stat(direction::INGRESS, verdict::ALLOW, reason::TRACKED).unwrap().packets, 1);
    // But the policy is the new one: a new connection to port 80 is no longer
    // allowed, and the rule hits are those of the new image.
    let other_source = frame::build(&tcp_packet("192.0.2.2", "10.0.0.5", 80), &FrameOptions::default());
    assert_eq!(second_gen.test_run(&other_source, Direction::Ingress).unwrap(), xdp_action::DROP);
    assert_eq!(second_gen.rule_hits(Direction::Ingress).unwrap(), vec![0]);
    assert_eq!(first_gen.stats().unwrap(), second_gen.stats().unwrap(), "one STATS map");

    // Private maps (no pin directory) start from zero.
    let private = load(&compile(&web, &Limits::default()).unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(private.stats().unwrap().packets(), 0);
    assert_eq!(private.flow_count().unwrap(), 0);
    assert_eq!(private.test_run(&later, Direction::Ingress).unwrap(), xdp_action::DROP);
}

fn first_of_web() -> sgmirror_policy::model::Packet {
    let p = tcp_packet("192.0.2.1", "10.0.0.5", 80);
    sgmirror_policy::model::Packet { fragment: Fragment::First(0x77), ..p }
}
