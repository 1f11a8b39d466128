//! IMDSv2 discovery: who we are (instance, Region) and every ENI attached to us, by MAC.
//!
//! IMDS is free and not throttled per account, so it is also the cheap change detector:
//! [`ImdsReader::local_state`] reads only what decides the local policy inputs (the MAC
//! list and each MAC's groups and addresses) and runs every few seconds; the EC2 API is
//! called only when that changes or on the slow timer.

use std::collections::BTreeMap;

use aws_config::imds::client::error::ImdsError;

use crate::error::AwsError;

const MACS: &str = "/latest/meta-data/network/interfaces/macs/";

/// The message of an IMDS error whose answer was 401 (the session token was refused).
pub(crate) const UNAUTHORIZED: &str = "HTTP 401";

/// One ENI as IMDS describes it (`network/interfaces/macs/<mac>/…`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImdsEni {
    /// MAC address, lower case.
    pub mac: String,
    /// `interface-id`.
    pub interface_id: String,
    /// `security-group-ids`, sorted.
    pub security_group_ids: Vec<String>,
    /// `local-ipv4s` (absent on IPv6-only ENIs), primary first as IMDS lists them.
    pub local_ipv4s: Vec<String>,
    /// `ipv6s` (absent on IPv4-only ENIs).
    pub ipv6s: Vec<String>,
    /// `vpc-id`.
    pub vpc_id: Option<String>,
    /// `subnet-id`.
    pub subnet_id: Option<String>,
    /// `vpc-ipv4-cidr-block` (the primary block).
    pub vpc_ipv4_cidr_block: Option<String>,
    /// `vpc-ipv4-cidr-blocks`.
    pub vpc_ipv4_cidr_blocks: Vec<String>,
    /// `vpc-ipv6-cidr-blocks`.
    pub vpc_ipv6_cidr_blocks: Vec<String>,
    /// `subnet-ipv4-cidr-block`.
    pub subnet_ipv4_cidr_block: Option<String>,
    /// `subnet-ipv6-cidr-blocks`.
    pub subnet_ipv6_cidr_blocks: Vec<String>,
    /// `device-number`.
    pub device_number: Option<u32>,
    /// `network-card-index`.
    pub network_card_index: Option<u32>,
}

/// Everything IMDS tells about this instance that the snapshot needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalView {
    /// `instance-id`.
    pub instance_id: String,
    /// `placement/region`.
    pub region: String,
    /// Every attached ENI, sorted by MAC.
    pub enis: Vec<ImdsEni>,
}

impl LocalView {
    /// The change-relevant part of this view, to compare with a later [`LocalState`].
    pub fn state(&self) -> LocalState {
        LocalState(
            self.enis
                .iter()
                .map(|e| {
                    (
                        e.mac.clone(),
                        EniState {
                            security_group_ids: e.security_group_ids.clone(),
                            local_ipv4s: e.local_ipv4s.clone(),
                            ipv6s: e.ipv6s.clone(),
                        },
                    )
                })
                .collect(),
        )
    }
}

/// What the cheap check compares: per MAC, the groups and addresses. A difference means
/// an ENI was attached or detached, its groups changed, or its addresses changed — all
/// of which change the local policy, so the API is asked at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalState(pub BTreeMap<String, EniState>);

/// The change-relevant part of one ENI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EniState {
    /// `security-group-ids`, sorted.
    pub security_group_ids: Vec<String>,
    /// `local-ipv4s`.
    pub local_ipv4s: Vec<String>,
    /// `ipv6s`.
    pub ipv6s: Vec<String>,
}

impl LocalState {
    /// MACs present now and not before (attached), and before but not now (detached).
    pub fn attachments_changed(&self, before: &LocalState) -> (Vec<String>, Vec<String>) {
        let added = self.0.keys().filter(|m| !before.0.contains_key(*m)).cloned().collect();
        let removed = before.0.keys().filter(|m| !self.0.contains_key(*m)).cloned().collect();
        (added, removed)
    }
}

/// Reads IMDS through aws-config's IMDSv2 client (token flow only; no IMDSv1 fallback).
#[derive(Clone, Debug)]
pub struct ImdsReader {
    client: aws_config::imds::Client,
}

impl ImdsReader {
    /// Wraps a configured client.
    pub fn new(client: aws_config::imds::Client) -> Self {
        Self { client }
    }

