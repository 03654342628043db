//! The one error type of this crate. Every diesel and pool error is mapped
//! here, once; callers decide what a user sees.

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// What went wrong with a query, in the terms callers act on.
///
/// `Clone` is cheap and shares the cause: a failed batch answers each of its
/// sends with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistenceError {
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write.
    #[error("conflict on {0}")]
    Conflict(Constraint),
    /// The database cannot be reached (or the pool timed out).
    #[error("database unavailable")]
    Unavailable(#[source] Cause),
    /// Anything else; logged, never shown to clients.
    #[error("database error")]
    Other(#[source] Cause),
}

/// Result of every repository function.
pub type QueryResult<T> = Result<T, PersistenceError>;

impl PersistenceError {
    /// `Other` with a message of this crate as its cause.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(Cause::message(message))
    }

    /// `Other` caused by `source`, described by `context`.
    pub fn other_with(
        context: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::Other(Cause::new(Context {
            context: context.into(),
            source: source.into(),
        }))
    }

    /// `Unavailable` with a message of this crate as its cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(Cause::message(message))
    }

    /// Displays the error followed by its causes, `a: b: c`, for logs and
    /// exit messages that print one line.
    pub fn report(&self) -> Chain<'_> {
        Chain(Some(self))
    }

    /// Displays only the causes (empty when there are none), for a log
    /// field next to the error itself.
    pub fn sources(&self) -> Chain<'_> {
        Chain(StdError::source(self))
    }
}

/// The driver, pool or I/O error underneath. Behind an `Arc`, so cloning a
/// [`PersistenceError`] keeps the original instead of flattening it to text.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn StdError + Send + Sync>);

impl Cause {
    /// Wraps an error.
    pub fn new(e: impl StdError + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// A cause that is only a message.
    pub fn message(message: impl Into<String>) -> Self {
        let boxed: Box<dyn StdError + Send + Sync> = message.into().into();
        Self(Arc::from(boxed))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// A source error with what this crate was doing when it failed.
#[derive(Debug)]
struct Context {
    context: String,
    source: Box<dyn StdError + Send + Sync>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl StdError for Context {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

/// An error and its sources on one line, separated by `": "`.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(Option<&'a (dyn StdError + 'static)>);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut next = self.0;
        let mut first = true;
        while let Some(e) = next {
            if !first {
                f.write_str(": ")?;
            }
            write!(f, "{e}")?;
            first = false;
            next = e.source();
        }
        Ok(())
    }
}

/// The unique constraints callers tell apart, named once here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// `users_username_key_unique`: the username is taken (in any case).
    UsernameTaken,
    /// `connections_open_pair`: one pending or accepted connection per pair.
    ConnectionOpenPair,
    /// `messages_client_id`: one message per (conversation, sender, client_id).
    MessageClientId,
    /// The user already reacted to the message with that emoji.
    ReactionExists,
    /// Any other constraint: its name (PostgreSQL) or the driver message (SQLite).
    Other(String),
}

/// (PostgreSQL constraint name, SQLite's "UNIQUE constraint failed: …"
/// column list, constraint) for each constraint callers tell apart.
const KNOWN: [(&str, &str, Constraint); 4] = [
    (
        "users_username_key_unique",
        "users.username_key",
        Constraint::UsernameTaken,
    ),
    (
        "connections_open_pair",
        "connections.user_low, connections.user_high",
        Constraint::ConnectionOpenPair,
    ),
    (
        "messages_client_id",
        "messages.conversation_id, messages.sender_id, messages.client_id",
        Constraint::MessageClientId,
    ),
    (
        "reactions_unique",
        "reactions.message_id, reactions.user_id, reactions.emoji",
        Constraint::ReactionExists,
    ),
];

impl Constraint {
    /// PostgreSQL reports the constraint name; SQLite only a message that
    /// lists the columns.
    fn parse(info: &dyn DatabaseErrorInformation) -> Self {
        let known = match info.constraint_name() {
            Some(name) => KNOWN.iter().find(|(pg, _, _)| *pg == name),
            None => info
                .message()
                .strip_prefix("UNIQUE constraint failed: ")
                .and_then(|cols| KNOWN.iter().find(|(_, sqlite, _)| *sqlite == cols)),
        };
        match known {
            Some((_, _, c)) => c.clone(),
            None => Self::Other(
                info.constraint_name()
                    .unwrap_or_else(|| info.message())
                    .to_owned(),
            ),
        }
    }

    /// The name of the constraint.
    pub fn name(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => KNOWN
                .iter()
                .find(|(_, _, c)| c == known)
                .map_or("unknown", |(pg, _, _)| pg),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<DieselError> for PersistenceError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict(Constraint::parse(info.as_ref()))
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Self::Unavailable(Cause::new(e)),
            DieselError::DatabaseError(_, info) if is_busy(info.message()) => {
                Self::Unavailable(Cause::new(e))
            }
            _ => Self::Other(Cause::new(e)),
        }
    }
}

/// SQLite reports lock contention as a generic error.
fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

impl From<r2d2::Error> for PersistenceError {
    fn from(e: r2d2::Error) -> Self {
        Self::Unavailable(Cause::new(e))
    }
}

impl From<diesel::ConnectionError> for PersistenceError {
    fn from(e: diesel::ConnectionError) -> Self {
        Self::Unavailable(Cause::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_constraints_round_trip_their_names() {
        for (pg, _, c) in &KNOWN {
            assert_eq!(c.name(), *pg);
        }
        assert_eq!(Constraint::Other("x_unique".into()).name(), "x_unique");
    }

    #[test]
    fn report_joins_the_chain() {
        let e = PersistenceError::other_with("cannot create data", std::io::Error::other("denied"));
        assert_eq!(e.to_string(), "database error");
        assert_eq!(
            e.report().to_string(),
            "database error: cannot create data: denied"
        );
        assert_eq!(e.sources().to_string(), "cannot create data: denied");
        assert_eq!(PersistenceError::NotFound.sources().to_string(), "");
    }
}
