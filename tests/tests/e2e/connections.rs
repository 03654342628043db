//! API.md "Connections": requests, the status machine, who may do what,
//! the pair's one conversation, and races.

use crate::support::*;
use crate::ws_support as ws;
use serde_json::{Value, json};

/// A registered, logged-in user.
#[derive(Debug, Clone)]
struct Who {
    id: i64,
    token: String,
    user: Value,
}

async fn who(api: &Api, name: &str) -> Who {
    let (user, token) = api.user(name).await;
    Who {
        id: assert_id(&user["id"]),
        token,
        user,
    }
}

async fn request(api: &Api, from: &Who, to: i64) -> (u16, Value) {
    api.call(
        "POST",
        "/api/connections/",
        Some(&from.token),
        Some(json!({"user_id": to})),
    )
    .await
}

/// A pending request; returns its id.
async fn requested(api: &Api, from: &Who, to: &Who) -> i64 {
    let (status, conn) = request(api, from, to.id).await;
    assert_eq!(status, 201, "{conn}");
    assert_id(&conn["id"])
}

async fn act(api: &Api, by: &Who, id: i64, action: &str) -> (u16, Value) {
    api.call(
        "POST",
        &format!("/api/connections/{id}/{action}/"),
        Some(&by.token),
        None,
    )
    .await
}

async fn remove(api: &Api, by: &Who, id: i64) -> (u16, Value) {
    api.call(
        "DELETE",
        &format!("/api/connections/{id}/"),
        Some(&by.token),
        None,
    )
    .await
}

async fn get(api: &Api, by: &Who, id: i64) -> (u16, Value) {
    api.call(
        "GET",
        &format!("/api/connections/{id}/"),
        Some(&by.token),
        None,
    )
    .await
}

async fn status_of(api: &Api, by: &Who, id: i64) -> String {
    let (status, conn) = get(api, by, id).await;
    assert_eq!(status, 200, "{conn}");
    conn["status"].as_str().expect("status").to_owned()
}

/// An accepted connection from `a` to `b`; returns (connection id, conversation id).
async fn connected(api: &Api, a: &Who, b: &Who) -> (i64, i64) {
    let id = requested(api, a, b).await;
    let (status, conn) = act(api, b, id, "accept").await;
    assert_eq!(status, 200, "{conn}");
    (id, assert_id(&conn["conversation_id"]))
}

async fn send(api: &Api, by: &Who, conv: i64, content: &str) -> (u16, Value) {
    api.call(
        "POST",
        "/api/chat/messages/",
        Some(&by.token),
        Some(json!({"conversation_id": conv, "content": content})),
    )
    .await
}

