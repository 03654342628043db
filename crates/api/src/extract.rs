//! Request parsing with the API's error body: JSON bodies, path ids.

use crate::error::ApiError;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use serde::de::DeserializeOwned;

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
                "payload_too_large",
                "Request body is too large.",
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type; use application/json.",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::bad_request("invalid", clean_serde(&e))
        }
        JsonPayloadError::Deserialize(_) => {
            ApiError::bad_request("parse_error", "Malformed JSON body.")
        }
        _ => ApiError::bad_request("parse_error", "Could not read the request body."),
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
        ApiError::bad_request("invalid", err.to_string()).into()
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

/// A body that may be absent: empty means `None`; otherwise JSON with the
/// same rules as [`json_config`].
pub fn optional_json<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &web::Bytes,
    limit: usize,
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if body.len() > limit {
        return Err(json_error(JsonPayloadError::Overflow { limit }));
    }
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type.is_some_and(|ct| !ct.starts_with("application/json")) {
        return Err(json_error(JsonPayloadError::ContentType));
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| json_error(JsonPayloadError::Deserialize(e)))
}
