//! Queries on connections, and the transactions that change their status.

use crate::db::DbConnection;
use crate::error::{Constraint, PersistenceError, QueryResult};
use crate::rows::{ConnectionRow, NewConnectionRow, columns, to_naive};
use crate::schema::{connections, conversations, users};
use chat_domain::connection::check_request;
use chat_domain::{
    Connection, ConnectionError, ConnectionId, ConnectionStatus, Conversation, UserId,
};
use diesel::Connection as _;
use diesel::prelude::*;

/// Outcome of an operation whose rules may refuse it.
pub type RuleResult<T> = Result<T, ConnectionError>;

/// Requests a connection. `Ok(Err(..))` is a refusal by the rules;
/// `Err(NotFound)` means the addressee does not exist.
pub fn request(
    conn: &mut DbConnection,
    requester: UserId,
    addressee: UserId,
) -> QueryResult<RuleResult<Connection>> {
    if requester == addressee {
        return Ok(Err(ConnectionError::SelfRequest));
    }
    conn.transaction(|conn| {
        let exists: i64 = users::table
            .filter(users::id.eq(addressee.0))
            .count()
            .get_result(conn)?;
        if exists == 0 {
            return Err(PersistenceError::NotFound);
        }
        let (low, high) = Conversation::pair(requester, addressee);
        let open: i64 = connections::table
            .filter(connections::user_low.eq(low.0))
            .filter(connections::user_high.eq(high.0))
            .filter(connections::status.eq_any(["pending", "accepted"]))
            .count()
            .get_result(conn)?;
        if let Err(e) = check_request(requester, addressee, open > 0) {
            return Ok(Err(e));
        }
        let now = to_naive(chat_domain::now());
        let inserted = diesel::insert_into(connections::table)
            .values(NewConnectionRow {
                requester_id: requester.0,
                addressee_id: addressee.0,
                user_low: low.0,
                user_high: high.0,
                status: ConnectionStatus::Pending.as_str(),
                created_at: now,
                updated_at: now,
            })
            .returning(columns::<ConnectionRow>())
            .get_result::<ConnectionRow>(conn);
        Ok(Ok(inserted?.into_connection()))
    })
    .or_else(|e| match e {
        // Two requests raced; the index let one through. Mapped after the
        // (sub)transaction rolled back: inside a caller's transaction the
        // failed insert leaves only the savepoint to roll back.
        PersistenceError::Conflict(Constraint::ConnectionOpenPair) => {
            Ok(Err(ConnectionError::AlreadyConnected))
        }
        other => Err(other),
    })
}

/// The connection with this id, if `viewer` is part of it (`NotFound` otherwise).
pub fn find_for(
    conn: &mut DbConnection,
    id: ConnectionId,
    viewer: UserId,
) -> QueryResult<Connection> {
    let row: ConnectionRow = connections::table
        .find(id.0)
        .select(ConnectionRow::as_select())
        .first(conn)?;
    let c = row.into_connection();
    if c.involves(viewer) {
        Ok(c)
    } else {
        Err(PersistenceError::NotFound)
    }
}

/// One page of `user`'s connections, newest first, and the total count.
pub fn list_for(
    conn: &mut DbConnection,
    user: UserId,
    status: Option<ConnectionStatus>,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<Connection>)> {
    let filtered = || {
        let mut q = connections::table
            .filter(
                connections::requester_id
                    .eq(user.0)
                    .or(connections::addressee_id.eq(user.0)),
            )
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(connections::status.eq(s.as_str()));
        }
        q
    };
    let count: i64 = filtered().count().get_result(conn)?;
    let rows: Vec<ConnectionRow> = filtered()
        .order(connections::id.desc())
        .offset(offset)
        .limit(limit)
        .select(ConnectionRow::as_select())
        .load(conn)?;
    Ok((
        count,
        rows.into_iter()
            .map(ConnectionRow::into_connection)
            .collect(),
    ))
}

