//! Conversations, their history and read state.

use crate::auth::AuthUser;
use crate::dto::{ConversationView, MessageView, user_map};
use crate::error::ApiError;
use crate::extract::{optional_json, path_id};
use crate::pagination::{PageRequest, Paginated, query_pairs};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Conversation, ConversationId, Message, MessageId, ServerEvent, User, UserId};
use chat_persistence::messages::{self, Cursor};
use chat_persistence::{DbConnection, QueryResult, conversations, users};
use chat_realtime::Audience;
use serde_json::{Value, json};

/// Default and largest `limit` of cursor reads.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// `/api/chat/conversations/…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/chat/conversations/").route(web::get().to(list)))
        .service(web::resource("/api/chat/conversations/{id}/").route(web::get().to(detail)))
        .service(
            web::resource("/api/chat/conversations/{id}/messages/").route(web::get().to(history)),
        )
        .service(
            web::resource("/api/chat/conversations/{id}/mark_read/")
                .route(web::post().to(mark_read)),
        );
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

fn views(
    convs: &[Conversation],
    viewer: UserId,
    users: Vec<User>,
    last: Vec<Message>,
) -> Vec<ConversationView> {
    let users = user_map(users);
    convs
        .iter()
        .filter_map(|c| {
            let last_message = c
                .last_message_id
                .and_then(|id| last.iter().find(|m| m.id == id));
            ConversationView::build(c, viewer, &users, last_message)
        })
        .collect()
}

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
        views(&convs, me, users, last),
    )))
}

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
    let view = views(std::slice::from_ref(&conv), me, users, last)
        .pop()
        .ok_or_else(|| ApiError::not_found("Not found."))?;
    Ok(HttpResponse::Ok().json(view))
}

/// How the history was asked for.
enum HistoryQuery {
    Page(PageRequest),
    Cursor(Option<Cursor>, i64),
}

fn positive(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::field(name, "Must be a positive integer."))
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
    if before.is_none() && after.is_none() && limit.is_none() {
        return Ok(HistoryQuery::Page(PageRequest::from_request(req)?));
    }
    if before.is_some() && after.is_some() {
        return Err(ApiError::bad_request(
            "invalid",
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

/// Page-numbered history (newest first), or cursor reads with
/// `before`/`after`/`limit`. `limit` alone reads the newest messages.
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
            Ok(HttpResponse::Ok().json(Paginated::new(&req, page, count, to_views(items))))
        }
        HistoryQuery::Cursor(cursor, limit) => {
            let cursor = cursor.unwrap_or(Cursor::Before(MessageId(i64::MAX)));
            let (items, has_more) = state
                .db
                .run(move |c| messages::from_cursor(c, conv.id, cursor, limit))
                .await?;
            Ok(HttpResponse::Ok().json(json!({"results": to_views(items), "has_more": has_more})))
        }
    }
}

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
    let valid = ids.as_ref().ok().cloned();
    let me = user.0.id;
    // Membership first (a stranger gets 404 whatever the body), then the body.
    let (conv, marked) = state
        .db
        .run(move |c| {
            let conv = conversations::find_for(c, id, me)?;
            let marked = match valid {
                Some(ids) => Some(messages::mark_read(c, &conv, me, ids.as_deref())?),
                None => None,
            };
            Ok((conv, marked))
        })
        .await?;
    ids?;
    let (marked, read_at) = marked.ok_or_else(ApiError::internal)?;
    if !marked.is_empty() {
        let event = ServerEvent::MessagesRead {
            user_id: me,
            message_ids: marked.clone(),
            read_at,
        };
        state
            .realtime
            .publish(conv.id, &event, Audience::Everyone)
            .await;
    }
    Ok(HttpResponse::Ok()
        .json(json!({"marked": marked.len(), "message_ids": marked, "read_at": read_at})))
}

/// `message_ids`: absent or null means all; otherwise a list of integers.
fn parse_ids(body: Option<&Value>, max: usize) -> Result<Option<Vec<MessageId>>, ApiError> {
    let raw = match body {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map.get("message_ids"),
        Some(_) => return Err(ApiError::bad_request("invalid", "Expected a JSON object.")),
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
                .map(|v| v.as_i64().map(MessageId))
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
