//! The failsafe list through the real programs (`BPF_PROG_TEST_RUN`): a failsafe
//! entry turns a drop into an allow counted as a hit of `failsafe-N`, in agreement
//! with the reference evaluator, and nothing else changes. Needs root.

mod common;

use common::*;
use sgmirror_common::{reason, verdict};
use sgmirror_dataplane::{FrameOptions, LoadedProgram, Mode, frame};
use sgmirror_policy::compile::CompiledInterface;
use sgmirror_policy::evaluator;
use sgmirror_policy::failsafe::{self, FailsafeEntry};
use sgmirror_policy::model::{Direction, InterfacePolicy, Packet, Verdict};

fn web_only() -> InterfacePolicy {
    policy(vec![rule("sgr-https", tcp(443, 443), &["0.0.0.0/0"])], &[])
}

/// (passed, counted reason, rules of the match set that moved), from the kernel.
fn kernel(
    program: &LoadedProgram,
    compiled: &CompiledInterface,
    direction: Direction,
    packet: &Packet,
) -> (bool, u32, Vec<String>) {
    let bytes = frame::build(packet, &FrameOptions::default());
    let seen = program.observe(&bytes, direction).expect("test run");
    let rules = seen
        .match_id
        .and_then(|id| compiled.image(direction).match_sets.get(id as usize))
        .cloned()
        .unwrap_or_default();
    (seen.verdict != verdict::DROP, seen.reason, rules)
}

#[test]
fn a_failsafe_source_passes_in_the_kernel_as_in_the_evaluator() {
    let ssh = tcp_packet("203.0.113.7", "10.0.0.5", 22);
    let other_source = tcp_packet("203.0.113.8", "10.0.0.5", 22);
    let other_port = tcp_packet("203.0.113.7", "10.0.0.5", 23);
    let https = tcp_packet("198.51.100.1", "10.0.0.5", 443);

    // Without the failsafe list, SSH from the administrator is dropped.
    let plain = web_only();
    let (program, compiled) = load_policy(&plain, Mode::Enforce);
    assert_eq!(kernel(&program, &compiled, Direction::Ingress, &ssh), (false, reason::NO_RULE, vec![]));
    drop(program);

    let mut guarded = web_only();
    let entries = [
        FailsafeEntry::parse("203.0.113.7/32", "tcp", Some("22"), Some("ingress")).unwrap(),
        FailsafeEntry::parse("198.51.100.9/32", "all", None, Some("egress")).unwrap(),
    ];
    failsafe::apply(&mut guarded, &entries);
    let (program, compiled) = load_policy(&guarded, Mode::Enforce);
    let cases = [
        (Direction::Ingress, ssh, true, vec!["failsafe-1".to_owned()]),
        (Direction::Ingress, other_source, false, vec![]),
        (Direction::Ingress, other_port, false, vec![]),
        (Direction::Ingress, https, true, vec!["sgr-https".to_owned()]),
        (
            Direction::Egress,
            udp_packet("10.0.0.5", "198.51.100.9", 5000, 53),
            true,
            vec!["failsafe-2".to_owned()],
        ),
        (Direction::Egress, udp_packet("10.0.0.5", "198.51.100.10", 5000, 53), false, vec![]),
    ];
    for (direction, packet, passes, rules) in cases {
        let (passed, counted, moved) = kernel(&program, &compiled, direction, &packet);
        assert_eq!((passed, &moved), (passes, &rules), "kernel on {packet:?}");
        assert_eq!(counted, if passes { reason::RULE } else { reason::NO_RULE });
        let model = evaluator::verdict(&guarded, direction, &packet);
        assert_eq!(model.verdict == Verdict::Allow, passes, "evaluator on {packet:?}");
        assert_eq!(model.rules, rules, "evaluator's rules on {packet:?}");
    }
}
