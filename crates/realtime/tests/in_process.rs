//! The hub with the in-process bus (single node).
#![allow(clippy::unwrap_used)]

mod common;

use chat_domain::ConversationId;
use chat_realtime::{
    Audience, Frame, Outbound, Realtime, RealtimeConfig, RealtimeError, Registration, Topic,
};
use common::*;
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(200);

/// Asserts the next item is the unpositioned event tagged `tag` (not in
/// `common`: redis_resync expects positioned items only).
async fn expect(reg: &mut Registration, tag: &str) {
    expect_at(reg, tag, None).await;
}

async fn local() -> Realtime {
    Realtime::start(config(None, "local")).await.unwrap()
}

#[tokio::test]
async fn two_sockets_both_receive() {
    let rt = local().await;
    assert!(!rt.is_distributed());
    assert_eq!(rt.check().await, Ok(()));
    let c = conv();
    let mut a = rt.join(c, user(1)).await.unwrap();
    let mut b = rt.join(c, user(2)).await.unwrap();
    assert_ne!(a.socket, b.socket);
    rt.publish(c, &ev("hello"), Audience::Everyone).await;
    expect(&mut a, "hello").await;
    expect(&mut b, "hello").await;

    // Another conversation's sockets get nothing.
    let mut other = rt.join(conv(), user(1)).await.unwrap();
    rt.publish(c, &ev("again"), Audience::Everyone).await;
    expect(&mut a, "again").await;
    assert_eq!(recv_within(&mut other, SHORT).await, None);
}

#[tokio::test]
async fn except_user_excludes_all_of_that_users_sockets() {
    let rt = local().await;
    let c = conv();
    let mut typist1 = rt.join(c, user(1)).await.unwrap();
    let mut typist2 = rt.join(c, user(1)).await.unwrap();
    let mut other = rt.join(c, user(2)).await.unwrap();
    rt.publish(c, &ev("typing"), Audience::ExceptUser(user(1)))
        .await;
    rt.publish(c, &ev("marker"), Audience::Everyone).await;
    expect(&mut other, "typing").await;
    expect(&mut other, "marker").await;
    // The first thing the typist's sockets see is the marker.
    expect(&mut typist1, "marker").await;
    expect(&mut typist2, "marker").await;
}

#[tokio::test]
async fn leave_stops_delivery_and_is_idempotent() {
    let rt = local().await;
    let c = conv();
    let mut a = rt.join(c, user(1)).await.unwrap();
    let mut b = rt.join(c, user(2)).await.unwrap();
    rt.leave(c, a.socket);
    rt.leave(c, a.socket);
    rt.leave(conv(), b.socket); // wrong conversation: no effect
    rt.publish(c, &ev("after"), Audience::Everyone).await;
    expect(&mut b, "after").await;
    // The hub dropped a's sender: the socket task would see the end.
    assert_eq!(recv_within(&mut a, SHORT).await, None);
    assert!(a.outbound.is_closed());
}

#[tokio::test]
async fn full_queue_drops_only_the_slow_socket() {
    let rt = Realtime::start(RealtimeConfig {
        socket_queue: 8,
        ..config(None, "local")
    })
    .await
    .unwrap();
    let c = conv();
    let mut slow = rt.join(c, user(1)).await.unwrap();
    let mut fast = rt.join(c, user(2)).await.unwrap();
    for round in 0..2 {
        for i in 0..5 {
            rt.publish(c, &ev(&format!("{round}-{i}")), Audience::Everyone)
                .await;
        }
        for i in 0..5 {
            expect(&mut fast, &format!("{round}-{i}")).await;
        }
    }
    // The slow socket got what fit in its queue, then was dropped.
    for i in 0..5 {
        expect(&mut slow, &format!("0-{i}")).await;
    }
    for i in 0..3 {
        expect(&mut slow, &format!("1-{i}")).await;
    }
    assert_eq!(recv_within(&mut slow, SHORT).await, None);
    // The fast one keeps working; leaving the dropped one is harmless.
    rt.leave(c, slow.socket);
    rt.publish(c, &ev("still"), Audience::Everyone).await;
    expect(&mut fast, "still").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_preserved_for_1000_publishes() {
    // Room for the whole burst: a reader falling behind by more than the
    // queue would (by design) get its socket dropped.
    let rt = Realtime::start(RealtimeConfig {
        socket_queue: 2048,
        ..config(None, "local")
    })
    .await
    .unwrap();
    let c = conv();
    let mut a = rt.join(c, user(1)).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(1000);
        while got.len() < 1000 {
            match recv_within(&mut a, Duration::from_secs(5)).await {
                Some(f) => got.push(f),
                None => break,
            }
        }
        got
    });
    for i in 0..1000 {
        rt.publish(c, &ev(&i.to_string()), Audience::Everyone).await;
    }
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 1000);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(*f, item(&i.to_string(), None));
    }
}

#[tokio::test]
async fn invalid_config_is_refused() {
    let zero_queue = Realtime::start(RealtimeConfig {
        socket_queue: 0,
        ..RealtimeConfig::default()
    })
    .await;
    assert!(matches!(zero_queue, Err(RealtimeError::Config(_))));
    let bad_url = Realtime::start(config(Some("nonsense://".into()), "bad_url")).await;
    assert!(matches!(bad_url, Err(RealtimeError::Config(_))));
}

