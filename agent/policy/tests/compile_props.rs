//! Property tests: the compiled map images, read the way the kernel reads them
//! (`MapImage::judge`), agree with the reference evaluator on random policies and
//! random packets — verdict, reason and the exact list of allowing rules — and
//! their untracked flags agree with the evaluator's reading of AWS's rule.
//!
//! The generators are in `common/`.

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sgmirror_common::{FLAG_UNTRACKED_TCP, FLAG_UNTRACKED_UDP, PORT_KEY_CLASS_BITS};
use sgmirror_policy::compile::{self, CompileError, ImageLookup, Limits, MapImage, Resource};
use sgmirror_policy::evaluator::{self, FragmentMemory};
use sgmirror_policy::model::{Direction, Fragment, InterfacePolicy, L4, Packet, Reason, Verdict};

use common::{Targets, packet_for, policy, policy_and_packets};

// ---------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------

fn compile_ok(policy: &InterfacePolicy) -> compile::CompiledInterface {
    match compile::compile(policy, &Limits::default()) {
        Ok(c) => c,
        Err(e) => panic!("a small policy must compile: {e}"),
    }
}

/// The structural promises of an image: sorted unique keys, masked port keys,
/// classes and match ids in range, non-empty sorted match sets.
fn check_image(image: &MapImage) -> Result<(), TestCaseError> {
    prop_assert!(image.addr4.windows(2).all(|w| w[0].0 < w[1].0));
    prop_assert!(image.addr6.windows(2).all(|w| w[0].0 < w[1].0));
    prop_assert!(image.addr4.iter().all(|(n, _)| *n == n.trunc()));
    prop_assert!(image.addr6.iter().all(|(n, _)| *n == n.trunc()));
    for v in image.addr4.iter().map(|(_, v)| v).chain(image.addr6.iter().map(|(_, v)| v)) {
        prop_assert!(v.class < image.classes);
    }
    prop_assert!(image.ports.windows(2).all(|w| (w[0].key, w[0].prefix_len) < (w[1].key, w[1].prefix_len)));
    for e in &image.ports {
        prop_assert!((32..=56).contains(&e.prefix_len));
        prop_assert!(e.is_masked(), "key bits past the prefix: {:?}", e);
        prop_assert!(u32::from_be_bytes(e.key.class) < image.classes);
        prop_assert!((e.value.match_id as usize) < image.match_sets.len());
        // Only the untracked bits, and on an entry keyed on a protocol only its own.
        prop_assert_eq!(e.value.flags & !(FLAG_UNTRACKED_TCP | FLAG_UNTRACKED_UDP), 0);
        if e.prefix_len > PORT_KEY_CLASS_BITS {
            prop_assert_eq!(e.value.flags & !compile::untracked_flag(e.key.proto), 0, "{:?}", e);
        }
    }
    for set in &image.match_sets {
        prop_assert!(!set.is_empty());
        prop_assert!(set.windows(2).all(|w| w[0] < w[1]));
    }
    let mut distinct = image.match_sets.clone();
    distinct.sort();
    distinct.dedup();
    prop_assert_eq!(distinct.len(), image.match_sets.len(), "match sets are deduplicated");
    Ok(())
}

fn check_packets(policy: &InterfacePolicy, packets: &[(Direction, Packet)]) -> Result<(), TestCaseError> {
    let compiled = compile_ok(policy);
    check_image(&compiled.ingress)?;
    check_image(&compiled.egress)?;
    for (direction, packet) in packets {
        let want = evaluator::verdict(policy, *direction, packet);
        let got = compiled.image(*direction).judge(*direction, packet);
        prop_assert_eq!(&got, &want, "{:?} {:?}", direction, packet);
    }
    Ok(())
}

/// The untracked bits the kernel reads for a packet: on the entry that allows it
/// (`None` when no entry does), and on the entry its reverse hits in the other
/// direction's image (a response of an untracked flow).
fn image_untracked(
    compiled: &compile::CompiledInterface,
    direction: Direction,
    packet: &Packet,
) -> (Option<bool>, bool) {
    let bit = compile::untracked_flag(packet.proto);
    let untracked = |image: &MapImage, d: Direction, p: &Packet| match image.lookup(p.peer(d), p.proto, p.l4)
    {
        ImageLookup::Allowed { flags, .. } => Some(flags & bit != 0),
        ImageLookup::Exempt | ImageLookup::NoRule => None,
    };
    let own = untracked(compiled.image(direction), direction, packet);
    let l4 = match packet.l4 {
        L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
        other => other,
    };
    let reversed = Packet { src: packet.dst, dst: packet.src, l4, ..*packet };
    let other = evaluator::opposite(direction);
    let response = untracked(compiled.image(other), other, &reversed).unwrap_or(false);
    (own, response)
}

