//! Presence: online while a socket is open, offline after the grace
//! period, seen only by connections, hidden by `share_presence: false`.

use crate::support::*;
use crate::ws_support::*;
use serde_json::{Value, json};
use std::time::Duration;

const GRACE_MS: &str = "400";

async fn server_with_grace(grace: &str) -> (TestServer, Api, String, String, i64, i64, i64) {
    pair_on(TestServer::start_with(&[("CHAT__REDIS__PRESENCE_GRACE_MS", grace)]).await).await
}

async fn stream(server: &TestServer, token: &str) -> Ws {
    let url = server.ws_url(&format!("/ws/chat/?token={token}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    ws
}

/// The next `presence` event.
async fn presence_event(ws: &mut Ws) -> Value {
    loop {
        let v = next_with_presence(ws).await;
        if v["type"] == "presence" {
            return v;
        }
    }
}

async fn presence_of(api: &Api, token: &str, ids: &str) -> (u16, Value) {
    api.call(
        "GET",
        &format!("/api/presence/?user_ids={ids}"),
        Some(token),
        None,
    )
    .await
}

#[tokio::test]
async fn connections_see_online_then_offline_after_the_grace_period() {
    let (server, api, ta, tb, conv, a, _b) = server_with_grace(GRACE_MS).await;
    let mut wb = stream(&server, &tb).await;
    let (status, p) = presence_of(&api, &tb, &a.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        p,
        json!({"results": [{"user_id": a, "status": "offline", "last_seen": null}]})
    );

    // alice opens a conversation socket: bob's stream hears she is online.
    let wa = join(&server.ws_url(""), conv, &ta).await;
    assert_eq!(
        presence_event(&mut wb).await,
        json!({"type": "presence", "user_id": a, "status": "online", "last_seen": null})
    );
    let (_, p) = presence_of(&api, &tb, &a.to_string()).await;
    assert_eq!(p["results"][0]["status"], "online");
    let (_, c) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(
        c["other_user_presence"],
        json!({"status": "online", "last_seen": null})
    );

    // She leaves: offline once the grace period is over, with last_seen.
    drop(wa);
    let started = std::time::Instant::now();
    let off = presence_event(&mut wb).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the grace period"
    );
    assert_eq!(
        (off["user_id"].clone(), off["status"].clone()),
        (json!(a), json!("offline"))
    );
    assert_timestamp(&off["last_seen"]);
    let (_, p) = presence_of(&api, &tb, &a.to_string()).await;
    assert_eq!(
        p["results"][0],
        json!({"user_id": a, "status": "offline", "last_seen": off["last_seen"]})
    );
    let (_, list) = api
        .call("GET", "/api/chat/conversations/", Some(&tb), None)
        .await;
    assert_eq!(
        list["results"][0]["other_user_presence"],
        json!({"status": "offline", "last_seen": off["last_seen"]})
    );
}

#[tokio::test]
async fn a_quick_reconnect_does_not_flicker() {
    let (server, _api, ta, tb, conv, _a, _b) = server_with_grace("1500").await;
    let mut wb = stream(&server, &tb).await;
    let first = join(&server.ws_url(""), conv, &ta).await;
    assert_eq!(presence_event(&mut wb).await["status"], "online");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _second = stream(&server, &ta).await;
    silent_entirely(&mut wb, 2_000).await;
}

#[tokio::test]
async fn strangers_learn_nothing() {
    let (server, api, ta, _tb, conv, a, _b) = server_with_grace(GRACE_MS).await;
    let (_u, tc) = api.user("carol").await;
    let mut wc = stream(&server, &tc).await;
    let wa = join(&server.ws_url(""), conv, &ta).await;
    let (status, p) = presence_of(&api, &tc, &a.to_string()).await;
    assert_eq!((status, p), (200, json!({"results": []})));
    drop(wa);
    silent_entirely(&mut wc, 1_000).await;
}

#[tokio::test]
async fn removed_connections_see_offline_and_no_events() {
    let (server, api, ta, tb, conv, a, _b) = server_with_grace(GRACE_MS).await;
    let (_, conns) = api.call("GET", "/api/connections/", Some(&ta), None).await;
    let id = conns["results"][0]["id"].clone();
    let _wa = stream(&server, &ta).await;
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/connections/{id}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, c) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(
        c["other_user_presence"],
        json!({"status": "offline", "last_seen": null})
    );
    let (_, p) = presence_of(&api, &tb, &a.to_string()).await;
    assert_eq!(p, json!({"results": []}));
    let mut wb = stream(&server, &tb).await;
    let again = stream(&server, &ta).await;
    drop(again);
    silent_entirely(&mut wb, 1_000).await;
}

