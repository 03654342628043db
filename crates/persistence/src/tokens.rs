//! The refresh-token blacklist (SimpleJWT's `token_blacklist` app, by `jti`).

use crate::db::DbConnection;
use crate::error::{PersistenceError, QueryResult};
use crate::rows::to_naive;
use crate::schema::token_blacklist;
use chat_domain::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

/// What [`blacklist`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blacklisted {
    /// Recorded now.
    Now,
    /// It was already (the primary key refused it, or a row was there).
    Already,
}

/// Records the token `jti` of `user`, kept until `expires_at` (after which
/// the token is refused by its expiry anyway).
pub fn blacklist(
    conn: &mut DbConnection,
    jti: &str,
    user: UserId,
    expires_at: DateTime<Utc>,
) -> QueryResult<Blacklisted> {
    let inserted = diesel::insert_into(token_blacklist::table)
        .values((
            token_blacklist::jti.eq(jti),
            token_blacklist::user_id.eq(user.0),
            token_blacklist::expires_at.eq(to_naive(expires_at)),
            token_blacklist::blacklisted_at.eq(to_naive(Utc::now())),
        ))
        .execute(conn)
        .map_err(PersistenceError::from);
    match inserted {
        Ok(_) => Ok(Blacklisted::Now),
        Err(PersistenceError::Conflict(_)) => Ok(Blacklisted::Already),
        Err(e) => Err(e),
    }
}

/// Whether the token `jti` is blacklisted.
pub fn is_blacklisted(conn: &mut DbConnection, jti: &str) -> QueryResult<bool> {
    let n: i64 = token_blacklist::table
        .filter(token_blacklist::jti.eq(jti))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Forgets the tokens that expired before `now`; returns how many.
pub fn prune_expired(conn: &mut DbConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    Ok(
        diesel::delete(
            token_blacklist::table.filter(token_blacklist::expires_at.lt(to_naive(now))),
        )
        .execute(conn)?,
    )
}
