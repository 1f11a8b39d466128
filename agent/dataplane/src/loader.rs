//! Loading the embedded object for one link: the policy maps of both directions sized
//! to and filled from a compiled policy, the mode and flow timeouts set, both
//! programs through the verifier.
//!
//! Every load creates new policy maps (`ADDR4`, `ADDR6`, `PORTS`, `RULE_HITS` and
//! their egress twins), so a new policy is a new *generation* that is complete before
//! it sees a packet; it replaces the previous one on the link in one step per hook
//! (see [`LoadedProgram::replace`]). The state that must survive a generation change
//! ([`SHARED_MAPS`]: the counters, the fragments and flows in flight, the clock and the
//! drop log) is shared through pinned maps.

use std::os::fd::{AsFd as _, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, lpm_trie::Key},
    programs::{Program, SchedClassifier, Xdp},
};
use serde::Serialize;
use sgmirror_common::{
    AddrValue, Counter, FlowKey, FlowValue, FragKey, FragValue, PortKey, PortValue, STATS_LEN, Timeouts,
    mode, names, stat_index,
};
use sgmirror_policy::compile::{CompiledInterface, MapImage};
use sgmirror_policy::model::Direction;

use crate::{DataplaneError, Stats, attach::Attachment, batch, object};

/// What the programs do with packets the policy does not allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop them.
    #[default]
    Enforce,
    /// Pass them, counted with verdict `audit`.
    Audit,
}

impl Mode {
    /// The value of the programs' `MODE` global.
    pub fn code(self) -> u32 {
        match self {
            Mode::Enforce => mode::ENFORCE,
            Mode::Audit => mode::AUDIT,
        }
    }
}

/// Default size of the flow table: entries, each 40 + 16 bytes of key and value.
pub const DEFAULT_FLOW_CAPACITY: u32 = 65536;

/// How to load one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Enforce or audit.
    pub mode: Mode,
    /// Where the state shared by the generations of one link lives: the maps of
    /// [`SHARED_MAPS`] are opened from (or created and pinned at) `<dir>/<NAME>`.
    /// `None`: every map is private to this load (tests, `explain`).
    pub shared_pin_dir: Option<PathBuf>,
    /// Idle timeouts of the link's tracked flows.
    pub timeouts: Timeouts,
    /// Entries of the flow table (a least-recently-used table: a full one evicts).
    /// Only used when the table is created; a pinned table keeps its size.
    pub flow_capacity: u32,
    /// Drop records per second per CPU (the kernel's token bucket, with a burst of
    /// one second; see `sgmirror_common::DropBucket`), read with
    /// [`LoadedProgram::read_drop_records`]. 0 (the default) turns the drop log off:
    /// the verifier then removes its code, so it costs nothing.
    pub drop_log_rate: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            shared_pin_dir: None,
            timeouts: Timeouts::DEFAULT,
            flow_capacity: DEFAULT_FLOW_CAPACITY,
            drop_log_rate: 0,
        }
    }
}

/// The maps shared by the generations of a link, pinned under
/// [`LoadOptions::shared_pin_dir`] when it is given: the counters, the fragments
/// and flows in flight, the clock, and the drop log with its rate limit, so that a
/// new generation keeps counting and keeps writing to the ring buffer the agent reads.
pub const SHARED_MAPS: [&str; 7] = [
    names::STATS,
    names::FRAGS,
    names::FLOWS,
    names::FLOW_STATS,
    names::CLOCK,
    names::DROP_LOG,
    names::DROP_BUCKET,
];

/// What the verifier did with one program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct VerifierReport {
    /// Instructions the verifier processed (its measure of complexity), when the
    /// kernel reports it.
    pub verified_instructions: Option<u32>,
    /// Wall time of the program load (mostly verification).
    pub load_time: Duration,
}

/// Loaded (verified) programs with their maps, attached to at most one link.
pub struct LoadedProgram {
    // Declared before `ebpf` so that the links are dropped (detached) first.
    pub(crate) attachment: Option<Attachment>,
    pub(crate) ebpf: Ebpf,
    mode: Mode,
    /// Match sets of the ingress and egress images.
    match_sets: [usize; 2],
    /// Of the ingress and egress programs.
    verifier: [VerifierReport; 2],
}

impl std::fmt::Debug for LoadedProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProgram")
            .field("mode", &self.mode)
            .field("match_sets", &self.match_sets)
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

/// Index of a direction in per-direction arrays.
pub(crate) fn index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// The map names of one direction's policy: address tries, ports trie, hit counters.
struct PolicyMaps {
    addr4: &'static str,
    addr6: &'static str,
    ports: &'static str,
    hits: &'static str,
}

