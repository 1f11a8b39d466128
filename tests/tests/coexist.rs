//! Coexistence with other eBPF users of the same link: an XDP program sgmirror did
//! not attach is refused with a message naming it, and replaced only with
//! --replace-foreign-xdp; another tool's TCX egress program keeps running next to
//! sgmirror's (TCX is a multi-program hook).

use std::{net::IpAddr, time::Duration};

use aya::programs::{SchedClassifier, TcAttachType};
use sgmirror_e2e::{
    agent::{Agent, PinRoot, run_to_end},
    foreign::{ForeignTcx, ForeignXdp, ifindex},
    lab::Lab,
    peer::ping,
    snapshots::{Rule, one_group},
    tempdir::TempDir,
};

fn xdp_prog(link: &str) -> Option<(u64, String)> {
    let out =
        std::process::Command::new("ip").args(["-d", "-j", "link", "show", "dev", link]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prog = json.get(0)?.get("xdp")?.get("prog")?;
    Some((prog["id"].as_u64()?, prog["name"].as_str()?.to_owned()))
}

fn tcx_names(link: &str) -> Vec<String> {
    let (_, programs) = SchedClassifier::query_tcx(link, TcAttachType::Egress).expect("TCX query");
    programs.iter().map(|p| p.name_as_str().unwrap_or("").to_owned()).collect()
}

#[test]
fn a_foreign_xdp_program_is_refused_unless_replacing_is_asked_and_tcx_users_coexist() {
    let lab = Lab::new(&["198.18.104.1/24"], &["198.18.104.2/24"]);
    let (host, peer): (IpAddr, IpAddr) = ("198.18.104.1".parse().unwrap(), "198.18.104.2".parse().unwrap());
    let rules = [
        Rule { id: "sgr-icmp", egress: false, proto: "icmp", from: 8, to: -1, cidr: "198.18.104.0/24" },
        Rule { id: "sgr-out", egress: true, proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0" },
    ];
    let dir = TempDir::new("sgm-coexist");
    let snap = dir.path().join("snapshot.json");
    std::fs::write(&snap, one_group("eni-co104", "02:00:00:00:01:04", &["198.18.104.1"], &rules).to_string())
        .unwrap();
    let pins = PinRoot::new();
    let bind = format!("{}=eni-co104", lab.host_link);
    let base = ["--snapshot", snap.to_str().unwrap(), "--bind", &bind, "--no-metrics", "--drop-log", "off"];

    let foreign_xdp = ForeignXdp::attach(&lab.host_link);
    let _foreign_tcx = ForeignTcx::attach(ifindex(&lab.host_link));
    let (foreign_id, name) = xdp_prog(&lab.host_link).expect("the foreign XDP program is attached");
    assert_eq!(name, "xdp_foreign");

    // Refused, with the program named and the way out given; nothing changed.
    let mut args: Vec<String> = ["run"].iter().chain(base.iter()).map(|s| (*s).to_owned()).collect();
    args.extend(pins.args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_to_end(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the agent accepted a link with a foreign XDP program:\n{stderr}");
    assert!(
        stderr.contains(&format!("program id {foreign_id} name \"xdp_foreign\""))
            && stderr.contains("--replace-foreign-xdp"),
        "the refusal names the program and the flag:\n{stderr}"
    );
    assert_eq!(xdp_prog(&lab.host_link).map(|p| p.0), Some(foreign_id), "the foreign program is untouched");
    assert_eq!(tcx_names(&lab.host_link), ["tcx_foreign"], "nothing of sgmirror's attached");

    // With the flag: replaced, and the foreign TCX program runs on beside sgmirror's.
    let mut with_flag = base.to_vec();
    with_flag.push("--replace-foreign-xdp");
    let mut agent = Agent::start_in(&with_flag, &pins);
    assert!(agent.log().contains("replacing the foreign XDP"), "{}", agent.log());
    let (id, name) = xdp_prog(&lab.host_link).expect("XDP attached");
    assert_ne!(id, foreign_id);
    assert_eq!(name, "sgm_xdp_in");
    let tcx = tcx_names(&lab.host_link);
    assert_eq!(tcx.len(), 2, "both TCX egress programs: {tcx:?}");
    assert!(tcx.contains(&"tcx_foreign".to_owned()), "{tcx:?}");
    // Echo requests in (sgmirror's XDP allows them), replies out through both TCX
    // programs.
    assert_eq!(ping(&lab.netns, peer, host, 3), 3, "ping through both programs");
    std::thread::sleep(Duration::from_millis(50));

    let (_, status) = agent.stop();
    assert!(status.success());
    assert!(pins.detach(None).status.success());
    assert_eq!(tcx_names(&lab.host_link), ["tcx_foreign"], "detach leaves the foreign TCX program");
    assert_eq!(xdp_prog(&lab.host_link), None);
    drop(foreign_xdp);
}
