//! Settings the API reads; `config/default.toml` documents each key.
//!
//! [`ApiSettings::validate`] runs once when settings are loaded, so the
//! rest of the code can rely on every limit being usable.

use serde::Deserialize;
use std::net::IpAddr;

/// Everything the API needs to know from configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Tokens and passwords.
    pub auth: AuthSettings,
    /// WebSocket limits and heartbeat.
    pub websocket: WebSocketSettings,
    /// Limits on input.
    pub limits: LimitSettings,
    /// Rate limits (0 switches one off).
    pub rate_limits: RateLimitSettings,
    /// Webhooks for offline recipients (off without a URL).
    pub webhooks: WebhookSettings,
}

pub use crate::webhooks::settings::WebhookSettings;

/// Rate limits; each can be raised or switched off with 0.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Register, login and refresh attempts per client address per minute.
    pub auth_per_minute: u32,
    /// Sustained messages per second per user (HTTP and WebSocket together).
    pub messages_per_second: u32,
    /// Messages a user may send in a burst above the sustained rate.
    pub messages_burst: u32,
    /// Sustained client frames per second per user and kind (typing,
    /// read marks, acks, frames that are not valid events; chat messages
    /// have the message limit).
    pub frames_per_second: u32,
    /// Frames of one kind a user may send in a burst above that.
    pub frames_burst: u32,
    /// Open WebSocket connections per user on one node.
    pub max_sockets_per_user: usize,
    /// Peers whose `X-Forwarded-For` is believed (e.g. the load balancer);
    /// parsed at load so a typo stops the start, not a request.
    pub trusted_proxies: Vec<IpAddr>,
}

/// Tokens and password hashing.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 signing key, shared with any Django service that mints tokens.
    pub jwt_secret: Secret,
    /// Access token lifetime.
    pub access_token_minutes: i64,
    /// Refresh token lifetime.
    pub refresh_token_days: i64,
    /// Clock skew tolerated when checking `exp`.
    pub leeway_seconds: u64,
    /// Argon2id memory cost.
    pub argon2_memory_kib: u32,
    /// Argon2id time cost.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
}

/// WebSocket limits and heartbeat.
#[derive(Debug, Clone, Deserialize)]
pub struct WebSocketSettings {
    /// Largest message (a frame, or fragments in all) accepted from a client;
    /// larger closes with 1009, judged from the frame header.
    pub max_frame_bytes: usize,
    /// How often the server pings.
    pub heartbeat_interval_seconds: u64,
    /// A socket that answers nothing (no pong, no frame) for this long is closed.
    pub client_timeout_seconds: u64,
    /// Every write to a client must be taken within this: a client that
    /// stops reading is closed (1013) and its connection dropped (the
    /// server also sets it as the connection's TCP user timeout on Linux).
    pub write_timeout_seconds: u64,
}

/// Limits on input.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Largest JSON body accepted (413 above).
    pub max_body_bytes: usize,
    /// Most ids one `mark_read` request may list.
    pub max_read_ids: usize,
    /// Largest request line plus headers (431 above).
    pub max_header_bytes: usize,
}

/// A configuration value that must not reach logs: `Debug` and `Display`
/// print `***`, and reading it takes an explicit [`Secret::expose`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A setting that cannot work, named by its key (e.g. `database.pool_size`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {key}: {reason}")]
pub struct InvalidSetting {
    /// The key as written in the config file, `section.name`.
    pub key: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl InvalidSetting {
    /// `key` is refused for `reason`.
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

/// Refuses zero (or less) for a key where it cannot work: a pool of no
/// connections, a zero-second timer, a limit nothing fits under.
pub fn at_least_one<T: PartialOrd + From<u8>>(
    key: &'static str,
    value: T,
) -> Result<(), InvalidSetting> {
    if value < T::from(1) {
        return Err(InvalidSetting::new(key, "must be at least 1"));
    }
    Ok(())
}

impl ApiSettings {
    /// Checks every value the API cannot work with. Zero rate limits are
    /// allowed: they switch a limit off.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.auth.validate()?;
        self.websocket.validate()?;
        self.webhooks.validate()?;
        let l = &self.limits;
        at_least_one("limits.max_body_bytes", l.max_body_bytes)?;
        at_least_one("limits.max_read_ids", l.max_read_ids)?;
        at_least_one("limits.max_header_bytes", l.max_header_bytes)
    }
}

impl AuthSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.jwt_secret.is_empty() {
            return Err(InvalidSetting::new("auth.jwt_secret", "must not be empty"));
        }
        at_least_one("auth.access_token_minutes", self.access_token_minutes)?;
        at_least_one("auth.refresh_token_days", self.refresh_token_days)?;
        at_least_one("auth.argon2_iterations", self.argon2_iterations)?;
        at_least_one("auth.argon2_parallelism", self.argon2_parallelism)?;
        self.argon2_params().map(drop)
    }

    /// Argon2's own check of the cost parameters, blamed on the key at fault.
    pub(crate) fn argon2_params(&self) -> Result<argon2::Params, InvalidSetting> {
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|e| {
            let key = match e {
                argon2::Error::TimeTooSmall => "auth.argon2_iterations",
                argon2::Error::ThreadsTooFew | argon2::Error::ThreadsTooMany => {
                    "auth.argon2_parallelism"
                }
                _ => "auth.argon2_memory_kib",
            };
            InvalidSetting::new(key, e.to_string())
        })
    }
}

impl WebSocketSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        at_least_one("websocket.max_frame_bytes", self.max_frame_bytes)?;
        at_least_one(
            "websocket.write_timeout_seconds",
            self.write_timeout_seconds,
        )?;
        at_least_one(
            "websocket.heartbeat_interval_seconds",
            self.heartbeat_interval_seconds,
        )?;
        // A healthy client speaks only when pinged, so a timeout no longer
        // than the ping interval would close every quiet socket.
        if self.client_timeout_seconds <= self.heartbeat_interval_seconds {
            return Err(InvalidSetting::new(
                "websocket.client_timeout_seconds",
                "must be greater than websocket.heartbeat_interval_seconds",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_as_stars_and_is_read_only_through_expose() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn at_least_one_names_the_key() {
        assert_eq!(at_least_one("limits.max_read_ids", 1_usize), Ok(()));
        let err = at_least_one("limits.max_read_ids", 0_usize).expect_err("zero refused");
        assert_eq!(err.key, "limits.max_read_ids");
        assert_eq!(
            err.to_string(),
            "invalid setting limits.max_read_ids: must be at least 1"
        );
        assert!(at_least_one("auth.access_token_minutes", -5_i64).is_err());
    }
}
