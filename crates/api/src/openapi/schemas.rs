//! Schemas of the OpenAPI document for what has no wire type of its own in
//! this crate: request bodies (handlers read them field by field), small
//! `json!` responses, the user object (a `chat-domain` type, which stays
//! free of OpenAPI) and the WebSocket events.
//!
//! These types only describe the wire; the unit tests in
//! [`super`] check them against the real types where those exist.

use crate::dto::{ConnectionView, ConversationView, MessageView};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A user. `name` is first and last name joined by a space, or the username
/// when both are empty. Passwords never appear in any response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "username": "jdoe", "first_name": "John", "last_name": "Doe",
    "name": "John Doe", "avatar": "https://example.com/a.png"}))]
pub struct User {
    /// The user's id.
    pub id: i64,
    /// The username, in the case it was registered with.
    pub username: String,
    /// First name (may be empty).
    pub first_name: String,
    /// Last name (may be empty).
    pub last_name: String,
    /// Display name.
    pub name: String,
    /// Avatar URL, or null.
    #[schema(required = true, format = "uri")]
    pub avatar: Option<String>,
}

/// Status of a connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// Requested, waiting for the addressee.
    Pending,
    /// Accepted: the two may chat.
    Accepted,
    /// Declined by the addressee.
    Rejected,
    /// Withdrawn, declined or ended by either side.
    Removed,
}

/// `POST /api/auth/register/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterRequest {
    /// 3 to 150 letters, digits and `@.+-_`; unique case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 150,
        pattern = r"^[\w.@+-]+$",
        example = "jdoe"
    )]
    pub username: String,
    /// 8 to 1024 characters.
    #[schema(
        min_length = 8,
        max_length = 1024,
        write_only,
        example = "correct horse"
    )]
    pub password: String,
    /// Trimmed; at most 150 characters.
    #[schema(max_length = 150)]
    pub first_name: Option<String>,
    /// Trimmed; at most 150 characters.
    #[schema(max_length = 150)]
    pub last_name: Option<String>,
    /// An `http(s)` URL of at most 2048 characters; empty or null for none.
    #[schema(max_length = 2048, format = "uri")]
    pub avatar: Option<String>,
}

/// `POST /api/auth/token/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRequest {
    /// Matched case-insensitively.
    pub username: String,
    /// The password.
    #[schema(write_only)]
    pub password: String,
}

/// A new access and refresh token pair (HS256 JWTs with SimpleJWT claims).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// Access token (15 minutes by default).
    pub access: String,
    /// Refresh token (7 days by default).
    pub refresh: String,
}

/// `POST /api/auth/token/refresh/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshRequest {
    /// A refresh token (an access token is refused).
    pub refresh: String,
}

/// A new access token (no rotation: the refresh token stays valid).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    /// Access token.
    pub access: String,
}

/// `PATCH /api/users/me/`: only the fields given change; anything else
/// (such as `username` or `password`) is read-only here and ignored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileUpdate {
    /// Trimmed, at most 150 characters; null empties it.
    #[schema(max_length = 150)]
    pub first_name: Option<String>,
    /// Trimmed, at most 150 characters; null empties it.
    #[schema(max_length = 150)]
    pub last_name: Option<String>,
    /// An `http(s)` URL of at most 2048 characters; null or `""` clears it.
    #[schema(max_length = 2048, format = "uri")]
    pub avatar: Option<String>,
}

/// `POST /api/connections/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionRequest {
    /// The user to connect with.
    #[schema(example = 9)]
    pub user_id: i64,
}

/// A page of connections, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionPage {
    /// Connections in all pages.
    pub count: i64,
    /// Absolute URL of the next page, or null.
    #[schema(required = true, format = "uri")]
    pub next: Option<String>,
    /// Absolute URL of the previous page, or null.
    #[schema(required = true, format = "uri")]
    pub previous: Option<String>,
    /// This page.
    pub results: Vec<ConnectionView>,
}

/// A page of conversations, most recently active first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    /// Conversations in all pages.
    pub count: i64,
    /// Absolute URL of the next page, or null.
    #[schema(required = true, format = "uri")]
    pub next: Option<String>,
    /// Absolute URL of the previous page, or null.
    #[schema(required = true, format = "uri")]
    pub previous: Option<String>,
    /// This page.
    pub results: Vec<ConversationView>,
}

/// A page of messages, newest first; page 1 holds the latest messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Messages in all pages.
    pub count: i64,
    /// Absolute URL of the next (older) page, or null.
    #[schema(required = true, format = "uri")]
    pub next: Option<String>,
    /// Absolute URL of the previous (newer) page, or null.
    #[schema(required = true, format = "uri")]
    pub previous: Option<String>,
    /// This page.
    pub results: Vec<MessageView>,
}

