//! The user stream (`/ws/chat/`): one socket for all of a user's
//! conversations, per-user `seq`, resume with `since`, and the conversation
//! socket's `after`.

use crate::support::*;
use crate::ws_support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn first_frame_has_seq_and_unread_counters() {
    let (server, api, ta, tb, conv, a, b) = pair_server().await;
    api.send_message(&ta, conv, "one").await;
    api.send_message(&ta, conv, "two").await;

    let (_wb, first) = stream(&server, &tb, "").await;
    // bob: the request, its acceptance, the conversation, two messages.
    assert_eq!(
        first,
        json!({"type": "connection_established", "message": "Connected to chat",
               "user_id": b, "seq": 5, "total_unread": 2, "unread_conversations": 1})
    );
    // alice: the acceptance, the conversation, her two messages; nothing unread.
    let (_wa, first) = stream(&server, &ta, "").await;
    assert_eq!(first["user_id"], a);
    assert_eq!(first["seq"], 4);
    assert_eq!(first["total_unread"], 0);
    assert_eq!(first["unread_conversations"], 0);
    assert!(first.get("recovered").is_none(), "{first}");
    assert!(first.get("conversation_id").is_none(), "{first}");
}

#[tokio::test]
async fn durable_events_reach_both_streams_with_their_own_counters() {
    let (server, api, ta, tb, conv, a, b) = pair_server().await;
    let (mut wa, fa) = stream(&server, &ta, "").await;
    let (mut wb, fb) = stream(&server, &tb, "").await;

    // Sent over alice's stream: both streams get it, each with its counters.
    send(
        &mut wa,
        json!({"type": "chat_message", "conversation_id": conv, "content": "hi", "client_id": "k1"}),
    )
    .await;
    let on_a = next_of(&mut wa, "chat_message").await;
    let on_b = next_of(&mut wb, "chat_message").await;
    for (e, start) in [(&on_a, &fa), (&on_b, &fb)] {
        assert_eq!(e["content"], "hi");
        assert_eq!(e["conversation_id"], conv);
        assert_eq!(e["sender_id"], a);
        assert_eq!(e["sender_name"], "alice");
        assert_eq!(e["client_id"], "k1");
        assert_eq!(seq(e), seq(start) + 1, "{e}");
        assert_timestamp(&e["created_at"]);
        assert!(e["message_id"].as_i64().is_some());
    }
    assert_eq!(
        (
            &on_a["unread_count"],
            &on_a["total_unread"],
            &on_a["unread_conversations"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(
        (
            &on_b["unread_count"],
            &on_b["total_unread"],
            &on_b["unread_conversations"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );

    // Marked read over HTTP: messages_read on both, naming the conversation.
    let read = api.mark_read(&tb, conv).await;
    let ra = next_of(&mut wa, "messages_read").await;
    let rb = next_of(&mut wb, "messages_read").await;
    for (e, before) in [(&ra, &on_a), (&rb, &on_b)] {
        assert_eq!(e["conversation_id"], conv);
        assert_eq!(e["user_id"], b);
        assert_eq!(e["message_ids"], read["message_ids"]);
        assert_eq!(e["read_at"], read["read_at"]);
        assert_eq!(seq(e), seq(before) + 1);
        assert_eq!(e["total_unread"], 0);
        assert_eq!(e["unread_conversations"], 0);
        assert_eq!(e["unread_count"], 0);
    }
    silent(&mut wa, 200).await;
    silent(&mut wb, 200).await;
}

#[tokio::test]
async fn since_replays_every_later_event_once_then_goes_live() {
    let (server, api, ta, tb, conv, _a, _b) = pair_server().await;
    for text in ["m1", "m2", "m3"] {
        api.send_message(&ta, conv, text).await;
    }
    // bob is at 6: request, acceptance, conversation, three messages.
    let (mut wb, first) = stream(&server, &tb, "since=3").await;
    assert_eq!(first["recovered"], true);
    assert_eq!(first["seq"], 6);
    for (n, text) in [(4, "m1"), (5, "m2"), (6, "m3")] {
        let e = next(&mut wb).await;
        assert_eq!((seq(&e), &e["content"]), (n, &json!(text)), "{e}");
    }
    api.send_message(&ta, conv, "live").await;
    let live = next(&mut wb).await;
    assert_eq!((seq(&live), &live["content"]), (7, &json!("live")));
    silent(&mut wb, 200).await;

    // Everything from the start.
    let (mut all, first) = stream(&server, &tb, "since=0").await;
    assert_eq!(first["recovered"], true);
    let kinds: Vec<(i64, String)> = {
        let mut v = Vec::new();
        for _ in 0..7 {
            let e = next(&mut all).await;
            v.push((seq(&e), e["type"].as_str().unwrap_or("").to_owned()));
        }
        v
    };
    assert_eq!(
        kinds,
        [
            (1, "connection_request"),
            (2, "connection_updated"),
            (3, "conversation_created"),
            (4, "chat_message"),
            (5, "chat_message"),
            (6, "chat_message"),
            (7, "chat_message"),
        ]
        .map(|(n, k)| (n, k.to_owned()))
    );

    // Up to date: recovered, nothing replayed.
    let (mut now, first) = stream(&server, &tb, "since=7").await;
    assert_eq!((first["recovered"].clone(), seq(&first)), (json!(true), 7));
    silent(&mut now, 200).await;
    // Ahead of the server: not recovered, nothing replayed.
    let (mut ahead, first) = stream(&server, &tb, "since=99").await;
    assert_eq!((first["recovered"].clone(), seq(&first)), (json!(false), 7));
    silent(&mut ahead, 200).await;
}

#[tokio::test]
async fn bad_cursors_close_with_4400_and_bad_tokens_with_4001() {
    let (server, _api, _ta, tb, conv, _a, _b) = pair_server().await;
    for query in ["since=-1", "since=abc", "since=1.5"] {
        let url = server.ws_url(&format!("/ws/chat/?token={tb}&{query}"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        assert_eq!(close_code(&mut ws).await, 4400, "{query}");
    }
    for query in ["after=-1", "after=x"] {
        let url = server.ws_url(&format!("/ws/chat/{conv}/?token={tb}&{query}"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        assert_eq!(close_code(&mut ws).await, 4400, "{query}");
    }
    for url in [
        server.ws_url("/ws/chat/"),
        server.ws_url("/ws/chat/?token=not-a-jwt"),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        assert_eq!(close_code(&mut ws).await, 4001);
    }
}

#[tokio::test]
async fn connection_changes_reach_both_streams() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (ua, ta) = api.user("alice").await;
    let (ub, tb) = api.user("bob").await;
    let (a, b) = (assert_id(&ua["id"]), assert_id(&ub["id"]));
    let (mut wa, _) = stream(&server, &ta, "").await;
    let (mut wb, _) = stream(&server, &tb, "").await;

    let requested = api.request(&ta, b).await;
    let e = next(&mut wb).await;
    assert_eq!(e["type"], "connection_request");
    assert_eq!(e["connection"], requested);
    assert_eq!(seq(&e), 1);
    silent(&mut wa, 200).await;

    let id = requested["id"].as_i64().expect("id");
    let accepted = api.accept(&tb, id).await;
    for (ws, me, other, first_seq) in [(&mut wa, a, b, 1), (&mut wb, b, a, 2)] {
        let updated = next(ws).await;
        assert_eq!(updated["type"], "connection_updated");
        assert_eq!(updated["connection"], accepted);
        assert_eq!(seq(&updated), first_seq);
        let created = next(ws).await;
        assert_eq!(created["type"], "conversation_created", "{created}");
        assert_eq!(seq(&created), first_seq + 1);
        let c = &created["conversation"];
        assert_eq!(c["id"], accepted["conversation_id"]);
        assert_eq!(c["other_user"]["id"], other, "as {me} sees it");
        assert_eq!(c["can_send"], true);
        assert_eq!(c["unread_count"], 0);
    }

    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/connections/{id}/"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(status, 204);
    for ws in [&mut wa, &mut wb] {
        let updated = next(ws).await;
        assert_eq!(updated["type"], "connection_updated");
        assert_eq!(updated["connection"]["status"], "removed");
        let conv = next(ws).await;
        assert_eq!(conv["type"], "conversation_updated", "{conv}");
        assert_eq!(conv["conversation"]["can_send"], false);
        assert_eq!(seq(&conv), seq(&updated) + 1);
    }

    // Reconnecting brings the old conversation back: conversation_updated.
    let again = api.request(&tb, a).await;
    assert_eq!(next(&mut wa).await["type"], "connection_request");
    api.accept(&ta, assert_id(&again["id"])).await;
    for ws in [&mut wa, &mut wb] {
        assert_eq!(next(ws).await["type"], "connection_updated");
        let conv = next(ws).await;
        assert_eq!(conv["type"], "conversation_updated", "{conv}");
        assert_eq!(conv["conversation"]["can_send"], true);
        assert_eq!(conv["conversation"]["id"], accepted["conversation_id"]);
    }
}

#[tokio::test]
async fn stream_frames_name_their_conversation() {
    let (server, api, ta, tb, conv, a, _b) = pair_server().await;
    let (_u, tc) = api.user("carol").await;
    let (mut wa, _) = stream(&server, &ta, "").await;
    let (mut wb, _) = stream(&server, &tb, "").await;
    let mut conv_b = join(&server.ws_url(""), conv, &tb).await;

    // No conversation: an error that echoes client_id; nothing stored.
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "x", "client_id": "c1"}),
    )
    .await;
    let err = next(&mut wa).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["client_id"], "c1");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("conversation_id")
    );
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "x", "conversation_id": "1"}),
    )
    .await;
    assert_eq!(next(&mut wa).await["type"], "error");

    // A conversation carol is not part of.
    let (mut wc, _) = stream(&server, &tc, "").await;
    for frame in [
        json!({"type": "chat_message", "conversation_id": conv, "content": "intrude"}),
        json!({"type": "typing_indicator", "conversation_id": conv, "is_typing": true}),
        json!({"type": "message_read", "conversation_id": conv, "message_ids": [1]}),
    ] {
        send(&mut wc, frame.clone()).await;
        let err = next(&mut wc).await;
        assert_eq!(err["type"], "error", "{frame}");
    }
    silent(&mut wb, 200).await;
    silent(&mut conv_b, 100).await;
    assert_eq!(api.history_len(&tb, conv).await, 0);

    // Typing on the stream: the other's stream (naming the conversation) and
    // conversation socket (as before); never the typist's own stream.
    send(
        &mut wa,
        json!({"type": "typing_indicator", "conversation_id": conv, "is_typing": true}),
    )
    .await;
    assert_eq!(
        next(&mut wb).await,
        json!({"type": "typing_indicator", "conversation_id": conv, "user_id": a,
               "user_name": "alice", "is_typing": true})
    );
    assert_eq!(
        next(&mut conv_b).await,
        json!({"type": "typing_indicator", "user_id": a, "user_name": "alice", "is_typing": true})
    );
    silent(&mut wa, 200).await;

    // Reads over the stream.
    let m = api.send_message(&ta, conv, "read me").await;
    let on_b = next_of(&mut wb, "chat_message").await;
    send(
        &mut wb,
        json!({"type": "message_read", "conversation_id": conv, "message_ids": [m["id"]]}),
    )
    .await;
    let read = next_of(&mut wb, "messages_read").await;
    assert_eq!(read["message_ids"], json!([m["id"]]));
    assert_eq!(seq(&read), seq(&on_b) + 1);
    let on_conv = next_of(&mut conv_b, "messages_read").await;
    assert!(
        on_conv.get("seq").is_none() && on_conv.get("conversation_id").is_none(),
        "{on_conv}"
    );
}