/// Accepts a pending connection, creating the pair's conversation in the
/// same transaction, or bringing back the one they had before.
pub fn accept(
    conn: &mut DbConnection,
    id: ConnectionId,
    actor: UserId,
) -> QueryResult<RuleResult<Connection>> {
    conn.transaction(|conn| {
        let current = match transition(conn, id, actor, Connection::accept, &["pending"])? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let now = to_naive(chat_domain::now());
        let (low, high) = Conversation::pair(current.requester_id, current.addressee_id);
        let existing: Option<i64> = conversations::table
            .filter(conversations::user_low.eq(low.0))
            .filter(conversations::user_high.eq(high.0))
            .select(conversations::id)
            .first(conn)
            .optional()?;
        let conversation_id = match existing {
            Some(cid) => {
                diesel::update(conversations::table.find(cid))
                    .set(conversations::connection_id.eq(id.0))
                    .execute(conn)?;
                cid
            }
            None => diesel::insert_into(conversations::table)
                .values((
                    conversations::connection_id.eq(id.0),
                    conversations::user_low.eq(low.0),
                    conversations::user_high.eq(high.0),
                    conversations::unread_for_low.eq(0),
                    conversations::unread_for_high.eq(0),
                    conversations::created_at.eq(now),
                    conversations::updated_at.eq(now),
                ))
                .returning(conversations::id)
                .get_result(conn)?,
        };
        let row: ConnectionRow = diesel::update(connections::table.find(id.0))
            .set(connections::conversation_id.eq(conversation_id))
            .returning(columns::<ConnectionRow>())
            .get_result(conn)?;
        Ok(Ok(row.into_connection()))
    })
}

/// Rejects a pending connection (addressee only).
pub fn reject(
    conn: &mut DbConnection,
    id: ConnectionId,
    actor: UserId,
) -> QueryResult<RuleResult<Connection>> {
    conn.transaction(
        |conn| match transition(conn, id, actor, Connection::reject, &["pending"])? {
            Ok(_) => find_for(conn, id, actor).map(Ok),
            Err(e) => Ok(Err(e)),
        },
    )
}

/// Removes a pending or accepted connection (either side).
pub fn remove(
    conn: &mut DbConnection,
    id: ConnectionId,
    actor: UserId,
) -> QueryResult<RuleResult<Connection>> {
    conn.transaction(|conn| {
        match transition(
            conn,
            id,
            actor,
            Connection::remove,
            &["pending", "accepted"],
        )? {
            Ok(_) => find_for(conn, id, actor).map(Ok),
            Err(e) => Ok(Err(e)),
        }
    })
}

/// Applies a domain rule (which returns the new status) and changes the
/// status if it is still one of `from`. Returns the connection as it was.
/// The loser of a race gets what the rule would have said against the
/// winner's status: not pending (answers), already closed (removal).
fn transition(
    conn: &mut DbConnection,
    id: ConnectionId,
    actor: UserId,
    rule: fn(&Connection, UserId) -> Result<ConnectionStatus, ConnectionError>,
    from: &[&str],
) -> QueryResult<RuleResult<Connection>> {
    let current = find_for(conn, id, actor)?;
    let to = match rule(&current, actor) {
        Ok(to) => to,
        Err(e) => return Ok(Err(e)),
    };
    let now = to_naive(chat_domain::now());
    if !set_status_if(conn, id, from, to, now)? {
        let lost = if to == ConnectionStatus::Removed {
            ConnectionError::AlreadyClosed
        } else {
            ConnectionError::NotPending
        };
        return Ok(Err(lost));
    }
    Ok(Ok(current))
}

/// Conditional update: of two racing changes, the second sees the first's
/// status and changes nothing (PostgreSQL re-checks the row after the lock).
fn set_status_if(
    conn: &mut DbConnection,
    id: ConnectionId,
    from: &[&str],
    to: ConnectionStatus,
    now: chrono::NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        connections::table
            .filter(connections::id.eq(id.0))
            .filter(connections::status.eq_any(from.to_vec())),
    )
    .set((
        connections::status.eq(to.as_str()),
        connections::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// `(user, partner)` for every accepted connection of any of `users`, in
/// one statement (the presence announcer's batches).
pub fn partners_of_many(
    conn: &mut DbConnection,
    users: &[UserId],
) -> QueryResult<Vec<(UserId, UserId)>> {
    let raw: Vec<i64> = users.iter().map(|u| u.0).collect();
    let rows: Vec<(i64, i64)> = connections::table
        .filter(connections::status.eq(ConnectionStatus::Accepted.as_str()))
        .filter(
            connections::requester_id
                .eq_any(&raw)
                .or(connections::addressee_id.eq_any(&raw)),
        )
        .select((connections::requester_id, connections::addressee_id))
        .load(conn)?;
    let mut pairs = Vec::with_capacity(rows.len() * 2);
    for (r, a) in rows {
        if raw.contains(&r) {
            pairs.push((UserId(r), UserId(a)));
        }
        if raw.contains(&a) {
            pairs.push((UserId(a), UserId(r)));
        }
    }
    Ok(pairs)
}

/// The users `user` has an accepted connection with.
pub fn partners(conn: &mut DbConnection, user: UserId) -> QueryResult<Vec<UserId>> {
    Ok(partners_of_many(conn, &[user])?
        .into_iter()
        .map(|(_, partner)| partner)
        .collect())
}
