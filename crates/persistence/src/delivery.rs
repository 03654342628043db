//! Delivery watermarks, moved for a batch of acks at once: a fixed number
//! of statements per batch, whatever its size (on PostgreSQL; SQLite, one
//! connection and one node, updates group by group).

use crate::db::DbConnection;
use crate::error::{PersistenceError, QueryResult};
use crate::prepared::prepared;
use crate::rows::{ConversationRow, to_naive};
use crate::schema::{connections, conversations, delivery_marks, messages};
use chat_domain::{Conversation, ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Timestamp};
use std::collections::{BTreeMap, HashMap};

/// `recipient` got the other participant's messages of `conversation` up
/// to `up_to` (any message of the conversation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Who acknowledges.
    pub recipient: UserId,
    /// Where.
    pub conversation: ConversationId,
    /// Up to which message.
    pub up_to: MessageId,
}

/// What an acknowledgement changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Messages that became delivered now (0: nothing changed).
    pub count: usize,
    /// The acknowledged message.
    pub up_to: MessageId,
    /// The time recorded on them.
    pub delivered_at: DateTime<Utc>,
}

/// What one ack of a batch did.
#[derive(Debug, Clone)]
pub enum AckOutcome {
    /// Messages became delivered: tell the conversation.
    Changed(Conversation, Delivered),
    /// Nothing changed (already delivered, none of the other user's, or
    /// another ack of the same batch, conversation and recipient reached
    /// further and stands for this one).
    Unchanged(Delivered),
    /// Not a participant, or not a message of the conversation.
    NotFound,
}

/// One (conversation, recipient) of a batch: its acks stand as the
/// highest of them.
struct Group {
    conversation: Conversation,
    recipient: UserId,
    watermark: i64,
    up_to: MessageId,
    /// The ack that reached `up_to` first (it reports the change).
    reporter: usize,
}

