//! The message writer: sends from every socket and request of a node go
//! through one queue, and on PostgreSQL the sends waiting at the same moment
//! are stored in one transaction (one lock query, one multi-row insert, one
//! counter update, one commit), so the commit cost is shared instead of paid
//! per message. Each sender awaits its own outcome, so a socket's frames
//! still complete in order; a writer takes whatever is queued when it is
//! free, so an idle system adds no delay.
//!
//! SQLite (one connection, single node) stores each send on its own.

use crate::db::{Database, DbConnection};
use crate::error::{Constraint, PersistenceError, QueryResult};
use crate::events::Ledger;
use crate::messages::{self, SendOutcome, Stored};
use crate::rows::{ConversationRow, MessageRow, to_naive};
use crate::schema::{connections, conversations};
use chat_domain::{
    ClientId, Conversation, ConversationId, Message, MessageContent, SendDenied, UserId,
};
use diesel::Connection as _;
use diesel::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, oneshot};

/// One send.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Where.
    pub conversation: ConversationId,
    /// Who.
    pub sender: UserId,
    /// Validated content.
    pub content: MessageContent,
    /// Idempotency key.
    pub client_id: Option<ClientId>,
}

type Job = (SendRequest, oneshot::Sender<QueryResult<SendOutcome>>);

/// Handle to the writer tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct MessageWriter {
    db: Database,
    queue: Option<mpsc::Sender<Job>>,
    stored: Arc<AtomicU64>,
}

/// Counts the sends of `outcome` that stored a row: counted where the
/// commit's outcome is known, so a sender that went away is counted too.
fn count_stored(stored: &AtomicU64, outcome: &QueryResult<SendOutcome>) {
    if matches!(outcome, Ok(SendOutcome::Stored(_))) {
        stored.fetch_add(1, Ordering::Relaxed);
    }
}

impl MessageWriter {
    /// Starts `writers` writer tasks taking batches of up to `max_batch`
    /// sends (PostgreSQL); SQLite needs none. Call inside a tokio runtime.
    pub fn start(db: Database, writers: usize, max_batch: usize) -> Self {
        let stored = Arc::new(AtomicU64::new(0));
        if db.is_sqlite() {
            return Self {
                db,
                queue: None,
                stored,
            };
        }
        let (tx, rx) = mpsc::channel::<Job>(max_batch.max(1) * writers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(run_writer(
                db.clone(),
                rx.clone(),
                max_batch.max(1),
                stored.clone(),
            ));
        }
        Self {
            db,
            queue: Some(tx),
            stored,
        }
    }

