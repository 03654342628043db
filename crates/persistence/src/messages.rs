//! Queries on messages: sending, history, cursors and read state.

use crate::db::DbConnection;
use crate::error::{Constraint, PersistenceError, QueryResult};
use crate::events::{Ledger, UserEvent};
use crate::rows::{MessageRow, NewMessageRow, to_naive};
use crate::schema::{conversations, messages};
use chat_domain::{
    AttachmentId, ClientId, Conversation, ConversationId, Message, MessageContent, MessageId,
    SendDenied, User, UserId,
};
use chrono::{DateTime, Utc};
use diesel::Connection as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

/// A message stored now, with what its publication needs.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The message.
    pub message: Message,
    /// The sender's profile as it was when the message was stored.
    pub sender: User,
    /// Its place in the conversation (1 for the first message).
    pub position: i64,
    /// Its `chat_message` in both participants' streams, committed with it.
    pub events: Vec<UserEvent>,
}

/// What happened to a send.
#[derive(Debug)]
pub enum SendOutcome {
    /// Stored now.
    Stored(Box<Stored>),
    /// The same sender already sent this `client_id` here; the original.
    Duplicate(Message),
    /// Refused by the rules; nothing stored.
    Denied(SendDenied),
    /// An attachment id that is not a ready, unsent upload of the sender;
    /// nothing stored.
    NotAttachable,
}

/// Stores a message, unless it is a retry of one already stored.
///
/// The conversation row is updated (and so locked) before the insert, so
/// message ids of one conversation are allocated in commit order: a client
/// reading `after=<id>` never misses a message committed later with a lower id.
pub fn send(
    conn: &mut DbConnection,
    conversation_id: ConversationId,
    sender: UserId,
    content: &MessageContent,
    client_id: Option<&ClientId>,
) -> QueryResult<SendOutcome> {
    send_notifying(conn, conversation_id, sender, content, client_id, &[], None)
}

/// [`send`] with `attachments` (linked to the message in its transaction),
/// and with `webhook_delay` (webhooks configured) the recipient's
/// `message.created` webhook event in the same transaction, due that long
/// after the message.
pub fn send_notifying(
    conn: &mut DbConnection,
    conversation_id: ConversationId,
    sender: UserId,
    content: &MessageContent,
    client_id: Option<&ClientId>,
    attachments: &[AttachmentId],
    webhook_delay: Option<std::time::Duration>,
) -> QueryResult<SendOutcome> {
    let attempt = conn.transaction(|conn| {
        let conversation = match crate::conversations::find_for(conn, conversation_id, sender) {
            Ok(c) => c,
            Err(PersistenceError::NotFound) => {
                return Ok(SendOutcome::Denied(SendDenied::NotParticipant));
            }
            Err(e) => return Err(e),
        };
        if let Some(cid) = client_id
            && let Some(original) = find_by_client_id(conn, conversation_id, sender, cid)?
        {
            return Ok(SendOutcome::Duplicate(original));
        }
        if let Err(denied) = conversation.check_send(sender) {
            return Ok(SendOutcome::Denied(denied));
        }
        let (files, summary) = crate::attachments::sendable(conn, attachments, sender)?;
        let (mut message, unread, position) =
            insert(conn, &conversation, sender, content, client_id, &summary)?;
        // After the conversation's lock, as every send: conversation, then uploads.
        crate::attachments::link(conn, attachments, sender, conversation_id, message.id)?;
        message.attachments = files;
        let mut ledger = Ledger::lock(conn, &[conversation.user_low, conversation.user_high])?;
        let profile = ledger
            .record_message(&conversation, unread, &message)
            .ok_or(PersistenceError::NotFound)?;
        let events = ledger.write(conn, message.created_at)?;
        if let Some(delay) = webhook_delay {
            crate::outbox::enqueue(conn, &[webhook_event(&conversation, &message)], delay)?;
        }
        Ok(SendOutcome::Stored(Box::new(Stored {
            message,
            sender: profile,
            position,
            events,
        })))
    });
    match attempt {
        Err(e) if crate::attachments::is_not_attachable(&e) => Ok(SendOutcome::NotAttachable),
        // A concurrent retry with the same client_id won the race.
        Err(PersistenceError::Conflict(Constraint::MessageClientId)) => {
            let cid = client_id.ok_or(PersistenceError::Conflict(Constraint::MessageClientId))?;
            find_by_client_id(conn, conversation_id, sender, cid)?
                .map(SendOutcome::Duplicate)
                .ok_or(PersistenceError::NotFound)
        }
        other => other,
    }
}

