//! The AWS test bed: moto's EC2 emulator, the project's IMDS stand-in and a paging,
//! fault-injecting proxy, each a child process bound to 127.0.0.1 and killed on drop
//! (also when a test panics), plus the scenario builder and the comparison of a
//! snapshot's resolution with the policy the scenario defined.
//!
//! The processes run from the moto venv that `cargo xtask setup` makes
//! (`SGMIRROR_MOTO_VENV`, by default `<workspace>/target/tools/moto-venv`); without it
//! the tests fail — they never skip.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use serde_json::Value;
use sgmirror_policy::model::{IcmpMatch, InterfacePolicy, Protocol, ResolvedRule};

use crate::{sgmirror_bin, workspace_root};

/// How long a fixture process may take to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The moto venv; panics with what to do when it is missing.
pub fn venv() -> PathBuf {
    let path = std::env::var_os("SGMIRROR_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/moto-venv"));
    assert!(
        path.join("bin/moto_server").exists() && path.join("bin/python").exists(),
        "the moto venv is missing at {}: run `cargo xtask setup`",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    venv().join("bin/python")
}

fn fixture(name: &str) -> String {
    workspace_root().join("tests/fixtures/aws").join(name).display().to_string()
}

/// A child process killed (and reaped) on drop.
struct Proc {
    child: Child,
    what: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a fixture that prints `listening PORT` first, and returns it with the port.
fn start_listening(what: &'static str, cmd: &mut Command) -> (Proc, u16) {
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc { child, what };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(READY_TIMEOUT)
        .unwrap_or_else(|_| panic!("{what} did not start within {READY_TIMEOUT:?}"));
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{what} said {line:?} instead of `listening PORT`"));
    (proc, port)
}

/// A port that was free a moment ago (for moto, which cannot report a port it chose).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("binding port 0").local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} does not listen on {port} after {READY_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; returns status and body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(port, method, path, &[], body)
}

