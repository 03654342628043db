//! `POST /api/chat/attachments/` (multipart upload) and the downloads of
//! files and thumbnails.

use super::Router;
use crate::auth::{authenticate, bearer_token};
use crate::error::{ApiError, ErrorCode};
use crate::extract::path_id;
use crate::middleware::close_after;
use crate::openapi::responses as resp;
use crate::service::attachments::{self as files, Deadline, Spooled};
use crate::state::AppState;
use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chat_domain::attachment::Attachment;
use chat_domain::{AttachmentId, User};
use chat_persistence::attachments::StoredFile;
use utoipa::ToSchema;

/// The upload route (the body deadline middleware leaves it to its handler).
pub const UPLOAD: &str = "/api/chat/attachments/";
const FILE: &str = "/api/chat/attachments/{id}/";
const THUMBNAIL: &str = "/api/chat/attachments/{id}/thumbnail/";

/// Multipart overhead allowed above `attachments.max_bytes` in a declared
/// `Content-Length` before the request is refused unread.
const MULTIPART_SLACK: u64 = 64 * 1024;

/// Upload, file and thumbnail routes.
pub fn configure(r: &mut Router<'_>) {
    r.resource(UPLOAD, |e| e.post(upload))
        .resource(FILE, |e| e.get(download))
        .resource(THUMBNAIL, |e| e.get(thumbnail));
}

/// The upload form: one field, `file` (others are refused).
#[derive(Debug, ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "the body's schema; the handler streams the form")]
struct UploadForm {
    /// The file (one). Its type is sniffed from the bytes; its name is kept
    /// as a display name only.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file
///
/// Stores one file (`multipart/form-data`, field `file`) for you to send
/// with a message (`attachment_ids`) within 24 hours; files never sent are
/// deleted then. The type is sniffed from the bytes: PNG, JPEG, GIF, WebP,
/// PDF and plain text by default. Images get `width`, `height` and a
/// thumbnail. The body is streamed to storage: an upload over the limit is
/// refused (413) as soon as it crosses it.
#[utoipa::path(post, path = UPLOAD, tag = "attachments", operation_id = "attachments_upload",
    security(("jwt" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The stored file.", body = Attachment),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 408, description = "`bad_request`: the upload did not arrive in time.",
            body = ApiError),
        (status = 413, description = "`payload_too_large`: the file is over the limit \
            (10 MiB by default).", body = ApiError),
        (status = 415, description = "`unsupported_media_type`: not multipart/form-data, or \
            a file type that is not accepted.", body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
pub(crate) async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    // Authentication and the declared size before a byte of the body.
    let user = match caller(&state, &req, false).await {
        Ok(u) => u,
        Err(e) => return close_after(e.error_response(), payload),
    };
    if let Err(e) = precheck(&state, &req) {
        return close_after(e.error_response(), payload);
    }
    let deadline = Deadline::new(&state);
    let mut form = Multipart::new(req.headers(), deadline.watch(payload));
    match read_form(&state, &mut form, &deadline).await {
        Ok(spooled) => match files::store(&state, user.id, spooled).await {
            Ok(attachment) => HttpResponse::Created().json(attachment),
            Err(e) => e.error_response(),
        },
        // What is left of the body is not read: the connection closes.
        Err(e) => close_after(e.error_response(), form),
    }
}

/// 415 unless the body is `multipart/form-data`; 413 when its declared
/// length is over the limit.
fn precheck(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "Unsupported media type; use multipart/form-data with a field 'file'.",
        ));
    }
    let max = state.settings.attachments.max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(MULTIPART_SLACK)) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("The file is larger than {max} bytes."),
        ));
    }
    Ok(())
}

/// Reads the whole form: exactly one field, `file` (spooled as it arrives).
async fn read_form(
    state: &AppState,
    form: &mut Multipart,
    deadline: &Deadline,
) -> Result<Spooled, ApiError> {
    let mut spooled: Option<Spooled> = None;
    while let Some(field) = deadline.next(form).await? {
        let mut field = field.map_err(files::unreadable)?;
        if field.name() == Some("file") {
            if spooled.is_some() {
                return Err(ApiError::field("file", "Send one file per upload."));
            }
            let filename = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .map(str::to_owned);
            spooled = Some(files::spool(state, filename.as_deref(), &mut field, deadline).await?);
        } else {
            return Err(ApiError::field(
                "file",
                "The form has one field, 'file'; other fields are refused.",
            ));
        }
    }
    spooled.ok_or_else(|| ApiError::field("file", "No file was submitted."))
}

/// The caller, from the `Authorization` header or (`query_token`, for
/// `<img>` tags and links) a `token` query parameter.
async fn caller(state: &AppState, req: &HttpRequest, query_token: bool) -> Result<User, ApiError> {
    let from_query = || {
        query_token
            .then(|| url_query_token(req.query_string()))
            .flatten()
    };
    let token = bearer_token(req).map(str::to_owned).or_else(from_query);
    let token = token.ok_or_else(|| {
        ApiError::unauthorized(
            ErrorCode::NotAuthenticated,
            "Authentication credentials were not provided.",
        )
    })?;
    authenticate(state, &token).await
}

