//! Building the IMDS and EC2 clients: our own rustls+ring HTTPS client (the SDK default
//! pulls in aws-lc-rs, which needs cmake and nasm to build), bounded timeouts, the
//! standard retry mode, and the standard endpoint settings with flags on top.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::Region;
use aws_smithy_http_client::tls;

use crate::Settings;
use crate::error::AwsError;

/// One HTTP(S) client for IMDS, credentials and EC2 (it also speaks plain HTTP, for
/// emulators and proxies).
pub(crate) fn http_client() -> aws_sdk_ec2::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// The provider configuration: real environment and shared config files, our client.
pub(crate) fn provider_config(http: &aws_sdk_ec2::config::SharedHttpClient) -> ProviderConfig {
    ProviderConfig::without_region().with_http_client(http.clone())
}

/// The IMDSv2 client. Its endpoint is `--imds-endpoint`, else
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` / `ec2_metadata_service_endpoint` (read by
/// aws-config from `provider`), else 169.254.169.254. IMDS is local: 1 s to connect, 2 s
/// to answer, 3 attempts.
pub(crate) fn imds_client(
    settings: &Settings,
    provider: &ProviderConfig,
) -> Result<aws_config::imds::Client, AwsError> {
    let mut builder = aws_config::imds::Client::builder()
        .configure(provider)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(10))
        .max_attempts(3);
    if let Some(endpoint) = &settings.imds_endpoint {
        builder = builder
            .endpoint(endpoint)
            .map_err(|e| AwsError::Setup(format!("invalid IMDS endpoint {endpoint:?}: {e}")))?;
    }
    Ok(builder.build())
}

/// The Region: `--region`, else `AWS_REGION`/`AWS_DEFAULT_REGION`, else the shared
/// config's `region`, else `None` (the caller then asks IMDS).
pub(crate) async fn configured_region(settings: &Settings, provider: &ProviderConfig) -> Option<String> {
    if let Some(region) = &settings.region {
        return Some(region.clone());
    }
    let chain =
        RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
            .or_else(aws_config::profile::ProfileFileRegionProvider::builder().configure(provider).build());
    chain.region().await.map(|r| r.to_string())
}

/// The EC2 client. Credentials: the default chain (environment, shared files, web
/// identity, ECS, and IMDS through our IMDS client). Endpoint: `--ec2-endpoint`, else
/// `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL` / the shared config (aws-config reads
/// them), else the Region's. Retries: standard mode, 4 attempts, exponential backoff
/// with jitter, on throttling (`RequestLimitExceeded`), 5xx and timeouts; each attempt
/// is cut after `settings.attempt_timeout` so a stalled answer is retried.
pub(crate) async fn ec2_client(
    settings: &Settings,
    provider: &ProviderConfig,
    http: &aws_sdk_ec2::config::SharedHttpClient,
    imds: &aws_config::imds::Client,
    region: &str,
) -> aws_sdk_ec2::Client {
    let region = Region::new(region.to_owned());
    let credentials = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .configure(provider.clone().with_region(Some(region.clone())))
        .imds_client(imds.clone())
        .build()
        .await;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .region(region)
        .credentials_provider(credentials)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(settings.max_attempts)
                .with_initial_backoff(Duration::from_millis(500))
                .with_max_backoff(Duration::from_secs(10)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.attempt_timeout * (settings.max_attempts + 1))
                .build(),
        )
        .load()
        .await;
    let mut conf = aws_sdk_ec2::config::Builder::from(&sdk);
    if let Some(endpoint) = &settings.ec2_endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_ec2::Client::from_conf(conf.build())
}