fn policy_maps(direction: Direction) -> PolicyMaps {
    match direction {
        Direction::Ingress => PolicyMaps {
            addr4: names::ADDR4,
            addr6: names::ADDR6,
            ports: names::PORTS,
            hits: names::RULE_HITS,
        },
        Direction::Egress => PolicyMaps {
            addr4: names::EADDR4,
            addr6: names::EADDR6,
            ports: names::EPORTS,
            hits: names::ERULE_HITS,
        },
    }
}

/// Loads both programs with maps filled from `compiled`: ingress maps from
/// `compiled.ingress`, egress maps from `compiled.egress`.
pub fn load(compiled: &CompiledInterface, opts: &LoadOptions) -> Result<LoadedProgram, DataplaneError> {
    raise_memlock_limit();
    let mode = opts.mode.code();
    let mut loader = EbpfLoader::new();
    if std::env::var_os("SGMIRROR_VERIFIER_LOG").is_some() {
        // Debugging aid: the verifier's whole log in the error of a rejected program.
        loader.verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS);
    }
    loader
        .override_global(names::MODE, &mode, true)
        .override_global(names::TIMEOUTS, &opts.timeouts, true)
        .override_global(names::DROP_LOG_RATE, &opts.drop_log_rate, true)
        .map_max_entries(names::FLOWS, opts.flow_capacity.max(1));
    for direction in [Direction::Ingress, Direction::Egress] {
        let image = compiled.image(direction);
        let maps = policy_maps(direction);
        loader
            .map_max_entries(maps.addr4, capacity(image.addr4.len()))
            .map_max_entries(maps.addr6, capacity(image.addr6.len()))
            .map_max_entries(maps.ports, capacity(image.ports.len()))
            .map_max_entries(maps.hits, capacity(image.match_sets.len()));
    }
    if let Some(dir) = &opts.shared_pin_dir {
        std::fs::create_dir_all(dir)
            .map_err(|source| DataplaneError::PinDir { path: dir.clone(), source })?;
        for name in SHARED_MAPS {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let mut ebpf = loader.load(object()).map_err(DataplaneError::Load)?;
    for direction in [Direction::Ingress, Direction::Egress] {
        fill(&mut ebpf, policy_maps(direction), compiled.image(direction))?;
    }
    let xdp: &mut Xdp = program_mut(&mut ebpf, names::XDP_INGRESS)?;
    let started = Instant::now();
    xdp.load().map_err(|source| DataplaneError::Verifier { program: names::XDP_INGRESS, source })?;
    let ingress = report(names::XDP_INGRESS, started, xdp.info());
    let tc: &mut SchedClassifier = program_mut(&mut ebpf, names::TC_EGRESS)?;
    let started = Instant::now();
    tc.load().map_err(|source| DataplaneError::Verifier { program: names::TC_EGRESS, source })?;
    let egress = report(names::TC_EGRESS, started, tc.info());
    tracing::debug!(
        mode = ?opts.mode,
        drop_log_rate = opts.drop_log_rate,
        prefixes_in = compiled.ingress.addr4.len() + compiled.ingress.addr6.len(),
        prefixes_out = compiled.egress.addr4.len() + compiled.egress.addr6.len(),
        match_sets_in = compiled.ingress.match_sets.len(),
        match_sets_out = compiled.egress.match_sets.len(),
        "programs loaded"
    );
    Ok(LoadedProgram {
        attachment: None,
        ebpf,
        mode: opts.mode,
        match_sets: [compiled.ingress.match_sets.len(), compiled.egress.match_sets.len()],
        verifier: [ingress, egress],
    })
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DataplaneError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(DataplaneError::MissingProgram(name))?;
    program.try_into().map_err(|source| DataplaneError::Verifier { program: name, source })
}

/// What the verifier did with a program loaded since `started`.
fn report(
    name: &'static str,
    started: Instant,
    info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
) -> VerifierReport {
    let load_time = started.elapsed();
    let verified_instructions = info.ok().and_then(|i| i.verified_instruction_count());
    tracing::debug!(program = name, ?verified_instructions, ?load_time, "program verified");
    VerifierReport { verified_instructions, load_time }
}

/// `max_entries` for `n` entries: the kernel refuses maps of 0 entries.
fn capacity(n: usize) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// Kernels before 5.11 charge BPF maps to `RLIMIT_MEMLOCK`; newer ones ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct it is given and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK");
    }
}

