//! The OpenAPI document and Swagger UI (vendored: every asset is served
//! from here, nothing is loaded from another host).

use super::Router;
use crate::error::ApiError;
use crate::openapi;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use std::sync::{Arc, OnceLock};
use utoipa_swagger_ui::Config;

/// The document.
pub(crate) const SCHEMA: &str = "/api/schema/";
/// Swagger UI's page.
pub(crate) const DOCS: &str = "/api/docs/";
/// Swagger UI's assets (scripts, styles, icons).
pub(crate) const DOCS_ASSET: &str = "/api/docs/{file}/";

/// `GET /api/schema/`, `GET /api/docs/` and its assets.
pub fn configure(r: &mut Router<'_>) {
    r.resource(SCHEMA, |e| e.get(schema))
        .resource(DOCS, |e| e.get(index))
        .resource(DOCS_ASSET, |e| e.get(asset));
}

/// The OpenAPI document
///
/// This document, as JSON.
#[utoipa::path(get, path = SCHEMA, tag = "docs", operation_id = "openapi_schema",
    responses(
        (status = 200, description = "The OpenAPI 3 document.", content_type = "application/json",
            body = Object),
    ))]
async fn schema() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(openapi::json())
}

/// Swagger UI
///
/// A browsable view of this document; all its assets are served by this
/// service.
#[utoipa::path(get, path = DOCS, tag = "docs", operation_id = "swagger_ui",
    responses((status = 200, description = "Swagger UI's page.", content_type = "text/html",
        body = String)))]
async fn index() -> Result<HttpResponse, ApiError> {
    serve("index.html")
}

/// A Swagger UI asset
#[utoipa::path(get, path = DOCS_ASSET, tag = "docs", operation_id = "swagger_ui_asset",
    params(("file" = String, Path, description = "Asset file name, e.g. `swagger-ui.css`.")),
    responses(
        (status = 200, description = "The asset (script, style sheet, page or icon), with its \
            type.", content(
                (String = "text/javascript"), (String = "text/css"), (String = "text/html"),
                (Vec<u8> = "image/png"))),
        (status = 404, response = openapi::responses::NotFound),
    ))]
async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(req.match_info().get("file").unwrap_or_default())
}

fn serve(file: &str) -> Result<HttpResponse, ApiError> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Arc::new(
            Config::new([SCHEMA])
                // The online validator would be a request to another host.
                .validator_url("none")
                .persist_authorization(true),
        )
    });
    match utoipa_swagger_ui::serve(file, config.clone()) {
        Ok(Some(file)) => Ok(HttpResponse::Ok()
            .content_type(file.content_type)
            .body(file.bytes.into_owned())),
        Ok(None) => Err(ApiError::not_found("Not found.")),
        Err(e) => {
            tracing::error!(error = %e, "swagger ui");
            Err(ApiError::internal())
        }
    }
}
