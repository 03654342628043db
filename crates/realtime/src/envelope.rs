//! The Redis wire format.
//!
//! Topic channels carry `"{node_id}|{audience}[@{position}]|{event_json}"`,
//! e.g. `a1|*|{..}`, `a1|-7|{..}`, `a1|*@42|{..}`. The event JSON is the last
//! field and is forwarded as the WebSocket frame as it is, so a receiving
//! node never parses or re-serializes an event. The position rides in the
//! audience field so that a node of the previous version (which knew only
//! `*` and `-{user}`) rejects a positioned event as malformed instead of
//! forwarding a mangled frame, and still understands unpositioned ones
//! during a rolling deploy.
//!
//! The control channel carries `"resync|{node_id}"`: that node failed to
//! relay some events, so every other node's sockets must re-read the log.

use crate::{Audience, Topic};
use chat_domain::{ConversationId, UserId};

/// A Redis channel this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Channel {
    Topic(Topic),
    /// Where nodes announce relay failures; every node subscribes to it.
    Control,
}

/// The Redis channel name of `channel`.
pub(crate) fn channel_name(prefix: &str, channel: Channel) -> String {
    match channel {
        Channel::Topic(Topic::Conversation(c)) => format!("{prefix}conv:{c}"),
        Channel::Topic(Topic::User(u)) => format!("{prefix}user:{u}"),
        Channel::Control => format!("{prefix}ctl"),
    }
}

/// The channel named by [`channel_name`]; `None` for anything else.
pub(crate) fn parse_channel(prefix: &str, name: &str) -> Option<Channel> {
    let rest = name.strip_prefix(prefix)?;
    if rest == "ctl" {
        return Some(Channel::Control);
    }
    let topic = if let Some(id) = rest.strip_prefix("conv:") {
        Topic::Conversation(ConversationId(id.parse().ok()?))
    } else {
        Topic::User(UserId(rest.strip_prefix("user:")?.parse().ok()?))
    };
    Some(Channel::Topic(topic))
}

/// Builds the payload published on a topic's channel.
pub(crate) fn encode(
    node_id: &str,
    audience: Audience,
    position: Option<u64>,
    json: &str,
) -> String {
    let mut out = String::with_capacity(node_id.len() + json.len() + 48);
    out.push_str(node_id);
    out.push('|');
    match audience {
        Audience::Everyone => out.push('*'),
        Audience::ExceptUser(user) => {
            out.push('-');
            out.push_str(&user.to_string());
        }
    }
    if let Some(position) = position {
        out.push('@');
        out.push_str(&position.to_string());
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
    pub position: Option<u64>,
    pub json: &'a str,
}

/// Largest payload taken from Redis. The largest event this service
/// publishes (a message of 5,000 characters with its reactions, or a
/// `messages_read` of 1,000 ids) is far below it.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Longest node id taken (ours are 16 hex digits).
const MAX_NODE_ID: usize = 64;

/// Whether `id` could be a node id: short, letters and digits.
fn is_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_NODE_ID && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `json` has the shape of an event: one well-formed JSON object
/// whose `type` is a short snake_case name. Events are forwarded as they
/// come, so this is what stands between Redis and a client.
pub(crate) fn is_event_json(json: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Shape<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let Ok(shape) = serde_json::from_str::<Shape<'_>>(json) else {
        return false;
    };
    json.trim_start().starts_with('{')
        && !shape.kind.is_empty()
        && shape.kind.len() <= 64
        && shape
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Splits a payload built by [`encode`]; `None` for anything else.
pub(crate) fn decode(payload: &str) -> Option<Envelope<'_>> {
    let (node_id, rest) = payload.split_once('|')?;
    if !is_node_id(node_id) {
        return None;
    }
    let (header, json) = rest.split_once('|')?;
    let (audience, position) = match header.split_once('@') {
        Some((audience, position)) => (audience, Some(position.parse().ok()?)),
        None => (header, None),
    };
    let audience = if audience == "*" {
        Audience::Everyone
    } else {
        Audience::ExceptUser(UserId(audience.strip_prefix('-')?.parse().ok()?))
    };
    Some(Envelope {
        node_id,
        audience,
        position,
        json,
    })
}

/// The payload announcing that `node_id` failed to relay events.
pub(crate) fn encode_resync(node_id: &str) -> String {
    format!("resync|{node_id}")
}

