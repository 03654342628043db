//! The user stream's durable log: per-user sequence numbers, the unread
//! counters every event carries, replay and pruning.
//!
//! An event is recorded through a [`Ledger`] inside the transaction of the
//! change it describes, so it exists if and only if that change committed.
//! The ledger locks the users' rows before it numbers anything, and the lock
//! is held to commit: seq N+1 of a user can only be taken once N has
//! committed, so a reader never sees N+1 while N is still in flight. Lock
//! order, in every transaction: connections, messages, conversations, then
//! users, each in id order (no deadlock between writers).

use crate::db::DbConnection;
use crate::error::QueryResult;
use crate::prepared::prepared;
use crate::schema::{user_events, users};
use chat_domain::{Conversation, Message, ServerEvent, StreamCounters, User, UserId};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};
use std::collections::BTreeMap;

/// Where a user's stream stands, and the counters its events carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// The number of the user's latest durable event (0 when none).
    pub seq: i64,
    /// The sum of the user's unread counts.
    pub total_unread: i64,
    /// How many of the user's conversations have unread messages.
    pub unread_conversations: i64,
}

impl StreamState {
    /// The counters an event of a conversation with `unread_count` unread
    /// messages carries.
    pub fn counters(&self, seq: i64, unread_count: i64) -> StreamCounters {
        StreamCounters {
            seq,
            unread_count,
            total_unread: self.total_unread,
            unread_conversations: self.unread_conversations,
        }
    }
}

/// A committed event, to publish on its user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    /// Whose stream.
    pub user: UserId,
    /// Its number in that stream.
    pub seq: i64,
    /// The JSON the stream sends, `seq` and counters included.
    pub payload: String,
}

type ProfileColumns = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<NaiveDateTime>,
    bool,
    (i64, i64, i64),
);

#[derive(Debug)]
struct Entry {
    profile: User,
    state: StreamState,
    changed: bool,
}

/// Events and counter changes being recorded in one transaction.
#[derive(Debug)]
pub struct Ledger {
    users: BTreeMap<UserId, Entry>,
    events: Vec<UserEvent>,
}

impl Ledger {
    /// Locks the rows of `ids` (in id order) and reads their profiles and
    /// stream state. Users that do not exist are left out.
    pub fn lock(conn: &mut DbConnection, ids: &[UserId]) -> QueryResult<Self> {
        let mut raw: Vec<i64> = ids.iter().map(|u| u.0).collect();
        raw.sort_unstable();
        raw.dedup();
        let query = users::table
            .filter(users::id.eq_any(raw))
            .order(users::id)
            .select((
                users::id,
                users::username,
                users::first_name,
                users::last_name,
                users::avatar,
                users::last_seen,
                users::share_presence,
                (
                    users::event_seq,
                    users::total_unread,
                    users::unread_conversations,
                ),
            ));
        let rows: Vec<ProfileColumns> = match conn {
            DbConnection::Pg(pg) => query.for_no_key_update().load(pg)?,
            // One writer at a time: the transaction holds SQLite's write lock.
            DbConnection::Sqlite(lite) => query.load(lite)?,
        };
        let users = rows
            .into_iter()
            .map(
                |(id, username, first_name, last_name, avatar, seen, share, (seq, t, c))| {
                    let profile = User {
                        id: UserId(id),
                        username,
                        first_name,
                        last_name,
                        avatar,
                        last_seen: seen.map(|s| s.and_utc()),
                        share_presence: share,
                    };
                    let state = StreamState {
                        seq,
                        total_unread: t,
                        unread_conversations: c,
                    };
                    (
                        UserId(id),
                        Entry {
                            profile,
                            state,
                            changed: false,
                        },
                    )
                },
            )
            .collect();
        Ok(Self {
            users,
            events: Vec::new(),
        })
    }

    /// The user's profile as it is now (events carry the current name).
    pub fn profile(&self, user: UserId) -> Option<&User> {
        self.users.get(&user).map(|e| &e.profile)
    }

