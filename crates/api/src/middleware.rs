//! The actix middleware the server wraps around every route: request
//! logging and metrics with a request id, and the header-size limit.

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use std::time::Instant;
use tracing::Instrument;

/// Header carrying the request id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
            .record_request(&route, &method, status, elapsed.as_secs_f64());
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

/// Refuses requests whose header lines (names and values) add up to more
/// than `limits.max_header_bytes` with 431 and the error body. (actix-http
/// itself stops at 128 KiB or 96 headers.)
pub async fn limit_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(usize::MAX, |s| s.settings.limits.max_header_bytes);
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if size > limit {
        let err = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            "Request headers are too large.",
        );
        return Ok(req.error_response(err));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
