//! Conversations and messages over HTTP (API.md, "Conversations and
//! messages"), and the HTTP half of "Beyond the seed": history cursors and
//! idempotent sends with `client_id`.

use crate::support::*;
use crate::ws_support as ws;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const USER_KEYS: [&str; 6] = [
    "id",
    "username",
    "first_name",
    "last_name",
    "name",
    "avatar",
];
const CONVERSATION_KEYS: [&str; 10] = [
    "id",
    "connection_id",
    "participants",
    "other_user",
    "last_message",
    "unread_count",
    "can_send",
    "created_at",
    "updated_at",
    "other_user_presence",
];
pub(crate) const MESSAGE_KEYS: [&str; 14] = [
    "id",
    "conversation_id",
    "sender_id",
    "sender_name",
    "sender_avatar",
    "content",
    "is_read",
    "read_at",
    "created_at",
    "client_id",
    "status",
    "delivered_at",
    "reactions",
    "attachments",
];
const CHAT_EVENT_KEYS: [&str; 10] = [
    "type",
    "message_id",
    "conversation_id",
    "sender_id",
    "sender_name",
    "sender_avatar",
    "content",
    "created_at",
    "client_id",
    "attachments",
];
const READ_EVENT_KEYS: [&str; 4] = ["type", "user_id", "message_ids", "read_at"];

// ---------------------------------------------------------------- helpers

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .cloned()
        .collect()
}

fn assert_keys(v: &Value, expected: &[&str]) {
    let want: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(keys(v), want, "fields of {v}");
}

/// An RFC 3339 UTC timestamp with a `Z` suffix.
fn timestamp(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp must be a string: {v}"));
    assert!(s.ends_with('Z'), "timestamp without Z suffix: {s}");
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("not RFC 3339: {s}: {e}"))
        .with_timezone(&chrono::Utc)
}

fn id(v: &Value) -> i64 {
    v["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {v}"))
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(id).collect()
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

fn id_list(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of ids, got {v}"))
        .iter()
        .map(|x| x.as_i64().unwrap_or_else(|| panic!("not an id: {x}")))
        .collect()
}

/// Registers a user with names and avatar; returns (user object, access token).
async fn named_user(
    api: &Api,
    username: &str,
    first: &str,
    last: &str,
    avatar: Option<&str>,
) -> (Value, String) {
    api.user_with(
        username,
        json!({"first_name": first, "last_name": last, "avatar": avatar}),
    )
    .await
}

async fn post_message(api: &Api, token: &str, body: Value) -> (u16, Value) {
    api.call("POST", "/api/chat/messages/", Some(token), Some(body))
        .await
}

async fn conversation(api: &Api, token: &str, conversation: i64) -> Value {
    let path = format!("/api/chat/conversations/{conversation}/");
    let (status, body) = api.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn conversation_list(api: &Api, token: &str, query: &str) -> Value {
    let path = format!("/api/chat/conversations/{query}");
    let (status, body) = api.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The whole history (up to 100 messages), newest first.
async fn history(api: &Api, token: &str, conversation: i64) -> Vec<Value> {
    let path = format!("/api/chat/conversations/{conversation}/messages/?page_size=100");
    let (status, body) = api.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["results"].as_array().expect("results").clone()
}

async fn message(api: &Api, token: &str, message: i64) -> Value {
    let path = format!("/api/chat/messages/{message}/");
    let (status, body) = api.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn mark_read(api: &Api, token: &str, conversation: i64, body: Option<Value>) -> Value {
    let path = format!("/api/chat/conversations/{conversation}/mark_read/");
    let (status, res) = api.call("POST", &path, Some(token), body).await;
    assert_eq!(status, 200, "{res}");
    assert_keys(&res, &["marked", "message_ids", "read_at"]);
    timestamp(&res["read_at"]);
    assert_eq!(
        res["marked"].as_u64(),
        Some(id_list(&res["message_ids"]).len() as u64),
        "marked counts message_ids: {res}"
    );
    res
}

async fn cursor(api: &Api, token: &str, conversation: i64, query: &str) -> (Vec<i64>, bool) {
    let path = format!("/api/chat/conversations/{conversation}/messages/?{query}");
    let (status, body) = api.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_keys(&body, &["results", "has_more"]);
    let results = body["results"].as_array().expect("results");
    for m in results {
        assert_keys(m, &MESSAGE_KEYS);
    }
    (
        ids(results),
        body["has_more"].as_bool().expect("has_more is a boolean"),
    )
}

// ------------------------------------------------------- the conversation

#[tokio::test]
async fn conversation_object_has_every_field_for_each_participant() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = named_user(
        &api,
        "alice",
        "Alice",
        "Liddell",
        Some("https://example.com/alice.png"),
    )
    .await;
    let (bob, tb) = named_user(&api, "bob", "", "", None).await;
    let (conv, connection) = api.connect(&ta, &tb, id(&bob)).await;

    let for_alice = conversation(&api, &ta, conv).await;
    assert_keys(&for_alice, &CONVERSATION_KEYS);
    assert_eq!(for_alice["id"], conv);
    assert_eq!(for_alice["connection_id"], connection);
    let participants = for_alice["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 2, "{for_alice}");
    for p in participants {
        assert_keys(p, &USER_KEYS);
    }
    assert_eq!(
        sorted(ids(participants)),
        sorted(vec![id(&alice), id(&bob)])
    );
    assert!(participants.contains(&alice) && participants.contains(&bob));
    assert_eq!(for_alice["other_user"], bob);
    assert_eq!(for_alice["last_message"], Value::Null);
    assert_eq!(for_alice["unread_count"], 0);
    assert_eq!(for_alice["can_send"], true);
    let created = timestamp(&for_alice["created_at"]);
    assert_eq!(
        timestamp(&for_alice["updated_at"]),
        created,
        "no message yet: updated_at is the creation time"
    );

    let for_bob = conversation(&api, &tb, conv).await;
    assert_keys(&for_bob, &CONVERSATION_KEYS);
    assert_eq!(for_bob["other_user"], alice);
    assert_eq!(for_bob["participants"].as_array().map(Vec::len), Some(2));
    assert_eq!(for_bob["created_at"], for_alice["created_at"]);

    // Bob writes twice: Alice has two unread, Bob none; the last message is
    // the message object of the second.
    let first = api.send_message(&tb, conv, "first").await;
    let second = api.send_message(&tb, conv, "second").await;
    let for_alice = conversation(&api, &ta, conv).await;
    assert_keys(&for_alice, &CONVERSATION_KEYS);
    assert_eq!(for_alice["last_message"], second);
    assert_eq!(for_alice["unread_count"], 2);
    assert_eq!(for_alice["updated_at"], second["created_at"]);
    assert_eq!(for_alice["created_at"], for_bob["created_at"]);
    assert!(timestamp(&second["created_at"]) >= timestamp(&first["created_at"]));
    let for_bob = conversation(&api, &tb, conv).await;
    assert_eq!(for_bob["unread_count"], 0, "own messages are not unread");
    assert_eq!(for_bob["last_message"], second);

    // Alice answers: each side now has the other's messages unread.
    let reply = api.send_message(&ta, conv, "reply").await;
    let for_bob = conversation(&api, &tb, conv).await;
    assert_eq!(for_bob["unread_count"], 1);
    assert_eq!(for_bob["last_message"], reply);
    assert_eq!(for_bob["updated_at"], reply["created_at"]);
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 2);

    // The list shows the same object as the detail.
    let list = conversation_list(&api, &ta, "").await;
    assert_eq!(list["results"][0], conversation(&api, &ta, conv).await);
    let list = conversation_list(&api, &tb, "").await;
    assert_eq!(list["results"][0], conversation(&api, &tb, conv).await);
}

#[tokio::test]
async fn message_object_has_every_field() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = named_user(
        &api,
        "alice",
        "Alice",
        "Liddell",
        Some("https://example.com/alice.png"),
    )
    .await;
    let (bob, tb) = named_user(&api, "bob", "", "", None).await;
    let (conv, _) = api.connect(&ta, &tb, id(&bob)).await;

    let from_alice = api.send_message(&ta, conv, "Hello!").await;
    assert_keys(&from_alice, &MESSAGE_KEYS);
    assert!(id(&from_alice) > 0);
    assert_eq!(from_alice["conversation_id"], conv);
    assert_eq!(from_alice["sender_id"], alice["id"]);
    assert_eq!(from_alice["sender_name"], "Alice Liddell");
    assert_eq!(from_alice["sender_avatar"], "https://example.com/alice.png");
    assert_eq!(from_alice["content"], "Hello!");
    assert_eq!(from_alice["is_read"], false);
    assert_eq!(from_alice["read_at"], Value::Null);
    assert_eq!(from_alice["client_id"], Value::Null);
    timestamp(&from_alice["created_at"]);

    let from_bob = api.send_message(&tb, conv, "Hi").await;
    assert_keys(&from_bob, &MESSAGE_KEYS);
    assert_eq!(from_bob["sender_id"], bob["id"]);
    assert_eq!(from_bob["sender_name"], "bob", "username when no names");
    assert_eq!(from_bob["sender_avatar"], Value::Null);
    assert!(id(&from_bob) > id(&from_alice), "ids increase");

    // The same object from the detail route (to both) and in the history.
    for token in [&ta, &tb] {
        assert_eq!(message(&api, token, id(&from_alice)).await, from_alice);
        assert_eq!(message(&api, token, id(&from_bob)).await, from_bob);
        assert_eq!(
            history(&api, token, conv).await,
            vec![from_bob.clone(), from_alice.clone()]
        );
    }
}

#[tokio::test]
async fn list_puts_the_most_recently_active_conversation_first() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = api.user("alice").await;
    let mut convs = Vec::new();
    let mut tokens = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let (u, t) = api.user(name).await;
        let (conv, _) = api.connect(&t, &ta, id(&alice)).await;
        assert_eq!(
            conversation(&api, &ta, conv).await["other_user"]["id"],
            u["id"]
        );
        convs.push(conv);
        tokens.push(t);
    }
    let order = |list: &Value| -> Vec<i64> { ids(list["results"].as_array().expect("results")) };
    let (bob, carol, dave) = (convs[0], convs[1], convs[2]);

    // No messages: newest conversation first.
    assert_eq!(
        order(&conversation_list(&api, &ta, "").await),
        vec![dave, carol, bob]
    );
    // A send in the oldest conversation moves it to the top, for both sides.
    api.send_message(&ta, bob, "back to you").await;
    assert_eq!(
        order(&conversation_list(&api, &ta, "").await),
        vec![bob, dave, carol]
    );
    // Whoever sends: Carol's message moves hers up.
    api.send_message(&tokens[1], carol, "me too").await;
    let list = conversation_list(&api, &ta, "").await;
    assert_eq!(order(&list), vec![carol, bob, dave]);
    let updated: Vec<_> = list["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|c| timestamp(&c["updated_at"]))
        .collect();
    assert!(
        updated.windows(2).all(|w| w[0] >= w[1]),
        "ordered by updated_at: {list}"
    );
    // Reading a conversation is not activity.
    mark_read(&api, &ta, carol, None).await;
    mark_read(&api, &tokens[0], bob, None).await;
    assert_eq!(
        order(&conversation_list(&api, &ta, "").await),
        vec![carol, bob, dave]
    );
    // Each partner sees only their own conversation.
    for (t, conv) in tokens.iter().zip(&convs) {
        let list = conversation_list(&api, t, "").await;
        assert_eq!(list["count"], 1);
        assert_eq!(order(&list), vec![*conv]);
    }
}

