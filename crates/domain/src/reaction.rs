//! Reactions: an emoji a participant puts on a message.

use crate::ids::UserId;
use serde::{Deserialize, Serialize};

/// Most distinct reactions one user may put on one message.
pub const MAX_REACTIONS_PER_USER: usize = 20;

/// Why an emoji was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmojiError {
    /// Empty, or more than 32 characters.
    #[error("An emoji is 1 to 32 characters.")]
    Length,
    /// Contains whitespace or a control character.
    #[error("An emoji may not contain whitespace or control characters.")]
    Character,
}

/// A reaction's emoji: 1 to 32 Unicode code points, no whitespace or
/// control characters.
///
/// ```
/// use chat_domain::reaction::Emoji;
/// assert_eq!(Emoji::parse("👍").unwrap().as_str(), "👍");
/// assert!(Emoji::parse("").is_err());
/// assert!(Emoji::parse("a b").is_err());
/// assert!(Emoji::parse(&"x".repeat(33)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Emoji(String);

impl Emoji {
    /// Checks the rules.
    pub fn parse(raw: &str) -> Result<Self, EmojiError> {
        let n = raw.chars().count();
        if n == 0 || n > 32 {
            return Err(EmojiError::Length);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmojiError::Character);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The emoji.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One emoji on a message: how many put it there, and who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: usize,
    /// Who, in the order they reacted.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<i64>))]
    pub user_ids: Vec<UserId>,
}

/// The summary of a message's reactions from `(emoji, user)` pairs in the
/// order they were made: one entry per emoji, in the order each emoji was
/// first used.
///
/// ```
/// use chat_domain::{UserId, reaction::summarize};
/// let s = summarize([("👍", UserId(1)), ("🎉", UserId(2)), ("👍", UserId(2))]);
/// assert_eq!(s[0].emoji, "👍");
/// assert_eq!(s[0].user_ids, vec![UserId(1), UserId(2)]);
/// assert_eq!(s[1].count, 1);
/// ```
pub fn summarize<'a>(pairs: impl IntoIterator<Item = (&'a str, UserId)>) -> Vec<Reaction> {
    let mut out: Vec<Reaction> = Vec::new();
    for (emoji, user) in pairs {
        match out.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => {
                r.user_ids.push(user);
                r.count += 1;
            }
            None => out.push(Reaction {
                emoji: emoji.to_owned(),
                count: 1,
                user_ids: vec![user],
            }),
        }
    }
    out
}