    /// GETs `path`; 404 is `None` (an item this ENI does not have), other failures are errors.
    async fn get_opt(&self, path: &str) -> Result<Option<String>, AwsError> {
        match self.client.get(path).await {
            Ok(v) => Ok(Some(v.as_ref().to_owned())),
            Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(AwsError::Imds { path: path.to_owned(), message: imds_message(&e) }),
        }
    }

    /// GETs `path`, which must exist.
    async fn get(&self, path: &str) -> Result<String, AwsError> {
        self.get_opt(path)
            .await?
            .ok_or_else(|| AwsError::Imds { path: path.to_owned(), message: "404 Not Found".to_owned() })
    }

    /// `instance-id`.
    pub async fn instance_id(&self) -> Result<String, AwsError> {
        let path = "/latest/meta-data/instance-id";
        let id = self.get(path).await?.trim().to_owned();
        if id.is_empty() {
            return Err(AwsError::ImdsData { path: path.into(), message: "empty".into() });
        }
        Ok(id)
    }

    /// `placement/region`.
    pub async fn region(&self) -> Result<String, AwsError> {
        let path = "/latest/meta-data/placement/region";
        let region = self.get(path).await?.trim().to_owned();
        if region.is_empty() {
            return Err(AwsError::ImdsData { path: path.into(), message: "empty".into() });
        }
        Ok(region)
    }

    /// The MACs of every attached ENI, lower case, sorted.
    pub async fn macs(&self) -> Result<Vec<String>, AwsError> {
        let listing = self.get(MACS).await?;
        parse_mac_listing(&listing).map_err(|message| AwsError::ImdsData { path: MACS.into(), message })
    }

    /// The cheap check: MAC list, then each MAC's groups and addresses (1 + 3 per ENI GETs).
    pub async fn local_state(&self) -> Result<LocalState, AwsError> {
        let mut out = BTreeMap::new();
        for mac in self.macs().await? {
            let base = format!("{MACS}{mac}/");
            let state = EniState {
                security_group_ids: sorted(lines(
                    &self.get_opt(&format!("{base}security-group-ids")).await?.unwrap_or_default(),
                )),
                local_ipv4s: lines(&self.get_opt(&format!("{base}local-ipv4s")).await?.unwrap_or_default()),
                ipv6s: lines(&self.get_opt(&format!("{base}ipv6s")).await?.unwrap_or_default()),
            };
            out.insert(mac, state);
        }
        Ok(LocalState(out))
    }

    /// Full discovery: instance, Region and every ENI with its VPC and subnet blocks.
    /// `region` short-cuts the `placement/region` read when the Region is already known.
    pub async fn discover(&self, instance_id: &str, region: &str) -> Result<LocalView, AwsError> {
        let mut enis = Vec::new();
        for mac in self.macs().await? {
            match self.eni(&mac).await? {
                Some(eni) => enis.push(eni),
                // Detached between the listing and this read: the ENI is gone, as the
                // next listing will say; not a failure of the source.
                None => tracing::debug!(%mac, "listed MAC vanished from IMDS while being read; skipped"),
            }
        }
        Ok(LocalView { instance_id: instance_id.to_owned(), region: region.to_owned(), enis })
    }

    /// One ENI's paths. Only `interface-id` is required; everything else may be 404.
    /// `None` when `interface-id` is 404: the MAC was listed but is gone (detached).
    async fn eni(&self, mac: &str) -> Result<Option<ImdsEni>, AwsError> {
        let base = format!("{MACS}{mac}/");
        let opt = |name: &'static str| {
            let path = format!("{base}{name}");
            async move { self.get_opt(&path).await.map(|v| v.map(|s| s.trim().to_owned())) }
        };
        let list = |name: &'static str| {
            let path = format!("{base}{name}");
            async move { self.get_opt(&path).await.map(|v| lines(&v.unwrap_or_default())) }
        };
        let number = |name: &'static str| {
            let path = format!("{base}{name}");
            async move {
                match self.get_opt(&path).await? {
                    None => Ok(None),
                    Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| AwsError::ImdsData {
                        path,
                        message: format!("not a number: {:?}", v.trim()),
                    }),
                }
            }
        };
        let id_path = format!("{base}interface-id");
        let Some(interface_id) = self.get_opt(&id_path).await? else {
            return Ok(None);
        };
        let interface_id = interface_id.trim().to_owned();
        if interface_id.is_empty() {
            return Err(AwsError::ImdsData { path: id_path, message: "empty".into() });
        }
        Ok(Some(ImdsEni {
            mac: mac.to_owned(),
            interface_id,
            security_group_ids: sorted(list("security-group-ids").await?),
            local_ipv4s: list("local-ipv4s").await?,
            ipv6s: list("ipv6s").await?,
            vpc_id: opt("vpc-id").await?.filter(|s| !s.is_empty()),
            subnet_id: opt("subnet-id").await?.filter(|s| !s.is_empty()),
            vpc_ipv4_cidr_block: opt("vpc-ipv4-cidr-block").await?.filter(|s| !s.is_empty()),
            vpc_ipv4_cidr_blocks: list("vpc-ipv4-cidr-blocks").await?,
            vpc_ipv6_cidr_blocks: list("vpc-ipv6-cidr-blocks").await?,
            subnet_ipv4_cidr_block: opt("subnet-ipv4-cidr-block").await?.filter(|s| !s.is_empty()),
            subnet_ipv6_cidr_blocks: list("subnet-ipv6-cidr-blocks").await?,
            device_number: number("device-number").await?,
            network_card_index: number("network-card-index").await?,
        }))
    }
}