#[tokio::test]
async fn share_presence_false_hides_the_user_everywhere() {
    let (server, api, ta, tb, conv, a, _b) = server_with_grace(GRACE_MS).await;
    let (_, me) = api.call("GET", "/api/users/me/", Some(&ta), None).await;
    assert_eq!(me["share_presence"], true);
    let mut wb = stream(&server, &tb).await;
    let _wa = stream(&server, &ta).await;
    assert_eq!(presence_event(&mut wb).await["status"], "online");

    let (status, me) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&ta),
            Some(json!({"share_presence": false})),
        )
        .await;
    assert_eq!((status, me["share_presence"].clone()), (200, json!(false)));
    assert_eq!(
        presence_event(&mut wb).await,
        json!({"type": "presence", "user_id": a, "status": "offline", "last_seen": null})
    );
    let (_, p) = presence_of(&api, &tb, &a.to_string()).await;
    assert_eq!(
        p["results"][0],
        json!({"user_id": a, "status": "offline", "last_seen": null})
    );
    let (_, c) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(
        c["other_user_presence"],
        json!({"status": "offline", "last_seen": null})
    );
    let (_, seen) = api
        .call("GET", &format!("/api/users/{a}/"), Some(&tb), None)
        .await;
    assert!(seen.get("share_presence").is_none(), "{seen}");
    // Sockets coming and going stay invisible.
    let extra = join(&server.ws_url(""), conv, &ta).await;
    drop(extra);
    silent_entirely(&mut wb, 1_000).await;

    // Shown again: the current status at once.
    api.call(
        "PATCH",
        "/api/users/me/",
        Some(&ta),
        Some(json!({"share_presence": true})),
    )
    .await;
    assert_eq!(presence_event(&mut wb).await["status"], "online");
    let (status, body) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&ta),
            Some(json!({"share_presence": "no"})),
        )
        .await;
    assert_field_error(status, &body, "share_presence");
}

#[tokio::test]
async fn presence_lookups_refuse_bad_input() {
    let (_server, api, ta, _tb, _conv, _a, b) = server_with_grace(GRACE_MS).await;
    for query in [
        "",
        "?user_ids=",
        "?user_ids=a",
        "?user_ids=1,x",
        "?user_ids=0",
        "?user_ids=-4",
    ] {
        let (status, body) = api
            .call("GET", &format!("/api/presence/{query}"), Some(&ta), None)
            .await;
        assert_field_error(status, &body, "user_ids");
    }
    let many: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
    let (status, body) = presence_of(&api, &ta, &many.join(",")).await;
    assert_field_error(status, &body, "user_ids");
    let hundred: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    let (status, body) = presence_of(&api, &ta, &hundred.join(",")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"].as_array().map(Vec::len),
        Some(1),
        "only bob: {body}"
    );
    assert_eq!(body["results"][0]["user_id"], b);
    let (status, body) = api
        .call("GET", "/api/presence/?user_ids=1", None, None)
        .await;
    assert_error(status, &body, 401);
}

