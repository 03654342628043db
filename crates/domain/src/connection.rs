//! Connections between users and their status state machine.
//!
//! ```text
//! pending ──accept──▶ accepted ──remove──▶ removed
//!    │ └───remove──▶ removed
//!    └─────reject──▶ rejected
//! rejected / removed: either side may send a new request (a new connection)
//! ```

use crate::ids::{ConnectionId, ConversationId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Status of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// Requested, waiting for the addressee.
    Pending,
    /// Accepted: the two may chat.
    Accepted,
    /// Declined by the addressee.
    Rejected,
    /// Withdrawn, declined or ended by either side.
    Removed,
}

impl ConnectionStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [ConnectionStatus; 4] =
        [Self::Pending, Self::Accepted, Self::Rejected, Self::Removed];

    /// The wire and storage name.
    ///
    /// ```
    /// use chat_domain::ConnectionStatus;
    /// assert_eq!(ConnectionStatus::Accepted.as_str(), "accepted");
    /// assert_eq!(ConnectionStatus::parse("removed"), Some(ConnectionStatus::Removed));
    /// assert_eq!(ConnectionStatus::parse("Accepted"), None);
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Removed => "removed",
        }
    }

    /// Parses the wire and storage name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether this status blocks a new request between the same pair.
    ///
    /// ```
    /// use chat_domain::ConnectionStatus::*;
    /// assert!(Pending.is_open() && Accepted.is_open());
    /// assert!(!Rejected.is_open() && !Removed.is_open());
    /// ```
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Accepted)
    }
}

/// Why a connection operation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// A user asked to connect to themself.
    #[error("You cannot send a connection request to yourself.")]
    SelfRequest,
    /// A pending or accepted connection already exists between the pair.
    #[error("A pending or accepted connection already exists between these users.")]
    AlreadyConnected,
    /// The caller is not one of the two users.
    #[error("Connection not found.")]
    NotParticipant,
    /// Only the addressee may accept or reject.
    #[error("Only the addressee can accept or reject a connection request.")]
    NotAddressee,
    /// Accept or reject on a connection that is not pending.
    #[error("This connection request is not pending.")]
    NotPending,
    /// Remove on a connection that is already rejected or removed.
    #[error("This connection is already rejected or removed.")]
    AlreadyClosed,
}

/// A connection as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Id.
    pub id: ConnectionId,
    /// Who sent the request.
    pub requester_id: UserId,
    /// Who received it.
    pub addressee_id: UserId,
    /// Current status.
    pub status: ConnectionStatus,
    /// The pair's conversation, once accepted.
    pub conversation_id: Option<ConversationId>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

/// Checks a new request from `requester` to `addressee`, given whether an
/// open (pending or accepted) connection already links them.
///
/// ```
/// use chat_domain::{connection::check_request, ConnectionError, UserId};
/// assert_eq!(check_request(UserId(1), UserId(1), false), Err(ConnectionError::SelfRequest));
/// assert_eq!(check_request(UserId(1), UserId(2), true), Err(ConnectionError::AlreadyConnected));
/// assert!(check_request(UserId(1), UserId(2), false).is_ok());
/// ```
pub fn check_request(
    requester: UserId,
    addressee: UserId,
    open_exists: bool,
) -> Result<(), ConnectionError> {
    if requester == addressee {
        return Err(ConnectionError::SelfRequest);
    }
    if open_exists {
        return Err(ConnectionError::AlreadyConnected);
    }
    Ok(())
}

impl Connection {
    /// Whether `user` is one of the two sides.
    pub fn involves(&self, user: UserId) -> bool {
        self.requester_id == user || self.addressee_id == user
    }

    /// The side that is not `user`.
    pub fn other_side(&self, user: UserId) -> UserId {
        if self.requester_id == user {
            self.addressee_id
        } else {
            self.requester_id
        }
    }

