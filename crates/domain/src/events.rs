//! The WebSocket events of the wire protocol, tagged by `type`.
//!
//! A [`ClientEvent`] holds validated values: the server builds one from a
//! frame with [`ClientEvent::parse`]; a client serializes one to get the
//! frame's text. A [`ServerEvent`] serializes to the frame the server sends
//! and deserializes back.
//!
//! ```
//! use chat_domain::{ClientEvent, MessageContent};
//! let e = ClientEvent::ChatMessage { content: MessageContent::parse("hi").unwrap(), client_id: None, attachment_ids: vec![] };
//! let text = serde_json::to_string(&e).unwrap();
//! assert_eq!(text, r#"{"type":"chat_message","content":"hi"}"#);
//! assert_eq!(ClientEvent::parse(&text).unwrap(), e);
//! ```

use crate::ids::{ConversationId, MessageId, UserId};
use crate::message::{ClientId, Message, MessageContent};
use crate::user::User;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most ids one `message_read` frame may list.
pub const MAX_READ_IDS: usize = 1000;

/// A frame a client sends on `/ws/chat/{conversation_id}/` (JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Send a message: stored, then broadcast as a `chat_message` event to
    /// every socket of the conversation, the sender's own included.
    ChatMessage {
        /// Trimmed; 1 to 5000 characters after that.
        #[cfg_attr(feature = "openapi",
            schema(value_type = String, min_length = 1, max_length = 5000))]
        content: MessageContent,
        /// Optional idempotency key (1 to 64 characters): a retry with the
        /// same key stores and broadcasts nothing; the sending socket gets
        /// the original `chat_message` event again.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi",
            schema(value_type = Option<String>, min_length = 1, max_length = 64))]
        client_id: Option<ClientId>,
        /// Up to 10 of the sender's own unattached uploads; with any,
        /// `content` may be empty or left out.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<i64>, max_items = 10))]
        attachment_ids: Vec<crate::ids::AttachmentId>,
    },
    /// Start or stop typing; sent to the other participant's sockets only.
    TypingIndicator {
        /// Whether the user is typing.
        is_typing: bool,
    },
    /// Mark messages of the other user as read.
    MessageRead {
        /// Ids to mark (at most 1000); others are ignored.
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<i64>, max_items = 1000))]
        message_ids: Vec<MessageId>,
    },
    /// Acknowledge delivery of every message of the other user up to this one.
    Ack {
        /// Any message of the conversation (your own included).
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        message_id: MessageId,
    },
}

/// Why a client frame was refused. `client_id` is whatever valid-looking
/// `client_id` string the frame carried, so the error can echo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEventError {
    /// What was wrong, for the client.
    pub message: String,
    /// The frame's `client_id`, when it had a string one.
    pub client_id: Option<String>,
}

impl ClientEventError {
    fn new(message: impl Into<String>, client_id: Option<String>) -> Self {
        Self {
            message: message.into(),
            client_id,
        }
    }
}

/// A client frame: the event and the conversation it names, if any (user
/// streams require one; a conversation socket knows its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The event.
    pub event: ClientEvent,
    /// The frame's `conversation_id`.
    pub conversation_id: Option<ConversationId>,
}

impl ClientFrame {
    /// Parses and validates a text frame, `conversation_id` included.
    ///
    /// ```
    /// use chat_domain::{ClientFrame, ConversationId};
    /// let f = ClientFrame::parse(r#"{"type":"typing_indicator","is_typing":true,"conversation_id":3}"#).unwrap();
    /// assert_eq!(f.conversation_id, Some(ConversationId(3)));
    /// assert!(ClientFrame::parse(r#"{"type":"typing_indicator","is_typing":true,"conversation_id":"3"}"#).is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, ClientEventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|_| ClientEventError::new("Invalid JSON.", None))?;
        let Value::Object(obj) = value else {
            return Err(ClientEventError::new("Expected a JSON object.", None));
        };
        let client_id = obj
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let event = ClientEvent::from_object(&obj, client_id.clone())?;
        let conversation_id = match obj.get("conversation_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .filter(|id| *id > 0)
                    .map(ConversationId)
                    .ok_or_else(|| {
                        ClientEventError::new(
                            "Field 'conversation_id' must be a positive integer.",
                            client_id,
                        )
                    })?,
            ),
        };
        Ok(Self {
            event,
            conversation_id,
        })
    }
}

