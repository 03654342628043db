//! Conversations, their history and read state.

use super::Router;
use crate::auth::AuthUser;
use crate::dto::{ConversationView, MessageView, user_map};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{integer, json_body, optional_json, path_id, positive};
use crate::openapi::responses as resp;
use crate::pagination::{ConversationPage, MessagePage, PageRequest, Paginated, query_pairs};
use crate::service::chat::{self, Read, ReadSelection};
use crate::service::{delivery, presence};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Conversation, ConversationId, Message, MessageId, User, UserId};
use chat_persistence::messages::{self, Cursor};
use chat_persistence::{DbConnection, QueryResult, conversations, users};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Default and largest `limit` of cursor reads.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

const CONVERSATIONS: &str = "/api/chat/conversations/";
const CONVERSATION: &str = "/api/chat/conversations/{id}/";
const HISTORY: &str = "/api/chat/conversations/{id}/messages/";
const MARK_READ: &str = "/api/chat/conversations/{id}/mark_read/";
const DELIVERED: &str = "/api/chat/conversations/{id}/delivered/";

/// `/api/chat/conversations/…`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(CONVERSATIONS, |e| e.get(list))
        .resource(CONVERSATION, |e| e.get(detail))
        .resource(HISTORY, |e| e.get(history))
        .resource(MARK_READ, |e| e.post(mark_read))
        .resource(DELIVERED, |e| e.post(delivered));
}

/// Users and last messages of a set of conversations: two statements.
fn load_related(
    c: &mut DbConnection,
    convs: &[Conversation],
) -> QueryResult<(Vec<User>, Vec<Message>)> {
    let mut ids: Vec<UserId> = convs
        .iter()
        .flat_map(|c| [c.user_low, c.user_high])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let users = users::find_many(c, &ids)?;
    let last_ids: Vec<MessageId> = convs.iter().filter_map(|c| c.last_message_id).collect();
    let last = if last_ids.is_empty() {
        Vec::new()
    } else {
        messages::find_many(c, &last_ids)?
    };
    Ok((users, last))
}

/// The views for `viewer`, with the other participants' presence (one
/// lookup in the presence store for the whole page, no SQL).
async fn views(
    state: &AppState,
    convs: &[Conversation],
    viewer: UserId,
    users: Vec<User>,
    last: Vec<Message>,
) -> Vec<ConversationView> {
    let users = user_map(users);
    let others: Vec<UserId> = convs.iter().map(|c| c.other_participant(viewer)).collect();
    let online = presence::online_or_offline(state, &others).await;
    convs
        .iter()
        .zip(online)
        .filter_map(|(c, online)| {
            let last_message = c
                .last_message_id
                .and_then(|id| last.iter().find(|m| m.id == id));
            ConversationView::build(c, viewer, &users, last_message, online)
        })
        .collect()
}

/// Your conversations
///
/// Most recently active first.
#[utoipa::path(get, path = CONVERSATIONS, tag = "conversations",
    operation_id = "conversations_list", security(("jwt" = [])),
    params(
        ("page" = Option<i64>, Query, description = "1-based page number (default 1)."),
        ("page_size" = Option<String>, Query, description = "An integer: default 50, larger values are clamped to 100; anything else falls back to the default (as Django REST framework does)."),
    ),
    responses(
        (status = 200, description = "A page of conversations.", body = ConversationPage),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: invalid page, or a page past the end.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::from_request(&req)?;
    let me = user.0.id;
    let (count, convs, users, last) = state
        .db
        .run(move |c| {
            let (count, convs) = conversations::list_for(c, me, page.offset(), page.size)?;
            let (users, last) = load_related(c, &convs)?;
            Ok((count, convs, users, last))
        })
        .await?;
    page.check_exists(count)?;
    Ok(HttpResponse::Ok().json(Paginated::new(
        &req,
        page,
        count,
        views(&state, &convs, me, users, last).await,
    )))
}

/// A conversation
#[utoipa::path(get, path = CONVERSATION, tag = "conversations",
    operation_id = "conversations_get", security(("jwt" = [])),
    params(("id" = i64, Path, description = "Conversation id.")),
    responses(
        (status = 200, description = "The conversation.", body = ConversationView),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such conversation, or you are not part \
            of it.", body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn detail(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = ConversationId(path_id(&req, "id")?);
    let me = user.0.id;
    let (conv, users, last) = state
        .db
        .run(move |c| {
            let conv = conversations::find_for(c, id, me)?;
            let (users, last) = load_related(c, std::slice::from_ref(&conv))?;
            Ok((conv, users, last))
        })
        .await?;
    let view = views(&state, std::slice::from_ref(&conv), me, users, last)
        .await
        .pop()
        .ok_or_else(|| ApiError::not_found("Not found."))?;
    Ok(HttpResponse::Ok().json(view))
}

/// How the history was asked for.
enum HistoryQuery {
    Page(PageRequest),
    Cursor(Option<Cursor>, i64),
}