async fn list(api: &Api, by: &Who, query: &str) -> Value {
    let (status, body) = api
        .call(
            "GET",
            &format!("/api/connections/{query}"),
            Some(&by.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn ids(page: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Asserts the whole connection object.
fn assert_connection(conn: &Value, requester: &Who, addressee: &Who, status: &str) {
    let obj = conn.as_object().unwrap_or_else(|| panic!("{conn}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "addressee",
            "conversation_id",
            "created_at",
            "id",
            "requester",
            "status",
            "updated_at"
        ],
        "{conn}"
    );
    assert_id(&conn["id"]);
    assert_user_object(&conn["requester"]);
    assert_user_object(&conn["addressee"]);
    assert_eq!(conn["requester"], requester.user, "{conn}");
    assert_eq!(conn["addressee"], addressee.user, "{conn}");
    assert_eq!(conn["status"], status, "{conn}");
    assert_timestamp(&conn["created_at"]);
    assert_timestamp(&conn["updated_at"]);
    let created = conn["created_at"].as_str().expect("created_at");
    let updated = conn["updated_at"].as_str().expect("updated_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(updated).expect("rfc3339")
            >= chrono::DateTime::parse_from_rfc3339(created).expect("rfc3339"),
        "{conn}"
    );
    if status == "pending" || status == "rejected" {
        assert_eq!(conn["conversation_id"], Value::Null, "{conn}");
    }
    if status == "accepted" {
        assert_id(&conn["conversation_id"]);
    }
}

#[tokio::test]
async fn requesting_creates_a_pending_connection() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);
    let (status, conn) = request(&api, &a, b.id).await;
    assert_eq!(status, 201, "{conn}");
    assert_connection(&conn, &a, &b, "pending");
    assert_eq!(conn["conversation_id"], Value::Null);
    let id = assert_id(&conn["id"]);
    // Both sides see the same object.
    for side in [&a, &b] {
        let (status, got) = get(&api, side, id).await;
        assert_eq!((status, &got), (200, &conn));
    }
    // Without a token: 401; and nothing was created.
    let (status, body) = api
        .call(
            "POST",
            "/api/connections/",
            None,
            Some(json!({"user_id": b.id})),
        )
        .await;
    assert_error(status, &body, 401);
    let (status, body) = api.call("GET", "/api/connections/", None, None).await;
    assert_error(status, &body, 401);
    assert_eq!(list(&api, &b, "").await["count"], 1);
}

#[tokio::test]
async fn requesting_yourself_is_400_and_an_unknown_user_404() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let a = who(&api, "alice").await;
    let (status, body) = request(&api, &a, a.id).await;
    assert_error(status, &body, 400);
    for unknown in [999_999, 0, -5] {
        let (status, body) = request(&api, &a, unknown).await;
        assert_error(status, &body, 404);
    }
    for bad in [
        json!({}),
        json!({"user_id": null}),
        json!({"user_id": "x"}),
        json!({"user_id": 1.5}),
    ] {
        let (status, body) = api
            .call("POST", "/api/connections/", Some(&a.token), Some(bad))
            .await;
        assert_field_error(status, &body, "user_id");
    }
    assert_eq!(list(&api, &a, "").await["count"], 0);
}

#[tokio::test]
async fn an_open_connection_in_either_direction_is_a_409() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);
    let id = requested(&api, &a, &b).await;
    for (from, to) in [(&a, &b), (&b, &a)] {
        let (status, body) = request(&api, from, to.id).await;
        assert_error(status, &body, 409);
    }
    let (status, _) = act(&api, &b, id, "accept").await;
    assert_eq!(status, 200);
    for (from, to) in [(&a, &b), (&b, &a)] {
        let (status, body) = request(&api, from, to.id).await;
        assert_error(status, &body, 409);
    }
    assert_eq!(ids(&list(&api, &a, "").await), [id]);
    assert_eq!(status_of(&api, &a, id).await, "accepted");
}

#[tokio::test]
async fn either_side_may_request_again_after_a_rejection_or_removal() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);

    // Rejected: the requester asks again, then the other side does.
    let first = requested(&api, &a, &b).await;
    let (status, conn) = act(&api, &b, first, "reject").await;
    assert_eq!(status, 200, "{conn}");
    let (status, again) = request(&api, &a, b.id).await;
    assert_eq!(status, 201, "{again}");
    assert_connection(&again, &a, &b, "pending");
    let second = assert_id(&again["id"]);
    assert_ne!(second, first);
    let (status, _) = act(&api, &b, second, "reject").await;
    assert_eq!(status, 200);
    let (status, reverse) = request(&api, &b, a.id).await;
    assert_eq!(status, 201, "{reverse}");
    assert_connection(&reverse, &b, &a, "pending");
    let third = assert_id(&reverse["id"]);

    // Removed while pending (by the addressee): either side asks again.
    let (status, _) = remove(&api, &a, third).await;
    assert_eq!(status, 204);
    let fourth = requested(&api, &a, &b).await;
    // Withdrawn by the requester.
    let (status, _) = remove(&api, &a, fourth).await;
    assert_eq!(status, 204);
    let fifth = requested(&api, &b, &a).await;
    // Accepted, then removed: both may ask again.
    let (status, _) = act(&api, &a, fifth, "accept").await;
    assert_eq!(status, 200);
    let (status, _) = remove(&api, &b, fifth).await;
    assert_eq!(status, 204);
    let sixth = requested(&api, &a, &b).await;
    let (status, _) = act(&api, &b, sixth, "accept").await;
    assert_eq!(status, 200);
    let (status, _) = remove(&api, &a, sixth).await;
    assert_eq!(status, 204);
    let seventh = requested(&api, &b, &a).await;

    // The history of the pair is all there, each with its final status.
    let all = list(&api, &a, "").await;
    assert_eq!(all["count"], 7);
    let expected = [
        (first, "rejected"),
        (second, "rejected"),
        (third, "removed"),
        (fourth, "removed"),
        (fifth, "removed"),
        (sixth, "removed"),
        (seventh, "pending"),
    ];
    for (id, status) in expected {
        assert_eq!(status_of(&api, &b, id).await, status, "connection {id}");
    }
}

