//! The message writer: sends from every socket and request of a node go
//! through a few queues, and on PostgreSQL the sends waiting in one queue
//! at the same moment are stored in one transaction (one lock query, one
//! multi-row insert, one counter update, one commit), so the commit cost is
//! shared instead of paid per message. A conversation always goes through
//! the same queue, whose writer stores one batch after the other: sends of
//! one conversation queued in some order are stored in that order, so a
//! socket may queue its next send before the previous one is stored. A
//! writer takes whatever is queued when it is free, so an idle system adds
//! no delay.
//!
//! SQLite (one connection, single node) stores each send on its own.

use crate::db::{Database, DbConnection};
use crate::error::{Constraint, PersistenceError, QueryResult};
use crate::events::{Ledger, StreamState, UserEvent};
use crate::messages::{self, SendOutcome, Stored};
use crate::prepared::prepared;
use crate::rows::{ConversationRow, MessageRow, to_naive};
use chat_domain::{
    AttachmentId, ClientId, Conversation, ConversationId, Message, MessageContent, MessageId,
    SendDenied, UserId,
};
use diesel::PgConnection;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamp};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
    /// Uploads to send with it (stored in a transaction of its own, with
    /// the links to them).
    pub attachments: Vec<AttachmentId>,
}

type Reply = oneshot::Sender<QueryResult<SendOutcome>>;
type Job = (SendRequest, Reply);

/// Handle to the writer tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct MessageWriter {
    db: Database,
    /// One per writer task; empty on SQLite.
    queues: Arc<[mpsc::Sender<Job>]>,
    /// Set when webhooks are configured: each stored message gets its
    /// webhook event in its transaction, due this long after it.
    webhook_delay: Option<Duration>,
    stored: Arc<AtomicU64>,
}

/// A send the writer has taken; [`Submitted::outcome`] waits for it.
#[derive(Debug)]
pub struct Submitted(Taken);

#[derive(Debug)]
enum Taken {
    /// In a writer's queue, behind the sends queued before it.
    Queued(oneshot::Receiver<QueryResult<SendOutcome>>),
    /// Stored on its own when awaited (SQLite, or a send with files).
    Alone(MessageWriter, SendRequest),
}

impl Submitted {
    /// Stores the send (or finds its original) and answers once committed.
    pub async fn outcome(self) -> QueryResult<SendOutcome> {
        match self.0 {
            Taken::Queued(answer) => answer
                .await
                .map_err(|_| PersistenceError::other("message writer dropped a send"))?,
            Taken::Alone(writer, request) => writer.send_alone(request).await,
        }
    }
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
    /// sends (PostgreSQL); SQLite needs none. With `webhook_delay`, every
    /// stored message records its webhook event. Call inside a tokio runtime.
    pub fn start(
        db: Database,
        writers: usize,
        max_batch: usize,
        webhook_delay: Option<Duration>,
    ) -> Self {
        let stored = Arc::new(AtomicU64::new(0));
        if db.is_sqlite() {
            return Self {
                db,
                queues: Arc::new([]),
                webhook_delay,
                stored,
            };
        }
        let max_batch = max_batch.max(1);
        let queues = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job>(max_batch * 4);
                tokio::spawn(run_writer(
                    db.clone(),
                    rx,
                    max_batch,
                    webhook_delay,
                    stored.clone(),
                ));
                tx
            })
            .collect();
        Self {
            db,
            queues,
            webhook_delay,
            stored,
        }
    }

    /// Messages stored through this writer since start (new rows only,
    /// not retries found by `client_id`).
    pub fn stored_total(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// The queue that stores a send to `conversation`, if one does. A send
    /// with files is rare and needs its uploads locked with it: a
    /// transaction of its own, as on SQLite.
    fn queue_of(
        &self,
        conversation: ConversationId,
        with_files: bool,
    ) -> Option<&mpsc::Sender<Job>> {
        if with_files || self.queues.is_empty() {
            return None;
        }
        let n = i64::try_from(self.queues.len()).ok()?;
        let shard = usize::try_from(conversation.0.rem_euclid(n)).ok()?;
        self.queues.get(shard)
    }

    /// Whether a send to `conversation` goes through a queue, so that a
    /// send submitted after it, in the same conversation, is stored after
    /// it without waiting for its outcome.
    pub fn queues(&self, conversation: ConversationId, with_files: bool) -> bool {
        self.queue_of(conversation, with_files).is_some()
    }

    /// Takes a send: queued now (waiting for room in the queue, which is
    /// bounded), stored when [`Submitted::outcome`] is awaited or, when
    /// queued, whether or not anyone awaits it.
    pub async fn submit(&self, request: SendRequest) -> QueryResult<Submitted> {
        let Some(queue) = self.queue_of(request.conversation, !request.attachments.is_empty())
        else {
            return Ok(Submitted(Taken::Alone(self.clone(), request)));
        };
        let (reply, answer) = oneshot::channel();
        queue
            .send((request, reply))
            .await
            .map_err(|_| PersistenceError::other("message writer stopped"))?;
        Ok(Submitted(Taken::Queued(answer)))
    }

    /// Stores a send (or finds its original) and answers once committed.
    pub async fn send(&self, request: SendRequest) -> QueryResult<SendOutcome> {
        self.submit(request).await?.outcome().await
    }

    async fn send_alone(&self, request: SendRequest) -> QueryResult<SendOutcome> {
        let (delay, stored) = (self.webhook_delay, self.stored.clone());
        // Counted inside the blocking task, which runs to its end even
        // when this future is dropped.
        self.db
            .run(move |c| {
                let outcome = send_one(c, &request, delay);
                count_stored(&stored, &outcome);
                outcome
            })
            .await
    }
}

