//! Storage of the chat service: one diesel code base over PostgreSQL
//! (production) and SQLite (the embedded default), chosen by URL scheme.
//!
//! Repositories are plain functions over a [`DbConnection`] that return
//! domain types; run them through [`Database::run`], which takes a pooled
//! connection on the blocking thread pool. Every error is a
//! [`PersistenceError`].

pub mod attachments;
pub mod connections;
pub mod conversations;
pub mod db;
pub mod delivery;
pub mod deployment;
pub mod error;
pub mod events;
pub mod messages;
pub mod outbox;
mod prepared;
pub mod reactions;
mod rows;
pub mod schema;
pub mod search;
mod search_terms;
pub mod tokens;
pub mod users;
pub mod writer;

pub use db::{Database, DatabaseUrl, DbConnection, PoolOptions};
pub use error::{Cause, Constraint, PersistenceError, QueryResult};
pub use writer::{MessageWriter, SendRequest, Submitted};