/// The announcing node of a payload built by [`encode_resync`].
pub(crate) fn decode_resync(payload: &str) -> Option<&str> {
    payload.strip_prefix("resync|").filter(|id| is_node_id(id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_event_objects_pass() {
        assert!(is_event_json(
            r#"{"type":"chat_message","message":{"id":1}}"#
        ));
        assert!(is_event_json(r#" {"id":2,"type":"typing_indicator"}"#));
        for bad in [
            "",
            "garbage",
            "[1,2]",
            r#"{"type":1}"#,
            r#"{"kind":"x"}"#,
            r#"{"type":"<script>"}"#,
            r#"{"type":"chat_message""#,
            r#"{"type":"chat_message"} trailing"#,
        ] {
            assert!(!is_event_json(bad), "{bad}");
        }
        assert!(decode("n1|*|{}").is_some());
        assert!(decode("bad id|*|{}").is_none());
        assert_eq!(decode_resync("resync|n1"), Some("n1"));
        assert_eq!(decode_resync("resync|"), None);
    }

    #[test]
    fn round_trip() {
        let json = r#"{"type":"error","message":"a|b@3"}"#;
        let p = encode("n1", Audience::Everyone, None, json);
        assert_eq!(p, format!("n1|*|{json}"));
        let e = decode(&p).unwrap();
        assert_eq!(e.node_id, "n1");
        assert!(matches!(e.audience, Audience::Everyone));
        assert_eq!(e.position, None);
        assert_eq!(e.json, json);

        let p = encode("n2", Audience::ExceptUser(UserId(-7)), None, json);
        let e = decode(&p).unwrap();
        assert!(matches!(e.audience, Audience::ExceptUser(UserId(-7))));
        assert_eq!(e.json, json);
    }

    #[test]
    fn positions_round_trip() {
        let json = r#"{"seq":1}"#;
        let p = encode("n1", Audience::Everyone, Some(42), json);
        assert_eq!(p, format!("n1|*@42|{json}"));
        let e = decode(&p).unwrap();
        assert_eq!(e.position, Some(42));
        assert!(matches!(e.audience, Audience::Everyone));
        assert_eq!(e.json, json);

        let p = encode("n1", Audience::ExceptUser(UserId(3)), Some(u64::MAX), json);
        assert_eq!(p, format!("n1|-3@{}|{json}", u64::MAX));
        let e = decode(&p).unwrap();
        assert_eq!(e.position, Some(u64::MAX));
        assert!(matches!(e.audience, Audience::ExceptUser(UserId(3))));
        assert_eq!(e.json, json);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("no separators").is_none());
        assert!(decode("n|x|{}").is_none());
        assert!(decode("n|-abc|{}").is_none());
        assert!(decode("n|*@|{}").is_none());
        assert!(decode("n|*@-1|{}").is_none());
        assert!(decode("n|*@x|{}").is_none());
    }

    /// What a node of the previous version did with a payload: its decoder
    /// knew only `*` and `-{user}` in the second field.
    fn previous_version_accepts(payload: &str) -> bool {
        let Some((_, rest)) = payload.split_once('|') else {
            return false;
        };
        let Some((audience, _)) = rest.split_once('|') else {
            return false;
        };
        audience == "*"
            || audience
                .strip_prefix('-')
                .is_some_and(|u| u.parse::<i64>().is_ok())
    }

    #[test]
    fn previous_version_rejects_only_positioned_payloads() {
        assert!(previous_version_accepts(&encode(
            "n",
            Audience::Everyone,
            None,
            "{}"
        )));
        assert!(!previous_version_accepts(&encode(
            "n",
            Audience::Everyone,
            Some(1),
            "{}"
        )));
        assert!(!previous_version_accepts(&encode(
            "n",
            Audience::ExceptUser(UserId(2)),
            Some(1),
            "{}"
        )));
    }

    #[test]
    fn channels() {
        let conv = Channel::Topic(Topic::Conversation(ConversationId(12)));
        let user = Channel::Topic(Topic::User(UserId(12)));
        assert_eq!(channel_name("chat:", conv), "chat:conv:12");
        assert_eq!(channel_name("chat:", user), "chat:user:12");
        assert_eq!(channel_name("chat:", Channel::Control), "chat:ctl");
        for c in [conv, user, Channel::Control] {
            assert_eq!(parse_channel("chat:", &channel_name("chat:", c)), Some(c));
        }
        assert_eq!(parse_channel("chat:", "other:conv:12"), None);
        assert_eq!(parse_channel("chat:", "chat:conv:x"), None);
        assert_eq!(parse_channel("chat:", "chat:user:"), None);
        assert_eq!(parse_channel("chat:", "chat:ctl2"), None);
    }

    #[test]
    fn resync_announcements() {
        let p = encode_resync("n1");
        assert_eq!(decode_resync(&p), Some("n1"));
        assert_eq!(decode_resync("n1|*|{}"), None);
    }
}