#[tokio::test]
async fn lists_hold_only_your_connections_with_an_optional_status_filter() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let a = who(&api, "alice").await;
    let (b, c, d, e) = (
        who(&api, "bob").await,
        who(&api, "carol").await,
        who(&api, "dave").await,
        who(&api, "erin").await,
    );
    let (f, g) = (who(&api, "frank").await, who(&api, "grace").await);

    let pending = requested(&api, &a, &b).await;
    let (accepted, _) = connected(&api, &c, &a).await;
    let rejected = requested(&api, &d, &a).await;
    assert_eq!(act(&api, &a, rejected, "reject").await.0, 200);
    let removed = requested(&api, &a, &e).await;
    assert_eq!(remove(&api, &e, removed).await.0, 204);
    let unrelated = requested(&api, &f, &g).await;

    let all = list(&api, &a, "").await;
    assert_eq!(all["count"], 4);
    assert_eq!(ids(&all), {
        let mut v = vec![pending, accepted, rejected, removed];
        v.sort_unstable();
        v
    });
    for item in all["results"].as_array().expect("results") {
        let id = item["id"].as_i64().expect("id");
        let (status, detail) = get(&api, &a, id).await;
        assert_eq!((status, &detail), (200, item));
    }
    for (status, id, requester, addressee) in [
        ("pending", pending, &a, &b),
        ("accepted", accepted, &c, &a),
        ("rejected", rejected, &d, &a),
        ("removed", removed, &a, &e),
    ] {
        let page = list(&api, &a, &format!("?status={status}")).await;
        assert_eq!(page["count"], 1, "{status}: {page}");
        assert_eq!(ids(&page), [id]);
        assert_connection(&page["results"][0], requester, addressee, status);
    }
    // Each user sees only their own.
    assert_eq!(ids(&list(&api, &b, "").await), [pending]);
    assert_eq!(ids(&list(&api, &e, "?status=removed").await), [removed]);
    assert_eq!(list(&api, &e, "?status=pending").await["count"], 0);
    assert_eq!(ids(&list(&api, &f, "").await), [unrelated]);
    assert_eq!(ids(&list(&api, &g, "?status=pending").await), [unrelated]);

    let (status, body) = api
        .call(
            "GET",
            "/api/connections/?status=bogus",
            Some(&a.token),
            None,
        )
        .await;
    assert_field_error(status, &body, "status");
}

#[tokio::test]
async fn outsiders_get_404_on_every_connection_route() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b, c) = (
        who(&api, "alice").await,
        who(&api, "bob").await,
        who(&api, "mallory").await,
    );
    let pending = requested(&api, &a, &b).await;
    let (accepted, _) = connected(&api, &a, &who(&api, "dave").await).await;
    for id in [pending, accepted] {
        let (status, body) = get(&api, &c, id).await;
        assert_error_code(status, &body, 404, "not_found");
        for action in ["accept", "reject"] {
            let (status, body) = act(&api, &c, id, action).await;
            assert_error(status, &body, 404);
        }
        let (status, body) = remove(&api, &c, id).await;
        assert_error(status, &body, 404);
    }
    assert_eq!(status_of(&api, &a, pending).await, "pending");
    assert_eq!(status_of(&api, &a, accepted).await, "accepted");
    // Unknown ids look the same.
    for by in [&a, &c] {
        let (status, body) = get(&api, by, 999_999).await;
        assert_error(status, &body, 404);
        let (status, body) = act(&api, by, 999_999, "accept").await;
        assert_error(status, &body, 404);
        let (status, body) = remove(&api, by, 999_999).await;
        assert_error(status, &body, 404);
    }
    let (status, body) = api
        .call("GET", &format!("/api/connections/{pending}/"), None, None)
        .await;
    assert_error(status, &body, 401);
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/connections/{pending}/accept/"),
            None,
            None,
        )
        .await;
    assert_error(status, &body, 401);
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/connections/{pending}/"),
            None,
            None,
        )
        .await;
    assert_error(status, &body, 401);
    assert_eq!(status_of(&api, &a, pending).await, "pending");
}

