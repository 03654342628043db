//! Webhook settings (`[webhooks]` in `config/default.toml`).

use crate::settings::{InvalidSetting, Secret, at_least_one};
use serde::Deserialize;
use std::time::Duration;

/// Where and how events for offline recipients are posted. An empty `url`
/// switches webhooks off: no outbox rows, no traffic.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// The receiver (http or https); also `WEBHOOK_URL`.
    pub url: String,
    /// Signing secret, from the environment only (`WEBHOOK_SECRET` or
    /// `CHAT__WEBHOOKS__SECRET`): `whsec_<base64>` or any other string.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// How long after the change the recipient must still be offline.
    pub delay_ms: u64,
    /// Longest wait for the receiver's answer (connecting included).
    pub request_timeout_ms: u64,
    /// The first retry comes about this long after a failure…
    pub retry_initial_ms: u64,
    /// …each next one twice as long after, up to this (with jitter)…
    pub retry_max_interval_ms: u64,
    /// …until the event is this old; then it is dead-lettered.
    pub retry_max_age_seconds: u64,
    /// Requests in flight per node.
    pub concurrency: usize,
    /// How often a node looks for due events.
    pub poll_interval_ms: u64,
    /// How long a node's claim on an event lasts; a node that dies while
    /// sending loses it then, and another node sends the event.
    pub claim_lease_ms: u64,
}

impl WebhookSettings {
    /// Whether a receiver is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The delay, when webhooks are on.
    pub fn delay(&self) -> Option<Duration> {
        self.enabled().then(|| Duration::from_millis(self.delay_ms))
    }

    /// Refuses values that cannot work; with a URL, also a URL that is not
    /// http(s) and a missing or malformed secret.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        at_least_one("webhooks.request_timeout_ms", self.request_timeout_ms)?;
        at_least_one("webhooks.retry_initial_ms", self.retry_initial_ms)?;
        at_least_one("webhooks.retry_max_age_seconds", self.retry_max_age_seconds)?;
        at_least_one("webhooks.concurrency", self.concurrency)?;
        at_least_one("webhooks.poll_interval_ms", self.poll_interval_ms)?;
        if self.retry_max_interval_ms < self.retry_initial_ms {
            return Err(InvalidSetting::new(
                "webhooks.retry_max_interval_ms",
                "must be at least webhooks.retry_initial_ms",
            ));
        }
        // A claim that lapses while its request may still be answered
        // would let a second node send the same event at the same moment.
        if self.claim_lease_ms <= self.request_timeout_ms {
            return Err(InvalidSetting::new(
                "webhooks.claim_lease_ms",
                "must be greater than webhooks.request_timeout_ms",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        super::parse_url(&self.url).map_err(|e| InvalidSetting::new("webhooks.url", e))?;
        let secret = self
            .secret
            .as_ref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                InvalidSetting::new(
                    "webhooks.secret",
                    "must be set (WEBHOOK_SECRET) when webhooks.url is set",
                )
            })?;
        super::signature::SigningKey::parse(secret.expose())
            .map(drop)
            .map_err(|e| InvalidSetting::new("webhooks.secret", e))
    }
}
