//! The web client: plain ES modules from `crates/api/web/`, compiled into
//! the binary and served at `/` and `/app/` (page) and `/app/{file}` (assets).
//!
//! Caching: every response carries a strong ETag (FNV-1a of the bytes,
//! computed at compile time) and `Cache-Control: no-cache`, so a browser
//! revalidates each file (a 304 when unchanged) and never runs a stale
//! module after a deploy; with no build step there are no hashed names to
//! cache for ever. Text assets are gzipped once per process when the client
//! accepts it. Every response carries a strict Content-Security-Policy: the
//! page loads nothing but this server's own files and sockets.

use super::Router;
use crate::error::ApiError;
use crate::openapi;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use std::io::Write;
use std::sync::OnceLock;

const ROOT: &str = "/";
const APP: &str = "/app/";
const ASSET: &str = "/app/{file}/";

/// `GET /`, `GET /app/` and `GET /app/{file}/`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(ROOT, |e| e.get(root))
        .resource(APP, |e| e.get(app))
        .resource(ASSET, |e| e.get(asset));
}

/// One file of the client.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// FNV-1a 64 of `bytes`: a content hash for the ETag, no dependency.
    hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../web/", $name)),
            hash: fnv1a(include_bytes!(concat!("../../web/", $name))),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Index of the page in [`ASSETS`].
const PAGE: usize = 0;

/// Every file; a file not listed here is not served (a test checks that
/// nothing the page loads is missing).
static ASSETS: [Asset; 9] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("stream.js", JS),
    asset!("store.js", JS),
    asset!("dom.js", JS),
    asset!("chat.js", JS),
    asset!("contacts.js", JS),
];

/// The client's page
///
/// The web client (HTML); its scripts and styles come from `/app/{file}/`.
#[utoipa::path(get, path = ROOT, tag = "web client", operation_id = "web_client_root",
    responses((status = 200, description = "The web client's page.", content_type = "text/html",
        body = String)))]
async fn root(req: HttpRequest) -> HttpResponse {
    serve(&req, PAGE)
}

/// The client's page (again)
///
/// The same page as `/`, for deployments that put something else there.
#[utoipa::path(get, path = APP, tag = "web client", operation_id = "web_client_app",
    responses((status = 200, description = "The web client's page.", content_type = "text/html",
        body = String)))]
async fn app(req: HttpRequest) -> HttpResponse {
    serve(&req, PAGE)
}

/// A web client asset
///
/// A script module or the style sheet, with its type.
#[utoipa::path(get, path = ASSET, tag = "web client", operation_id = "web_client_asset",
    params(("file" = String, Path, description = "File name, e.g. `app.js`.")),
    responses(
        (status = 200, description = "The file, with its type; 304 when `If-None-Match` holds \
            its ETag.", content(
                (String = "text/javascript"), (String = "text/css"), (String = "text/html"))),
        (status = 404, response = openapi::responses::NotFound),
    ))]
async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("file").unwrap_or_default();
    ASSETS
        .iter()
        .position(|a| a.name == name)
        .map(|index| serve(&req, index))
        .ok_or_else(|| ApiError::not_found("Not found."))
}

/// gzip of each text asset (by index into [`ASSETS`]), made on first use;
/// `None` where it would not be smaller.
fn gzipped(index: usize) -> Option<&'static [u8]> {
    static GZ: OnceLock<Vec<Option<Vec<u8>>>> = OnceLock::new();
    GZ.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                if !a.content_type.starts_with("text/") {
                    return None;
                }
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(a.bytes).ok()?;
                enc.finish().ok().filter(|gz| gz.len() < a.bytes.len())
            })
            .collect()
    })
    .get(index)?
    .as_deref()
}

/// Whether `Accept-Encoding` takes gzip (a `q=0` refuses it).
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// Whether `If-None-Match` names `etag` (or `*`); weak comparison, as
/// RFC 9110 asks for `If-None-Match`.
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// The policy: scripts, styles, images and sockets from this host only.
/// `connect-src` names the `Host` the page was asked from, as ws:/wss:
/// origins, beside `'self'`, for browsers that do not count same-host
/// sockets as `'self'` (never a forwarded host: that is the client's say).
fn content_security_policy(req: &HttpRequest) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let sockets = if host_ok {
        format!(" ws://{host} wss://{host}")
    } else {
        String::new()
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{sockets}; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// Serves `ASSETS[index]`: 304 when `If-None-Match` holds its ETag, gzip when accepted.
fn serve(req: &HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let gz = if accepts_gzip(req) {
        gzipped(index)
    } else {
        None
    };
    // Each representation has its own strong ETag.
    let etag = match gz {
        Some(_) => format!("\"{:016x}-gz\"", asset.hash),
        None => format!("\"{:016x}\"", asset.hash),
    };
    let unchanged = not_modified(req, &etag);
    let mut res = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        res.insert_header((header::ETAG, etag));
    }
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(req)) {
        res.insert_header((header::CONTENT_SECURITY_POLICY, csp));
    }
    if unchanged {
        return res.finish();
    }
    res.content_type(asset.content_type);
    match gz {
        Some(bytes) => res
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(bytes),
        None => res.body(asset.bytes),
    }
}