#[tokio::test]
async fn conversation_list_is_paginated_drf_style() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = api.user("alice").await;

    // Nothing yet: an empty first page, and no second page.
    let empty = conversation_list(&api, &ta, "").await;
    assert_eq!(
        empty,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
    let (status, body) = api
        .call("GET", "/api/chat/conversations/?page=2", Some(&ta), None)
        .await;
    assert_error(status, &body, 404);

    let mut convs = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let (_, t) = api.user(name).await;
        convs.push(api.connect(&t, &ta, id(&alice)).await.0);
    }
    convs.reverse(); // newest first

    // Exactly one page.
    let one = conversation_list(&api, &ta, "?page_size=3").await;
    assert_eq!(one["count"], 3);
    assert_eq!(one["next"], Value::Null);
    assert_eq!(one["previous"], Value::Null);
    assert_eq!(ids(one["results"].as_array().expect("results")), convs);
    let (status, body) = api
        .call(
            "GET",
            "/api/chat/conversations/?page=2&page_size=3",
            Some(&ta),
            None,
        )
        .await;
    assert_error(status, &body, 404);

    // Two pages of two, linked by absolute URLs.
    let first = conversation_list(&api, &ta, "?page_size=2").await;
    assert_eq!(first["count"], 3);
    assert_eq!(first["previous"], Value::Null);
    assert_eq!(
        ids(first["results"].as_array().expect("results")),
        convs[..2]
    );
    let next = first["next"].as_str().expect("next link");
    assert!(next.starts_with(&api.base), "absolute next link: {next}");
    let (status, second) = api
        .call("GET", &next[api.base.len()..], Some(&ta), None)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["count"], 3);
    assert_eq!(second["next"], Value::Null);
    assert_eq!(
        ids(second["results"].as_array().expect("results")),
        convs[2..]
    );
    let previous = second["previous"].as_str().expect("previous link");
    assert!(previous.starts_with(&api.base), "absolute link: {previous}");
    let (status, back) = api
        .call("GET", &previous[api.base.len()..], Some(&ta), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(back, first);
    let (status, body) = api
        .call(
            "GET",
            "/api/chat/conversations/?page=3&page_size=2",
            Some(&ta),
            None,
        )
        .await;
    assert_error(status, &body, 404);

    // A page size above the limit is clamped, not refused.
    let clamped = conversation_list(&api, &ta, "?page_size=1000").await;
    assert_eq!(clamped["count"], 3);
    assert_eq!(clamped["results"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn listing_conversations_costs_the_same_statements_whatever_the_page_size() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = api.user("alice").await;
    let mut partners = Vec::new();
    for i in 0..30 {
        let (u, t) = api.user(&format!("partner{i:02}")).await;
        let (conv, _) = api.connect(&t, &ta, id(&alice)).await;
        api.send_message(&t, conv, &format!("hello from {i}")).await;
        partners.push((id(&u), conv));
    }
    partners.reverse(); // most recently active first

    let mut used = Vec::new();
    for size in [1usize, 10, 30, 1, 10, 30] {
        let before = server.database.statements_executed();
        let page = conversation_list(&api, &ta, &format!("?page_size={size}")).await;
        used.push(server.database.statements_executed() - before);
        let results = page["results"].as_array().expect("results");
        assert_eq!(results.len(), size);
        assert_eq!(page["count"], 30);
        for (c, (partner, conv)) in results.iter().zip(&partners) {
            assert_eq!(c["id"], *conv);
            assert_eq!(c["other_user"]["id"], *partner);
            assert_eq!(c["unread_count"], 1);
            assert_eq!(c["last_message"]["sender_id"], *partner);
            assert_eq!(c["last_message"]["conversation_id"], *conv);
        }
    }
    assert!(
        used.iter().all(|n| *n == used[0]),
        "statements for page sizes 1, 10, 30 (twice): {used:?}"
    );
}

#[tokio::test]
async fn strangers_and_unknown_ids_get_404_on_every_route() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    // Eve has a conversation of her own, so she is an ordinary user.
    let (te, _, eves, _, _) = api.pair("eve", "mallory").await;
    let msg = api.send_message(&tb, conv, "private").await;
    let mid = id(&msg);

    let routes = |c: i64, m: i64| {
        vec![
            ("GET", format!("/api/chat/conversations/{c}/"), None),
            (
                "GET",
                format!("/api/chat/conversations/{c}/messages/"),
                None,
            ),
            (
                "GET",
                format!("/api/chat/conversations/{c}/messages/?page=1&page_size=10"),
                None,
            ),
            (
                "GET",
                format!("/api/chat/conversations/{c}/messages/?before={m}&limit=10"),
                None,
            ),
            (
                "GET",
                format!("/api/chat/conversations/{c}/messages/?after=1"),
                None,
            ),
            (
                "GET",
                format!("/api/chat/conversations/{c}/messages/?before=abc&after=-1&limit=0"),
                None,
            ),
            (
                "POST",
                format!("/api/chat/conversations/{c}/mark_read/"),
                None,
            ),
            (
                "POST",
                format!("/api/chat/conversations/{c}/mark_read/"),
                Some(json!({"message_ids": "not a list"})),
            ),
            (
                "POST",
                format!("/api/chat/conversations/{c}/mark_read/"),
                Some(json!({"message_ids": [m]})),
            ),
            ("GET", format!("/api/chat/messages/{m}/"), None),
            (
                "POST",
                "/api/chat/messages/".to_owned(),
                Some(json!({"conversation_id": c, "content": "let me in"})),
            ),
            (
                "POST",
                "/api/chat/messages/".to_owned(),
                Some(json!({"conversation_id": c, "content": "retry", "client_id": "k"})),
            ),
        ]
    };
    // A stranger to the conversation.
    for (method, path, body) in routes(conv, mid) {
        let (status, res) = api.call(method, &path, Some(&te), body).await;
        assert_error(status, &res, 404);
        assert_eq!(res["code"], "not_found", "{method} {path}: {res}");
    }
    // Ids nobody has.
    for (method, path, body) in routes(999_999, 999_999) {
        let (status, res) = api.call(method, &path, Some(&ta), body).await;
        assert_error(status, &res, 404);
        assert_eq!(res["code"], "not_found", "{method} {path}: {res}");
    }
    // The 404 for the stranger is indistinguishable from the unknown id.
    let (_, stranger) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&te),
            None,
        )
        .await;
    let (_, unknown) = api
        .call("GET", "/api/chat/conversations/999999/", Some(&te), None)
        .await;
    assert_eq!(stranger, unknown);

    // Nothing leaked or changed: Eve stored nothing, Bob's message is unread.
    assert_eq!(history(&api, &ta, conv).await, vec![msg.clone()]);
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 1);
    assert_eq!(message(&api, &ta, mid).await["is_read"], false);
    let list = conversation_list(&api, &te, "").await;
    assert_eq!(
        ids(list["results"].as_array().expect("results")),
        vec![eves]
    );
    assert!(history(&api, &te, eves).await.is_empty());
}