#[tokio::test]
async fn conversation_socket_after_replays_then_goes_live() {
    let (server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let first = api.send_message(&ta, conv, "one").await;
    api.send_message(&tb, conv, "two").await;
    api.send_message(&ta, conv, "three").await;
    let url = server.ws_url(&format!(
        "/ws/chat/{conv}/?token={tb}&after={}",
        first["id"]
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let established = next(&mut ws).await;
    assert_eq!(established["type"], "connection_established");
    assert_eq!(established["conversation_id"], conv);
    let two = next(&mut ws).await;
    let three = next(&mut ws).await;
    assert_eq!(
        (two["type"].clone(), two["content"].clone()),
        (json!("chat_message"), json!("two"))
    );
    assert_eq!(three["content"], "three");
    assert!(
        two.get("seq").is_none(),
        "conversation sockets carry no seq: {two}"
    );
    api.send_message(&ta, conv, "four").await;
    assert_eq!(next(&mut ws).await["content"], "four");
    silent(&mut ws, 200).await;

    // after=0: the whole history; after the newest: nothing.
    let url = server.ws_url(&format!("/ws/chat/{conv}/?token={tb}&after=0"));
    let (mut all, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    next(&mut all).await;
    for text in ["one", "two", "three", "four"] {
        assert_eq!(next(&mut all).await["content"], text);
    }
    silent(&mut all, 200).await;
}

#[tokio::test]
async fn many_senders_to_one_user_keep_its_seq_gapless() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (uz, tz) = api.user("zoe").await;
    let z = assert_id(&uz["id"]);
    let mut senders = Vec::new();
    for i in 0..6 {
        let (_u, t) = api.user(&format!("sender{i}")).await;
        let (conv, _) = api.connect(&t, &tz, z).await;
        senders.push((t, conv));
    }
    let (mut wz, first) = stream(&server, &tz, "").await;
    let start = seq(&first);
    let per_sender = 15;
    let tasks: Vec<_> = senders
        .iter()
        .map(|(t, conv)| {
            let (api, t, conv) = (api.clone(), t.clone(), *conv);
            tokio::spawn(async move {
                for n in 0..per_sender {
                    api.send_message(&t, conv, &format!("{conv}-{n}")).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    let total = senders.len() as i64 * per_sender;
    let mut seen = Vec::new();
    for _ in 0..total {
        let e = next_of(&mut wz, "chat_message").await;
        seen.push(seq(&e));
    }
    let expected: Vec<i64> = (start + 1..=start + total).collect();
    assert_eq!(seen, expected, "live seqs are gapless and in order");
    silent(&mut wz, 200).await;
    // The log holds the same sequence, and the counters add up.
    let (mut replay, first) = stream(&server, &tz, &format!("since={start}")).await;
    assert_eq!(first["total_unread"], total);
    assert_eq!(first["unread_conversations"], senders.len());
    for n in start + 1..=start + total {
        assert_eq!(seq(&next(&mut replay).await), n);
    }
}

#[tokio::test]
async fn shutdown_answers_what_it_took_and_closes_sockets_with_1012() {
    let (server, _api, ta, tb, conv, _a, _b) = pair_server().await;
    let (mut wa, _) = stream(&server, &ta, "").await;
    let mut conv_b = join(&server.ws_url(""), conv, &tb).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "conversation_id": conv, "content": "last", "client_id": "lw"}),
    )
    .await;
    // Taken for sure: its echo arrives before the drain starts.
    let echo = next_of(&mut wa, "chat_message").await;
    assert_eq!(echo["client_id"], "lw");
    send(
        &mut wa,
        json!({"type": "chat_message", "conversation_id": conv, "content": "racing", "client_id": "r"}),
    )
    .await;
    let started = std::time::Instant::now();
    server.drain().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "stopped within the drain time"
    );
    // The racing send was either answered (stored and echoed, or refused)
    // or never taken; then the socket closes with 1012.
    let code = loop {
        use futures_util::StreamExt;
        match tokio::time::timeout(std::time::Duration::from_secs(5), wa.next())
            .await
            .expect("a frame or close in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                // Bob's presence may be announced late; it is not an answer.
                if v["type"] == "presence" {
                    continue;
                }
                assert!(
                    v["client_id"] == "r" && (v["type"] == "chat_message" || v["type"] == "error"),
                    "{v}"
                );
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                break u16::from(f.code);
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1012);
    assert_eq!(close_code(&mut conv_b).await, 1012);
    // No new connections once stopped.
    assert!(
        tokio_tungstenite::connect_async(server.ws_url(&format!("/ws/chat/?token={ta}")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn since_older_than_the_log_keeps_is_not_recovered() {
    use diesel::RunQueryDsl;
    let (server, api, ta, tb, conv, _a, _b) = pair_server().await;
    for i in 0..5 {
        api.send_message(&ta, conv, &format!("m{i}")).await;
    }
    // bob is at 8. Everything is old; keep the last 3 events of each user.
    let pruned = server
        .database
        .run(|c| {
            diesel::sql_query("UPDATE user_events SET created_at = '2000-01-01 00:00:00'")
                .execute(c)?;
            chat_persistence::events::prune(c, 3, chrono::Utc::now() - chrono::Duration::days(7))
        })
        .await
        .expect("prune");
    assert_eq!(pruned, 5 + 4, "bob keeps 6..8, alice 5..7");
    let (mut gone, first) = stream(&server, &tb, "since=4").await;
    assert_eq!((first["recovered"].clone(), seq(&first)), (json!(false), 8));
    silent(&mut gone, 200).await;
    let (mut kept, first) = stream(&server, &tb, "since=5").await;
    assert_eq!(first["recovered"], true);
    for n in 6..=8 {
        assert_eq!(seq(&next(&mut kept).await), n);
    }
    // Young events are kept whatever their number; the old ones go.
    api.send_message(&ta, conv, "young").await;
    let pruned = server
        .database
        .run(|c| {
            chat_persistence::events::prune(c, 0, chrono::Utc::now() - chrono::Duration::days(7))
        })
        .await
        .expect("prune");
    assert_eq!(pruned, 6);
    let (mut young, first) = stream(&server, &tb, "since=8").await;
    assert_eq!(first["recovered"], true);
    assert_eq!(next(&mut young).await["content"], "young");
}
