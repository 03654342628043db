//! Reusable error responses (`#/components/responses/...`). Every error has
//! the body `{"detail", "code", "fields"?}` ([`ApiError`]); the description
//! lists the `code` values a client can meet.

use crate::error::ApiError;
use utoipa::ToResponse;

/// Invalid input: `invalid` (with `fields`, one list of messages per
/// field, for validation errors) or `parse_error` (malformed JSON).
#[derive(Debug, ToResponse)]
#[response(example = json!({"detail": "Invalid input.", "code": "invalid",
    "fields": {"username": ["This field is required."]}}))]
pub struct BadRequest(pub ApiError);

/// Missing, invalid or expired token: `not_authenticated` (no
/// credentials), `token_not_valid` (bad signature, expired, `alg: none`, or
/// a refresh token where an access token is expected), `user_not_found`.
#[derive(Debug, ToResponse)]
#[response(
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"api\"`")),
    example = json!({"detail": "Token is invalid or expired.", "code": "token_not_valid"})
)]
pub struct Unauthorized(pub ApiError);

/// Not found, or not visible to this user (`not_found`); non-numeric ids
/// in paths are not found too.
#[derive(Debug, ToResponse)]
#[response(example = json!({"detail": "Not found.", "code": "not_found"}))]
pub struct NotFound(pub ApiError);

/// Another method than the ones this path serves (`method_not_allowed`).
#[derive(Debug, ToResponse)]
#[response(
    headers(("Allow" = String, description = "The methods this path serves.")),
    example = json!({"detail": "Method not allowed.", "code": "method_not_allowed"})
)]
pub struct MethodNotAllowed(pub ApiError);

/// The body is above the configured limit, 64 KiB by default
/// (`payload_too_large`).
#[derive(Debug, ToResponse)]
#[response(example = json!({"detail": "Request body is too large.", "code": "payload_too_large"}))]
pub struct PayloadTooLarge(pub ApiError);

/// A non-empty body that is not `application/json` (or `+json`)
/// (`unsupported_media_type`).
#[derive(Debug, ToResponse)]
#[response(example = json!({"detail": "Unsupported media type; use application/json.",
    "code": "unsupported_media_type"}))]
pub struct UnsupportedMediaType(pub ApiError);

/// Rate limited (`rate_limited`); retry after the announced delay.
#[derive(Debug, ToResponse)]
#[response(
    headers(("Retry-After" = i64, description = "Seconds to wait before retrying.")),
    example = json!({"detail": "Too many requests; slow down.", "code": "rate_limited"})
)]
pub struct TooManyRequests(pub ApiError);

/// An unexpected failure (`internal_error`); never leaks internals.
#[derive(Debug, ToResponse)]
#[response(example = json!({"detail": "Internal server error.", "code": "internal_error"}))]
pub struct InternalError(pub ApiError);

/// A backing service (the database) is down (`service_unavailable`).
#[derive(Debug, ToResponse)]
#[response(example = json!({"detail": "A backing service is unavailable; try again shortly.",
    "code": "service_unavailable"}))]
pub struct ServiceUnavailable(pub ApiError);