// ------------------------------------------------------------- history

#[tokio::test]
async fn history_is_newest_first_and_page_one_holds_the_latest() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let (tc, _, other, _, _) = api.pair("carol", "dave").await;
    assert!(history(&api, &ta, conv).await.is_empty());
    let mut sent = Vec::new();
    for i in 1..=5 {
        let token = if i % 2 == 0 { &tb } else { &ta };
        sent.push(api.send_message(token, conv, &format!("m{i}")).await);
    }
    let newest_first: Vec<i64> = ids(&sent).into_iter().rev().collect();

    let path = |q: &str| format!("/api/chat/conversations/{conv}/messages/{q}");
    let (status, all) = api.call("GET", &path(""), Some(&ta), None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["count"], 5);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["previous"], Value::Null);
    let results = all["results"].as_array().expect("results");
    assert_eq!(ids(results), newest_first);
    for m in results {
        assert_keys(m, &MESSAGE_KEYS);
        assert_eq!(m["conversation_id"], conv);
    }
    let times: Vec<_> = results
        .iter()
        .map(|m| timestamp(&m["created_at"]))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    let mut pages = Vec::new();
    for page in 1..=3 {
        let (status, body) = api
            .call(
                "GET",
                &path(&format!("?page={page}&page_size=2")),
                Some(&tb),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 5);
        assert_eq!(body["next"].is_string(), page < 3, "{body}");
        assert_eq!(body["previous"].is_string(), page > 1, "{body}");
        pages.push(ids(body["results"].as_array().expect("results")));
    }
    assert_eq!(pages[0], newest_first[..2], "page 1 holds the latest");
    assert_eq!(pages[1], newest_first[2..4]);
    assert_eq!(pages[2], newest_first[4..]);
    let (status, body) = api
        .call("GET", &path("?page=4&page_size=2"), Some(&ta), None)
        .await;
    assert_error(status, &body, 404);

    // A message elsewhere does not appear here.
    api.send_message(&tc, other, "elsewhere").await;
    assert_eq!(history(&api, &ta, conv).await.len(), 5);
}

