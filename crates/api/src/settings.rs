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
    /// Uploads and where their files are kept.
    pub attachments: AttachmentSettings,
}

/// Which store keeps attachment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A local directory (`attachments.dir`).
    Local,
    /// An S3-compatible object store (`attachments.s3_*`).
    S3,
}

/// Uploads: limits, allowed types, images, retention and the store.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentSettings {
    /// `local` or `s3`.
    pub store: StoreKind,
    /// The local store's directory, also where uploads are spooled before
    /// they are stored (with S3 too). Empty: `attachments` in the
    /// database's `data_dir` (resolved when settings are loaded).
    pub dir: String,
    /// Largest file accepted, in bytes (413 above, as soon as it is crossed).
    pub max_bytes: u64,
    /// Types accepted, as sniffed from the bytes (415 otherwise).
    pub allowed_types: Vec<String>,
    /// Images with more pixels than this are refused from their header,
    /// before anything is decoded.
    pub max_image_pixels: u64,
    /// Long side of thumbnails in pixels (at most 320).
    pub thumbnail_px: u32,
    /// Images decoded at once per node (on the blocking pool); more wait.
    pub image_concurrency: usize,
    /// Longest an upload may take to arrive in full (408 after); between
    /// two chunks it may pause `limits.body_timeout_ms` at most.
    pub upload_timeout_seconds: u64,
    /// Uploads never sent in a message are deleted this long after upload.
    pub unattached_ttl_seconds: u64,
    /// How often each node looks for such uploads.
    pub cleanup_interval_seconds: u64,
    /// S3: bucket name.
    pub s3_bucket: String,
    /// S3: region.
    pub s3_region: String,
    /// S3: endpoint URL of an S3-compatible service; empty for AWS.
    pub s3_endpoint: String,
    /// S3: access key id (empty: from the environment / instance metadata).
    pub s3_access_key_id: String,
    /// S3: secret access key (environment only).
    pub s3_secret_access_key: Secret,
    /// S3: prefix of every key (e.g. `chat/`).
    pub s3_prefix: String,
    /// S3: allow a plain `http://` endpoint (a local test server).
    pub s3_allow_http: bool,
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
    /// Peers whose `X-Forwarded-For` (and forwarded host) is believed,
    /// e.g. the load balancer: addresses or CIDR ranges, parsed at load so
    /// a typo stops the start, not a request.
    pub trusted_proxies: Vec<IpNet>,
}

/// An address range, `10.0.0.0/8` or `2001:db8::/32`; a bare address is
/// a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(net.to_bits()), self.prefix, 32)
                    == masked(u128::from(ip.to_bits()), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.to_bits(), self.prefix, 128) == masked(ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    let drop = u32::from(width.saturating_sub(prefix));
    bits.checked_shr(drop).unwrap_or(0)
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{s}\" is not an address or CIDR range"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("\"{s}\": prefix length must be 0 to {width}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
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
    /// Milliseconds a request body may take to arrive in full (408 after,
    /// and the connection is closed), so a client trickling a body or
    /// sending less than its `Content-Length` cannot hold a connection.
    pub body_timeout_ms: u64,
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
        at_least_one("limits.max_header_bytes", l.max_header_bytes)?;
        at_least_one("limits.body_timeout_ms", l.body_timeout_ms)?;
        self.attachments.validate()
    }
}

impl AttachmentSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        at_least_one("attachments.max_bytes", self.max_bytes)?;
        at_least_one("attachments.max_image_pixels", self.max_image_pixels)?;
        at_least_one("attachments.image_concurrency", self.image_concurrency)?;
        at_least_one(
            "attachments.upload_timeout_seconds",
            self.upload_timeout_seconds,
        )?;
        at_least_one(
            "attachments.unattached_ttl_seconds",
            self.unattached_ttl_seconds,
        )?;
        at_least_one(
            "attachments.cleanup_interval_seconds",
            self.cleanup_interval_seconds,
        )?;
        if !(1..=320).contains(&self.thumbnail_px) {
            return Err(InvalidSetting::new(
                "attachments.thumbnail_px",
                "must be 1 to 320",
            ));
        }
        if self.store == StoreKind::S3 && self.s3_bucket.is_empty() {
            return Err(InvalidSetting::new(
                "attachments.s3_bucket",
                "is required with attachments.store = \"s3\"",
            ));
        }
        Ok(())
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

    #[test]
    fn ip_nets_parse_and_match() {
        let net: IpNet = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        let one: IpNet = "::1".parse().expect("bare address");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
        let all: IpNet = "0.0.0.0/0".parse().expect("everything");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
