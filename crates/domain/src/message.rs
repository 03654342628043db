//! Messages and the rules on their content.

use crate::ids::{ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Why message content was refused; the message is shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageContentError {
    /// Nothing left after trimming.
    #[error("Message content cannot be empty.")]
    Empty,
    /// More than [`MessageContent::MAX_CHARS`] characters after trimming.
    #[error("Message content cannot be longer than 5000 characters.")]
    TooLong,
    /// A `client_id` outside 1 to 64 characters.
    #[error("client_id must be a string of 1 to 64 characters.")]
    InvalidClientId,
    /// A NUL character, which PostgreSQL text cannot hold (refused on every
    /// backend, as Django REST framework does).
    #[error("Null characters are not allowed.")]
    NullCharacter,
}

/// Message content: trimmed of surrounding whitespace, 1 to 5000
/// characters (characters, not bytes), without NUL characters. Serializes
/// as the string.
///
/// ```
/// use chat_domain::{MessageContent, MessageContentError};
/// assert_eq!(MessageContent::parse("  hi \n").unwrap().as_str(), "hi");
/// assert_eq!(MessageContent::parse("   "), Err(MessageContentError::Empty));
/// assert!(MessageContent::parse(&"é".repeat(5000)).is_ok());
/// assert_eq!(MessageContent::parse(&"a".repeat(5001)), Err(MessageContentError::TooLong));
/// assert_eq!(MessageContent::parse("a\0b"), Err(MessageContentError::NullCharacter));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageContent(String);

impl MessageContent {
    /// Most characters a message may hold.
    pub const MAX_CHARS: usize = 5000;

    /// Trims and checks the length.
    pub fn parse(raw: &str) -> Result<Self, MessageContentError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(MessageContentError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(MessageContentError::TooLong);
        }
        if trimmed.contains('\0') {
            return Err(MessageContentError::NullCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// [`MessageContent::parse`], except that with `has_attachments` the
    /// content may be empty (a message of files only).
    ///
    /// ```
    /// use chat_domain::MessageContent;
    /// assert_eq!(MessageContent::parse_with_attachments("  ", true).unwrap().as_str(), "");
    /// assert!(MessageContent::parse_with_attachments("  ", false).is_err());
    /// ```
    pub fn parse_with_attachments(
        raw: &str,
        has_attachments: bool,
    ) -> Result<Self, MessageContentError> {
        match Self::parse(raw) {
            Err(MessageContentError::Empty) if has_attachments => Ok(Self(String::new())),
            other => other,
        }
    }

    /// The trimmed content.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trimmed content as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A client-chosen idempotency key: 1 to 64 characters (no NUL), kept as
/// given. Serializes as the string.
///
/// ```
/// use chat_domain::ClientId;
/// assert!(ClientId::parse("a1b2").is_ok());
/// assert!(ClientId::parse("").is_err());
/// assert!(ClientId::parse(&"x".repeat(65)).is_err());
/// assert!(ClientId::parse("a\0").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// Most characters a client id may have.
    pub const MAX_CHARS: usize = 64;

    /// Checks the length.
    pub fn parse(raw: &str) -> Result<Self, MessageContentError> {
        let n = raw.chars().count();
        if n == 0 || n > Self::MAX_CHARS {
            return Err(MessageContentError::InvalidClientId);
        }
        if raw.contains('\0') {
            return Err(MessageContentError::NullCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Id; increases in storage order.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Who sent it.
    pub sender_id: UserId,
    /// Trimmed content.
    pub content: String,
    /// The sender's idempotency key, if given.
    pub client_id: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When the recipient read it.
    pub read_at: Option<DateTime<Utc>>,
    /// When the recipient's client acknowledged it (or read it).
    pub delivered_at: Option<DateTime<Utc>>,
    /// Its reactions, in the order each emoji was first used.
    pub reactions: Vec<crate::reaction::Reaction>,
    /// The files sent with it, in the order they were listed.
    pub attachments: Vec<crate::attachment::Attachment>,
}

/// Where a message stands for its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Stored.
    Sent,
    /// A recipient's client acknowledged it.
    Delivered,
    /// Marked read (read implies delivered).
    Read,
}

impl Message {
    /// Whether the recipient has read it.
    pub fn is_read(&self) -> bool {
        self.read_at.is_some()
    }

    /// Sent, delivered or read.
    ///
    /// ```
    /// use chat_domain::message::DeliveryStatus;
    /// # let m = chat_domain::Message { id: chat_domain::MessageId(1), conversation_id: chat_domain::ConversationId(1),
    /// #   sender_id: chat_domain::UserId(1), content: "hi".into(), client_id: None, created_at: chat_domain::now(),
    /// #   read_at: None, delivered_at: None, reactions: vec![], attachments: vec![] };
    /// assert_eq!(m.status(), DeliveryStatus::Sent);
    /// ```
    pub fn status(&self) -> DeliveryStatus {
        match (self.read_at, self.delivered_at) {
            (Some(_), _) => DeliveryStatus::Read,
            (None, Some(_)) => DeliveryStatus::Delivered,
            (None, None) => DeliveryStatus::Sent,
        }
    }

    /// When it was delivered; a read message was delivered when it was read
    /// at the latest (an ack after the read changes nothing).
    pub fn delivered_at(&self) -> Option<DateTime<Utc>> {
        match (self.delivered_at, self.read_at) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_counts_characters_after_trimming() {
        let padded = format!("  {}  ", "a".repeat(5000));
        assert_eq!(MessageContent::parse(&padded).unwrap().as_str().len(), 5000);
        assert!(MessageContent::parse(&"😀".repeat(5000)).is_ok());
        assert_eq!(
            MessageContent::parse(&"😀".repeat(5001)),
            Err(MessageContentError::TooLong)
        );
        assert_eq!(
            MessageContent::parse("\t\n "),
            Err(MessageContentError::Empty)
        );
        assert_eq!(MessageContent::parse(" a b ").unwrap().as_str(), "a b");
        assert_eq!(
            MessageContent::parse(" a\u{0}b "),
            Err(MessageContentError::NullCharacter)
        );
    }

    #[test]
    fn client_id_counts_characters() {
        assert!(ClientId::parse(&"é".repeat(64)).is_ok());
        assert!(ClientId::parse(&"é".repeat(65)).is_err());
        assert_eq!(ClientId::parse(" x ").unwrap().as_str(), " x ");
    }
}
