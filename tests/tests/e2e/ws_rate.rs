//! Every client frame kind is rate limited (`rate_limits.frames_per_second`
//! and `frames_burst`, per user and kind): over the limit a frame gets an
//! `error` event and changes nothing; the socket stays open.

use crate::support::*;
use crate::ws_support::*;
use serde_json::{Value, json};

/// Sends `frame` `n` times; returns the `error` events it got back in the
/// next moment.
async fn errors_for(ws: &mut Ws, frame: &Value, n: usize) -> Vec<Value> {
    for _ in 0..n {
        send(ws, frame.clone()).await;
    }
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(800);
    loop {
        match tokio::time::timeout_at(deadline, next(ws)).await {
            Ok(v) if v["type"] == "error" => errors.push(v),
            Ok(_) => {}
            Err(_) => return errors,
        }
    }
}

#[tokio::test]
async fn typing_read_and_ack_frames_are_rate_limited_and_the_socket_stays() {
    let (server, api, ta, tb, conv, _, _) = pair_on(
        TestServer::start_with(&[
            ("CHAT__RATE_LIMITS__FRAMES_PER_SECOND", "1"),
            ("CHAT__RATE_LIMITS__FRAMES_BURST", "3"),
        ])
        .await,
    )
    .await;
    let base = server.ws_url("");
    let message = api.send_message(&tb, conv, "hello").await;
    let id = message["id"].as_i64().expect("id");
    let mut wa = join(&base, conv, &ta).await;
    for frame in [
        json!({"type": "typing_indicator", "is_typing": true}),
        json!({"type": "message_read", "message_ids": [id]}),
        json!({"type": "ack", "message_id": id}),
    ] {
        let errors = errors_for(&mut wa, &frame, 10).await;
        assert!(
            !errors.is_empty()
                && errors.iter().all(|e| e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Rate limit"))),
            "{frame}: {errors:?}"
        );
        assert!(errors.len() <= 7, "the burst went through: {errors:?}");
    }
    // Still open and answering.
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "still here"}),
    )
    .await;
    assert_eq!(
        next_of(&mut wa, "chat_message").await["content"],
        "still here"
    );

    // The user stream is limited the same way.
    let (mut stream, _) = tokio_tungstenite::connect_async(format!("{base}/ws/chat/?token={ta}"))
        .await
        .expect("stream");
    assert_eq!(next(&mut stream).await["type"], "connection_established");
    let frame = json!({"type": "typing_indicator", "conversation_id": conv, "is_typing": false});
    let errors = errors_for(&mut stream, &frame, 10).await;
    assert!(!errors.is_empty(), "{errors:?}");
}
