//! Whether native XDP can work on a link, before trying: the Amazon ENA driver
//! refuses an XDP program when the MTU is above 3498 or when more than half of its
//! channels are in use (it needs a TX queue per RX queue for XDP_TX). Knowing this
//! first turns a cryptic `EINVAL` into a reason the log and `status` can show.

use std::{fs, path::Path};

/// ENA's largest MTU with XDP (a page minus headroom and frame overhead).
pub const ENA_XDP_MAX_MTU: u32 = 3498;

/// What sysfs and ethtool say about a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// Driver name (`ena`, `veth`, ...), when the link has a device.
    pub driver: Option<String>,
    pub mtu: Option<u32>,
    /// Combined channels in use and at most, from ETHTOOL_GCHANNELS.
    pub channels: Option<(u32, u32)>,
}

/// Why native XDP will not work, when it will not (`None`: nothing known against it).
pub fn native_xdp_obstacle(facts: &LinkFacts) -> Option<String> {
    if facts.driver.as_deref() != Some("ena") {
        return None;
    }
    if let Some(mtu) = facts.mtu
        && mtu > ENA_XDP_MAX_MTU
    {
        return Some(format!(
            "ENA supports native XDP only up to MTU {ENA_XDP_MAX_MTU}, the link has MTU {mtu} \
             (lower it with `ip link set dev LINK mtu {ENA_XDP_MAX_MTU}`)"
        ));
    }
    if let Some((combined, max)) = facts.channels
        && combined > max / 2
    {
        return Some(format!(
            "ENA needs half of its channels free for native XDP: {combined} of {max} combined channels \
             are in use (lower them with `ethtool -L LINK combined {}`)",
            max / 2
        ));
    }
    None
}

/// Reads the facts of `link` from `sys_net` (normally `/sys/class/net`) and ethtool.
pub fn read_facts(sys_net: &Path, link: &str) -> LinkFacts {
    let dir = sys_net.join(link);
    let driver = fs::read_link(dir.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let mtu = fs::read_to_string(dir.join("mtu")).ok().and_then(|s| s.trim().parse().ok());
    LinkFacts { driver, mtu, channels: channels(link) }
}

/// Combined channels (in use, maximum) through the ETHTOOL_GCHANNELS ioctl.
fn channels(link: &str) -> Option<(u32, u32)> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    #[repr(C)]
    struct Ifreq {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut EthtoolChannels,
        _pad: [u8; 16],
    }
    if link.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    let mut req = Ifreq { name: [0; libc::IFNAMSIZ], data: &mut ch, _pad: [0; 16] };
    for (dst, src) in req.name.iter_mut().zip(link.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: a datagram socket for the ioctl, closed below; the request points at
    // memory we own for the duration of the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        libc::close(fd);
        if rc != 0 {
            return None;
        }
    }
    Some((ch.combined_count, ch.max_combined))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ena(mtu: u32, channels: (u32, u32)) -> LinkFacts {
        LinkFacts { driver: Some("ena".into()), mtu: Some(mtu), channels: Some(channels) }
    }

    #[test]
    fn ena_within_its_limits_may_use_native_xdp() {
        assert_eq!(native_xdp_obstacle(&ena(1500, (4, 8))), None);
        assert_eq!(native_xdp_obstacle(&ena(3498, (2, 4))), None);
    }

    #[test]
    fn ena_with_jumbo_frames_cannot() {
        let reason = native_xdp_obstacle(&ena(9001, (2, 8))).unwrap();
        assert!(reason.contains("MTU 9001") && reason.contains("3498"), "{reason}");
    }

    #[test]
    fn ena_with_more_than_half_its_channels_in_use_cannot() {
        let reason = native_xdp_obstacle(&ena(1500, (8, 8))).unwrap();
        assert!(reason.contains("8 of 8") && reason.contains("combined 4"), "{reason}");
        assert!(native_xdp_obstacle(&ena(1500, (5, 8))).is_some());
    }

    #[test]
    fn other_drivers_are_left_to_the_kernel() {
        let facts = LinkFacts { driver: Some("veth".into()), mtu: Some(9000), channels: Some((8, 8)) };
        assert_eq!(native_xdp_obstacle(&facts), None);
        assert_eq!(native_xdp_obstacle(&LinkFacts::default()), None);
    }

    #[test]
    fn facts_come_from_sysfs() {
        let root = std::env::temp_dir().join(format!("sgm-sysfs-{}", std::process::id()));
        let dev = root.join("eth9");
        std::fs::create_dir_all(dev.join("device")).unwrap();
        std::fs::create_dir_all(root.join("drivers/ena")).unwrap();
        std::os::unix::fs::symlink(root.join("drivers/ena"), dev.join("device/driver")).unwrap();
        std::fs::write(dev.join("mtu"), "9001\n").unwrap();
        let facts = read_facts(&root, "eth9");
        assert_eq!((facts.driver.as_deref(), facts.mtu), (Some("ena"), Some(9001)));
        assert!(native_xdp_obstacle(&facts).unwrap().contains("MTU 9001"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
