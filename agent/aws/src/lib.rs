//! sgmirror's AWS source: discovers the instance and its ENIs through IMDSv2 and reads
//! their security-group rules, the members of referenced groups, the prefix lists and
//! the ENIs' connection-tracking settings through the EC2 API, and writes it all as one
//! snapshot document — the same JSON the file source reads — so everything downstream
//! (resolve, compile, swap) is shared.
//!
//! The rest of the agent is synchronous; [`AwsSource`] owns a current-thread tokio
//! runtime and every public method blocks, bounded by a timeout.

mod clients;
pub mod document;
mod ec2;
mod error;
pub mod imds;
pub mod prefix_cache;

use std::time::Duration;

use aws_config::provider_config::ProviderConfig;

pub use ec2::CallCounts;
pub use error::AwsError;
pub use imds::{LocalState, LocalView};
use prefix_cache::PrefixListCache;

/// Where and how to reach AWS. `None` means the standard settings (environment, shared
/// config file, IMDS for the Region).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--region`.
    pub region: Option<String>,
    /// `--ec2-endpoint`: overrides `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL`.
    pub ec2_endpoint: Option<String>,
    /// `--imds-endpoint`: overrides `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub imds_endpoint: Option<String>,
    /// Attempts per EC2 request (the first included).
    pub max_attempts: u32,
    /// Time one EC2 attempt may take before it is cut and retried.
    pub attempt_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: None,
            ec2_endpoint: None,
            imds_endpoint: None,
            max_attempts: 4,
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// Bound on one cheap IMDS check (IMDS is local; its own timeouts are 1–3 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on one whole fetch (IMDS discovery plus every EC2 call with its retries).
const FETCH_TIMEOUT: Duration = Duration::from_secs(180);

/// The result of one successful fetch.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// What IMDS said (ENIs by MAC).
    pub view: LocalView,
    /// The snapshot document.
    pub document: serde_json::Value,
    /// EC2 requests this fetch sent.
    pub calls: CallCounts,
    /// Prefix lists whose entries came from the cache.
    pub prefix_lists_cached: usize,
}

/// The AWS source: clients, the runtime that drives them, and the prefix-list cache.
pub struct AwsSource {
    rt: tokio::runtime::Runtime,
    settings: Settings,
    http: aws_sdk_ec2::config::SharedHttpClient,
    provider: ProviderConfig,
    imds_client: aws_config::imds::Client,
    imds: imds::ImdsReader,
    /// (instance id, Region), read once: neither changes while the instance runs.
    identity: Option<(String, String)>,
    ec2: Option<ec2::Ec2>,
    cache: PrefixListCache,
}

impl std::fmt::Debug for AwsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSource")
            .field("settings", &self.settings)
            .field("identity", &self.identity)
            .finish()
    }
}

impl AwsSource {
    /// Sets up the runtime and the IMDS client; talks to nobody yet.
    pub fn new(settings: Settings) -> Result<Self, AwsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AwsError::Setup(format!("cannot start the async runtime: {e}")))?;
        let (http, provider, imds_client) = rt.block_on(async {
            let http = clients::http_client();
            let provider = clients::provider_config(&http);
            let imds = clients::imds_client(&settings, &provider)?;
            Ok::<_, AwsError>((http, provider, imds))
        })?;
        Ok(Self {
            rt,
            imds: imds::ImdsReader::new(imds_client.clone()),
            imds_client,
            settings,
            http,
            provider,
            identity: None,
            ec2: None,
            cache: PrefixListCache::default(),
        })
    }

    /// The instance id and Region, once known.
    pub fn identity(&self) -> Option<(&str, &str)> {
        self.identity.as_ref().map(|(i, r)| (i.as_str(), r.as_str()))
    }

    /// The cheap check: the MAC list and each ENI's groups and addresses from IMDS.
    pub fn local_state(&mut self) -> Result<LocalState, AwsError> {
        let result = self.local_state_once();
        if is_token_rejected(&result) {
            self.reset_imds()?;
            return self.local_state_once();
        }
        result
    }

    /// Discovers through IMDS and fetches everything from the EC2 API. On failure nothing
    /// is returned; the error names the call.
    pub fn fetch(&mut self) -> Result<Fetched, AwsError> {
        let result = self.fetch_once();
        if is_token_rejected(&result) {
            self.reset_imds()?;
            return self.fetch_once();
        }
        result
    }

    /// A new IMDS client (so a new session token) and a new EC2 client using it for
    /// instance-profile credentials. aws-config caches the IMDSv2 token for its TTL and
    /// keeps sending it after IMDS rejected it (401), e.g. after IMDS restarted; without
    /// this the source would never recover.
    fn reset_imds(&mut self) -> Result<(), AwsError> {
        tracing::warn!("IMDS rejected the session token (401); starting a new IMDS session");
        let client = self.rt.block_on(async { clients::imds_client(&self.settings, &self.provider) })?;
        self.imds = imds::ImdsReader::new(client.clone());
        self.imds_client = client;
        self.ec2 = None;
        Ok(())
    }

    fn local_state_once(&mut self) -> Result<LocalState, AwsError> {
        let imds = self.imds.clone();
        self.rt
            .block_on(async { tokio::time::timeout(CHECK_TIMEOUT, imds.local_state()).await })
            .unwrap_or_else(|_| {
                Err(AwsError::Imds {
                    path: "/latest/meta-data/network/interfaces/macs/".into(),
                    message: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
                })
            })
    }

    fn fetch_once(&mut self) -> Result<Fetched, AwsError> {
        let rt = &self.rt;
        let fut = fetch(
            &self.settings,
            &self.http,
            &self.provider,
            &self.imds_client,
            &self.imds,
            &mut self.identity,
            &mut self.ec2,
            &mut self.cache,
        );
        rt.block_on(async { tokio::time::timeout(FETCH_TIMEOUT, fut).await }).unwrap_or_else(|_| {
            Err(AwsError::Api {
                operation: "fetch",
                message: format!("did not complete within {} s", FETCH_TIMEOUT.as_secs()),
            })
        })
    }
}