impl ClientEvent {
    /// Parses and validates a text frame.
    ///
    /// ```
    /// use chat_domain::ClientEvent;
    /// let e = ClientEvent::parse(r#"{"type":"typing_indicator","is_typing":true}"#).unwrap();
    /// assert_eq!(e, ClientEvent::TypingIndicator { is_typing: true });
    /// let err = ClientEvent::parse(r#"{"type":"chat_message","content":"  ","client_id":"c1"}"#).unwrap_err();
    /// assert_eq!(err.client_id.as_deref(), Some("c1"));
    /// assert!(ClientEvent::parse("not json").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, ClientEventError> {
        ClientFrame::parse(text).map(|f| f.event)
    }

    fn from_object(
        obj: &serde_json::Map<String, Value>,
        raw_client_id: Option<String>,
    ) -> Result<Self, ClientEventError> {
        let fail = |m: &str| ClientEventError::new(m, raw_client_id.clone());
        let kind = match obj.get("type") {
            None => return Err(fail("Missing field 'type'.")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(fail("Field 'type' must be a string.")),
        };
        match kind {
            "chat_message" => {
                let attachment_ids = crate::attachment::parse_ids(obj.get("attachment_ids"))
                    .map_err(|e| fail(&e.to_string()))?;
                let with_files = !attachment_ids.is_empty();
                let content = match obj.get("content") {
                    None | Some(Value::Null) if with_files => {
                        MessageContent::parse_with_attachments("", true)
                            .map_err(|e| fail(&e.to_string()))?
                    }
                    None | Some(Value::Null) => return Err(fail("Missing field 'content'.")),
                    Some(Value::String(s)) => MessageContent::parse_with_attachments(s, with_files)
                        .map_err(|e| fail(&e.to_string()))?,
                    Some(_) => return Err(fail("Field 'content' must be a string.")),
                };
                let client_id = match obj.get("client_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => {
                        Some(ClientId::parse(s).map_err(|e| fail(&e.to_string()))?)
                    }
                    Some(_) => return Err(fail("Field 'client_id' must be a string.")),
                };
                Ok(Self::ChatMessage {
                    content,
                    client_id,
                    attachment_ids,
                })
            }
            "typing_indicator" => match obj.get("is_typing") {
                None => Err(fail("Missing field 'is_typing'.")),
                Some(Value::Bool(b)) => Ok(Self::TypingIndicator { is_typing: *b }),
                Some(_) => Err(fail("Field 'is_typing' must be a boolean.")),
            },
            "message_read" => match obj.get("message_ids") {
                None => Err(fail("Missing field 'message_ids'.")),
                Some(Value::Array(items)) => {
                    if items.len() > MAX_READ_IDS {
                        return Err(fail("Field 'message_ids' may list at most 1000 ids."));
                    }
                    let ids = items
                        .iter()
                        .map(|v| v.as_i64().map(MessageId))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| fail("Field 'message_ids' must be a list of integers."))?;
                    Ok(Self::MessageRead { message_ids: ids })
                }
                Some(_) => Err(fail("Field 'message_ids' must be a list of integers.")),
            },
            "ack" => match obj.get("message_id") {
                None | Some(Value::Null) => Err(fail("Missing field 'message_id'.")),
                Some(v) => v
                    .as_i64()
                    .filter(|id| *id > 0)
                    .map(|id| Self::Ack {
                        message_id: MessageId(id),
                    })
                    .ok_or_else(|| fail("Field 'message_id' must be a positive integer.")),
            },
            other => Err(fail(&format!("Unknown event type '{other}'."))),
        }
    }
}

/// Where a user stream stands when it opens (user stream only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamStart {
    /// The number of the user's latest durable event (0 when none).
    pub seq: i64,
    /// The sum of the user's unread counts.
    pub total_unread: i64,
    /// How many of the user's conversations have unread messages.
    pub unread_conversations: i64,
    /// With `?since=`: whether every event after it follows (`false`: reload
    /// through REST).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recovered: Option<bool>,
}