/// Flags against the evaluator, for packets the rules judge (exempt peers never get
/// that far). Returns how many packets were untracked and responses of untracked
/// flows.
fn check_flags(
    policy: &InterfacePolicy,
    packets: &[(Direction, Packet)],
) -> Result<(usize, usize), TestCaseError> {
    let compiled = compile_ok(policy);
    let mut counts = (0, 0);
    for (direction, packet) in packets {
        if policy.exempt.contains(&packet.peer(*direction)) {
            continue;
        }
        let allowing = evaluator::allowing_rules(policy, *direction, packet);
        let (own, response) = image_untracked(&compiled, *direction, packet);
        prop_assert_eq!(own.is_some(), !allowing.is_empty(), "{:?} {:?}", direction, packet);
        if let Some(own) = own {
            let want = evaluator::is_untracked(policy, *direction, packet, &allowing);
            prop_assert_eq!(own, want, "untracked: {:?} {:?}", direction, packet);
            counts.0 += usize::from(want);
        }
        let want = evaluator::is_response_of_untracked(policy, *direction, packet);
        prop_assert_eq!(response, want, "response of untracked: {:?} {:?}", direction, packet);
        counts.1 += usize::from(want);
    }
    Ok(counts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// The untracked flags of the images are AWS's rule as the evaluator reads it.
    #[test]
    fn untracked_flags_agree_with_the_evaluator((policy, packets) in policy_and_packets(64)) {
        check_flags(&policy, &packets)?;
    }

    /// The heart of it: images and evaluator agree on every packet.
    #[test]
    fn images_agree_with_the_evaluator((policy, packets) in policy_and_packets(64)) {
        check_packets(&policy, &packets)?;
    }

    /// Compiling twice gives the same image, and rule order does not change verdicts.
    #[test]
    fn compilation_is_deterministic_and_order_free((policy, packets) in policy_and_packets(16)) {
        let a = compile_ok(&policy);
        prop_assert_eq!(&a, &compile_ok(&policy));
        let mut reversed = policy.clone();
        reversed.ingress.reverse();
        reversed.egress.reverse();
        let b = compile_ok(&reversed);
        for (direction, packet) in &packets {
            prop_assert_eq!(a.image(*direction).judge(*direction, packet), b.image(*direction).judge(*direction, packet));
        }
    }

    /// A later fragment follows its first fragment: allowed exactly when the first
    /// was (or the peer is exempt), in the same direction only.
    #[test]
    fn later_fragments_follow_the_first((policy, packets) in policy_and_packets(32)) {
        let mut memory = FragmentMemory::default();
        for (direction, packet) in &packets {
            let id = 0x5eed;
            let first = Packet { fragment: Fragment::First(id), ..*packet };
            let later = Packet { fragment: Fragment::Later(id), l4: L4::None, ..*packet };
            memory.clear();
            let exempt_peer = policy.exempt.contains(&packet.peer(*direction));
            let before = evaluator::verdict_with_fragments(&policy, *direction, &later, &mut memory);
            prop_assert_eq!(before.verdict == Verdict::Allow, exempt_peer);
            let d = evaluator::verdict_with_fragments(&policy, *direction, &first, &mut memory);
            let after = evaluator::verdict_with_fragments(&policy, *direction, &later, &mut memory);
            prop_assert_eq!(after.verdict, d.verdict);
            prop_assert_eq!(after.reason, if exempt_peer { Reason::Exempt } else { Reason::Fragment });
            prop_assert!(after.rules.is_empty());
            let other = match direction { Direction::Ingress => Direction::Egress, Direction::Egress => Direction::Ingress };
            let exempt_other = policy.exempt.contains(&later.peer(other));
            let crossed = evaluator::verdict_with_fragments(&policy, other, &later, &mut memory);
            prop_assert_eq!(crossed.verdict == Verdict::Allow, exempt_other);
            // The image, with no fragment history, drops later fragments of non-exempt peers.
            let image = compile_ok(&policy);
            prop_assert_eq!(image.image(*direction).judge(*direction, &later), evaluator::verdict(&policy, *direction, &later));
        }
    }

    /// A limit one below what a policy needs is refused, naming the resource; the
    /// exact need is accepted.
    #[test]
    fn limits_are_enforced(policy in policy()) {
        let c = compile_ok(&policy);
        let need = |f: fn(&MapImage) -> usize| f(&c.ingress).max(f(&c.egress));
        let exact = Limits {
            max_prefixes_per_family: need(|i| i.addr4.len().max(i.addr6.len())),
            max_port_entries: need(|i| i.ports.len()),
            max_match_sets: need(|i| i.match_sets.len()),
        };
        prop_assert!(compile::compile(&policy, &exact).is_ok());
        if exact.max_prefixes_per_family > 0 {
            let limits = Limits { max_prefixes_per_family: exact.max_prefixes_per_family - 1, ..exact };
            let err = compile::compile(&policy, &limits);
            let is_prefix_error = matches!(
                err,
                Err(CompileError::TooLarge { resource: Resource::Ipv4Prefixes | Resource::Ipv6Prefixes, .. })
            );
            prop_assert!(is_prefix_error, "{:?}", err);
        }
        if exact.max_port_entries > 0 {
            let limits = Limits { max_port_entries: exact.max_port_entries - 1, ..exact };
            let err = compile::compile(&policy, &limits);
            let is_port_error = matches!(err, Err(CompileError::TooLarge { resource: Resource::PortEntries, .. }));
            prop_assert!(is_port_error, "{:?}", err);
        }
        if exact.max_match_sets > 0 {
            let limits = Limits { max_match_sets: exact.max_match_sets - 1, ..exact };
            let err = compile::compile(&policy, &limits);
            let is_set_error = matches!(err, Err(CompileError::TooLarge { resource: Resource::MatchSets, .. }));
            prop_assert!(is_set_error, "{:?}", err);
        }
    }
}

/// 20 000 packets over a few fixed-seed random policies, with a check that the
/// generator really reaches every kind of outcome (a generator that only produced
/// drops would make the comparison above worthless).
#[test]
fn twenty_thousand_packets_over_fixed_policies() {
    let mut runner = TestRunner::deterministic();
    let mut outcomes: HashMap<(Verdict, Reason), usize> = HashMap::new();
    let mut multi_rule = 0;
    let mut compared = 0;
    for _ in 0..8 {
        let policy = policy().new_tree(&mut runner).expect("policy").current();
        let compiled = compile_ok(&policy);
        let packets = prop::collection::vec(packet_for(&Targets::of(&policy)), 2_500);
        let packets = packets.new_tree(&mut runner).expect("packets").current();
        for (direction, packet) in &packets {
            let want = evaluator::verdict(&policy, *direction, packet);
            let got = compiled.image(*direction).judge(*direction, packet);
            assert_eq!(got, want, "{direction:?} {packet:?}\npolicy: {policy:#?}");
            *outcomes.entry((want.verdict, want.reason)).or_default() += 1;
            multi_rule += usize::from(want.rules.len() > 1);
            compared += 1;
        }
    }
    eprintln!("outcomes: {outcomes:?}, allowed by several rules: {multi_rule}");
    assert_eq!(compared, 20_000);
    let count = |v, r| outcomes.get(&(v, r)).copied().unwrap_or(0);
    assert!(count(Verdict::Allow, Reason::Rule) > 2_000, "{outcomes:?}");
    assert!(count(Verdict::Drop, Reason::NoRule) > 2_000, "{outcomes:?}");
    assert!(count(Verdict::Allow, Reason::Exempt) > 200, "{outcomes:?}");
    assert!(multi_rule > 200, "packets allowed by several rules: {multi_rule}");
}

/// The flags over fixed-seed policies, with a check that both answers occur often
/// (a generator that never produced an untracked flow would prove nothing).
#[test]
fn untracked_flags_over_fixed_policies() {
    let mut runner = TestRunner::deterministic();
    let (mut untracked, mut responses, mut judged) = (0, 0, 0);
    for _ in 0..24 {
        let policy = policy().new_tree(&mut runner).expect("policy").current();
        let packets = prop::collection::vec(packet_for(&Targets::of(&policy)), 500);
        let packets = packets.new_tree(&mut runner).expect("packets").current();
        let (u, r) = check_flags(&policy, &packets).unwrap_or_else(|e| panic!("{e}\npolicy: {policy:#?}"));
        untracked += u;
        responses += r;
        judged += packets.len();
    }
    eprintln!("{judged} packets: {untracked} untracked, {responses} responses of untracked flows");
    assert!(untracked > 100, "untracked: {untracked}");
    assert!(responses > 100, "responses of untracked flows: {responses}");
    assert!(untracked < judged / 2, "untracked: {untracked} of {judged}");
}
