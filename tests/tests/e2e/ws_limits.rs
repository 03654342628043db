//! Frame limits on the sockets: text frames up to 1 MiB are read and
//! answered (API.md); a frame announcing more is refused from its header,
//! before it is buffered, and so is a fragmented message whose total
//! crosses the limit (1009); invalid UTF-8 closes with 1007.

use crate::raw_ws::{self, RawWs};
use crate::support::*;
use crate::ws_support::*;
use serde_json::json;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

async fn history_count(api: &Api, conv: i64, token: &str) -> i64 {
    let path = format!("/api/chat/conversations/{conv}/messages/");
    let (status, page) = api.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    page["count"].as_i64().expect("count")
}

/// A `chat_message` frame of exactly `size` bytes.
fn message_of_size(size: usize) -> String {
    let empty = json!({"type": "chat_message", "content": ""}).to_string();
    json!({"type": "chat_message", "content": "y".repeat(size - empty.len())}).to_string()
}

#[tokio::test]
async fn text_frames_up_to_a_mebibyte_are_answered_larger_close_with_1009() {
    let (server, api, ta, _, conv, _, _) = pair_server().await;
    let mut wa = join(&server.ws_url(""), conv, &ta).await;
    // API.md: a 100,000-character content gets an `error` event.
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "x".repeat(100_000), "client_id": "big"}),
    )
    .await;
    let answer = next(&mut wa).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["client_id"], "big");
    // A frame of exactly 1 MiB is still read and answered.
    let frame = message_of_size(MIB);
    assert_eq!(frame.len(), MIB);
    send_text(&mut wa, &frame).await;
    assert_eq!(next(&mut wa).await["type"], "error");
    // The socket is open and works.
    send(&mut wa, json!({"type": "chat_message", "content": "small"})).await;
    assert_eq!(next(&mut wa).await["content"], "small");
    // One byte more closes it.
    send_text(&mut wa, &message_of_size(MIB + 1)).await;
    assert_eq!(close_code(&mut wa).await, 1009);
    assert_eq!(
        history_count(&api, conv, &ta).await,
        1,
        "only the small one"
    );
}

/// Opens a raw socket on the conversation and reads its first frame.
async fn raw(server: &TestServer, conv: i64, token: &str) -> RawWs {
    let mut ws = RawWs::open(server.addr, &format!("/ws/chat/{conv}/?token={token}")).await;
    assert_eq!(ws.next_json().await["type"], "connection_established");
    ws
}

async fn close_within(ws: &mut RawWs, limit: Duration) -> u16 {
    let started = Instant::now();
    let code = tokio::time::timeout(limit, ws.close_code())
        .await
        .unwrap_or_else(|_| panic!("no close within {limit:?}"));
    eprintln!("closed with {code} after {:?}", started.elapsed());
    code
}

#[tokio::test]
async fn a_header_announcing_2_pow_62_bytes_is_refused_at_once() {
    let (server, _, ta, _, conv, _, _) = pair_server().await;
    let mut ws = raw(&server, conv, &ta).await;
    ws.header(true, raw_ws::TEXT, 1 << 62).await;
    assert_eq!(close_within(&mut ws, Duration::from_secs(1)).await, 1009);
}

#[tokio::test]
async fn a_trickled_200_mb_frame_is_refused_from_its_header() {
    let (server, _, ta, _, conv, _, _) = pair_server().await;
    let mut ws = raw(&server, conv, &ta).await;
    let mask = ws.header(true, raw_ws::TEXT, 200_000_000).await;
    let code = tokio::time::timeout(
        Duration::from_secs(1),
        ws.trickle_until_closed(mask, 1024, Duration::from_millis(5)),
    )
    .await
    .expect("closed within a second while the payload trickles in");
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    let (server, _, ta, _, conv, _, _) =
        pair_on(TestServer::start_with(&[("CHAT__WEBSOCKET__MAX_FRAME_BYTES", "100000")]).await)
            .await;
    let mut ws = raw(&server, conv, &ta).await;
    // Each fragment fits; together they cross the limit.
    ws.frame(false, raw_ws::TEXT, &vec![b'a'; 60_000]).await;
    let mask = ws.header(false, raw_ws::CONTINUATION, 60_000).await;
    let code = tokio::time::timeout(
        Duration::from_secs(1),
        ws.trickle_until_closed(mask, 1024, Duration::from_millis(5)),
    )
    .await
    .expect("closed within a second, from the continuation's header");
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn fragments_within_the_limit_are_joined_even_mid_character() {
    let (server, _, ta, _, conv, _, _) = pair_server().await;
    let mut ws = raw(&server, conv, &ta).await;
    let text = json!({"type": "chat_message", "content": "café au lait"}).to_string();
    let bytes = text.as_bytes();
    // Split inside the two bytes of "é".
    let cut = text.find('é').expect("é") + 1;
    ws.frame(false, raw_ws::TEXT, &bytes[..cut]).await;
    ws.frame(true, raw_ws::PING, b"between").await;
    ws.frame(true, raw_ws::CONTINUATION, &bytes[cut..]).await;
    let event = loop {
        let v = ws.next_json().await;
        if v["type"] != "presence" {
            break v;
        }
    };
    assert_eq!(event["content"], "café au lait", "{event}");
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let (server, _, ta, _, conv, _, _) = pair_server().await;
    let mut ws = raw(&server, conv, &ta).await;
    ws.frame(true, raw_ws::TEXT, b"{\"type\": \"\xff\xfe\"}")
        .await;
    assert_eq!(close_within(&mut ws, Duration::from_secs(2)).await, 1007);

    // Also when the bad byte is in a later fragment.
    let mut ws = raw(&server, conv, &ta).await;
    ws.frame(false, raw_ws::TEXT, b"{\"type\": \"ab\xe2").await;
    ws.frame(true, raw_ws::CONTINUATION, b"\x28\"}").await;
    assert_eq!(close_within(&mut ws, Duration::from_secs(2)).await, 1007);
}

#[tokio::test]
async fn binary_frames_are_still_answered_not_closed() {
    let (server, _, ta, _, conv, _, _) = pair_server().await;
    let mut ws = raw(&server, conv, &ta).await;
    ws.frame(true, raw_ws::BINARY, &[0xff, 0x00, 0x01]).await;
    assert_eq!(ws.next_json().await["type"], "error");
}
