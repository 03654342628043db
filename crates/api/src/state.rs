//! Shared application state, cloned into every worker.

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHashing;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::settings::{ApiSettings, InvalidSetting};
use chat_persistence::{Database, MessageWriter};
use chat_realtime::Realtime;
use std::sync::Arc;
use std::time::Duration;

/// What handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool.
    pub db: Database,
    /// Stores sends, batched on PostgreSQL.
    pub writer: MessageWriter,
    /// Fan-out to WebSocket clients on every node.
    pub realtime: Realtime,
    /// Token signing and checking.
    pub jwt: Arc<JwtKeys>,
    /// Password hashing.
    pub passwords: Arc<PasswordHashing>,
    /// Settings.
    pub settings: Arc<ApiSettings>,
    /// Rate limits of this node.
    pub limits: Arc<RateLimits>,
    /// Prometheus metrics of this node.
    pub metrics: Arc<Metrics>,
    /// Tells sockets the node is shutting down.
    pub shutdown: Shutdown,
    /// The webhook receiver, when one is configured.
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// Where attachment files live.
    pub files: Arc<crate::service::attachments::Files>,
    /// Delivery acks, stored in batches.
    pub deliveries: crate::service::delivery::DeliveryQueue,
}

/// The node's shutdown signal: sockets watch it and close with 1012.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<ShutdownInner>);

#[derive(Debug)]
struct ShutdownInner {
    draining: tokio::sync::watch::Sender<bool>,
    /// How long the server lets connections finish once draining begins.
    drain_time: Duration,
}

/// The drain time when none is given (`server.shutdown_timeout_seconds`'s default).
const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(10);
/// Most a socket spends delivering queued answers before it closes.
const MAX_FLUSH: Duration = Duration::from_secs(1);

impl Default for Shutdown {
    fn default() -> Self {
        Self::new(DEFAULT_DRAIN_TIME)
    }
}

impl Shutdown {
    /// A signal for a server that cuts what is still open `drain_time`
    /// after draining begins.
    pub fn new(drain_time: Duration) -> Self {
        Self(Arc::new(ShutdownInner {
            draining: tokio::sync::watch::Sender::new(false),
            drain_time,
        }))
    }

    /// Starts draining: every socket of this node closes with 1012.
    pub fn begin(&self) {
        self.0.draining.send_replace(true);
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    /// A receiver that changes once draining begins.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.draining.subscribe()
    }

    /// How long a draining socket may deliver what is queued for it before
    /// closing: a second, but never more than half the drain time, so its
    /// 1012 close frame is written before the server cuts the connections
    /// still open (a cut socket sees no close frame at all).
    pub fn flush_budget(&self) -> Duration {
        MAX_FLUSH.min(self.0.drain_time / 2)
    }
}

/// Why the application state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A setting cannot work (settings not passed through `validate`).
    #[error(transparent)]
    Setting(#[from] InvalidSetting),
    /// Argon2 accepted its parameters but could not hash with them.
    #[error("argon2 self-test failed: {0}")]
    PasswordSelfTest(argon2::password_hash::Error),
    /// Two metrics clash in the registry (a programming error).
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The attachment store could not be opened.
    #[error("attachment store: {0}")]
    Files(#[from] chat_files::StoreError),
}

impl AppState {
    /// Builds the state; fails only on settings that cannot work (bad Argon2 parameters).
    pub fn new(
        db: Database,
        writer: MessageWriter,
        realtime: Realtime,
        settings: ApiSettings,
    ) -> Result<Self, StateError> {
        let jwt = JwtKeys::new(&settings.auth);
        let passwords = PasswordHashing::new(&settings.auth)?;
        let limits = RateLimits::new(&settings.rate_limits);
        let metrics = Metrics::new(&realtime, &writer)?;
        let webhooks = crate::webhooks::Webhooks::new(&settings.webhooks)?.map(Arc::new);
        let files = crate::service::attachments::Files::open(&settings.attachments)?;
        Ok(Self {
            db,
            writer,
            realtime,
            jwt: Arc::new(jwt),
            passwords: Arc::new(passwords),
            settings: Arc::new(settings),
            limits: Arc::new(limits),
            metrics: Arc::new(metrics),
            shutdown: Shutdown::default(),
            webhooks,
            files: Arc::new(files),
            deliveries: Default::default(),
        })
    }
}

impl AppState {
    /// How long after a change its webhook event is due; `None` when
    /// webhooks are off (then no event is recorded).
    pub fn webhook_delay(&self) -> Option<Duration> {
        self.webhooks.as_ref().and_then(|w| w.settings.delay())
    }

    /// The register/login/refresh limit of the caller's address (429 above it).
    pub fn check_auth_rate(
        &self,
        req: &actix_web::HttpRequest,
    ) -> Result<(), crate::error::ApiError> {
        self.limits
            .check_auth(req)
            .inspect_err(|_| self.metrics.limited("auth"))
    }

    /// The frame limit of `user` for `kind`; `Err` holds how long to wait.
    pub fn check_frame_rate(
        &self,
        user: chat_domain::UserId,
        kind: crate::limits::FrameKind,
    ) -> Result<(), std::time::Duration> {
        self.limits
            .check_frame(user, kind)
            .inspect_err(|_| self.metrics.limited(kind.label()))
    }

    /// The message limit of `user`; `Err` holds how long to wait.
    pub fn check_message_rate(&self, user: chat_domain::UserId) -> Result<(), std::time::Duration> {
        self.limits
            .check_message(user)
            .inspect_err(|_| self.metrics.limited("messages"))
    }
}
