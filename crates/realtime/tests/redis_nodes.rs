//! Two `Realtime` instances ("nodes") on one real Redis (`TEST_REDIS_URL`).
#![allow(clippy::unwrap_used)]

mod common;

use chat_domain::{ConversationId, UserId};
use chat_realtime::{Audience, Outbound, Realtime, RealtimeConfig, Registration, Topic};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(300);

/// Asserts the next item is the unpositioned event tagged `tag` (not in
/// `common`: redis_resync expects positioned items only).
async fn expect(reg: &mut Registration, tag: &str) {
    expect_at(reg, tag, None).await;
}

/// `TEST_REDIS_URL`, or None after printing a skip line.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("SKIP {test}: TEST_REDIS_URL not set");
            None
        }
    }
}

async fn two_nodes(url: &str, test: &str) -> (Realtime, Realtime) {
    // Queues with room for the largest burst below, so a reader slowed down
    // by a loaded machine is not dropped as a slow client.
    let cfg = RealtimeConfig {
        socket_queue: 4096,
        ..config(Some(url.to_owned()), test)
    };
    let a = Realtime::start(cfg.clone()).await.unwrap();
    let b = Realtime::start(cfg).await.unwrap();
    (a, b)
}

/// A user id unlikely to collide between tests sharing one Redis.
fn unique_user() -> UserId {
    UserId(conv().0)
}

