//! Conversations and who may read or send in them.

use crate::connection::ConnectionStatus;
use crate::ids::{ConnectionId, ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};

/// A pair's conversation. A pair has at most one, ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// The connection that (last) opened it.
    pub connection_id: ConnectionId,
    /// The status of that connection; sending needs `accepted`.
    pub connection_status: ConnectionStatus,
    /// The participant with the smaller id.
    pub user_low: UserId,
    /// The participant with the larger id.
    pub user_high: UserId,
    /// The newest message, if any.
    pub last_message_id: Option<MessageId>,
    /// Unread messages from `user_high` to `user_low`.
    pub unread_for_low: i64,
    /// Unread messages from `user_low` to `user_high`.
    pub unread_for_high: i64,
    /// Messages in the conversation.
    pub message_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last message, or creation time.
    pub updated_at: DateTime<Utc>,
}

/// Why a send is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendDenied {
    /// The user is not a participant (shown as "not found").
    #[error("Conversation not found.")]
    NotParticipant,
    /// The connection is no longer accepted.
    #[error("You can only send messages in an accepted connection.")]
    NotConnected,
}

impl Conversation {
    /// Orders a pair the way conversations store it.
    ///
    /// ```
    /// use chat_domain::{Conversation, UserId};
    /// assert_eq!(Conversation::pair(UserId(9), UserId(2)), (UserId(2), UserId(9)));
    /// ```
    pub fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
        if a <= b { (a, b) } else { (b, a) }
    }

    /// Whether `user` may read the conversation: participants only,
    /// whatever the connection's status (history stays readable).
    pub fn can_read(&self, user: UserId) -> bool {
        self.user_low == user || self.user_high == user
    }

    /// Whether `user` may send now: a participant of an accepted connection.
    ///
    /// ```
    /// # use chat_domain::*;
    /// # let now = chat_domain::now();
    /// let mut c = Conversation { id: ConversationId(1), connection_id: ConnectionId(1),
    ///     connection_status: ConnectionStatus::Accepted, user_low: UserId(1), user_high: UserId(2),
    ///     last_message_id: None, unread_for_low: 0, unread_for_high: 0, message_count: 0,
    ///     created_at: now, updated_at: now };
    /// assert!(c.check_send(UserId(1)).is_ok());
    /// assert_eq!(c.check_send(UserId(3)), Err(SendDenied::NotParticipant));
    /// c.connection_status = ConnectionStatus::Removed;
    /// assert_eq!(c.check_send(UserId(2)), Err(SendDenied::NotConnected));
    /// ```
    pub fn check_send(&self, user: UserId) -> Result<(), SendDenied> {
        if !self.can_read(user) {
            return Err(SendDenied::NotParticipant);
        }
        if self.connection_status != ConnectionStatus::Accepted {
            return Err(SendDenied::NotConnected);
        }
        Ok(())
    }

    /// Whether the connection currently allows sending (`can_send` on the wire).
    pub fn can_send(&self) -> bool {
        self.connection_status == ConnectionStatus::Accepted
    }

    /// The participant who is not `user`.
    pub fn other_participant(&self, user: UserId) -> UserId {
        if self.user_low == user {
            self.user_high
        } else {
            self.user_low
        }
    }

    /// Messages from the other participant that `user` has not read.
    pub fn unread_for(&self, user: UserId) -> i64 {
        if self.user_low == user {
            self.unread_for_low
        } else {
            self.unread_for_high
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(status: ConnectionStatus) -> Conversation {
        let now = crate::now();
        Conversation {
            id: ConversationId(1),
            connection_id: ConnectionId(1),
            connection_status: status,
            user_low: UserId(4),
            user_high: UserId(8),
            last_message_id: None,
            unread_for_low: 3,
            unread_for_high: 5,
            message_count: 8,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn history_stays_readable_after_removal() {
        let c = conv(ConnectionStatus::Removed);
        assert!(c.can_read(UserId(4)) && c.can_read(UserId(8)));
        assert!(!c.can_read(UserId(5)));
        assert_eq!(c.check_send(UserId(4)), Err(SendDenied::NotConnected));
        assert!(!c.can_send());
    }

    #[test]
    fn strangers_get_not_participant_before_status() {
        assert_eq!(
            conv(ConnectionStatus::Removed).check_send(UserId(1)),
            Err(SendDenied::NotParticipant)
        );
    }

    #[test]
    fn unread_and_other_side() {
        let c = conv(ConnectionStatus::Accepted);
        assert_eq!(c.unread_for(UserId(4)), 3);
        assert_eq!(c.unread_for(UserId(8)), 5);
        assert_eq!(c.other_participant(UserId(4)), UserId(8));
        assert_eq!(c.other_participant(UserId(8)), UserId(4));
    }
}
