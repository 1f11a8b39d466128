//! The demo's traffic: TCP connects and pings from the peer namespace to the host, each
//! with the verdict the web-server policy gives it, and a table of the outcomes.
//!
//! TCP connects are made by the xtask itself, from a thread inside the peer namespace,
//! because the source address must be chosen (bash's `/dev/tcp` cannot). A connection
//! that completes or is refused (RST) was delivered; one that times out was dropped.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::lab::{self, HOST_V4, HOST_V6, ICMP_SOURCE, PEER_NS, PEER_V4, PEER_V6, RDP_ALLOWED, RDP_DENIED};

/// Long enough for a SYN retransmission, short enough to keep the demo quick.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a probe sends.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Tcp(u16),
    Ping,
}

/// One probe and the verdict the web-server policy gives it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub what: &'static str,
    pub kind: Kind,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub allowed: bool,
}

/// What happened to a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Delivered(String),
    Dropped,
    Error(String),
}

impl Observed {
    fn text(&self) -> String {
        match self {
            Observed::Delivered(how) => format!("delivered ({how})"),
            Observed::Dropped => "dropped".to_owned(),
            Observed::Error(e) => format!("error: {e}"),
        }
    }
}

/// A probe with what was expected and what was seen.
#[derive(Debug)]
pub struct Outcome {
    pub probe: Probe,
    pub expect_delivered: bool,
    pub observed: Observed,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(
            (&self.observed, self.expect_delivered),
            (Observed::Delivered(_), true) | (Observed::Dropped, false)
        )
    }
}

/// The probes, against `examples/web-server.json`: tcp 80/443 from anywhere, tcp 3389
/// from 198.51.100.7/32 only, ICMP echo requests from 203.0.113.0/24 only.
pub fn probes() -> Vec<Probe> {
    let v4 = IpAddr::V4;
    let v6 = IpAddr::V6;
    let p = |what, kind, src, dst, allowed| Probe { what, kind, src, dst, allowed };
    vec![
        p("web (tcp 80) from anywhere", Kind::Tcp(80), v4(PEER_V4), v4(HOST_V4), true),
        p("web (tcp 443) from anywhere", Kind::Tcp(443), v4(PEER_V4), v4(HOST_V4), true),
        p("web (tcp 80) over IPv6", Kind::Tcp(80), v6(PEER_V6), v6(HOST_V6), true),
        p("web (tcp 443) over IPv6", Kind::Tcp(443), v6(PEER_V6), v6(HOST_V6), true),
        p("RDP (tcp 3389) from the allowed /32", Kind::Tcp(3389), v4(RDP_ALLOWED), v4(HOST_V4), true),
        p("RDP (tcp 3389) from its neighbour", Kind::Tcp(3389), v4(RDP_DENIED), v4(HOST_V4), false),
        p("RDP (tcp 3389) over IPv6", Kind::Tcp(3389), v6(PEER_V6), v6(HOST_V6), false),
        p("SSH (tcp 22), no rule", Kind::Tcp(22), v4(PEER_V4), v4(HOST_V4), false),
        p("ping from 203.0.113.0/24", Kind::Ping, v4(ICMP_SOURCE), v4(HOST_V4), true),
        p("ping from elsewhere", Kind::Ping, v4(PEER_V4), v4(HOST_V4), false),
        p("ping over IPv6, no rule", Kind::Ping, v6(PEER_V6), v6(HOST_V6), false),
    ]
}

/// Listens on the host's lab addresses for the ports the probes use, so that allowed
/// connects complete. A port another program holds on the wildcard address is left to
/// it: that program then answers, which still shows delivery.
pub fn start_listeners() {
    for ip in [IpAddr::V4(HOST_V4), IpAddr::V6(HOST_V6)] {
        for port in [80, 443, 3389] {
            let addr = SocketAddr::new(ip, port);
            match TcpListener::bind(addr) {
                Ok(listener) => {
                    std::thread::spawn(move || {
                        // Accept and close; the connect itself is the observation.
                        for conn in listener.incoming() {
                            drop(conn);
                        }
                    });
                }
                Err(e) => eprintln!(
                    "[demo] note: cannot listen on {addr} ({e}); whatever holds the port answers instead"
                ),
            }
        }
    }
}