/// The `token` parameter of a query string.
fn url_query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "token").then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Download a file
///
/// The bytes of an attachment, to its uploader and to the participants of
/// the conversation it was sent in (404 for anyone else, whether or not it
/// exists). The access token may be given as a `token` query parameter
/// (for `<img>` tags and links). Images are served inline, other files as
/// downloads; `Range` requests (one range) and `If-None-Match` are honoured.
#[utoipa::path(get, path = FILE, tag = "attachments", operation_id = "attachments_download",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Attachment id."),
        ("token" = Option<String>, Query, description = "An access token, instead of the \
            `Authorization` header."),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`.")),
    responses(
        (status = 200, description = "The file, with its sniffed type.",
            content((Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/gif"),
                (Vec<u8> = "image/webp"), (Vec<u8> = "application/pdf"),
                (Vec<u8> = "text/plain")),
            headers(("ETag" = String, description = "The SHA-256 of the bytes, quoted."),
                ("Content-Disposition" = String, description = "`inline` for images, \
                    `attachment` otherwise, with the display name."))),
        (status = 206, description = "The requested range.",
            content((Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/gif"),
                (Vec<u8> = "image/webp"), (Vec<u8> = "application/pdf"),
                (Vec<u8> = "text/plain")),
            headers(("Content-Range" = String, description = "`bytes first-last/size`."))),
        (status = 304, description = "Unchanged (`If-None-Match`)."),
        (status = 401, response = resp::Unauthorized),
        (status = 404, response = resp::NotFound),
        (status = 416, description = "`bad_request`: the range is outside the file.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
pub(crate) async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let file = readable(&state, &req).await?;
    serve(&state, &req, &file, false).await
}

/// A file's thumbnail
///
/// A JPEG of an image attachment, at most 320 pixels on its long side; the
/// same access rules as the file (404 for files that are not images).
#[utoipa::path(get, path = THUMBNAIL, tag = "attachments", operation_id = "attachments_thumbnail",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Attachment id."),
        ("token" = Option<String>, Query, description = "An access token, instead of the \
            `Authorization` header.")),
    responses(
        (status = 200, description = "The thumbnail.", content_type = "image/jpeg",
            body = Vec<u8>),
        (status = 304, description = "Unchanged (`If-None-Match`)."),
        (status = 401, response = resp::Unauthorized),
        (status = 404, response = resp::NotFound),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
pub(crate) async fn thumbnail(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let file = readable(&state, &req).await?;
    serve(&state, &req, &file, true).await
}

async fn readable(state: &AppState, req: &HttpRequest) -> Result<StoredFile, ApiError> {
    let user = caller(state, req, true).await?;
    let id = AttachmentId(path_id(req, "id")?);
    files::readable(state, user.id, id).await
}

/// A single byte range of a file of `size` bytes, from a `Range` header:
/// `Ok(None)` to serve it all (no header, several ranges, another unit),
/// `Err` when it cannot be satisfied.
fn byte_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let n: u64 = end.parse().map_err(drop)?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let a: u64 = start.parse().map_err(drop)?;
        let b: u64 = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>()
                .map_err(drop)?
                .min(size.saturating_sub(1))
        };
        if a >= size || b < a {
            return Err(());
        }
        a..b + 1
    };
    Ok(Some(range))
}

/// `filename="<ascii>"; filename*=UTF-8''<percent-encoded>` for a display name.
fn disposition(kind: &str, filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded =
        percent_encoding::utf8_percent_encode(filename, percent_encoding::NON_ALPHANUMERIC);
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The bytes of `file` (or of its thumbnail) with their headers.
async fn serve(
    state: &AppState,
    req: &HttpRequest,
    file: &StoredFile,
    thumb: bool,
) -> Result<HttpResponse, ApiError> {
    let a = &file.attachment;
    let (key, etag, content_type) = if thumb {
        let key = file
            .thumbnail_key
            .as_deref()
            .ok_or_else(|| ApiError::not_found("Not found."))?;
        (
            key,
            format!("\"{}-t\"", file.sha256),
            "image/jpeg".to_owned(),
        )
    } else {
        let kind = if a.content_type == chat_files::sniff::TEXT_PLAIN {
            format!("{}; charset=utf-8", a.content_type)
        } else {
            a.content_type.clone()
        };
        (
            file.storage_key.as_str(),
            format!("\"{}\"", file.sha256),
            kind,
        )
    };
    let mut res = HttpResponse::build(StatusCode::OK);
    res.insert_header((header::ETAG, etag.clone()))
        .insert_header((
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ));
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok(res.status(StatusCode::NOT_MODIFIED).finish());
    }
    let shown = if a.is_image() || thumb {
        "inline"
    } else {
        "attachment"
    };
    res.insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_DISPOSITION, disposition(shown, &a.filename)));
    let size = u64::try_from(a.size).unwrap_or(0);
    let range = if thumb {
        None
    } else {
        res.insert_header((header::ACCEPT_RANGES, "bytes"));
        match byte_range(req.headers().get(header::RANGE), size) {
            Ok(r) => r,
            Err(()) => {
                let err = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::BadRequest,
                    "The requested range is outside the file.",
                );
                let mut out = err.error_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    out.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(out);
            }
        }
    };
    let opened = files::open(state, key, range.clone()).await?;
    let length = match &range {
        Some(r) => {
            res.status(StatusCode::PARTIAL_CONTENT).insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, opened.size),
            ));
            r.end - r.start
        }
        None => opened.size,
    };
    Ok(res.no_chunking(length).streaming(opened.stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
        byte_range(Some(&HeaderValue::from_str(v).expect("header")), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=95-200", 100), Ok(Some(95..100)));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-2", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(byte_range(None, 100), Ok(None));
    }

    #[test]
    fn dispositions_quote_safely() {
        assert_eq!(
            disposition("attachment", "a\"b é.pdf"),
            "attachment; filename=\"a_b _.pdf\"; filename*=UTF-8''a%22b%20%C3%A9%2Epdf"
        );
    }
}
