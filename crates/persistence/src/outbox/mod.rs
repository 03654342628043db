//! The webhook outbox: events for offline recipients, written in the
//! transaction of the change they announce, claimed and finished by the
//! dispatchers of every node.
//!
//! A claim is a lease (`claimed_until`) under a token: each due row is
//! taken by one node (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite has a
//! single writer), a node that dies loses its claims when the lease lapses,
//! and only the claim that holds the token may finish the row. Only the
//! oldest pending event of a recipient can be claimed, so a recipient's
//! events go out in order even while one of them is being retried.

mod rows;

use crate::db::DbConnection;
use crate::error::QueryResult;
use crate::rows::to_naive;
use crate::schema::webhook_outbox;
use chat_domain::{ConnectionId, MessageId, UserId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};
use rows::{IdRow, NewOutboxRow, OutboxRow};
use std::time::Duration;

/// What an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new message the recipient has not read.
    MessageCreated(MessageId),
    /// A connection request still pending.
    ConnectionRequested(ConnectionId),
}

impl EventKind {
    /// The `type` of the webhook payload.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::MessageCreated(_) => "message.created",
            Self::ConnectionRequested(_) => "connection.requested",
        }
    }

    fn subject(self) -> i64 {
        match self {
            Self::MessageCreated(m) => m.0,
            Self::ConnectionRequested(c) => c.0,
        }
    }

    fn from_row(kind: &str, subject: i64) -> Option<Self> {
        match kind {
            "message.created" => Some(Self::MessageCreated(MessageId(subject))),
            "connection.requested" => Some(Self::ConnectionRequested(ConnectionId(subject))),
            _ => None,
        }
    }

    /// The `webhook-id`: one per event, the same on every attempt.
    pub fn webhook_id(self) -> String {
        match self {
            Self::MessageCreated(m) => format!("msg_{}", m.0),
            Self::ConnectionRequested(c) => format!("conn_{}", c.0),
        }
    }
}

/// An event to record with its change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// Who is told.
    pub recipient: UserId,
    /// When the change was stored; the event is due `delay` later.
    pub at: DateTime<Utc>,
}