/// The message of an IMDS error with its status code when there is one.
fn imds_message(e: &ImdsError) -> String {
    match e {
        ImdsError::ErrorResponse(r) => format!("HTTP {}", r.response().status().as_u16()),
        other => crate::error::error_chain(other),
    }
}

/// Non-empty trimmed lines of an IMDS text answer.
pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// `macs/` lists one `<mac>/` per line; returns the MACs lower case, sorted. A line that
/// is not a MAC is an error rather than a path we would then build requests from.
pub(crate) fn parse_mac_listing(listing: &str) -> Result<Vec<String>, String> {
    let mut macs = Vec::new();
    for line in lines(listing) {
        let mac = line.trim_end_matches('/').to_ascii_lowercase();
        if !is_mac(&mac) {
            return Err(format!("not a MAC address: {line:?}"));
        }
        macs.push(mac);
    }
    Ok(sorted(macs))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_listing_is_lowercased_sorted_and_checked() {
        let macs = parse_mac_listing("0A:00:00:00:00:02/\n0a:00:00:00:00:01/\n").unwrap();
        assert_eq!(macs, ["0a:00:00:00:00:01", "0a:00:00:00:00:02"]);
        assert!(parse_mac_listing("").unwrap().is_empty());
        assert!(parse_mac_listing("../etc/\n").is_err());
    }

    #[test]
    fn lines_skip_blanks_and_trim() {
        assert_eq!(lines("a\n\n b \r\n"), ["a", "b"]);
        assert!(lines("").is_empty());
    }

    fn state(entries: &[(&str, &[&str])]) -> LocalState {
        LocalState(
            entries
                .iter()
                .map(|(mac, sgs)| {
                    (
                        mac.to_string(),
                        EniState {
                            security_group_ids: sgs.iter().map(|s| s.to_string()).collect(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn change_detection_sees_groups_and_attachments() {
        let a = state(&[("m1", &["sg-1"]), ("m2", &["sg-2"])]);
        assert_eq!(a, a.clone());
        let groups_changed = state(&[("m1", &["sg-1", "sg-3"]), ("m2", &["sg-2"])]);
        assert_ne!(a, groups_changed);
        assert_eq!(groups_changed.attachments_changed(&a), (vec![], vec![]));
        let attached = state(&[("m1", &["sg-1"]), ("m2", &["sg-2"]), ("m3", &["sg-1"])]);
        assert_eq!(attached.attachments_changed(&a), (vec!["m3".to_string()], vec![]));
        let detached = state(&[("m2", &["sg-2"])]);
        assert_eq!(detached.attachments_changed(&a), (vec![], vec!["m1".to_string()]));
    }

    #[test]
    fn view_state_keeps_the_change_relevant_fields() {
        let view = LocalView {
            instance_id: "i-1".into(),
            region: "us-east-1".into(),
            enis: vec![ImdsEni {
                mac: "0a:00:00:00:00:01".into(),
                interface_id: "eni-1".into(),
                security_group_ids: vec!["sg-1".into()],
                local_ipv4s: vec!["10.0.0.5".into()],
                vpc_id: Some("vpc-1".into()),
                ..Default::default()
            }],
        };
        let s = view.state();
        assert_eq!(s.0["0a:00:00:00:00:01"].local_ipv4s, ["10.0.0.5"]);
        assert_eq!(s.0["0a:00:00:00:00:01"].security_group_ids, ["sg-1"]);
    }
}
