//! Settings the API reads; `config/default.toml` documents each key.

use serde::Deserialize;

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
}

/// Rate limits; each can be raised or switched off with 0.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Register, login and refresh attempts per client address per minute.
    pub auth_per_minute: u32,
    /// Sustained messages per second per user (HTTP and WebSocket together).
    pub messages_per_second: u32,
    /// Messages a user may send in a burst above the sustained rate.
    pub messages_burst: u32,
    /// Open WebSocket connections per user on one node.
    pub max_sockets_per_user: usize,
    /// Peers whose `X-Forwarded-For` is believed (e.g. the load balancer).
    pub trusted_proxies: Vec<String>,
}

/// Tokens and password hashing.
#[derive(Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 signing key, shared with any Django service that mints tokens.
    pub jwt_secret: String,
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

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"***")
            .field("access_token_minutes", &self.access_token_minutes)
            .field("refresh_token_days", &self.refresh_token_days)
            .finish_non_exhaustive()
    }
}

/// WebSocket limits and heartbeat.
#[derive(Debug, Clone, Deserialize)]
pub struct WebSocketSettings {
    /// Largest frame accepted from a client; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// How often the server pings.
    pub heartbeat_interval_seconds: u64,
    /// A socket that answers nothing (no pong, no frame) for this long is closed.
    pub client_timeout_seconds: u64,
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