#[tokio::test]
async fn history_and_cursor_limits_default_and_clamp() {
    let (server, api, ta, _, conv, _, _) = pair_server().await;
    let mut sent = Vec::new();
    for i in 0..120 {
        sent.push(id(&api.send_message(&ta, conv, &format!("n{i}")).await));
    }
    let path = |q: &str| format!("/api/chat/conversations/{conv}/messages/{q}");

    // Page numbers: default 50, page_size clamped to 100.
    let (status, body) = api.call("GET", &path(""), Some(&ta), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 120);
    let page: Vec<i64> = ids(body["results"].as_array().expect("results"));
    assert_eq!(
        page,
        sent.iter().rev().take(50).copied().collect::<Vec<_>>()
    );
    assert!(body["next"].is_string());
    let (status, body) = api
        .call("GET", &path("?page_size=1000"), Some(&ta), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 120);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(100));
    let (status, body) = api
        .call("GET", &path("?page=2&page_size=1000"), Some(&ta), None)
        .await;
    assert_eq!(status, 200, "clamped pages: 100 + 20: {body}");
    assert_eq!(
        ids(body["results"].as_array().expect("results")),
        sent[..20].iter().rev().copied().collect::<Vec<_>>()
    );

    // Cursors: limit defaults to 50 and is clamped to 100.
    let (got, more) = cursor(&api, &ta, conv, &format!("after={}", sent[0])).await;
    assert_eq!(got, sent[1..51]);
    assert!(more);
    let (got, more) = cursor(&api, &ta, conv, &format!("after={}&limit=1000", sent[0])).await;
    assert_eq!(got, sent[1..101]);
    assert!(more);
    let (got, more) = cursor(&api, &ta, conv, &format!("after={}&limit=1000", sent[19])).await;
    assert_eq!(got, sent[20..]);
    assert!(!more, "exactly 100 left: nothing more");
    let (got, more) = cursor(&api, &ta, conv, &format!("before={}", sent[119])).await;
    assert_eq!(got, sent[69..119].iter().rev().copied().collect::<Vec<_>>());
    assert!(more);
    let (got, more) = cursor(&api, &ta, conv, &format!("before={}&limit=101", sent[119])).await;
    assert_eq!(got, sent[19..119].iter().rev().copied().collect::<Vec<_>>());
    assert!(more);
    let (got, more) = cursor(&api, &ta, conv, &format!("before={}&limit=500", sent[100])).await;
    assert_eq!(got, sent[..100].iter().rev().copied().collect::<Vec<_>>());
    assert!(!more);

    // Reading deep in the history costs what reading the top does.
    let mut used = Vec::new();
    for query in [
        format!("before={}&limit=10", sent[119]),
        format!("before={}&limit=10", sent[11]),
        format!("after={}&limit=10", sent[0]),
        format!("after={}&limit=10", sent[100]),
    ] {
        let before = server.database.statements_executed();
        let (got, more) = cursor(&api, &ta, conv, &query).await;
        used.push(server.database.statements_executed() - before);
        assert_eq!((got.len(), more), (10, true), "{query}");
    }
    assert!(used.iter().all(|n| *n == used[0]), "{used:?}");
}

#[tokio::test]
async fn cursors_read_before_and_after_a_message() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let (tc, _, elsewhere, _, _) = api.pair("carol", "dave").await;
    let mut m = Vec::new();
    let mut objects = Vec::new();
    for i in 1..=7 {
        let token = if i % 2 == 0 { &tb } else { &ta };
        let sent = api.send_message(token, conv, &format!("m{i}")).await;
        m.push(id(&sent));
        objects.push(sent);
        if i == 3 {
            // Ids interleave with another conversation's messages.
            api.send_message(&tc, elsewhere, "not here").await;
        }
    }

    // before: older than the id, newest first.
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("before={}&limit=3", m[6]))).await,
        (vec![m[5], m[4], m[3]], true)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("before={}&limit=3", m[3]))).await,
        (vec![m[2], m[1], m[0]], false),
        "exactly the rest: no more"
    );
    assert_eq!(
        cursor(&api, &tb, conv, &(format!("before={}&limit=3", m[2]))).await,
        (vec![m[1], m[0]], false)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("before={}&limit=3", m[0]))).await,
        (vec![], false)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("before={}", m[6]))).await,
        (vec![m[5], m[4], m[3], m[2], m[1], m[0]], false)
    );

    // after: newer than the id, oldest first.
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("after={}&limit=3", m[0]))).await,
        (vec![m[1], m[2], m[3]], true)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("after={}&limit=3", m[3]))).await,
        (vec![m[4], m[5], m[6]], false),
        "exactly the rest: no more"
    );
    assert_eq!(
        cursor(&api, &tb, conv, &(format!("after={}&limit=3", m[4]))).await,
        (vec![m[5], m[6]], false)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("after={}&limit=3", m[6]))).await,
        (vec![], false)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("after={}&limit=1", m[2]))).await,
        (vec![m[3]], true),
        "the other conversation's message in between is skipped"
    );

    // A reconnecting client catches up with the last id it holds.
    let later = api.send_message(&tb, conv, "while you were away").await;
    assert_eq!(
        cursor(&api, &ta, conv, &(format!("after={}", m[6]))).await,
        (vec![id(&later)], false)
    );

    // Results are full message objects, the same as the history's.
    let path = format!(
        "/api/chat/conversations/{conv}/messages/?before={}&limit=2",
        m[2]
    );
    let (status, body) = api.call("GET", &path, Some(&ta), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"results": [objects[1], objects[0]], "has_more": false})
    );
}

#[tokio::test]
async fn bad_cursor_parameters_are_400() {
    let (_server, api, ta, _, conv, _, _) = pair_server().await;
    let a = id(&api.send_message(&ta, conv, "one").await);
    let b = id(&api.send_message(&ta, conv, "two").await);
    for query in [
        format!("before={b}&limit=0"),
        format!("after={a}&limit=0"),
        format!("before={b}&limit=-1"),
        format!("after={a}&limit=-5"),
        format!("before={b}&limit=abc"),
        format!("after={a}&limit=1.5"),
        format!("after={a}&limit="),
        "limit=0".to_owned(),
        "limit=ten".to_owned(),
        "before=abc".to_owned(),
        "after=abc".to_owned(),
        "before=-3".to_owned(),
        "after=-3".to_owned(),
        "before=".to_owned(),
        format!("before={b}&after={a}"),
        format!("after={a}&before={b}&limit=10"),
    ] {
        let path = format!("/api/chat/conversations/{conv}/messages/?{query}");
        let (status, body) = api.call("GET", &path, Some(&ta), None).await;
        assert_error(status, &body, 400);
        assert!(body.get("results").is_none(), "{query}: {body}");
    }
    // Valid neighbours of those still work.
    assert_eq!(
        cursor(&api, &ta, conv, &format!("before={b}&limit=1")).await,
        (vec![a], false)
    );
    assert_eq!(
        cursor(&api, &ta, conv, &format!("after={a}&limit=1")).await,
        (vec![b], false)
    );
}

/// Found by the property-based tester: `page=<garbage>` next to a cursor
/// parameter was ignored (200); an invalid page is a 404 in both modes.
#[tokio::test]
async fn an_invalid_page_is_404_on_cursor_reads_too() {
    let (_server, api, ta, _, conv, _, _) = pair_server().await;
    let a = id(&api.send_message(&ta, conv, "one").await);
    let b = id(&api.send_message(&ta, conv, "two").await);
    for query in [
        format!("before={b}&page=abc"),
        format!("after={a}&page=0"),
        "limit=5&page=-1".to_owned(),
        format!("page=&before={b}"),
        format!("before={b}&page=2&page=%5B%5D"),
    ] {
        let path = format!("/api/chat/conversations/{conv}/messages/?{query}");
        let (status, body) = api.call("GET", &path, Some(&ta), None).await;
        assert_error_code(status, &body, 404, "not_found");
        assert_eq!(body["detail"], "Invalid page.", "{query}");
    }
    // A valid page beside a cursor is no error: the cursor read wins.
    assert_eq!(
        cursor(&api, &ta, conv, &format!("before={b}&limit=1&page=7")).await,
        (vec![a], false)
    );
}

// ------------------------------------------------------------- sending