#[test]
fn config_debug_hides_the_password() {
    let c = config(Some("redis://user:secret@host:6379/0".into()), "debug");
    let shown = format!("{c:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("host:6379"), "{shown}");
}

#[tokio::test]
async fn user_topics_carry_positions_and_stay_apart_from_conversations() {
    let rt = local().await;
    let u = user(41);
    let mut stream1 = rt.join(Topic::User(u), u).await.unwrap();
    let mut stream2 = rt.join(Topic::User(u), u).await.unwrap();
    // Same number, other kind of topic: must not hear the user's events.
    let mut same_id = rt.join(ConversationId(u.0), u).await.unwrap();
    let mut other_user = rt.join(Topic::User(user(42)), user(42)).await.unwrap();

    // Any of String, &str, Frame can be published; the frame is shared.
    publish_at(&rt, Topic::User(u), "one", Some(1)).await;
    rt.publish_frame(
        Topic::User(u),
        frame_of("two").as_str(),
        Some(2),
        Audience::Everyone,
    )
    .await;
    let shared: Frame = frame_of("three").into();
    rt.publish_frame(
        Topic::User(u),
        Frame::clone(&shared),
        Some(3),
        Audience::Everyone,
    )
    .await;
    for stream in [&mut stream1, &mut stream2] {
        expect_at(stream, "one", Some(1)).await;
        expect_at(stream, "two", Some(2)).await;
        expect_at(stream, "three", Some(3)).await;
    }
    assert_eq!(recv_within(&mut same_id, SHORT).await, None);
    assert_eq!(recv_within(&mut other_user, SHORT).await, None);

    // A positioned conversation frame (a chat_message) keeps its position.
    publish_at(&rt, ConversationId(u.0), "msg", Some(17)).await;
    expect_at(&mut same_id, "msg", Some(17)).await;
    assert_eq!(recv_within(&mut stream1, SHORT).await, None);

    rt.leave(Topic::User(u), stream1.socket);
    publish_at(&rt, Topic::User(u), "four", Some(4)).await;
    expect_at(&mut stream2, "four", Some(4)).await;
    assert_eq!(recv_within(&mut stream1, SHORT).await, None);
}

#[tokio::test]
async fn except_user_on_a_user_topic() {
    let rt = local().await;
    let u = user(51);
    let mut stream = rt.join(Topic::User(u), u).await.unwrap();
    rt.publish_frame(
        Topic::User(u),
        frame_of("hidden"),
        None,
        Audience::ExceptUser(u),
    )
    .await;
    rt.publish_frame(
        Topic::User(u),
        frame_of("shown"),
        Some(1),
        Audience::ExceptUser(user(52)),
    )
    .await;
    expect_at(&mut stream, "shown", Some(1)).await;
    assert_eq!(recv_within(&mut stream, SHORT).await, None);
}

#[tokio::test]
async fn resync_all_reaches_every_socket_in_order() {
    let rt = local().await;
    let c = conv();
    let u = user(61);
    let mut on_conv = rt.join(c, user(1)).await.unwrap();
    let mut on_stream = rt.join(Topic::User(u), u).await.unwrap();
    rt.publish(c, &ev("before"), Audience::Everyone).await;
    publish_at(&rt, Topic::User(u), "before", Some(1)).await;
    rt.resync_all().await;
    rt.publish(c, &ev("after"), Audience::Everyone).await;
    publish_at(&rt, Topic::User(u), "after", Some(2)).await;

    expect(&mut on_conv, "before").await;
    assert_eq!(
        recv_within(&mut on_conv, SHORT).await,
        Some(Outbound::Resync)
    );
    expect(&mut on_conv, "after").await;
    expect_at(&mut on_stream, "before", Some(1)).await;
    assert_eq!(
        recv_within(&mut on_stream, SHORT).await,
        Some(Outbound::Resync)
    );
    expect_at(&mut on_stream, "after", Some(2)).await;
    let stats = rt.stats();
    assert_eq!(stats.resyncs_sent, 2);
    assert_eq!(stats.frames_delivered, 4);
    assert_eq!(stats.open_sockets, 2);
}

#[tokio::test]
async fn resync_into_a_full_queue_drops_the_socket() {
    let rt = Realtime::start(RealtimeConfig {
        socket_queue: 2,
        ..config(None, "local")
    })
    .await
    .unwrap();
    let u = user(71);
    let mut slow = rt.join(Topic::User(u), u).await.unwrap();
    publish_at(&rt, Topic::User(u), "a", Some(1)).await;
    publish_at(&rt, Topic::User(u), "b", Some(2)).await;
    let mut fast = rt.join(conv(), user(1)).await.unwrap();
    rt.resync_all().await;
    assert_eq!(recv_within(&mut fast, SHORT).await, Some(Outbound::Resync));
    // The slow socket keeps what it had, then ends: it never silently
    // misses the resync.
    expect_at(&mut slow, "a", Some(1)).await;
    expect_at(&mut slow, "b", Some(2)).await;
    assert_eq!(recv_within(&mut slow, SHORT).await, None);
    let stats = rt.stats();
    assert_eq!(stats.slow_sockets_dropped, 1);
    assert_eq!(stats.resyncs_sent, 1);
    assert_eq!(stats.open_sockets, 1);
}
