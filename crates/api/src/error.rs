//! The one API error type and the error policy.
//!
//! # Policy
//!
//! Who returns what:
//!
//! - **Domain rules** (`chat-domain`) return small error enums of their own
//!   (`ConnectionError`, `SendDenied`, `UserFieldError`, `MessageContentError`):
//!   no status, no I/O, a message written for clients. They become
//!   [`ApiError`]s here, through `From` or the validation helpers, which pick
//!   the status and the [`ErrorCode`].
//! - **Persistence** (`chat-persistence`) returns `PersistenceError`:
//!   `NotFound`, `Conflict`, `Unavailable`, `Other`. `From<PersistenceError>`
//!   below makes them 404, 409, 503 and 500; a handler that knows what a
//!   conflict or a missing row means (a taken username, an unknown user)
//!   matches the variant itself first.
//! - **Handlers, extractors and middleware** return `ApiError` only, so every
//!   failure a client sees is `{"detail", "code", "fields"?}` with `code` one
//!   of [`ErrorCode`]: the one, closed list of codes. The OpenAPI `ErrorCode`
//!   schema is generated from it, and tests check `docs/decisions.md` against
//!   it. Framework errors that are not JSON are rewritten by
//!   [`json_error_handlers`]; WebSocket refusals become `error` events or
//!   close codes, with the same rule on what they may say.
//!
//! What is logged: the cause of every 5xx, at `error` level, where it is
//! known: `From<PersistenceError>`, [`ApiError::internal_because`], a site
//! that logs before [`ApiError::internal`], or [`json_error_handlers`] for
//! the framework's own 5xx. Handlers run inside the request's span, opened
//! by the middleware that logs each request, so those lines carry the
//! request's `request_id`, the id the client gets back in `X-Request-Id`.
//! 4xx are the client's business and are not logged as errors.
//!
//! What is never returned: SQL, driver, pool or Redis messages, constraint
//! names, stack traces or panic messages, tokens and passwords. A 5xx says
//! only `internal_error` or `service_unavailable` with a fixed sentence.

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

/// Declares [`ErrorCode`], [`ErrorCode::ALL`] and [`ErrorCode::as_str`]
/// from one list, so `ALL` cannot miss a code. The wire name is the
/// variant's snake_case (serde); a test checks `as_str` against it.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )+) => {
        /// The machine-readable `code` of an error body: stable snake_case
        /// strings, the only ones a client can meet.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        #[schema(example = "not_found")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),+];

            /// The wire name, e.g. `not_found`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }
    };
}

error_codes! {
    /// Validation failed: `fields` has the messages per field; or the body
    /// or a query parameter is not what the route takes.
    Invalid = "invalid",
    /// The body is not well-formed JSON, or could not be read.
    ParseError = "parse_error",
    /// Any other 4xx the framework raises.
    BadRequest = "bad_request",
    /// No credentials were sent.
    NotAuthenticated = "not_authenticated",
    /// A bad, expired or wrong-type token (SimpleJWT's code).
    TokenNotValid = "token_not_valid",
    /// The token's user no longer exists.
    UserNotFound = "user_not_found",
    /// Wrong username or password.
    InvalidCredentials = "invalid_credentials",
    /// Not found, or not visible to the caller.
    NotFound = "not_found",
    /// Another method than the path serves.
    MethodNotAllowed = "method_not_allowed",
    /// The body is over the size limit.
    PayloadTooLarge = "payload_too_large",
    /// A body that is not JSON.
    UnsupportedMediaType = "unsupported_media_type",
    /// The request headers are over the size limit.
    HeadersTooLarge = "headers_too_large",
    /// Registration with a username that is taken.
    UsernameTaken = "username_taken",
    /// A write refused by a uniqueness rule not covered by a finer code.
    Conflict = "conflict",
    /// A connection request to oneself.
    SelfRequest = "self_request",
    /// A pending or accepted connection links the two already.
    AlreadyConnected = "already_connected",
    /// Only the addressee may accept or reject.
    NotAddressee = "not_addressee",
    /// Accepting or rejecting a connection that is not pending.
    NotPending = "not_pending",
    /// Removing a connection that is already rejected or removed.
    AlreadyClosed = "already_closed",
    /// Sending in a conversation whose connection is not accepted.
    NotConnected = "not_connected",
    /// A rate limit; `Retry-After` says when to try again.
    RateLimited = "rate_limited",
    /// A backing service (the database) is down.
    ServiceUnavailable = "service_unavailable",
    /// An unexpected failure; its cause is logged, never returned.
    InternalError = "internal_error",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response: the body of every error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// For humans.
    #[schema(example = "Not found.")]
    detail: String,
    /// Stable snake_case machine code; `ErrorCode` lists every value.
    code: ErrorCode,
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
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
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
            fields: Some(fields),
            ..Self::bad_request(ErrorCode::Invalid, "Invalid input.")
        }
    }

    /// 400 for one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(name.to_owned(), vec![message.into()])]))
    }

    /// 400 without fields.
    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401.
    pub fn unauthorized(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// 403.
    pub fn forbidden(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, detail)
    }

    /// 409.
    pub fn conflict(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503 for a backing service that is down.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "A backing service is unavailable; try again shortly.",
        )
    }

    /// 500 that says nothing of the cause; the caller has logged it (or use
    /// [`ApiError::internal_because`]).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "Internal server error.",
        )
    }

    /// 500 for `cause`, which is logged at error level (in the request's
    /// span, so with its request id) and not returned.
    pub fn internal_because(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::internal()
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
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
                Self::conflict(
                    ErrorCode::Conflict,
                    "The request conflicts with the current state.",
                )
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
            ConnectionError::SelfRequest => Self::bad_request(ErrorCode::SelfRequest, detail),
            ConnectionError::AlreadyConnected => {
                Self::conflict(ErrorCode::AlreadyConnected, detail)
            }
            ConnectionError::NotParticipant => Self::not_found(detail),
            ConnectionError::NotAddressee => Self::forbidden(ErrorCode::NotAddressee, detail),
            ConnectionError::NotPending => Self::conflict(ErrorCode::NotPending, detail),
            ConnectionError::AlreadyClosed => Self::conflict(ErrorCode::AlreadyClosed, detail),
        }
    }
}

