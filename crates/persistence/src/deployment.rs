//! The deployment's identity: a random id kept in the database, so every
//! node on one database agrees on it and no two databases share it.

use crate::db::DbConnection;
use crate::error::{PersistenceError, QueryResult};
use crate::rows::to_naive;
use crate::schema::deployment;
use diesel::prelude::*;

/// The deployment id, made (from `fresh`) and stored by the first caller.
/// Nodes starting together agree: a second insert is refused by the
/// primary key, and the stored id is read again.
pub fn identity(conn: &mut DbConnection, fresh: &str) -> QueryResult<String> {
    if let Some(id) = stored(conn)? {
        return Ok(id);
    }
    let inserted = diesel::insert_into(deployment::table)
        .values((
            deployment::id.eq(1_i64),
            deployment::deployment_id.eq(fresh),
            deployment::created_at.eq(to_naive(chrono::Utc::now())),
        ))
        .execute(conn)
        .map_err(PersistenceError::from);
    match inserted {
        Ok(_) => Ok(fresh.to_owned()),
        Err(PersistenceError::Conflict(_)) => {
            stored(conn)?.ok_or_else(|| PersistenceError::other("deployment id vanished"))
        }
        Err(e) => Err(e),
    }
}

fn stored(conn: &mut DbConnection) -> QueryResult<Option<String>> {
    Ok(deployment::table
        .select(deployment::deployment_id)
        .filter(deployment::id.eq(1_i64))
        .first::<String>(conn)
        .optional()?)
}
