//! The WebSocket API on one node: the seed's client flow, both token
//! transports, every close code, every bad input, heartbeat and limits.

use crate::support::*;
use crate::ws_support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn seed_client_flow() {
    let (server, api, ta, tb, conv, a, b) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = open(&base, conv, &ta).await;
    let hello = next(&mut wa).await;
    assert_eq!(
        hello,
        json!({"type": "connection_established", "message": "Connected to chat", "conversation_id": conv, "user_id": a})
    );
    let mut wb = join(&base, conv, &tb).await;

    send(
        &mut wa,
        json!({"type": "chat_message", "content": "  Hello!  "}),
    )
    .await;
    let got_b = next(&mut wb).await;
    let got_a = next(&mut wa).await;
    assert_eq!(got_a, got_b, "sender and receiver get the same event");
    assert_eq!(got_b["type"], "chat_message");
    assert_eq!(got_b["content"], "Hello!");
    assert_eq!(got_b["sender_id"], a);
    assert_eq!(got_b["sender_name"], "alice");
    assert_eq!(got_b["sender_avatar"], Value::Null);
    assert_eq!(got_b["conversation_id"], conv);
    assert!(
        got_b["created_at"]
            .as_str()
            .expect("created_at")
            .ends_with('Z')
    );
    let message_id = got_b["message_id"].as_i64().expect("message_id");
    // Stored before it was broadcast: it is in the history.
    let (_, stored) = api
        .call(
            "GET",
            &format!("/api/chat/messages/{message_id}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(stored["content"], "Hello!");

    send(
        &mut wa,
        json!({"type": "typing_indicator", "is_typing": true}),
    )
    .await;
    let typing = next(&mut wb).await;
    assert_eq!(
        typing,
        json!({"type": "typing_indicator", "user_id": a, "user_name": "alice", "is_typing": true})
    );
    silent(&mut wa, 300).await;

    send(
        &mut wb,
        json!({"type": "message_read", "message_ids": [message_id]}),
    )
    .await;
    for ws in [&mut wa, &mut wb] {
        let read = next(ws).await;
        assert_eq!(read["type"], "messages_read");
        assert_eq!(read["user_id"], b);
        assert_eq!(read["message_ids"], json!([message_id]));
        assert!(read["read_at"].as_str().expect("read_at").ends_with('Z'));
    }
    let (_, stored) = api
        .call(
            "GET",
            &format!("/api/chat/messages/{message_id}/"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(stored["is_read"], true);
}

#[tokio::test]
async fn authorization_header_transport() {
    let (server, _, ta, _, conv, a, _) = pair_server().await;
    let mut ws = open_with_header(&server.ws_url(""), conv, &ta).await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "connection_established");
    assert_eq!(hello["user_id"], a);
}

#[tokio::test]
async fn close_codes_after_upgrade() {
    let (server, api, ta, _, conv, _, _) = pair_server().await;
    let (_, tc) = api.user("carol").await;
    let base = server.ws_url("");
    let (_, tokens) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    let refresh = tokens["refresh"].as_str().expect("refresh").to_owned();

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/ws/chat/{conv}/"))
        .await
        .expect("upgrade");
    assert_eq!(close_code(&mut ws).await, 4001, "no token");
    assert_eq!(
        close_code(&mut open(&base, conv, "garbage").await).await,
        4001,
        "malformed token"
    );
    assert_eq!(
        close_code(&mut open(&base, conv, &refresh).await).await,
        4001,
        "refresh token"
    );
    assert_eq!(
        close_code(&mut open(&base, conv, &tc).await).await,
        4003,
        "not a participant"
    );
    assert_eq!(
        close_code(&mut open(&base, 999_999, &ta).await).await,
        4004,
        "no such conversation"
    );
    assert_eq!(
        close_code(&mut open(&base, "abc", &ta).await).await,
        4004,
        "not an id"
    );
    // Token checked before the conversation: a bad token on an unknown conversation is 4001.
    assert_eq!(
        close_code(&mut open(&base, 999_999, "garbage").await).await,
        4001
    );
}

#[tokio::test]
async fn bad_input_gets_error_events_and_keeps_the_socket() {
    let (server, api, ta, tb, conv, _, _) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = join(&base, conv, &ta).await;
    let mut wb = join(&base, conv, &tb).await;

    let long = "x".repeat(5001);
    let bad: Vec<(String, &str)> = vec![
        ("not json".into(), "JSON"),
        ("[1,2]".into(), "object"),
        (json!({"content": "hi"}).to_string(), "type"),
        (json!({"type": "shout"}).to_string(), "Unknown"),
        (json!({"type": 5}).to_string(), "type"),
        (json!({"type": "chat_message"}).to_string(), "content"),
        (
            json!({"type": "chat_message", "content": 5}).to_string(),
            "content",
        ),
        (
            json!({"type": "chat_message", "content": "   "}).to_string(),
            "empty",
        ),
        (
            json!({"type": "chat_message", "content": long}).to_string(),
            "5000",
        ),
        (json!({"type": "typing_indicator"}).to_string(), "is_typing"),
        (
            json!({"type": "typing_indicator", "is_typing": "yes"}).to_string(),
            "is_typing",
        ),
        (json!({"type": "message_read"}).to_string(), "message_ids"),
        (
            json!({"type": "message_read", "message_ids": "1"}).to_string(),
            "message_ids",
        ),
        (
            json!({"type": "message_read", "message_ids": ["a"]}).to_string(),
            "message_ids",
        ),
    ];
    for (i, (frame, hint)) in bad.iter().enumerate() {
        send_text(&mut wa, frame).await;
        let err = next(&mut wa).await;
        assert_eq!(err["type"], "error", "{frame}: {err}");
        let msg = err["message"].as_str().expect("message");
        assert!(msg.contains(hint), "{frame}: '{msg}' should mention {hint}");
        // The socket still works: a good message goes through.
        send(
            &mut wa,
            json!({"type": "chat_message", "content": format!("ok {i}")}),
        )
        .await;
        let ok = next_of(&mut wa, "chat_message").await;
        assert_eq!(ok["content"], format!("ok {i}"));
    }
    // Binary frames are refused the same way.
    use futures_util::SinkExt;
    wa.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2, 3,
    ]))
    .await
    .expect("send binary");
    let err = next(&mut wa).await;
    assert_eq!(err["type"], "error");
    // Only the good messages were stored and delivered.
    assert_eq!(api.history_len(&ta, conv).await, bad.len());
    for i in 0..bad.len() {
        let got = next(&mut wb).await;
        assert_eq!(
            got["content"],
            format!("ok {i}"),
            "bob sees only the good messages, none of the errors"
        );
    }
}

