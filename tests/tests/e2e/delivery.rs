//! Delivery status: `ack` frames and `POST …/delivered/`, the message
//! object's `status` and `delivered_at`, and `messages_delivered`.

use crate::support::*;
use crate::ws_support::*;
use serde_json::{Value, json};

async fn stream(server: &TestServer, token: &str) -> Ws {
    let url = server.ws_url(&format!("/ws/chat/?token={token}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    ws
}

async fn message(api: &Api, token: &str, id: &Value) -> Value {
    let (status, m) = api
        .call(
            "GET",
            &format!("/api/chat/messages/{id}/"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{m}");
    m
}

/// The statuses of the conversation's history as `token` sees it, newest first.
async fn statuses(api: &Api, token: &str, conv: i64) -> Vec<String> {
    let (status, history) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages/"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    history["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|m| m["status"].as_str().expect("status").to_owned())
        .collect()
}

async fn delivered(api: &Api, token: &str, conv: i64, body: Value) -> (u16, Value) {
    api.call(
        "POST",
        &format!("/api/chat/conversations/{conv}/delivered/"),
        Some(token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn ack_makes_messages_delivered_and_read_implies_delivered() {
    let (server, api, ta, tb, conv, _a, b) = pair_server().await;
    let m1 = api.send_message(&ta, conv, "one").await;
    let m2 = api.send_message(&ta, conv, "two").await;
    let m3 = api.send_message(&ta, conv, "three").await;
    for m in [&m1, &m2, &m3] {
        assert_eq!(m["status"], "sent");
        assert_eq!(m["delivered_at"], Value::Null);
    }
    let mut conv_a = join(&server.ws_url(""), conv, &ta).await;
    let mut wa = stream(&server, &ta).await;
    let mut wb = stream(&server, &tb).await;

    // bob acks up to m2 on his stream.
    send(
        &mut wb,
        json!({"type": "ack", "conversation_id": conv, "message_id": m2["id"]}),
    )
    .await;
    let on_conv = next(&mut conv_a).await;
    assert_eq!(on_conv["type"], "messages_delivered");
    assert_eq!(on_conv["conversation_id"], conv);
    assert_eq!(on_conv["user_id"], b);
    assert_eq!(on_conv["up_to_message_id"], m2["id"]);
    assert_timestamp(&on_conv["delivered_at"]);
    assert!(on_conv.get("seq").is_none(), "{on_conv}");
    for ws in [&mut wa, &mut wb] {
        let e = next_of(ws, "messages_delivered").await;
        assert_eq!(e["up_to_message_id"], m2["id"]);
        assert_eq!(e["delivered_at"], on_conv["delivered_at"]);
        assert!(e["seq"].as_i64().is_some(), "{e}");
    }
    let (d1, d2, d3) = (
        message(&api, &ta, &m1["id"]).await,
        message(&api, &ta, &m2["id"]).await,
        message(&api, &ta, &m3["id"]).await,
    );
    assert_eq!(
        (d1["status"].clone(), d2["status"].clone()),
        (json!("delivered"), json!("delivered"))
    );
    assert_eq!(d1["delivered_at"], on_conv["delivered_at"]);
    assert_eq!(d3["status"], "sent");

    // The same ack again changes nothing: no event.
    send(
        &mut wb,
        json!({"type": "ack", "conversation_id": conv, "message_id": m1["id"]}),
    )
    .await;
    silent(&mut conv_a, 300).await;

    // Reading m3 makes it read (and delivered); m1 keeps its delivery time.
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/chat/conversations/{conv}/mark_read/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(next(&mut conv_a).await["type"], "messages_read");
    let (d1, d3) = (
        message(&api, &tb, &m1["id"]).await,
        message(&api, &tb, &m3["id"]).await,
    );
    assert_eq!(
        (d1["status"].clone(), d3["status"].clone()),
        (json!("read"), json!("read"))
    );
    assert_eq!(d1["delivered_at"], on_conv["delivered_at"]);
    assert_eq!(d3["delivered_at"], d3["read_at"]);
    // An ack past it changes nothing either: read messages are delivered.
    let (status, res) = delivered(&api, &tb, conv, json!({"message_id": m3["id"]})).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["delivered"], 0);
    silent(&mut conv_a, 300).await;
}

#[tokio::test]
async fn http_ack_for_push_handlers_and_own_messages_never_delivered_by_own_ack() {
    let (server, api, ta, tb, conv, a, _b) = pair_server().await;
    let from_b = api.send_message(&tb, conv, "from bob").await;
    let own = api.send_message(&ta, conv, "from alice").await;
    let mut wb = stream(&server, &tb).await;
    // alice acks her own (newest) message: bob's earlier one becomes delivered.
    let (status, res) = delivered(&api, &ta, conv, json!({"message_id": own["id"]})).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["delivered"], 1);
    assert_eq!(res["up_to_message_id"], own["id"]);
    assert_timestamp(&res["delivered_at"]);
    let e = next_of(&mut wb, "messages_delivered").await;
    assert_eq!(
        (e["user_id"].clone(), e["delivered_at"].clone()),
        (json!(a), res["delivered_at"].clone())
    );
    assert_eq!(
        message(&api, &ta, &from_b["id"]).await["status"],
        "delivered"
    );
    assert_eq!(message(&api, &ta, &own["id"]).await["status"], "sent");
    // Nothing more to deliver: 0, no event.
    let (_, res) = delivered(&api, &ta, conv, json!({"message_id": own["id"]})).await;
    assert_eq!(res["delivered"], 0);
    silent(&mut wb, 300).await;
    // History and detail agree.
    assert_eq!(statuses(&api, &tb, conv).await, ["sent", "delivered"]);
}

#[tokio::test]
async fn bad_acks_change_nothing() {
    let (server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let m = api.send_message(&ta, conv, "hi").await;
    let (_u, tc) = api.user("carol").await;
    // REST: bad bodies 400 for members, 404 for strangers and unknown messages.
    for body in [
        json!({}),
        json!({"message_id": "x"}),
        json!({"message_id": 0}),
        json!({"message_id": -3}),
    ] {
        let (status, res) = delivered(&api, &tb, conv, body.clone()).await;
        assert_field_error(status, &res, "message_id");
    }
    let (status, res) = delivered(&api, &tc, conv, json!({"message_id": m["id"]})).await;
    assert_error(status, &res, 404);
    let (status, res) = delivered(&api, &tc, conv, json!({})).await;
    assert_error(status, &res, 404);
    let (status, res) = delivered(&api, &tb, conv, json!({"message_id": 999_999})).await;
    assert_error(status, &res, 404);
    let (status, res) = delivered(&api, &tb, 999_999, json!({"message_id": m["id"]})).await;
    assert_error(status, &res, 404);
    // Sockets: error events.
    let mut wb = stream(&server, &tb).await;
    let mut conv_b = join(&server.ws_url(""), conv, &tb).await;
    for frame in [
        json!({"type": "ack", "conversation_id": conv}),
        json!({"type": "ack", "conversation_id": conv, "message_id": "1"}),
        json!({"type": "ack", "message_id": m["id"]}),
        json!({"type": "ack", "conversation_id": conv, "message_id": 999_999}),
    ] {
        send(&mut wb, frame.clone()).await;
        assert_eq!(next(&mut wb).await["type"], "error", "{frame}");
    }
    let (mut wc, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/ws/chat/?token={tc}")))
            .await
            .expect("upgrade");
    next(&mut wc).await;
    send(
        &mut wc,
        json!({"type": "ack", "conversation_id": conv, "message_id": m["id"]}),
    )
    .await;
    assert_eq!(next(&mut wc).await["type"], "error");
    assert_eq!(message(&api, &ta, &m["id"]).await["status"], "sent");
    // A conversation socket may leave conversation_id out.
    send(&mut conv_b, json!({"type": "ack", "message_id": m["id"]})).await;
    assert_eq!(next(&mut conv_b).await["type"], "messages_delivered");
    assert_eq!(message(&api, &ta, &m["id"]).await["status"], "delivered");
}

#[tokio::test]
async fn a_flood_of_acks_is_coalesced() {
    let (server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(api.send_message(&ta, conv, &format!("m{n}")).await["id"].clone());
    }
    let mut conv_a = join(&server.ws_url(""), conv, &ta).await;
    let mut wb = stream(&server, &tb).await;
    for id in &ids {
        send(
            &mut wb,
            json!({"type": "ack", "conversation_id": conv, "message_id": id}),
        )
        .await;
    }
    let last = ids.last().expect("ids").clone();
    let mut events = 0;
    loop {
        let e = next(&mut conv_a).await;
        assert_eq!(e["type"], "messages_delivered");
        events += 1;
        if e["up_to_message_id"] == last {
            break;
        }
    }
    assert!(
        events < ids.len() / 2,
        "{events} events for {} acks",
        ids.len()
    );
    silent(&mut conv_a, 300).await;
    for id in &ids {
        assert_eq!(message(&api, &ta, id).await["status"], "delivered");
    }
}

/// Acks arriving together are stored together: each caller still gets its
/// own answer (a stranger's 404 in the same moment changes nothing for the
/// others), sends racing the acks are all stored, and both users' streams
/// keep a gapless `seq`.
#[tokio::test]
async fn acks_arriving_together_are_each_answered_and_logged_without_gaps() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_stranger, ts) = api.user("stranger").await;
    let mut pairs = Vec::new();
    for i in 0..8 {
        let (ta, tb, conv, _a, _b) = api.pair(&format!("sender{i}"), &format!("acker{i}")).await;
        let mut last = Value::Null;
        for n in 0..3 {
            last = api.send_message(&ta, conv, &format!("m{n}")).await;
        }
        pairs.push((ta, tb, conv, last["id"].clone()));
    }
    let acks = pairs
        .iter()
        .map(|(_, tb, conv, last)| delivered(&api, tb, *conv, json!({"message_id": last})));
    let strangers = pairs
        .iter()
        .map(|(_, _, conv, last)| delivered(&api, &ts, *conv, json!({"message_id": last})));
    let racing_sends = pairs
        .iter()
        .map(|(ta, _, conv, _)| api.send_message(ta, *conv, "racing"));
    let (acked, refused, sent) = tokio::join!(
        futures_util::future::join_all(acks),
        futures_util::future::join_all(strangers),
        futures_util::future::join_all(racing_sends),
    );
    for (status, res) in &refused {
        assert_error(*status, res, 404);
    }
    for ((status, res), (ta, tb, conv, last)) in acked.iter().zip(&pairs) {
        assert_eq!(*status, 200, "{res}");
        assert_eq!(res["delivered"], 3, "{res}");
        assert_eq!(&res["up_to_message_id"], last);
        // Newest first: the racing send (not acked), then the three acked.
        assert_eq!(
            statuses(&api, tb, *conv).await,
            ["sent", "delivered", "delivered", "delivered"]
        );
        // Both logs: every seq once, in order, the delivery among them.
        for token in [ta, tb] {
            let (mut ws, first) = crate::ws_support::stream(&server, token, "since=0").await;
            let head = seq(&first);
            let mut seqs = Vec::new();
            let mut delivered_events = 0;
            while seqs.len() < usize::try_from(head).expect("seq") {
                let e = next(&mut ws).await;
                if e.get("seq").is_some_and(|s| !s.is_null()) {
                    seqs.push(seq(&e));
                    if e["type"] == "messages_delivered" {
                        delivered_events += 1;
                    }
                }
            }
            assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
            assert_eq!(delivered_events, 1);
        }
    }
    assert_eq!(sent.len(), pairs.len());
}

/// The fault test of the ack path: an ack taken while Redis is down is
/// stored with its log event, and the other node's user reads it on resume
/// once Redis is back (stored before broadcast).
#[tokio::test]
async fn an_ack_taken_while_redis_is_down_is_kept_and_resumed_on_the_other_node() {
    let Some((mut redis, node1, node2)) = two_nodes_on_private_redis().await else {
        return;
    };
    let (api1, api2) = (Api::new(&node1), Api::new(&node2));
    let (ta, tb, conv, _a, b) = api1.pair("alice", "bob").await;
    let m = api1.send_message(&ta, conv, "hi").await;
    let (_, before) = crate::ws_support::stream(&node1, &ta, "").await;
    redis.kill();
    let (status, res) = delivered(&api2, &tb, conv, json!({"message_id": m["id"]})).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["delivered"], 1);
    redis.restart().await;
    let since = seq(&before);
    let (mut ws, first) = crate::ws_support::stream(&node1, &ta, &format!("since={since}")).await;
    assert_eq!(seq(&first), since + 1, "one event since: {first}");
    let e = next_of(&mut ws, "messages_delivered").await;
    assert_eq!(e["seq"], since + 1);
    assert_eq!(e["user_id"], b);
    assert_eq!(e["up_to_message_id"], m["id"]);
    assert_eq!(message(&api1, &ta, &m["id"]).await["status"], "delivered");
}

/// Each message's `delivered_at` is the time of the first ack that
/// reached it (one ack covering many gives them all its time), and a
/// message read before it was acked was delivered when it was read.
#[tokio::test]
async fn delivered_at_is_the_time_of_the_first_ack_that_reached_the_message() {
    let (_server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let m1 = api.send_message(&ta, conv, "one").await;
    let m2 = api.send_message(&ta, conv, "two").await;
    let (status, body) = delivered(&api, &tb, conv, json!({"message_id": m2["id"]})).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let m3 = api.send_message(&ta, conv, "three").await;
    let (status, body) = delivered(&api, &tb, conv, json!({"message_id": m3["id"]})).await;
    assert_eq!(status, 200, "{body}");
    // Acking again, later, changes no one's time.
    let (status, _) = delivered(&api, &tb, conv, json!({"message_id": m3["id"]})).await;
    assert_eq!(status, 200);
    let at = |m: &Value| m["delivered_at"].as_str().expect("delivered_at").to_owned();
    let (d1, d2, d3) = (
        message(&api, &ta, &m1["id"]).await,
        message(&api, &ta, &m2["id"]).await,
        message(&api, &ta, &m3["id"]).await,
    );
    for m in [&d1, &d2, &d3] {
        assert_eq!(m["status"], "delivered", "{m}");
        assert_timestamp(&m["delivered_at"]);
    }
    assert_eq!(at(&d1), at(&d2), "one ack, one time");
    let parse = |s: String| chrono::DateTime::parse_from_rfc3339(&s).expect("rfc3339");
    assert!(
        parse(at(&d2)) < parse(at(&d3)),
        "the later ack's time: {d2} {d3}"
    );

    // Read first, acked after: delivered when read.
    let m4 = api.send_message(&ta, conv, "four").await;
    api.mark_read(&tb, conv).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let (status, _) = delivered(&api, &tb, conv, json!({"message_id": m4["id"]})).await;
    assert_eq!(status, 200);
    let d4 = message(&api, &ta, &m4["id"]).await;
    assert_eq!(d4["status"], "read");
    assert_eq!(d4["delivered_at"], d4["read_at"], "{d4}");
    assert_eq!(at(&message(&api, &ta, &m3["id"]).await), at(&d3), "{d3}");
}