#[tokio::test]
async fn content_is_trimmed_and_limited_to_5000_characters() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;

    let msg = api
        .send_message(&ta, conv, " \n\t hello  there \r\n ")
        .await;
    assert_eq!(msg["content"], "hello  there");
    assert_eq!(
        message(&api, &tb, id(&msg)).await["content"],
        "hello  there"
    );

    // 5000 characters, multi-byte ones too, and padding that is trimmed off.
    let accents = "é".repeat(5000);
    let m = api.send_message(&ta, conv, &accents).await;
    assert_eq!(m["content"].as_str().map(|s| s.chars().count()), Some(5000));
    assert_eq!(message(&api, &tb, id(&m)).await["content"], accents);
    let emoji = "😀".repeat(5000);
    assert_eq!(api.send_message(&tb, conv, &emoji).await["content"], emoji);
    let padded = format!("   {}   ", "a".repeat(5000));
    assert_eq!(
        api.send_message(&ta, conv, &padded).await["content"],
        "a".repeat(5000)
    );
    let stored = history(&api, &ta, conv).await.len();
    assert_eq!(stored, 4);

    for bad in [
        String::new(),
        " ".to_owned(),
        " \n\t\r ".to_owned(),
        "a".repeat(5001),
        "é".repeat(5001),
        format!(" {} ", "😀".repeat(5001)),
    ] {
        let (status, body) =
            post_message(&api, &ta, json!({"conversation_id": conv, "content": bad})).await;
        assert_field_error(status, &body, "content");
    }
    assert_eq!(
        history(&api, &ta, conv).await.len(),
        stored,
        "nothing stored"
    );
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 3);
}

#[tokio::test]
async fn missing_or_wrongly_typed_fields_are_400_with_fields() {
    let (_server, api, ta, _, conv, _, _) = pair_server().await;

    let (status, body) = post_message(&api, &ta, json!({})).await;
    assert_field_error(status, &body, "conversation_id");
    assert_field_error(status, &body, "content");
    let (status, body) = post_message(&api, &ta, json!({"conversation_id": conv})).await;
    assert_field_error(status, &body, "content");
    assert!(body["fields"].get("conversation_id").is_none(), "{body}");
    let (status, body) = post_message(&api, &ta, json!({"content": "hi"})).await;
    assert_field_error(status, &body, "conversation_id");
    assert!(body["fields"].get("content").is_none(), "{body}");
    let (status, body) =
        post_message(&api, &ta, json!({"conversation_id": null, "content": null})).await;
    assert_field_error(status, &body, "conversation_id");
    assert_field_error(status, &body, "content");
    let (status, body) =
        post_message(&api, &ta, json!({"conversation_id": conv, "content": 42})).await;
    assert_field_error(status, &body, "content");
    let (status, body) = post_message(
        &api,
        &ta,
        json!({"conversation_id": "abc", "content": "hi"}),
    )
    .await;
    assert_field_error(status, &body, "conversation_id");
    let (status, body) = post_message(&api, &ta, json!(["not", "an", "object"])).await;
    assert_error(status, &body, 400);
    assert!(history(&api, &ta, conv).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn messages_cannot_be_edited_or_deleted() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let msg = api.send_message(&ta, conv, "carved in stone").await;
    let path = format!("/api/chat/messages/{}/", id(&msg));
    for (method, token) in [
        ("PUT", &ta),
        ("PATCH", &ta),
        ("DELETE", &ta),
        ("DELETE", &tb),
    ] {
        let (status, body) = api
            .call(
                method,
                &path,
                Some(token),
                (method != "DELETE").then(|| json!({"content": "edited"})),
            )
            .await;
        assert_error(status, &body, 405);
    }
    assert_eq!(message(&api, &tb, id(&msg)).await, msg);
    assert_eq!(history(&api, &ta, conv).await, vec![msg]);
}

// ------------------------------------------------------------ mark_read

#[tokio::test]
async fn mark_read_without_ids_marks_every_unread_message_of_the_other_user() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let (tc, _, elsewhere, _, _) = api.pair("carol", "dave").await;

    // Each way of saying "all": no body, null, an object without the key,
    // and message_ids null.
    let variants: [Option<Value>; 4] = [
        None,
        Some(Value::Null),
        Some(json!({})),
        Some(json!({"message_ids": null})),
    ];
    for body in variants {
        let mine = api.send_message(&ta, conv, "from alice").await;
        let theirs = vec![
            id(&api.send_message(&tb, conv, "one").await),
            id(&api.send_message(&tb, conv, "two").await),
        ];
        assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 2);
        let before = chrono::Utc::now() - chrono::Duration::seconds(5);
        let res = mark_read(&api, &ta, conv, body.clone()).await;
        assert_eq!(res["marked"], 2, "{body:?}: {res}");
        assert_eq!(sorted(id_list(&res["message_ids"])), theirs, "{body:?}");
        let read_at = timestamp(&res["read_at"]);
        assert!(read_at >= before && read_at <= chrono::Utc::now() + chrono::Duration::seconds(5));
        for m in &theirs {
            for token in [&ta, &tb] {
                let seen = message(&api, token, *m).await;
                assert_eq!(seen["is_read"], true, "{seen}");
                assert_eq!(seen["read_at"], res["read_at"], "{seen}");
            }
        }
        // Alice's own message stays unread: only Bob can read it.
        let own = message(&api, &ta, id(&mine)).await;
        assert_eq!(
            (own["is_read"].clone(), own["read_at"].clone()),
            (json!(false), Value::Null)
        );
        assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 0);
        let again = mark_read(&api, &ta, conv, body.clone()).await;
        assert_eq!(again["marked"], 0);
        assert_eq!(again["message_ids"], json!([]));
    }
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 4);

    // Bob reads Alice's four; the history shows everything read.
    let res = mark_read(&api, &tb, conv, None).await;
    assert_eq!(res["marked"], 4);
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 0);
    assert!(
        history(&api, &tb, conv)
            .await
            .iter()
            .all(|m| m["is_read"] == true && m["read_at"].is_string())
    );
    assert_eq!(
        conversation(&api, &ta, conv).await["last_message"]["is_read"],
        true
    );
    // The other conversation is untouched.
    assert!(history(&api, &tc, elsewhere).await.is_empty());
}

#[tokio::test]
async fn mark_read_with_an_empty_list_marks_nothing() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let sent = [
        api.send_message(&tb, conv, "one").await,
        api.send_message(&tb, conv, "two").await,
    ];
    let res = mark_read(&api, &ta, conv, Some(json!({"message_ids": []}))).await;
    assert_eq!(res["marked"], 0);
    assert_eq!(res["message_ids"], json!([]));
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 2);
    for m in &sent {
        assert_eq!(message(&api, &ta, id(m)).await, *m, "still unread");
    }
}