#[tokio::test]
async fn errors_echo_client_id() {
    let (server, _, ta, _, conv, _, _) = pair_server().await;
    let mut wa = join(&server.ws_url(""), conv, &ta).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "", "client_id": "c-1"}),
    )
    .await;
    let err = next(&mut wa).await;
    assert_eq!(
        (err["type"].as_str(), err["client_id"].as_str()),
        (Some("error"), Some("c-1"))
    );
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "x", "client_id": "y".repeat(65)}),
    )
    .await;
    let err = next(&mut wa).await;
    assert_eq!(err["type"], "error");
}

#[tokio::test]
async fn sending_after_removal_is_refused_but_reading_works() {
    let (server, api, ta, tb, conv, _, _) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = join(&base, conv, &ta).await;
    let mut wb = join(&base, conv, &tb).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "before"}),
    )
    .await;
    let before = next(&mut wb).await;
    next(&mut wa).await;
    let (_, conns) = api.call("GET", "/api/connections/", Some(&ta), None).await;
    let cid = conns["results"][0]["id"].as_i64().expect("connection id");
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/connections/{cid}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 204);

    send(
        &mut wa,
        json!({"type": "chat_message", "content": "after", "client_id": "late"}),
    )
    .await;
    let err = next(&mut wa).await;
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["client_id"], "late");
    silent(&mut wb, 300).await;
    assert_eq!(api.history_len(&tb, conv).await, 1);
    // Read receipts still work on a removed connection's history.
    send(
        &mut wb,
        json!({"type": "message_read", "message_ids": [before["message_id"]]}),
    )
    .await;
    assert_eq!(next(&mut wa).await["type"], "messages_read");
    // A new socket can still open to read.
    let _ = join(&base, conv, &ta).await;
}