    /// The user's stream state, with what this ledger recorded so far.
    pub fn state(&self, user: UserId) -> StreamState {
        self.users.get(&user).map(|e| e.state).unwrap_or_default()
    }

    /// `n` more unread messages for `user` in a conversation that had
    /// `before` unread.
    pub fn unread_added(&mut self, user: UserId, before: i64, n: i64) {
        if n <= 0 {
            return;
        }
        if let Some(e) = self.users.get_mut(&user) {
            e.state.total_unread += n;
            if before <= 0 {
                e.state.unread_conversations += 1;
            }
            e.changed = true;
        }
    }

    /// `n` fewer unread messages for `user` in a conversation that had
    /// `before` unread.
    pub fn unread_removed(&mut self, user: UserId, before: i64, n: i64) {
        if n <= 0 {
            return;
        }
        if let Some(e) = self.users.get_mut(&user) {
            e.state.total_unread = (e.state.total_unread - n).max(0);
            if before > 0 && before - n <= 0 {
                e.state.unread_conversations = (e.state.unread_conversations - 1).max(0);
            }
            e.changed = true;
        }
    }

    /// Numbers the user's next event and keeps its JSON, which `render`
    /// builds from the seq and the user's counters. `None` for a user the
    /// ledger did not lock.
    pub fn record(
        &mut self,
        user: UserId,
        render: impl FnOnce(i64, StreamState) -> String,
    ) -> Option<i64> {
        let e = self.users.get_mut(&user)?;
        e.state.seq += 1;
        e.changed = true;
        let seq = e.state.seq;
        let payload = render(seq, e.state);
        self.events.push(UserEvent { user, seq, payload });
        Some(seq)
    }

    /// How many events this ledger has recorded so far.
    pub fn recorded(&self) -> usize {
        self.events.len()
    }

    /// Records a stored message in both participants' streams: one more
    /// unread for the recipient, then `chat_message` with each one's
    /// counters. `unread` is the conversation's (low, high) unread counts
    /// after the message. Returns the sender's current profile.
    pub fn record_message(
        &mut self,
        conversation: &Conversation,
        unread: (i64, i64),
        m: &Message,
    ) -> Option<User> {
        let recipient = conversation.other_participant(m.sender_id);
        let unread_of = |u: UserId| {
            if u == conversation.user_low {
                unread.0
            } else {
                unread.1
            }
        };
        self.unread_added(recipient, unread_of(recipient) - 1, 1);
        let sender = self.profile(m.sender_id)?.clone();
        let event = ServerEvent::chat_message(m, &sender);
        for user in [m.sender_id, recipient] {
            self.record(user, |seq, s| {
                event
                    .clone()
                    .on_stream(s.counters(seq, unread_of(user)))
                    .to_json()
            });
        }
        Some(sender)
    }

    /// The users whose state changed, with that state, and the events:
    /// what [`Ledger::write`] stores, for a caller that folds it into a
    /// statement of its own.
    pub(crate) fn into_writes(self) -> (Vec<(UserId, StreamState)>, Vec<UserEvent>) {
        let changed = self
            .users
            .iter()
            .filter(|(_, e)| e.changed)
            .map(|(id, e)| (*id, e.state))
            .collect();
        (changed, self.events)
    }

    /// Writes the counters and the events; returns the events to publish
    /// once the transaction has committed.
    pub fn write(self, conn: &mut DbConnection, now: DateTime<Utc>) -> QueryResult<Vec<UserEvent>> {
        let now = now.naive_utc();
        let (changed, events) = self.into_writes();
        match conn {
            DbConnection::Pg(pg) => write_pg(pg, &changed, &events, now)?,
            DbConnection::Sqlite(_) => {
                for (id, s) in &changed {
                    diesel::update(users::table.find(id.0))
                        .set((
                            users::event_seq.eq(s.seq),
                            users::total_unread.eq(s.total_unread),
                            users::unread_conversations.eq(s.unread_conversations),
                        ))
                        .execute(conn)?;
                }
                for e in &events {
                    diesel::insert_into(user_events::table)
                        .values((
                            user_events::user_id.eq(e.user.0),
                            user_events::seq.eq(e.seq),
                            user_events::payload.eq(&e.payload),
                            user_events::created_at.eq(now),
                        ))
                        .execute(conn)?;
                }
            }
        }
        Ok(events)
    }
}