    /// Messages stored through this writer since start (new rows only,
    /// not retries found by `client_id`).
    pub fn stored_total(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Stores a send (or finds its original) and answers once committed.
    pub async fn send(&self, request: SendRequest) -> QueryResult<SendOutcome> {
        let Some(queue) = &self.queue else {
            let stored = self.stored.clone();
            // Counted inside the blocking task, which runs to its end even
            // when this future is dropped.
            return self
                .db
                .run(move |c| {
                    let outcome = messages::send(
                        c,
                        request.conversation,
                        request.sender,
                        &request.content,
                        request.client_id.as_ref(),
                    );
                    count_stored(&stored, &outcome);
                    outcome
                })
                .await;
        };
        let (reply, answer) = oneshot::channel();
        queue
            .send((request, reply))
            .await
            .map_err(|_| PersistenceError::other("message writer stopped"))?;
        answer
            .await
            .map_err(|_| PersistenceError::other("message writer dropped a send"))?
    }
}

async fn run_writer(
    db: Database,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    stored: Arc<AtomicU64>,
) {
    loop {
        let mut batch: Vec<Job> = Vec::new();
        {
            let mut rx = queue.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (requests, replies): (Vec<SendRequest>, Vec<_>) = batch.into_iter().unzip();
        let outcomes = db.run(move |c| store_batch(c, &requests)).await;
        match outcomes {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    count_stored(&stored, &outcome);
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // Clones share the cause.
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Stores a batch; on a client_id race with another writer, falls back to
/// one transaction per send (which resolves the race).
fn store_batch(
    conn: &mut DbConnection,
    requests: &[SendRequest],
) -> QueryResult<Vec<QueryResult<SendOutcome>>> {
    match store_batch_atomic(conn, requests) {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        // Another writer stored the same client_id at the same moment.
        Err(PersistenceError::Conflict(Constraint::MessageClientId)) => Ok(requests
            .iter()
            .map(|r| {
                messages::send(
                    conn,
                    r.conversation,
                    r.sender,
                    &r.content,
                    r.client_id.as_ref(),
                )
            })
            .collect()),
        Err(e) => Err(e),
    }
}

/// Stores a batch in one PostgreSQL transaction: all of it, or nothing.
/// Public so tests can store a crafted batch; the server goes through
/// [`MessageWriter`].
#[doc(hidden)]
pub fn store_batch_atomic(
    conn: &mut DbConnection,
    requests: &[SendRequest],
) -> QueryResult<Vec<SendOutcome>> {
    match conn {
        DbConnection::Pg(_) => conn.transaction(|conn| store_batch_pg(conn, requests)),
        DbConnection::Sqlite(_) => Err(PersistenceError::other("batched sends need PostgreSQL")),
    }
}

/// What to do with one request of a batch.
enum Plan {
    Done(SendOutcome),
    Insert,
    /// Same sender, conversation and client_id as an earlier send of this batch.
    SameAs(usize),
}

fn store_batch_pg(
    conn: &mut DbConnection,
    requests: &[SendRequest],
) -> QueryResult<Vec<SendOutcome>> {
    let DbConnection::Pg(pg) = conn else {
        return Err(PersistenceError::other("batched sends need PostgreSQL"));
    };
    let mut ids: Vec<i64> = requests.iter().map(|r| r.conversation.0).collect();
    ids.sort_unstable();
    ids.dedup();
    // Lock the conversations in id order (no deadlock between writers) before
    // any id is allocated, so ids of a conversation follow commit order.
    conversations::table
        .filter(conversations::id.eq_any(ids.clone()))
        .order(conversations::id)
        .select(conversations::id)
        .for_update()
        .load::<i64>(pg)?;
    let rows: Vec<(ConversationRow, String)> = conversations::table
        .inner_join(connections::table)
        .filter(conversations::id.eq_any(ids.clone()))
        .select((ConversationRow::as_select(), connections::status))
        .load(pg)?;
    let convs: HashMap<ConversationId, Conversation> = rows
        .into_iter()
        .map(|(r, s)| r.into_conversation(&s))
        .map(|c| (c.id, c))
        .collect();

    // Earlier sends with the same keys: one index probe per exact
    // (conversation, sender, client_id), whatever the history size.
    let keyed: Vec<&SendRequest> = requests.iter().filter(|r| r.client_id.is_some()).collect();
    let mut originals: HashMap<(ConversationId, UserId, String), Message> = HashMap::new();
    if !keyed.is_empty() {
        let found: Vec<MessageRow> = diesel::sql_query(
            "SELECT m.id, m.conversation_id, m.sender_id, m.content, m.client_id, \
                    m.created_at, m.read_at, m.delivered_at, m.reactions \
             FROM messages m \
             JOIN unnest($1, $2, $3) AS k(conversation_id, sender_id, client_id) \
               ON m.conversation_id = k.conversation_id AND m.sender_id = k.sender_id \
              AND m.client_id = k.client_id",
        )
        .bind::<Array<BigInt>, _>(keyed.iter().map(|r| r.conversation.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(keyed.iter().map(|r| r.sender.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            keyed
                .iter()
                .filter_map(|r| r.client_id.as_ref().map(|c| c.as_str().to_owned()))
                .collect::<Vec<_>>(),
        )
        .load(pg)?;
        for m in found.into_iter().map(MessageRow::into_message) {
            if let Some(cid) = m.client_id.clone() {
                originals.insert((m.conversation_id, m.sender_id, cid), m);
            }
        }
    }

    let mut plans: Vec<Plan> = Vec::with_capacity(requests.len());
    let mut first_in_batch: HashMap<(ConversationId, UserId, &str), usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        let plan = match convs.get(&r.conversation) {
            None => Plan::Done(SendOutcome::Denied(SendDenied::NotParticipant)),
            Some(c) if !c.can_read(r.sender) => {
                Plan::Done(SendOutcome::Denied(SendDenied::NotParticipant))
            }
            Some(c) => {
                let key = r
                    .client_id
                    .as_ref()
                    .map(|k| (r.conversation, r.sender, k.as_str()));
                let original = key.and_then(|(cv, s, k)| originals.get(&(cv, s, k.to_owned())));
                let earlier = key.and_then(|k| first_in_batch.get(&k).copied());
                match (original, earlier, c.check_send(r.sender)) {
                    (Some(m), _, _) => Plan::Done(SendOutcome::Duplicate(m.clone())),
                    (None, Some(j), _) => Plan::SameAs(j),
                    (None, None, Err(denied)) => Plan::Done(SendOutcome::Denied(denied)),
                    (None, None, Ok(())) => {
                        if let Some(k) = key {
                            first_in_batch.insert(k, i);
                        }
                        Plan::Insert
                    }
                }
            }
        };
        plans.push(plan);
    }

    let now = to_naive(chat_domain::now());
    let new: Vec<&SendRequest> = requests
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Insert))
        .map(|(r, _)| r)
        .collect();
    let stored: Vec<Message> = if new.is_empty() {
        Vec::new()
    } else {
        // Arrays instead of a VALUES list: the statement text is the same
        // for every batch size, so it is prepared once and cached.
        let rows: Vec<MessageRow> = diesel::sql_query(
            "INSERT INTO messages (conversation_id, sender_id, content, client_id, created_at) \
             SELECT k.conversation_id, k.sender_id, k.content, k.client_id, $5 \
             FROM unnest($1, $2, $3, $4) WITH ORDINALITY \
               AS k(conversation_id, sender_id, content, client_id, n) \
             ORDER BY k.n \
             RETURNING id, conversation_id, sender_id, content, client_id, created_at, read_at, \
                       delivered_at, reactions",
        )
        .bind::<Array<BigInt>, _>(new.iter().map(|r| r.conversation.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(new.iter().map(|r| r.sender.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(new.iter().map(|r| r.content.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            new.iter()
                .map(|r| r.client_id.as_ref().map(ClientId::as_str))
                .collect::<Vec<_>>(),
        )
        .bind::<Timestamp, _>(now)
        .load(pg)?;
        pair_inserted(
            &new,
            rows.into_iter().map(MessageRow::into_message).collect(),
        )?
    };
    update_conversations(pg, &convs, &stored, now)?;
    let stored = record_stream_events(conn, &convs, stored)?;

    let mut inserted = stored.into_iter();
    let mut by_index: Vec<Option<Message>> = vec![None; requests.len()];
    let mut outcomes = Vec::with_capacity(requests.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let outcome = match plan {
            Plan::Done(o) => o,
            Plan::Insert => {
                let s = inserted
                    .next()
                    .ok_or_else(|| PersistenceError::other("insert returned too few rows"))?;
                by_index[i] = Some(s.message.clone());
                SendOutcome::Stored(Box::new(s))
            }
            Plan::SameAs(j) => by_index[j]
                .clone()
                .map(SendOutcome::Duplicate)
                .ok_or_else(|| PersistenceError::other("duplicate of an unstored send"))?,
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Records the batch's messages in their participants' streams, in id
/// order, after the conversations (locked first) and under the users' row
/// locks: two more statements per batch, whatever its size.
fn record_stream_events(
    conn: &mut DbConnection,
    convs: &HashMap<ConversationId, Conversation>,
    stored: Vec<Message>,
) -> QueryResult<Vec<Stored>> {
    let users: Vec<UserId> = stored
        .iter()
        .filter_map(|m| convs.get(&m.conversation_id))
        .flat_map(|c| [c.user_low, c.user_high])
        .collect();
    let mut ledger = Ledger::lock(conn, &users)?;
    // Running (low unread, high unread, message count) per conversation.
    let mut running: HashMap<ConversationId, (i64, i64, i64)> = convs
        .iter()
        .map(|(id, c)| (*id, (c.unread_for_low, c.unread_for_high, c.message_count)))
        .collect();
    let mut pending = Vec::with_capacity(stored.len());
    for m in stored {
        let (Some(c), Some(state)) = (
            convs.get(&m.conversation_id),
            running.get_mut(&m.conversation_id),
        ) else {
            return Err(PersistenceError::other(
                "stored message of an unlocked conversation",
            ));
        };
        if m.sender_id == c.user_low {
            state.1 += 1;
        } else {
            state.0 += 1;
        }
        state.2 += 1;
        let first = ledger.recorded();
        let sender = ledger
            .record_message(c, (state.0, state.1), &m)
            .ok_or(PersistenceError::NotFound)?;
        pending.push((m, sender, state.2, first..ledger.recorded()));
    }
    let now = pending
        .first()
        .map_or_else(chat_domain::now, |p| p.0.created_at);
    let events = ledger.write(conn, now)?;
    Ok(pending
        .into_iter()
        .map(|(message, sender, position, range)| Stored {
            message,
            sender,
            position,
            events: events.get(range).map(<[_]>::to_vec).unwrap_or_default(),
        })
        .collect())
}

/// Orders the inserted rows as the sends they came from, checking each.
///
/// `RETURNING` has no order and cannot return the ordinal of the source
/// row, so rows are sorted by id: `ORDER BY k.n` makes ids follow request
/// order. That is checked, not assumed: a row that does not match its send
/// fails the batch (and rolls it back) rather than answering a sender with
/// someone else's message.
fn pair_inserted(new: &[&SendRequest], mut rows: Vec<Message>) -> QueryResult<Vec<Message>> {
    if rows.len() != new.len() {
        return Err(PersistenceError::other(format!(
            "batch insert returned {} rows for {} sends",
            rows.len(),
            new.len()
        )));
    }
    rows.sort_by_key(|m| m.id);
    for (i, (m, r)) in rows.iter().zip(new).enumerate() {
        let matches = m.conversation_id == r.conversation
            && m.sender_id == r.sender
            && m.client_id.as_deref() == r.client_id.as_ref().map(ClientId::as_str)
            && m.content == r.content.as_str();
        if !matches {
            return Err(PersistenceError::other(format!(
                "batch insert row {} (message {}) does not match its send",
                i, m.id.0
            )));
        }
    }
    Ok(rows)
}

/// One statement for every conversation of the batch: unread counters,
/// last message and activity time.
fn update_conversations(
    pg: &mut PgConnection,
    convs: &HashMap<ConversationId, Conversation>,
    stored: &[Message],
    now: chrono::NaiveDateTime,
) -> QueryResult<()> {
    let mut per_conv: HashMap<ConversationId, (i64, i64, i64)> = HashMap::new();
    for m in stored {
        let Some(c) = convs.get(&m.conversation_id) else {
            continue;
        };
        let entry = per_conv.entry(c.id).or_insert((0, 0, 0));
        // A message from the low participant is unread for the high one.
        if m.sender_id == c.user_low {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
        entry.2 = entry.2.max(m.id.0);
    }
    if per_conv.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut low = Vec::new();
    let mut high = Vec::new();
    let mut last = Vec::new();
    for (id, (l, h, m)) in per_conv {
        ids.push(id.0);
        low.push(l);
        high.push(h);
        last.push(m);
    }
    diesel::sql_query(
        "UPDATE conversations AS c SET \
           unread_for_low = c.unread_for_low + v.low, \
           unread_for_high = c.unread_for_high + v.high, \
           message_count = c.message_count + v.low + v.high, \
           last_message_id = v.last, updated_at = $5 \
         FROM unnest($1, $2, $3, $4) AS v(id, low, high, last) \
         WHERE c.id = v.id",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<BigInt>, _>(low)
    .bind::<Array<BigInt>, _>(high)
    .bind::<Array<BigInt>, _>(last)
    .bind::<Timestamp, _>(now)
    .execute(pg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::MessageId;

    fn request(conversation: i64, sender: i64, text: &str, key: Option<&str>) -> SendRequest {
        SendRequest {
            conversation: ConversationId(conversation),
            sender: UserId(sender),
            content: MessageContent::parse(text).expect("content"),
            client_id: key.map(|k| ClientId::parse(k).expect("client id")),
        }
    }

    fn row(id: i64, r: &SendRequest) -> Message {
        Message {
            id: MessageId(id),
            conversation_id: r.conversation,
            sender_id: r.sender,
            content: r.content.as_str().to_owned(),
            client_id: r.client_id.as_ref().map(|c| c.as_str().to_owned()),
            created_at: chat_domain::now(),
            read_at: None,
            delivered_at: None,
            reactions: Vec::new(),
        }
    }

    #[test]
    fn inserted_rows_are_paired_by_id_order() {
        let (a, b) = (request(1, 10, "a", Some("ka")), request(2, 20, "b", None));
        let paired = pair_inserted(&[&a, &b], vec![row(8, &b), row(7, &a)]).expect("paired");
        assert_eq!(paired.iter().map(|m| m.id.0).collect::<Vec<_>>(), [7, 8]);
    }

    #[test]
    fn a_row_that_is_not_its_send_fails_the_batch() {
        let (a, b) = (
            request(1, 10, "a", Some("ka")),
            request(1, 10, "b", Some("kb")),
        );
        // Ids allocated against request order: each row would go to the other sender.
        assert!(pair_inserted(&[&a, &b], vec![row(8, &a), row(7, &b)]).is_err());
        // Same keys, other content.
        let c = request(1, 10, "c", Some("ka"));
        assert!(pair_inserted(&[&a], vec![row(7, &c)]).is_err());
        // Too few or too many rows.
        assert!(pair_inserted(&[&a, &b], vec![row(7, &a)]).is_err());
        assert!(pair_inserted(&[&a], vec![row(7, &a), row(8, &b)]).is_err());
    }
}
