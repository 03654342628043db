//! Wire types: what the API sends, separate from storage rows and domain types.

use crate::service::presence::PresenceView;
use chat_domain::message::DeliveryStatus;
use chat_domain::reaction::Reaction;
use chat_domain::{
    Connection, ConnectionId, ConnectionStatus, Conversation, ConversationId, Message, MessageId,
    ServerEvent, User, UserId, UserView,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// Users by id, for building views from one batched query.
pub type UserMap = HashMap<UserId, User>;

/// The connection object.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Connection)]
pub struct ConnectionView {
    #[schema(value_type = i64)]
    id: ConnectionId,
    /// Who asked.
    requester: UserView,
    /// Who was asked; only they may accept or reject.
    addressee: UserView,
    status: ConnectionStatus,
    /// Set once the connection has been accepted.
    #[schema(value_type = Option<i64>, required = true)]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView {
    /// Ids increase in the order messages are stored.
    #[schema(value_type = i64)]
    id: MessageId,
    #[schema(value_type = i64)]
    conversation_id: ConversationId,
    #[schema(value_type = i64)]
    sender_id: UserId,
    /// The sender's display name.
    sender_name: String,
    /// The sender's avatar URL, or null.
    #[schema(required = true)]
    sender_avatar: Option<String>,
    /// Trimmed; 1 to 5000 characters.
    content: String,
    /// Whether the recipient has read it.
    is_read: bool,
    /// When the recipient read it, or null.
    #[schema(required = true)]
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    /// The sender's idempotency key, or null when none was given.
    #[schema(required = true)]
    client_id: Option<String>,
    /// `sent` once stored, `delivered` once the recipient's client
    /// acknowledged it, `read` once read (read implies delivered).
    status: DeliveryStatus,
    /// When it was delivered, or null.
    #[schema(required = true)]
    delivered_at: Option<DateTime<Utc>>,
    /// Reactions, one per emoji in the order each was first used.
    reactions: Vec<Reaction>,
    /// Files sent with it, in the order listed (`[]` when none).
    attachments: Vec<chat_domain::attachment::Attachment>,
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
            status: m.status(),
            delivered_at: m.delivered_at(),
            reactions: m.reactions.clone(),
            attachments: m.attachments.clone(),
        }
    }
}

/// The `chat_message` event for a stored message.
pub fn chat_message_event(m: &Message, sender: &User) -> ServerEvent {
    ServerEvent::chat_message(m, sender)
}

/// The conversation object (one per pair of users, ever).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationView {
    #[schema(value_type = i64)]
    id: ConversationId,
    /// The pair's latest connection.
    #[schema(value_type = i64)]
    connection_id: ConnectionId,
    /// Both users.
    #[schema(value_type = Vec<UserView>, min_items = 2, max_items = 2)]
    participants: [UserView; 2],
    /// The participant who is not the caller.
    other_user: UserView,
    /// The latest message, or null.
    #[schema(required = true)]
    last_message: Option<MessageView>,
    /// Messages of the other user the caller has not read.
    unread_count: i64,
    /// False when the connection is no longer accepted.
    can_send: bool,
    created_at: DateTime<Utc>,
    /// The time of the last message, or the creation time when there is none.
    updated_at: DateTime<Utc>,
    /// The other participant's presence (offline with `last_seen` null
    /// while the two are not connected, or when they hide it).
    other_user_presence: PresenceView,
}

impl ConversationView {
    /// The view for `viewer`; `None` when a participant is missing from `users`.
    pub fn build(
        c: &Conversation,
        viewer: UserId,
        users: &UserMap,
        last: Option<&Message>,
        other_online: bool,
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
            other_user_presence: if c.can_send() {
                PresenceView::of(other, other_online)
            } else {
                PresenceView::HIDDEN
            },
        })
    }
}

/// Indexes users by id.
pub fn user_map(users: Vec<User>) -> UserMap {
    users.into_iter().map(|u| (u.id, u)).collect()
}
