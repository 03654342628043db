//! Prometheus metrics, kept in a registry of the application state (no
//! global registry). The request middleware that feeds them is in
//! [`crate::middleware`].

use crate::state::AppState;
use actix_web::{HttpResponse, web};
use chat_realtime::Realtime;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

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
    /// Sockets closed because a write to them did not go through in time.
    pub slow_writes: IntCounter,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    /// Webhook events the receiver took (2xx), by this node.
    pub webhooks_sent: IntCounter,
    /// Failed webhook attempts that will be retried, by this node.
    pub webhooks_retried: IntCounter,
    /// Webhook events given up after the retry period, by this node.
    pub webhooks_dead: IntCounter,
    /// Age of the oldest pending webhook event (all nodes), as this node last saw it.
    pub webhooks_oldest_pending: prometheus::Gauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry; the WebSocket and relay
    /// figures are read from `realtime` at each scrape.
    pub fn new(realtime: &Realtime) -> Result<Self, prometheus::Error> {
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
        let slow_writes = IntCounter::new(
            "websocket_slow_writes_total",
            "Sockets closed because a write was not taken within the write timeout \
             (or while it waited, their queue overflowed): clients that stopped reading",
        )?;
        let pool_connections = IntGauge::new(
            "db_pool_connections",
            "Database connections held by the pool",
        )?;
        let pool_idle = IntGauge::new(
            "db_pool_idle_connections",
            "Idle database connections in the pool",
        )?;
        let webhooks_sent = IntCounter::new(
            "webhooks_sent_total",
            "Webhook events the receiver answered with 2xx",
        )?;
        let webhooks_retried = IntCounter::new(
            "webhooks_retried_total",
            "Failed webhook attempts (non-2xx, timeout, connection failure) scheduled again",
        )?;
        let webhooks_dead = IntCounter::new(
            "webhooks_dead_lettered_total",
            "Webhook events given up after the retry period",
        )?;
        let webhooks_oldest_pending = prometheus::Gauge::new(
            "webhooks_oldest_pending_seconds",
            "Age of the oldest webhook event not yet sent, skipped or dead-lettered (0 when none)",
        )?;
        registry.register(Box::new(webhooks_sent.clone()))?;
        registry.register(Box::new(webhooks_retried.clone()))?;
        registry.register(Box::new(webhooks_dead.clone()))?;
        registry.register(Box::new(webhooks_oldest_pending.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(messages_stored.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(slow_writes.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        registry.register(Box::new(RealtimeCollector::new(realtime.clone())?))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            messages_stored,
            rate_limited,
            slow_writes,
            pool_connections,
            pool_idle,
            webhooks_sent,
            webhooks_retried,
            webhooks_dead,
            webhooks_oldest_pending,
        })
    }

    /// Counts one refusal by `limit`.
    pub fn limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// Counts one answered request and its latency.
    pub(crate) fn record_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// The realtime layer's figures, read from its atomics at scrape time: the
/// running totals as counters (so `rate()` works on them), the open
/// sockets as a gauge. One snapshot per scrape keeps them consistent.
#[derive(Debug)]
struct RealtimeCollector {
    realtime: Realtime,
    open_sockets: Desc,
    frames_delivered: Desc,
    slow_sockets_dropped: Desc,
    relay_failures: Desc,
    resyncs: Desc,
}

impl RealtimeCollector {
    fn new(realtime: Realtime) -> Result<Self, prometheus::Error> {
        let desc = |name: &str, help: &str| {
            Desc::new(name.into(), help.into(), Vec::new(), Default::default())
        };
        Ok(Self {
            realtime,
            open_sockets: desc(
                "websocket_open_sockets",
                "WebSocket connections open on this node",
            )?,
            frames_delivered: desc(
                "websocket_frames_delivered_total",
                "Event frames handed to sockets on this node",
            )?,
            slow_sockets_dropped: desc(
                "websocket_slow_sockets_dropped_total",
                "Sockets dropped because they could not keep up",
            )?,
            relay_failures: desc(
                "redis_publish_failures_total",
                "Events not relayed to other nodes through Redis",
            )?,
            resyncs: desc(
                "websocket_resyncs_total",
                "Times a socket was told to re-read the log (the bus may have missed events)",
            )?,
        })
    }
}

/// One family of one unlabelled sample.
fn family(desc: &Desc, kind: MetricType, metric: Metric) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(vec![metric]);
    family
}

fn counter(desc: &Desc, value: u64) -> MetricFamily {
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_counter(counter);
    family(desc, MetricType::COUNTER, metric)
}

fn gauge(desc: &Desc, value: u64) -> MetricFamily {
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    family(desc, MetricType::GAUGE, Metric::from_gauge(gauge))
}

impl Collector for RealtimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![
            &self.open_sockets,
            &self.frames_delivered,
            &self.slow_sockets_dropped,
            &self.relay_failures,
            &self.resyncs,
        ]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.realtime.stats();
        vec![
            gauge(&self.open_sockets, stats.open_sockets),
            counter(&self.frames_delivered, stats.frames_delivered),
            counter(&self.slow_sockets_dropped, stats.slow_sockets_dropped),
            counter(&self.relay_failures, stats.relay_failures),
            counter(&self.resyncs, stats.resyncs_sent),
        ]
    }
}

/// `GET /metrics` in the Prometheus text format (mounted by `routes::health`).
pub(crate) async fn export(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
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
