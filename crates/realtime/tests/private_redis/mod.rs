//! A redis-server child process of the test's own, for the tests that stop
//! and start Redis (skipped when `redis-server` is not on PATH).

use crate::common::{ev, recv_within};
use chat_domain::ConversationId;
use chat_realtime::{Audience, Realtime, Registration};
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

/// Publishes probes on `from` until one reaches `to` (bounded: Redis was
/// just started), then waits until `to` is quiet so later assertions see
/// only new frames.
pub async fn wait_for_cross_node(from: &Realtime, c: ConversationId, to: &mut Registration) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    loop {
        k += 1;
        from.publish(c, &ev(&format!("probe-{k}")), Audience::Everyone)
            .await;
        if recv_within(to, Duration::from_millis(300)).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not start"
        );
    }
    while recv_within(to, Duration::from_millis(300)).await.is_some() {}
}
