//! Webhooks for offline recipients: the wire payloads, their Standard
//! Webhooks signature, and the one function that posts an attempt. What is
//! sent when, and the retries, are in [`crate::service::webhooks`].

pub mod settings;
pub mod signature;

use crate::dto::{ConnectionView, MessageView};
use crate::settings::InvalidSetting;
use chat_domain::{ConversationId, UserId};
use serde::Serialize;
use settings::WebhookSettings;
use signature::SigningKey;
use std::time::Duration;

/// The body of a webhook request.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum WebhookPayload {
    /// A message the recipient has not read, while they had no open socket.
    #[serde(rename = "message.created")]
    MessageCreated {
        /// Who should be told.
        recipient_id: UserId,
        /// Where the message is.
        conversation_id: ConversationId,
        /// The message object.
        message: MessageView,
    },
    /// A connection request still pending, while the addressee had no open socket.
    #[serde(rename = "connection.requested")]
    ConnectionRequested {
        /// Who should be told (the addressee).
        recipient_id: UserId,
        /// The connection object.
        connection: ConnectionView,
    },
}

/// An http(s) URL with a host; anything else is refused at load.
pub(crate) fn parse_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, not {}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(url)
}

/// The receiver, the key and a pooled client; built once from settings.
#[derive(Debug)]
pub struct Webhooks {
    /// The settings they were built from.
    pub settings: WebhookSettings,
    url: reqwest::Url,
    key: SigningKey,
    client: reqwest::Client,
}

/// Why an attempt failed (each is retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed(pub String);

impl Webhooks {
    /// `None` when no URL is configured.
    pub fn new(settings: &WebhookSettings) -> Result<Option<Self>, InvalidSetting> {
        if !settings.enabled() {
            return Ok(None);
        }
        let url = parse_url(&settings.url).map_err(|e| InvalidSetting::new("webhooks.url", e))?;
        let secret = settings
            .secret
            .as_ref()
            .ok_or_else(|| InvalidSetting::new("webhooks.secret", "must be set"))?;
        let key = SigningKey::parse(secret.expose())
            .map_err(|e| InvalidSetting::new("webhooks.secret", e))?;
        let timeout = Duration::from_millis(settings.request_timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A receiver's redirect is a failure, never followed (to
            // another host or anywhere else).
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(settings.concurrency)
            .user_agent(concat!("chat-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| InvalidSetting::new("webhooks.url", format!("HTTP client: {e}")))?;
        Ok(Some(Self {
            settings: settings.clone(),
            url,
            key,
            client,
        }))
    }

    /// Posts one attempt of event `id` with `body`, signed now. `Ok` on a
    /// 2xx answer; any other answer, a timeout or a connection failure is
    /// `Failed`.
    pub async fn post(&self, id: &str, body: &str) -> Result<(), Failed> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.key.sign(id, timestamp, body);
        let answer = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| Failed(describe(e)))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failed(format!("receiver answered {status}")))
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        // Without the URL: it may carry credentials.
        format!("request failed: {}", e.without_url())
    }
}
