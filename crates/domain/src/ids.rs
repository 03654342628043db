//! Typed ids, so a user id cannot be passed where a message id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw database id.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }
    };
}

id_type!(
    /// Id of a user.
    ///
    /// ```
    /// let id = chat_domain::UserId(7);
    /// assert_eq!(serde_json::to_string(&id).unwrap(), "7");
    /// ```
    UserId
);
id_type!(
    /// Id of a connection (a request between two users).
    ConnectionId
);
id_type!(
    /// Id of a conversation.
    ConversationId
);
id_type!(
    /// Id of a message; ids increase in the order messages are stored.
    MessageId
);
id_type!(
    /// Id of an uploaded file (an attachment once sent in a message).
    AttachmentId
);