/// A cursor read: with `before`, older messages newest first; with `after`,
/// newer messages oldest first; with `limit` alone, the newest messages,
/// newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageCursorPage {
    /// At most `limit` messages.
    pub results: Vec<MessageView>,
    /// Whether more messages lie beyond these in the direction read.
    pub has_more: bool,
}

/// The history: a numbered page (`page`, `page_size`) or, when any of
/// `before`, `after`, `limit` is given, a cursor read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageHistory {
    /// Numbered pages.
    Page(MessagePage),
    /// Cursor reads.
    Cursor(MessageCursorPage),
}

/// `POST /api/chat/conversations/{id}/mark_read/`; the body may also be
/// empty (no content type needed then), which marks everything.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkReadRequest {
    /// Ids to mark; absent or null marks every unread message of the other
    /// user; an empty list marks nothing. Ids that are not unread messages
    /// of the other user in this conversation are ignored.
    #[schema(max_items = 1000)]
    pub message_ids: Option<Vec<i64>>,
}

/// What `mark_read` marked.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkReadResult {
    /// How many messages were marked.
    pub marked: i64,
    /// The ids actually marked, ascending.
    pub message_ids: Vec<i64>,
    /// The time they were marked read.
    pub read_at: DateTime<Utc>,
}

/// `POST /api/chat/messages/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendMessageRequest {
    /// A conversation you are part of.
    #[schema(example = 1)]
    pub conversation_id: i64,
    /// Trimmed of surrounding whitespace; 1 to 5000 characters after that.
    #[schema(min_length = 1, max_length = 5000, example = "Hi")]
    pub content: String,
    /// Optional idempotency key, 1 to 64 characters: a second send with
    /// the same key by the same sender in the same conversation stores
    /// nothing and answers 200 with the original message.
    #[schema(min_length = 1, max_length = 64)]
    pub client_id: Option<String>,
}

/// `GET /healthz/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /readyz/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    pub status: String,
    /// Each backing service.
    pub checks: ReadinessChecks,
}

/// State of each backing service.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok` or `unavailable`.
    pub database: String,
    /// `ok`, `unavailable` or `not_configured` (no Redis: single node).
    pub redis: String,
}

/// A frame a client sends on `/ws/chat/{conversation_id}/` (JSON text).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Send a message: stored, then broadcast as a `chat_message` event to
    /// every socket of the conversation, the sender's own included.
    ChatMessage {
        /// Trimmed; 1 to 5000 characters after that.
        #[schema(min_length = 1, max_length = 5000)]
        content: String,
        /// Optional idempotency key (1 to 64 characters): a retry with the
        /// same key stores and broadcasts nothing; the sending socket gets
        /// the original `chat_message` event again.
        #[schema(min_length = 1, max_length = 64)]
        client_id: Option<String>,
    },
    /// Start or stop typing; sent to the other participant's sockets only.
    TypingIndicator {
        /// Whether the user is typing.
        is_typing: bool,
    },
    /// Mark messages of the other user as read.
    MessageRead {
        /// Ids to mark (at most 1000); others are ignored.
        #[schema(max_items = 1000)]
        message_ids: Vec<i64>,
    },
}

/// A frame the server sends on `/ws/chat/{conversation_id}/` (JSON text).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The first frame, sent once the socket is subscribed on every node:
    /// any event caused after it was received reaches this socket.
    ConnectionEstablished {
        /// Always `Connected to chat`.
        #[schema(example = "Connected to chat")]
        message: String,
        /// The socket's conversation.
        conversation_id: i64,
        /// The authenticated user.
        user_id: i64,
    },
    /// A stored message (from WebSocket or HTTP), to every socket of the
    /// conversation.
    ChatMessage {
        /// The message id; ids increase in the order messages are stored.
        message_id: i64,
        /// The conversation.
        conversation_id: i64,
        /// The sender.
        sender_id: i64,
        /// The sender's display name.
        sender_name: String,
        /// The sender's avatar URL, or null.
        #[schema(required = true)]
        sender_avatar: Option<String>,
        /// The trimmed content.
        content: String,
        /// When it was stored.
        created_at: DateTime<Utc>,
        /// The sender's idempotency key, or null.
        #[schema(required = true)]
        client_id: Option<String>,
    },
    /// The other participant started or stopped typing.
    TypingIndicator {
        /// The typist.
        user_id: i64,
        /// The typist's display name.
        user_name: String,
        /// Whether they are typing.
        is_typing: bool,
    },
    /// Messages were marked read (over WebSocket or HTTP); not sent when
    /// nothing was marked.
    MessagesRead {
        /// The reader.
        user_id: i64,
        /// The ids actually marked.
        message_ids: Vec<i64>,
        /// When.
        read_at: DateTime<Utc>,
    },
    /// A refused frame; the socket stays open and nothing was stored.
    Error {
        /// What was wrong.
        message: String,
        /// The refused frame's `client_id`, when it carried one.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}
