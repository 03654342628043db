//! A real WebSocket client for the tests (tokio-tungstenite).

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// Opens `/ws/chat/{conv}/` with the token in the query string.
pub async fn open(base_ws: &str, conv: impl std::fmt::Display, token: &str) -> Ws {
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{base_ws}/ws/chat/{conv}/?token={token}"))
            .await
            .expect("websocket upgrade");
    ws
}

/// Opens with the token in an `Authorization: Bearer` header.
pub async fn open_with_header(base_ws: &str, conv: impl std::fmt::Display, token: &str) -> Ws {
    let mut req = format!("{base_ws}/ws/chat/{conv}/")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket upgrade");
    ws
}

/// Opens the user stream `/ws/chat/` with `query` (e.g. `since=3`) and
/// returns it with its first frame.
pub async fn stream(server: &chat_tests::TestServer, token: &str, query: &str) -> (Ws, Value) {
    let url = server.ws_url(&format!("/ws/chat/?token={token}&{query}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    let first = next(&mut ws).await;
    (ws, first)
}

/// The `seq` of a stream frame.
pub fn seq(v: &Value) -> i64 {
    v["seq"].as_i64().unwrap_or_else(|| panic!("seq in {v}"))
}

/// Opens and checks the first frame is `connection_established`.
pub async fn join(base_ws: &str, conv: i64, token: &str) -> Ws {
    let mut ws = open(base_ws, conv, token).await;
    let first = next(&mut ws).await;
    assert_eq!(first["type"], "connection_established", "{first}");
    assert_eq!(first["conversation_id"], conv);
    ws
}

/// The next JSON text frame other than `presence` (pings are answered by
/// tungstenite while reading). Presence comes and goes with the sockets a
/// test opens; the presence tests read it with [`next_with_presence`].
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let v = next_with_presence(ws).await;
        if v["type"] != "presence" {
            return v;
        }
    }
}

/// The next JSON text frame, whatever it is.
pub async fn next_with_presence(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Close(c) => panic!("socket closed: {c:?}"),
            _ => continue,
        }
    }
}

/// The next frame of type `kind`, skipping others.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Asserts no text frame other than `presence` arrives within `ms`.
pub async fn silent(ws: &mut Ws, ms: u64) {
    silent_but(ws, ms, Some("presence")).await
}

/// Asserts no text frame at all arrives within `ms`.
pub async fn silent_entirely(ws: &mut Ws, ms: u64) {
    silent_but(ws, ms, None).await
}

async fn silent_but(ws: &mut Ws, ms: u64, allowed: Option<&str>) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => {
                let kind = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_owned));
                if allowed.is_some() && kind.as_deref() == allowed {
                    continue;
                }
                panic!("unexpected frame: {t}")
            }
            Ok(Some(Ok(Message::Close(c)))) => panic!("unexpected close: {c:?}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

/// The close code the server closes with.
pub async fn close_code(ws: &mut Ws) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    }
}

/// Sends a JSON text frame.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Sends a raw text frame.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}
