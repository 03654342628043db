//! The one error type of this crate. Every diesel and pool error is mapped
//! here, once; callers decide what a user sees.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong with a query, in the terms callers act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistenceError {
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; carries the constraint name.
    #[error("conflict on {0}")]
    Conflict(String),
    /// The database cannot be reached (or the pool timed out).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else; logged, never shown to clients.
    #[error("database error: {0}")]
    Other(String),
}

/// Result of every repository function.
pub type QueryResult<T> = Result<T, PersistenceError>;

impl From<DieselError> for PersistenceError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => Self::Conflict(
                info.constraint_name()
                    .unwrap_or_else(|| info.message())
                    .to_owned(),
            ),
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Self::Unavailable(info.message().to_owned()),
            DieselError::DatabaseError(_, info) if is_busy(info.message()) => {
                Self::Unavailable(info.message().to_owned())
            }
            other => Self::Other(other.to_string()),
        }
    }
}

/// SQLite reports lock contention as a generic error.
fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

impl From<r2d2::Error> for PersistenceError {
    fn from(e: r2d2::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<diesel::ConnectionError> for PersistenceError {
    fn from(e: diesel::ConnectionError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
