//! Starting while Redis is unreachable (private redis-server started later;
//! skipped when `redis-server` is not on PATH).
#![allow(clippy::unwrap_used)]

mod common;
mod private_redis;

use chat_realtime::{Audience, Realtime, RealtimeConfig, Registration, Topic};
use common::*;
use private_redis::{RedisServer, drain_seeing_resync, wait_for_cross_node};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Asserts the next item is the unpositioned event tagged `tag` (not in
/// `common`: redis_resync expects positioned items only).
async fn expect(reg: &mut Registration, tag: &str) {
    expect_at(reg, tag, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down_and_connects_later() {
    if !RedisServer::installed("starts_while_redis_is_down_and_connects_later") {
        return;
    }
    let port = RedisServer::free_port();
    let cfg = RealtimeConfig {
        socket_queue: 1024,
        command_timeout: Duration::from_millis(500),
        ..config(Some(RedisServer::url(port)), "startup")
    };
    let started = Instant::now();
    let a = timeout(Duration::from_secs(5), Realtime::start(cfg.clone()))
        .await
        .expect("start is bounded")
        .unwrap();
    let b = timeout(Duration::from_secs(5), Realtime::start(cfg.clone()))
        .await
        .expect("start is bounded")
        .unwrap();
    println!("two starts with Redis down took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(a.is_distributed());
    assert!(a.check().await.unwrap_err().starts_with("redis: "));

    let c = conv();
    let mut on_a = timeout(Duration::from_secs(3), a.join(c, user(1)))
        .await
        .expect("join is bounded")
        .unwrap();
    let mut on_b = timeout(Duration::from_secs(3), b.join(c, user(2)))
        .await
        .expect("join is bounded")
        .unwrap();
    a.publish(c, &ev("local"), Audience::Everyone).await;
    expect(&mut on_a, "local").await;

    // Both sockets joined before their SUBSCRIBE could be confirmed: each
    // gets a resync once it is, so the API re-reads what they missed.
    let _server = RedisServer::start(port);
    let resynced_b = wait_for_cross_node(&a, Topic::Conversation(c), &mut on_b).await;
    assert!(
        resynced_b,
        "socket joined while Redis was down got no resync"
    );
    assert!(drain_seeing_resync(&mut on_a, Duration::from_millis(300)).await);
    // Nothing was live before the first connection: no resync for sockets
    // that join once it is up.
    let mut later = b.join(Topic::User(user(5)), user(5)).await.unwrap();
    publish_at(&a, Topic::User(user(5)), "live", Some(1)).await;
    expect_at(&mut later, "live", Some(1)).await;
    assert_eq!(
        recv_within(&mut later, Duration::from_millis(500)).await,
        None
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.check().await.is_err() {
        assert!(Instant::now() < deadline, "check() stayed Err");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