#[tokio::test]
async fn mark_read_with_ids_marks_only_unread_messages_of_the_other_user_here() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = api.user("alice").await;
    let (bob, tb) = api.user("bob").await;
    let (_, tc) = api.user("carol").await;
    let (conv, _) = api.connect(&ta, &tb, id(&bob)).await;
    let (elsewhere, _) = api.connect(&tc, &ta, id(&alice)).await;

    let b1 = id(&api.send_message(&tb, conv, "b1").await);
    let b2 = id(&api.send_message(&tb, conv, "b2").await);
    let b3 = id(&api.send_message(&tb, conv, "b3").await);
    let a1 = id(&api.send_message(&ta, conv, "a1").await);
    let c1 = id(&api.send_message(&tc, elsewhere, "c1").await);

    let first = mark_read(&api, &ta, conv, Some(json!({"message_ids": [b1]}))).await;
    assert_eq!(first["marked"], 1);
    assert_eq!(first["message_ids"], json!([b1]));
    let b1_read_at = message(&api, &ta, b1).await["read_at"].clone();
    assert_eq!(b1_read_at, first["read_at"]);

    // Already read, own, another conversation's, unknown and duplicated ids
    // are ignored; only b2 is marked.
    let res = mark_read(
        &api,
        &ta,
        conv,
        Some(json!({"message_ids": [b1, b2, a1, c1, 999_999, b2]})),
    )
    .await;
    assert_eq!(res["marked"], 1, "{res}");
    assert_eq!(res["message_ids"], json!([b2]));
    assert_eq!(
        message(&api, &ta, b1).await["read_at"],
        b1_read_at,
        "not re-marked"
    );
    assert_eq!(message(&api, &ta, b2).await["read_at"], res["read_at"]);
    assert_eq!(message(&api, &ta, b3).await["is_read"], false);
    assert_eq!(
        message(&api, &tb, a1).await["is_read"],
        false,
        "own message"
    );
    assert_eq!(
        message(&api, &tc, c1).await["is_read"],
        false,
        "other conversation"
    );
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 1);
    assert_eq!(conversation(&api, &ta, elsewhere).await["unread_count"], 1);
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 1);

    // Marking only your own messages does nothing.
    let res = mark_read(&api, &ta, conv, Some(json!({"message_ids": [a1]}))).await;
    assert_eq!(
        (res["marked"].clone(), res["message_ids"].clone()),
        (json!(0), json!([]))
    );
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 1);
    // Bob may mark it.
    let res = mark_read(&api, &tb, conv, Some(json!({"message_ids": [a1, b3]}))).await;
    assert_eq!(res["message_ids"], json!([a1]));
    assert_eq!(message(&api, &ta, a1).await["is_read"], true);
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 0);
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 1, "b3");
    // Carol's message can be read in its own conversation.
    let res = mark_read(&api, &ta, elsewhere, Some(json!({"message_ids": [c1, b3]}))).await;
    assert_eq!(res["message_ids"], json!([c1]));
    assert_eq!(conversation(&api, &ta, elsewhere).await["unread_count"], 0);
}

#[tokio::test]
async fn mark_read_refuses_malformed_ids() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    api.send_message(&tb, conv, "unread").await;
    let path = format!("/api/chat/conversations/{conv}/mark_read/");
    for body in [
        json!({"message_ids": "all"}),
        json!({"message_ids": 5}),
        json!({"message_ids": ["a"]}),
        json!({"message_ids": [1.5]}),
    ] {
        let (status, res) = api.call("POST", &path, Some(&ta), Some(body)).await;
        assert_field_error(status, &res, "message_ids");
    }
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 1);
}

// ------------------------------------------------ connection lifecycle