#[tokio::test]
async fn only_the_addressee_answers_and_only_while_pending() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);
    let id = requested(&api, &a, &b).await;

    // The requester may not answer.
    for action in ["accept", "reject"] {
        let (status, body) = act(&api, &a, id, action).await;
        assert_error(status, &body, 403);
    }
    assert_eq!(status_of(&api, &b, id).await, "pending");

    let (status, conn) = act(&api, &b, id, "accept").await;
    assert_eq!(status, 200, "{conn}");
    assert_connection(&conn, &a, &b, "accepted");

    // The requester is refused before the status is looked at.
    for action in ["accept", "reject"] {
        let (status, body) = act(&api, &a, id, action).await;
        assert_error(status, &body, 403);
        let (status, body) = act(&api, &b, id, action).await;
        assert_error(status, &body, 409);
    }
    let (status, after) = get(&api, &a, id).await;
    assert_eq!(
        (status, &after["conversation_id"]),
        (200, &conn["conversation_id"])
    );
    assert_eq!(after["status"], "accepted");

    // Rejected.
    let c = who(&api, "carol").await;
    let rejected = requested(&api, &c, &b).await;
    let (status, conn) = act(&api, &b, rejected, "reject").await;
    assert_eq!(status, 200, "{conn}");
    assert_connection(&conn, &c, &b, "rejected");
    for action in ["accept", "reject"] {
        let (status, body) = act(&api, &c, rejected, action).await;
        assert_error(status, &body, 403);
        let (status, body) = act(&api, &b, rejected, action).await;
        assert_error(status, &body, 409);
    }
    assert_eq!(status_of(&api, &c, rejected).await, "rejected");

    // Removed.
    let d = who(&api, "dave").await;
    let removed = requested(&api, &d, &b).await;
    assert_eq!(remove(&api, &d, removed).await.0, 204);
    for action in ["accept", "reject"] {
        let (status, body) = act(&api, &d, removed, action).await;
        assert_error(status, &body, 403);
        let (status, body) = act(&api, &b, removed, action).await;
        assert_error(status, &body, 409);
    }
    assert_eq!(status_of(&api, &d, removed).await, "removed");
}

