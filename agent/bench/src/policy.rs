//! The policies the benchmarks run: generated snapshots (the AWS CLI shapes the agent
//! reads), resolved and compiled by the real pipeline, plus the addresses of the
//! packets each measurement sends.
//!
//! Two shapes:
//!
//! - *services*: `n` IPv4 and `n` IPv6 non-overlapping prefixes, dealt round-robin to
//!   four services (tcp 443, tcp 22, udp 53, udp 9), each service's prefixes in
//!   prefix lists of at most 1 000 entries (AWS's limit) referenced by one inbound rule
//!   per list; outbound is AWS's default (everything to `0.0.0.0/0` and `::/0`).
//! - *aws-max*: 1 000 inbound and 1 000 outbound rules (AWS's maximum per direction),
//!   each with its own CIDR, some nested in others, over TCP, UDP and ICMP ports and
//!   ranges.
//!
//! Everything is seeded: two runs benchmark the same policies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use sgmirror_policy::{
    compile::{CompiledInterface, Limits, compile},
    evaluator,
    model::{Direction, InterfacePolicy, L4, Packet, Verdict, proto},
    resolve::resolve_interface,
    snapshot,
};

/// The interface every generated snapshot describes.
pub const ENI: &str = "eni-0be0c0be0c0be0c01";
const GROUP: &str = "sg-0be0c0be0c0be0c02";
const INSTANCE: &str = "i-0be0c0be0c0be0c03";
/// The receiver's address (RFC 2544 benchmarking range) and MAC.
pub const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The receiver's IPv6 address (RFC 5180 benchmarking range).
pub const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// MAC of the receiving link in the benchmarks' labs.
pub const LOCAL_MAC: &str = "02:00:00:00:00:02";
/// Addresses outside every generated prefix: sources nothing allows.
pub const STRANGER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// IPv6 address outside every generated prefix.
pub const STRANGER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);
/// The port of the probe traffic: udp 9 (discard) is allowed for the sources of the
/// `udp 9` service and denied for the sources of every other service.
pub const PROBE_PORT: u16 = 9;

/// A service of the *services* shape.
struct Service {
    protocol: &'static str,
    port: u16,
}

const SERVICES: [Service; 4] = [
    Service { protocol: "tcp", port: 443 },
    Service { protocol: "tcp", port: 22 },
    Service { protocol: "udp", port: 53 },
    Service { protocol: "udp", port: PROBE_PORT },
];
/// Whose sources are denied the probe (they may only use tcp 443).
const DENIED_SERVICE: usize = 0;
/// Whose sources are allowed the probe (udp 9).
const ALLOWED_SERVICE: usize = 3;
/// AWS's limit of entries per managed prefix list.
const PREFIX_LIST_MAX: usize = 1000;

/// Ranges no generated prefix overlaps: private, special-purpose, documentation and
/// benchmarking ranges (the labs' own addresses and the stranger sources live there).
const EXCLUDED_V4: [&str; 13] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
];
const EXCLUDED_V6: [&str; 4] = ["2001::/32", "2001:2::/48", "2001:db8::/32", "2002::/16"];

/// Which addresses one family's probes use.
#[derive(Clone, Copy, Debug)]
pub struct Probes {
    /// A source no rule covers.
    pub stranger: IpAddr,
    /// A source the rules know, to which the probe (`proto`/`port` below) is denied.
    pub denied: (IpAddr, u8, u16),
    /// A source the probe is allowed from, with the protocol and destination port.
    pub allowed: (IpAddr, u8, u16),
    /// This host's address.
    pub local: IpAddr,
}

/// A benchmark policy: its snapshot, what the pipeline made of it, and the probes.
pub struct BenchPolicy {
    /// Short name (`10`, `10000`, `aws-max`).
    pub name: String,
    /// The resolved policy of [`ENI`].
    pub policy: InterfacePolicy,
    /// The compiled maps.
    pub compiled: CompiledInterface,
    /// Distinct inbound peer prefixes per family: what the reference trie holds.
    pub v4: Vec<Ipv4Net>,
    /// Distinct inbound IPv6 peer prefixes.
    pub v6: Vec<Ipv6Net>,
    /// Probes per family.
    pub probes_v4: Probes,
    /// IPv6 probes.
    pub probes_v6: Probes,
    /// Every allowed-service (udp 9) IPv4 prefix, and every denied-service one: the
    /// source pools of the live traffic.
    pub pools_v4: Pools,
}