/// Sends one probe from the peer namespace.
pub fn send(probe: &Probe) -> Observed {
    match probe.kind {
        Kind::Tcp(port) => {
            let (src, dst) = (probe.src, SocketAddr::new(probe.dst, port));
            match lab::in_peer(move || tcp_connect(src, dst)) {
                Ok(observed) => observed,
                Err(e) => Observed::Error(format!("{e:#}")),
            }
        }
        Kind::Ping => ping(probe.src, probe.dst),
    }
}

fn tcp_connect(src: IpAddr, dst: SocketAddr) -> Observed {
    let attempt = || -> std::io::Result<Observed> {
        let socket = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SocketAddr::new(src, 0).into())?;
        Ok(match socket.connect_timeout(&dst.into(), CONNECT_TIMEOUT) {
            Ok(()) => Observed::Delivered("connected".to_owned()),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Observed::Delivered("refused".to_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => Observed::Dropped,
            Err(e) => Observed::Error(e.to_string()),
        })
    };
    attempt().unwrap_or_else(|e| Observed::Error(e.to_string()))
}

fn ping(src: IpAddr, dst: IpAddr) -> Observed {
    let out = Command::new("ip")
        .args(["netns", "exec", PEER_NS, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-I"])
        .arg(src.to_string())
        .arg(dst.to_string())
        .output();
    match out {
        Err(e) => Observed::Error(format!("cannot run ping: {e}")),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            match out.status.code() {
                Some(0) => Observed::Delivered(format!("{}/3 replies", received(&stdout).unwrap_or(0))),
                Some(1) => Observed::Dropped,
                _ => Observed::Error(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            }
        }
    }
}

/// The `N received` count of ping's summary line.
fn received(stdout: &str) -> Option<u32> {
    stdout.split(',').find_map(|part| part.trim().strip_suffix(" received")?.trim().parse().ok())
}

/// Prints the outcomes as a table and returns how many differ from expectation.
pub fn print_table(outcomes: &[Outcome]) -> usize {
    println!();
    println!("{:<38} {:<16} {:<24} {:<10} {:<26} RESULT", "PROBE", "FROM", "TO", "EXPECTED", "OBSERVED");
    for o in outcomes {
        let to = match o.probe.kind {
            Kind::Tcp(port) => SocketAddr::new(o.probe.dst, port).to_string(),
            Kind::Ping => format!("{} (echo)", o.probe.dst),
        };
        let expected = if o.expect_delivered { "delivered" } else { "dropped" };
        println!(
            "{:<38} {:<16} {:<24} {:<10} {:<26} {}",
            o.probe.what,
            o.probe.src,
            to,
            expected,
            o.observed.text(),
            if o.ok() { "OK" } else { "FAIL" }
        );
    }
    outcomes.iter().filter(|o| !o.ok()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pings_received_count() {
        let out = "3 packets transmitted, 2 received, 33.3333% packet loss, time 401ms\n";
        assert_eq!(received(out), Some(2));
        assert_eq!(received("3 packets transmitted, 0 received, +3 errors"), Some(0));
        assert_eq!(received("garbage"), None);
    }

    #[test]
    fn outcome_ok_compares_expectation_and_observation() {
        let probe = probes().remove(0);
        let o = |expect_delivered, observed| Outcome { probe: probe.clone(), expect_delivered, observed };
        assert!(o(true, Observed::Delivered("connected".into())).ok());
        assert!(o(false, Observed::Dropped).ok());
        assert!(!o(true, Observed::Dropped).ok());
        assert!(!o(false, Observed::Delivered("refused".into())).ok());
        assert!(!o(false, Observed::Error("x".into())).ok());
    }

    #[test]
    fn probes_cover_both_verdicts_and_both_families() {
        let all = probes();
        assert!(all.iter().any(|p| p.allowed) && all.iter().any(|p| !p.allowed));
        assert!(all.iter().any(|p| p.src.is_ipv6() && p.allowed));
        assert!(all.iter().any(|p| p.src.is_ipv6() && !p.allowed));
        assert!(all.iter().all(|p| p.src.is_ipv6() == p.dst.is_ipv6()));
    }
}
