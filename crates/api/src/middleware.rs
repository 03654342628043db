//! The actix middleware the server wraps around every route: request
//! logging and metrics with a request id, the header-size limit and the
//! body deadline.

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
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
    let method = req.method().clone();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // Everything the request runs (extractors, handler, error conversion)
    // logs inside this span, so every line carries the request id. Error
    // level: the span is on whenever the errors logged in it are.
    let span = tracing::error_span!("request", request_id = %id);
    let mut res = next.call(req).instrument(span).await?;
    let status = res.status().as_u16();
    let pattern = res.request().match_pattern();
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state
            .metrics
            .record_request(pattern.as_deref(), &method, status, elapsed.as_secs_f64());
    }
    let route = pattern.unwrap_or_else(|| "other".into());
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

/// Whether the request announces a body (a length above zero, or chunks)
/// and is not an upgrade, whose payload is the WebSocket stream.
fn announces_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    if headers.contains_key(header::UPGRADE) {
        return false;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Reads a request's body in full within `limits.body_timeout_ms` before
/// the handler runs (at most `limits.max_body_bytes` and one byte more,
/// so the handler still answers 413 above the limit). A body that does not
/// arrive in time (it trickles, never ends, or is shorter than its
/// `Content-Length`) gets 408 and the connection is closed, so such a
/// client holds its connection slot for the deadline at most.
pub async fn read_body_in_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let limits = req.app_data::<web::Data<AppState>>().map(|s| {
        (
            s.settings.limits.max_body_bytes,
            s.settings.limits.body_timeout_ms,
        )
    });
    // Uploads are streamed to storage by their handler, with deadlines of their own.
    let streamed = req.method() == actix_web::http::Method::POST
        && req.path() == crate::routes::attachments::UPLOAD;
    let Some((max_bytes, timeout_ms)) = limits.filter(|_| announces_body(&req) && !streamed) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let mut payload = req.take_payload();
    let read = read_all(&mut payload, max_bytes);
    let refusal = match tokio::time::timeout(Duration::from_millis(timeout_ms), read).await {
        Ok(Ok(body)) => {
            req.set_payload(actix_web::dev::Payload::from(body));
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body);
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body could not be read");
            ApiError::bad_request(ErrorCode::ParseError, "The request body could not be read.")
        }
        Err(_) => {
            tracing::debug!(timeout_ms, "request body not received in time");
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BadRequest,
                "The request body did not arrive in time.",
            )
        }
    };
    // The rest of the body may still come: the connection is closed after
    // the answer. actix closes it only while the unread payload is alive
    // (a dropped chunked one it would drain, waiting for ever), so the
    // answer's body holds it until written.
    let res = req.error_response(refusal);
    Ok(res.map_body(|head, body| {
        head.set_connection_type(actix_web::http::ConnectionType::Close);
        BoxBody::new(HoldingPayload {
            body,
            _payload: Box::new(payload),
        })
    }))
}

/// An answer given before the request's body was read to its end: the
/// connection is closed after it, and `unread` (what holds the payload)
/// is kept alive until the answer has been written (see
/// [`read_body_in_time`] for why).
pub fn close_after(
    res: actix_web::HttpResponse,
    unread: impl std::any::Any,
) -> actix_web::HttpResponse {
    res.map_body(|head, body| {
        head.set_connection_type(actix_web::http::ConnectionType::Close);
        BoxBody::new(HoldingPayload {
            body,
            _payload: Box::new(unread),
        })
    })
}

/// Reads `payload` to its end, or until it holds more than `max_bytes`.
async fn read_all(
    payload: &mut actix_web::dev::Payload,
    max_bytes: usize,
) -> Result<web::Bytes, actix_web::error::PayloadError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        body.extend_from_slice(&chunk?);
        if body.len() > max_bytes {
            break;
        }
    }
    Ok(body.freeze())
}

/// A response body that keeps the request's unread payload alive until it
/// has been written (see [`read_body_in_time`]).
struct HoldingPayload {
    body: BoxBody,
    _payload: Box<dyn std::any::Any>,
}

impl MessageBody for HoldingPayload {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<web::Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