/// The `message.created` webhook event of a stored message.
pub(crate) fn webhook_event(conversation: &Conversation, m: &Message) -> crate::outbox::NewEvent {
    crate::outbox::NewEvent {
        kind: crate::outbox::EventKind::MessageCreated(m.id),
        recipient: conversation.other_participant(m.sender_id),
        at: m.created_at,
    }
}

#[derive(QueryableByName)]
struct InsertedId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Inserts the message; returns it, the conversation's (low, high) unread
/// counts after it, and its position.
fn insert(
    conn: &mut DbConnection,
    conversation: &Conversation,
    sender: UserId,
    content: &MessageContent,
    client_id: Option<&ClientId>,
    attachments: &str,
) -> QueryResult<(Message, (i64, i64), i64)> {
    let target = conversations::table.find(conversation.id.0);
    let after = (
        conversations::unread_for_low,
        conversations::unread_for_high,
        conversations::message_count,
    );
    // Lock the conversation row first: concurrent sends queue here, so each
    // reads the clock only once the previous one has committed, and
    // `created_at` never decreases while ids increase.
    let (low, high, position): (i64, i64, i64) = if sender == conversation.user_low {
        diesel::update(target)
            .set((
                conversations::unread_for_high.eq(conversations::unread_for_high + 1),
                conversations::message_count.eq(conversations::message_count + 1),
            ))
            .returning(after)
            .get_result(conn)?
    } else {
        diesel::update(target)
            .set((
                conversations::unread_for_low.eq(conversations::unread_for_low + 1),
                conversations::message_count.eq(conversations::message_count + 1),
            ))
            .returning(after)
            .get_result(conn)?
    };
    let now = to_naive(chat_domain::now());
    // A new message has no reactions and no delivery yet; only its id
    // comes back (SQLite's RETURNING takes no subquery, which the delivery
    // time of a selected message is).
    let new = NewMessageRow {
        conversation_id: conversation.id.0,
        sender_id: sender.0,
        content: content.as_str(),
        client_id: client_id.map(ClientId::as_str),
        created_at: now,
        attachments,
    };
    let id: i64 = match conn {
        // PostgreSQL's search vector comes with the row (SQLite's FTS5
        // triggers index it themselves).
        DbConnection::Pg(pg) => {
            diesel::sql_query(
                "INSERT INTO messages \
                   (conversation_id, sender_id, content, client_id, created_at, attachments, \
                    search_vector) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7::tsvector) RETURNING id",
            )
            .bind::<BigInt, _>(new.conversation_id)
            .bind::<BigInt, _>(new.sender_id)
            .bind::<Text, _>(new.content)
            .bind::<Nullable<Text>, _>(new.client_id)
            .bind::<Timestamp, _>(new.created_at)
            .bind::<Text, _>(new.attachments)
            .bind::<Text, _>(crate::search_terms::vector(
                new.content,
                [conversation.user_low, conversation.user_high],
            ))
            .get_result::<InsertedId>(pg)?
            .id
        }
        DbConnection::Sqlite(_) => diesel::insert_into(messages::table)
            .values(new)
            .returning(messages::id)
            .get_result(conn)?,
    };
    let row = MessageRow {
        id,
        conversation_id: conversation.id.0,
        sender_id: sender.0,
        content: content.as_str().to_owned(),
        client_id: client_id.map(|c| c.as_str().to_owned()),
        created_at: now,
        read_at: None,
        delivered_at: None,
        reactions: "[]".to_owned(),
        attachments: attachments.to_owned(),
    };
    diesel::update(target)
        .set((
            conversations::updated_at.eq(now),
            conversations::last_message_id.eq(row.id),
        ))
        .execute(conn)?;
    Ok((row.into_message(), (low, high), position))
}

fn find_by_client_id(
    conn: &mut DbConnection,
    conversation_id: ConversationId,
    sender: UserId,
    client_id: &ClientId,
) -> QueryResult<Option<Message>> {
    let row: Option<MessageRow> = messages::table
        .filter(messages::conversation_id.eq(conversation_id.0))
        .filter(messages::sender_id.eq(sender.0))
        .filter(messages::client_id.eq(client_id.as_str()))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(MessageRow::into_message))
}

/// The message with this id, if `viewer` takes part in its conversation.
pub fn find_for(conn: &mut DbConnection, id: MessageId, viewer: UserId) -> QueryResult<Message> {
    let row: MessageRow = messages::table
        .find(id.0)
        .select(MessageRow::as_select())
        .first(conn)?;
    crate::conversations::find_for(conn, ConversationId(row.conversation_id), viewer)?;
    Ok(row.into_message())
}

