//! Reactions: `PUT`/`DELETE /api/chat/messages/{id}/reactions/{emoji}/`,
//! `reactions` in every message object, `reaction_changed`.

use crate::support::*;
use crate::ws_support::*;
use serde_json::{Value, json};

const THUMBS: &str = "%F0%9F%91%8D"; // 👍
const PARTY: &str = "%F0%9F%8E%89"; // 🎉

async fn react(api: &Api, method: &str, token: &str, message: &Value, emoji: &str) -> (u16, Value) {
    api.call(
        method,
        &format!("/api/chat/messages/{message}/reactions/{emoji}/"),
        Some(token),
        None,
    )
    .await
}

async fn stream(server: &TestServer, token: &str) -> Ws {
    let url = server.ws_url(&format!("/ws/chat/?token={token}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    ws
}

#[tokio::test]
async fn reactions_are_added_idempotently_and_shown_everywhere() {
    let (server, api, ta, tb, conv, a, b) = pair_server().await;
    let m = api.send_message(&ta, conv, "react to me").await;
    assert_eq!(m["reactions"], json!([]));
    let id = m["id"].clone();
    let mut conv_a = join(&server.ws_url(""), conv, &ta).await;
    let mut wa = stream(&server, &ta).await;
    let mut wb = stream(&server, &tb).await;

    let (status, after) = react(&api, "PUT", &tb, &id, THUMBS).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        after["reactions"],
        json!([{"emoji": "👍", "count": 1, "user_ids": [b]}])
    );
    let e = next(&mut conv_a).await;
    assert_eq!(
        e,
        json!({"type": "reaction_changed", "conversation_id": conv, "message_id": id,
               "user_id": b, "emoji": "👍", "added": true,
               "reactions": [{"emoji": "👍", "count": 1, "user_ids": [b]}]})
    );
    for ws in [&mut wa, &mut wb] {
        let s = next_of(ws, "reaction_changed").await;
        assert_eq!(s["reactions"], e["reactions"]);
        assert!(s["seq"].as_i64().is_some(), "{s}");
    }
    // Again: 200, nothing changes, no event.
    let (status, again) = react(&api, "PUT", &tb, &id, THUMBS).await;
    assert_eq!((status, &again["reactions"]), (200, &after["reactions"]));
    silent(&mut conv_a, 300).await;

    // A second emoji, and the first by alice: order of first use kept.
    react(&api, "PUT", &ta, &id, PARTY).await;
    react(&api, "PUT", &ta, &id, THUMBS).await;
    let expected = json!([
        {"emoji": "👍", "count": 2, "user_ids": [b, a]},
        {"emoji": "🎉", "count": 1, "user_ids": [a]},
    ]);
    let (_, detail) = api
        .call("GET", &format!("/api/chat/messages/{id}/"), Some(&ta), None)
        .await;
    assert_eq!(detail["reactions"], expected);
    let (_, history) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(history["results"][0]["reactions"], expected);
    let (_, c) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(c["last_message"]["reactions"], expected);
    // A reaction changes neither read nor delivery state.
    assert_eq!(detail["status"], "sent");
    assert_eq!(detail["is_read"], false);

    // Removing: 204, also when there was none.
    let (status, _) = react(&api, "DELETE", &ta, &id, PARTY).await;
    assert_eq!(status, 204);
    let (status, _) = react(&api, "DELETE", &ta, &id, PARTY).await;
    assert_eq!(status, 204);
    // alice's two additions, then her removal (the second DELETE sends nothing).
    for emoji in ["🎉", "👍"] {
        let added = next_of(&mut conv_a, "reaction_changed").await;
        assert_eq!(
            (added["emoji"].as_str(), &added["added"]),
            (Some(emoji), &json!(true))
        );
    }
    let removed = next_of(&mut conv_a, "reaction_changed").await;
    assert_eq!(removed["added"], false);
    assert_eq!(removed["emoji"], "🎉");
    assert_eq!(
        removed["reactions"],
        json!([{"emoji": "👍", "count": 2, "user_ids": [b, a]}])
    );
    silent(&mut conv_a, 300).await;
}

#[tokio::test]
async fn concurrent_adds_store_one_reaction() {
    let (_server, api, ta, tb, conv, _a, b) = pair_server().await;
    let m = api.send_message(&ta, conv, "race").await;
    let id = m["id"].clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (api, tb, id) = (api.clone(), tb.clone(), id.clone());
            tokio::spawn(async move { react(&api, "PUT", &tb, &id, THUMBS).await.0 })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    let (_, detail) = api
        .call("GET", &format!("/api/chat/messages/{id}/"), Some(&tb), None)
        .await;
    assert_eq!(
        detail["reactions"],
        json!([{"emoji": "👍", "count": 1, "user_ids": [b]}])
    );
}

#[tokio::test]
async fn emoji_rules_and_limits() {
    let (_server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let m = api.send_message(&ta, conv, "limits").await;
    let id = m["id"].clone();
    let long = "x".repeat(33);
    for bad in ["a%20b", "%09", "%0A", long.as_str(), "%FF"] {
        let (status, body) = react(&api, "PUT", &tb, &id, bad).await;
        assert_field_error(status, &body, "emoji");
    }
    // 32 characters, any code points: fine.
    let (status, _) = react(&api, "PUT", &tb, &id, &"y".repeat(32)).await;
    assert_eq!(status, 200);
    for n in 1..20 {
        let (status, body) = react(&api, "PUT", &tb, &id, &format!("e{n}")).await;
        assert_eq!(status, 200, "{n}: {body}");
    }
    // The 21st different one is refused; re-adding one of the 20 is fine.
    let (status, body) = react(&api, "PUT", &tb, &id, "one-too-many").await;
    assert_field_error(status, &body, "emoji");
    let (status, _) = react(&api, "PUT", &tb, &id, "e1").await;
    assert_eq!(status, 200);
    // Percent-encoded characters are read once: %25 is "%".
    let (status, body) = react(&api, "PUT", &ta, &id, "100%25").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["reactions"]
            .as_array()
            .expect("list")
            .iter()
            .any(|r| r["emoji"] == "100%")
    );
}

#[tokio::test]
async fn only_participants_react_and_not_after_removal() {
    let (_server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let m = api.send_message(&ta, conv, "private").await;
    let id = m["id"].clone();
    let (_u, tc) = api.user("carol").await;
    for method in ["PUT", "DELETE"] {
        let (status, body) = react(&api, method, &tc, &id, THUMBS).await;
        assert_error(status, &body, 404);
        let (status, body) = react(&api, method, &tc, &id, "a%20b").await;
        assert_error(status, &body, 404);
    }
    let (status, body) = react(&api, "PUT", &tb, &json!(999_999), THUMBS).await;
    assert_error(status, &body, 404);
    let (_, conns) = api.call("GET", "/api/connections/", Some(&ta), None).await;
    let cid = conns["results"][0]["id"].clone();
    api.call(
        "DELETE",
        &format!("/api/connections/{cid}/"),
        Some(&ta),
        None,
    )
    .await;
    for method in ["PUT", "DELETE"] {
        let (status, body) = react(&api, method, &tb, &id, THUMBS).await;
        assert_error_code(status, &body, 403, "not_connected");
    }
}
