//! A client that stops reading is cut off within a bounded time
//! (`websocket.write_timeout_seconds`) with its memory bounded, even while
//! a write to it is pending; everyone else keeps receiving.

use crate::raw_ws::RawWs;
use crate::support::*;
use crate::ws_support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Sends `n` messages of `size` characters from `sender`, each once the
/// previous one came back (so the sender never lags), while `readers`
/// read everything they get; returns once every reader has every message.
async fn flood(base: &str, conv: i64, sender: &str, readers: &[&str], n: usize, size: usize) {
    let mut ws = join(base, conv, sender).await;
    let mut tasks = Vec::new();
    for token in readers {
        let mut reader = join(base, conv, token).await;
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                if next(&mut reader).await["type"] == "chat_message" {
                    got += 1;
                }
            }
        }));
    }
    let content = "z".repeat(size);
    for i in 0..n {
        let frame = json!({"type": "chat_message", "content": format!("{i} {content}")});
        send(&mut ws, frame).await;
        assert_eq!(
            next_of(&mut ws, "chat_message").await["content"]
                .as_str()
                .map(|c| c.split(' ').next()),
            Some(Some(i.to_string().as_str()))
        );
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every reader got every message in time")
            .expect("reader");
    }
}

/// Whether the raw socket's connection ends (EOF or reset) within `limit`
/// once it is read again; a connection still served goes on delivering.
async fn ends_within(ws: &mut RawWs, limit: Duration) -> bool {
    tokio::time::timeout(limit, async { while ws.read_frame().await.is_some() {} })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_within_the_write_timeout() {
    let (server, _, ta, tb, conv, _, _) =
        pair_on(TestServer::start_with(&[("CHAT__WEBSOCKET__WRITE_TIMEOUT_SECONDS", "2")]).await)
            .await;
    let base = server.ws_url("");
    // Bob's first socket never reads after the upgrade.
    let mut stalled =
        RawWs::open_with_recv_buffer(server.addr, &format!("/ws/chat/{conv}/?token={tb}"), 4096)
            .await;
    let started = Instant::now();
    flood(&base, conv, &ta, &[&tb], 1500, 4000).await;
    eprintln!("flood took {:?}", started.elapsed());
    // Within the write timeout (plus the kernel's probe interval) of the
    // stall, the server has let the connection go.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        ends_within(&mut stalled, Duration::from_secs(3)).await,
        "the stalled client's connection is still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_socket_dropped_by_its_queue_lets_go_even_while_a_write_is_pending() {
    // The write timeout is long, so only the queue overflow can end it.
    let (server, _, ta, tb, conv, _, _) = pair_on(
        TestServer::start_with(&[
            ("CHAT__WEBSOCKET__WRITE_TIMEOUT_SECONDS", "120"),
            ("CHAT__REDIS__SOCKET_QUEUE", "16"),
            ("CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER", "1"),
        ])
        .await,
    )
    .await;
    let base = server.ws_url("");
    let _stalled =
        RawWs::open_with_recv_buffer(server.addr, &format!("/ws/chat/{conv}/?token={tb}"), 4096)
            .await;
    flood(&base, conv, &ta, &[], 1500, 4000).await;
    // Bob's only slot was held by the stalled socket: it must be free now.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut ws = open(&base, conv, &tb).await;
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer");
        match first {
            Some(Ok(Message::Text(t))) if t.as_str().contains("connection_established") => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the stalled socket still holds bob's slot: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