/// Two statements for any number of users and events.
fn write_pg(
    pg: &mut diesel::PgConnection,
    changed: &[(UserId, StreamState)],
    events: &[UserEvent],
    now: NaiveDateTime,
) -> QueryResult<()> {
    if !changed.is_empty() {
        prepared(
            diesel::sql_query(
                "UPDATE users AS u SET event_seq = v.seq, total_unread = v.total, \
               unread_conversations = v.convs \
             FROM unnest($1, $2, $3, $4) AS v(id, seq, total, convs) WHERE u.id = v.id",
            )
            .bind::<Array<BigInt>, _>(changed.iter().map(|(u, _)| u.0).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(changed.iter().map(|(_, s)| s.seq).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(
                changed
                    .iter()
                    .map(|(_, s)| s.total_unread)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(
                changed
                    .iter()
                    .map(|(_, s)| s.unread_conversations)
                    .collect::<Vec<_>>(),
            ),
        )
        .execute(pg)?;
    }
    if !events.is_empty() {
        prepared(diesel::sql_query(
            "INSERT INTO user_events (user_id, seq, payload, created_at) \
             SELECT v.user_id, v.seq, v.payload, $4 FROM unnest($1, $2, $3) AS v(user_id, seq, payload)",
        )
        .bind::<Array<BigInt>, _>(events.iter().map(|e| e.user.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(events.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
        .bind::<Timestamp, _>(now)
        ).execute(pg)?;
    }
    Ok(())
}

/// The user's stream state now.
pub fn stream_state(conn: &mut DbConnection, user: UserId) -> QueryResult<StreamState> {
    let (seq, total_unread, unread_conversations) = users::table
        .find(user.0)
        .select((
            users::event_seq,
            users::total_unread,
            users::unread_conversations,
        ))
        .first::<(i64, i64, i64)>(conn)?;
    Ok(StreamState {
        seq,
        total_unread,
        unread_conversations,
    })
}

/// The user's events with `after < seq <= upto`, in order, at most `limit`.
pub fn replay(
    conn: &mut DbConnection,
    user: UserId,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<(i64, String)>> {
    Ok(user_events::table
        .filter(user_events::user_id.eq(user.0))
        .filter(user_events::seq.gt(after))
        .filter(user_events::seq.le(upto))
        .order(user_events::seq)
        .limit(limit)
        .select((user_events::seq, user_events::payload))
        .load(conn)?)
}

/// Deletes events that are neither among their user's last `keep_events`
/// nor younger than `keep_since`; returns how many.
pub fn prune(
    conn: &mut DbConnection,
    keep_events: i64,
    keep_since: DateTime<Utc>,
) -> QueryResult<usize> {
    let cutoff = keep_since.naive_utc();
    let deleted = match conn {
        DbConnection::Pg(pg) => diesel::sql_query(
            "DELETE FROM user_events e USING users u \
             WHERE e.user_id = u.id AND e.seq <= u.event_seq - $1 AND e.created_at < $2",
        )
        .bind::<BigInt, _>(keep_events)
        .bind::<Timestamp, _>(cutoff)
        .execute(pg)?,
        DbConnection::Sqlite(lite) => diesel::sql_query(
            "DELETE FROM user_events WHERE created_at < ? AND seq <= \
             (SELECT u.event_seq FROM users u WHERE u.id = user_events.user_id) - ?",
        )
        .bind::<Timestamp, _>(cutoff)
        .bind::<BigInt, _>(keep_events)
        .execute(lite)?,
    };
    Ok(deleted)
}
