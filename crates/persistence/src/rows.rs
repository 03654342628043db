//! Row structs as stored, and their conversion into domain types.

use crate::db::DbConnection;
use crate::schema::{connections, conversations, messages, users};
use chat_domain::{
    Connection, ConnectionId, ConnectionStatus, Conversation, ConversationId, Message, MessageId,
    User, UserId,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Timestamp};

/// Storage keeps UTC as a naive timestamp on both backends.
pub(crate) fn to_naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

pub(crate) fn to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// Backend of the [`DbConnection`] enum.
pub(crate) type Multi = <DbConnection as diesel::Connection>::Backend;

/// The columns of a row struct, paired with its fields by name, for
/// `RETURNING` on the connection enum (where `as_returning()` does not
/// compile).
pub(crate) fn columns<R: Selectable<Multi>>() -> R::SelectExpression {
    R::construct_selection()
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub avatar: Option<String>,
    pub last_seen: Option<NaiveDateTime>,
    pub share_presence: bool,
}

impl UserRow {
    pub fn into_user(self) -> User {
        User {
            id: UserId(self.id),
            username: self.username,
            first_name: self.first_name,
            last_name: self.last_name,
            avatar: self.avatar,
            last_seen: self.last_seen.map(to_utc),
            share_presence: self.share_presence,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewUserRow<'a> {
    pub username: &'a str,
    pub username_key: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub avatar: Option<&'a str>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = connections)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct ConnectionRow {
    pub id: i64,
    pub requester_id: i64,
    pub addressee_id: i64,
    pub status: String,
    pub conversation_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl ConnectionRow {
    pub fn into_connection(self) -> Connection {
        Connection {
            id: ConnectionId(self.id),
            requester_id: UserId(self.requester_id),
            addressee_id: UserId(self.addressee_id),
            status: parse_status(&self.status),
            conversation_id: self.conversation_id.map(ConversationId),
            created_at: to_utc(self.created_at),
            updated_at: to_utc(self.updated_at),
        }
    }
}

/// The CHECK constraint guarantees one of the four names.
fn parse_status(raw: &str) -> ConnectionStatus {
    ConnectionStatus::parse(raw).unwrap_or(ConnectionStatus::Removed)
}

#[derive(Debug, Insertable)]
#[diesel(table_name = connections)]
pub(crate) struct NewConnectionRow {
    pub requester_id: i64,
    pub addressee_id: i64,
    pub user_low: i64,
    pub user_high: i64,
    pub status: &'static str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// `QueryableByName` too, for the writer's lock-and-load statement.
#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = conversations)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct ConversationRow {
    pub id: i64,
    pub connection_id: i64,
    pub user_low: i64,
    pub user_high: i64,
    pub last_message_id: Option<i64>,
    pub unread_for_low: i64,
    pub unread_for_high: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub message_count: i64,
}

impl ConversationRow {
    pub fn into_conversation(self, status: &str) -> Conversation {
        Conversation {
            id: ConversationId(self.id),
            connection_id: ConnectionId(self.connection_id),
            connection_status: parse_status(status),
            user_low: UserId(self.user_low),
            user_high: UserId(self.user_high),
            last_message_id: self.last_message_id.map(MessageId),
            unread_for_low: self.unread_for_low,
            unread_for_high: self.unread_for_high,
            message_count: self.message_count,
            created_at: to_utc(self.created_at),
            updated_at: to_utc(self.updated_at),
        }
    }
}

/// `QueryableByName` too, for the writer's `sql_query` statements: it reads
/// columns by name, like `Selectable`.
#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub content: String,
    pub client_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub read_at: Option<NaiveDateTime>,
    #[diesel(select_expression = diesel::dsl::sql::<Nullable<Timestamp>>(DELIVERED_AT))]
    #[diesel(select_expression_type = diesel::expression::SqlLiteral<Nullable<Timestamp>>)]
    pub delivered_at: Option<NaiveDateTime>,
    pub reactions: String,
    pub attachments: String,
}

/// A message's delivery time, as SQL over the messages table named `$t`:
/// stamped on it (before migration 000017), or that of the first delivery
/// mark of its conversation and sender at or above its id (one index probe;
/// marks only move forward). A literal, for `concat!`.
macro_rules! delivered_at_of {
    ($t:literal) => {
        concat!(
            "coalesce(",
            $t,
            ".delivered_at, (SELECT d.at FROM delivery_marks d \
             WHERE d.conversation_id = ",
            $t,
            ".conversation_id AND d.sender_id = ",
            $t,
            ".sender_id AND d.up_to >= ",
            $t,
            ".id ORDER BY d.up_to LIMIT 1))"
        )
    };
}

pub(crate) use delivered_at_of;

/// [`MessageRow::delivered_at`] in diesel's selections.
pub(crate) const DELIVERED_AT: &str = delivered_at_of!("messages");

/// The `delivered_at` column of statements that name the messages table `m`.
macro_rules! m_delivered_at {
    () => {
        concat!($crate::rows::delivered_at_of!("m"), " AS delivered_at")
    };
}
pub(crate) use m_delivered_at;

impl MessageRow {
    pub fn into_message(self) -> Message {
        Message {
            id: MessageId(self.id),
            conversation_id: ConversationId(self.conversation_id),
            sender_id: UserId(self.sender_id),
            content: self.content,
            client_id: self.client_id,
            created_at: to_utc(self.created_at),
            read_at: self.read_at.map(to_utc),
            delivered_at: self.delivered_at.map(to_utc),
            // Written by this crate only; an unreadable summary shows none.
            reactions: serde_json::from_str(&self.reactions).unwrap_or_default(),
            attachments: crate::attachments::from_summary(&self.attachments),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub(crate) struct NewMessageRow<'a> {
    pub conversation_id: i64,
    pub sender_id: i64,
    pub content: &'a str,
    pub client_id: Option<&'a str>,
    pub created_at: NaiveDateTime,
    /// The attachments' summary (`[]` when none).
    pub attachments: &'a str,
}
