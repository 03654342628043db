//! DRF-style page-number pagination with absolute `next`/`previous` links.

use crate::dto::{ConnectionView, ConversationView, MessageView};
use crate::error::ApiError;
use actix_web::HttpRequest;
use serde::Serialize;
use std::borrow::Cow;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Moved to [`crate::extract`]; kept here for the handlers that import it from this module.
pub(crate) use crate::extract::query_pairs;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Larger page sizes are clamped to this.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A requested page.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: i64,
    /// Items per page.
    pub size: i64,
}

impl PageRequest {
    /// Reads `page` and `page_size`. A `page` that is not a positive
    /// integer is a 404 (as DRF); a bad `page_size` falls back to the default.
    pub fn from_request(req: &HttpRequest) -> Result<Self, ApiError> {
        let mut page = 1;
        let mut size = DEFAULT_PAGE_SIZE;
        for (k, v) in query_pairs(req) {
            match k.as_str() {
                "page" => {
                    page = v
                        .parse::<i64>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| ApiError::not_found("Invalid page."))?
                }
                "page_size" => {
                    if let Some(n) = v.parse::<i64>().ok().filter(|n| *n > 0) {
                        size = n.min(MAX_PAGE_SIZE);
                    }
                }
                _ => {}
            }
        }
        Ok(Self { page, size })
    }

    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }

    /// A page past the end is a 404; the first page of nothing is empty.
    pub fn check_exists(&self, count: i64) -> Result<(), ApiError> {
        if self.page > 1 && self.offset() >= count {
            return Err(ApiError::not_found("Invalid page."));
        }
        Ok(())
    }
}

/// The paginated list body: `{"count", "next", "previous", "results"}`.
///
/// Its OpenAPI schema comes from `T` ([`PageItem`]): one component per item
/// type, such as `ConnectionPage` for [`ConnectionPage`].
#[derive(Debug, Serialize)]
pub struct Paginated<T: Serialize> {
    count: i64,
    next: Option<String>,
    previous: Option<String>,
    results: Vec<T>,
}

impl<T: Serialize> Paginated<T> {
    /// Builds the body with links relative to the request URL.
    pub fn new(req: &HttpRequest, page: PageRequest, count: i64, results: Vec<T>) -> Self {
        let last_page = ((count + page.size - 1) / page.size).max(1);
        let next = (page.page < last_page).then(|| page_url(req, page.page + 1));
        let previous = (page.page > 1).then(|| page_url(req, page.page - 1));
        Self {
            count,
            next,
            previous,
            results,
        }
    }
}

/// An item type that is listed in pages: names its page's schema and words
/// the descriptions of the page's fields.
pub trait PageItem: Serialize + ToSchema {
    /// The page's schema name, e.g. `ConnectionPage`.
    const PAGE: &'static str;
    /// What the page holds, in what order.
    const DESCRIPTION: &'static str;
    /// What `count` counts.
    const COUNT: &'static str;
    /// What `next` links to.
    const NEXT: &'static str = "Absolute URL of the next page, or null.";
    /// What `previous` links to.
    const PREVIOUS: &'static str = "Absolute URL of the previous page, or null.";
}

/// A page of connections.
pub type ConnectionPage = Paginated<ConnectionView>;
/// A page of conversations.
pub type ConversationPage = Paginated<ConversationView>;
/// A page of messages.
pub type MessagePage = Paginated<MessageView>;

impl PageItem for ConnectionView {
    const PAGE: &'static str = "ConnectionPage";
    const DESCRIPTION: &'static str = "A page of connections, newest first.";
    const COUNT: &'static str = "Connections in all pages.";
}

impl PageItem for ConversationView {
    const PAGE: &'static str = "ConversationPage";
    const DESCRIPTION: &'static str = "A page of conversations, most recently active first.";
    const COUNT: &'static str = "Conversations in all pages.";
}

impl PageItem for MessageView {
    const PAGE: &'static str = "MessagePage";
    const DESCRIPTION: &'static str =
        "A page of messages, newest first; page 1 holds the latest messages.";
    const COUNT: &'static str = "Messages in all pages.";
    const NEXT: &'static str = "Absolute URL of the next (older) page, or null.";
    const PREVIOUS: &'static str = "Absolute URL of the previous (newer) page, or null.";
}

// Written out rather than derived: a derived generic schema would be named
// `Paginated_Connection` and word every page the same.
impl<T: PageItem> PartialSchema for Paginated<T> {
    fn schema() -> RefOr<Schema> {
        let link = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .format(Some(SchemaFormat::Custom("uri".into())))
                .description(Some(description))
        };
        let count = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(T::COUNT));
        let results = ArrayBuilder::new()
            .items(Ref::from_schema_name(T::name()))
            .description(Some("This page."));
        ObjectBuilder::new()
            .description(Some(T::DESCRIPTION))
            .property("count", count)
            .required("count")
            .property("next", link(T::NEXT))
            .required("next")
            .property("previous", link(T::PREVIOUS))
            .required("previous")
            .property("results", results)
            .required("results")
            .into()
    }
}

impl<T: PageItem> ToSchema for Paginated<T> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(T::PAGE)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// The scheme and host links are built on: the forwarded ones
/// (`Forwarded`, `X-Forwarded-Host`/`-Proto`) only from a trusted proxy,
/// else the request's own `Host`, so a client cannot make the server hand
/// out links to a host of its choosing.
fn origin(req: &HttpRequest) -> (String, String) {
    let trusted = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .is_some_and(|s| s.limits.from_trusted_proxy(req));
    if trusted {
        let info = req.connection_info();
        return (info.scheme().to_owned(), info.host().to_owned());
    }
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(ToString::to_string))
        .unwrap_or_else(|| req.app_config().host().to_owned());
    (scheme.to_owned(), host)
}

/// The request's absolute URL with `page` replaced (DRF drops it for page 1).
fn page_url(req: &HttpRequest, page: i64) -> String {
    let (scheme, host) = origin(req);
    let mut params: Vec<String> = req
        .query_string()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_owned)
        .collect();
    if page > 1 {
        params.push(format!("page={page}"));
    }
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    format!("{scheme}://{host}{}{query}", req.path())
}