#[tokio::test]
async fn accepting_creates_the_pairs_conversation() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);
    let id = requested(&api, &a, &b).await;
    let (_, before) = get(&api, &a, id).await;
    let (status, conn) = act(&api, &b, id, "accept").await;
    assert_eq!(status, 200, "{conn}");
    assert_connection(&conn, &a, &b, "accepted");
    assert_eq!(conn["id"], id);
    assert_eq!(conn["created_at"], before["created_at"]);
    let conv = assert_id(&conn["conversation_id"]);
    for side in [&a, &b] {
        let (status, got) = get(&api, side, id).await;
        assert_eq!((status, &got), (200, &conn));
        let (status, c) = api
            .call(
                "GET",
                &format!("/api/chat/conversations/{conv}/"),
                Some(&side.token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["id"], conv);
        assert_eq!(c["connection_id"], id);
        assert_eq!(c["can_send"], true);
        let mut participants: Vec<i64> = c["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .map(|u| u["id"].as_i64().expect("id"))
            .collect();
        participants.sort_unstable();
        let mut expected = vec![a.id, b.id];
        expected.sort_unstable();
        assert_eq!(participants, expected);
    }
    let (status, msg) = send(&api, &a, conv, "hello").await;
    assert_eq!(status, 201, "{msg}");
}

#[tokio::test]
async fn removing_keeps_the_history_readable_but_closed_until_reconnected() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);
    let (id, conv) = connected(&api, &a, &b).await;
    let (status, first) = send(&api, &a, conv, "before the break").await;
    assert_eq!(status, 201, "{first}");
    let (status, reply) = send(&api, &b, conv, "reply").await;
    assert_eq!(status, 201, "{reply}");

    let (status, body) = remove(&api, &b, id).await;
    assert_eq!((status, body), (204, Value::Null));
    let (_, removed) = get(&api, &a, id).await;
    assert_connection(&removed, &a, &b, "removed");

    // Still readable by both; nobody can send.
    for side in [&a, &b] {
        let (status, c) = api
            .call(
                "GET",
                &format!("/api/chat/conversations/{conv}/"),
                Some(&side.token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["can_send"], false);
        let (status, history) = api
            .call(
                "GET",
                &format!("/api/chat/conversations/{conv}/messages/"),
                Some(&side.token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(history["count"], 2);
        let (status, body) = send(&api, side, conv, "anyone there?").await;
        assert_error(status, &body, 403);
        let (status, got) = api
            .call(
                "GET",
                &format!("/api/chat/messages/{}/", first["id"]),
                Some(&side.token),
                None,
            )
            .await;
        assert_eq!((status, &got["content"]), (200, &json!("before the break")));
    }

    for side in [&a, &b] {
        let (status, convs) = api
            .call("GET", "/api/chat/conversations/", Some(&side.token), None)
            .await;
        assert_eq!(status, 200, "{convs}");
        assert_eq!(convs["count"], 1, "{convs}");
        assert_eq!(convs["results"][0]["id"], conv);
        assert_eq!(convs["results"][0]["can_send"], false);
    }

    // Reconnecting (the other way round) brings the same conversation back.
    let again = requested(&api, &b, &a).await;
    assert_ne!(again, id);
    let (status, conn) = act(&api, &a, again, "accept").await;
    assert_eq!(status, 200, "{conn}");
    assert_connection(&conn, &b, &a, "accepted");
    assert_eq!(conn["conversation_id"], conv);
    let (status, history) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages/"),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let contents: Vec<&str> = history["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(contents, ["reply", "before the break"]);
    let (status, c) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (c["can_send"].as_bool(), c["connection_id"].as_i64()),
        (Some(true), Some(again))
    );
    let (status, msg) = send(&api, &b, conv, "back again").await;
    assert_eq!(status, 201, "{msg}");
    // One conversation for the pair, ever.
    for side in [&a, &b] {
        let (status, convs) = api
            .call("GET", "/api/chat/conversations/", Some(&side.token), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(convs["count"], 1, "{convs}");
        assert_eq!(convs["results"][0]["id"], conv);
    }
    // A third round, removed by the other side, still the same one.
    assert_eq!(remove(&api, &a, again).await.0, 204);
    let (_, conv3) = connected(&api, &a, &b).await;
    assert_eq!(conv3, conv);
}

#[tokio::test]
async fn a_removed_connection_refuses_sends_over_websocket() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);
    let (id, conv) = connected(&api, &a, &b).await;
    let (status, _) = send(&api, &a, conv, "hello").await;
    assert_eq!(status, 201);
    assert_eq!(remove(&api, &a, id).await.0, 204);

    let mut ws = ws::join(&server.ws_url(""), conv, &b.token).await;
    ws::send(
        &mut ws,
        json!({"type": "chat_message", "content": "still there?"}),
    )
    .await;
    let event = ws::next(&mut ws).await;
    assert_eq!(event["type"], "error", "{event}");
    assert!(
        event["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{event}"
    );
    // Nothing was stored, and the socket stays usable once reconnected.
    let (_, history) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages/"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(history["count"], 1, "{history}");
    let again = requested(&api, &b, &a).await;
    assert_eq!(act(&api, &a, again, "accept").await.0, 200);
    ws::send(
        &mut ws,
        json!({"type": "chat_message", "content": "reconnected"}),
    )
    .await;
    let event = ws::next(&mut ws).await;
    assert_eq!(
        (event["type"].as_str(), event["content"].as_str()),
        (Some("chat_message"), Some("reconnected")),
        "{event}"
    );
}

#[tokio::test]
async fn either_side_removes_pending_or_accepted_but_not_closed_ones() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (a, b) = (who(&api, "alice").await, who(&api, "bob").await);

    // Pending: withdrawn by the requester, declined by the addressee.
    for remover in [&a, &b] {
        let id = requested(&api, &a, &b).await;
        let (status, body) = remove(&api, remover, id).await;
        assert_eq!((status, body), (204, Value::Null));
        let (status, conn) = get(&api, &b, id).await;
        assert_eq!(status, 200);
        assert_connection(&conn, &a, &b, "removed");
        for by in [&a, &b] {
            let (status, body) = remove(&api, by, id).await;
            assert_error(status, &body, 409);
        }
    }
    // Accepted: by either side.
    for remover in [&a, &b] {
        let (id, conv) = connected(&api, &a, &b).await;
        let (status, body) = remove(&api, remover, id).await;
        assert_eq!((status, body), (204, Value::Null));
        let (status, conn) = get(&api, &a, id).await;
        assert_eq!(status, 200);
        assert_connection(&conn, &a, &b, "removed");
        assert_eq!(conn["conversation_id"], conv);
        for by in [&a, &b] {
            let (status, body) = remove(&api, by, id).await;
            assert_error(status, &body, 409);
        }
    }
    // Rejected: nobody can remove it.
    let id = requested(&api, &a, &b).await;
    assert_eq!(act(&api, &b, id, "reject").await.0, 200);
    for by in [&a, &b] {
        let (status, body) = remove(&api, by, id).await;
        assert_error(status, &body, 409);
    }
    assert_eq!(status_of(&api, &a, id).await, "rejected");
    assert_eq!(list(&api, &a, "?status=removed").await["count"], 4);
}