    /// The status after `actor` accepts. Only the addressee may, and only while pending.
    ///
    /// ```
    /// # use chat_domain::*;
    /// # let now = chat_domain::now();
    /// let c = Connection { id: ConnectionId(1), requester_id: UserId(1), addressee_id: UserId(2),
    ///     status: ConnectionStatus::Pending, conversation_id: None, created_at: now, updated_at: now };
    /// assert_eq!(c.accept(UserId(1)), Err(ConnectionError::NotAddressee));
    /// assert_eq!(c.accept(UserId(2)), Ok(ConnectionStatus::Accepted));
    /// ```
    pub fn accept(&self, actor: UserId) -> Result<ConnectionStatus, ConnectionError> {
        self.answer(actor).map(|()| ConnectionStatus::Accepted)
    }

    /// The status after `actor` rejects. Same rules as [`Connection::accept`].
    pub fn reject(&self, actor: UserId) -> Result<ConnectionStatus, ConnectionError> {
        self.answer(actor).map(|()| ConnectionStatus::Rejected)
    }

    /// The status after `actor` removes: either side, while pending or accepted.
    ///
    /// ```
    /// # use chat_domain::*;
    /// # let now = chat_domain::now();
    /// let mut c = Connection { id: ConnectionId(1), requester_id: UserId(1), addressee_id: UserId(2),
    ///     status: ConnectionStatus::Accepted, conversation_id: None, created_at: now, updated_at: now };
    /// assert_eq!(c.remove(UserId(1)), Ok(ConnectionStatus::Removed));
    /// c.status = ConnectionStatus::Removed;
    /// assert_eq!(c.remove(UserId(2)), Err(ConnectionError::AlreadyClosed));
    /// ```
    pub fn remove(&self, actor: UserId) -> Result<ConnectionStatus, ConnectionError> {
        if !self.involves(actor) {
            return Err(ConnectionError::NotParticipant);
        }
        if !self.status.is_open() {
            return Err(ConnectionError::AlreadyClosed);
        }
        Ok(ConnectionStatus::Removed)
    }

    /// The addressee check comes before the status check (API.md).
    fn answer(&self, actor: UserId) -> Result<(), ConnectionError> {
        if !self.involves(actor) {
            return Err(ConnectionError::NotParticipant);
        }
        if actor != self.addressee_id {
            return Err(ConnectionError::NotAddressee);
        }
        if self.status != ConnectionStatus::Pending {
            return Err(ConnectionError::NotPending);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStatus::*;

    fn conn(status: ConnectionStatus) -> Connection {
        let now = crate::now();
        Connection {
            id: ConnectionId(1),
            requester_id: UserId(1),
            addressee_id: UserId(2),
            status,
            conversation_id: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn only_pending_can_be_answered() {
        for s in [Accepted, Rejected, Removed] {
            assert_eq!(conn(s).accept(UserId(2)), Err(ConnectionError::NotPending));
            assert_eq!(conn(s).reject(UserId(2)), Err(ConnectionError::NotPending));
        }
        assert_eq!(conn(Pending).reject(UserId(2)), Ok(Rejected));
    }

    #[test]
    fn requester_check_comes_before_status_check() {
        assert_eq!(
            conn(Accepted).accept(UserId(1)),
            Err(ConnectionError::NotAddressee)
        );
        assert_eq!(
            conn(Rejected).reject(UserId(1)),
            Err(ConnectionError::NotAddressee)
        );
    }

    #[test]
    fn strangers_are_not_participants() {
        assert_eq!(
            conn(Pending).accept(UserId(3)),
            Err(ConnectionError::NotParticipant)
        );
        assert_eq!(
            conn(Pending).remove(UserId(3)),
            Err(ConnectionError::NotParticipant)
        );
    }

    #[test]
    fn either_side_removes_open_connections() {
        for s in [Pending, Accepted] {
            assert_eq!(conn(s).remove(UserId(1)), Ok(Removed));
            assert_eq!(conn(s).remove(UserId(2)), Ok(Removed));
        }
        for s in [Rejected, Removed] {
            assert_eq!(
                conn(s).remove(UserId(1)),
                Err(ConnectionError::AlreadyClosed)
            );
        }
    }

    #[test]
    fn status_round_trips() {
        for s in ConnectionStatus::ALL {
            assert_eq!(ConnectionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(ConnectionStatus::parse("bogus"), None);
    }

    #[test]
    fn other_side() {
        let c = conn(Pending);
        assert_eq!(c.other_side(UserId(1)), UserId(2));
        assert_eq!(c.other_side(UserId(2)), UserId(1));
    }
}