/// Records events in the caller's transaction, due `delay` after their
/// change. One statement on PostgreSQL, whatever their number.
pub fn enqueue(conn: &mut DbConnection, events: &[NewEvent], delay: Duration) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let due = |e: &NewEvent| to_naive(e.at.checked_add_signed(delay).unwrap_or(e.at));
    match conn {
        DbConnection::Pg(pg) => {
            diesel::sql_query(
                "INSERT INTO webhook_outbox (kind, recipient_id, subject_id, due_at, created_at) \
                 SELECT v.kind, v.recipient_id, v.subject_id, v.due_at, v.created_at \
                 FROM unnest($1, $2, $3, $4, $5) \
                   AS v(kind, recipient_id, subject_id, due_at, created_at)",
            )
            .bind::<Array<Text>, _>(
                events
                    .iter()
                    .map(|e| e.kind.type_name())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(events.iter().map(|e| e.recipient.0).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(events.iter().map(|e| e.kind.subject()).collect::<Vec<_>>())
            .bind::<Array<Timestamp>, _>(events.iter().map(due).collect::<Vec<_>>())
            .bind::<Array<Timestamp>, _>(events.iter().map(|e| to_naive(e.at)).collect::<Vec<_>>())
            .execute(pg)?;
        }
        DbConnection::Sqlite(_) => {
            for e in events {
                diesel::insert_into(webhook_outbox::table)
                    .values(NewOutboxRow {
                        kind: e.kind.type_name(),
                        recipient_id: e.recipient.0,
                        subject_id: e.kind.subject(),
                        due_at: due(e),
                        created_at: to_naive(e.at),
                    })
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}

/// A claimed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    /// The row.
    pub id: i64,
    /// What it announces.
    pub kind: EventKind,
    /// Who is told.
    pub recipient: UserId,
    /// Attempts made before this claim.
    pub attempts: i64,
    /// The body of the first attempt, sent again on every retry.
    pub payload: Option<String>,
    /// When the change was stored.
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due events for `lease` under `token` (unique per
/// claim): the oldest pending event of each recipient whose claim, if
/// any, has lapsed.
pub fn claim(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
    token: &str,
) -> QueryResult<Vec<ClaimedEvent>> {
    let now = to_naive(now);
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    conn.transaction(|conn| {
        let ids: Vec<IdRow> = match conn {
            DbConnection::Pg(pg) => diesel::sql_query(
                "SELECT o.id FROM webhook_outbox o \
                 WHERE o.state = 'pending' AND o.due_at <= $1 \
                   AND (o.claimed_until IS NULL OR o.claimed_until < $1) \
                   AND NOT EXISTS (SELECT 1 FROM webhook_outbox p \
                     WHERE p.recipient_id = o.recipient_id AND p.state = 'pending' AND p.id < o.id) \
                 ORDER BY o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED",
            )
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(limit)
            .load(pg)?,
            // One writer at a time: the transaction holds SQLite's write lock.
            DbConnection::Sqlite(lite) => diesel::sql_query(
                "SELECT o.id FROM webhook_outbox o \
                 WHERE o.state = 'pending' AND o.due_at <= ?1 \
                   AND (o.claimed_until IS NULL OR o.claimed_until < ?1) \
                   AND NOT EXISTS (SELECT 1 FROM webhook_outbox p \
                     WHERE p.recipient_id = o.recipient_id AND p.state = 'pending' AND p.id < o.id) \
                 ORDER BY o.id LIMIT ?2",
            )
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(limit)
            .load(lite)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.into_iter().map(|r| r.id).collect();
        diesel::update(webhook_outbox::table.filter(webhook_outbox::id.eq_any(&ids)))
            .set((
                webhook_outbox::claimed_until.eq(until),
                webhook_outbox::claim_token.eq(token),
            ))
            .execute(conn)?;
        let rows: Vec<OutboxRow> = webhook_outbox::table
            .filter(webhook_outbox::id.eq_any(&ids))
            .order(webhook_outbox::id)
            .select(OutboxRow::as_select())
            .load(conn)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(ClaimedEvent {
                    id: r.id,
                    kind: EventKind::from_row(&r.kind, r.subject_id)?,
                    recipient: UserId(r.recipient_id),
                    attempts: r.attempts,
                    payload: r.payload,
                    created_at: r.created_at.and_utc(),
                })
            })
            .collect())
    })
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The receiver answered 2xx.
    Sent,
    /// The condition no longer holds (read, online, no longer pending).
    Skipped(String),
    /// Failed; try again at this time.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// What went wrong.
        error: String,
    },
    /// Failed for the last time.
    Dead(String),
}

/// Records how an attempt of a claimed event ended, with the body it sent
/// (kept for the retries). False when the claim was lost (the lease lapsed
/// and another node claimed the event): nothing is changed then.
pub fn finish(
    conn: &mut DbConnection,
    event: &ClaimedEvent,
    token: &str,
    payload: Option<&str>,
    outcome: &Finish,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let now = to_naive(now);
    let (state, due, error) = match outcome {
        Finish::Sent => ("sent", None, None),
        Finish::Skipped(why) => ("skipped", None, Some(why.as_str())),
        Finish::Retry { at, error } => ("pending", Some(to_naive(*at)), Some(error.as_str())),
        Finish::Dead(error) => ("dead", None, Some(error.as_str())),
    };
    let attempted = i64::from(!matches!(outcome, Finish::Skipped(_)));
    let target = webhook_outbox::table
        .filter(webhook_outbox::id.eq(event.id))
        .filter(webhook_outbox::claim_token.eq(token));
    let finished = (state != "pending").then_some(now);
    let changed = diesel::update(target)
        .set((
            webhook_outbox::state.eq(state),
            // A finished row is never due again; its due time is kept as when it ended.
            webhook_outbox::due_at.eq(due.unwrap_or(now)),
            webhook_outbox::attempts.eq(webhook_outbox::attempts + attempted),
            webhook_outbox::payload.eq(payload.or(event.payload.as_deref())),
            webhook_outbox::last_error.eq(error),
            webhook_outbox::claimed_until.eq(None::<chrono::NaiveDateTime>),
            webhook_outbox::claim_token.eq(None::<String>),
            webhook_outbox::finished_at.eq(finished),
        ))
        .execute(conn)?;
    Ok(changed > 0)
}

/// When the oldest pending event was stored (`None` when none is pending).
pub fn oldest_pending(conn: &mut DbConnection) -> QueryResult<Option<DateTime<Utc>>> {
    let oldest: Option<chrono::NaiveDateTime> = webhook_outbox::table
        .filter(webhook_outbox::state.eq("pending"))
        .select(diesel::dsl::min(webhook_outbox::created_at))
        .first(conn)?;
    Ok(oldest.map(|t| t.and_utc()))
}

/// Deletes events sent or skipped before `before` (dead ones stay for
/// inspection); returns how many.
pub fn prune(conn: &mut DbConnection, before: DateTime<Utc>) -> QueryResult<usize> {
    Ok(diesel::delete(
        webhook_outbox::table
            .filter(webhook_outbox::state.eq_any(["sent", "skipped"]))
            .filter(webhook_outbox::finished_at.lt(to_naive(before))),
    )
    .execute(conn)?)
}