fn fill(ebpf: &mut Ebpf, maps: PolicyMaps, image: &MapImage) -> Result<(), DataplaneError> {
    let addr4: Vec<(Key<[u8; 4]>, AddrValue)> = image
        .addr4
        .iter()
        .map(|(net, value)| (Key::new(u32::from(net.prefix_len()), net.network().octets()), *value))
        .collect();
    batch::insert_lpm(policy_trie(ebpf, maps.addr4)?, &addr4).map_err(DataplaneError::fill(maps.addr4))?;
    let addr6: Vec<(Key<[u8; 16]>, AddrValue)> = image
        .addr6
        .iter()
        .map(|(net, value)| (Key::new(u32::from(net.prefix_len()), net.network().octets()), *value))
        .collect();
    batch::insert_lpm(policy_trie(ebpf, maps.addr6)?, &addr6).map_err(DataplaneError::fill(maps.addr6))?;
    let ports: Vec<(Key<PortKey>, PortValue)> =
        image.ports.iter().map(|e| (Key::new(e.prefix_len, e.key), e.value)).collect();
    batch::insert_lpm(policy_trie(ebpf, maps.ports)?, &ports).map_err(DataplaneError::fill(maps.ports))?;
    Ok(())
}

/// The LPM trie `name` of the object, checked to be one.
fn policy_trie<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, DataplaneError> {
    match ebpf.map(name) {
        Some(aya::maps::Map::LpmTrie(data)) => Ok(data.fd().as_fd()),
        Some(_) => Err(DataplaneError::Map {
            map: name,
            source: aya::maps::MapError::InvalidMapType { map_type: 0 },
        }),
        None => Err(DataplaneError::MissingMap(name)),
    }
}

fn sum_counters(per_cpu: &[Counter]) -> Counter {
    per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
        packets: sum.packets + c.packets,
        bytes: sum.bytes + c.bytes,
    })
}

impl LoadedProgram {
    /// The mode the programs were loaded with.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of match sets (rule-hit counters) of one direction's image.
    pub fn match_sets(&self, direction: Direction) -> usize {
        self.match_sets[index(direction)]
    }

    /// What the verifier reported for the program of one direction.
    pub fn verifier_report(&self, direction: Direction) -> VerifierReport {
        self.verifier[index(direction)]
    }

    /// The kernel's id of one direction's program (as `bpftool prog` shows it).
    pub fn program_id(&self, direction: Direction) -> Result<u32, DataplaneError> {
        let info = match direction {
            Direction::Ingress => self.xdp()?.info(),
            Direction::Egress => self.tc()?.info(),
        };
        Ok(info.map_err(DataplaneError::ProgramInfo)?.id())
    }

    pub(crate) fn xdp(&self) -> Result<&Xdp, DataplaneError> {
        let program = self
            .ebpf
            .program(names::XDP_INGRESS)
            .ok_or(DataplaneError::MissingProgram(names::XDP_INGRESS))?;
        program.try_into().map_err(|source| DataplaneError::Verifier { program: names::XDP_INGRESS, source })
    }

