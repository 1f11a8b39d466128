//! What XDP program a link has now, as iproute2 reports it (`ip -d -j link show`),
//! and removing one that sgmirror did not attach (when told to).

use std::process::Command;

use anyhow::{Context, Result, bail};

/// An XDP program attached to a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpProgram {
    /// Kernel program id.
    pub id: u32,
    /// Program name (may be empty).
    pub name: String,
    /// `native`, `generic`, `offload` or `multi`.
    pub mode: &'static str,
}

impl std::fmt::Display for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "program id {} name {:?} ({} mode)", self.id, self.name, self.mode)
    }
}

/// The XDP program on `link`, if any.
pub fn attached(link: &str) -> Result<Option<XdpProgram>> {
    let out = Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", link])
        .output()
        .context("running `ip -d -j link show` (iproute2)")?;
    if !out.status.success() {
        bail!("ip link show dev {link}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse(&out.stdout))
}

fn parse(json: &[u8]) -> Option<XdpProgram> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let xdp = value.get(0)?.get("xdp")?;
    let mode = match xdp.get("mode")?.as_u64()? {
        1 => "native",
        2 => "generic",
        3 => "offload",
        _ => "multi",
    };
    let prog = xdp.get("prog")?;
    Some(XdpProgram {
        id: u32::try_from(prog.get("id")?.as_u64()?).ok()?,
        name: prog.get("name").and_then(|n| n.as_str()).unwrap_or("").to_owned(),
        mode,
    })
}

/// Removes a program attached through netlink (`ip link set ... xdp`); one attached
/// through a `bpf_link` of another tool cannot be removed this way, and the error
/// says so.
pub fn remove(link: &str, program: &XdpProgram) -> Result<()> {
    let flag = match program.mode {
        "native" => "xdpdrv",
        "generic" => "xdpgeneric",
        "offload" => "xdpoffload",
        _ => "xdp",
    };
    let out = Command::new("ip")
        .args(["link", "set", "dev", link, flag, "off"])
        .output()
        .context("running `ip link set ... off` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "removing the XDP {program} from {link}: {} (a program attached through a bpf_link \
             is only removed by the tool that owns it)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_program_and_mode_from_ip_json() {
        let json =
            br#"[{"ifname":"eth0","xdp":{"mode":2,"prog":{"id":42,"name":"xdp_pass","tag":"x","jited":1}}}]"#;
        assert_eq!(parse(json), Some(XdpProgram { id: 42, name: "xdp_pass".into(), mode: "generic" }));
        assert_eq!(parse(br#"[{"ifname":"eth0"}]"#), None);
    }
}
