//! Redis going away and coming back, with a private redis-server child
//! process (skipped when `redis-server` is not on PATH). One test per
//! process, so the captured logs belong to it.
#![allow(clippy::unwrap_used)]

mod common;
mod private_redis;

use chat_realtime::{Audience, Realtime, RealtimeConfig, Registration, Topic};
use common::*;
use private_redis::{RedisServer, drain_seeing_resync, wait_for_cross_node};
use std::time::{Duration, Instant};
use tokio::time::timeout;

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Asserts the next item is the unpositioned event tagged `tag` (not in
/// `common`: redis_resync expects positioned items only).
async fn expect(reg: &mut Registration, tag: &str) {
    expect_at(reg, tag, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_restart() {
    if !RedisServer::installed("survives_redis_restart") {
        return;
    }
    let logs = Logs::capture();
    let port = RedisServer::free_port();
    let mut server = RedisServer::start(port);
    let cfg = RealtimeConfig {
        socket_queue: 4096,
        command_timeout: COMMAND_TIMEOUT,
        ..config(Some(RedisServer::url(port)), "fault")
    };
    let a = Realtime::start(cfg.clone()).await.unwrap();
    let b = Realtime::start(cfg.clone()).await.unwrap();
    assert_eq!(a.check().await, Ok(()));
    let c = conv();
    let mut on_a = a.join(c, user(1)).await.unwrap();
    let mut on_b = b.join(c, user(2)).await.unwrap();
    a.publish(c, &ev("before"), Audience::Everyone).await;
    expect(&mut on_b, "before").await;
    expect(&mut on_a, "before").await;

    // --- Redis goes away.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let started = Instant::now();
        let res = timeout(Duration::from_secs(3), a.check())
            .await
            .expect("check() is bounded");
        assert!(started.elapsed() < COMMAND_TIMEOUT + Duration::from_millis(300));
        if let Err(reason) = res {
            assert!(reason.starts_with("redis: "), "{reason}");
            break;
        }
        assert!(Instant::now() < deadline, "check() kept answering Ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Publishing neither blocks nor fails, and local sockets still get it.
    let started = Instant::now();
    for i in 0..300 {
        let one = Instant::now();
        a.publish(c, &ev(&format!("down-{i}")), Audience::Everyone)
            .await;
        assert!(
            one.elapsed() < Duration::from_millis(100),
            "publish blocked"
        );
    }
    println!("300 publishes while down took {:?}", started.elapsed());
    for i in 0..300 {
        expect(&mut on_a, &format!("down-{i}")).await;
    }

    // Joining while down returns within about the command timeout.
    let c2 = conv();
    let started = Instant::now();
    let mut late_b = timeout(Duration::from_secs(5), b.join(c2, user(3)))
        .await
        .expect("join is bounded")
        .unwrap();
    assert!(started.elapsed() < COMMAND_TIMEOUT + Duration::from_millis(500));
    b.publish(c2, &ev("local-while-down"), Audience::Everyone)
        .await;
    expect(&mut late_b, "local-while-down").await;
    assert!(b.check().await.is_err());

    // Give the reconnect loop a few failed attempts, then count the logs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_logs = logs.count("redis unavailable");
    assert!(
        (1..=2).contains(&down_logs),
        "one 'unavailable' log per node expected, got {down_logs}:\n{}",
        logs.text()
    );

    // --- Redis is back on the same port; same instances. Every socket
    // hears that it may have missed events (both subscribers reconnected;
    // b also failed to relay), the one joined during the outage included.
    server = RedisServer::start(port);
    let t = Topic::Conversation(c);
    let mut resynced_b = wait_for_cross_node(&a, t, &mut on_b).await;
    let mut resynced_a = drain_seeing_resync(&mut on_a, Duration::from_millis(100)).await;
    // The socket joined during the outage is subscribed too.
    let resynced_late = wait_for_cross_node(&a, Topic::Conversation(c2), &mut late_b).await;
    // And the other direction.
    resynced_a |= wait_for_cross_node(&b, t, &mut on_a).await;
    resynced_b |= drain_seeing_resync(&mut on_b, Duration::from_millis(100)).await;
    assert!(resynced_a && resynced_b && resynced_late);
    assert!(a.stats().resyncs_sent >= 1 && b.stats().resyncs_sent >= 2);

    // Order holds again across nodes.
    for i in 0..100 {
        a.publish(c, &ev(&format!("after-{i}")), Audience::Everyone)
            .await;
    }
    for i in 0..100 {
        expect(&mut on_b, &format!("after-{i}")).await;
        expect(&mut on_a, &format!("after-{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.check().await.is_err() || b.check().await.is_err() {
        assert!(Instant::now() < deadline, "check() stayed Err");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        logs.count("redis unavailable"),
        down_logs,
        "{}",
        logs.text()
    );
    let up_logs = logs.count("redis available again");
    assert!((1..=2).contains(&up_logs), "{}", logs.text());
    println!("--- captured logs ---\n{}", logs.text());
    server.stop();
}

/// Captured log output of the whole test process.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Installs a global subscriber writing into the returned buffer (once per process).
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("one log capture per test process");
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}