/// Stores one send in a transaction of its own.
fn send_one(
    conn: &mut DbConnection,
    r: &SendRequest,
    webhook_delay: Option<Duration>,
) -> QueryResult<SendOutcome> {
    messages::send_notifying(
        conn,
        r.conversation,
        r.sender,
        &r.content,
        r.client_id.as_ref(),
        &r.attachments,
        webhook_delay,
    )
}

async fn run_writer(
    db: Database,
    mut queue: mpsc::Receiver<Job>,
    max_batch: usize,
    webhook_delay: Option<Duration>,
    stored: Arc<AtomicU64>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        // Waits for one send, then takes what else is queued.
        if queue.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let (requests, replies): (Vec<SendRequest>, Vec<Reply>) = batch.drain(..).unzip();
        let outcomes = db
            .run(move |c| store_batch(c, &requests, webhook_delay))
            .await;
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
    webhook_delay: Option<Duration>,
) -> QueryResult<Vec<QueryResult<SendOutcome>>> {
    match store_batch_notifying(conn, requests, webhook_delay) {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        // Another writer stored the same client_id at the same moment.
        Err(PersistenceError::Conflict(Constraint::MessageClientId)) => Ok(requests
            .iter()
            .map(|r| send_one(conn, r, webhook_delay))
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
    store_batch_notifying(conn, requests, None)
}

/// [`store_batch_atomic`], with the webhook events of the stored messages
/// in the same transaction when `webhook_delay` is set.
fn store_batch_notifying(
    conn: &mut DbConnection,
    requests: &[SendRequest],
    webhook_delay: Option<Duration>,
) -> QueryResult<Vec<SendOutcome>> {
    let DbConnection::Pg(pg) = conn else {
        return Err(PersistenceError::other("batched sends need PostgreSQL"));
    };
    let mut ids: Vec<i64> = requests.iter().map(|r| r.conversation.0).collect();
    ids.sort_unstable();
    ids.dedup();
    begin_locked(pg, &ids)?;
    let stored = store_batch_pg(conn, requests, &ids, webhook_delay);
    let DbConnection::Pg(pg) = conn else {
        return Err(PersistenceError::other("batched sends need PostgreSQL"));
    };
    match stored {
        Ok(outcomes) => {
            AnsiTransactionManager::commit_transaction(pg)?;
            Ok(outcomes)
        }
        Err(e) => {
            // The cause is what the caller needs; a failed rollback leaves
            // the connection broken, which the pool notices.
            let _ = AnsiTransactionManager::rollback_transaction(pg);
            Err(e)
        }
    }
}

/// Opens the batch's transaction and locks its conversations, in id order
/// (no deadlock between writers) and before any message id is taken, so
/// the ids of a conversation follow commit order: one round trip for both.
/// The ids are integers formatted here, never text from a client.
fn begin_locked(pg: &mut PgConnection, ids: &[i64]) -> QueryResult<()> {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!(
        "BEGIN; SELECT 1 FROM conversations WHERE id IN ({}) ORDER BY id FOR NO KEY UPDATE",
        if list.is_empty() { "NULL" } else { &list }
    );
    if let Err(e) = AnsiTransactionManager::begin_transaction_sql(pg, &sql) {
        // BEGIN may have run before the lock failed: leave no transaction
        // open on a pooled connection.
        let _ = pg.batch_execute("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
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
    ids: &[i64],
    webhook_delay: Option<Duration>,
) -> QueryResult<Vec<SendOutcome>> {
    let DbConnection::Pg(pg) = conn else {
        return Err(PersistenceError::other("batched sends need PostgreSQL"));
    };
    let (convs, mut fresh_ids) = load_locked(pg, ids, requests.len())?;

    // Earlier sends with the same keys: one index probe per exact
    // (conversation, sender, client_id), whatever the history size.
    let keyed: Vec<&SendRequest> = requests.iter().filter(|r| r.client_id.is_some()).collect();
    let mut originals: HashMap<(ConversationId, UserId, String), Message> = HashMap::new();
    if !keyed.is_empty() {
        let found: Vec<MessageRow> = prepared(
            diesel::sql_query(concat!(
                "SELECT m.id, m.conversation_id, m.sender_id, m.content, m.client_id, \
                    m.created_at, m.read_at, ",
                crate::rows::m_delivered_at!(),
                ", m.reactions, m.attachments \
             FROM messages m \
             JOIN unnest($1, $2, $3) AS k(conversation_id, sender_id, client_id) \
               ON m.conversation_id = k.conversation_id AND m.sender_id = k.sender_id \
              AND m.client_id = k.client_id"
            ))
            .bind::<Array<BigInt>, _>(keyed.iter().map(|r| r.conversation.0).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(keyed.iter().map(|r| r.sender.0).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                keyed
                    .iter()
                    .filter_map(|r| r.client_id.as_ref().map(|c| c.as_str().to_owned()))
                    .collect::<Vec<_>>(),
            ),
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

    // The messages as they will be stored: ids taken in request order, so
    // a sender's messages are numbered in the order they were sent.
    let created_at = chat_domain::now();
    let mut stored: Vec<Message> = Vec::new();
    for (r, _) in requests
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Insert))
    {
        let id = fresh_ids
            .next()
            .ok_or_else(|| PersistenceError::other("fewer message ids than sends"))?;
        stored.push(Message {
            id: MessageId(id),
            conversation_id: r.conversation,
            sender_id: r.sender,
            content: r.content.as_str().to_owned(),
            client_id: r.client_id.as_ref().map(|c| c.as_str().to_owned()),
            created_at,
            read_at: None,
            delivered_at: None,
            reactions: Vec::new(),
            attachments: Vec::new(),
        });
    }
    let (pending, added, ledger) = record_stream_events(conn, &convs, stored)?;
    let (changed, events) = ledger.into_writes();
    let DbConnection::Pg(pg) = conn else {
        return Err(PersistenceError::other("batched sends need PostgreSQL"));
    };
    let vectors = pending
        .iter()
        .map(|(s, _)| {
            let m = &s.message;
            let c = convs.get(&m.conversation_id).ok_or_else(|| {
                PersistenceError::other("a batch message without its conversation")
            })?;
            Ok(crate::search_terms::vector(
                m.content.as_str(),
                [c.user_low, c.user_high],
            ))
        })
        .collect::<QueryResult<Vec<String>>>()?;
    write_batch(
        pg,
        &pending,
        &vectors,
        &added,
        &changed,
        &events,
        to_naive(created_at),
    )?;
    if let Some(delay) = webhook_delay {
        // One more statement, only when webhooks are configured.
        let webhook_events: Vec<_> = pending
            .iter()
            .filter_map(|(s, _)| {
                Some(messages::webhook_event(
                    convs.get(&s.message.conversation_id)?,
                    &s.message,
                ))
            })
            .collect();
        crate::outbox::enqueue(conn, &webhook_events, delay)?;
    }
    let stored = pending.into_iter().map(|(mut s, range)| {
        s.events = events.get(range).map(<[_]>::to_vec).unwrap_or_default();
        s
    });

    let mut inserted = stored;
    let mut by_index: Vec<Option<Message>> = vec![None; requests.len()];
    let mut outcomes = Vec::with_capacity(requests.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let outcome = match plan {
            Plan::Done(o) => o,
            Plan::Insert => {
                let s = inserted
                    .next()
                    .ok_or_else(|| PersistenceError::other("fewer stored messages than sends"))?;
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

/// A stored message and the range of the ledger's events that are its own.
type Pending = (Stored, Range<usize>);

/// A locked conversation with its connection's status and, on every row,
/// the message ids the batch may use.
#[derive(QueryableByName)]
struct LockedConversation {
    #[diesel(embed)]
    conversation: ConversationRow,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Array<BigInt>)]
    fresh_ids: Vec<i64>,
}

/// Loads the locked conversations and takes `wanted` message ids from the
/// messages' sequence, ascending, in the same round trip. The ids are taken
/// after the conversations' locks, so they follow commit order; ids a batch
/// does not use are gaps, as after any rollback.
fn load_locked(
    pg: &mut PgConnection,
    ids: &[i64],
    wanted: usize,
) -> QueryResult<(
    HashMap<ConversationId, Conversation>,
    std::vec::IntoIter<i64>,
)> {
    let rows: Vec<LockedConversation> = prepared(
        diesel::sql_query(
            "WITH fresh AS MATERIALIZED ( \
           SELECT coalesce(array_agg(v ORDER BY v), '{}') AS fresh_ids \
           FROM (SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS v \
                 FROM generate_series(1, $2)) s) \
         SELECT c.id, c.connection_id, c.user_low, c.user_high, c.last_message_id, \
                c.unread_for_low, c.unread_for_high, c.created_at, c.updated_at, \
                c.message_count, k.status, fresh.fresh_ids \
         FROM conversations c JOIN connections k ON k.id = c.connection_id CROSS JOIN fresh \
         WHERE c.id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(ids)
        .bind::<BigInt, _>(i64::try_from(wanted).unwrap_or(i64::MAX)),
    )
    .load(pg)?;
    let fresh = rows
        .first()
        .map(|r| r.fresh_ids.clone())
        .unwrap_or_default();
    let convs = rows
        .into_iter()
        .map(|r| r.conversation.into_conversation(&r.status))
        .map(|c| (c.id, c))
        .collect();
    Ok((convs, fresh.into_iter()))
}

/// Records the batch's messages in their participants' streams, in id
/// order, under the users' row locks (taken after the conversations').
/// Nothing is written yet: [`write_batch`] stores it all. Each message
/// comes with the range of the ledger's events that are its own.
fn record_stream_events(
    conn: &mut DbConnection,
    convs: &HashMap<ConversationId, Conversation>,
    stored: Vec<Message>,
) -> QueryResult<(Vec<Pending>, Vec<Added>, Ledger)> {
    let users: Vec<UserId> = stored
        .iter()
        .filter_map(|m| convs.get(&m.conversation_id))
        .flat_map(|c| [c.user_low, c.user_high])
        .collect();
    let mut ledger = Ledger::lock(conn, &users)?;
    // Running (low unread, high unread, message count, newest message)
    // per conversation.
    let mut running: HashMap<ConversationId, (i64, i64, i64, Option<i64>)> = convs
        .iter()
        .map(|(id, c)| {
            let state = (c.unread_for_low, c.unread_for_high, c.message_count, None);
            (*id, state)
        })
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
        state.3 = state.3.max(Some(m.id.0));
        let first = ledger.recorded();
        let sender = ledger
            .record_message(c, (state.0, state.1), &m)
            .ok_or(PersistenceError::NotFound)?;
        pending.push((
            Stored {
                message: m,
                sender,
                position: state.2,
                events: Vec::new(),
            },
            first..ledger.recorded(),
        ));
    }
    let added = running
        .into_iter()
        .filter_map(|(id, (low, high, _, last))| {
            let c = convs.get(&id)?;
            Some(Added {
                conversation: id,
                low: low - c.unread_for_low,
                high: high - c.unread_for_high,
                last: last?,
            })
        })
        .collect();
    Ok((pending, added, ledger))
}

/// What a batch adds to one conversation: unread messages for each
/// participant (its message count grows by both), and its newest message.
struct Added {
    conversation: ConversationId,
    low: i64,
    high: i64,
    last: i64,
}

/// One statement for the whole batch: the messages, every conversation's
/// counters, last message and activity time, the users' stream state and
/// the stream events. The values are computed here, so the statement joins
/// nothing; one round trip instead of four.
fn write_batch(
    pg: &mut PgConnection,
    pending: &[Pending],
    vectors: &[String],
    added: &[Added],
    changed: &[(UserId, StreamState)],
    events: &[UserEvent],
    now: chrono::NaiveDateTime,
) -> QueryResult<()> {
    let stored: Vec<&Message> = pending.iter().map(|(s, _)| &s.message).collect();
    if stored.is_empty() && changed.is_empty() && events.is_empty() {
        return Ok(());
    }
    prepared(diesel::sql_query(
        "WITH m AS ( \
           INSERT INTO messages (id, conversation_id, sender_id, content, client_id, created_at, \
                                 search_vector) \
           SELECT k.id, k.conversation_id, k.sender_id, k.content, k.client_id, $6, k.search::tsvector \
           FROM unnest($1, $2, $3, $4, $5, $18) \
             AS k(id, conversation_id, sender_id, content, client_id, search)), \
         c AS ( \
           UPDATE conversations AS c SET \
             unread_for_low = c.unread_for_low + v.low, \
             unread_for_high = c.unread_for_high + v.high, \
             message_count = c.message_count + v.low + v.high, \
             last_message_id = v.last, updated_at = $6 \
           FROM unnest($7, $8, $9, $10) AS v(id, low, high, last) WHERE c.id = v.id), \
         u AS ( \
           UPDATE users AS u SET event_seq = v.seq, total_unread = v.total, \
             unread_conversations = v.convs \
           FROM unnest($11, $12, $13, $14) AS v(id, seq, total, convs) WHERE u.id = v.id) \
         INSERT INTO user_events (user_id, seq, payload, created_at) \
         SELECT v.user_id, v.seq, v.payload, $6 FROM unnest($15, $16, $17) AS v(user_id, seq, payload)",
    )
    .bind::<Array<BigInt>, _>(stored.iter().map(|m| m.id.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(
        stored
            .iter()
            .map(|m| m.conversation_id.0)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(stored.iter().map(|m| m.sender_id.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        stored
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        stored
            .iter()
            .map(|m| m.client_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind::<Timestamp, _>(now)
    .bind::<Array<BigInt>, _>(added.iter().map(|a| a.conversation.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(added.iter().map(|a| a.low).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(added.iter().map(|a| a.high).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(added.iter().map(|a| a.last).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(changed.iter().map(|(u, _)| u.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(changed.iter().map(|(_, s)| s.seq).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(changed.iter().map(|(_, s)| s.total_unread).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(
        changed
            .iter()
            .map(|(_, s)| s.unread_conversations)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(events.iter().map(|e| e.user.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(events.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(vectors)
    ).execute(pg)?;
    Ok(())
}