fn history_query(req: &HttpRequest) -> Result<HistoryQuery, ApiError> {
    let pairs = query_pairs(req);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let (before, after, limit) = (get("before"), get("after"), get("limit"));
    // `page` is checked in both modes: a cursor read does not make an
    // invalid page acceptable (it is a 404, as on a numbered read).
    let page = PageRequest::from_request(req)?;
    if before.is_none() && after.is_none() && limit.is_none() {
        return Ok(HistoryQuery::Page(page));
    }
    if before.is_some() && after.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::Invalid,
            "Use either 'before' or 'after', not both.",
        ));
    }
    let limit = match limit {
        Some(raw) => positive("limit", raw)?.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let cursor = match (before, after) {
        (Some(b), _) => Some(Cursor::Before(MessageId(positive("before", b)?))),
        (_, Some(a)) => Some(Cursor::After(MessageId(positive("after", a)?))),
        _ => None,
    };
    Ok(HistoryQuery::Cursor(cursor, limit))
}

/// A cursor read: with `before`, older messages newest first; with `after`,
/// newer messages oldest first; with `limit` alone, the newest messages,
/// newest first.
#[derive(Debug, Serialize, ToSchema)]
struct MessageCursorPage {
    /// At most `limit` messages.
    results: Vec<MessageView>,
    /// Whether more messages lie beyond these in the direction read.
    has_more: bool,
}

/// The history: a numbered page (`page`, `page_size`) or, when any of
/// `before`, `after`, `limit` is given, a cursor read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum MessageHistory {
    /// Numbered pages.
    Page(MessagePage),
    /// Cursor reads.
    Cursor(MessageCursorPage),
}

/// Message history
///
/// Page-numbered history (newest first), or cursor reads with
/// `before`/`after`/`limit`. `limit` alone reads the newest messages.
/// A reconnecting client catches up with `?after=<last id it holds>`.
#[utoipa::path(get, path = HISTORY, tag = "conversations",
    operation_id = "conversations_messages", security(("jwt" = [])),
    params(
        ("id" = i64, Path, description = "Conversation id."),
        ("page" = Option<i64>, Query, description = "1-based page number (default 1)."),
        ("page_size" = Option<String>, Query, description = "An integer: default 50, larger values are clamped to 100; anything else falls back to the default (as Django REST framework does)."),
        ("before" = Option<i64>, Query, minimum = 1,
            description = "Cursor: messages older than this id, newest first."),
        ("after" = Option<i64>, Query, minimum = 1,
            description = "Cursor: messages newer than this id, oldest first (not with `before`)."),
        ("limit" = Option<i64>, Query, minimum = 1,
            description = "Cursor reads: default 50, larger values clamped to 100."),
    ),
    responses(
        (status = 200, description = "A page (`page`, `page_size`) or, with `before`, `after` \
            or `limit`, a cursor read.", body = MessageHistory),
        (status = 400, description = "`invalid`: `limit`, `before` or `after` not a positive \
            integer, or `before` and `after` together.", body = ApiError),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such conversation or not part of it; \
            invalid page, or a page past the end.", body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn history(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = ConversationId(path_id(&req, "id")?);
    let me = user.0.id;
    // Strangers learn nothing, not even which parameters were wrong: the
    // membership check comes first.
    let (conv, users) = state
        .db
        .run(move |c| {
            let conv = conversations::find_for(c, id, me)?;
            let users = users::find_many(c, &[conv.user_low, conv.user_high])?;
            Ok((conv, users))
        })
        .await?;
    let query = history_query(&req)?;
    let users = user_map(users);
    let to_views = |items: Vec<Message>| -> Vec<MessageView> {
        items
            .iter()
            .filter_map(|m| users.get(&m.sender_id).map(|u| MessageView::build(m, u)))
            .collect()
    };
    match query {
        HistoryQuery::Page(page) => {
            let (count, items) = state
                .db
                .run(move |c| messages::page(c, conv.id, page.offset(), page.size))
                .await?;
            page.check_exists(count)?;
            let page = Paginated::new(&req, page, count, to_views(items));
            Ok(HttpResponse::Ok().json(MessageHistory::Page(page)))
        }
        HistoryQuery::Cursor(cursor, limit) => {
            let cursor = cursor.unwrap_or(Cursor::Before(MessageId(i64::MAX)));
            let (items, has_more) = state
                .db
                .run(move |c| messages::from_cursor(c, conv.id, cursor, limit))
                .await?;
            let read = MessageCursorPage {
                results: to_views(items),
                has_more,
            };
            Ok(HttpResponse::Ok().json(MessageHistory::Cursor(read)))
        }
    }
}

/// `POST /api/chat/conversations/{id}/mark_read/`; the body may also be
/// empty (no content type needed then), which marks everything.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct MarkReadRequest {
    /// Ids to mark; absent or null marks every unread message of the other
    /// user; an empty list marks nothing. Ids that are not unread messages
    /// of the other user in this conversation are ignored.
    #[schema(max_items = 1000)]
    message_ids: Option<Vec<i64>>,
}