    pub(crate) fn xdp_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program_mut(&mut self.ebpf, names::XDP_INGRESS)
    }

    pub(crate) fn tc(&self) -> Result<&SchedClassifier, DataplaneError> {
        let program =
            self.ebpf.program(names::TC_EGRESS).ok_or(DataplaneError::MissingProgram(names::TC_EGRESS))?;
        program.try_into().map_err(|source| DataplaneError::Verifier { program: names::TC_EGRESS, source })
    }

    pub(crate) fn tc_mut(&mut self) -> Result<&mut SchedClassifier, DataplaneError> {
        program_mut(&mut self.ebpf, names::TC_EGRESS)
    }

    pub(crate) fn per_cpu_array<V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<PerCpuArray<&MapData, V>, DataplaneError> {
        let map = self.ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
        PerCpuArray::try_from(map).map_err(DataplaneError::map(name))
    }

    /// All counters of both directions, summed over CPUs.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        let array = self.per_cpu_array::<Counter>(names::STATS)?;
        let counters = (0..STATS_LEN)
            .map(|i| {
                let per_cpu = array.get(&i, 0).map_err(DataplaneError::map(names::STATS))?;
                Ok(sum_counters(&per_cpu))
            })
            .collect::<Result<Vec<_>, DataplaneError>>()?;
        Ok(Stats::from_counters(counters))
    }

    /// One counter, summed over CPUs (one map read instead of [`STATS_LEN`]).
    pub fn stat(&self, direction: u32, verdict: u32, reason: u32) -> Result<Counter, DataplaneError> {
        let array = self.per_cpu_array::<Counter>(names::STATS)?;
        let per_cpu = array
            .get(&stat_index(direction, verdict, reason), 0)
            .map_err(DataplaneError::map(names::STATS))?;
        Ok(sum_counters(&per_cpu))
    }

    /// Packets allowed per match set of one direction (indexed by
    /// `PortValue::match_id`), summed over CPUs.
    pub fn rule_hits(&self, direction: Direction) -> Result<Vec<u64>, DataplaneError> {
        let name = policy_maps(direction).hits;
        let array = self.per_cpu_array::<u64>(name)?;
        (0..self.match_sets(direction) as u32)
            .map(|id| Ok(array.get(&id, 0).map_err(DataplaneError::map(name))?.iter().sum()))
            .collect()
    }

    /// Packets allowed through one match set of one direction, summed over CPUs.
    pub fn rule_hit(&self, direction: Direction, match_id: u32) -> Result<u64, DataplaneError> {
        let name = policy_maps(direction).hits;
        let array = self.per_cpu_array::<u64>(name)?;
        let per_cpu = array.get(&match_id, 0).map_err(DataplaneError::map(name))?;
        Ok(per_cpu.iter().sum())
    }

    /// Sets the flow clock's offset: the programs' time becomes
    /// `bpf_ktime_get_ns() + ns` (modulo 2^64; `CLOCK_MONOTONIC` in userspace). A test
    /// hook: moves flows towards their idle timeouts without sleeping. Shared by every
    /// generation of a link that shares `CLOCK`.
    pub fn set_clock_offset(&self, ns: u64) -> Result<(), DataplaneError> {
        let map = self.ebpf.map(names::CLOCK).ok_or(DataplaneError::MissingMap(names::CLOCK))?;
        let aya::maps::Map::Array(data) = map else {
            return Err(DataplaneError::MissingMap(names::CLOCK));
        };
        batch::update_one(data.fd().as_fd(), &0u32, &ns).map_err(|io_error| DataplaneError::Map {
            map: names::CLOCK,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_update_elem",
                io_error,
            }),
        })
    }

    fn flows_map(&self) -> Result<HashMap<&MapData, FlowKey, FlowValue>, DataplaneError> {
        let map = self.ebpf.map(names::FLOWS).ok_or(DataplaneError::MissingMap(names::FLOWS))?;
        HashMap::try_from(map).map_err(DataplaneError::map(names::FLOWS))
    }

    /// Entries in the flow table (live or expired, not yet evicted). Walks the keys:
    /// one system call per entry.
    pub fn flow_count(&self) -> Result<usize, DataplaneError> {
        let flows = self.flows_map()?;
        let mut count = 0;
        for key in flows.keys() {
            match key {
                Ok(_) => count += 1,
                // An entry deleted or evicted while walking: the walk restarts from
                // the first key in the kernel, so stop rather than count twice.
                Err(aya::maps::MapError::KeyNotFound) => break,
                Err(e) => return Err(DataplaneError::Map { map: names::FLOWS, source: e }),
            }
        }
        Ok(count)
    }

    /// Every entry of the flow table (live or expired, not yet evicted).
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, DataplaneError> {
        let flows = self.flows_map()?;
        let mut out = Vec::new();
        for entry in flows.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(DataplaneError::Map { map: names::FLOWS, source: e }),
            }
        }
        Ok(out)
    }

    /// Deletes every flow (tests; an operator's "forget all connections"), and counts
    /// the deletions in `FLOW_STATS` so that they do not look like evictions.
    pub fn clear_flows(&mut self) -> Result<(), DataplaneError> {
        let deleted = clear::<FlowKey, FlowValue>(&mut self.ebpf, names::FLOWS)?;
        self.count_deleted_flows(deleted)
    }

    /// Deletes every remembered first fragment (tests).
    pub fn clear_fragments(&mut self) -> Result<(), DataplaneError> {
        clear::<FragKey, FragValue>(&mut self.ebpf, names::FRAGS).map(|_| ())
    }
}

/// Deletes every entry of a hash table; returns how many this call deleted.
fn clear<K: aya::Pod, V: aya::Pod>(ebpf: &mut Ebpf, name: &'static str) -> Result<u64, DataplaneError> {
    let map = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    let mut table: HashMap<&mut MapData, K, V> = HashMap::try_from(map).map_err(DataplaneError::map(name))?;
    let keys: Vec<K> = table.keys().filter_map(Result::ok).collect();
    let mut deleted = 0;
    for key in keys {
        match table.remove(&key) {
            Ok(()) => deleted += 1,
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(DataplaneError::Map { map: name, source: e }),
        }
    }
    Ok(deleted)
}
