//! What a client gets wrong is not logged as an error: the real server,
//! with the filter `chat-server` logs through, is sent malformed requests
//! over TCP, and its log output (captured from a global subscriber, so
//! every worker thread's lines are in it) has no ERROR line.

use chat_server::Settings;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `raw` on a new connection and reads until the server closes it
/// (or a second passes).
fn exchange(addr: SocketAddr, raw: &[u8], half_close: bool) -> String {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    tcp.write_all(raw).expect("write");
    if half_close {
        let _ = tcp.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_requests_log_no_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(chat_server::log_filter(None))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let dir = std::env::temp_dir().join(format!("chat-log-levels-{}", std::process::id()));
    let vars: Vec<(String, String)> = [
        ("CHAT_CONFIG_DIR", "/nonexistent-config-dir"),
        ("PORT", "0"),
        (
            "CHAT__DATABASE__DATA_DIR",
            dir.to_str().expect("utf-8 path"),
        ),
        ("CHAT__SERVER__WORKERS", "1"),
        ("CHAT__SERVER__SHUTDOWN_TIMEOUT_SECONDS", "1"),
        ("CHAT__LIMITS__BODY_TIMEOUT_MS", "500"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    std::fs::create_dir_all(&dir).expect("data dir");
    let settings = Settings::load_from(&vars).expect("settings");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let running = chat_server::start(settings).await.expect("starts");
            let _ = tx.send((running.addr, running.handle.clone()));
            let _ = running.server.await;
        });
    });
    let (addr, handle) = rx.recv().expect("server");

    let answers = [
        // Not HTTP at all.
        exchange(addr, b"\x16\x03\x01garbage\r\n\r\n", false),
        // A header line without a colon.
        exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            false,
        ),
        // A chunked body with a broken chunk size.
        exchange(
            addr,
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            false,
        ),
        // A body shorter than its Content-Length, then the client leaves.
        exchange(
            addr,
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"user",
            true,
        ),
        // A body that never ends (answered 408 by the body deadline).
        exchange(
            addr,
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"user",
            false,
        ),
        // Malformed JSON, and a method nobody serves.
        exchange(
            addr,
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\n{nope",
            false,
        ),
        exchange(
            addr,
            b"BREW /api/auth/token/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        ),
    ];
    assert!(answers[1].starts_with("HTTP/1.1 400"), "{}", answers[1]);
    assert!(answers[4].starts_with("HTTP/1.1 408"), "{}", answers[4]);
    assert!(answers[5].starts_with("HTTP/1.1 400"), "{}", answers[5]);
    assert!(answers[6].starts_with("HTTP/1.1 405"), "{}", answers[6]);
    std::thread::sleep(Duration::from_millis(300));
    drop(handle.stop(false));

    let logs = String::from_utf8(
        captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    )
    .expect("utf-8");
    assert!(
        logs.contains("status=405"),
        "the capture holds the server's lines: {logs}"
    );
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "client mistakes logged as errors: {errors:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
