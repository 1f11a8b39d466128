//! The reference programs of `ebpf/reference` (built by `build.rs`): `ref_drop`,
//! `ref_lpm`, `ref_pass` and the generator's `gen_tx`, loaded into one object whose
//! tries hold a policy's prefixes.

use std::net::Ipv4Addr;
use std::os::fd::AsFd as _;

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use ipnet::{Ipv4Net, Ipv6Net};

/// The object `build.rs` compiled from `ebpf/reference`.
pub fn object() -> &'static [u8] {
    static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reference.o"));
    OBJECT
}

/// Program names.
pub const REF_DROP: &str = "ref_drop";
/// One LPM lookup of the source address.
pub const REF_LPM: &str = "ref_lpm";
/// One LPM lookup and one flow-table lookup.
pub const REF_LPM_FLOW: &str = "ref_lpm_flow";
/// `XDP_PASS`.
pub const REF_PASS: &str = "ref_pass";
/// The generator's `XDP_TX` program.
pub const GEN_TX: &str = "gen_tx";
const PROGRAMS: [&str; 5] = [REF_DROP, REF_LPM, REF_LPM_FLOW, REF_PASS, GEN_TX];

/// XDP action codes.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;

/// The loaded reference object.
pub struct Reference {
    ebpf: Ebpf,
    links: Vec<(&'static str, XdpLinkId)>,
}

/// Sources for `gen_tx`: each an IPv4 address and the header checksum of the
/// generator's frame with it.
pub struct GenSources {
    entries: Vec<[u8; 8]>,
}

impl GenSources {
    /// `count` (rounded down to a power of two, at least 1) sources; `header` is the
    /// generator frame's 20-byte IPv4 header, whose checksum is recomputed per source.
    pub fn new(sources: &[Ipv4Addr], header: &[u8; 20]) -> Self {
        let count = if sources.is_empty() { 0 } else { 1usize << sources.len().ilog2() };
        let entries = sources[..count]
            .iter()
            .map(|src| {
                let mut h = *header;
                h[10] = 0;
                h[11] = 0;
                h[12..16].copy_from_slice(&src.octets());
                let sum = crate::frames::ipv4_checksum(&h);
                let o = src.octets();
                let c = sum.to_be_bytes();
                [o[0], o[1], o[2], o[3], c[0], c[1], 0, 0]
            })
            .collect();
        Self { entries }
    }

    fn mask(&self) -> u32 {
        u32::try_from(self.entries.len()).map_or(0, |n| n.saturating_sub(1))
    }
}

impl Reference {
    /// Loads every reference program, with the tries holding `v4` and `v6` and the
    /// generator rewriting sources from `sources` (none: frames are sent as given).
    pub fn load(v4: &[Ipv4Net], v6: &[Ipv6Net], sources: Option<&GenSources>) -> Result<Self> {
        let mut reference = Self::create(v4.len(), v6.len(), sources)?;
        reference.fill(v4, v6)?;
        Ok(reference)
    }

    /// Loads every reference program with empty tries of the given capacities.
    pub fn create(cap4: usize, cap6: usize, sources: Option<&GenSources>) -> Result<Self> {
        let cap = |n: usize| u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        let mask = sources.map_or(0, GenSources::mask);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("REF4", cap(cap4))
            .map_max_entries("REF6", cap(cap6))
            .map_max_entries("GEN_SRCS", mask + 1)
            .override_global("GEN_MASK", &mask, true);
        let mut ebpf = loader.load(object()).context("loading the reference programs")?;
        for name in PROGRAMS {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("no program {name} in the reference object"))?
                .try_into()?;
            prog.load().with_context(|| format!("verifying {name}"))?;
        }
        if let Some(sources) = sources
            && mask > 0
        {
            let mut array: Array<&mut MapData, [u8; 8]> =
                Array::try_from(ebpf.map_mut("GEN_SRCS").context("no GEN_SRCS")?)?;
            for (i, entry) in sources.entries.iter().enumerate() {
                array.set(u32::try_from(i)?, entry, 0)?;
            }
        }
        Ok(Self { ebpf, links: Vec::new() })
    }

    /// Inserts prefixes into the tries, one system call each.
    pub fn fill(&mut self, v4: &[Ipv4Net], v6: &[Ipv6Net]) -> Result<()> {
        let ebpf = &mut self.ebpf;
        {
            let mut trie: LpmTrie<&mut MapData, [u8; 4], u32> =
                LpmTrie::try_from(ebpf.map_mut("REF4").context("no REF4")?)?;
            for net in v4 {
                trie.insert(&Key::new(u32::from(net.prefix_len()), net.network().octets()), 1, 0)?;
            }
        }
        {
            let mut trie: LpmTrie<&mut MapData, [u8; 16], u32> =
                LpmTrie::try_from(ebpf.map_mut("REF6").context("no REF6")?)?;
            for net in v6 {
                trie.insert(&Key::new(u32::from(net.prefix_len()), net.network().octets()), 1, 0)?;
            }
        }
        Ok(())
    }

