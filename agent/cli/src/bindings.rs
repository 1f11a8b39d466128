//! Which interface (ENI) is enforced on which link.

use anyhow::{Context, Result, bail};
use sgmirror_policy::snapshot::Snapshot;

use crate::links::{self, Link};

/// An interface bound to a local link.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The link that enforces.
    pub link: Link,
    /// `eni-…`.
    pub interface_id: String,
}

/// Parses `--bind LINK=ENI_ID` pairs, or, without any, matches the snapshot's own
/// interfaces to local links by MAC address.
pub fn choose(snapshot: &Snapshot, binds: &[String]) -> Result<Vec<Binding>> {
    let bindings = if binds.is_empty() { by_mac(snapshot)? } else { explicit(snapshot, binds)? };
    let mut seen = std::collections::HashSet::new();
    for b in &bindings {
        if !seen.insert(b.link.name.clone()) {
            bail!("link {} is bound more than once", b.link.name);
        }
    }
    Ok(bindings)
}

fn explicit(snapshot: &Snapshot, binds: &[String]) -> Result<Vec<Binding>> {
    binds
        .iter()
        .map(|bind| {
            let Some((link, eni)) = bind.split_once('=') else {
                bail!("--bind {bind:?}: expected LINK=ENI_ID, for example eth0=eni-0123456789abcdef0");
            };
            if !snapshot.has_interface(eni) {
                bail!("--bind {bind:?}: the snapshot has no interface {eni:?} in NetworkInterfaces");
            }
            let link = links::by_name(link).with_context(|| format!("--bind {bind:?}"))?;
            Ok(Binding { link, interface_id: eni.to_owned() })
        })
        .collect()
}

fn by_mac(snapshot: &Snapshot) -> Result<Vec<Binding>> {
    let own = snapshot.own_interface_ids();
    let local = links::all()?;
    let mut bindings = Vec::new();
    for (eni, mac) in snapshot.interface_macs() {
        if !own.contains(&eni) {
            continue;
        }
        if let Some(link) = local.iter().find(|l| l.mac == mac) {
            bindings.push(Binding { link: link.clone(), interface_id: eni });
        }
    }
    if bindings.is_empty() {
        bail!(
            "none of the snapshot's own interfaces ({}) has a MAC address of a local link; \
             bind them explicitly with --bind LINK=ENI_ID",
            own.join(", ")
        );
    }
    Ok(bindings)
}
