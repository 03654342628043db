//! Pure types and rules of the chat service.
//!
//! Nothing here does I/O: other Rust projects import this crate to speak the
//! service's wire protocol or to apply its rules. Values that have rules
//! (usernames, passwords, message content, client ids) can only be built
//! through `parse` constructors, so an invalid one cannot exist.
//!
//! The optional `openapi` feature (off by default) derives
//! `utoipa::ToSchema` on the wire types (`UserView` as `User`,
//! `ConnectionStatus`, `ClientEvent`, `ServerEvent`), so a service's OpenAPI
//! document takes their schemas from the types themselves.
//!
//! ```
//! use chat_domain::{MessageContent, Username};
//!
//! let name = Username::parse("jdoe").unwrap();
//! assert_eq!(name.as_str(), "jdoe");
//! let content = MessageContent::parse("  Hello!  ").unwrap();
//! assert_eq!(content.as_str(), "Hello!");
//! ```

pub mod attachment;
pub mod connection;
pub mod conversation;
pub mod events;
pub mod ids;
pub mod message;
pub mod reaction;
pub mod search;
pub mod user;

pub use connection::{Connection, ConnectionError, ConnectionStatus};
pub use conversation::{Conversation, SendDenied};
pub use events::{
    ClientEvent, ClientEventError, ClientFrame, ServerEvent, StreamCounters, StreamStart,
};
pub use ids::{AttachmentId, ConnectionId, ConversationId, MessageId, UserId};
pub use message::{ClientId, Message, MessageContent, MessageContentError};
pub use user::{Avatar, NamePart, Password, User, UserFieldError, UserView, Username};

/// Timestamps are UTC with microsecond precision, the finest both storage
/// backends keep; anything finer would change on a round trip.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    truncate_to_micros(chrono::Utc::now())
}

/// Drops sub-microsecond precision (see [`now`]).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.timestamp_opt(1, 123_456_789).unwrap();
/// assert_eq!(chat_domain::truncate_to_micros(t).timestamp_subsec_nanos(), 123_456_000);
/// ```
pub fn truncate_to_micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let nanos = t.timestamp_subsec_nanos();
    t - chrono::Duration::nanoseconds(i64::from(nanos % 1_000))
}