impl From<SendDenied> for ApiError {
    fn from(e: SendDenied) -> Self {
        match e {
            SendDenied::NotParticipant => Self::not_found("Conversation not found."),
            SendDenied::NotConnected => Self::forbidden(ErrorCode::NotConnected, e.to_string()),
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
        if status.is_server_error() {
            let cause = res.response().error().map(ToString::to_string);
            tracing::error!(
                status = status.as_u16(),
                cause = cause.as_deref().unwrap_or("unknown"),
                "server error"
            );
        }
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
            ApiError::new(status, ErrorCode::MethodNotAllowed, "Method not allowed.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            ErrorCode::PayloadTooLarge,
            "Request body is too large.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            ErrorCode::UnsupportedMediaType,
            "Unsupported media type; use application/json.",
        ),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(
            ErrorCode::NotAuthenticated,
            "Authentication credentials were not provided.",
        ),
        s if s.is_server_error() => {
            ApiError::new(s, ErrorCode::InternalError, "Internal server error.")
        }
        s => ApiError::new(
            s,
            ErrorCode::BadRequest,
            s.canonical_reason().unwrap_or("Bad request."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_their_snake_case_wire_names() {
        let mut seen = BTreeSet::new();
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).expect("json");
            assert_eq!(wire, code.as_str(), "{code:?}");
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code:?}"
            );
            assert!(seen.insert(code.as_str()), "{code:?} twice");
        }
    }

    /// The backticked words after "one of these:" in the "Error codes"
    /// paragraph of `docs/decisions.md`.
    fn documented_codes() -> BTreeSet<String> {
        let doc = include_str!("../../../docs/decisions.md");
        let start = doc
            .find("- **Error codes.**")
            .expect("an \"Error codes\" paragraph in docs/decisions.md");
        let rest = &doc[start + 1..];
        let paragraph = &rest[..rest.find("\n- ").unwrap_or(rest.len())];
        let list = paragraph
            .split_once("one of these:")
            .expect("\"one of these:\" before the list")
            .1;
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn decisions_md_lists_exactly_the_codes() {
        let listed = documented_codes();
        let real: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(listed, real, "docs/decisions.md vs ErrorCode");
    }

    #[test]
    fn internal_errors_say_nothing_of_the_cause() {
        let e = ApiError::internal_because("relation \"users\" does not exist");
        let body = serde_json::to_string(&e).expect("json");
        assert_eq!(
            body,
            r#"{"detail":"Internal server error.","code":"internal_error"}"#
        );
        let e = ApiError::from(PersistenceError::other("syntax error at or near"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!serde_json::to_string(&e).expect("json").contains("syntax"));
    }

    /// Collects what a `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn the_cause_of_a_5xx_is_logged_with_the_request_id() {
        use actix_web::{App, middleware, test, web};
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Other tests may have cached "no interest" for these callsites
        // while no subscriber was set on their thread.
        tracing::callsite::rebuild_interest_cache();
        let app = test::init_service(
            App::new()
                .route(
                    "/",
                    web::get().to(|| async {
                        let cause = PersistenceError::other("relation \"secret\" is gone");
                        Err::<HttpResponse, _>(ApiError::from(cause))
                    }),
                )
                .wrap(middleware::from_fn(crate::middleware::observe)),
        )
        .await;
        let req = test::TestRequest::get()
            .uri("/")
            .insert_header(("x-request-id", "req-42"))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = test::read_body(res).await;
        assert!(!String::from_utf8_lossy(&body).contains("secret"));

        let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let line = logs
            .lines()
            .find(|l| l.contains("database error"))
            .unwrap_or_else(|| panic!("the cause is logged: {logs}"));
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("secret"), "the cause itself: {line}");
        assert!(
            line.contains("request_id=req-42"),
            "in the request's span: {line}"
        );
    }
}
