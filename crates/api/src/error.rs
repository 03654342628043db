//! The one API error type and the error policy.
//!
//! Every failure becomes `{"detail", "code", "fields"?}` with a stable
//! snake_case `code`. Lower errors convert through `From`; internals
//! (SQL, driver messages) are logged here and never returned.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpResponse, ResponseError};
use chat_domain::{ConnectionError, SendDenied};
use chat_persistence::PersistenceError;
use serde::Serialize;
use std::collections::BTreeMap;

/// Field name to messages, as in DRF validation errors.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// An error response: the body of every error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// For humans.
    #[schema(example = "Not found.")]
    detail: String,
    /// Stable snake_case machine code, e.g. `invalid`, `parse_error`,
    /// `not_authenticated`, `token_not_valid`, `invalid_credentials`,
    /// `not_found`, `username_taken`, `already_connected`, `not_addressee`,
    /// `not_pending`, `already_closed`, `not_connected`, `rate_limited`,
    /// `service_unavailable`.
    #[schema(value_type = String, example = "not_found")]
    code: &'static str,
    /// Validation errors only: messages per field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>,
        example = json!({"username": ["This field is required."]}))]
    fields: Option<FieldErrors>,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl ApiError {
    /// Any status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            code,
            fields: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header (seconds) to the response.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 with per-field messages.
    pub fn validation(fields: FieldErrors) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: "Invalid input.".into(),
            code: "invalid",
            fields: Some(fields),
            retry_after: None,
        }
    }

    /// 400 for one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(name.to_owned(), vec![message.into()])]))
    }

    /// 400 without fields.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// 403.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 409.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503 for a backing service that is down.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "A backing service is unavailable; try again shortly.",
        )
    }

    /// 500 that says nothing of the cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error.",
        )
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for humans.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Seconds to wait before retrying, for a rate-limited action.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    /// A 401 names the scheme to use, as RFC 9110 asks (and SimpleJWT does).
    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"api\""));
        }
        if let Some(seconds) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        res.json(self)
    }
}

impl From<PersistenceError> for ApiError {
    fn from(e: PersistenceError) -> Self {
        match &e {
            PersistenceError::NotFound => Self::not_found("Not found."),
            PersistenceError::Conflict(constraint) => {
                tracing::debug!(%constraint, "unique constraint refused a write");
                Self::conflict("conflict", "The request conflicts with the current state.")
            }
            PersistenceError::Unavailable(_) => {
                tracing::error!(error = %e, source = %e.sources(), "database unavailable");
                Self::unavailable()
            }
            PersistenceError::Other(_) => {
                tracing::error!(error = %e, source = %e.sources(), "database error");
                Self::internal()
            }
        }
    }
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        let detail = e.to_string();
        match e {
            ConnectionError::SelfRequest => Self::bad_request("self_request", detail),
            ConnectionError::AlreadyConnected => Self::conflict("already_connected", detail),
            ConnectionError::NotParticipant => Self::not_found(detail),
            ConnectionError::NotAddressee => Self::forbidden("not_addressee", detail),
            ConnectionError::NotPending => Self::conflict("not_pending", detail),
            ConnectionError::AlreadyClosed => Self::conflict("already_closed", detail),
        }
    }
}

impl From<SendDenied> for ApiError {
    fn from(e: SendDenied) -> Self {
        match e {
            SendDenied::NotParticipant => Self::not_found("Conversation not found."),
            SendDenied::NotConnected => Self::forbidden("not_connected", e.to_string()),
        }
    }
}

/// Rewrites the framework's own error responses (unknown route, wrong
/// method, extractor failures) that are not already JSON into the API's
/// error body, so clients only ever see one error shape.
pub fn json_error_handlers<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let err = default_for_status(status);
        let (req, old) = res.into_parts();
        let mut new = err.error_response();
        for (name, value) in old.headers() {
            if name == header::ALLOW || name == header::RETRY_AFTER {
                new.headers_mut().insert(name.clone(), value.clone());
            }
        }
        new.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, new).map_into_right_body(),
        ))
    })
}

fn default_for_status(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found("Not found."),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, "method_not_allowed", "Method not allowed.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "payload_too_large", "Request body is too large.")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "Unsupported media type; use application/json.",
        ),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(
            "not_authenticated",
            "Authentication credentials were not provided.",
        ),
        s if s.is_server_error() => ApiError::new(s, "internal_error", "Internal server error."),
        s => ApiError::new(
            s,
            "bad_request",
            s.canonical_reason().unwrap_or("Bad request."),
        ),
    }
}
