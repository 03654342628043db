//! Queries on conversations.

use crate::db::DbConnection;
use crate::error::{PersistenceError, QueryResult};
use crate::rows::ConversationRow;
use crate::schema::{connections, conversations};
use chat_domain::{Conversation, ConversationId, UserId};
use diesel::prelude::*;

/// The conversation with this id, whoever asks.
pub fn find(conn: &mut DbConnection, id: ConversationId) -> QueryResult<Conversation> {
    let (row, status): (ConversationRow, String) = conversations::table
        .inner_join(connections::table)
        .filter(conversations::id.eq(id.0))
        .select((ConversationRow::as_select(), connections::status))
        .first(conn)?;
    Ok(row.into_conversation(&status))
}

/// The conversation with this id if `viewer` takes part (`NotFound` otherwise,
/// so strangers cannot tell it exists).
pub fn find_for(
    conn: &mut DbConnection,
    id: ConversationId,
    viewer: UserId,
) -> QueryResult<Conversation> {
    let c = find(conn, id)?;
    if c.can_read(viewer) {
        Ok(c)
    } else {
        Err(PersistenceError::NotFound)
    }
}

/// One page of `user`'s conversations, most recently active first, and the total.
/// Two statements whatever the page size.
pub fn list_for(
    conn: &mut DbConnection,
    user: UserId,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<Conversation>)> {
    let mine = conversations::user_low
        .eq(user.0)
        .or(conversations::user_high.eq(user.0));
    let count: i64 = conversations::table.filter(mine).count().get_result(conn)?;
    let rows: Vec<(ConversationRow, String)> = conversations::table
        .inner_join(connections::table)
        .filter(mine)
        .select((ConversationRow::as_select(), connections::status))
        .order((conversations::updated_at.desc(), conversations::id.desc()))
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok((
        count,
        rows.into_iter()
            .map(|(r, s)| r.into_conversation(&s))
            .collect(),
    ))
}