/// The messages with these ids (for last messages of a conversation page).
pub fn find_many(conn: &mut DbConnection, ids: &[MessageId]) -> QueryResult<Vec<Message>> {
    let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let rows: Vec<MessageRow> = messages::table
        .filter(messages::id.eq_any(raw))
        .select(MessageRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(MessageRow::into_message).collect())
}

/// One page of history, newest first, and the total count.
pub fn page(
    conn: &mut DbConnection,
    conversation_id: ConversationId,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<Message>)> {
    let in_conv = messages::conversation_id.eq(conversation_id.0);
    // The maintained counter, not count(*): constant cost however long the history.
    let count: i64 = conversations::table
        .find(conversation_id.0)
        .select(conversations::message_count)
        .first(conn)?;
    let rows: Vec<MessageRow> = messages::table
        .filter(in_conv)
        .order(messages::id.desc())
        .offset(offset)
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?;
    Ok((
        count,
        rows.into_iter().map(MessageRow::into_message).collect(),
    ))
}

/// Direction of a cursor read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Older than the id, newest first.
    Before(MessageId),
    /// Newer than the id, oldest first.
    After(MessageId),
}

/// Up to `limit` messages from a cursor, and whether more remain. A keyset
/// scan on (conversation_id, id): the cost does not grow with history depth.
pub fn from_cursor(
    conn: &mut DbConnection,
    conversation_id: ConversationId,
    cursor: Cursor,
    limit: i64,
) -> QueryResult<(Vec<Message>, bool)> {
    let q = messages::table
        .filter(messages::conversation_id.eq(conversation_id.0))
        .select(MessageRow::as_select());
    let mut rows: Vec<MessageRow> = match cursor {
        Cursor::Before(id) => q
            .filter(messages::id.lt(id.0))
            .order(messages::id.desc())
            .limit(limit + 1)
            .load(conn)?,
        Cursor::After(id) => q
            .filter(messages::id.gt(id.0))
            .order(messages::id.asc())
            .limit(limit + 1)
            .load(conn)?,
    };
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok((
        rows.into_iter().map(MessageRow::into_message).collect(),
        has_more,
    ))
}

/// What [`mark_read`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The ids marked, ascending.
    pub ids: Vec<MessageId>,
    /// The time recorded on them.
    pub read_at: DateTime<Utc>,
    /// The conversation's unread counters after the change (low, high
    /// participant); `None` when nothing was marked.
    pub unread_after: Option<(i64, i64)>,
}

/// Marks as read the other participant's unread messages in the
/// conversation (only `ids` among them, when given).
pub fn mark_read(
    conn: &mut DbConnection,
    conversation: &Conversation,
    reader: UserId,
    ids: Option<&[MessageId]>,
) -> QueryResult<Marked> {
    let now = chat_domain::now();
    let nothing = Marked {
        ids: Vec::new(),
        read_at: now,
        unread_after: None,
    };
    if ids.is_some_and(<[MessageId]>::is_empty) {
        return Ok(nothing);
    }
    let other = conversation.other_participant(reader);
    let id_filter: Option<Vec<i64>> = ids.map(|ids| ids.iter().map(|i| i.0).collect());
    conn.transaction(|conn| {
        let mut q = diesel::update(messages::table)
            .filter(messages::conversation_id.eq(conversation.id.0))
            .filter(messages::sender_id.eq(other.0))
            .filter(messages::read_at.is_null())
            .into_boxed();
        if let Some(list) = &id_filter {
            q = q.filter(messages::id.eq_any(list.clone()));
        }
        let mut marked: Vec<i64> = q
            .set(messages::read_at.eq(to_naive(now)))
            .returning(messages::id)
            .get_results(conn)?;
        if marked.is_empty() {
            return Ok(nothing);
        }
        marked.sort_unstable();
        let n = marked.len() as i64;
        let target = conversations::table.find(conversation.id.0);
        let counters = (
            conversations::unread_for_low,
            conversations::unread_for_high,
        );
        let after: (i64, i64) = if reader == conversation.user_low {
            diesel::update(target)
                .set(conversations::unread_for_low.eq(conversations::unread_for_low - n))
                .returning(counters)
                .get_result(conn)?
        } else {
            diesel::update(target)
                .set(conversations::unread_for_high.eq(conversations::unread_for_high - n))
                .returning(counters)
                .get_result(conn)?
        };
        Ok(Marked {
            ids: marked.into_iter().map(MessageId).collect(),
            read_at: now,
            unread_after: Some(after),
        })
    })
}