#[tokio::test]
async fn http_send_and_mark_read_reach_sockets() {
    let (server, api, ta, tb, conv, a, b) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = join(&base, conv, &ta).await;
    let mut wb = join(&base, conv, &tb).await;
    let msg = api.send_message(&ta, conv, "via http").await;
    for ws in [&mut wa, &mut wb] {
        let ev = next(ws).await;
        assert_eq!(ev["type"], "chat_message");
        assert_eq!(ev["message_id"], msg["id"]);
        assert_eq!(ev["sender_id"], a);
        assert_eq!(ev["content"], "via http");
        assert_eq!(ev["created_at"], msg["created_at"]);
    }
    let (status, marked) = api
        .call(
            "POST",
            &format!("/api/chat/conversations/{conv}/mark_read/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for ws in [&mut wa, &mut wb] {
        let ev = next(ws).await;
        assert_eq!(ev["type"], "messages_read");
        assert_eq!(ev["user_id"], b);
        assert_eq!(ev["message_ids"], json!([msg["id"]]));
        assert_eq!(ev["read_at"], marked["read_at"]);
    }
    // Nothing left to mark: no event.
    let (_, marked) = api
        .call(
            "POST",
            &format!("/api/chat/conversations/{conv}/mark_read/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(marked["marked"], 0);
    silent(&mut wa, 300).await;
}

#[tokio::test]
async fn read_receipts_list_only_what_was_marked() {
    let (server, _, ta, tb, conv, _, _) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = join(&base, conv, &ta).await;
    let mut wb = join(&base, conv, &tb).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "from a"}),
    )
    .await;
    let from_a = next(&mut wb).await["message_id"].as_i64().expect("id");
    next(&mut wa).await;
    send(
        &mut wb,
        json!({"type": "chat_message", "content": "from b"}),
    )
    .await;
    let from_b = next(&mut wa).await["message_id"].as_i64().expect("id");
    next(&mut wb).await;
    // Bob's own message and an unknown id are ignored.
    send(
        &mut wb,
        json!({"type": "message_read", "message_ids": [from_a, from_b, 987_654]}),
    )
    .await;
    let ev = next(&mut wa).await;
    assert_eq!(ev["message_ids"], json!([from_a]));
    next(&mut wb).await;
    // Marking again marks nothing: no event at all.
    send(
        &mut wb,
        json!({"type": "message_read", "message_ids": [from_a]}),
    )
    .await;
    silent(&mut wa, 300).await;
    silent(&mut wb, 100).await;
}

#[tokio::test]
async fn every_socket_of_a_user_receives_and_typing_skips_the_typist() {
    let (server, _, ta, tb, conv, _, _) = pair_server().await;
    let base = server.ws_url("");
    let mut a1 = join(&base, conv, &ta).await;
    let mut a2 = join(&base, conv, &ta).await;
    let mut b1 = join(&base, conv, &tb).await;
    let mut b2 = join(&base, conv, &tb).await;
    send(
        &mut a1,
        json!({"type": "chat_message", "content": "to all tabs"}),
    )
    .await;
    for ws in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(next(ws).await["content"], "to all tabs");
    }
    send(
        &mut a1,
        json!({"type": "typing_indicator", "is_typing": false}),
    )
    .await;
    for ws in [&mut b1, &mut b2] {
        let ev = next(ws).await;
        assert_eq!(
            (ev["type"].as_str(), ev["is_typing"].as_bool()),
            (Some("typing_indicator"), Some(false))
        );
    }
    silent(&mut a1, 300).await;
    silent(&mut a2, 100).await;
}

#[tokio::test]
async fn idempotent_client_id_over_websocket() {
    let (server, api, ta, tb, conv, _, _) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = join(&base, conv, &ta).await;
    let mut wa2 = join(&base, conv, &ta).await;
    let mut wb = join(&base, conv, &tb).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "once", "client_id": "k1"}),
    )
    .await;
    let first = next(&mut wa).await;
    assert_eq!(first["client_id"], "k1");
    assert_eq!(next(&mut wb).await, first);
    assert_eq!(next(&mut wa2).await, first);
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "once", "client_id": "k1"}),
    )
    .await;
    assert_eq!(
        next(&mut wa).await,
        first,
        "the retrying socket gets the original event"
    );
    silent(&mut wb, 300).await;
    silent(&mut wa2, 100).await;
    assert_eq!(api.history_len(&ta, conv).await, 1);
    // Without client_id the event says null.
    send(&mut wa, json!({"type": "chat_message", "content": "plain"})).await;
    assert_eq!(next(&mut wa).await["client_id"], Value::Null);
}

