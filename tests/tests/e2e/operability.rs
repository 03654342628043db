//! Rate limits, metrics and request ids.

use crate::support::*;
use crate::ws_support::*;
use serde_json::json;

async fn login(api: &Api, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = api
        .http
        .post(api.url("/api/auth/token/"))
        .json(&json!({"username": "nobody", "password": "password123"}));
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.expect("request")
}

async fn assert_429(res: reqwest::Response) {
    assert_eq!(res.status().as_u16(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited");
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn login_and_register_are_limited_per_address() {
    let server = TestServer::start_with(&[("CHAT__RATE_LIMITS__AUTH_PER_MINUTE", "3")]).await;
    let api = Api::new(&server);
    for _ in 0..3 {
        assert_eq!(login(&api, None).await.status().as_u16(), 401);
    }
    assert_429(login(&api, None).await).await;
    let res = api
        .http
        .post(api.url("/api/auth/register/"))
        .json(&json!({"username": "limited", "password": "password123"}))
        .send()
        .await
        .expect("request");
    assert_429(res).await;
    // Nothing was stored: the username is still free on an unlimited node.
    let other = TestServer::start_on(server.db.clone(), ServerOptions::default()).await;
    let (status, _) = Api::new(&other)
        .call(
            "POST",
            "/api/auth/register/",
            None,
            Some(json!({"username": "limited", "password": "password123"})),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let trusted = TestServer::start_with(&[
        ("CHAT__RATE_LIMITS__AUTH_PER_MINUTE", "2"),
        ("CHAT__RATE_LIMITS__TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let api = Api::new(&trusted);
    for _ in 0..2 {
        assert_eq!(
            login(&api, Some("203.0.113.7")).await.status().as_u16(),
            401
        );
    }
    assert_429(login(&api, Some("203.0.113.7")).await).await;
    assert_eq!(
        login(&api, Some("203.0.113.8")).await.status().as_u16(),
        401,
        "another client behind the proxy"
    );

    let untrusted = TestServer::start_with(&[("CHAT__RATE_LIMITS__AUTH_PER_MINUTE", "2")]).await;
    let api = Api::new(&untrusted);
    for _ in 0..2 {
        assert_eq!(
            login(&api, Some("203.0.113.7")).await.status().as_u16(),
            401
        );
    }
    assert_429(login(&api, Some("203.0.113.9")).await).await;
}

#[tokio::test]
async fn messages_are_limited_per_user_over_http_and_websocket() {
    let (server, api, ta, tb, conv, _, _) = pair_on(
        TestServer::start_with(&[
            ("CHAT__RATE_LIMITS__MESSAGES_PER_SECOND", "1"),
            ("CHAT__RATE_LIMITS__MESSAGES_BURST", "2"),
        ])
        .await,
    )
    .await;
    let mut wb = join(&server.ws_url(""), conv, &tb).await;
    let mut wa = join(&server.ws_url(""), conv, &ta).await;
    for i in 0..2 {
        let (status, _) = api
            .call(
                "POST",
                "/api/chat/messages/",
                Some(&ta),
                Some(json!({"conversation_id": conv, "content": format!("m{i}")})),
            )
            .await;
        assert_eq!(status, 201);
        next(&mut wb).await;
        next(&mut wa).await;
    }
    let res = api
        .http
        .post(api.url("/api/chat/messages/"))
        .bearer_auth(&ta)
        .json(&json!({"conversation_id": conv, "content": "too fast"}))
        .send()
        .await
        .expect("request");
    assert_429(res).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "too fast", "client_id": "r1"}),
    )
    .await;
    let err = next(&mut wa).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["client_id"], "r1");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("Rate limit")
    );
    silent(&mut wb, 300).await;
    assert_eq!(
        api.history_len(&tb, conv).await,
        2,
        "nothing over the limit was stored"
    );
    // The other user has a budget of their own.
    api.send_message(&tb, conv, "mine").await;
}

#[tokio::test]
async fn open_sockets_are_limited_per_user() {
    let (server, _, ta, tb, conv, _, _) =
        pair_on(TestServer::start_with(&[("CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER", "2")]).await)
            .await;
    let base = server.ws_url("");
    let first = join(&base, conv, &ta).await;
    let _second = join(&base, conv, &ta).await;
    assert_eq!(close_code(&mut open(&base, conv, &ta).await).await, 4029);
    let _bob = join(&base, conv, &tb).await;
    drop(first);
    // The slot is freed once the server sees the socket gone.
    let mut reopened = false;
    for _ in 0..50 {
        let mut ws = open(&base, conv, &ta).await;
        let frame = next_frame_or_close(&mut ws).await;
        if frame == "connection_established" {
            reopened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reopened, "a slot frees when a socket closes");
}

async fn next_frame_or_close(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                return v["type"].as_str().unwrap_or_default().to_owned();
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                return "closed".into();
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn metrics_are_exported() {
    let (server, api, ta, _, conv, _, _) = pair_server().await;
    let _ws = join(&server.ws_url(""), conv, &ta).await;
    api.send_message(&ta, conv, "hi").await;
    let _ = api
        .call("GET", "/api/connections/12345/", Some(&ta), None)
        .await;
    let res = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = res.text().await.expect("text");
    assert_eq!(
        metric(&text, "chat_messages_stored_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "chat_websocket_open_sockets", &[]), Some(1.0));
    assert!(metric(&text, "chat_websocket_frames_delivered_total", &[]).is_some_and(|v| v >= 1.0));
    assert_eq!(
        metric(
            &text,
            "chat_http_requests_total",
            &["route=\"/api/connections/{id}/\"", "status=\"4xx\""]
        ),
        Some(1.0),
        "requests are counted by route pattern, not by raw path"
    );
    assert!(
        metric(
            &text,
            "chat_http_request_duration_seconds_count",
            &["route=\"/api/chat/messages/\""]
        )
        .is_some()
    );
    assert!(metric(&text, "chat_db_pool_connections", &[]).is_some_and(|v| v >= 1.0));
    assert!(metric(&text, "chat_redis_publish_failures_total", &[]).is_some());
    for counter in [
        "chat_websocket_frames_delivered_total",
        "chat_websocket_slow_sockets_dropped_total",
        "chat_redis_publish_failures_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {counter} counter")),
            "{counter} is a counter: {text}"
        );
    }
    for gauge in ["chat_websocket_open_sockets", "chat_db_pool_connections"] {
        assert!(
            text.contains(&format!("# TYPE {gauge} gauge")),
            "{gauge} is a gauge: {text}"
        );
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let res = api
        .http
        .get(api.url("/healthz"))
        .send()
        .await
        .expect("request");
    let id = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!id.is_empty());
    let res = api
        .http
        .get(api.url("/nowhere"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(
        res.headers()["x-request-id"],
        "trace-42",
        "a sane incoming id is kept"
    );
    let res = api
        .http
        .get(api.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_ne!(
        res.headers()["x-request-id"].to_str().expect("ascii"),
        id,
        "ids are unique"
    );
}

#[tokio::test]
async fn oversized_headers_are_431_with_the_error_body() {
    let server = TestServer::start_with(&[("CHAT__LIMITS__MAX_HEADER_BYTES", "4096")]).await;
    let api = Api::new(&server);
    let res = api
        .http
        .post(api.url("/api/auth/register/"))
        .header("x-padding", "p".repeat(5000))
        .json(&json!({"username": "padded", "password": "password123"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 431);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "headers_too_large");
    // Nothing was stored.
    let (status, _) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "padded", "password": "password123"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "normal headers pass");
}

#[tokio::test]
async fn mark_read_lists_are_bounded() {
    let (_server, api, ta, tb, conv, _, _) =
        pair_on(TestServer::start_with(&[("CHAT__LIMITS__MAX_READ_IDS", "5")]).await).await;
    let (_, msg) = api
        .call(
            "POST",
            "/api/chat/messages/",
            Some(&ta),
            Some(json!({"conversation_id": conv, "content": "hi"})),
        )
        .await;
    let id = msg["id"].as_i64().expect("id");
    let path = format!("/api/chat/conversations/{conv}/mark_read/");
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(&tb),
            Some(json!({"message_ids": [id, 1, 2, 3, 4, 5]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["message_ids"].is_array());
    let (_, stored) = api
        .call("GET", &format!("/api/chat/messages/{id}/"), Some(&tb), None)
        .await;
    assert_eq!(stored["is_read"], false, "nothing was marked");
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(&tb),
            Some(json!({"message_ids": [id, 1, 2, 3, 4]})),
        )
        .await;
    assert_eq!((status, body["marked"].as_i64()), (200, Some(1)));
}