#[tokio::test]
async fn concurrent_accepts_let_exactly_one_through() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for round in 0..5 {
        let a = who(&api, &format!("req{round}")).await;
        let b = who(&api, &format!("addr{round}")).await;
        let id = requested(&api, &a, &b).await;
        let ((s1, c1), (s2, c2)) =
            tokio::join!(act(&api, &b, id, "accept"), act(&api, &b, id, "accept"));
        let mut statuses = [s1, s2];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "{c1} {c2}");
        let (winner, loser) = if s1 == 200 { (c1, c2) } else { (c2, c1) };
        assert_error(409, &loser, 409);
        let conv = assert_id(&winner["conversation_id"]);
        let (_, conn) = get(&api, &a, id).await;
        assert_eq!(
            (conn["status"].as_str(), conn["conversation_id"].as_i64()),
            (Some("accepted"), Some(conv))
        );
        for side in [&a, &b] {
            let (status, convs) = api
                .call("GET", "/api/chat/conversations/", Some(&side.token), None)
                .await;
            assert_eq!(status, 200);
            assert_eq!(convs["count"], 1, "{convs}");
            assert_eq!(convs["results"][0]["id"], conv);
        }

        // Accept against reject: one wins, and the state says which.
        let c = who(&api, &format!("third{round}")).await;
        let id = requested(&api, &c, &b).await;
        let ((s1, _), (s2, _)) =
            tokio::join!(act(&api, &b, id, "accept"), act(&api, &b, id, "reject"));
        let mut statuses = [s1, s2];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409]);
        let expected = if s1 == 200 { "accepted" } else { "rejected" };
        assert_eq!(status_of(&api, &c, id).await, expected);
    }
}

#[tokio::test]
async fn concurrent_requests_between_a_pair_create_one_connection() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for round in 0..5 {
        let a = who(&api, &format!("left{round}")).await;
        let b = who(&api, &format!("right{round}")).await;
        let ((s1, c1), (s2, c2)) = tokio::join!(request(&api, &a, b.id), request(&api, &b, a.id));
        let mut statuses = [s1, s2];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "{c1} {c2}");
        assert_eq!(list(&api, &a, "").await["count"], 1);
        assert_eq!(list(&api, &b, "").await["count"], 1);
    }
}

/// One user requesting many others at once, and all of them accepting at
/// once: every request and every accept succeeds (on PostgreSQL, the
/// connection's foreign-key checks and the stream's user locks must not
/// deadlock).
#[tokio::test]
async fn one_users_concurrent_requests_and_accepts_all_succeed() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let hub = who(&api, "hub").await;
    let mut others = Vec::new();
    for i in 0..24 {
        others.push(who(&api, &format!("spoke{i}")).await);
    }
    let requests =
        futures_util::future::join_all(others.iter().map(|o| request(&api, &hub, o.id))).await;
    let mut ids = Vec::new();
    for (status, body) in &requests {
        assert_eq!(*status, 201, "{body}");
        ids.push(assert_id(&body["id"]));
    }
    let accepts = futures_util::future::join_all(
        others
            .iter()
            .zip(&ids)
            .map(|(o, id)| act(&api, o, *id, "accept")),
    )
    .await;
    for (status, body) in &accepts {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["status"], "accepted");
    }
    assert_eq!(list(&api, &hub, "?status=accepted").await["count"], 24);
    // Half of them removed at once, by either side.
    let (api, hub) = (&api, &hub);
    let removals = futures_util::future::join_all(
        others[..12]
            .iter()
            .zip(&ids)
            .map(|(o, id)| remove(api, if o.id % 2 == 0 { o } else { hub }, *id)),
    )
    .await;
    for (status, body) in &removals {
        assert_eq!(*status, 204, "{body}");
    }
    assert_eq!(list(api, hub, "?status=accepted").await["count"], 12);
}