#[tokio::test]
async fn after_removal_history_stays_readable_but_nobody_can_send_until_reconnected() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = api.user("alice").await;
    let (bob, tb) = api.user("bob").await;
    let (conv, connection) = api.connect(&ta, &tb, id(&bob)).await;
    let hello = api.send_message(&ta, conv, "hello").await;
    let reply = api.send_message(&tb, conv, "hi").await;
    let before = history(&api, &ta, conv).await;
    let created_at = conversation(&api, &ta, conv).await["created_at"].clone();

    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/connections/{connection}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");

    for token in [&ta, &tb] {
        let (status, body) = post_message(
            &api,
            token,
            json!({"conversation_id": conv, "content": "still there?"}),
        )
        .await;
        assert_error(status, &body, 403);
        let c = conversation(&api, token, conv).await;
        assert_eq!(c["can_send"], false);
        assert_eq!(c["last_message"], reply);
        assert_eq!(history(&api, token, conv).await, before);
        assert_eq!(message(&api, token, id(&hello)).await, hello);
        let list = conversation_list(&api, token, "").await;
        assert_eq!(list["results"][0]["id"], conv);
        assert_eq!(list["results"][0]["can_send"], false);
    }
    assert_eq!(
        cursor(&api, &ta, conv, &format!("after={}", id(&hello))).await,
        (vec![id(&reply)], false)
    );

    // A new request: pending is not enough.
    let (status, pending) = api
        .call(
            "POST",
            "/api/connections/",
            Some(&tb),
            Some(json!({"user_id": alice["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{pending}");
    assert_eq!(conversation(&api, &ta, conv).await["can_send"], false);
    let (status, body) = post_message(
        &api,
        &tb,
        json!({"conversation_id": conv, "content": "pending"}),
    )
    .await;
    assert_error(status, &body, 403);

    // Accepted again: the same conversation, its history, and sending works.
    let (status, accepted) = api
        .call(
            "POST",
            &format!("/api/connections/{}/accept/", id(&pending)),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["conversation_id"], conv);
    for token in [&ta, &tb] {
        let c = conversation(&api, token, conv).await;
        assert_eq!(c["can_send"], true);
        assert_eq!(c["connection_id"], pending["id"]);
        assert_eq!(c["created_at"], created_at);
        assert_eq!(c["updated_at"], reply["created_at"]);
        assert_eq!(history(&api, token, conv).await, before);
    }
    let again = api.send_message(&tb, conv, "welcome back").await;
    assert_eq!(again["conversation_id"], conv);
    let list = conversation_list(&api, &ta, "").await;
    assert_eq!(list["count"], 1, "still one conversation for the pair");
    assert_eq!(list["results"][0]["last_message"], again);
    assert_eq!(history(&api, &ta, conv).await.len(), 3);
}

// ------------------------------------------------------------ WebSocket

#[tokio::test]
async fn http_sends_and_reads_reach_websocket_clients_like_websocket_ones() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = named_user(&api, "alice", "Alice", "L", Some("https://x.test/a.png")).await;
    let (bob, tb) = api.user("bob").await;
    let (conv, _) = api.connect(&ta, &tb, id(&bob)).await;
    let mut wa = ws::join(&server.ws_url(""), conv, &ta).await;
    let mut wb = ws::join(&server.ws_url(""), conv, &tb).await;

    // Over WebSocket, for comparison.
    ws::send(
        &mut wa,
        json!({"type": "chat_message", "content": " via ws "}),
    )
    .await;
    let by_ws = ws::next(&mut wa).await;
    assert_eq!(ws::next(&mut wb).await, by_ws);
    assert_keys(&by_ws, &CHAT_EVENT_KEYS);

    // Over HTTP: the same event, to every socket, the sender's own included.
    let (status, msg) = post_message(
        &api,
        &ta,
        json!({"conversation_id": conv, "content": " via http ", "client_id": "h-1"}),
    )
    .await;
    assert_eq!(status, 201, "{msg}");
    for ws in [&mut wa, &mut wb] {
        let event = ws::next(ws).await;
        assert_keys(&event, &CHAT_EVENT_KEYS);
        assert_eq!(
            event,
            json!({"type": "chat_message", "message_id": msg["id"], "conversation_id": conv,
                   "sender_id": alice["id"], "sender_name": "Alice L",
                   "sender_avatar": "https://x.test/a.png", "content": "via http",
                   "created_at": msg["created_at"], "client_id": "h-1", "attachments": []})
        );
    }

    // mark_read over HTTP: the messages_read event of message_read over WebSocket.
    let res = mark_read(&api, &tb, conv, None).await;
    let expected = json!({"type": "messages_read", "user_id": bob["id"],
                          "message_ids": res["message_ids"], "read_at": res["read_at"]});
    assert_eq!(
        sorted(id_list(&res["message_ids"])),
        vec![by_ws["message_id"].as_i64().expect("id"), id(&msg)]
    );
    for ws in [&mut wa, &mut wb] {
        assert_eq!(ws::next(ws).await, expected);
    }
    let third = api.send_message(&ta, conv, "third").await;
    for ws in [&mut wa, &mut wb] {
        assert_eq!(ws::next(ws).await["message_id"], third["id"]);
    }
    ws::send(
        &mut wb,
        json!({"type": "message_read", "message_ids": [third["id"]]}),
    )
    .await;
    let by_ws = ws::next(&mut wa).await;
    assert_eq!(ws::next(&mut wb).await, by_ws);
    assert_keys(&by_ws, &READ_EVENT_KEYS);
    assert_eq!(by_ws["message_ids"], json!([third["id"]]));

    // Nothing marked: no event. The next event either socket sees is the
    // message sent afterwards.
    let res = mark_read(&api, &tb, conv, None).await;
    assert_eq!(res["marked"], 0);
    let res = mark_read(&api, &ta, conv, Some(json!({"message_ids": [third["id"]]}))).await;
    assert_eq!(res["marked"], 0);
    let marker = api.send_message(&tb, conv, "marker").await;
    for ws in [&mut wa, &mut wb] {
        let event = ws::next(ws).await;
        assert_eq!(event["type"], "chat_message", "{event}");
        assert_eq!(event["message_id"], marker["id"]);
    }
}

// ------------------------------------------------------ idempotent sends

#[tokio::test]
async fn a_retry_with_the_same_client_id_returns_the_original() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (alice, ta) = api.user("alice").await;
    let (bob, tb) = api.user("bob").await;
    let (_, tc) = api.user("carol").await;
    let (conv, _) = api.connect(&ta, &tb, id(&bob)).await;
    let (elsewhere, _) = api.connect(&tc, &ta, id(&alice)).await;

    let body = json!({"conversation_id": conv, "content": "pay rent", "client_id": "tx-1"});
    let (status, original) = post_message(&api, &ta, body.clone()).await;
    assert_eq!(status, 201, "{original}");
    assert_eq!(original["client_id"], "tx-1");
    let updated_at = conversation(&api, &tb, conv).await["updated_at"].clone();

    // The same retry, and one whose content changed: 200 with the original.
    for retry in [
        body.clone(),
        json!({"conversation_id": conv, "content": "pay rent twice", "client_id": "tx-1"}),
    ] {
        let (status, again) = post_message(&api, &ta, retry).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again, original);
    }
    assert_eq!(history(&api, &tb, conv).await, vec![original.clone()]);
    let seen = conversation(&api, &tb, conv).await;
    assert_eq!(seen["unread_count"], 1);
    assert_eq!(seen["last_message"], original);
    assert_eq!(seen["updated_at"], updated_at);

    // The original stays the answer once read, and shows it.
    mark_read(&api, &tb, conv, None).await;
    let (status, again) = post_message(&api, &ta, body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], original["id"]);
    assert_eq!(again["is_read"], true);

    // The same client_id from another sender, or in another conversation, is new.
    let (status, bobs) = post_message(
        &api,
        &tb,
        json!({"conversation_id": conv, "content": "ok", "client_id": "tx-1"}),
    )
    .await;
    assert_eq!(status, 201, "{bobs}");
    assert_ne!(bobs["id"], original["id"]);
    assert_eq!(bobs["client_id"], "tx-1");
    let (status, other) = post_message(
        &api,
        &ta,
        json!({"conversation_id": elsewhere, "content": "pay rent", "client_id": "tx-1"}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(other["conversation_id"], elsewhere);
    assert_eq!(history(&api, &ta, conv).await.len(), 2);
    assert_eq!(history(&api, &ta, elsewhere).await.len(), 1);
    // And a retry of Bob's is his original, not Alice's.
    let (status, again) = post_message(
        &api,
        &tb,
        json!({"conversation_id": conv, "content": "ok", "client_id": "tx-1"}),
    )
    .await;
    assert_eq!((status, again), (200, bobs));
}

#[tokio::test]
async fn client_id_is_echoed_and_validated() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;

    // Without client_id (absent or null): null, and every send is stored.
    let a = api.send_message(&ta, conv, "same").await;
    let (status, b) = post_message(
        &api,
        &ta,
        json!({"conversation_id": conv, "content": "same", "client_id": null}),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(
        (a["client_id"].clone(), b["client_id"].clone()),
        (Value::Null, Value::Null)
    );
    assert_ne!(a["id"], b["id"]);

    // 1 and 64 characters (counted as characters), kept as given.
    for cid in [
        "x".to_owned(),
        "y".repeat(64),
        "é".repeat(64),
        " spaced id ".to_owned(),
    ] {
        let (status, m) = post_message(
            &api,
            &ta,
            json!({"conversation_id": conv, "content": "keyed", "client_id": cid}),
        )
        .await;
        assert_eq!(status, 201, "{m}");
        assert_eq!(m["client_id"], cid.as_str());
        assert_eq!(message(&api, &tb, id(&m)).await["client_id"], cid.as_str());
    }
    let stored = history(&api, &tb, conv).await;
    assert_eq!(stored.len(), 6);
    assert_eq!(stored[0]["client_id"], " spaced id ");
    assert_eq!(stored[5]["client_id"], Value::Null);

    for bad in [
        json!(""),
        json!("z".repeat(65)),
        json!("é".repeat(65)),
        json!(7),
        json!(["a"]),
    ] {
        let (status, body) = post_message(
            &api,
            &ta,
            json!({"conversation_id": conv, "content": "keyed", "client_id": bad}),
        )
        .await;
        assert_field_error(status, &body, "client_id");
    }
    assert_eq!(history(&api, &tb, conv).await.len(), 6, "nothing stored");
}

#[tokio::test]
async fn a_retry_after_the_connection_was_removed_is_still_answered() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, ta) = api.user("alice").await;
    let (bob, tb) = api.user("bob").await;
    let (conv, connection) = api.connect(&ta, &tb, id(&bob)).await;
    let body = json!({"conversation_id": conv, "content": "last words", "client_id": "bye"});
    let (status, original) = post_message(&api, &ta, body.clone()).await;
    assert_eq!(status, 201);
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/connections/{connection}/"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(status, 204);

    let (status, again) = post_message(&api, &ta, body.clone()).await;
    assert_eq!((status, again), (200, original.clone()));
    // A new client_id, or Bob's first use of this one, is a new send: refused.
    let (status, res) = post_message(
        &api,
        &ta,
        json!({"conversation_id": conv, "content": "last words", "client_id": "bye-2"}),
    )
    .await;
    assert_error(status, &res, 403);
    let (status, res) = post_message(&api, &tb, body).await;
    assert_error(status, &res, 403);
    assert_eq!(history(&api, &tb, conv).await, vec![original]);
}

