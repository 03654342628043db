//! Wire types: what the API sends, separate from storage rows and domain types.

use chat_domain::{
    Connection, ConnectionId, ConnectionStatus, Conversation, ConversationId, Message, MessageId,
    ServerEvent, User, UserId, UserView,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

/// Users by id, for building views from one batched query.
pub type UserMap = HashMap<UserId, User>;

/// The connection object.
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    id: ConnectionId,
    requester: UserView,
    addressee: UserView,
    status: ConnectionStatus,
    conversation_id: Option<ConversationId>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ConnectionView {
    /// `None` when a user is missing from `users` (deleted concurrently).
    pub fn build(c: &Connection, users: &UserMap) -> Option<Self> {
        Some(Self {
            id: c.id,
            requester: users.get(&c.requester_id)?.into(),
            addressee: users.get(&c.addressee_id)?.into(),
            status: c.status,
            conversation_id: c.conversation_id,
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
    }
}

/// The message object.
#[derive(Debug, Serialize)]
pub struct MessageView {
    id: MessageId,
    conversation_id: ConversationId,
    sender_id: UserId,
    sender_name: String,
    sender_avatar: Option<String>,
    content: String,
    is_read: bool,
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    client_id: Option<String>,
}

impl MessageView {
    /// The view of `m` sent by `sender`.
    pub fn build(m: &Message, sender: &User) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            sender_id: m.sender_id,
            sender_name: sender.display_name(),
            sender_avatar: sender.avatar.clone(),
            content: m.content.clone(),
            is_read: m.is_read(),
            read_at: m.read_at,
            created_at: m.created_at,
            client_id: m.client_id.clone(),
        }
    }
}

/// The `chat_message` event for a stored message.
pub fn chat_message_event(m: &Message, sender: &User) -> ServerEvent {
    ServerEvent::ChatMessage {
        message_id: m.id,
        conversation_id: m.conversation_id,
        sender_id: m.sender_id,
        sender_name: sender.display_name(),
        sender_avatar: sender.avatar.clone(),
        content: m.content.clone(),
        created_at: m.created_at,
        client_id: m.client_id.clone(),
    }
}

/// The conversation object.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    id: ConversationId,
    connection_id: ConnectionId,
    participants: [UserView; 2],
    other_user: UserView,
    last_message: Option<MessageView>,
    unread_count: i64,
    can_send: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ConversationView {
    /// The view for `viewer`; `None` when a participant is missing from `users`.
    pub fn build(
        c: &Conversation,
        viewer: UserId,
        users: &UserMap,
        last: Option<&Message>,
    ) -> Option<Self> {
        let low = users.get(&c.user_low)?;
        let high = users.get(&c.user_high)?;
        let other = users.get(&c.other_participant(viewer))?;
        let last_message = match last {
            Some(m) => Some(MessageView::build(m, users.get(&m.sender_id)?)),
            None => None,
        };
        Some(Self {
            id: c.id,
            connection_id: c.connection_id,
            participants: [low.into(), high.into()],
            other_user: other.into(),
            last_message,
            unread_count: c.unread_for(viewer).max(0),
            can_send: c.can_send(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
    }
}

/// Indexes users by id.
pub fn user_map(users: Vec<User>) -> UserMap {
    users.into_iter().map(|u| (u.id, u)).collect()
}
