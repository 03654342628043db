//! Resyncs caused by another node's relay failures, with a private
//! redis-server child process per test (skipped when `redis-server` is not
//! on PATH).
#![allow(clippy::unwrap_used)]

mod common;
mod private_redis;

use chat_realtime::{Outbound, Realtime, RealtimeConfig, Registration, Topic};
use common::*;
use private_redis::{RedisServer, drain_seeing_resync, wait_for_cross_node};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

async fn two_nodes(port: u16, test: &str) -> (Realtime, Realtime) {
    let cfg = RealtimeConfig {
        socket_queue: 1024,
        command_timeout: COMMAND_TIMEOUT,
        ..config(Some(RedisServer::url(port)), test)
    };
    let a = Realtime::start(cfg.clone()).await.unwrap();
    let b = Realtime::start(cfg).await.unwrap();
    (a, b)
}

/// Waits until `node` counts a relay failure.
async fn wait_for_relay_failure(node: &Realtime) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.stats().relay_failures == 0 {
        assert!(Instant::now() < deadline, "no relay failure counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads items (frames may come first) until a resync arrives.
async fn wait_for_resync(reg: &mut Registration, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match recv_within(reg, left).await {
            Some(Outbound::Resync) => return,
            Some(Outbound::Frame { .. }) => {}
            None => panic!("no resync within {wait:?}"),
        }
    }
}

/// Makes Redis hold every write command, PUBLISH included, for `ms`
/// milliseconds, while connections stay up and PING is still answered.
fn pause_writes(port: u16, ms: u64) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(format!("CLIENT PAUSE {ms} WRITE\r\n").as_bytes())
        .unwrap();
    let mut reply = [0u8; 5];
    conn.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

/// The scenario as an operator sees it: node A publishes while Redis is
/// down; once Redis is back, B's socket hears it may have missed events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_lost_while_redis_was_down_resync_other_nodes() {
    if !RedisServer::installed("publishes_lost_while_redis_was_down_resync_other_nodes") {
        return;
    }
    let port = RedisServer::free_port();
    let mut server = RedisServer::start(port);
    let (a, b) = two_nodes(port, "down-publish").await;
    let u = user(3);
    let stream = Topic::User(u);
    let mut on_b = b.join(stream, u).await.unwrap();
    assert!(!wait_for_cross_node(&a, stream, &mut on_b).await);

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.check().await.is_ok() {
        assert!(Instant::now() < deadline, "check() kept answering Ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for seq in 1..=5 {
        publish_at(&a, stream, "lost", Some(seq)).await;
    }
    wait_for_relay_failure(&a).await;

    server = RedisServer::start(port);
    wait_for_resync(&mut on_b, Duration::from_secs(20)).await;
    wait_for_cross_node(&a, stream, &mut on_b).await;
    server.stop();
}

/// Relay failures alone: Redis holds A's publishes (and answers them too
/// late) while every connection stays up, so B's subscriber never
/// reconnects and B's socket can only learn of the loss from A's
/// announcement on the control channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_relay_failures_resync_sockets() {
    if !RedisServer::installed("another_nodes_relay_failures_resync_sockets") {
        return;
    }
    let port = RedisServer::free_port();
    let _server = RedisServer::start(port);
    let (a, b) = two_nodes(port, "relay-failure").await;
    let u = user(4);
    let stream = Topic::User(u);
    let mut on_b = b.join(stream, u).await.unwrap();
    let mut on_a = a.join(stream, u).await.unwrap();
    assert!(!wait_for_cross_node(&a, stream, &mut on_b).await);
    drain_seeing_resync(&mut on_a, Duration::from_millis(100)).await;

    // Control: a pause during which nothing is published resyncs nobody.
    pause_writes(port, 1000);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        recv_within(&mut on_b, Duration::from_millis(800)).await,
        None
    );
    assert_eq!(b.stats().resyncs_sent, 0);

    // A's publishes time out while writes are held.
    pause_writes(port, 1500);
    for seq in 1..=5 {
        publish_at(&a, stream, "held", Some(seq)).await;
    }
    wait_for_relay_failure(&a).await;
    wait_for_resync(&mut on_b, Duration::from_secs(10)).await;
    // A's own socket got every event locally and needs no resync.
    for seq in 1..=5 {
        expect_at(&mut on_a, "held", Some(seq)).await;
    }
    assert_eq!(
        recv_within(&mut on_a, Duration::from_millis(300)).await,
        None
    );
    wait_for_cross_node(&a, stream, &mut on_b).await;
}

/// With nothing published during an outage, the subscribers' reconnection
/// alone resyncs every socket (an event published by a node this one did
/// not hear of could have been missed), the one joined during the outage
/// included, once the SUBSCRIBEs are confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_reconnection_resyncs_every_socket() {
    if !RedisServer::installed("subscriber_reconnection_resyncs_every_socket") {
        return;
    }
    let port = RedisServer::free_port();
    let mut server = RedisServer::start(port);
    let (a, b) = two_nodes(port, "reconnect").await;
    let c = conv();
    let u = user(5);
    let mut on_a = a.join(c, user(1)).await.unwrap();
    let mut on_b = b.join(Topic::User(u), u).await.unwrap();

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.check().await.is_ok() || b.check().await.is_ok() {
        assert!(Instant::now() < deadline, "check() kept answering Ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = Topic::User(user(6));
    let mut late_b = b.join(late, user(6)).await.unwrap();

    server = RedisServer::start(port);
    for reg in [&mut on_a, &mut on_b, &mut late_b] {
        wait_for_resync(reg, Duration::from_secs(20)).await;
    }
    assert_eq!(a.stats().relay_failures + b.stats().relay_failures, 0);
    wait_for_cross_node(&b, Topic::Conversation(c), &mut on_a).await;
    wait_for_cross_node(&a, Topic::User(u), &mut on_b).await;
    wait_for_cross_node(&a, late, &mut late_b).await;
    server.stop();
}
