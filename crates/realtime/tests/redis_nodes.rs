//! Two `Realtime` instances ("nodes") on one real Redis (`TEST_REDIS_URL`).
#![allow(clippy::unwrap_used)]

mod common;

use chat_realtime::{Audience, Realtime, RealtimeConfig};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(300);

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
        assert_eq!(&**f, frame_of(&i.to_string()), "position {i}");
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
    let channel = format!("{}conv:{c}", cfg.channel_prefix);
    let b = Realtime::start(cfg).await.unwrap();
    let numsub = || -> String {
        let out = Command::new("redis-cli")
            .args(["-u", &url, "PUBSUB", "NUMSUB", &channel])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let r1 = b.join(c, user(1)).await.unwrap();
    let r2 = b.join(c, user(2)).await.unwrap();
    assert_eq!(numsub(), "1");
    b.leave(c, r1.socket);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(numsub(), "1", "one socket is still there");
    b.leave(c, r2.socket);
    let deadline = Instant::now() + Duration::from_secs(5);
    while numsub() != "0" {
        assert!(Instant::now() < deadline, "channel still subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