/// A durable event's number in its user's stream and that user's counters
/// after it (user stream only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamCounters {
    /// The event's number in the user's stream.
    pub seq: i64,
    /// Unread messages of the event's conversation for the stream's user.
    pub unread_count: i64,
    /// The sum of the user's unread counts.
    pub total_unread: i64,
    /// How many of the user's conversations have unread messages.
    pub unread_conversations: i64,
}

/// A frame the server sends.
///
/// Conversation sockets and user streams share these shapes; user streams
/// add `seq` and counters (the `stream` fields), which conversation sockets
/// never carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The first frame, sent once the socket is subscribed on every node:
    /// any event caused after it was received reaches this socket.
    ConnectionEstablished {
        /// Always `Connected to chat`.
        #[cfg_attr(feature = "openapi", schema(example = "Connected to chat"))]
        message: String,
        /// The conversation of a conversation socket; absent on a user stream.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
        conversation_id: Option<ConversationId>,
        /// The authenticated user.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        user_id: UserId,
        /// A user stream's position and counters.
        #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
        #[cfg_attr(feature = "openapi", schema(ignore))]
        stream: Option<StreamStart>,
    },
    /// A stored message (from WebSocket or HTTP), to every socket of the
    /// conversation.
    ChatMessage {
        /// The message id; ids increase in the order messages are stored.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        message_id: MessageId,
        /// The conversation.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        conversation_id: ConversationId,
        /// The sender.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        sender_id: UserId,
        /// The sender's display name.
        sender_name: String,
        /// The sender's avatar URL, or null.
        #[cfg_attr(feature = "openapi", schema(required = true))]
        sender_avatar: Option<String>,
        /// The trimmed content.
        content: String,
        /// When it was stored.
        created_at: DateTime<Utc>,
        /// The sender's idempotency key, or null.
        #[cfg_attr(feature = "openapi", schema(required = true))]
        client_id: Option<String>,
        /// The files sent with it (`[]` when none).
        #[serde(default)]
        attachments: Vec<crate::attachment::Attachment>,
        /// On a user stream: seq and the stream user's counters.
        #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
        #[cfg_attr(feature = "openapi", schema(ignore))]
        stream: Option<StreamCounters>,
    },
    /// The other participant started or stopped typing.
    TypingIndicator {
        /// Where; on user streams only (a conversation socket knows).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
        conversation_id: Option<ConversationId>,
        /// The typist.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        user_id: UserId,
        /// The typist's display name.
        user_name: String,
        /// Whether they are typing.
        is_typing: bool,
    },
    /// Messages were marked read (over WebSocket or HTTP); not sent when
    /// nothing was marked.
    MessagesRead {
        /// Where; on user streams only (a conversation socket knows).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
        conversation_id: Option<ConversationId>,
        /// The reader.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        user_id: UserId,
        /// The ids actually marked.
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<i64>))]
        message_ids: Vec<MessageId>,
        /// When.
        read_at: DateTime<Utc>,
        /// On a user stream: seq and the stream user's counters.
        #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
        #[cfg_attr(feature = "openapi", schema(ignore))]
        stream: Option<StreamCounters>,
    },
    /// Messages of the other user up to `up_to_message_id` became delivered.
    MessagesDelivered {
        /// Where.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        conversation_id: ConversationId,
        /// Whose client acknowledged them.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        user_id: UserId,
        /// The acknowledged message.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        up_to_message_id: MessageId,
        /// When.
        delivered_at: DateTime<Utc>,
        /// On a user stream: the event's number there.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        seq: Option<i64>,
    },
    /// A reaction was added to or removed from a message.
    ReactionChanged {
        /// Where.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        conversation_id: ConversationId,
        /// The message.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        message_id: MessageId,
        /// Who reacted.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        user_id: UserId,
        /// The emoji.
        emoji: String,
        /// Added (true) or removed (false).
        added: bool,
        /// The message's reactions after the change.
        reactions: Vec<crate::reaction::Reaction>,
        /// On a user stream: the event's number there.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        seq: Option<i64>,
    },
    /// A connected user came online or went offline (user stream; never
    /// replayed).
    Presence {
        /// Whose presence.
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        user_id: UserId,
        /// `online` or `offline`.
        status: String,
        /// When they were last online; null while online or when hidden.
        last_seen: Option<DateTime<Utc>>,
    },
    /// A connection request was made to the stream's user (user stream).
    ConnectionRequest {
        /// The connection object.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        connection: Value,
        /// The event's number in the stream.
        seq: i64,
    },
    /// A connection was accepted, rejected or removed (user stream).
    ConnectionUpdated {
        /// The connection object.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        connection: Value,
        /// The event's number in the stream.
        seq: i64,
    },
    /// An accepted connection created the pair's conversation (user stream).
    ConversationCreated {
        /// The conversation object as the stream's user sees it.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        conversation: Value,
        /// The event's number in the stream.
        seq: i64,
    },
    /// A conversation's `can_send` changed (user stream).
    ConversationUpdated {
        /// The conversation object as the stream's user sees it.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        conversation: Value,
        /// The event's number in the stream.
        seq: i64,
    },
    /// A refused frame; the socket stays open and nothing was stored.
    Error {
        /// What was wrong.
        message: String,
        /// The refused frame's `client_id`, when it carried one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_id: Option<String>,
    },
}

