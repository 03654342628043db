//! `GET /api/chat/search/`: message search across the caller's conversations.

use super::Router;
use crate::auth::AuthUser;
use crate::dto::{MessageView, user_map};
use crate::error::ApiError;
use crate::extract::{Validator, positive_integer, query_pairs};
use crate::openapi::responses as resp;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::search::SearchQuery;
use chat_domain::{ConversationId, MessageId, UserId};
use chat_persistence::search::{self, SearchScope};
use chat_persistence::{conversations, users};
use serde::Serialize;
use utoipa::ToSchema;

const SEARCH: &str = "/api/chat/search/";
/// Default and largest `limit`.
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// `GET /api/chat/search/`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(SEARCH, |e| e.get(search));
}

/// A message that matched: the message object and its highlighted content.
#[derive(Debug, Serialize, ToSchema)]
struct SearchHit {
    #[serde(flatten)]
    message: MessageView,
    /// The content HTML-escaped, with each match wrapped in `<mark>` and
    /// `</mark>` (a phrase is one mark).
    #[schema(example = "see you at the <mark>café</mark> &lt;3")]
    highlight: String,
}

/// Matching messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct SearchPage {
    /// At most `limit` messages, newest first.
    results: Vec<SearchHit>,
    /// Whether older messages match too (ask again with `before` set to
    /// the last id of this page).
    has_more: bool,
}

/// The request's parameters, checked.
struct SearchRequest {
    query: SearchQuery,
    scope: SearchScope,
}

/// Reads the parameters. A `conversation_id` the caller is not part of is
/// a 404 before anything else is judged, so strangers learn nothing.
async fn search_request(
    state: &AppState,
    me: UserId,
    req: &HttpRequest,
) -> Result<SearchRequest, ApiError> {
    let pairs = query_pairs(req);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut v = Validator::default();
    let only = get("conversation_id")
        .and_then(|raw| v.check("conversation_id", positive_integer(raw)))
        .map(ConversationId);
    if let Some(id) = only {
        state
            .db
            .run(move |c| conversations::find_for(c, id, me))
            .await?;
    }
    let query = v
        .required("q", get("q"))
        .and_then(|raw| v.check("q", SearchQuery::parse(raw)));
    let limit = match get("limit") {
        Some(raw) => v.check("limit", positive_integer(raw).map(|l| l.min(MAX_LIMIT))),
        None => Some(DEFAULT_LIMIT),
    };
    let before = get("before").and_then(|raw| v.check("before", positive_integer(raw)));
    v.finish()?;
    let (Some(query), Some(limit)) = (query, limit) else {
        return Err(Validator::lost_value());
    };
    Ok(SearchRequest {
        query,
        scope: SearchScope {
            viewer: me,
            conversation: only,
            before: before.map(MessageId),
            limit,
        },
    })
}

/// Search messages
///
/// Searches the content of the messages of every conversation you are part
/// of (`conversation_id` narrows it to one). Words match regardless of case
/// and accents; every word must match; a trailing `*` matches a prefix
/// (`hel*`); `"quoted words"` match a phrase. There are no other
/// operators: `OR`, `-`, `(` and the like are plain text. Newest first;
/// page with `before` like the history cursor.
#[utoipa::path(get, path = SEARCH, tag = "search", operation_id = "search_messages",
    security(("jwt" = [])),
    params(
        ("q" = String, Query, description = "What to look for: 1 to 256 characters, not \
            only whitespace.", example = "\"good morning\" caf*", min_length = 1,
            max_length = 256, pattern = r"\S"),
        ("conversation_id" = Option<i64>, Query, minimum = 1,
            description = "Only this conversation (404 if you are not part of it)."),
        ("before" = Option<i64>, Query, minimum = 1,
            description = "Only messages older than this id."),
        ("limit" = Option<i64>, Query, minimum = 1,
            description = "Default 20, larger values clamped to 100."),
    ),
    responses(
        (status = 200, description = "Matching messages, newest first.", body = SearchPage),
        (status = 400, description = "`invalid`: `q` missing, blank or over 256 characters; \
            `limit`, `before` or `conversation_id` not a positive integer.", body = ApiError),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such conversation, or you are not part \
            of it.", body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn search(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let SearchRequest { query, scope } = search_request(&state, user.0.id, &req).await?;
    let (query, (found, has_more), senders) = state
        .db
        .run(move |c| {
            let found = search::search(c, &query, scope)?;
            let mut ids: Vec<UserId> = found.0.iter().map(|m| m.sender_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let senders = if ids.is_empty() {
                Vec::new()
            } else {
                users::find_many(c, &ids)?
            };
            Ok((query, found, senders))
        })
        .await?;
    let senders = user_map(senders);
    let results = found
        .iter()
        .filter_map(|m| {
            senders.get(&m.sender_id).map(|u| SearchHit {
                message: MessageView::build(m, u),
                highlight: query.highlight(&m.content),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(SearchPage { results, has_more }))
}