#[tokio::test]
async fn a_retry_over_http_broadcasts_nothing() {
    let (server, api, ta, tb, conv, _, _) = pair_server().await;
    let mut wa = ws::join(&server.ws_url(""), conv, &ta).await;
    let mut wb = ws::join(&server.ws_url(""), conv, &tb).await;
    let body = json!({"conversation_id": conv, "content": "once", "client_id": "once"});
    let (status, original) = post_message(&api, &ta, body.clone()).await;
    assert_eq!(status, 201);
    for ws in [&mut wa, &mut wb] {
        let event = ws::next(ws).await;
        assert_eq!(event["message_id"], original["id"]);
        assert_eq!(event["client_id"], "once");
    }
    let (status, _) = post_message(&api, &ta, body).await;
    assert_eq!(status, 200);
    // A send first made over WebSocket, retried over HTTP: the original.
    ws::send(
        &mut wa,
        json!({"type": "chat_message", "content": "by socket", "client_id": "sock-1"}),
    )
    .await;
    let by_socket = ws::next(&mut wa).await;
    assert_eq!(ws::next(&mut wb).await, by_socket);
    let (status, again) = post_message(
        &api,
        &ta,
        json!({"conversation_id": conv, "content": "by socket", "client_id": "sock-1"}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], by_socket["message_id"]);
    assert_eq!(again["created_at"], by_socket["created_at"]);
    assert_eq!(again["client_id"], "sock-1");
    let marker = api.send_message(&tb, conv, "marker").await;
    for ws in [&mut wa, &mut wb] {
        let event = ws::next(ws).await;
        assert_eq!(
            event["message_id"], marker["id"],
            "no event for the retry: {event}"
        );
    }
}

#[tokio::test]
async fn concurrent_retries_store_one_message() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let body = json!({"conversation_id": conv, "content": "tap tap tap", "client_id": "burst"});
    let answers =
        futures_util::future::join_all((0..8).map(|_| post_message(&api, &ta, body.clone()))).await;
    let created: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(created.len(), 1, "exactly one stored: {answers:?}");
    let original = &created[0].1;
    for (status, m) in &answers {
        assert!(*status == 201 || *status == 200, "{status}: {m}");
        assert_eq!(m, original);
    }
    assert_eq!(history(&api, &tb, conv).await, vec![original.clone()]);
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 1);
}

// ------------------------------------------------------- beyond the rules

#[tokio::test]
async fn null_characters_are_refused_on_every_backend() {
    let (_server, api, ta, _, conv, _, _) = pair_server().await;
    let (status, body) = post_message(
        &api,
        &ta,
        json!({"conversation_id": conv, "content": "a\u{0}b"}),
    )
    .await;
    assert_field_error(status, &body, "content");
    let (status, body) = post_message(
        &api,
        &ta,
        json!({"conversation_id": conv, "content": "ab", "client_id": "k\u{0}"}),
    )
    .await;
    assert_field_error(status, &body, "client_id");
    assert!(history(&api, &ta, conv).await.is_empty());
}

#[tokio::test]
async fn concurrent_sends_from_both_sides_keep_counts_and_order() {
    let (_server, api, ta, tb, conv, a, b) = pair_server().await;
    let sends = (0..20).map(|i| {
        let token = if i % 2 == 0 { ta.clone() } else { tb.clone() };
        let api = api.clone();
        async move { api.send_message(&token, conv, &format!("c{i}")).await }
    });
    let sent = futures_util::future::join_all(sends).await;
    let mut all = ids(&sent);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 20, "distinct ids");
    let stored = history(&api, &ta, conv).await;
    assert_eq!(ids(&stored), all.iter().rev().copied().collect::<Vec<_>>());
    let times: Vec<_> = stored.iter().map(|m| timestamp(&m["created_at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "ids follow storage order"
    );
    let for_alice = conversation(&api, &ta, conv).await;
    let for_bob = conversation(&api, &tb, conv).await;
    assert_eq!(for_alice["unread_count"], 10);
    assert_eq!(for_bob["unread_count"], 10);
    assert_eq!(for_alice["last_message"], stored[0]);
    assert_eq!(for_alice["updated_at"], stored[0]["created_at"]);
    let (alice_marked, bob_marked) = tokio::join!(
        mark_read(&api, &ta, conv, None),
        mark_read(&api, &tb, conv, None)
    );
    let from = |who: i64| -> Vec<i64> {
        sorted(
            stored
                .iter()
                .filter(|m| m["sender_id"] == who)
                .map(id)
                .collect(),
        )
    };
    assert_eq!(sorted(id_list(&alice_marked["message_ids"])), from(b));
    assert_eq!(sorted(id_list(&bob_marked["message_ids"])), from(a));
    assert_eq!(conversation(&api, &ta, conv).await["unread_count"], 0);
    assert_eq!(conversation(&api, &tb, conv).await["unread_count"], 0);
}

#[tokio::test]
async fn names_and_avatars_shown_are_the_current_ones() {
    let (_server, api, ta, tb, conv, a, _) = pair_server().await;
    let msg = api.send_message(&ta, conv, "hi").await;
    assert_eq!(msg["sender_name"], "alice");
    let (status, me) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&ta),
            Some(json!({"first_name": "Alice", "last_name": "Liddell",
                        "avatar": "https://example.com/new.png"})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    let seen = message(&api, &tb, id(&msg)).await;
    assert_eq!(seen["sender_name"], "Alice Liddell");
    assert_eq!(seen["sender_avatar"], "https://example.com/new.png");
    assert_eq!(history(&api, &tb, conv).await, vec![seen.clone()]);
    let c = conversation(&api, &tb, conv).await;
    let me = user_object(&me);
    assert_eq!(c["other_user"], me);
    assert_eq!(c["last_message"], seen);
    let participants = c["participants"].as_array().expect("participants");
    assert!(participants.contains(&me), "{c}");
    assert_eq!(me["id"], a);
}

#[tokio::test]
async fn chat_routes_need_a_token_and_work_without_the_trailing_slash() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let msg = api.send_message(&tb, conv, "hi").await;
    let mid = id(&msg);
    let routes = [
        ("GET", "/api/chat/conversations".to_owned(), None),
        ("GET", format!("/api/chat/conversations/{conv}"), None),
        (
            "GET",
            format!("/api/chat/conversations/{conv}/messages"),
            None,
        ),
        (
            "GET",
            format!("/api/chat/conversations/{conv}/messages?after={mid}&limit=5"),
            None,
        ),
        (
            "POST",
            format!("/api/chat/conversations/{conv}/mark_read"),
            Some(json!({"message_ids": []})),
        ),
        ("GET", format!("/api/chat/messages/{mid}"), None),
        (
            "POST",
            "/api/chat/messages".to_owned(),
            Some(json!({"conversation_id": conv, "content": "no slash"})),
        ),
    ];
    for (method, path, body) in &routes {
        let (status, res) = api.call(method, path, None, body.clone()).await;
        assert_error(status, &res, 401);
        let with_slash = match path.split_once('?') {
            Some((p, q)) => format!("{p}/?{q}"),
            None => format!("{path}/"),
        };
        let (status, res) = api
            .call(method, &with_slash, Some("garbage"), body.clone())
            .await;
        assert_error(status, &res, 401);
    }
    assert_eq!(history(&api, &ta, conv).await.len(), 1, "nothing stored");
    let mut statuses = Vec::new();
    for (method, path, body) in routes {
        let (status, res) = api.call(method, &path, Some(&ta), body).await;
        assert!(
            status == 200 || status == 201,
            "{method} {path}: {status} {res}"
        );
        statuses.push(status);
        if path.contains("after=") {
            assert_eq!(res, json!({"results": [], "has_more": false}));
        }
        if path == format!("/api/chat/messages/{mid}") {
            assert_eq!(res, msg);
        }
    }
    assert_eq!(statuses.last(), Some(&201));
    assert_eq!(history(&api, &ta, conv).await.len(), 2);
}
