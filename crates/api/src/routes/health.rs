//! Liveness and readiness.

use super::Router;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

const HEALTHZ: &str = "/healthz/";
const READYZ: &str = "/readyz/";
const METRICS: &str = "/metrics/";

/// `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(HEALTHZ, |e| e.get(healthz))
        .resource(READYZ, |e| e.get(readyz))
        .resource(METRICS, |e| e.get(metrics));
}

/// `GET /healthz/`.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /readyz/`.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    status: &'static str,
    /// Each backing service.
    checks: ReadinessChecks,
}

/// State of each backing service.
#[derive(Debug, Serialize, ToSchema)]
struct ReadinessChecks {
    /// `ok` or `unavailable`.
    database: &'static str,
    /// `ok`, `unavailable` or `not_configured` (no Redis: single node).
    redis: &'static str,
    /// Only on a Redis Cluster: the cluster as this node sees it. `redis`
    /// is `ok` only when `state` is `ok` and every primary answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_cluster: Option<ClusterCheck>,
}

/// A Redis Cluster's state, from this node.
#[derive(Debug, Serialize, ToSchema)]
struct ClusterCheck {
    /// `cluster_state` from `CLUSTER INFO`: `ok`, `fail`, or `unknown`
    /// when no node answered.
    #[schema(example = "ok")]
    state: String,
    /// Primaries (shards) in this node's slot map.
    #[schema(example = 3)]
    primaries: usize,
    /// Of those, how many answered a PING in time.
    #[schema(example = 3)]
    reachable: usize,
}

/// Liveness
///
/// 200 while the process serves requests.
#[utoipa::path(get, path = HEALTHZ, tag = "health", operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Health)))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness
///
/// 200 when the database (and Redis, when configured) answer; 503 with the
/// reasons otherwise. Reasons name the service, never credentials.
#[utoipa::path(get, path = READYZ, tag = "health", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "A backing service is down (`status`: `unavailable`).",
            body = Readiness),
    ))]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.check(Duration::from_secs(2)).await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e.report(), "readiness: database down");
            "unavailable"
        }
    };
    let mut redis_cluster = None;
    let redis = if state.realtime.is_distributed() {
        let (result, cluster) = state.realtime.check_cluster().await;
        redis_cluster = cluster.map(|c| ClusterCheck {
            state: c.state,
            primaries: c.primaries,
            reachable: c.reachable,
        });
        match result {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(error = %e, "readiness: redis down");
                "unavailable"
            }
        }
    } else {
        "not_configured"
    };
    let ready = database == "ok" && redis != "unavailable";
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks: ReadinessChecks {
            database,
            redis,
            redis_cluster,
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics
///
/// This node's metrics in the Prometheus text format.
#[utoipa::path(get, path = METRICS, tag = "health", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4.",
        content_type = "text/plain", body = String)))]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::metrics::export(state).await
}
