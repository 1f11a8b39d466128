//! The AWS policy source of `sgmirror run`: when to look at IMDS, when to ask the EC2
//! API, and whether what came back is new.
//!
//! - every `imds_interval_ms` (5 s): the cheap IMDS check (ENI list, groups, addresses);
//!   a difference from what the last fetch saw triggers an API refresh at once;
//! - every `refresh_interval_ms` (5 min, jittered ±10 % so a fleet started together
//!   does not call together): an API refresh anyway (rules, referenced-group members
//!   and prefix lists change without any local sign);
//! - a failed refresh is retried with exponential backoff (2 s doubling to 60 s), and
//!   the last good policy stays enforced meanwhile;
//! - a refresh whose document is byte-identical to the last one is "unchanged" (the
//!   document is stably ordered, so equal text means equal policy inputs).

use std::time::{Duration, Instant};

use rand::Rng;
use sgmirror_aws::{AwsSource, LocalState, document};
use sgmirror_policy::snapshot::{self, Snapshot};

use crate::args::{AwsArgs, RunArgs};

/// The library's settings from the flags.
pub fn settings(a: &AwsArgs) -> sgmirror_aws::Settings {
    sgmirror_aws::Settings {
        region: a.region.clone(),
        ec2_endpoint: a.ec2_endpoint.clone(),
        imds_endpoint: a.imds_endpoint.clone(),
        ..sgmirror_aws::Settings::default()
    }
}

/// What one turn of [`AwsPolicySource::poll`] found.
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// A refresh found the same policy inputs.
    Unchanged,
    /// A refresh found new policy inputs (or the first ones).
    Changed(Box<Snapshot>),
    /// IMDS or the API failed, or the document is unusable; `kind` for the metrics.
    Failed { kind: &'static str },
}

/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The AWS source with its timers.
pub struct AwsPolicySource {
    source: AwsSource,
    imds_interval: Duration,
    refresh_interval: Duration,
    next_check: Instant,
    next_refresh: Instant,
    /// Why a refresh is wanted before the slow timer (a local change, a reload, …).
    pending: Option<&'static str>,
    /// What IMDS showed when the last successful fetch ran.
    baseline: Option<LocalState>,
    /// The last document handed out as `Changed`.
    last_document: Option<String>,
    failures: u32,
    retry_at: Instant,
    /// Whether a policy was ever handed out (for the wording of failures).
    had_policy: bool,
    /// Next time to compare the local links with the ENIs of the last good policy.
    next_links_check: Instant,
}

impl AwsPolicySource {
    pub fn new(args: &RunArgs) -> anyhow::Result<Self> {
        let now = Instant::now();
        let source = AwsSource::new(settings(&args.aws))?;
        Ok(Self {
            source,
            imds_interval: Duration::from_millis(args.imds_interval_ms),
            refresh_interval: Duration::from_millis(args.refresh_interval_ms),
            next_check: now,
            next_refresh: now,
            pending: Some("start"),
            baseline: None,
            last_document: None,
            failures: 0,
            retry_at: now,
            had_policy: false,
            next_links_check: now,
        })
    }

    /// Takes over reloaded intervals.
    pub fn set_intervals(&mut self, args: &RunArgs) {
        self.imds_interval = Duration::from_millis(args.imds_interval_ms);
        let refresh = Duration::from_millis(args.refresh_interval_ms);
        if refresh != self.refresh_interval {
            self.refresh_interval = refresh;
            self.next_refresh = Instant::now() + jittered(refresh);
        }
    }