    fn xdp(&self, name: &str) -> Result<&Xdp> {
        let prog = self.ebpf.program(name).ok_or_else(|| anyhow!("no program {name}"))?;
        Ok(prog.try_into()?)
    }

    /// Runs `name` `repeat` times on `frame`: the action and the kernel's mean ns.
    pub fn test_run(&self, name: &str, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::default() };
        let r = self.xdp(name)?.test_run(opts).with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
        Ok((r.return_value, u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// The LPM programs' trie hits, misses, non-IP packets and flow hits, summed over
    /// CPUs.
    pub fn lpm_counts(&self) -> Result<[u64; 4]> {
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("REF_STATS").context("no REF_STATS")?)?;
        let mut out = [0u64; 4];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = array.get(&u32::try_from(i)?, 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Puts the flow of `frame` (as `ref_lpm_flow` keys it) into its flow table.
    pub fn insert_flow(&mut self, frame: &[u8]) -> Result<()> {
        let key = flow_key(frame).context("the frame has no flow key")?;
        let mut flows: aya::maps::HashMap<&mut MapData, [u8; 40], u64> =
            aya::maps::HashMap::try_from(self.ebpf.map_mut("REF_FLOWS").context("no REF_FLOWS")?)?;
        flows.insert(key, 1, 0)?;
        Ok(())
    }

    /// Inserts `nets` into `REF4` with one `BPF_MAP_UPDATE_BATCH` call (an error where
    /// the kernel has no batch updates for LPM tries).
    pub fn batch_insert_v4(&self, nets: &[Ipv4Net]) -> std::io::Result<()> {
        let Some(aya::maps::Map::LpmTrie(data)) = self.ebpf.map("REF4") else {
            return Err(std::io::Error::other("no REF4 trie"));
        };
        // struct bpf_lpm_trie_key { u32 prefixlen; u8 data[4]; }
        let keys: Vec<[u8; 8]> = nets
            .iter()
            .map(|n| {
                let l = u32::from(n.prefix_len()).to_ne_bytes();
                let o = n.network().octets();
                [l[0], l[1], l[2], l[3], o[0], o[1], o[2], o[3]]
            })
            .collect();
        let values = vec![1u32; nets.len()];
        sgmirror_dataplane::update_batch(data.fd().as_fd(), &keys, &values)
    }

    /// Attaches program `name` to `ifname` (in the calling thread's network
    /// namespace); it stays attached until this object is dropped.
    pub fn attach(&mut self, name: &'static str, ifname: &str, mode: XdpMode) -> Result<()> {
        let prog: &mut Xdp =
            self.ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
        let id = prog.attach(ifname, mode).with_context(|| format!("attaching {name} to {ifname}"))?;
        self.links.push((name, id));
        Ok(())
    }

    /// Sends `chunk` copies of `frame` out of `ifindex` through `gen_tx` in the
    /// kernel's live-frames mode, in batches of `batch`.
    pub fn generate(&self, frame: &[u8], ctx: &[u8], chunk: u32, batch: u32) -> Result<()> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(ctx),
            repeat: chunk,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::default()
        };
        self.xdp(GEN_TX)?.test_run(opts).context("live-frames BPF_PROG_TEST_RUN of gen_tx")?;
        Ok(())
    }
}

/// `ref_lpm_flow`'s key of an Ethernet frame with a plain IPv4 or IPv6 header.
fn flow_key(frame: &[u8]) -> Option<[u8; 40]> {
    let mut key = [0u8; 40];
    let (proto, l4, family) = match frame.get(12..14)? {
        [0x08, 0x00] => {
            key[0..4].copy_from_slice(frame.get(26..30)?);
            key[16..20].copy_from_slice(frame.get(30..34)?);
            (*frame.get(23)?, 34, 4)
        }
        [0x86, 0xdd] => {
            key[0..16].copy_from_slice(frame.get(22..38)?);
            key[16..32].copy_from_slice(frame.get(38..54)?);
            (*frame.get(20)?, 54, 6)
        }
        _ => return None,
    };
    if proto == 6 || proto == 17 {
        key[32..36].copy_from_slice(frame.get(l4..l4 + 4)?);
    }
    key[36] = proto;
    key[37] = family;
    Some(key)
}

impl Drop for Reference {
    fn drop(&mut self) {
        for (name, id) in std::mem::take(&mut self.links) {
            if let Some(Ok(prog)) = self.ebpf.program_mut(name).map(<&mut Xdp>::try_from) {
                let _ = prog.detach(id);
            }
        }
    }
}
