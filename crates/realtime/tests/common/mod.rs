//! Helpers every integration test of the realtime crate uses. Helpers of
//! only some live with them (`private_redis` for the tests that run their
//! own redis-server).
#![allow(clippy::unwrap_used)]

use chat_domain::{ConversationId, ServerEvent, UserId};
use chat_realtime::{Audience, Outbound, Realtime, RealtimeConfig, Registration, Topic};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::timeout;

/// A recognizable event; `to_json()` of it is the expected frame.
pub fn ev(tag: &str) -> ServerEvent {
    ServerEvent::Error {
        message: tag.to_owned(),
        client_id: None,
    }
}

pub fn frame_of(tag: &str) -> String {
    ev(tag).to_json()
}

/// The queue item carrying the event tagged `tag` at `position`.
pub fn item(tag: &str, position: Option<u64>) -> Outbound {
    Outbound::Frame {
        json: frame_of(tag).into(),
        position,
    }
}

/// The next item, or None if none arrives within `wait` (or the socket was dropped).
pub async fn recv_within(reg: &mut Registration, wait: Duration) -> Option<Outbound> {
    timeout(wait, reg.outbound.recv()).await.ok().flatten()
}

/// Asserts the next item is the event tagged `tag` at `position`.
pub async fn expect_at(reg: &mut Registration, tag: &str, position: Option<u64>) {
    let got = recv_within(reg, Duration::from_secs(5)).await;
    assert_eq!(got, Some(item(tag, position)), "expected event {tag}");
}

/// Publishes the event tagged `tag` at `position` to everyone on `topic`.
pub async fn publish_at(rt: &Realtime, topic: impl Into<Topic>, tag: &str, position: Option<u64>) {
    rt.publish_frame(topic, frame_of(tag), position, Audience::Everyone)
        .await;
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A channel prefix no other test (or test run) uses.
fn unique_prefix(test: &str) -> String {
    let run = std::env::var("TEST_RUN_PREFIX").unwrap_or_else(|_| "test".into());
    format!("{run}:{test}:{:x}:", random_u64())
}

/// A conversation id unlikely to collide between tests.
pub fn conv() -> ConversationId {
    ConversationId((random_u64() >> 2) as i64)
}

pub fn user(id: i64) -> UserId {
    UserId(id)
}

/// Default settings on `redis_url`, with a channel prefix of its own for
/// `test`; give every node of one test the same config.
pub fn config(redis_url: Option<String>, test: &str) -> RealtimeConfig {
    RealtimeConfig {
        redis_url,
        channel_prefix: unique_prefix(test),
        ..RealtimeConfig::default()
    }
}
