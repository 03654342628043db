//! Adding and removing reactions, with the message's summary kept in step.

use crate::db::DbConnection;
use crate::error::{Constraint, PersistenceError, QueryResult};
use crate::rows::to_naive;
use crate::schema::{messages, reactions};
use chat_domain::reaction::{Emoji, MAX_REACTIONS_PER_USER, Reaction, summarize};
use chat_domain::{MessageId, UserId};
use diesel::Connection as _;
use diesel::prelude::*;

/// What a reaction request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reacted {
    /// Added or removed now; the message's reactions after it.
    Changed(Vec<Reaction>),
    /// Already so (added twice, or removed when absent); nothing written.
    Unchanged,
    /// The user has the most distinct reactions allowed on this message.
    TooMany,
}

/// Adds (`add`) or removes `user`'s `emoji` on the message. The message row
/// is locked first, so changes to one message's summary follow each other;
/// the unique constraint, not a prior read, makes a repeated add a no-op.
/// The caller has checked that the user may react here.
pub fn react(
    conn: &mut DbConnection,
    message: MessageId,
    user: UserId,
    emoji: &Emoji,
    add: bool,
) -> QueryResult<Reacted> {
    conn.transaction(|conn| {
        lock_message(conn, message)?;
        let changed = if add {
            let mine: i64 = reactions::table
                .filter(reactions::message_id.eq(message.0))
                .filter(reactions::user_id.eq(user.0))
                .count()
                .get_result(conn)?;
            let inserted = conn.transaction(|conn| {
                diesel::insert_into(reactions::table)
                    .values((
                        reactions::message_id.eq(message.0),
                        reactions::user_id.eq(user.0),
                        reactions::emoji.eq(emoji.as_str()),
                        reactions::created_at.eq(to_naive(chat_domain::now())),
                    ))
                    .execute(conn)
                    .map_err(PersistenceError::from)
            });
            match inserted {
                Ok(_) if mine as usize >= MAX_REACTIONS_PER_USER => {
                    // Undone with the transaction: the 21st distinct one.
                    return Err(PersistenceError::Conflict(Constraint::Other(
                        "max_reactions".into(),
                    )));
                }
                Ok(_) => true,
                Err(PersistenceError::Conflict(Constraint::ReactionExists)) => false,
                Err(e) => return Err(e),
            }
        } else {
            diesel::delete(
                reactions::table
                    .filter(reactions::message_id.eq(message.0))
                    .filter(reactions::user_id.eq(user.0))
                    .filter(reactions::emoji.eq(emoji.as_str())),
            )
            .execute(conn)?
                > 0
        };
        if !changed {
            return Ok(Reacted::Unchanged);
        }
        let pairs: Vec<(String, i64)> = reactions::table
            .filter(reactions::message_id.eq(message.0))
            .order(reactions::id)
            .select((reactions::emoji, reactions::user_id))
            .load(conn)?;
        let summary = summarize(pairs.iter().map(|(e, u)| (e.as_str(), UserId(*u))));
        let json = serde_json::to_string(&summary)
            .map_err(|e| PersistenceError::other_with("reaction summary", e))?;
        diesel::update(messages::table.find(message.0))
            .set(messages::reactions.eq(json))
            .execute(conn)?;
        Ok(Reacted::Changed(summary))
    })
    .or_else(|e| match e {
        PersistenceError::Conflict(Constraint::Other(name)) if name == "max_reactions" => {
            Ok(Reacted::TooMany)
        }
        other => Err(other),
    })
}

/// Locks the message's row (PostgreSQL; SQLite has one writer at a time).
fn lock_message(conn: &mut DbConnection, message: MessageId) -> QueryResult<()> {
    let q = messages::table.find(message.0).select(messages::id);
    let found: Option<i64> = match conn {
        DbConnection::Pg(pg) => q.for_no_key_update().first(pg).optional()?,
        DbConnection::Sqlite(lite) => q.first(lite).optional()?,
    };
    found.map(drop).ok_or(PersistenceError::NotFound)
}
