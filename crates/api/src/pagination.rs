//! DRF-style page-number pagination with absolute `next`/`previous` links.

use crate::error::ApiError;
use actix_web::HttpRequest;
use serde::Serialize;

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

/// The paginated list body.
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

/// The request's absolute URL with `page` replaced (DRF drops it for page 1).
fn page_url(req: &HttpRequest, page: i64) -> String {
    let info = req.connection_info();
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
    format!("{}://{}{}{}", info.scheme(), info.host(), req.path(), query)
}