#[tokio::test]
async fn one_senders_messages_arrive_in_order() {
    let (server, _, ta, tb, conv, _, _) = pair_server().await;
    let base = server.ws_url("");
    let mut wa = join(&base, conv, &ta).await;
    let mut wb = join(&base, conv, &tb).await;
    for i in 0..60 {
        send(
            &mut wa,
            json!({"type": "chat_message", "content": format!("m{i}")}),
        )
        .await;
    }
    let mut last_id = 0;
    for i in 0..60 {
        let ev = next(&mut wb).await;
        assert_eq!(ev["content"], format!("m{i}"));
        let id = ev["message_id"].as_i64().expect("id");
        assert!(id > last_id, "ids increase in storage order");
        last_id = id;
    }
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let (server, api, ta, _, conv, _, _) =
        pair_on(TestServer::start_with(&[("CHAT__WEBSOCKET__MAX_FRAME_BYTES", "1024")]).await)
            .await;
    let mut wa = join(&server.ws_url(""), conv, &ta).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "y".repeat(2000)}),
    )
    .await;
    assert_eq!(close_code(&mut wa).await, 1009);
    assert_eq!(api.history_len(&ta, conv).await, 0);
}

#[tokio::test]
async fn heartbeat_keeps_answering_sockets_and_drops_silent_ones() {
    let (server, _, ta, tb, conv, _, _) = pair_on(
        TestServer::start_with(&[
            ("CHAT__WEBSOCKET__HEARTBEAT_INTERVAL_SECONDS", "1"),
            ("CHAT__WEBSOCKET__CLIENT_TIMEOUT_SECONDS", "2"),
        ])
        .await,
    )
    .await;
    let base = server.ws_url("");
    let mut quiet_but_alive = join(&base, conv, &ta).await;
    let mut dead = join(&base, conv, &tb).await;
    // The live client reads (and so answers pings) for longer than the timeout.
    silent(&mut quiet_but_alive, 4000).await;
    send(
        &mut quiet_but_alive,
        json!({"type": "chat_message", "content": "still here"}),
    )
    .await;
    assert_eq!(next(&mut quiet_but_alive).await["content"], "still here");
    // The other never read, so never answered a ping: the server closed it
    // (with 1008 when the close frame gets through, else the TCP is gone).
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, dead.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(
                    frame.map(|f| u16::from(f.code)),
                    Some(1008),
                    "closed for heartbeat timeout"
                );
                break;
            }
            Some(Ok(Message::Text(t))) => panic!("unexpected frame {t}"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
}

/// Many sockets sending at once (stored in shared transactions on
/// PostgreSQL): every message stored once, per-sender order kept, counters right.
#[tokio::test]
async fn concurrent_senders_keep_order_and_counts() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let base = server.ws_url("");
    let mut tasks = Vec::new();
    for p in 0..6 {
        let (ta, tb, conv, _, _) = api.pair(&format!("alice{p}"), &format!("bob{p}")).await;
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut wa = join(&base, conv, &ta).await;
            let mut wb = join(&base, conv, &tb).await;
            for i in 0..25 {
                send(&mut wa, json!({"type": "chat_message", "content": format!("a{i}"), "client_id": format!("c{i}")})).await;
                send(&mut wb, json!({"type": "chat_message", "content": format!("b{i}")})).await;
            }
            // Every socket sees both senders' messages, each sender in order.
            let mut seen = Vec::new();
            while seen.len() < 50 {
                seen.push(next_of(&mut wa, "chat_message").await);
            }
            for who in ["a", "b"] {
                let mine: Vec<&serde_json::Value> =
                    seen.iter().filter(|e| e["content"].as_str().is_some_and(|c| c.starts_with(who))).collect();
                let contents: Vec<&str> = mine.iter().filter_map(|e| e["content"].as_str()).collect();
                let expected: Vec<String> = (0..25).map(|i| format!("{who}{i}")).collect();
                assert_eq!(contents, expected, "one sender's messages arrive in order");
                let ids: Vec<i64> = mine.iter().map(|e| e["message_id"].as_i64().expect("id")).collect();
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "one sender's ids increase: {ids:?}");
            }
            let last = seen.iter().map(|e| e["message_id"].as_i64().expect("id")).max().expect("last");
            (ta, tb, conv, last)
        }));
    }
    for task in tasks {
        let (ta, tb, conv, last_id) = task.await.expect("pair task");
        let (_, listed) = api
            .call(
                "GET",
                &format!("/api/chat/conversations/{conv}/"),
                Some(&ta),
                None,
            )
            .await;
        assert_eq!(listed["unread_count"], 25);
        assert_eq!(listed["last_message"]["id"], last_id);
        let (_, listed) = api
            .call(
                "GET",
                &format!("/api/chat/conversations/{conv}/"),
                Some(&tb),
                None,
            )
            .await;
        assert_eq!(listed["unread_count"], 25);
        let (_, history) = api
            .call(
                "GET",
                &format!("/api/chat/conversations/{conv}/messages/"),
                Some(&ta),
                None,
            )
            .await;
        assert_eq!(history["count"], 50);
    }
}