    /// Whether it is time to look at the local links again (every `imds_interval_ms`):
    /// an ENI's link can appear after IMDS and the API already list the ENI.
    pub fn links_check_due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next_links_check {
            return false;
        }
        self.next_links_check = now + self.imds_interval;
        true
    }

    /// Asks for a refresh as soon as the backoff allows.
    pub fn request_refresh(&mut self, why: &'static str) {
        self.pending.get_or_insert(why);
    }

    /// The policy handed out last could not be used (e.g. no ENI matches a local
    /// link yet): forget it, and fetch again after a backoff.
    pub fn retry_later(&mut self) {
        self.last_document = None;
        self.had_policy = false;
        self.failures += 1;
        self.retry_at = Instant::now() + backoff(self.failures, self.refresh_interval);
        self.pending.get_or_insert("retry");
    }

    /// One turn: the IMDS check and the API refresh when due. Cheap when nothing is due.
    pub fn poll(&mut self) -> Outcome {
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + self.imds_interval;
            match self.source.local_state() {
                Ok(state) => {
                    if let Some(before) = &self.baseline
                        && *before != state
                        && self.pending.is_none()
                    {
                        let (attached, detached) = state.attachments_changed(before);
                        tracing::info!(
                            attached = ?attached,
                            detached = ?detached,
                            "aws: IMDS shows a local change (ENIs, groups or addresses); refreshing from the API"
                        );
                        self.pending = Some("local change");
                    }
                }
                Err(e) => {
                    tracing::error!("aws: source failed (IMDS check); {}: {e}", self.keeping());
                    return Outcome::Failed { kind: e.kind() };
                }
            }
        }
        let due = self.pending.is_some() || now >= self.next_refresh;
        if !due || now < self.retry_at {
            return Outcome::Idle;
        }
        let why = self.pending.unwrap_or("timer");
        let started = Instant::now();
        let fetched = match self.source.fetch() {
            Ok(f) => f,
            Err(e) => {
                self.failures += 1;
                let delay = backoff(self.failures, self.refresh_interval);
                self.retry_at = Instant::now() + delay;
                self.pending.get_or_insert("retry");
                tracing::error!(
                    failures = self.failures,
                    "aws: source failed; {} (retrying in {} s): {e}",
                    self.keeping(),
                    delay.as_secs()
                );
                return Outcome::Failed { kind: e.kind() };
            }
        };
        self.failures = 0;
        self.pending = None;
        self.next_refresh = Instant::now() + jittered(self.refresh_interval);
        self.baseline = Some(fetched.view.state());
        let c = fetched.calls;
        tracing::info!(
            reason = why,
            ms = started.elapsed().as_millis() as u64,
            "aws: fetched with {} EC2 requests (DescribeNetworkInterfaces {}, DescribeSecurityGroupRules {}, \
             DescribeManagedPrefixLists {}, GetManagedPrefixListEntries {}; {} prefix list(s) from the cache)",
            c.total(),
            c.describe_network_interfaces,
            c.describe_security_group_rules,
            c.describe_managed_prefix_lists,
            c.get_managed_prefix_list_entries,
            fetched.prefix_lists_cached,
        );
        let text = document::to_text(&fetched.document);
        if self.last_document.as_deref() == Some(text.as_str()) {
            return Outcome::Unchanged;
        }
        match snapshot::parse(&text) {
            Ok(snap) => {
                for w in &snap.warnings {
                    tracing::warn!("{w}");
                }
                self.last_document = Some(text);
                self.had_policy = true;
                Outcome::Changed(Box::new(snap))
            }
            Err(e) => {
                // Refused like a bad snapshot file; the next refresh tries again.
                self.last_document = None;
                tracing::error!(
                    "aws: source failed: the policy AWS returned cannot be used; {}: {e}",
                    self.keeping()
                );
                Outcome::Failed { kind: "snapshot" }
            }
        }
    }
}

impl AwsPolicySource {
    /// What a failure leaves in force.
    fn keeping(&self) -> &'static str {
        if self.had_policy {
            "the last good policy stays enforced"
        } else {
            "no policy enforced yet, nothing attached"
        }
    }
}

/// `interval` ±10 %.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

/// Delay before retry number `failures` (≥ 1): 2 s, 4 s, 8 s … at most 60 s and at most
/// the refresh interval.
fn backoff(failures: u32, refresh: Duration) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(MAX_BACKOFF).min(refresh.max(FIRST_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = Duration::from_secs(300);
        assert_eq!(backoff(1, r), Duration::from_secs(2));
        assert_eq!(backoff(2, r), Duration::from_secs(4));
        assert_eq!(backoff(5, r), Duration::from_secs(32));
        assert_eq!(backoff(6, r), Duration::from_secs(60));
        assert_eq!(backoff(100, r), Duration::from_secs(60));
        assert_eq!(backoff(6, Duration::from_secs(10)), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let j = jittered(Duration::from_secs(300));
            assert!(j >= Duration::from_secs(270) && j <= Duration::from_secs(330), "{j:?}");
        }
    }
}