impl ServerEvent {
    /// The first frame of a conversation socket.
    ///
    /// ```
    /// use chat_domain::{ServerEvent, ConversationId, UserId};
    /// let e = ServerEvent::established(ConversationId(1), UserId(7));
    /// assert_eq!(serde_json::to_value(&e).unwrap(), serde_json::json!({
    ///     "type": "connection_established", "message": "Connected to chat",
    ///     "conversation_id": 1, "user_id": 7}));
    /// ```
    pub fn established(conversation_id: ConversationId, user_id: UserId) -> Self {
        Self::ConnectionEstablished {
            message: "Connected to chat".into(),
            conversation_id: Some(conversation_id),
            user_id,
            stream: None,
        }
    }

    /// The first frame of a user stream.
    ///
    /// ```
    /// use chat_domain::{ServerEvent, UserId, events::StreamStart};
    /// let start = StreamStart { seq: 41, total_unread: 3, unread_conversations: 2, recovered: None };
    /// assert_eq!(serde_json::to_value(ServerEvent::stream_established(UserId(7), start)).unwrap(),
    ///     serde_json::json!({"type": "connection_established", "message": "Connected to chat",
    ///         "user_id": 7, "seq": 41, "total_unread": 3, "unread_conversations": 2}));
    /// ```
    pub fn stream_established(user_id: UserId, start: StreamStart) -> Self {
        Self::ConnectionEstablished {
            message: "Connected to chat".into(),
            conversation_id: None,
            user_id,
            stream: Some(start),
        }
    }

    /// The `chat_message` event of a stored message sent by `sender`.
    pub fn chat_message(m: &Message, sender: &User) -> Self {
        Self::ChatMessage {
            message_id: m.id,
            conversation_id: m.conversation_id,
            sender_id: m.sender_id,
            sender_name: sender.display_name(),
            sender_avatar: sender.avatar.clone(),
            content: m.content.clone(),
            created_at: m.created_at,
            client_id: m.client_id.clone(),
            attachments: m.attachments.clone(),
            stream: None,
        }
    }

    /// The same event for a user stream: with seq and counters.
    pub fn on_stream(mut self, counters: StreamCounters) -> Self {
        match &mut self {
            Self::ChatMessage { stream, .. } | Self::MessagesRead { stream, .. } => {
                *stream = Some(counters)
            }
            _ => {}
        }
        self
    }