/// What `mark_read` marked.
#[derive(Debug, Serialize, ToSchema)]
struct MarkReadResult {
    /// How many messages were marked.
    #[schema(value_type = i64)]
    marked: usize,
    /// The ids actually marked, ascending.
    #[schema(value_type = Vec<i64>)]
    message_ids: Vec<MessageId>,
    /// The time they were marked read.
    read_at: DateTime<Utc>,
}

impl From<Read> for MarkReadResult {
    fn from(read: Read) -> Self {
        Self {
            marked: read.marked.len(),
            message_ids: read.marked,
            read_at: read.read_at,
        }
    }
}

/// Mark messages read
///
/// Marks unread messages of the other user as read and sends the same
/// `messages_read` event as `message_read` over WebSocket (none when
/// nothing was marked). Marking your own messages does nothing.
#[utoipa::path(post, path = MARK_READ, tag = "conversations",
    operation_id = "conversations_mark_read", security(("jwt" = [])),
    params(("id" = i64, Path, description = "Conversation id.")),
    request_body(content = Option<MarkReadRequest>,
        description = "Optional: an empty body marks every unread message of the other user."),
    responses(
        (status = 200, description = "What was marked.", body = MarkReadResult),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such conversation, or you are not part \
            of it.", body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn mark_read(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = ConversationId(path_id(&req, "id")?);
    let limits = &state.settings.limits;
    let ids = optional_json::<Value>(&req, &body, limits.max_body_bytes)
        .and_then(|body| parse_ids(body.as_ref(), limits.max_read_ids));
    let me = user.0.id;
    let selection = match ids {
        Ok(None) => ReadSelection::All,
        Ok(Some(ids)) => ReadSelection::Only(ids),
        Err(e) => {
            // Strangers get 404 whatever the body; members learn what was wrong.
            chat::ensure_participant(&state, me, id).await?;
            return Err(e);
        }
    };
    let read = chat::mark_read(&state, me, id, selection).await?;
    Ok(HttpResponse::Ok().json(MarkReadResult::from(read)))
}

/// `POST …/delivered/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct DeliveredRequest {
    /// Any message of the conversation, your own included: every message
    /// of the other user up to it becomes delivered.
    #[schema(minimum = 1)]
    message_id: i64,
}

/// What an acknowledgement changed.
#[derive(Debug, Serialize, ToSchema)]
struct DeliveredResult {
    /// How many messages became delivered now (0 when nothing changed, or
    /// when another acknowledgement of yours for this conversation, stored
    /// at the same moment, reached further and delivered them).
    #[schema(value_type = i64)]
    delivered: usize,
    /// The acknowledged message.
    #[schema(value_type = i64)]
    up_to_message_id: MessageId,
    /// The time recorded.
    delivered_at: DateTime<Utc>,
}

/// Acknowledge delivery
///
/// For push handlers: every message of the other user in the conversation
/// with an id up to `message_id` becomes delivered, and
/// `messages_delivered` goes to the conversation's sockets and both user
/// streams (nothing when nothing changed). Your own messages never become
/// delivered by your acknowledgement.
#[utoipa::path(post, path = DELIVERED, tag = "conversations",
    operation_id = "conversations_delivered", security(("jwt" = [])),
    params(("id" = i64, Path, description = "Conversation id.")),
    request_body = DeliveredRequest,
    responses(
        (status = 200, description = "What became delivered.", body = DeliveredResult),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such conversation, you are not part of \
            it, or no such message in it.", body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn delivered(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = ConversationId(path_id(&req, "id")?);
    let me = user.0.id;
    let message = json_body(&req, &body, state.settings.limits.max_body_bytes).and_then(|body| {
        match body.get("message_id") {
            None | Some(Value::Null) => {
                Err(ApiError::field("message_id", "This field is required."))
            }
            Some(v) => integer(v).filter(|m| *m > 0).map(MessageId).ok_or_else(|| {
                ApiError::field("message_id", "A valid positive integer is required.")
            }),
        }
    });
    let message = match message {
        Ok(m) => m,
        Err(e) => {
            chat::ensure_participant(&state, me, id).await?;
            return Err(e);
        }
    };
    let d = delivery::mark_delivered(&state, me, id, message).await?;
    Ok(HttpResponse::Ok().json(DeliveredResult {
        delivered: d.count,
        up_to_message_id: d.up_to,
        delivered_at: d.delivered_at,
    }))
}

/// `message_ids`: absent or null means all; otherwise a list of integers.
fn parse_ids(body: Option<&Value>, max: usize) -> Result<Option<Vec<MessageId>>, ApiError> {
    let raw = match body {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map.get("message_ids"),
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::Invalid,
                "Expected a JSON object.",
            ));
        }
    };
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            if items.len() > max {
                return Err(ApiError::field(
                    "message_ids",
                    format!("Ensure this field has no more than {max} elements."),
                ));
            }
            items
                .iter()
                .map(|v| integer(v).map(MessageId))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| ApiError::field("message_ids", "A list of integers is required."))
        }
        Some(_) => Err(ApiError::field(
            "message_ids",
            "A list of integers is required.",
        )),
    }
}
