//! Liveness and readiness.

use crate::state::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::time::Duration;

/// `GET /healthz`, `GET /readyz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz/", web::get().to(healthz))
        .route("/readyz/", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when the database (and Redis, when configured) answer; 503 with the
/// reasons otherwise. Reasons name the service, never credentials.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.check(Duration::from_secs(2)).await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database down");
            "unavailable".to_owned()
        }
    };
    let redis = if state.realtime.is_distributed() {
        match state.realtime.check().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: redis down");
                "unavailable".to_owned()
            }
        }
    } else {
        "not_configured".to_owned()
    };
    let ready = database == "ok" && redis != "unavailable";
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {"database": database, "redis": redis},
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