#[tokio::test]
async fn at_most_one_presence_event_per_user_per_second() {
    let (server, _api, ta, tb, _conv, _a, _b) = server_with_grace("0").await;
    let mut wb = stream(&server, &tb).await;
    let started = std::time::Instant::now();
    // Flapping while the events are read as they come.
    let url = server.ws_url(&format!("/ws/chat/?token={ta}"));
    let flapping = tokio::spawn(async move {
        for _ in 0..4 {
            let (s, _) = tokio_tungstenite::connect_async(url.clone())
                .await
                .expect("upgrade");
            drop(s);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    // Whatever the flapping, events are a second apart, and the last one
    // says what is true now: offline.
    let mut times: Vec<std::time::Instant> = Vec::new();
    let mut last = Value::Null;
    loop {
        let read =
            tokio::time::timeout(Duration::from_millis(2_500), presence_event(&mut wb)).await;
        let Ok(e) = read else { break };
        times.push(std::time::Instant::now());
        last = e;
    }
    assert!(!times.is_empty(), "presence changed");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "events {:?} apart",
            pair[1] - pair[0]
        );
    }
    assert_eq!(last["status"], "offline", "{last}");
    assert!(started.elapsed() < Duration::from_secs(10));
    flapping.await.expect("flapping");
}

/// Two nodes on one database and Redis with a short presence lease, or
/// `None` when the run has no Redis.
async fn two_nodes() -> Option<(TestServer, TestServer)> {
    let redis = chat_tests::redis_url()?;
    Some(two_nodes_on(Some(redis), None).await)
}

/// Two nodes on one database with a short presence lease, on `redis` or
/// the Redis Cluster with seeds `cluster`.
pub(crate) async fn two_nodes_on(
    redis: Option<String>,
    cluster: Option<String>,
) -> (TestServer, TestServer) {
    let db = std::sync::Arc::new(TestDb::new().await);
    let options = ServerOptions {
        redis_cluster_nodes: cluster,
        redis_url: redis,
        channel_prefix: Some(format!("{}:", chat_tests::unique_name("pr"))),
        env: vec![
            ("CHAT__REDIS__PRESENCE_GRACE_MS".into(), GRACE_MS.into()),
            ("CHAT__REDIS__PRESENCE_LEASE_MS".into(), "1500".into()),
        ],
    };
    let a = TestServer::start_on(db.clone(), options.clone()).await;
    let b = TestServer::start_on(db, options).await;
    (a, b)
}

#[tokio::test]
async fn presence_crosses_nodes_and_a_dead_nodes_users_go_offline() {
    let Some((node1, node2)) = two_nodes().await else {
        eprintln!("skipped: needs TEST_REDIS_URL");
        return;
    };
    a_dead_nodes_users_go_offline(node1, node2).await;
}

/// Presence crosses nodes; node 1 dying takes its users offline, decided
/// by node 2 (also run on a Redis Cluster).
pub(crate) async fn a_dead_nodes_users_go_offline(node1: TestServer, node2: TestServer) {
    let (node1, _api, ta, tb, _conv, a, _b) = pair_on(node1).await;
    let mut wb = stream(&node2, &tb).await;
    // Online on node 1, seen on node 2; a second socket on node 2 changes nothing.
    let _wa = stream(&node1, &ta).await;
    assert_eq!(presence_event(&mut wb).await["status"], "online");
    let also = stream(&node2, &ta).await;
    drop(also);
    silent_entirely(&mut wb, 1_000).await;
    let api2 = Api::new(&node2);
    let (_, p) = presence_of(&api2, &tb, &a.to_string()).await;
    assert_eq!(p["results"][0]["status"], "online");

    // Node 1 dies with alice's socket on it (no clean close): offline well
    // within 30 s, decided by node 2.
    let started = std::time::Instant::now();
    drop(node1);
    let off = presence_event(&mut wb).await;
    assert_eq!(
        (off["user_id"].clone(), off["status"].clone()),
        (json!(a), json!("offline"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let (_, p) = presence_of(&api2, &tb, &a.to_string()).await;
    assert_eq!(p["results"][0]["status"], "offline");
}
