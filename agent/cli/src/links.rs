//! Local network links, read from sysfs: names, MAC addresses and ifindexes.

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};

/// One Linux network device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Device name (`eth0`).
    pub name: String,
    /// MAC address, lower case.
    pub mac: String,
    /// Interface index in this network namespace.
    pub ifindex: u32,
}

const SYS_NET: &str = "/sys/class/net";

/// Every link of this network namespace.
pub fn all() -> Result<Vec<Link>> {
    let mut links = Vec::new();
    for entry in fs::read_dir(SYS_NET).with_context(|| format!("listing {SYS_NET}"))? {
        let entry = entry.with_context(|| format!("listing {SYS_NET}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(link) = read(&entry.path(), &name) {
            links.push(link);
        }
    }
    links.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(links)
}

/// The link called `name`, or an error that says it does not exist.
pub fn by_name(name: &str) -> Result<Link> {
    let dir = Path::new(SYS_NET).join(name);
    if name.contains('/') || !dir.exists() {
        bail!("no link named {name:?} in this network namespace");
    }
    read(&dir, name)
}

fn read(dir: &Path, name: &str) -> Result<Link> {
    let attribute = |file: &str| {
        let path = dir.join(file);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let mac = attribute("address")?.trim().to_ascii_lowercase();
    let ifindex =
        attribute("ifindex")?.trim().parse().with_context(|| format!("reading the ifindex of {name}"))?;
    Ok(Link { name: name.to_owned(), mac, ifindex })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_found_by_name() {
        let lo = by_name("lo").unwrap();
        assert_eq!(lo.mac, "00:00:00:00:00:00");
        assert!(all().unwrap().contains(&lo));
        assert!(by_name("no-such-link0").is_err());
        assert!(by_name("../lo").is_err());
    }
}