/// Two nodes, each with a socket on the stream of a new user.
async fn user_stream_on_two_nodes(
    url: &str,
    test: &str,
) -> (Realtime, Realtime, UserId, Registration, Registration) {
    let (a, b) = two_nodes(url, test).await;
    let u = unique_user();
    let on_a = a.join(Topic::User(u), u).await.unwrap();
    let on_b = b.join(Topic::User(u), u).await.unwrap();
    (a, b, u, on_a, on_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_reaches_other_node_and_local_sockets_once() {
    let Some(url) = redis_url("event_reaches_other_node_and_local_sockets_once") else {
        return;
    };
    let (a, b) = two_nodes(&url, "cross").await;
    assert!(a.is_distributed());
    assert_eq!(a.check().await, Ok(()));
    assert_eq!(b.check().await, Ok(()));
    let c = conv();
    let mut on_a = a.join(c, user(1)).await.unwrap();
    let mut on_b = b.join(c, user(2)).await.unwrap();

    a.publish(c, &ev("from-a"), Audience::Everyone).await;
    a.publish(c, &ev("marker-a"), Audience::Everyone).await;
    expect(&mut on_b, "from-a").await;
    expect(&mut on_b, "marker-a").await;
    expect(&mut on_a, "from-a").await;
    expect(&mut on_a, "marker-a").await;
    b.publish(c, &ev("from-b"), Audience::Everyone).await;
    expect(&mut on_b, "from-b").await;
    expect(&mut on_a, "from-b").await;
    // Each node ignores its own echo: nothing arrives twice.
    assert_eq!(recv_within(&mut on_a, SHORT).await, None);
    assert_eq!(recv_within(&mut on_b, SHORT).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_of_1000_events_across_nodes() {
    let Some(url) = redis_url("order_of_1000_events_across_nodes") else {
        return;
    };
    let (a, b) = two_nodes(&url, "order").await;
    let c = conv();
    let mut on_b = b.join(c, user(2)).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(1000);
        while got.len() < 1000 {
            match recv_within(&mut on_b, Duration::from_secs(10)).await {
                Some(f) => got.push(f),
                None => break,
            }
        }
        got
    });
    let started = Instant::now();
    for i in 0..1000 {
        a.publish(c, &ev(&i.to_string()), Audience::Everyone).await;
    }
    let publish_time = started.elapsed();
    let got = reader.await.unwrap();
    println!(
        "1000 publishes took {publish_time:?}; all received after {:?}",
        started.elapsed()
    );
    assert_eq!(got.len(), 1000);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(*f, item(&i.to_string(), None), "position {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_user_across_nodes() {
    let Some(url) = redis_url("except_user_across_nodes") else {
        return;
    };
    let (a, b) = two_nodes(&url, "except").await;
    let c = conv();
    let mut typist_a = a.join(c, user(1)).await.unwrap();
    let mut typist_b = b.join(c, user(1)).await.unwrap();
    let mut other_a = a.join(c, user(2)).await.unwrap();
    let mut other_b = b.join(c, user(2)).await.unwrap();
    a.publish(c, &ev("typing"), Audience::ExceptUser(user(1)))
        .await;
    a.publish(c, &ev("marker"), Audience::Everyone).await;
    for other in [&mut other_a, &mut other_b] {
        expect(other, "typing").await;
        expect(other, "marker").await;
    }
    for typist in [&mut typist_a, &mut typist_b] {
        expect(typist, "marker").await;
    }
}

/// A leave immediately followed by a join (the socket reconnecting) must
/// never leave the conversation unsubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_then_join_stays_subscribed() {
    let Some(url) = redis_url("leave_then_join_stays_subscribed") else {
        return;
    };
    let (a, b) = two_nodes(&url, "churn").await;
    let c = conv();
    let mut reg = b.join(c, user(2)).await.unwrap();
    for i in 0..30 {
        b.leave(c, reg.socket);
        reg = b.join(c, user(2)).await.unwrap();
        let tag = format!("after-rejoin-{i}");
        a.publish(c, &ev(&tag), Audience::Everyone).await;
        expect(&mut reg, &tag).await;
    }
    // Several joins racing for the same new conversation all wait for the
    // one SUBSCRIBE.
    let c2 = conv();
    let joins: Vec<_> = (0..5)
        .map(|u| {
            let b = b.clone();
            tokio::spawn(async move { b.join(c2, user(u)).await.unwrap() })
        })
        .collect();
    let mut regs = Vec::new();
    for j in joins {
        regs.push(j.await.unwrap());
    }
    a.publish(c2, &ev("to-all"), Audience::Everyone).await;
    for r in &mut regs {
        expect(r, "to-all").await;
    }
}

/// The last local socket leaving unsubscribes the channel (checked with
/// `PUBSUB NUMSUB` through redis-cli when available).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_leave_unsubscribes() {
    let Some(url) = redis_url("last_leave_unsubscribes") else {
        return;
    };
    if Command::new("redis-cli").arg("--version").output().is_err() {
        println!("SKIP last_leave_unsubscribes: redis-cli not on PATH");
        return;
    }
    let cfg = config(Some(url.clone()), "unsub");
    let c = conv();
    let prefix = cfg.channel_prefix.clone();
    let channel = format!("{prefix}conv:{c}");
    let b = Realtime::start(cfg).await.unwrap();
    let numsub = |channel: &str| -> String {
        let out = Command::new("redis-cli")
            .args(["-u", &url, "PUBSUB", "NUMSUB", channel])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let eventually = |channel: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while numsub(channel) != want {
            assert!(Instant::now() < deadline, "{channel}: NUMSUB never {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The control channel is subscribed from the start, with no socket.
    eventually(&format!("{prefix}ctl"), "1");
    let r1 = b.join(c, user(1)).await.unwrap();
    let r2 = b.join(c, user(2)).await.unwrap();
    assert_eq!(numsub(&channel), "1");
    b.leave(c, r1.socket);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(numsub(&channel), "1", "one socket is still there");
    b.leave(c, r2.socket);
    eventually(&channel, "0");

    // A user's stream has its own channel, refcounted the same way.
    let u = user(9);
    let stream = format!("{prefix}user:{u}");
    let s1 = b.join(Topic::User(u), u).await.unwrap();
    let s2 = b.join(Topic::User(u), u).await.unwrap();
    assert_eq!(numsub(&stream), "1");
    b.leave(Topic::User(u), s1.socket);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(numsub(&stream), "1", "one socket is still there");
    b.leave(Topic::User(u), s2.socket);
    eventually(&stream, "0");
    assert_eq!(numsub(&format!("{prefix}ctl")), "1");
}

/// A user's stream on two nodes: positions arrive intact and in order, the
/// conversation with the same number hears nothing, and nothing arrives
/// twice or as a spurious resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_topic_across_nodes_keeps_positions() {
    let Some(url) = redis_url("user_topic_across_nodes_keeps_positions") else {
        return;
    };
    let (a, b, u, mut on_a, mut on_b) = user_stream_on_two_nodes(&url, "user").await;
    let stream = Topic::User(u);
    let mut same_id = b.join(ConversationId(u.0), u).await.unwrap();

    for seq in 1..=500 {
        publish_at(&a, stream, &seq.to_string(), Some(seq)).await;
    }
    for seq in 1..=500 {
        expect_at(&mut on_b, &seq.to_string(), Some(seq)).await;
        expect_at(&mut on_a, &seq.to_string(), Some(seq)).await;
    }
    publish_at(&b, stream, "from-b", Some(u64::MAX)).await;
    expect_at(&mut on_a, "from-b", Some(u64::MAX)).await;
    expect_at(&mut on_b, "from-b", Some(u64::MAX)).await;

    // A positioned chat_message on a conversation crosses nodes too.
    publish_at(&a, ConversationId(u.0), "msg", Some(3)).await;
    expect_at(&mut same_id, "msg", Some(3)).await;

    for reg in [&mut on_a, &mut on_b, &mut same_id] {
        assert_eq!(recv_within(reg, SHORT).await, None);
    }
    assert_eq!(a.stats().resyncs_sent + b.stats().resyncs_sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_user_on_user_topics_across_nodes() {
    let Some(url) = redis_url("except_user_on_user_topics_across_nodes") else {
        return;
    };
    let (a, _b, u, mut on_a, mut on_b) = user_stream_on_two_nodes(&url, "user-except").await;
    let stream = Topic::User(u);
    a.publish_frame(stream, frame_of("hidden"), Some(1), Audience::ExceptUser(u))
        .await;
    a.publish_frame(
        stream,
        frame_of("shown"),
        Some(2),
        Audience::ExceptUser(user(0)),
    )
    .await;
    for reg in [&mut on_a, &mut on_b] {
        expect_at(reg, "shown", Some(2)).await;
        assert_eq!(recv_within(reg, SHORT).await, None);
    }
}

/// `resync_all` concerns this node's sockets only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_all_is_local_to_the_node() {
    let Some(url) = redis_url("resync_all_is_local_to_the_node") else {
        return;
    };
    let (a, _b, _, mut on_a, mut on_b) = user_stream_on_two_nodes(&url, "resync-local").await;
    a.resync_all().await;
    assert_eq!(
        recv_within(&mut on_a, Duration::from_secs(5)).await,
        Some(Outbound::Resync)
    );
    assert_eq!(recv_within(&mut on_b, SHORT).await, None);
    assert_eq!(recv_within(&mut on_a, SHORT).await, None);
}
