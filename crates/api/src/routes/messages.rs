//! Sending over HTTP and reading single messages.

use super::Validator;
use crate::auth::AuthUser;
use crate::dto::MessageView;
use crate::error::{ApiError, ErrorCode};
use crate::extract::{integer, path_id};
use crate::openapi::responses as resp;
use crate::service::chat::{self, NewMessage, Sent};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::reaction::Emoji;
use chat_domain::{ClientId, ConversationId, MessageContent, MessageId};
use chat_persistence::messages;
use chat_persistence::users;
use serde_json::Value;
use utoipa::ToSchema;

const MESSAGES: &str = "/api/chat/messages/";
const MESSAGE: &str = "/api/chat/messages/{id}/";
const REACTION: &str = "/api/chat/messages/{id}/reactions/{emoji}/";

/// `POST /api/chat/messages/`, `GET /api/chat/messages/{id}/`, reactions
/// (other methods: 405).
pub fn configure(r: &mut super::Router<'_>) {
    r.resource(MESSAGES, |e| e.post(send))
        .resource(MESSAGE, |e| e.get(detail))
        .resource(REACTION, |e| e.put(add_reaction).delete(remove_reaction));
}

/// The `{emoji}` segment, percent-decoded from the request's own path (so
/// an encoded `%` or `/` is read once, not twice).
fn emoji_of(req: &HttpRequest) -> Result<Emoji, ApiError> {
    let raw = req
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::field("emoji", "Not valid UTF-8 once percent-decoded."))?;
    Emoji::parse(&decoded).map_err(|e| ApiError::field("emoji", e.to_string()))
}

/// React to a message
///
/// Adds your reaction (idempotent: adding it again changes nothing).
/// `{emoji}` is percent-encoded: 1 to 32 characters, no whitespace or control
/// characters; at most 20 different reactions of yours per message.
/// `reaction_changed` goes to the conversation's sockets and both user
/// streams when something changed.
#[utoipa::path(put, path = REACTION, tag = "messages", operation_id = "messages_react",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Message id."),
        ("emoji" = String, Path, description = "The emoji, percent-encoded: 1 to 32 characters, \
            none of them whitespace or a control character.", min_length = 1, max_length = 32,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,32}$")),
    responses(
        (status = 200, description = "The message, with its reactions.", body = MessageView),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 403, description = "`not_connected`: the connection is no longer accepted.",
            body = ApiError),
        (status = 404, response = resp::NotFound),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn add_reaction(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (m, sender) = react(&state, &user, &req, true).await?;
    Ok(HttpResponse::Ok().json(MessageView::build(&m, &sender)))
}

