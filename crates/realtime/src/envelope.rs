//! The Redis wire format: `"{node_id}|{audience}|{event_json}"`.
//!
//! The event JSON is the last field and is forwarded as the WebSocket frame
//! as it is, so a receiving node never parses or re-serializes an event.

use crate::Audience;
use chat_domain::{ConversationId, UserId};

/// The Redis channel of a conversation.
pub(crate) fn channel(prefix: &str, conversation: ConversationId) -> String {
    format!("{prefix}conv:{conversation}")
}

/// The conversation of a Redis channel named by [`channel`].
pub(crate) fn parse_channel(prefix: &str, channel: &str) -> Option<ConversationId> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix("conv:")?
        .parse::<i64>()
        .ok()
        .map(ConversationId)
}

/// Builds the payload published on a conversation's channel.
pub(crate) fn encode(node_id: &str, audience: Audience, json: &str) -> String {
    let mut out = String::with_capacity(node_id.len() + json.len() + 24);
    out.push_str(node_id);
    out.push('|');
    match audience {
        Audience::Everyone => out.push('*'),
        Audience::ExceptUser(user) => {
            out.push('-');
            out.push_str(&user.to_string());
        }
    }
    out.push('|');
    out.push_str(json);
    out
}

/// A payload split into its fields; `json` borrows from the payload.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub node_id: &'a str,
    pub audience: Audience,
    pub json: &'a str,
}

/// Splits a payload built by [`encode`]; `None` for anything else.
pub(crate) fn decode(payload: &str) -> Option<Envelope<'_>> {
    let (node_id, rest) = payload.split_once('|')?;
    let (audience, json) = rest.split_once('|')?;
    let audience = if audience == "*" {
        Audience::Everyone
    } else {
        Audience::ExceptUser(UserId(audience.strip_prefix('-')?.parse().ok()?))
    };
    Some(Envelope {
        node_id,
        audience,
        json,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let json = r#"{"type":"error","message":"a|b"}"#;
        let p = encode("n1", Audience::Everyone, json);
        assert_eq!(p, format!("n1|*|{json}"));
        let e = decode(&p).unwrap();
        assert_eq!(e.node_id, "n1");
        assert!(matches!(e.audience, Audience::Everyone));
        assert_eq!(e.json, json);

        let p = encode("n2", Audience::ExceptUser(UserId(-7)), json);
        let e = decode(&p).unwrap();
        assert!(matches!(e.audience, Audience::ExceptUser(UserId(-7))));
        assert_eq!(e.json, json);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("no separators").is_none());
        assert!(decode("n|x|{}").is_none());
        assert!(decode("n|-abc|{}").is_none());
    }

    #[test]
    fn channels() {
        assert_eq!(channel("chat:", ConversationId(12)), "chat:conv:12");
        assert_eq!(
            parse_channel("chat:", "chat:conv:12"),
            Some(ConversationId(12))
        );
        assert_eq!(parse_channel("chat:", "other:conv:12"), None);
        assert_eq!(parse_channel("chat:", "chat:conv:x"), None);
    }
}
