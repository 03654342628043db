//! The hub with the in-process bus (single node).
#![allow(clippy::unwrap_used)]

mod common;

use chat_realtime::{Audience, Realtime, RealtimeConfig, RealtimeError};
use common::*;
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(200);

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
        assert_eq!(&**f, frame_of(&i.to_string()));
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