/// Moves the watermarks of `acks` forward and records each move with its
/// time (the delivery time of the messages it passes); one outcome per
/// ack, in order. Lock order as
/// everywhere: messages, then conversations (in id order). Runs inside the
/// caller's transaction (the outcome is stored with the events it causes).
pub fn mark_delivered_many(conn: &mut DbConnection, acks: &[Ack]) -> QueryResult<Vec<AckOutcome>> {
    let now = chat_domain::now();
    let nothing = |up_to| Delivered {
        count: 0,
        up_to,
        delivered_at: now,
    };
    let mut ids: Vec<i64> = acks.iter().map(|a| a.conversation.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(ConversationRow, String, i64, i64)> = conversations::table
        .inner_join(connections::table)
        .filter(conversations::id.eq_any(&ids))
        .select((
            ConversationRow::as_select(),
            connections::status,
            conversations::delivered_for_low,
            conversations::delivered_for_high,
        ))
        .load(conn)?;
    let convs: HashMap<i64, (Conversation, i64, i64)> = rows
        .into_iter()
        .map(|(row, status, low, high)| (row.id, (row.into_conversation(&status), low, high)))
        .collect();
    let wanted: Vec<i64> = acks.iter().map(|a| a.up_to.0).collect();
    let homes: HashMap<i64, i64> = messages::table
        .filter(messages::id.eq_any(&wanted))
        .select((messages::id, messages::conversation_id))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect();

    let mut outcomes: Vec<AckOutcome> = Vec::with_capacity(acks.len());
    let mut groups: BTreeMap<(i64, i64), Group> = BTreeMap::new();
    for (i, ack) in acks.iter().enumerate() {
        let valid = convs
            .get(&ack.conversation.0)
            .filter(|(c, _, _)| c.can_read(ack.recipient))
            .filter(|_| homes.get(&ack.up_to.0) == Some(&ack.conversation.0));
        let Some((conv, low, high)) = valid else {
            outcomes.push(AckOutcome::NotFound);
            continue;
        };
        outcomes.push(AckOutcome::Unchanged(nothing(ack.up_to)));
        let watermark = if ack.recipient == conv.user_low {
            *low
        } else {
            *high
        };
        let group = groups
            .entry((ack.conversation.0, ack.recipient.0))
            .or_insert_with(|| Group {
                conversation: conv.clone(),
                recipient: ack.recipient,
                watermark,
                up_to: ack.up_to,
                reporter: i,
            });
        if ack.up_to > group.up_to {
            group.up_to = ack.up_to;
            group.reporter = i;
        }
    }
    groups.retain(|_, g| g.up_to.0 > g.watermark);
    if groups.is_empty() {
        return Ok(outcomes);
    }

    let counts = mark_messages(conn, groups.values(), now)?;
    move_watermarks(conn, groups.values())?;
    for g in groups.values() {
        let sender = g.conversation.other_participant(g.recipient);
        let count = counts
            .get(&(g.conversation.id.0, sender.0))
            .copied()
            .unwrap_or(0);
        if count > 0 {
            outcomes[g.reporter] = AckOutcome::Changed(
                g.conversation.clone(),
                Delivered {
                    count,
                    ..nothing(g.up_to)
                },
            );
        }
    }
    Ok(outcomes)
}

/// Records each group's new watermark with the time (a delivery mark: the
/// messages it passes take their delivery time from it) and counts the
/// other participant's messages it passes that were not read; how many per
/// (conversation, sender). One row per group, whatever it covers.
fn mark_messages<'a>(
    conn: &mut DbConnection,
    groups: impl Iterator<Item = &'a Group>,
    now: DateTime<Utc>,
) -> QueryResult<HashMap<(i64, i64), usize>> {
    let (mut conv, mut sender, mut low, mut high) = (vec![], vec![], vec![], vec![]);
    for g in groups {
        conv.push(g.conversation.id.0);
        sender.push(g.conversation.other_participant(g.recipient).0);
        low.push(g.watermark);
        high.push(g.up_to.0);
    }
    let mut counts = HashMap::new();
    match conn {
        DbConnection::Pg(pg) => {
            #[derive(QueryableByName)]
            struct Passed {
                #[diesel(sql_type = BigInt)]
                conversation_id: i64,
                #[diesel(sql_type = BigInt)]
                sender_id: i64,
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let passed: Vec<Passed> = prepared(
                diesel::sql_query(
                    "WITH g AS (SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) \
                                  AS g(conv, sender, lo, hi)), \
                          k AS (INSERT INTO delivery_marks (conversation_id, sender_id, up_to, at) \
                                SELECT conv, sender, hi, $5 FROM g ON CONFLICT DO NOTHING) \
                     SELECT g.conv AS conversation_id, g.sender AS sender_id, \
                            (SELECT count(*) FROM messages m \
                             WHERE m.conversation_id = g.conv AND m.sender_id = g.sender \
                               AND m.id > g.lo AND m.id <= g.hi \
                               AND m.read_at IS NULL AND m.delivered_at IS NULL) AS n \
                     FROM g",
                )
                .bind::<Array<BigInt>, _>(&conv)
                .bind::<Array<BigInt>, _>(&sender)
                .bind::<Array<BigInt>, _>(&low)
                .bind::<Array<BigInt>, _>(&high)
                .bind::<Timestamp, _>(to_naive(now)),
            )
            .load(pg)?;
            for p in passed {
                let n = usize::try_from(p.n).map_err(|_| PersistenceError::other("bad count"))?;
                counts.insert((p.conversation_id, p.sender_id), n);
            }
        }
        DbConnection::Sqlite(lite) => {
            for i in 0..conv.len() {
                diesel::insert_into(delivery_marks::table)
                    .values((
                        delivery_marks::conversation_id.eq(conv[i]),
                        delivery_marks::sender_id.eq(sender[i]),
                        delivery_marks::up_to.eq(high[i]),
                        delivery_marks::at.eq(to_naive(now)),
                    ))
                    .on_conflict_do_nothing()
                    .execute(lite)?;
                let n: i64 = messages::table
                    .filter(messages::conversation_id.eq(conv[i]))
                    .filter(messages::sender_id.eq(sender[i]))
                    .filter(messages::id.gt(low[i]))
                    .filter(messages::id.le(high[i]))
                    .filter(messages::delivered_at.is_null())
                    .filter(messages::read_at.is_null())
                    .count()
                    .get_result(lite)?;
                let n = usize::try_from(n).map_err(|_| PersistenceError::other("bad count"))?;
                counts.insert((conv[i], sender[i]), n);
            }
        }
    }
    Ok(counts)
}

/// Raises each group's watermark (never lowers one), conversations locked
/// in id order first, as the message writer locks them.
fn move_watermarks<'a>(
    conn: &mut DbConnection,
    groups: impl Iterator<Item = &'a Group>,
) -> QueryResult<()> {
    // Per conversation: how far each participant's acks reached (0: none).
    let mut reach: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for g in groups {
        let entry = reach.entry(g.conversation.id.0).or_insert((0, 0));
        if g.recipient == g.conversation.user_low {
            entry.0 = entry.0.max(g.up_to.0);
        } else {
            entry.1 = entry.1.max(g.up_to.0);
        }
    }
    let ids: Vec<i64> = reach.keys().copied().collect();
    let low: Vec<i64> = reach.values().map(|r| r.0).collect();
    let high: Vec<i64> = reach.values().map(|r| r.1).collect();
    match conn {
        DbConnection::Pg(pg) => {
            conversations::table
                .filter(conversations::id.eq_any(&ids))
                .order(conversations::id)
                .select(conversations::id)
                .for_no_key_update()
                .load::<i64>(pg)?;
            prepared(
                diesel::sql_query(
                    "UPDATE conversations c SET \
                   delivered_for_low = GREATEST(c.delivered_for_low, g.lo), \
                   delivered_for_high = GREATEST(c.delivered_for_high, g.hi) \
                 FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS g(id, lo, hi) \
                 WHERE c.id = g.id",
                )
                .bind::<Array<BigInt>, _>(&ids)
                .bind::<Array<BigInt>, _>(&low)
                .bind::<Array<BigInt>, _>(&high),
            )
            .execute(pg)?;
        }
        DbConnection::Sqlite(_) => {
            for i in 0..ids.len() {
                let target = conversations::table.find(ids[i]);
                diesel::update(target.filter(conversations::delivered_for_low.lt(low[i])))
                    .set(conversations::delivered_for_low.eq(low[i]))
                    .execute(conn)?;
                diesel::update(target.filter(conversations::delivered_for_high.lt(high[i])))
                    .set(conversations::delivered_for_high.eq(high[i]))
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}