/// [`http`] with extra request headers.
pub fn http_with(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connecting to {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// moto's EC2 emulator (`moto_server`), fresh for each test.
pub struct Moto {
    _proc: Proc,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let proc = Proc { child, what: "moto_server" };
        wait_listening(port, proc.what);
        Moto { _proc: proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Builds scenario `name` (`scenario.py build`): ids, MACs, expected policies.
    pub fn build(&self, name: &str) -> Scenario {
        Scenario(run_json(&[&fixture("scenario.py"), &self.url(), "build", name]))
    }

    /// One mutation (`scenario.py op`), e.g. `{"op": "revoke", …}`.
    pub fn op(&self, req: Value) -> Value {
        run_json(&[&fixture("scenario.py"), &self.url(), "op", &req.to_string()])
    }
}

fn run_json(args: &[&str]) -> Value {
    let out = Command::new(python()).args(args).output().expect("running the venv's python");
    assert!(out.status.success(), "python {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("fixture output is JSON")
}

/// What `scenario.py build` printed.
pub struct Scenario(pub Value);

impl Scenario {
    /// The id the builder gave a name (`i_app`, `sg web`, …).
    pub fn id(&self, name: &str) -> String {
        self.0["names"][name].as_str().unwrap_or_else(|| panic!("scenario has no {name}")).to_owned()
    }

    /// The expected resolved policy of instance `iid`, one entry per own ENI.
    pub fn expected(&self, iid: &str) -> Vec<EniPolicy> {
        let list = self.0["instances"][iid].as_array().unwrap_or_else(|| panic!("no expectation for {iid}"));
        list.iter().map(EniPolicy::from_expected).collect()
    }
}

/// The IMDS stand-in (`imds.py`), serving one instance from moto's live state.
pub struct Imds {
    proc: Option<Proc>,
    pub port: u16,
    moto_url: String,
    instance: String,
}

impl Imds {
    pub fn start(moto: &Moto, instance: &str) -> Imds {
        let (proc, port) = start_listening(
            "imds.py",
            Command::new(python()).args([&fixture("imds.py"), &moto.url(), instance]),
        );
        Imds { proc: Some(proc), port, moto_url: moto.url(), instance: instance.to_owned() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves another instance from now on.
    pub fn set_instance(&mut self, instance: &str) {
        let (status, _) =
            http(self.port, "POST", "/__imds/config", &format!("{{\"instance_id\":\"{instance}\"}}"));
        assert_eq!(status, 200);
        self.instance = instance.to_owned();
    }

    /// Stops answering (the process is killed: connections are refused).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Starts again on the same port.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let (proc, _) = start_listening(
            "imds.py",
            Command::new(python()).args([
                &fixture("imds.py"),
                &self.moto_url,
                &self.instance,
                "us-east-1",
                &port,
            ]),
        );
        self.proc = Some(proc);
    }
}

/// The paging, fault-injecting, counting proxy (`proxy.py`) in front of moto.
pub struct Proxy {
    _proc: Proc,
    pub port: u16,
}

impl Proxy {
    pub fn start(moto: &Moto) -> Proxy {
        let (proc, port) =
            start_listening("proxy.py", Command::new(python()).args([&fixture("proxy.py"), &moto.url()]));
        Proxy { _proc: proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls per Action since the last reset.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let (_, body) = http(self.port, "GET", "/__proxy/calls", "");
        serde_json::from_str(&body).expect("calls are JSON")
    }

    /// Sum of all calls since the last reset.
    pub fn total(&self) -> u64 {
        self.calls().values().sum()
    }

    pub fn reset_calls(&self) {
        http(self.port, "DELETE", "/__proxy/calls", "");
    }

    /// `[[unix_time, action, outcome], …]` since the last reset.
    pub fn log(&self) -> Vec<(f64, String, String)> {
        let (_, body) = http(self.port, "GET", "/__proxy/log", "");
        serde_json::from_str(&body).expect("log is JSON")
    }

    /// Forces pages of `size` items (0: no paging).
    pub fn set_page_size(&self, size: usize) {
        let (status, _) = http(self.port, "POST", "/__proxy/config", &format!("{{\"page_size\":{size}}}"));
        assert_eq!(status, 200);
    }

    /// Replaces the fault list (see proxy.py).
    pub fn set_faults(&self, faults: Value) {
        let (status, _) = http(self.port, "POST", "/__proxy/faults", &faults.to_string());
        assert_eq!(status, 200);
    }

    pub fn clear_faults(&self) {
        http(self.port, "DELETE", "/__proxy/faults", "");
    }
}

/// The environment every agent process gets: dummy credentials and a Region, and no
/// shared config or credentials file of the machine.
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs `sgmirror snapshot ARGS` with `env` added to [`aws_env`] (and the endpoint
/// variables of the test process removed).
pub fn snapshot(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sgmirror_bin());
    cmd.arg("snapshot").args(args);
    for k in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_PROFILE"]
    {
        cmd.env_remove(k);
    }
    cmd.envs(aws_env());
    cmd.envs(env.iter().copied());
    cmd.output().expect("running sgmirror snapshot")
}

/// `sgmirror snapshot --ec2-endpoint PROXY --imds-endpoint IMDS`, asserted to succeed;
/// returns the document.
pub fn snapshot_ok(proxy: &Proxy, imds: &Imds) -> String {
    let out = snapshot(&["--ec2-endpoint", &proxy.url(), "--imds-endpoint", &imds.url()], &[]);
    assert!(out.status.success(), "sgmirror snapshot failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("snapshot is UTF-8")
}

/// One rule, normalised for comparison: protocol name or number, ports (or ICMP type
/// and code, -1 for all), and the set of prefixes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleView {
    pub id: String,
    pub group: String,
    pub proto: String,
    pub from: i64,
    pub to: i64,
    pub peers: BTreeSet<IpNet>,
}

/// One ENI's resolved policy, normalised: groups sorted (an ENI's policy is the union
/// of its groups' rules, so their order means nothing), rules sorted by id in each
/// direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniPolicy {
    pub eni: String,
    pub mac: String,
    pub groups: Vec<String>,
    pub addresses: BTreeSet<IpAddr>,
    pub ingress: Vec<RuleView>,
    pub egress: Vec<RuleView>,
}

impl EniPolicy {
    fn from_expected(v: &Value) -> EniPolicy {
        let s = |v: &Value| v.as_str().expect("string").to_owned();
        let rules = |dir: &str| {
            let mut out: Vec<RuleView> = v[dir]
                .as_array()
                .expect("rules")
                .iter()
                .map(|r| RuleView {
                    id: s(&r["id"]),
                    group: s(&r["group"]),
                    proto: s(&r["proto"]),
                    from: r["from"].as_i64().expect("from"),
                    to: r["to"].as_i64().expect("to"),
                    peers: r["peers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| s(p).parse().expect("a prefix"))
                        .collect(),
                })
                .collect();
            out.sort();
            out
        };
        EniPolicy {
            eni: s(&v["eni"]),
            mac: s(&v["mac"]).to_lowercase(),
            groups: sorted(v["groups"].as_array().unwrap().iter().map(s).collect()),
            addresses: v["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| s(a).parse().expect("an address"))
                .collect(),
            ingress: rules("ingress"),
            egress: rules("egress"),
        }
    }

    fn from_resolved(p: &InterfacePolicy) -> EniPolicy {
        let view = |rules: &[ResolvedRule]| {
            let mut out: Vec<RuleView> = rules
                .iter()
                .map(|r| {
                    let (proto, from, to) = protocol_view(&r.protocol);
                    RuleView {
                        id: r.id.clone(),
                        group: r.group_id.clone(),
                        proto,
                        from,
                        to,
                        peers: r.peers.iter().copied().collect(),
                    }
                })
                .collect();
            out.sort();
            out
        };
        EniPolicy {
            eni: p.interface_id.clone(),
            mac: p.mac.clone().unwrap_or_default().to_lowercase(),
            groups: sorted(p.groups.clone()),
            addresses: p.addresses.iter().copied().collect(),
            ingress: view(&p.ingress),
            egress: view(&p.egress),
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn icmp_view(m: &IcmpMatch) -> (i64, i64) {
    match m {
        IcmpMatch::All => (-1, -1),
        IcmpMatch::Type { icmp_type } => (i64::from(*icmp_type), -1),
        IcmpMatch::TypeCode { icmp_type, code } => (i64::from(*icmp_type), i64::from(*code)),
    }
}

fn protocol_view(p: &Protocol) -> (String, i64, i64) {
    match p {
        Protocol::All => ("-1".into(), -1, -1),
        Protocol::Tcp(r) => ("tcp".into(), i64::from(r.from), i64::from(r.to)),
        Protocol::Udp(r) => ("udp".into(), i64::from(r.from), i64::from(r.to)),
        Protocol::Icmp(m) => {
            let (t, c) = icmp_view(m);
            ("icmp".into(), t, c)
        }
        Protocol::Icmpv6(m) => {
            let (t, c) = icmp_view(m);
            ("icmpv6".into(), t, c)
        }
        Protocol::Number(n) => (n.to_string(), -1, -1),
    }
}

/// Parses a snapshot document and resolves every own ENI with `sgmirror-policy`,
/// ordered by the ENI order `expected` uses (ENIs it does not list come last).
pub fn resolve(doc: &str) -> Vec<EniPolicy> {
    let snap =
        sgmirror_policy::snapshot::parse(doc).unwrap_or_else(|e| panic!("the snapshot does not parse: {e}"));
    snap.own_interface_ids()
        .iter()
        .map(|id| {
            let (policy, _warnings) =
                sgmirror_policy::resolve::resolve_interface(&snap, id).expect("resolving");
            EniPolicy::from_resolved(&policy)
        })
        .collect()
}

/// Asserts that the resolution of `doc` is `expected`, ENI by ENI and rule by rule,
/// naming the first difference.
pub fn assert_resolves_to(doc: &str, expected: &[EniPolicy]) {
    let mut got = resolve(doc);
    let order: Vec<&str> = expected.iter().map(|e| e.eni.as_str()).collect();
    got.sort_by_key(|e| order.iter().position(|id| *id == e.eni).unwrap_or(usize::MAX));
    let got_ids: Vec<&str> = got.iter().map(|e| e.eni.as_str()).collect();
    assert_eq!(got_ids, order, "own ENIs differ");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.mac, e.mac, "{}: MAC", e.eni);
        assert_eq!(g.groups, e.groups, "{}: groups", e.eni);
        assert_eq!(g.addresses, e.addresses, "{}: addresses", e.eni);
        for (dir, gr, er) in [("ingress", &g.ingress, &e.ingress), ("egress", &g.egress, &e.egress)] {
            let gids: Vec<&str> = gr.iter().map(|r| r.id.as_str()).collect();
            let eids: Vec<&str> = er.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(gids, eids, "{} {dir}: rule ids", e.eni);
            for (a, b) in gr.iter().zip(er) {
                assert_eq!(a, b, "{} {dir}: rule {}", e.eni, b.id);
            }
        }
    }
}

/// Gives `link` the MAC address `mac` (an ENI's, so the agent binds it).
pub fn set_mac(link: &str, mac: &str) {
    crate::sh("ip", &["link", "set", "dev", link, "down"]);
    crate::sh("ip", &["link", "set", "dev", link, "address", mac]);
    crate::sh("ip", &["link", "set", "dev", link, "up"]);
}

/// The flags of `sgmirror run --source aws` in enforce mode, without metrics, against
/// `proxy` (EC2) and `imds`, refreshing every `refresh_ms` and checking IMDS every
/// `imds_ms`.
pub fn run_args(proxy: &Proxy, imds: &Imds, refresh_ms: u64, imds_ms: u64) -> Vec<String> {
    let mut args: Vec<String> =
        ["--source", "aws", "--mode", "enforce", "--no-metrics"].map(String::from).into();
    args.extend(["--ec2-endpoint".into(), proxy.url(), "--imds-endpoint".into(), imds.url()]);
    args.extend(["--refresh-interval-ms".into(), refresh_ms.to_string()]);
    args.extend(["--imds-interval-ms".into(), imds_ms.to_string()]);
    args
}
