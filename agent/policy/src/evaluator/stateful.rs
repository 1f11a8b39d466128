//! Judging the packets of a trace: the state of one link (one ENI) and the steps that
//! read and write it.
//!
//! One [`LinkState`] stands for the flow table and the fragment table of one link,
//! which its ingress (XDP) and egress (TC) programs share: flows are tracked per ENI,
//! as AWS does, so a flow allowed on one ENI admits no replies on another — give
//! each ENI its own `LinkState`.
//!
//! For a packet in direction d ([`judge_stateful`]), after the exempt address, later
//! fragment and protocol exemption steps:
//! 1. an ICMP error whose quoted packet names a live flow ([`related_flow_key`]) is
//!    allowed, `tracked`; nothing is refreshed;
//! 2. a packet whose own flow ([`flow_key`]) is live is allowed, `tracked`; the flow's
//!    `last_seen_ns` becomes `now` and its state moves on (see [`super::flows`]). An
//!    expired flow is removed here, as if it were absent;
//! 3. the rules of d decide; an allowed packet creates a flow (initiator d) unless it
//!    is an ICMP error, its flow is untracked, or it is a response of an untracked
//!    flow ([`super::untracked`]).
//!
//! ICMP errors go through step 2 with their own key (addresses and protocol, ports
//! 0) like any other ICMP packet; they only never create a flow.
//!
//! **Time** is the caller's `now_ns`, the kernel's clock (`bpf_ktime_get_ns()` plus
//! the `CLOCK` test offset). Fragments use the same clock: a later fragment passes
//! while its first fragment is younger than `FRAG_TIMEOUT_NS`.
//!
//! **Audit mode** is the kernel's business: the model always answers as if
//! enforcing. In audit mode the kernel passes what the model drops (verdict AUDIT,
//! same reason), and since such a packet was not *allowed*, it creates no flow and no
//! fragment entry — exactly what the model's state shows after a drop.
//!
//! [`related_flow_key`]: super::related_flow_key
//! [`flow_key`]: super::flow_key

use std::collections::HashMap;

use sgmirror_common::{FlowKey, FlowValue, Timeouts};

use super::flows::{direction_code, initial_state, next_state};
use super::{FragmentMemory, flow_key, is_expired, related_flow_key};
use crate::model::{Decision, Direction, InterfacePolicy, StatefulPacket};

/// The state of one link (one ENI): its tracked flows and its allowed first
/// fragments, shared by both directions.
#[derive(Clone, Debug, Default)]
pub struct LinkState {
    flows: HashMap<FlowKey, FlowValue>,
    fragments: FragmentMemory,
}

impl LinkState {
    /// Every flow entry, live or expired (expired entries are removed only when a
    /// packet of their own flow comes; compare tables with [`LinkState::live_flows`]).
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowValue)> {
        self.flows.iter()
    }

    /// The entries that are not expired at `now` under `timeouts`.
    pub fn live_flows<'a>(
        &'a self,
        timeouts: &'a Timeouts,
        now: u64,
    ) -> impl Iterator<Item = (&'a FlowKey, &'a FlowValue)> + 'a {
        self.flows.iter().filter(move |(_, v)| !is_expired(v, timeouts, now))
    }

    /// Number of flow entries, live or expired.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The entry of one flow, live or expired.
    pub fn flow(&self, key: &FlowKey) -> Option<&FlowValue> {
        self.flows.get(key)
    }

    /// Puts an entry in the table as it is (to seed a trace, or to mirror what the
    /// kernel did on its own, such as an adopted connection).
    pub fn insert_flow(&mut self, key: FlowKey, value: FlowValue) {
        self.flows.insert(key, value);
    }

    /// Takes an entry out (to mirror an LRU eviction in the kernel).
    pub fn remove_flow(&mut self, key: &FlowKey) -> Option<FlowValue> {
        self.flows.remove(key)
    }

    /// The remembered first fragments.
    pub fn fragments(&self) -> &FragmentMemory {
        &self.fragments
    }
}

/// Judges one packet of a trace at time `now_ns` (the kernel's clock, `CLOCK`
/// offset included), updating `state`. `policy` is the link's policy at that moment:
/// it may change between packets, and the flows stay.
pub fn judge_stateful(
    policy: &InterfacePolicy,
    direction: Direction,
    packet: &StatefulPacket,
    now_ns: u64,
    state: &mut LinkState,
) -> Decision {
    let LinkState { flows, fragments } = state;
    let mut flows = Flows { table: flows, now: now_ns };
    super::judge(policy, direction, packet, fragments, Some(&mut flows))
}

/// The flow table at one moment: what the steps of [`super::decide`] read and write.
pub(super) struct Flows<'a> {
    table: &'a mut HashMap<FlowKey, FlowValue>,
    /// The clock.
    pub now: u64,
}

impl Flows<'_> {
    /// Steps 1 and 2 of the module documentation: whether the packet passes as part
    /// of a tracked flow (updating the flow when it is its own).
    pub fn admit(&mut self, timeouts: &Timeouts, direction: Direction, packet: &StatefulPacket) -> bool {
        if let Some(key) = related_flow_key(direction, packet)
            && self.table.get(&key).is_some_and(|flow| !is_expired(flow, timeouts, self.now))
        {
            return true;
        }
        let key = flow_key(direction, packet);
        let Some(flow) = self.table.get_mut(&key) else { return false };
        if is_expired(flow, timeouts, self.now) {
            self.table.remove(&key);
            return false;
        }
        flow.state = next_state(flow, direction_code(direction), packet.transport.tcp_flags);
        flow.last_seen_ns = self.now;
        true
    }

    /// Step 3: a new flow, started by this packet.
    pub fn create(&mut self, direction: Direction, packet: &StatefulPacket) {
        let value = FlowValue {
            last_seen_ns: self.now,
            initiator: direction_code(direction),
            state: initial_state(packet.packet.proto, packet.transport.tcp_flags),
            _pad: [0; 6],
        };
        self.table.insert(flow_key(direction, packet), value);
    }
}