    /// The JSON text of the event.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(text: &str) -> ClientEventError {
        ClientEvent::parse(text).unwrap_err()
    }

    #[test]
    fn valid_events() {
        assert_eq!(
            ClientEvent::parse(r#"{"type":"chat_message","content":" hi ","client_id":"k"}"#)
                .unwrap(),
            ClientEvent::ChatMessage {
                content: MessageContent::parse("hi").unwrap(),
                client_id: Some(ClientId::parse("k").unwrap()),
                attachment_ids: vec![],
            }
        );
        assert_eq!(
            ClientEvent::parse(r#"{"type":"message_read","message_ids":[1,2]}"#).unwrap(),
            ClientEvent::MessageRead {
                message_ids: vec![MessageId(1), MessageId(2)]
            }
        );
    }

    #[test]
    fn serialized_events_parse_back() {
        let events = [
            ClientEvent::ChatMessage {
                content: MessageContent::parse("hi").unwrap(),
                client_id: Some(ClientId::parse("k").unwrap()),
                attachment_ids: vec![],
            },
            ClientEvent::ChatMessage {
                content: MessageContent::parse("hi").unwrap(),
                client_id: None,
                attachment_ids: vec![],
            },
            ClientEvent::ChatMessage {
                content: MessageContent::parse_with_attachments("", true).unwrap(),
                client_id: None,
                attachment_ids: vec![crate::AttachmentId(3)],
            },
            ClientEvent::TypingIndicator { is_typing: false },
            ClientEvent::MessageRead {
                message_ids: vec![MessageId(3), MessageId(4)],
            },
        ];
        for e in events {
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(ClientEvent::parse(&text).unwrap(), e, "{text}");
        }
    }

    #[test]
    fn bad_frames() {
        assert_eq!(err("{").message, "Invalid JSON.");
        assert_eq!(err("[1]").message, "Expected a JSON object.");
        assert_eq!(err(r#"{"content":"x"}"#).message, "Missing field 'type'.");
        assert!(
            err(r#"{"type":"shout"}"#)
                .message
                .contains("Unknown event type")
        );
        assert!(
            err(r#"{"type":"chat_message"}"#)
                .message
                .contains("content")
        );
        assert!(
            err(r#"{"type":"chat_message","content":5}"#)
                .message
                .contains("string")
        );
        assert!(
            err(r#"{"type":"chat_message","content":""}"#)
                .message
                .contains("empty")
        );
        let long = json!({"type":"chat_message","content":"a".repeat(5001)}).to_string();
        assert!(err(&long).message.contains("5000"));
        assert!(
            err(r#"{"type":"typing_indicator","is_typing":"yes"}"#)
                .message
                .contains("boolean")
        );
        assert!(
            err(r#"{"type":"typing_indicator"}"#)
                .message
                .contains("is_typing")
        );
        assert!(
            err(r#"{"type":"message_read","message_ids":["a"]}"#)
                .message
                .contains("integers")
        );
        assert!(
            err(r#"{"type":"message_read","message_ids":3}"#)
                .message
                .contains("integers")
        );
        assert!(
            err(r#"{"type":"chat_message","content":"x","client_id":""}"#)
                .message
                .contains("client_id")
        );
        assert!(
            err(r#"{"type":"chat_message","content":"x","client_id":7}"#)
                .message
                .contains("client_id")
        );
    }

    #[test]
    fn errors_echo_client_id() {
        let e = err(r#"{"type":"chat_message","content":"","client_id":"abc"}"#);
        assert_eq!(e.client_id.as_deref(), Some("abc"));
        let wire = ServerEvent::Error {
            message: e.message,
            client_id: e.client_id,
        }
        .to_json();
        let v: Value = serde_json::from_str(&wire).unwrap();
        assert_eq!(v["client_id"], "abc");
        let none = ServerEvent::Error {
            message: "x".into(),
            client_id: None,
        }
        .to_json();
        assert_eq!(none, r#"{"type":"error","message":"x"}"#);
    }

    #[test]
    fn chat_message_wire_shape() {
        let t = chrono::DateTime::parse_from_rfc3339("2025-10-25T10:00:00Z")
            .unwrap()
            .to_utc();
        let e = ServerEvent::ChatMessage {
            message_id: MessageId(123),
            conversation_id: ConversationId(1),
            sender_id: UserId(456),
            sender_name: "John Doe".into(),
            sender_avatar: None,
            content: "Hello!".into(),
            created_at: t,
            client_id: None,
            attachments: vec![],
            stream: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type":"chat_message","message_id":123,"conversation_id":1,"sender_id":456,
                   "sender_name":"John Doe","sender_avatar":null,"content":"Hello!",
                   "created_at":"2025-10-25T10:00:00Z","client_id":null,"attachments":[]})
        );
    }
}
