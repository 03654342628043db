//! A redis-server child process of the test's own, for the tests that stop
//! and start Redis (skipped when `redis-server` is not on PATH), and the
//! waits for cross-node delivery (and the resyncs it brings) once it is up.

use crate::common::{publish_at, recv_within};
use chat_realtime::{Outbound, Realtime, Registration, Topic};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private redis-server child process, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
}

impl RedisServer {
    /// Whether redis-server is on PATH; prints a skip line for `test` when not.
    pub fn installed(test: &str) -> bool {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| p.join("redis-server").is_file()))
            .unwrap_or(false);
        if !found {
            println!("SKIP {test}: redis-server not on PATH");
        }
        found
    }

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
        RedisServer { child: Some(child) }
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

/// Reads until `wait` passes without an item; whether a resync was among them.
pub async fn drain_seeing_resync(reg: &mut Registration, wait: Duration) -> bool {
    let mut resync = false;
    while let Some(got) = recv_within(reg, wait).await {
        resync |= got == Outbound::Resync;
    }
    resync
}

/// Publishes probes on `from` until one reaches `to` (bounded: Redis was
/// just started), then waits until `to` is quiet so later assertions see
/// only new items; whether `to` got a resync meanwhile.
pub async fn wait_for_cross_node(from: &Realtime, topic: Topic, to: &mut Registration) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resync = false;
    for k in 1.. {
        publish_at(from, topic, &format!("probe-{k}"), None).await;
        match recv_within(to, Duration::from_millis(300)).await {
            Some(Outbound::Frame { .. }) => break,
            Some(Outbound::Resync) => resync = true,
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not start"
        );
    }
    drain_seeing_resync(to, Duration::from_millis(300)).await || resync
}
