//! Turns `explain`'s flags, and the entries of a `--trace` file, into the packets the
//! evaluator and the frame builder take.

use std::net::IpAddr;

use anyhow::{Result, bail};
use sgmirror_policy::model::{Embedded, Fragment, L4, Packet, StatefulPacket, Transport, proto, tcp_flags};

use crate::args::ExplainArgs;

/// Parses `--proto`: a name or a protocol number, canonicalised like the snapshot's
/// `IpProtocol` (6 is tcp, 58 is icmpv6, …).
pub fn parse_proto(text: &str) -> Result<u8> {
    let lower = text.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        "icmp" => proto::ICMP,
        "icmpv6" => proto::ICMPV6,
        number => match number.parse::<u8>() {
            Ok(n) => n,
            Err(_) => bail!("--proto {text:?}: expected tcp, udp, icmp, icmpv6 or a protocol number 0-255"),
        },
    })
}

/// Parses TCP flags written as letters: `S` SYN, `A` ACK, `F` FIN, `R` RST (`SA` is a
/// SYN-ACK).
pub fn parse_tcp_flags(text: &str) -> Result<u8> {
    text.chars().try_fold(0u8, |flags, c| {
        Ok(flags
            | match c.to_ascii_uppercase() {
                'S' => tcp_flags::SYN,
                'A' => tcp_flags::ACK,
                'F' => tcp_flags::FIN,
                'R' => tcp_flags::RST,
                other => bail!("TCP flags {text:?}: {other:?} is not one of S, A, F, R"),
            })
    })
}

/// One packet as the command line or a trace entry describes it.
#[derive(Debug, Clone)]
pub struct PacketSpec {
    pub proto: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: u8,
    pub icmp_id: u16,
    pub tcp_flags: String,
}

/// ICMP errors (v4 3, 11, 12; v6 1–4) quote the packet that caused them.
pub fn is_icmp_error(proto: u8, icmp_type: u8) -> bool {
    match proto {
        proto::ICMP => matches!(icmp_type, 3 | 11 | 12),
        proto::ICMPV6 => matches!(icmp_type, 1..=4),
        _ => false,
    }
}

impl PacketSpec {
    /// The `explain` flags of the judged packet.
    pub fn from_args(args: &ExplainArgs) -> PacketSpec {
        PacketSpec {
            proto: args.proto.clone(),
            src: args.src,
            dst: args.dst,
            sport: args.sport,
            dport: args.dport,
            icmp_type: args.icmp_type,
            icmp_code: args.icmp_code,
            icmp_id: args.icmp_id,
            tcp_flags: args.tcp_flags.clone(),
        }
    }

    /// The packet, with `quoted` as the header an ICMP error carries.
    pub fn build(&self, quoted: Option<&StatefulPacket>) -> Result<StatefulPacket> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            bail!("source {} and destination {} are of different address families", self.src, self.dst);
        }
        let proto = parse_proto(&self.proto)?;
        let mut transport = Transport::default();
        let l4 = match proto {
            proto::TCP | proto::UDP => {
                let Some(dst) = self.dport else { bail!("protocol {} needs a destination port", self.proto) };
                if proto == proto::TCP {
                    transport.tcp_flags = parse_tcp_flags(&self.tcp_flags)?;
                }
                L4::Ports { src: self.sport, dst }
            }
            proto::ICMP | proto::ICMPV6 => {
                let Some(icmp_type) = self.icmp_type else {
                    bail!(
                        "protocol {} needs an ICMP type (8 is an IPv4 echo request, 128 an IPv6 one)",
                        self.proto
                    )
                };
                if proto == proto::ICMP && self.src.is_ipv6() {
                    bail!("icmp is ICMP for IPv4; use icmpv6 with IPv6 addresses");
                }
                if proto == proto::ICMPV6 && self.src.is_ipv4() {
                    bail!("icmpv6 needs IPv6 addresses");
                }
                transport.icmp_id = self.icmp_id;
                if is_icmp_error(proto, icmp_type) {
                    transport.embedded = quoted.map(|q| Embedded {
                        src: q.packet.src,
                        dst: q.packet.dst,
                        proto: q.packet.proto,
                        l4: q.packet.l4,
                        icmp_id: q.transport.icmp_id,
                    });
                }
                L4::Icmp { icmp_type, code: self.icmp_code }
            }
            _ => L4::None,
        };
        let packet = Packet { src: self.src, dst: self.dst, proto, l4, fragment: Fragment::None };
        Ok(StatefulPacket { packet, transport })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_canonical() {
        assert_eq!(parse_proto("TCP").unwrap(), 6);
        assert_eq!(parse_proto("6").unwrap(), 6);
        assert_eq!(parse_proto("icmpv6").unwrap(), 58);
        assert_eq!(parse_proto("50").unwrap(), 50);
        assert!(parse_proto("300").is_err());
        assert!(parse_proto("gre").is_err());
    }

    #[test]
    fn tcp_flags_are_letters() {
        assert_eq!(parse_tcp_flags("SA").unwrap(), tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(parse_tcp_flags("").unwrap(), 0);
        assert!(parse_tcp_flags("SX").is_err());
    }
}
