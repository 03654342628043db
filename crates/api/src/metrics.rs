//! Prometheus metrics, kept in a registry of the application state (no
//! global registry), and the request middleware that records them and logs
//! each request with a request id.

use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::time::Instant;
use tracing::Instrument;

/// Header carrying the request id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// Messages stored (HTTP and WebSocket).
    pub messages_stored: IntCounter,
    /// Requests and frames refused by a rate limit, by limit.
    pub rate_limited: IntCounterVec,
    open_sockets: IntGauge,
    frames_delivered: IntGauge,
    slow_sockets_dropped: IntGauge,
    relay_failures: IntGauge,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("chat".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )?;
        let messages_stored = IntCounter::new(
            "messages_stored_total",
            "Messages stored, over HTTP and WebSocket",
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limited_total", "Refusals by rate limit"),
            &["limit"],
        )?;
        let open_sockets = IntGauge::new(
            "websocket_open_sockets",
            "WebSocket connections open on this node",
        )?;
        let frames_delivered = IntGauge::new(
            "websocket_frames_delivered_total",
            "Event frames handed to sockets on this node",
        )?;
        let slow_sockets_dropped = IntGauge::new(
            "websocket_slow_sockets_dropped_total",
            "Sockets dropped because they could not keep up",
        )?;
        let relay_failures = IntGauge::new(
            "redis_publish_failures_total",
            "Events not relayed to other nodes through Redis",
        )?;
        let pool_connections = IntGauge::new(
            "db_pool_connections",
            "Database connections held by the pool",
        )?;
        let pool_idle = IntGauge::new(
            "db_pool_idle_connections",
            "Idle database connections in the pool",
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(messages_stored.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        for g in [
            &open_sockets,
            &frames_delivered,
            &slow_sockets_dropped,
            &relay_failures,
            &pool_connections,
            &pool_idle,
        ] {
            registry.register(Box::new(g.clone()))?;
        }
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            messages_stored,
            rate_limited,
            open_sockets,
            frames_delivered,
            slow_sockets_dropped,
            relay_failures,
            pool_connections,
            pool_idle,
        })
    }

    /// Counts one refusal by `limit`.
    pub fn limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// `GET /metrics` in the Prometheus text format (mounted by `routes::health`).
pub(crate) async fn export(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let rt = state.realtime.stats();
    let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    m.open_sockets.set(as_gauge(rt.open_sockets));
    m.frames_delivered.set(as_gauge(rt.frames_delivered));
    m.slow_sockets_dropped
        .set(as_gauge(rt.slow_sockets_dropped));
    m.relay_failures.set(as_gauge(rt.relay_failures));
    let (connections, idle) = state.db.pool_state();
    m.pool_connections.set(i64::from(connections));
    m.pool_idle.set(i64::from(idle));
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!(error = %e, "metrics encoding failed");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// A client-supplied id is kept when it is short and printable; otherwise a new one is made.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Logs each request (method, path without query string, status, latency,
/// request id — never tokens or bodies), records metrics by route pattern,
/// and returns the request id in `X-Request-Id`. The rest of the chain runs
/// in a `request` span with the `request_id`.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // Everything the request runs (extractors, handler, error conversion)
    // logs inside this span, so every line carries the request id. Error
    // level: the span is on whenever the errors logged in it are.
    let span = tracing::error_span!("request", request_id = %id);
    let mut res = next.call(req).instrument(span).await?;
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state
            .metrics
            .observe(&route, &method, status, elapsed.as_secs_f64());
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let peer = res
        .request()
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    tracing::info!(
        target: "chat::http",
        request_id = %id,
        method = %method,
        path = %path,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        peer = %peer,
        "request"
    );
    Ok(res)
}