/// Source pools of the live traffic.
#[derive(Clone, Debug, Default)]
pub struct Pools {
    /// Prefixes whose sources may send the probe.
    pub allowed: Vec<Ipv4Net>,
    /// Prefixes whose sources are known but denied the probe.
    pub denied: Vec<Ipv4Net>,
}

fn excluded_v4() -> Vec<Ipv4Net> {
    EXCLUDED_V4.iter().filter_map(|s| s.parse().ok()).collect()
}

fn excluded_v6() -> Vec<Ipv6Net> {
    EXCLUDED_V6.iter().filter_map(|s| s.parse().ok()).collect()
}

fn overlaps4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `n` non-overlapping IPv4 prefixes, /20 to /32, each in its own random /20.
pub fn prefixes_v4(n: usize, rng: &mut StdRng) -> Vec<Ipv4Net> {
    let excluded = excluded_v4();
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let block: u32 = rng.gen_range(0..1 << 20);
        let base = Ipv4Net::new(Ipv4Addr::from(block << 12), 20).unwrap_or_default();
        if used.contains(&block) || excluded.iter().any(|x| overlaps4(x, &base)) {
            continue;
        }
        used.insert(block);
        let len: u8 = rng.gen_range(20..=32);
        let sub: u32 = if len > 20 { rng.gen_range(0..1u32 << (len - 20)) << (32 - len) } else { 0 };
        out.push(Ipv4Net::new(Ipv4Addr::from((block << 12) | sub), len).unwrap_or(base));
    }
    out
}

/// `n` non-overlapping IPv6 prefixes, /32 to /64, each in its own random /32 of 2000::/3.
pub fn prefixes_v6(n: usize, rng: &mut StdRng) -> Vec<Ipv6Net> {
    let excluded = excluded_v6();
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let block: u32 = rng.gen_range(0x2000_0000..0x4000_0000);
        let base = Ipv6Net::new(Ipv6Addr::from(u128::from(block) << 96), 32).unwrap_or_default();
        if used.contains(&block) || excluded.iter().any(|x| overlaps6(x, &base)) {
            continue;
        }
        used.insert(block);
        let len: u8 = rng.gen_range(32..=64);
        let sub: u128 =
            if len > 32 { u128::from(rng.gen_range(0..1u64 << (len - 32))) << (128 - len) } else { 0 };
        let addr = Ipv6Addr::from((u128::from(block) << 96) | sub);
        out.push(Ipv6Net::new(addr, len).unwrap_or(base));
    }
    out
}

/// A random address inside `net` (its network address for a /32).
pub fn host_v4(net: &Ipv4Net, rng: &mut StdRng) -> Ipv4Addr {
    let host_bits = 32 - u32::from(net.prefix_len());
    let offset = if host_bits == 0 { 0 } else { rng.gen_range(0..=(u32::MAX >> (32 - host_bits))) };
    Ipv4Addr::from(u32::from(net.network()) | offset)
}

