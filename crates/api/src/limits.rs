//! Rate limits and the client address they are keyed on.
//!
//! GCRA limiters from `governor`, kept in the application state (no global
//! state). Every limit can be raised or switched off (0) in `[rate_limits]`.
//! Limits are per node: behind a load balancer of N nodes a client gets up
//! to N times the configured rate.

use crate::error::{ApiError, ErrorCode};
use crate::settings::{IpNet, RateLimitSettings};
use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use chat_domain::UserId;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A keyed limiter, or none when switched off.
struct Limit<K: Hash + Eq + Clone> {
    limiter: Option<Keyed<K>>,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    fn new(quota: Option<Quota>) -> Self {
        Self {
            limiter: quota.map(RateLimiter::keyed),
        }
    }

    /// `Err(wait)` when the key is over its rate.
    fn check(&self, key: &K) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l
                .check_key(key)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    fn shrink(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_minute)
}

fn per_second_with_burst(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

/// The kinds of client frame limited apart from each other (a flood of
/// typing indicators does not hold back acks). Chat messages have the
/// message limit, shared with HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `typing_indicator`.
    Typing,
    /// `message_read`.
    Read,
    /// `ack`.
    Ack,
    /// Frames that are no valid event (each gets an `error` event).
    Invalid,
}

impl FrameKind {
    /// The `limit` label of the refusal metric.
    pub fn label(self) -> &'static str {
        match self {
            Self::Typing => "frames_typing",
            Self::Read => "frames_read",
            Self::Ack => "frames_ack",
            Self::Invalid => "frames_invalid",
        }
    }
}

/// The limits of one node.
pub struct RateLimits {
    auth: Limit<IpAddr>,
    messages: Limit<UserId>,
    frames: Limit<(UserId, FrameKind)>,
    max_sockets_per_user: usize,
    sockets: Mutex<HashMap<UserId, usize>>,
    trusted_proxies: Vec<IpNet>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("max_sockets_per_user", &self.max_sockets_per_user)
            .finish_non_exhaustive()
    }
}

/// A socket slot; the count drops when it is dropped.
#[derive(Debug)]
pub struct SocketSlot<'a> {
    limits: &'a RateLimits,
    user: UserId,
}

impl Drop for SocketSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limits.sockets.lock()
            && let Some(n) = open.get_mut(&self.user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl RateLimits {
    /// Limiters from settings.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            auth: Limit::new(per_minute(settings.auth_per_minute)),
            messages: Limit::new(per_second_with_burst(
                settings.messages_per_second,
                settings.messages_burst,
            )),
            frames: Limit::new(per_second_with_burst(
                settings.frames_per_second,
                settings.frames_burst,
            )),
            max_sockets_per_user: settings.max_sockets_per_user,
            sockets: Mutex::new(HashMap::new()),
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// Whether the request came straight from a trusted proxy, so its
    /// forwarded headers (client address, host, scheme) may be believed.
    pub fn from_trusted_proxy(&self, req: &HttpRequest) -> bool {
        req.peer_addr().is_some_and(|p| self.is_trusted(p.ip()))
    }

    /// The client's address: the peer's, or, when the peer is a trusted
    /// proxy, the right-most untrusted hop of `X-Forwarded-For` over every
    /// line of that header in order (proxies may add a line each).
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(','))
            .filter_map(|h| h.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !self.is_trusted(*ip))
                .unwrap_or(peer),
        )
    }

    /// Login, register and refresh attempts per client address.
    pub fn check_auth(&self, req: &HttpRequest) -> Result<(), ApiError> {
        match self.client_ip(req) {
            Some(ip) => self.auth.check(&address_key(ip)).map_err(too_many),
            None => Ok(()),
        }
    }

    /// Messages per sender, over HTTP and WebSocket together.
    pub fn check_message(&self, user: UserId) -> Result<(), Duration> {
        self.messages.check(&user)
    }

    /// Client frames of `kind` per user, on every socket of the node together.
    pub fn check_frame(&self, user: UserId, kind: FrameKind) -> Result<(), Duration> {
        self.frames.check(&(user, kind))
    }

    /// Takes a socket slot for `user`, or `None` when they have too many open.
    pub fn open_socket(&self, user: UserId) -> Option<SocketSlot<'_>> {
        let mut open = self.sockets.lock().ok()?;
        let n = open.entry(user).or_insert(0);
        if self.max_sockets_per_user > 0 && *n >= self.max_sockets_per_user {
            return None;
        }
        *n += 1;
        Some(SocketSlot { limits: self, user })
    }

    /// Forgets idle keys so memory does not grow with the number of clients.
    pub fn shrink(&self) {
        self.auth.shrink();
        self.messages.shrink();
        self.frames.shrink();
    }
}

/// The key an address is limited under: an IPv4 address itself, an IPv6
/// address by its /64, since one client (one subnet, as ISPs hand them out)
/// can pick any address of it.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

/// Seconds to announce in `Retry-After` (at least 1).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// 429 with the wait in the body; `Retry-After` is added by the error type.
pub fn too_many(wait: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        "Too many requests; slow down.",
    )
    .with_retry_after(retry_after_seconds(wait))
}
