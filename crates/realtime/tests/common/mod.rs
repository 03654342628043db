//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use chat_domain::{ConversationId, ServerEvent, UserId};
use chat_realtime::{Audience, Outbound, Realtime, RealtimeConfig, Registration, Topic};
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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

/// Asserts the next item is the unpositioned event tagged `tag`.
pub async fn expect(reg: &mut Registration, tag: &str) {
    expect_at(reg, tag, None).await;
}

/// Asserts the next item is the event tagged `tag` at `position`.
pub async fn expect_at(reg: &mut Registration, tag: &str, position: Option<u64>) {
    let got = recv_within(reg, Duration::from_secs(5)).await;
    assert_eq!(got, Some(item(tag, position)), "expected event {tag}");
}

/// Asserts the next item is a resync.
pub async fn expect_resync(reg: &mut Registration, wait: Duration) {
    let got = recv_within(reg, wait).await;
    assert_eq!(got, Some(Outbound::Resync), "expected a resync");
}

/// Reads until `wait` passes without an item; whether a resync was among them.
pub async fn drain_seeing_resync(reg: &mut Registration, wait: Duration) -> bool {
    let mut resync = false;
    while let Some(got) = recv_within(reg, wait).await {
        resync |= got == Outbound::Resync;
    }
    resync
}

/// Publishes probes on `from` until one reaches `to` (bounded), then waits
/// until `to` is quiet so later assertions see only new items; whether `to`
/// got a resync meanwhile.
pub async fn wait_for_cross_node(from: &Realtime, topic: Topic, to: &mut Registration) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resync = false;
    for k in 1.. {
        let probe = frame_of(&format!("probe-{k}"));
        from.publish_frame(topic, probe, None, Audience::Everyone)
            .await;
        match recv_within(to, Duration::from_millis(300)).await {
            Some(Outbound::Frame { .. }) => break,
            Some(Outbound::Resync) => resync = true,
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not resume"
        );
    }
    drain_seeing_resync(to, Duration::from_millis(300)).await || resync
}

/// Asserts nothing arrives within `wait`.
pub async fn expect_nothing(reg: &mut Registration, wait: Duration) {
    if let Ok(Some(f)) = timeout(wait, reg.outbound.recv()).await {
        panic!("unexpected item {f:?}");
    }
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
pub fn unique_prefix(test: &str) -> String {
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

/// A user id unlikely to collide between tests sharing one Redis.
pub fn unique_user() -> UserId {
    UserId((random_u64() >> 2) as i64)
}

/// Publishes the event tagged `tag` at `position` to everyone on `topic`.
pub async fn publish_at(rt: &Realtime, topic: impl Into<Topic>, tag: &str, position: Option<u64>) {
    rt.publish_frame(topic, frame_of(tag), position, Audience::Everyone)
        .await;
}

pub fn config(redis_url: Option<String>, prefix: &str) -> RealtimeConfig {
    RealtimeConfig {
        redis_url,
        channel_prefix: prefix.to_owned(),
        ..RealtimeConfig::default()
    }
}

pub async fn local() -> Realtime {
    Realtime::start(config(None, "local:")).await.unwrap()
}

/// `TEST_REDIS_URL`, or None after printing a skip line.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("SKIP {test}: TEST_REDIS_URL not set");
            None
        }
    }
}

/// Whether a program is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}

/// A private redis-server on a free port, or None after printing a skip
/// line when `redis-server` is not on PATH.
pub fn private_redis(test: &str) -> Option<RedisServer> {
    if !on_path("redis-server") {
        println!("SKIP {test}: redis-server not on PATH");
        return None;
    }
    Some(RedisServer::start(RedisServer::free_port()))
}

/// A private redis-server child process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }

    /// Starts redis-server on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer {
            port,
            child: Some(child),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Captured log output of the whole test process.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

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
    pub fn capture() -> Logs {
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}
