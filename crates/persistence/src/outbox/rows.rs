//! Rows of the webhook outbox as stored.

use crate::schema::webhook_outbox;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

/// A claimed row, as the dispatcher reads it.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_outbox)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub recipient_id: i64,
    pub subject_id: i64,
    pub attempts: i64,
    pub payload: Option<String>,
    pub created_at: NaiveDateTime,
}

/// A row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_outbox)]
pub(crate) struct NewOutboxRow<'a> {
    pub kind: &'a str,
    pub recipient_id: i64,
    pub subject_id: i64,
    pub due_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

/// An id from a raw claim query.
#[derive(Debug, QueryableByName)]
pub(crate) struct IdRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
}
