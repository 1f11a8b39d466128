//! Loading the embedded object for one link: maps sized to and filled from a policy
//! image, the mode set, the program through the verifier.
//!
//! Every load creates new policy maps (`ADDR4`, `ADDR6`, `PORTS`, `RULE_HITS`), so a
//! new policy is a new *generation* that is complete before it sees a packet; it
//! replaces the previous one on the link in one step (see [`LoadedProgram::replace`]).
//! The state that must survive a generation change (`STATS`, `FRAGS`) can be shared
//! through pinned maps.

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        MapData, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::Xdp,
};
use serde::Serialize;
use sgmirror_common::{AddrValue, Counter, PortKey, PortValue, STATS_LEN, mode, names, stat_index};
use sgmirror_policy::compile::MapImage;

use crate::{DataplaneError, Stats, attach::Attachment, object};

/// What the program does with packets the policy does not allow.
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
    /// The value of the program's `MODE` global.
    pub fn code(self) -> u32 {
        match self {
            Mode::Enforce => mode::ENFORCE,
            Mode::Audit => mode::AUDIT,
        }
    }
}

/// How to load one generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Enforce or audit.
    pub mode: Mode,
    /// Where the state shared by the generations of one link lives: `STATS` and
    /// `FRAGS` are opened from (or created and pinned at) `<dir>/STATS` and
    /// `<dir>/FRAGS`. `None`: every map is private to this load (tests, `explain`).
    pub shared_pin_dir: Option<PathBuf>,
}

/// A loaded (verified) program with its maps, attached to at most one link.
pub struct LoadedProgram {
    // Declared before `ebpf` so that the link is dropped (detached) first.
    pub(crate) attachment: Option<Attachment>,
    pub(crate) ebpf: Ebpf,
    mode: Mode,
    match_sets: usize,
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

/// Loads the ingress program with maps filled from `image`.
pub fn load(image: &MapImage, opts: &LoadOptions) -> Result<LoadedProgram, DataplaneError> {
    raise_memlock_limit();
    let mode = opts.mode.code();
    let mut loader = EbpfLoader::new();
    loader
        .override_global(names::MODE, &mode, true)
        .map_max_entries(names::ADDR4, capacity(image.addr4.len()))
        .map_max_entries(names::ADDR6, capacity(image.addr6.len()))
        .map_max_entries(names::PORTS, capacity(image.ports.len()))
        .map_max_entries(names::RULE_HITS, capacity(image.match_sets.len()));
    if let Some(dir) = &opts.shared_pin_dir {
        std::fs::create_dir_all(dir)
            .map_err(|source| DataplaneError::PinDir { path: dir.clone(), source })?;
        loader
            .map_pin_path(names::STATS, dir.join(names::STATS))
            .map_pin_path(names::FRAGS, dir.join(names::FRAGS));
    }
    let mut ebpf = loader.load(object()).map_err(DataplaneError::Load)?;
    fill(&mut ebpf, image)?;
    let program: &mut Xdp = ebpf
        .program_mut(names::XDP_INGRESS)
        .ok_or(DataplaneError::MissingProgram(names::XDP_INGRESS))?
        .try_into()
        .map_err(DataplaneError::Verifier)?;
    program.load().map_err(DataplaneError::Verifier)?;
    tracing::debug!(
        mode = ?opts.mode,
        prefixes_v4 = image.addr4.len(),
        prefixes_v6 = image.addr6.len(),
        port_entries = image.ports.len(),
        match_sets = image.match_sets.len(),
        "XDP program loaded"
    );
    Ok(LoadedProgram { attachment: None, ebpf, mode: opts.mode, match_sets: image.match_sets.len() })
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

fn fill(ebpf: &mut Ebpf, image: &MapImage) -> Result<(), DataplaneError> {
    let map = ebpf.map_mut(names::ADDR4).ok_or(DataplaneError::MissingMap(names::ADDR4))?;
    let mut addr4: LpmTrie<&mut MapData, [u8; 4], AddrValue> =
        LpmTrie::try_from(map).map_err(DataplaneError::map(names::ADDR4))?;
    for (net, value) in &image.addr4 {
        let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
        addr4.insert(&key, value, 0).map_err(DataplaneError::map(names::ADDR4))?;
    }
    let map = ebpf.map_mut(names::ADDR6).ok_or(DataplaneError::MissingMap(names::ADDR6))?;
    let mut addr6: LpmTrie<&mut MapData, [u8; 16], AddrValue> =
        LpmTrie::try_from(map).map_err(DataplaneError::map(names::ADDR6))?;
    for (net, value) in &image.addr6 {
        let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
        addr6.insert(&key, value, 0).map_err(DataplaneError::map(names::ADDR6))?;
    }
    let map = ebpf.map_mut(names::PORTS).ok_or(DataplaneError::MissingMap(names::PORTS))?;
    let mut ports: LpmTrie<&mut MapData, PortKey, PortValue> =
        LpmTrie::try_from(map).map_err(DataplaneError::map(names::PORTS))?;
    for entry in &image.ports {
        ports
            .insert(&Key::new(entry.prefix_len, entry.key), entry.value, 0)
            .map_err(DataplaneError::map(names::PORTS))?;
    }
    Ok(())
}

impl LoadedProgram {
    /// The mode the program was loaded with.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of match sets (rule-hit counters) of the loaded image.
    pub fn match_sets(&self) -> usize {
        self.match_sets
    }

    /// The kernel's id of the loaded program (as `bpftool prog` and `ip link` show it).
    pub fn program_id(&self) -> Result<u32, DataplaneError> {
        Ok(self.xdp()?.info().map_err(DataplaneError::ProgramInfo)?.id())
    }

    pub(crate) fn xdp(&self) -> Result<&Xdp, DataplaneError> {
        let program = self
            .ebpf
            .program(names::XDP_INGRESS)
            .ok_or(DataplaneError::MissingProgram(names::XDP_INGRESS))?;
        program.try_into().map_err(DataplaneError::Verifier)
    }

    pub(crate) fn xdp_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        let program = self
            .ebpf
            .program_mut(names::XDP_INGRESS)
            .ok_or(DataplaneError::MissingProgram(names::XDP_INGRESS))?;
        program.try_into().map_err(DataplaneError::Verifier)
    }

    fn per_cpu_array<V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<PerCpuArray<&MapData, V>, DataplaneError> {
        let map = self.ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
        PerCpuArray::try_from(map).map_err(DataplaneError::map(name))
    }

    /// All counters, summed over CPUs.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        let array = self.per_cpu_array::<Counter>(names::STATS)?;
        let counters = (0..STATS_LEN)
            .map(|i| {
                let per_cpu = array.get(&i, 0).map_err(DataplaneError::map(names::STATS))?;
                Ok(per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
                    packets: sum.packets + c.packets,
                    bytes: sum.bytes + c.bytes,
                }))
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
        Ok(per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        }))
    }

    /// Packets allowed per match set (indexed by `PortValue::match_id`), summed over CPUs.
    pub fn rule_hits(&self) -> Result<Vec<u64>, DataplaneError> {
        (0..self.match_sets).map(|id| self.rule_hit(id as u32)).collect()
    }

    /// Packets allowed through one match set, summed over CPUs.
    pub fn rule_hit(&self, match_id: u32) -> Result<u64, DataplaneError> {
        let array = self.per_cpu_array::<u64>(names::RULE_HITS)?;
        let per_cpu = array.get(&match_id, 0).map_err(DataplaneError::map(names::RULE_HITS))?;
        Ok(per_cpu.iter().sum())
    }
}
