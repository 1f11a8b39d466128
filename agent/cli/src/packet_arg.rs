//! Turns `explain`'s flags into the packet the evaluator and the frame builder take.

use anyhow::{Result, bail};
use sgmirror_policy::model::{Fragment, L4, Packet, proto};

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

/// The packet `explain` judges.
pub fn packet(args: &ExplainArgs) -> Result<Packet> {
    if args.src.is_ipv4() != args.dst.is_ipv4() {
        bail!("--src {} and --dst {} are of different address families", args.src, args.dst);
    }
    let proto = parse_proto(&args.proto)?;
    let l4 = match proto {
        proto::TCP | proto::UDP => {
            let Some(dst) = args.dport else { bail!("--proto {} needs --dport", args.proto) };
            L4::Ports { src: args.sport, dst }
        }
        proto::ICMP | proto::ICMPV6 => {
            let Some(icmp_type) = args.icmp_type else {
                bail!("--proto {} needs --icmp-type (8 is an IPv4 echo request, 128 an IPv6 one)", args.proto)
            };
            if proto == proto::ICMP && args.src.is_ipv6() {
                bail!("--proto icmp is ICMP for IPv4; use --proto icmpv6 with IPv6 addresses");
            }
            if proto == proto::ICMPV6 && args.src.is_ipv4() {
                bail!("--proto icmpv6 needs IPv6 addresses");
            }
            L4::Icmp { icmp_type, code: args.icmp_code }
        }
        _ => L4::None,
    };
    Ok(Packet { src: args.src, dst: args.dst, proto, l4, fragment: Fragment::None })
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
}
