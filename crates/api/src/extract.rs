//! Request parsing with the API's error body: JSON bodies, path ids,
//! query pairs, and the collector of per-field validation messages.

use crate::error::{ApiError, ErrorCode, FieldErrors};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// JSON body settings: size limit and error mapping (413, 415, 400).
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| json_error(err).into())
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "Request body is too large.",
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "Unsupported media type; use application/json.",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::bad_request(ErrorCode::Invalid, clean_serde(&e))
        }
        JsonPayloadError::Deserialize(_) => {
            ApiError::bad_request(ErrorCode::ParseError, "Malformed JSON body.")
        }
        _ => ApiError::bad_request(ErrorCode::ParseError, "Could not read the request body."),
    }
}

/// serde's message without the position suffix.
fn clean_serde(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Path parameter errors: a non-numeric id is simply not found.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err: PathError, _req| ApiError::not_found("Not found.").into())
}

/// Query string errors.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::bad_request(ErrorCode::Invalid, err.to_string()).into()
    })
}

/// An id from the path: positive integers only; anything else is a 404.
pub fn path_id(req: &HttpRequest, name: &str) -> Result<i64, ApiError> {
    req.match_info()
        .get(name)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::not_found("Not found."))
}

/// Whether the request says its body is JSON: `application/json` (any
/// parameters) or a `+json` type, as actix's own JSON extractor accepts.
fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((_, subtype)) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

/// A body that may be absent: empty (no bytes) means `None`; otherwise JSON
/// with the same rules as [`json_config`]. A body of only whitespace is not
/// absent: it is not JSON either (RFC 8259 needs a value), so it is a 400.
pub fn optional_json<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &web::Bytes,
    limit: usize,
) -> Result<Option<T>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    if body.len() > limit {
        return Err(json_error(JsonPayloadError::Overflow { limit }));
    }
    if !is_json_content_type(req) {
        return Err(json_error(JsonPayloadError::ContentType));
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| json_error(JsonPayloadError::Deserialize(e)))
}

/// A JSON body that must be an object, as every API body is (400 otherwise).
pub fn json_object(body: Value) -> Result<Map<String, Value>, ApiError> {
    let kind = match body {
        Value::Object(map) => return Ok(map),
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
    };
    Err(ApiError::bad_request(
        ErrorCode::Invalid,
        format!("Invalid data. Expected a JSON object, but got {kind}."),
    ))
}

/// The JSON object body of a request; an empty body counts as `{}` (so a
/// missing required field is reported as such). Same errors as
/// [`json_config`]: 413, 415, 400.
pub fn json_body(
    req: &HttpRequest,
    body: &web::Bytes,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    match optional_json::<Value>(req, body, limit)? {
        Some(value) => json_object(value),
        None => Ok(Map::new()),
    }
}

/// A string field of a JSON object: `Some(None)` when absent or `null`,
/// `Some(Some(text))` for a string, `None` (with the message recorded) for
/// any other type.
pub(crate) fn text_field(
    v: &mut Validator,
    body: &Map<String, Value>,
    name: &str,
) -> Option<Option<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            v.add(name, "Not a valid string.");
            None
        }
    }
}

/// A required string field (see [`text_field`]).
pub(crate) fn required_text(
    v: &mut Validator,
    body: &Map<String, Value>,
    name: &str,
) -> Option<String> {
    text_field(v, body, name).and_then(|t| v.required(name, t))
}

/// The query string as decoded pairs (malformed pairs are dropped).
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

/// A query parameter that must be a positive integer (a cursor, a limit,
/// an id); anything else is a 400 on `name`.
pub(crate) fn positive(name: &str, raw: &str) -> Result<i64, ApiError> {
    positive_integer(raw).map_err(|message| ApiError::field(name, message))
}

/// A positive integer, or the message a field error carries; for a
/// [`Validator`] that collects several fields' errors.
pub(crate) fn positive_integer(raw: &str) -> Result<i64, &'static str> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or("Must be a positive integer.")
}

/// Collects per-field validation messages.
#[derive(Debug, Default)]
pub(crate) struct Validator(FieldErrors);

impl Validator {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// A required value, or a "required" message.
    pub fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(field, "This field is required.");
        }
        value
    }

    /// Keeps the parsed value or records the parse error.
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.add(field, e.to_string())).ok()
    }

    /// The 500 for a value [`Validator::finish`] passed but that is not
    /// there: a bug, logged as such.
    pub fn lost_value() -> ApiError {
        ApiError::internal_because("a validated field is missing")
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// A JSON number that is an integer, as JSON Schema counts them: `7` and
/// `7.0` alike (what generated clients may send), never `7.5`.
pub fn integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    })
}