/// Whether `result` failed because IMDS answered 401 (token unknown or expired).
fn is_token_rejected<T>(result: &Result<T, AwsError>) -> bool {
    matches!(result, Err(AwsError::Imds { message, .. }) if message == imds::UNAUTHORIZED)
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    settings: &Settings,
    http: &aws_sdk_ec2::config::SharedHttpClient,
    provider: &ProviderConfig,
    imds_client: &aws_config::imds::Client,
    imds: &imds::ImdsReader,
    identity: &mut Option<(String, String)>,
    ec2: &mut Option<ec2::Ec2>,
    cache: &mut PrefixListCache,
) -> Result<Fetched, AwsError> {
    if identity.is_none() {
        let instance = imds.instance_id().await?;
        let region = match clients::configured_region(settings, provider).await {
            Some(r) => r,
            None => imds.region().await?,
        };
        *identity = Some((instance, region));
    }
    let (instance, region) = identity.clone().unwrap_or_default();
    let view = imds.discover(&instance, &region).await?;
    if ec2.is_none() {
        let client = clients::ec2_client(settings, provider, http, imds_client, &region).await;
        *ec2 = Some(ec2::Ec2 { client, calls: CallCounts::default() });
    }
    let Some(api) = ec2.as_mut() else {
        return Err(AwsError::Setup("EC2 client missing".into()));
    };
    api.calls = CallCounts::default();

    let own = api.own_interfaces(&instance).await?;
    let groups = document::own_group_ids(&view, &own);
    let rules = if groups.is_empty() { Vec::new() } else { api.security_group_rules(&groups).await? };
    let (referenced, list_ids) = document::references(&rules);
    let members = if referenced.is_empty() { Vec::new() } else { api.group_members(&referenced).await? };
    let lists = if list_ids.is_empty() { Vec::new() } else { api.prefix_lists(&list_ids).await? };
    let mut prefix_lists = Vec::with_capacity(lists.len());
    let mut cached = 0;
    for list in lists {
        let Some(id) = list.prefix_list_id().map(str::to_owned) else { continue };
        let entries = match cache.get(&id, list.version()) {
            Some(entries) => {
                cached += 1;
                entries.to_vec()
            }
            None => {
                let entries = api.prefix_list_entries(&id, list.version()).await?;
                cache.insert(&id, list.version(), entries.clone());
                entries
            }
        };
        prefix_lists.push((list, entries));
    }
    cache.retain(&list_ids);

    let document = document::build(document::Inputs {
        view: &view,
        own: &own,
        rules: &rules,
        members: &members,
        prefix_lists: &prefix_lists,
    })?;
    Ok(Fetched { view, document, calls: api.calls, prefix_lists_cached: cached })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_401_from_imds_restarts_the_session() {
        let rejected: Result<(), AwsError> =
            Err(AwsError::Imds { path: "/x".into(), message: imds::UNAUTHORIZED.into() });
        assert!(is_token_rejected(&rejected));
        let other: Result<(), AwsError> =
            Err(AwsError::Imds { path: "/x".into(), message: "HTTP 500".into() });
        assert!(!is_token_rejected(&other));
        let api: Result<(), AwsError> = Err(AwsError::Api { operation: "X", message: "HTTP 401".into() });
        assert!(!is_token_rejected(&api));
        assert!(!is_token_rejected(&Ok(())));
    }
}