/// A random address inside `net`.
pub fn host_v6(net: &Ipv6Net, rng: &mut StdRng) -> Ipv6Addr {
    let host_bits = 128 - u32::from(net.prefix_len());
    let offset = if host_bits == 0 { 0 } else { rng.r#gen::<u128>() >> (128 - host_bits) };
    Ipv6Addr::from(u128::from(net.network()) | offset)
}

fn interface() -> Value {
    json!({
        "NetworkInterfaceId": ENI,
        "Attachment": {"DeviceIndex": 0, "Status": "attached", "InstanceId": INSTANCE},
        "Groups": [{"GroupId": GROUP, "GroupName": "bench"}],
        "Ipv6Addresses": [{"Ipv6Address": LOCAL_V6.to_string()}],
        "MacAddress": LOCAL_MAC,
        "PrivateIpAddress": LOCAL_V4.to_string(),
        "PrivateIpAddresses": [{"Primary": true, "PrivateIpAddress": LOCAL_V4.to_string()}],
        "Status": "in-use"
    })
}

fn rule(id: usize, egress: bool, protocol: &str, from: i32, to: i32, peer: (&str, String)) -> Value {
    let mut r = json!({
        "SecurityGroupRuleId": format!("sgr-{:017x}", id),
        "GroupId": GROUP,
        "IsEgress": egress,
        "IpProtocol": protocol,
        "FromPort": from,
        "ToPort": to,
    });
    r[peer.0] = Value::String(peer.1);
    r
}

fn default_egress(first_id: usize) -> Vec<Value> {
    vec![
        rule(first_id, true, "-1", -1, -1, ("CidrIpv4", "0.0.0.0/0".into())),
        rule(first_id + 1, true, "-1", -1, -1, ("CidrIpv6", "::/0".into())),
    ]
}

/// The *services* snapshot with `n` prefixes per family (`v6: false`: IPv4 only),
/// with its IPv4 prefixes per service.
pub fn services_snapshot(n: usize, v6: bool, seed: u64) -> (Value, Vec<Vec<Ipv4Net>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let p4 = prefixes_v4(n, &mut rng);
    let p6 = if v6 { prefixes_v6(n, &mut rng) } else { Vec::new() };
    let mut per_service4: Vec<Vec<Ipv4Net>> = vec![Vec::new(); SERVICES.len()];
    let mut per_service6: Vec<Vec<Ipv6Net>> = vec![Vec::new(); SERVICES.len()];
    for (i, p) in p4.iter().enumerate() {
        per_service4[i % SERVICES.len()].push(*p);
    }
    for (i, p) in p6.iter().enumerate() {
        per_service6[i % SERVICES.len()].push(*p);
    }
    let mut lists = Vec::new();
    let mut rules = Vec::new();
    for (s, service) in SERVICES.iter().enumerate() {
        let families: [(&str, Vec<String>); 2] = [
            ("IPv4", per_service4[s].iter().map(ToString::to_string).collect()),
            ("IPv6", per_service6[s].iter().map(ToString::to_string).collect()),
        ];
        for (family, cidrs) in families {
            for chunk in cidrs.chunks(PREFIX_LIST_MAX) {
                let id = format!("pl-{:017x}", lists.len() + 1);
                let entries: Vec<Value> = chunk.iter().map(|c| json!({"Cidr": c})).collect();
                lists.push(json!({
                    "PrefixListId": id,
                    "PrefixListName": format!("{}-{}-{}", service.protocol, service.port, family),
                    "AddressFamily": family,
                    "MaxEntries": PREFIX_LIST_MAX,
                    "Entries": entries,
                }));
                let port = i32::from(service.port);
                rules.push(rule(rules.len() + 1, false, service.protocol, port, port, ("PrefixListId", id)));
            }
        }
    }
    rules.extend(default_egress(rules.len() + 1));
    let doc = json!({
        "InstanceId": INSTANCE,
        "SecurityGroupRules": rules,
        "NetworkInterfaces": [interface()],
        "PrefixLists": lists,
    });
    (doc, per_service4)
}

/// One generated rule of the *aws-max* shape: protocol and ports, as the snapshot
/// writes them.
fn random_protocol(i: usize, v6: bool, rng: &mut StdRng) -> (&'static str, i32, i32) {
    match i % 10 {
        0..=4 => {
            let p = rng.gen_range(1024..60000);
            ("tcp", p, p)
        }
        5 | 6 => {
            let p = rng.gen_range(1024..60000);
            ("tcp", p, (p + rng.gen_range(0..1000)).min(65535))
        }
        7 => {
            let p = rng.gen_range(1024..60000);
            ("udp", p, p)
        }
        8 => {
            let p = rng.gen_range(1024..60000);
            ("udp", p, (p + rng.gen_range(0..1000)).min(65535))
        }
        _ if v6 => ("icmpv6", 128, -1),
        _ => ("icmp", 8, -1),
    }
}

/// 1 000 random CIDRs of one family per direction: a fifth broad (/12–/16 or
/// /32–/40), the rest narrow (/20–/32 or /48–/64), a third of those nested in a broad
/// one.
fn aws_max_cidrs(count: usize, v6: bool, rng: &mut StdRng) -> Vec<String> {
    let ex4 = excluded_v4();
    let ex6 = excluded_v6();
    let mut broad4: Vec<Ipv4Net> = Vec::new();
    let mut broad6: Vec<Ipv6Net> = Vec::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let broad = out.len() % 5 == 0;
        let nest = !broad && rng.gen_range(0..3) == 0;
        if v6 {
            let net = if nest && !broad6.is_empty() {
                let outer = broad6[rng.gen_range(0..broad6.len())];
                let len = rng.gen_range(48..=64);
                Ipv6Net::new(host_v6(&outer, rng), len).map(|n| n.trunc()).ok()
            } else {
                let len = if broad { rng.gen_range(32..=40) } else { rng.gen_range(48..=64) };
                let addr = Ipv6Addr::from(rng.gen_range(0x2000u128 << 112..0x4000u128 << 112));
                Ipv6Net::new(addr, len).map(|n| n.trunc()).ok()
            };
            let Some(net) = net else { continue };
            if ex6.iter().any(|x| overlaps6(x, &net)) {
                continue;
            }
            if broad {
                broad6.push(net);
            }
            out.push(net.to_string());
        } else {
            let net = if nest && !broad4.is_empty() {
                let outer = broad4[rng.gen_range(0..broad4.len())];
                let len = rng.gen_range(20..=32);
                Ipv4Net::new(host_v4(&outer, rng), len).map(|n| n.trunc()).ok()
            } else {
                let len = if broad { rng.gen_range(12..=16) } else { rng.gen_range(20..=32) };
                Ipv4Net::new(Ipv4Addr::from(rng.r#gen::<u32>()), len).map(|n| n.trunc()).ok()
            };
            let Some(net) = net else { continue };
            if ex4.iter().any(|x| overlaps4(x, &net)) {
                continue;
            }
            if broad {
                broad4.push(net);
            }
            out.push(net.to_string());
        }
    }
    out
}

/// The *aws-max* snapshot: 1 000 inbound and 1 000 outbound rules, three quarters
/// IPv4; outbound includes tcp 443 to `0.0.0.0/0` and `::/0`.
pub fn aws_max_snapshot(seed: u64) -> Value {
    const RULES: usize = 1000;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rules = Vec::with_capacity(2 * RULES);
    for egress in [false, true] {
        let v6_count = RULES / 4;
        let mut cidrs4 = aws_max_cidrs(RULES - v6_count, false, &mut rng).into_iter();
        let mut cidrs6 = aws_max_cidrs(v6_count, true, &mut rng).into_iter();
        for i in 0..RULES {
            let id = rules.len() + 1;
            if egress && i < 2 {
                let peer =
                    if i == 0 { ("CidrIpv4", "0.0.0.0/0".into()) } else { ("CidrIpv6", "::/0".into()) };
                // Keep the per-family counts: skip one generated CIDR of the family.
                let _ = if i == 0 { cidrs4.next() } else { cidrs6.next() };
                rules.push(rule(id, true, "tcp", 443, 443, peer));
                continue;
            }
            let v6 = i % 4 == 3;
            let (protocol, from, to) = random_protocol(i, v6, &mut rng);
            let peer = if v6 {
                ("CidrIpv6", cidrs6.next().unwrap_or_else(|| "2a00::/16".into()))
            } else {
                ("CidrIpv4", cidrs4.next().unwrap_or_else(|| "20.0.0.0/8".into()))
            };
            rules.push(rule(id, egress, protocol, from, to, peer));
        }
    }
    json!({
        "InstanceId": INSTANCE,
        "SecurityGroupRules": rules,
        "NetworkInterfaces": [interface()],
    })
}

/// Parses, resolves and compiles a snapshot for [`ENI`].
pub fn pipeline(doc: &Value) -> Result<(InterfacePolicy, CompiledInterface)> {
    let text = doc.to_string();
    let snap = snapshot::parse(&text).context("parsing the generated snapshot")?;
    let (policy, _warnings) = resolve_interface(&snap, ENI).context("resolving the generated snapshot")?;
    let compiled = compile(&policy, &Limits::default()).context("compiling the generated policy")?;
    Ok((policy, compiled))
}

fn inbound_peers(policy: &InterfacePolicy) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for rule in &policy.ingress {
        for peer in &rule.peers {
            match peer {
                IpNet::V4(n) => v4.push(*n),
                IpNet::V6(n) => v6.push(*n),
            }
        }
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    (v4, v6)
}

fn udp(src: IpAddr, dst: IpAddr, dport: u16) -> Packet {
    Packet {
        src,
        dst,
        proto: proto::UDP,
        l4: L4::Ports { src: 5353, dst: dport },
        fragment: sgmirror_policy::model::Fragment::None,
    }
}

fn probe_packet(src: IpAddr, local: IpAddr, proto_number: u8, port: u16) -> Packet {
    let l4 = match proto_number {
        proto::TCP | proto::UDP => L4::Ports { src: 5353, dst: port },
        _ => L4::Icmp { icmp_type: 8, code: 0 },
    };
    Packet { l4, proto: proto_number, ..udp(src, local, port) }
}

fn verdict(policy: &InterfacePolicy, packet: &Packet) -> Verdict {
    evaluator::verdict(policy, Direction::Ingress, packet).verdict
}

/// The probes of the *services* shape for one family.
fn services_probes(
    policy: &InterfacePolicy,
    allowed: IpAddr,
    denied: IpAddr,
    stranger: IpAddr,
    local: IpAddr,
) -> Result<Probes> {
    let probes = Probes {
        stranger,
        denied: (denied, proto::UDP, PROBE_PORT),
        allowed: (allowed, proto::UDP, PROBE_PORT),
        local,
    };
    check_probes(policy, &probes)?;
    Ok(probes)
}

fn check_probes(policy: &InterfacePolicy, p: &Probes) -> Result<()> {
    let stranger = udp(p.stranger, p.local, PROBE_PORT);
    let denied = probe_packet(p.denied.0, p.local, p.denied.1, p.denied.2);
    let allowed = probe_packet(p.allowed.0, p.local, p.allowed.1, p.allowed.2);
    if verdict(policy, &stranger) != Verdict::Drop
        || verdict(policy, &denied) != Verdict::Drop
        || verdict(policy, &allowed) != Verdict::Allow
    {
        bail!("the reference evaluator disagrees with the probes chosen for the generated policy");
    }
    Ok(())
}

/// The *services* policy with `n` prefixes per family.
pub fn services(n: usize, seed: u64) -> Result<BenchPolicy> {
    let (doc, per_service4) = services_snapshot(n, true, seed);
    let (policy, compiled) = pipeline(&doc)?;
    let (v4, v6) = inbound_peers(&policy);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let per_service6: Vec<Vec<Ipv6Net>> = (0..SERVICES.len()).map(|s| v6_of_service(&policy, s)).collect();
    let pick4 = |s: usize, rng: &mut StdRng| -> Result<IpAddr> {
        let pool = &per_service4[s];
        let net = pool.get(rng.gen_range(0..pool.len().max(1))).context("a service without prefixes")?;
        Ok(IpAddr::V4(host_v4(net, rng)))
    };
    let pick6 = |s: usize, rng: &mut StdRng| -> Result<IpAddr> {
        let pool = &per_service6[s];
        let net = pool.get(rng.gen_range(0..pool.len().max(1))).context("a service without prefixes")?;
        Ok(IpAddr::V6(host_v6(net, rng)))
    };
    let probes_v4 = services_probes(
        &policy,
        pick4(ALLOWED_SERVICE, &mut rng)?,
        pick4(DENIED_SERVICE, &mut rng)?,
        IpAddr::V4(STRANGER_V4),
        IpAddr::V4(LOCAL_V4),
    )?;
    let probes_v6 = services_probes(
        &policy,
        pick6(ALLOWED_SERVICE, &mut rng)?,
        pick6(DENIED_SERVICE, &mut rng)?,
        IpAddr::V6(STRANGER_V6),
        IpAddr::V6(LOCAL_V6),
    )?;
    let pools_v4 = Pools {
        allowed: per_service4[ALLOWED_SERVICE].clone(),
        denied: per_service4[DENIED_SERVICE].clone(),
    };
    Ok(BenchPolicy { name: n.to_string(), policy, compiled, v4, v6, probes_v4, probes_v6, pools_v4 })
}

/// The IPv6 prefixes of service `s` (its rules are the ones with its port).
fn v6_of_service(policy: &InterfacePolicy, s: usize) -> Vec<Ipv6Net> {
    let service = &SERVICES[s];
    policy
        .ingress
        .iter()
        .filter(|r| match r.protocol {
            sgmirror_policy::model::Protocol::Tcp(p) => service.protocol == "tcp" && p.from == service.port,
            sgmirror_policy::model::Protocol::Udp(p) => service.protocol == "udp" && p.from == service.port,
            _ => false,
        })
        .flat_map(|r| r.peers.iter())
        .filter_map(|p| match p {
            IpNet::V6(n) => Some(*n),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// The *aws-max* policy.
pub fn aws_max(seed: u64) -> Result<BenchPolicy> {
    let doc = aws_max_snapshot(seed);
    let (policy, compiled) = pipeline(&doc)?;
    let (v4, v6) = inbound_peers(&policy);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xa115);
    let probes_v4 = aws_max_probes(&policy, IpAddr::V4(STRANGER_V4), IpAddr::V4(LOCAL_V4), &mut rng)?;
    let probes_v6 = aws_max_probes(&policy, IpAddr::V6(STRANGER_V6), IpAddr::V6(LOCAL_V6), &mut rng)?;
    Ok(BenchPolicy {
        name: "aws-max".into(),
        policy,
        compiled,
        v4,
        v6,
        probes_v4,
        probes_v6,
        pools_v4: Pools::default(),
    })
}

/// Probes of the *aws-max* policy: an allowed one from a single-port UDP rule, a
/// denied one (udp 9) from a source some rule knows.
fn aws_max_probes(
    policy: &InterfacePolicy,
    stranger: IpAddr,
    local: IpAddr,
    rng: &mut StdRng,
) -> Result<Probes> {
    let family_matches = |n: &IpNet| n.addr().is_ipv4() == local.is_ipv4();
    let host = |n: &IpNet, rng: &mut StdRng| match n {
        IpNet::V4(n) => IpAddr::V4(host_v4(n, rng)),
        IpNet::V6(n) => IpAddr::V6(host_v6(n, rng)),
    };
    let mut allowed = None;
    let mut denied = None;
    for rule in &policy.ingress {
        let Some(net) = rule.peers.iter().find(|n| family_matches(n)) else { continue };
        let src = host(net, rng);
        if allowed.is_none()
            && let sgmirror_policy::model::Protocol::Udp(p) = rule.protocol
        {
            let candidate = (src, proto::UDP, p.from);
            if verdict(policy, &probe_packet(src, local, proto::UDP, p.from)) == Verdict::Allow {
                allowed = Some(candidate);
            }
        }
        if denied.is_none() && verdict(policy, &udp(src, local, PROBE_PORT)) == Verdict::Drop {
            denied = Some((src, proto::UDP, PROBE_PORT));
        }
        if allowed.is_some() && denied.is_some() {
            break;
        }
    }
    let (Some(allowed), Some(denied)) = (allowed, denied) else {
        bail!("the aws-max policy has no usable probe sources");
    };
    let probes = Probes { stranger, denied, allowed, local };
    check_probes(policy, &probes)?;
    Ok(probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_prefixes_are_distinct_and_avoid_the_excluded_ranges() {
        let mut rng = StdRng::seed_from_u64(7);
        let p4 = prefixes_v4(2000, &mut rng);
        let p6 = prefixes_v6(2000, &mut rng);
        assert_eq!(p4.len(), 2000);
        let mut sorted = p4.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 2000);
        for w in sorted.windows(2) {
            assert!(!overlaps4(&w[0], &w[1]), "{} overlaps {}", w[0], w[1]);
        }
        for p in &p4 {
            assert!(excluded_v4().iter().all(|x| !overlaps4(x, p)), "{p} overlaps an excluded range");
        }
        for p in &p6 {
            assert!(excluded_v6().iter().all(|x| !overlaps6(x, p)), "{p} overlaps an excluded range");
        }
    }

    #[test]
    fn hosts_stay_inside_their_prefix() {
        let mut rng = StdRng::seed_from_u64(3);
        for net in prefixes_v4(200, &mut rng) {
            assert!(net.contains(&host_v4(&net, &mut rng)));
        }
        for net in prefixes_v6(200, &mut rng) {
            assert!(net.contains(&host_v6(&net, &mut rng)));
        }
    }

    #[test]
    fn services_policy_compiles_with_every_prefix_and_valid_probes() {
        let p = services(1000, 1).unwrap();
        assert_eq!(p.v4.len(), 1000);
        assert_eq!(p.v6.len(), 1000);
        assert!(p.compiled.ingress.addr4.len() >= 1000);
        assert_eq!(p.pools_v4.allowed.len(), 250);
        assert!(p.pools_v4.allowed.iter().any(|n| n.contains(&match p.probes_v4.allowed.0 {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        })));
    }

    #[test]
    fn aws_max_policy_has_a_thousand_rules_each_way() {
        let p = aws_max(1).unwrap();
        assert_eq!(p.policy.ingress.len(), 1000);
        assert_eq!(p.policy.egress.len(), 1000);
        assert_eq!(p.probes_v4.allowed.1, proto::UDP);
    }
}