/// Remove a reaction
///
/// Removes your reaction (204 also when there was none).
#[utoipa::path(delete, path = REACTION, tag = "messages", operation_id = "messages_unreact",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Message id."),
        ("emoji" = String, Path, description = "The emoji, percent-encoded: 1 to 32 characters, \
            none of them whitespace or a control character.", min_length = 1, max_length = 32,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,32}$")),
    responses(
        (status = 204, description = "Removed, or there was none."),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 403, description = "`not_connected`: the connection is no longer accepted.",
            body = ApiError),
        (status = 404, response = resp::NotFound),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn remove_reaction(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    react(&state, &user, &req, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Membership first (a stranger gets 404 whatever the emoji), then the emoji.
async fn react(
    state: &AppState,
    user: &AuthUser,
    req: &HttpRequest,
    add: bool,
) -> Result<(chat_domain::Message, chat_domain::User), ApiError> {
    let id = MessageId(path_id(req, "id")?);
    let me = user.0.id;
    let emoji = match emoji_of(req) {
        Ok(e) => e,
        Err(e) => {
            state.db.run(move |c| messages::find_for(c, id, me)).await?;
            return Err(e);
        }
    };
    chat::react(state, me, id, emoji, add).await
}

/// `POST /api/chat/messages/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct SendMessageRequest {
    /// A conversation you are part of.
    #[schema(example = 1)]
    conversation_id: i64,
    /// Trimmed of surrounding whitespace; 1 to 5000 characters after that
    /// (so not blank), no NUL. Required unless `attachment_ids` lists
    /// files; then it may also be empty or left out.
    #[schema(
        min_length = 1,
        max_length = 5000,
        example = "Hi",
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    content: Option<String>,
    /// Up to 10 uploads of yours (`POST /api/chat/attachments/`) not sent
    /// yet, each once; they become the message's `attachments`.
    #[schema(max_items = 10, example = json!([4]))]
    attachment_ids: Option<Vec<i64>>,
    /// Optional idempotency key, 1 to 64 characters: a second send with
    /// the same key by the same sender in the same conversation stores
    /// nothing and answers 200 with the original message. No NUL.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\u0000]*$")]
    client_id: Option<String>,
}

/// Send a message
///
/// Stored, then delivered to the conversation's WebSocket clients exactly
/// as one sent over WebSocket. With a `client_id` already used by you in
/// this conversation, nothing is stored and the original is answered (200).
#[utoipa::path(post, path = MESSAGES, tag = "messages", operation_id = "messages_create",
    security(("jwt" = [])), request_body = SendMessageRequest,
    responses(
        (status = 201, description = "The stored message.", body = MessageView),
        (status = 200, description = "A retry (same `client_id`): the original message.",
            body = MessageView),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 403, description = "`not_connected`: the connection is no longer accepted.",
            body = ApiError),
        (status = 404, description = "`not_found`: no such conversation, or you are not part \
            of it.", body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 429, response = resp::TooManyRequests),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn send(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let Value::Object(body) = body.into_inner() else {
        return Err(ApiError::bad_request(
            ErrorCode::Invalid,
            "Expected a JSON object.",
        ));
    };
    let mut v = Validator::default();
    let conversation_id = match body.get("conversation_id") {
        None | Some(Value::Null) => v.required::<i64>("conversation_id", None),
        Some(x) => v.check(
            "conversation_id",
            integer(x).ok_or("A valid integer is required."),
        ),
    };
    let attachments = v.check(
        "attachment_ids",
        chat_domain::attachment::parse_ids(body.get("attachment_ids")),
    );
    let with_files = attachments.as_ref().is_some_and(|a| !a.is_empty());
    let content = match body.get("content") {
        None | Some(Value::Null) if with_files => {
            v.check("content", MessageContent::parse_with_attachments("", true))
        }
        None | Some(Value::Null) => v.required::<MessageContent>("content", None),
        Some(Value::String(s)) => v.check(
            "content",
            MessageContent::parse_with_attachments(s, with_files),
        ),
        Some(_) => v.check("content", Err("Not a valid string.")),
    };
    let client_id = match body.get("client_id") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => v.check("client_id", ClientId::parse(s)).map(Some),
        Some(_) => v.check("client_id", Err("Not a valid string.")),
    };
    v.finish()?;
    let (Some(conversation_id), Some(content), Some(client_id), Some(attachments)) =
        (conversation_id, content, client_id, attachments)
    else {
        return Err(Validator::lost_value());
    };
    let new = NewMessage {
        conversation: ConversationId(conversation_id),
        content,
        client_id,
        attachments,
    };
    match chat::send_message(&state, &user.0, new).await? {
        Sent::Stored(m) => Ok(HttpResponse::Created().json(MessageView::build(&m, &user.0))),
        Sent::Duplicate(m) => Ok(HttpResponse::Ok().json(MessageView::build(&m, &user.0))),
    }
}

/// A message
///
/// Messages cannot be edited or deleted (`PUT`, `PATCH`, `DELETE`: 405).
#[utoipa::path(get, path = MESSAGE, tag = "messages", operation_id = "messages_get",
    security(("jwt" = [])), params(("id" = i64, Path, description = "Message id.")),
    responses(
        (status = 200, description = "The message.", body = MessageView),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such message, or not in a conversation \
            of yours.", body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn detail(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = MessageId(path_id(&req, "id")?);
    let me = user.0.id;
    let (message, sender) = state
        .db
        .run(move |c| {
            let m = messages::find_for(c, id, me)?;
            let sender = users::find(c, m.sender_id)?;
            Ok((m, sender))
        })
        .await?;
    Ok(HttpResponse::Ok().json(MessageView::build(&message, &sender)))
}
