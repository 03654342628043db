//! API.md "Conventions": trailing slashes, ids, timestamps, the error body
//! on every error (the framework's own included), and DRF-style pagination.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};

/// Follows an absolute URL from a pagination link (asserting it points at this server).
async fn follow(api: &Api, url: &Value, token: &str) -> (u16, Value) {
    let url = url
        .as_str()
        .unwrap_or_else(|| panic!("link must be a string: {url}"));
    let path = url
        .strip_prefix(&api.base)
        .unwrap_or_else(|| panic!("link {url} is not an absolute URL of {}", api.base));
    assert!(path.starts_with('/'), "{url}");
    api.call("GET", path, Some(token), None).await
}

/// Sends a request with a raw body and content type; returns status and JSON.
async fn send_raw(
    api: &Api,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = api.http.request(method, api.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// One HTTP/1.1 exchange over a plain socket (for chunked bodies); returns
/// the status and the JSON body.
async fn raw_exchange(server: &TestServer, head: String, chunks: Vec<Vec<u8>>) -> (u16, Value) {
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(head.as_bytes()).expect("write head");
        for chunk in chunks {
            // The server may answer (and stop reading) before the body ends.
            if stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| stream.write_all(&chunk))
                .and_then(|()| stream.write_all(b"\r\n"))
                .is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if complete_response(&raw) {
                        break;
                    }
                }
                Err(e) if raw.is_empty() => panic!("no response: {e}"),
                Err(_) => break,
            }
        }
        parse_response(&raw)
    })
    .await
    .expect("raw exchange")
}

fn split_head(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
        &raw[end + 4..],
    ))
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
}

fn complete_response(raw: &[u8]) -> bool {
    match split_head(raw) {
        Some((head, body)) => match content_length(&head) {
            Some(n) => body.len() >= n,
            None => body.ends_with(b"0\r\n\r\n"),
        },
        None => false,
    }
}

fn parse_response(raw: &[u8]) -> (u16, Value) {
    let (head, body) = split_head(raw).expect("response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body: Vec<u8> = if content_length(&head).is_some() {
        body.to_vec()
    } else {
        // Chunked: concatenate the chunks.
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
            if size == 0 || rest.len() < i + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[(i + 4 + size).min(rest.len())..];
        }
        out
    };
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

/// A user registered without logging in; returns its id.
async fn register_only(api: &Api, username: &str) -> i64 {
    let (status, user) = api
        .call(
            "POST",
            "/api/auth/register/",
            None,
            Some(json!({"username": username, "password": "password123"})),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_id(&user["id"])
}

#[tokio::test]
async fn every_route_works_without_its_trailing_slash() {
    let server = TestServer::start().await;
    let api = Api::new(&server);

    // Users and tokens.
    let (status, user) = api
        .call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["username"], "alice");
    let alice_id = assert_id(&user["id"]);
    let (status, tokens) = api
        .call(
            "POST",
            "/api/auth/token",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let alice = tokens["access"].as_str().expect("access").to_owned();
    let (status, refreshed) = api
        .call(
            "POST",
            "/api/auth/token/refresh",
            None,
            Some(json!({"refresh": tokens["refresh"]})),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(refreshed["access"].is_string());
    let (status, me) = api.call("GET", "/api/users/me", Some(&alice), None).await;
    assert_eq!((status, me["id"].as_i64()), (200, Some(alice_id)), "{me}");
    let (status, me) = api
        .call(
            "PATCH",
            "/api/users/me",
            Some(&alice),
            Some(json!({"first_name": "Alice"})),
        )
        .await;
    assert_eq!((status, me["first_name"].as_str()), (200, Some("Alice")));
    let (bob_user, bob) = api.user("bob").await;
    let bob_id = assert_id(&bob_user["id"]);
    let (status, found) = api
        .call("GET", &format!("/api/users/{alice_id}"), Some(&bob), None)
        .await;
    assert_eq!((status, found["name"].as_str()), (200, Some("Alice")));

    // Connections.
    let (status, conn) = api
        .call(
            "POST",
            "/api/connections",
            Some(&alice),
            Some(json!({"user_id": bob_id})),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    let conn_id = assert_id(&conn["id"]);
    let (status, list) = api
        .call("GET", "/api/connections?status=pending", Some(&bob), None)
        .await;
    assert_eq!((status, list["count"].as_i64()), (200, Some(1)), "{list}");
    let (status, list) = api.call("GET", "/api/connections", Some(&bob), None).await;
    assert_eq!((status, list["count"].as_i64()), (200, Some(1)), "{list}");
    let (status, got) = api
        .call(
            "GET",
            &format!("/api/connections/{conn_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((status, got["id"].as_i64()), (200, Some(conn_id)));
    let (status, accepted) = api
        .call(
            "POST",
            &format!("/api/connections/{conn_id}/accept"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    let conv = assert_id(&accepted["conversation_id"]);
    let (carol_user, carol) = api.user("carol").await;
    let (status, pending) = api
        .call(
            "POST",
            "/api/connections",
            Some(&bob),
            Some(json!({"user_id": carol_user["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{pending}");
    let (status, rejected) = api
        .call(
            "POST",
            &format!("/api/connections/{}/reject", pending["id"]),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(
        (status, rejected["status"].as_str()),
        (200, Some("rejected"))
    );

    // Chat.
    let (status, msg) = api
        .call(
            "POST",
            "/api/chat/messages",
            Some(&alice),
            Some(json!({"conversation_id": conv, "content": "hi"})),
        )
        .await;
    assert_eq!(status, 201, "{msg}");
    let msg_id = assert_id(&msg["id"]);
    let (status, got) = api
        .call(
            "GET",
            &format!("/api/chat/messages/{msg_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((status, got["id"].as_i64()), (200, Some(msg_id)));
    let (status, list) = api
        .call("GET", "/api/chat/conversations", Some(&bob), None)
        .await;
    assert_eq!((status, list["count"].as_i64()), (200, Some(1)), "{list}");
    let (status, got) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((status, got["id"].as_i64()), (200, Some(conv)));
    let (status, history) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((status, history["count"].as_i64()), (200, Some(1)));
    let (status, marked) = api
        .call(
            "POST",
            &format!("/api/chat/conversations/{conv}/mark_read"),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, marked["marked"].as_i64()),
        (200, Some(1)),
        "{marked}"
    );

    // Removing last, since it closes the conversation for sending.
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/connections/{conn_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, got) = api
        .call(
            "GET",
            &format!("/api/connections/{conn_id}/"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((status, got["status"].as_str()), (200, Some("removed")));

    let (status, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn ids_are_positive_integers_and_timestamps_are_utc_with_z() {
    let (_server, api, ta, tb, conv, a, b) = pair_server().await;
    assert!(a > 0 && b > 0 && conv > 0);
    let (_, list) = api.call("GET", "/api/connections/", Some(&ta), None).await;
    let conn = &list["results"][0];
    assert_id(&conn["id"]);
    assert_id(&conn["requester"]["id"]);
    assert_id(&conn["addressee"]["id"]);
    assert_id(&conn["conversation_id"]);
    assert_timestamp(&conn["created_at"]);
    assert_timestamp(&conn["updated_at"]);
    let msg = api.send_message(&ta, conv, "hi").await;
    assert_id(&msg["id"]);
    assert_timestamp(&msg["created_at"]);
    let (_, conversation) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_timestamp(&conversation["created_at"]);
    assert_timestamp(&conversation["updated_at"]);
    let (status, marked) = api
        .call(
            "POST",
            &format!("/api/chat/conversations/{conv}/mark_read/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 200, "{marked}");
    assert_timestamp(&marked["read_at"]);
}

#[tokio::test]
async fn unknown_routes_are_404_with_the_error_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    // `/` is the web client (see web_client.rs).
    for path in [
        "/nope",
        "/api/",
        "/api/nope/",
        "/api/users/me/extra/",
        "/api/connections/1/2/",
        "/api/auth/",
    ] {
        let (status, body) = api.call("GET", path, None, None).await;
        assert_error_code(status, &body, 404, "not_found");
        let (status, body) = api.call("GET", path, Some(&token), None).await;
        assert_error_code(status, &body, 404, "not_found");
        let (status, body) = api.call("POST", path, Some(&token), Some(json!({}))).await;
        assert_error_code(status, &body, 404, "not_found");
    }
    // Ids that are not positive integers are no resources either.
    for id in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        for (method, path) in [
            ("GET", format!("/api/users/{id}/")),
            ("GET", format!("/api/connections/{id}/")),
            ("DELETE", format!("/api/connections/{id}/")),
            ("POST", format!("/api/connections/{id}/accept/")),
            ("POST", format!("/api/connections/{id}/reject/")),
        ] {
            let (status, body) = api.call(method, &path, Some(&token), None).await;
            assert_error_code(status, &body, 404, "not_found");
        }
    }
    let (status, body) = api.call("GET", "/api/users/abc/", Some(&token), None).await;
    assert_error(status, &body, 404);
    let (status, body) = api
        .call("GET", "/api/connections/abc/", Some(&token), None)
        .await;
    assert_error(status, &body, 404);
}

#[tokio::test]
async fn wrong_methods_are_405_with_the_error_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    let cases = [
        ("GET", "/api/auth/register/"),
        ("DELETE", "/api/auth/register/"),
        ("GET", "/api/auth/token/"),
        ("PUT", "/api/auth/token/"),
        ("GET", "/api/auth/token/refresh/"),
        ("POST", "/api/users/me/"),
        ("PUT", "/api/users/me/"),
        ("DELETE", "/api/users/me/"),
        ("POST", "/api/users/1/"),
        ("PATCH", "/api/users/1/"),
        ("DELETE", "/api/users/1/"),
        ("PUT", "/api/connections/"),
        ("DELETE", "/api/connections/"),
        ("PATCH", "/api/connections/"),
        ("POST", "/api/connections/1/"),
        ("PUT", "/api/connections/1/"),
        ("PATCH", "/api/connections/1/"),
        ("GET", "/api/connections/1/accept/"),
        ("DELETE", "/api/connections/1/accept/"),
        ("GET", "/api/connections/1/reject/"),
        ("PUT", "/api/connections/1/reject/"),
        ("POST", "/api/chat/conversations/"),
        ("GET", "/api/chat/messages/"),
        ("PUT", "/api/chat/messages/1/"),
        ("PATCH", "/api/chat/messages/1/"),
        ("DELETE", "/api/chat/messages/1/"),
    ];
    for (method, path) in cases {
        for token in [Some(token.as_str()), None] {
            let (status, body) = api.call(method, path, token, None).await;
            assert_eq!(status, 405, "{method} {path}: {body}");
            assert_error_code(status, &body, 405, "method_not_allowed");
        }
        let res = api
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                api.url(path),
            )
            .send()
            .await
            .expect("request");
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            !allow.is_empty() && !allow.contains(method),
            "{method} {path}: Allow lists the methods that work, got {allow:?}"
        );
        let bare = path.trim_end_matches('/');
        let (status, body) = api.call(method, bare, Some(&token), None).await;
        assert_eq!(status, 405, "{method} {bare}: {body}");
        assert_error_code(status, &body, 405, "method_not_allowed");
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_the_error_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (bob, token) = api.user("alice").await;
    let json_ct = Some("application/json");
    for raw in [
        "{\"username\": ",
        "{username: 'x'}",
        "not json",
        "{\"username\": \"bob\", \"password\": \"password123\"} trailing",
        "{\"a\": 1,}",
    ] {
        let (status, body) =
            send_raw(&api, "POST", "/api/auth/register/", None, json_ct, raw).await;
        assert_error(status, &body, 400);
        let (status, body) = send_raw(&api, "POST", "/api/auth/token/", None, json_ct, raw).await;
        assert_error(status, &body, 400);
        let (status, body) =
            send_raw(&api, "POST", "/api/auth/token/refresh/", None, json_ct, raw).await;
        assert_error(status, &body, 400);
        let (status, body) =
            send_raw(&api, "PATCH", "/api/users/me/", Some(&token), json_ct, raw).await;
        assert_error(status, &body, 400);
        let (status, body) = send_raw(
            &api,
            "POST",
            "/api/connections/",
            Some(&token),
            json_ct,
            raw,
        )
        .await;
        assert_error(status, &body, 400);
        let (status, body) = send_raw(
            &api,
            "POST",
            "/api/chat/messages/",
            Some(&token),
            json_ct,
            raw,
        )
        .await;
        assert_error(status, &body, 400);
    }
    // Well-formed JSON that is not an object is invalid input too.
    let other = register_only(&api, "bob").await;
    for raw in [
        "[]".to_owned(),
        "\"x\"".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        "true".to_owned(),
        format!("[{other}]"),
        "[\"carol\", \"password123\"]".to_owned(),
    ] {
        for (method, path, token) in [
            ("POST", "/api/auth/register/", None),
            ("POST", "/api/auth/token/", None),
            ("POST", "/api/auth/token/refresh/", None),
            ("PATCH", "/api/users/me/", Some(token.as_str())),
            ("POST", "/api/connections/", Some(token.as_str())),
            ("POST", "/api/chat/messages/", Some(token.as_str())),
        ] {
            let (status, body) = send_raw(&api, method, path, token, json_ct, raw.clone()).await;
            assert_eq!(status, 400, "{method} {path} {raw}: {body}");
            assert_error(status, &body, 400);
        }
    }
    let (status, list) = api
        .call("GET", "/api/connections/", Some(&token), None)
        .await;
    assert_eq!((status, &list["count"]), (200, &json!(0)), "{list}");
    // Nothing was changed by any of it.
    let (status, me) = api.call("GET", "/api/users/me/", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(me, me_view(&bob));
}

#[tokio::test]
async fn validation_errors_name_their_fields() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/register/",
            None,
            Some(json!({"username": "a b", "password": "short"})),
        )
        .await;
    assert_field_error(status, &body, "username");
    assert_field_error(status, &body, "password");
    let (status, body) = api
        .call("POST", "/api/auth/register/", None, Some(json!({})))
        .await;
    assert_field_error(status, &body, "username");
    assert_field_error(status, &body, "password");
    // A wrongly typed field is a validation error of that field.
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/register/",
            None,
            Some(json!({"username": 12345, "password": "password123"})),
        )
        .await;
    assert_field_error(status, &body, "username");
    let (_, token) = api.user("alice").await;
    let (status, body) = api
        .call(
            "POST",
            "/api/connections/",
            Some(&token),
            Some(json!({"user_id": "nobody"})),
        )
        .await;
    assert_field_error(status, &body, "user_id");
    let (status, body) = api
        .call("POST", "/api/connections/", Some(&token), Some(json!({})))
        .await;
    assert_field_error(status, &body, "user_id");
    let (status, body) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&token),
            Some(json!({"first_name": 7})),
        )
        .await;
    assert_field_error(status, &body, "first_name");
}

#[tokio::test]
async fn an_empty_body_is_an_empty_object() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (me, token) = api.user("alice").await;
    for (path, field) in [
        ("/api/auth/register/", "username"),
        ("/api/auth/token/", "password"),
        ("/api/auth/token/refresh/", "refresh"),
    ] {
        for ct in [Some("application/json"), None] {
            let (status, body) = send_raw(&api, "POST", path, None, ct, "").await;
            assert_field_error(status, &body, field);
        }
    }
    let (status, body) = send_raw(&api, "POST", "/api/connections/", Some(&token), None, "").await;
    assert_field_error(status, &body, "user_id");
    // A PATCH of nothing changes nothing.
    let (status, body) = send_raw(&api, "PATCH", "/api/users/me/", Some(&token), None, "").await;
    assert_eq!((status, &body), (200, &me_view(&me)));
}

/// Found by the property-based tester: a body of only whitespace is not an
/// absent body (RFC 8259 needs a value), so it is malformed JSON.
#[tokio::test]
async fn a_body_of_only_whitespace_is_malformed_json() {
    let (_server, api, ta, _, conv, _, _) = pair_server().await;
    let (_, me) = api.call("GET", "/api/users/me/", Some(&ta), None).await;
    let json_ct = Some("application/json");
    let mark_read = format!("/api/chat/conversations/{conv}/mark_read/");
    let delivered = format!("/api/chat/conversations/{conv}/delivered/");
    for raw in ["\r", " ", "\n\t "] {
        for (method, path, token) in [
            ("POST", "/api/auth/register/", None),
            ("POST", "/api/auth/token/", None),
            ("POST", "/api/auth/token/refresh/", None),
            ("PATCH", "/api/users/me/", Some(ta.as_str())),
            ("POST", "/api/connections/", Some(ta.as_str())),
            ("POST", mark_read.as_str(), Some(ta.as_str())),
            ("POST", delivered.as_str(), Some(ta.as_str())),
        ] {
            let (status, body) = send_raw(&api, method, path, token, json_ct, raw).await;
            assert_error_code(status, &body, 400, "parse_error");
            // Without a content type it is a body that is not JSON.
            let (status, body) = send_raw(&api, method, path, token, None, raw).await;
            assert_error(status, &body, 415);
        }
    }
    // Nothing changed; an empty body still marks everything read.
    let (status, after) = api.call("GET", "/api/users/me/", Some(&ta), None).await;
    assert_eq!((status, &after), (200, &me));
    let (status, body) = send_raw(&api, "POST", &mark_read, Some(&ta), None, "").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn authentication_is_checked_before_the_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let json_ct = Some("application/json");
    for (method, path) in [
        ("PATCH", "/api/users/me/"),
        ("POST", "/api/connections/"),
        ("POST", "/api/chat/messages/"),
    ] {
        for (ct, raw) in [
            (json_ct, "{broken"),
            (Some("text/plain"), "{}"),
            (json_ct, "[]"),
        ] {
            let (status, body) = send_raw(&api, method, path, None, ct, raw).await;
            assert_error(status, &body, 401);
            let (status, body) = send_raw(&api, method, path, Some("bogus"), ct, raw).await;
            assert_error(status, &body, 401);
        }
    }
}

#[tokio::test]
async fn wrong_content_type_is_415_with_the_error_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    let valid = r#"{"username": "bob", "password": "password123"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        None,
    ] {
        let (status, body) = send_raw(&api, "POST", "/api/auth/register/", None, ct, valid).await;
        assert_error_code(status, &body, 415, "unsupported_media_type");
        let (status, body) = send_raw(&api, "POST", "/api/auth/token/", None, ct, valid).await;
        assert_error_code(status, &body, 415, "unsupported_media_type");
        let (status, body) = send_raw(
            &api,
            "PATCH",
            "/api/users/me/",
            Some(&token),
            ct,
            r#"{"first_name": "X"}"#,
        )
        .await;
        assert_error_code(status, &body, 415, "unsupported_media_type");
        let (status, body) = send_raw(
            &api,
            "POST",
            "/api/connections/",
            Some(&token),
            ct,
            r#"{"user_id": 1}"#,
        )
        .await;
        assert_error_code(status, &body, 415, "unsupported_media_type");
    }
    // Nothing was registered; a charset parameter is fine.
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "bob", "password": "password123"})),
        )
        .await;
    assert_error_code(status, &body, 401, "invalid_credentials");
    let (status, body) = send_raw(
        &api,
        "POST",
        "/api/auth/register/",
        None,
        Some("application/json; charset=utf-8"),
        valid,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_with_the_error_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    let json_ct = Some("application/json");
    let big = json!({"username": "x".repeat(70_000), "password": "password123"}).to_string();
    assert!(big.len() > 65_536);
    let (status, body) = send_raw(
        &api,
        "POST",
        "/api/auth/register/",
        None,
        json_ct,
        big.clone(),
    )
    .await;
    assert_error_code(status, &body, 413, "payload_too_large");
    let (status, body) =
        send_raw(&api, "POST", "/api/auth/token/", None, json_ct, big.clone()).await;
    assert_error_code(status, &body, 413, "payload_too_large");
    let big_patch = json!({"first_name": "x".repeat(70_000)}).to_string();
    let (status, body) = send_raw(
        &api,
        "PATCH",
        "/api/users/me/",
        Some(&token),
        json_ct,
        big_patch,
    )
    .await;
    assert_error_code(status, &body, 413, "payload_too_large");
    let big_conn = format!("{{\"user_id\": 1{}}}", " ".repeat(70_000));
    let (status, body) = send_raw(
        &api,
        "POST",
        "/api/connections/",
        Some(&token),
        json_ct,
        big_conn,
    )
    .await;
    assert_error_code(status, &body, 413, "payload_too_large");

    // Just under the limit is read and judged on its content.
    let under = json!({"username": "x".repeat(65_000), "password": "password123"}).to_string();
    assert!(under.len() < 65_536);
    let (status, body) = send_raw(&api, "POST", "/api/auth/register/", None, json_ct, under).await;
    assert_field_error(status, &body, "username");

    // A chunked body without a length is cut off at the limit too.
    let head = format!(
        "POST /api/auth/register/ HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let chunks: Vec<Vec<u8>> = big.as_bytes().chunks(8192).map(<[u8]>::to_vec).collect();
    let (status, body) = raw_exchange(&server, head, chunks).await;
    assert_error_code(status, &body, 413, "payload_too_large");
}

#[tokio::test]
async fn server_errors_do_not_leak_internals() {
    // A database without the schema: every query fails inside the server.
    let db = std::sync::Arc::new(TestDb::empty().await);
    let server = TestServer::start_on(db, ServerOptions::default()).await;
    let api = Api::new(&server);
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/register/",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert!((500..600).contains(&status), "{status} {body}");
    assert_error(status, &body, status);
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert!((500..600).contains(&status), "{status} {body}");
    assert_error(status, &body, status);
    let text = body.to_string().to_lowercase();
    for leak in [
        "select", "insert", "users", "table", "relation", "sql", "diesel", "panicked", "src/",
        ".rs",
    ] {
        assert!(!text.contains(leak), "5xx leaks {leak:?}: {body}");
    }
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_503() {
    // SQLite: a directory where the database file should be. PostgreSQL: a
    // database that does not exist.
    let db = std::sync::Arc::new(TestDb::empty().await);
    let path = db.url.strip_prefix("sqlite://").map(str::to_owned);
    match &path {
        Some(path) => std::fs::create_dir_all(path).expect("block the sqlite path"),
        None => {
            let name = db.url.rsplit('/').next().expect("name").to_owned();
            let base = chat_tests::pg_base_url().expect("postgres");
            tokio::task::spawn_blocking(move || {
                use diesel::{Connection, RunQueryDsl};
                let mut conn = diesel::PgConnection::establish(&base).expect("connect");
                diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .expect("drop");
            })
            .await
            .expect("drop task");
        }
    }
    let server = TestServer::start_on(
        db,
        ServerOptions {
            redis_cluster_nodes: None,
            env: vec![(
                "CHAT__DATABASE__CHECKOUT_TIMEOUT_SECONDS".into(),
                "1".into(),
            )],
            ..ServerOptions::default()
        },
    )
    .await;
    let api = Api::new(&server);
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_error_code(status, &body, 503, "service_unavailable");
    let text = body.to_string().to_lowercase();
    for leak in ["postgres", "sqlite", "database \"", "file", "sql", "/tmp"] {
        assert!(!text.contains(leak), "503 leaks {leak:?}: {body}");
    }
    let mint = crate::auth::mint(&crate::auth::simplejwt_claims(json!("1"), "access", 300));
    let (status, body) = api.call("GET", "/api/users/me/", Some(&mint), None).await;
    assert_error_code(status, &body, 503, "service_unavailable");
    drop(server);
    if let Some(path) = path {
        let _ = std::fs::remove_dir_all(path);
    }
}

#[tokio::test]
async fn a_database_that_goes_away_is_503() {
    let Some(base) = chat_tests::pg_base_url() else {
        // An open SQLite file cannot go away; see the test above.
        return;
    };
    let server = TestServer::start_with(&[("CHAT__DATABASE__CHECKOUT_TIMEOUT_SECONDS", "1")]).await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    let name = server
        .db
        .url
        .rsplit('/')
        .next()
        .and_then(|n| n.split('?').next())
        .expect("database name")
        .to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = diesel::PgConnection::establish(&base).expect("connect");
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .expect("drop");
    })
    .await
    .expect("drop task");
    // The first query may still find a pooled connection being torn down;
    // from then on the database is plainly unreachable.
    let mut last = (0, Value::Null);
    for _ in 0..3 {
        last = api.call("GET", "/api/users/me/", Some(&token), None).await;
        assert!((500..600).contains(&last.0), "{last:?}");
        assert_error(last.0, &last.1, last.0);
        let text = last.1.to_string().to_lowercase();
        assert!(
            !text.contains("postgres") && !text.contains("database \"") && !text.contains("sql"),
            "5xx leaks internals: {}",
            last.1
        );
    }
    assert_error_code(last.0, &last.1, 503, "service_unavailable");
}

#[tokio::test]
async fn pagination_follows_django_rest_framework() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, owner) = api.user("owner").await;

    // The first page of nothing is an empty page; a second one does not exist.
    let (status, empty) = api
        .call("GET", "/api/connections/", Some(&owner), None)
        .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(
        empty,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
    let (status, body) = api
        .call("GET", "/api/connections/?page=2", Some(&owner), None)
        .await;
    assert_error(status, &body, 404);

    let total = 105;
    for i in 0..total {
        let id = register_only(&api, &format!("peer{i:03}")).await;
        let (status, body) = api
            .call(
                "POST",
                "/api/connections/",
                Some(&owner),
                Some(json!({"user_id": id})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Default page size 50; absolute links.
    let (status, page1) = api
        .call("GET", "/api/connections/", Some(&owner), None)
        .await;
    assert_eq!(status, 200, "{page1}");
    let keys: Vec<&String> = page1.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(page1["count"], total);
    assert_eq!(page1["results"].as_array().expect("results").len(), 50);
    assert!(page1["previous"].is_null());
    let (status, explicit) = api
        .call("GET", "/api/connections/?page=1", Some(&owner), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(explicit["results"], page1["results"]);

    let mut seen: Vec<Value> = Vec::new();
    let mut page = page1.clone();
    let mut pages = 1;
    loop {
        for item in page["results"].as_array().expect("results") {
            seen.push(item["id"].clone());
        }
        if page["next"].is_null() {
            break;
        }
        let (status, next) = follow(&api, &page["next"], &owner).await;
        assert_eq!(status, 200, "{next}");
        assert_eq!(next["count"], total);
        // previous leads back to the page we came from.
        let (status, back) = follow(&api, &next["previous"], &owner).await;
        assert_eq!(status, 200, "{back}");
        assert_eq!(back["results"], page["results"]);
        page = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(page["results"].as_array().expect("results").len(), 5);
    let mut unique = seen.clone();
    unique.sort_by_key(|v| v.as_i64());
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (total, total));

    // Past the end: 404.
    let (status, body) = api
        .call("GET", "/api/connections/?page=4", Some(&owner), None)
        .await;
    assert_error(status, &body, 404);
    let (status, body) = api
        .call(
            "GET",
            "/api/connections/?page=3&page_size=100",
            Some(&owner),
            None,
        )
        .await;
    assert_error(status, &body, 404);

    // page_size up to 100, larger clamped; links keep the other parameters.
    let (status, p) = api
        .call("GET", "/api/connections/?page_size=7", Some(&owner), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(p["results"].as_array().expect("results").len(), 7);
    let (status, p2) = follow(&api, &p["next"], &owner).await;
    assert_eq!(status, 200, "{p2}");
    assert_eq!(p2["results"].as_array().expect("results").len(), 7);
    assert_eq!(p["results"][0]["id"], seen[0]);
    assert_eq!(p2["results"][0]["id"], seen[7]);
    for size in ["100", "101", "1000", "100000"] {
        let (status, p) = api
            .call(
                "GET",
                &format!("/api/connections/?page_size={size}"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(
            p["results"].as_array().expect("results").len(),
            100,
            "{size}"
        );
        let (status, rest) = follow(&api, &p["next"], &owner).await;
        assert_eq!(status, 200, "{rest}");
        assert_eq!(rest["results"].as_array().expect("results").len(), 5);
        assert!(rest["next"].is_null());
    }

    // Filters survive in the links; a link from a request without the slash works.
    let (status, p) = api
        .call(
            "GET",
            "/api/connections?status=pending&page_size=60",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["count"], total);
    let next = p["next"].as_str().expect("next").to_owned();
    assert!(
        next.contains("status=pending") && next.contains("page=2"),
        "{next}"
    );
    let (status, p2) = follow(&api, &p["next"], &owner).await;
    assert_eq!(status, 200, "{p2}");
    assert_eq!(p2["results"].as_array().expect("results").len(), 45);
    let (status, p) = api
        .call(
            "GET",
            "/api/connections/?status=accepted",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        p,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
}

/// Walks a paginated list from `path` by its `next` links, checking each
/// page against the one before through `previous`; returns every item.
async fn walk_pages(api: &Api, path: &str, token: &str, per_page: usize) -> Vec<Value> {
    let (status, mut page) = api.call("GET", path, Some(token), None).await;
    assert_eq!(status, 200, "{path}: {page}");
    assert!(page["previous"].is_null(), "{page}");
    let count = page["count"].as_u64().expect("count") as usize;
    let mut items: Vec<Value> = Vec::new();
    loop {
        let results = page["results"].as_array().expect("results").clone();
        let expected = per_page.min(count - items.len());
        assert_eq!(results.len(), expected, "{path}: page of {per_page}");
        items.extend(results);
        if page["next"].is_null() {
            break;
        }
        let (status, next) = follow(api, &page["next"], token).await;
        assert_eq!(status, 200, "{next}");
        assert_eq!(next["count"], page["count"]);
        let (status, back) = follow(api, &next["previous"], token).await;
        assert_eq!(status, 200, "{back}");
        assert_eq!(back["results"], page["results"]);
        page = next;
    }
    assert_eq!(items.len(), count, "{path}");
    items
}

#[tokio::test]
async fn message_history_and_conversations_paginate_the_same_way() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let total = 105;
    for i in 0..total {
        let token = if i % 2 == 0 { &ta } else { &tb };
        let (status, msg) = api
            .call(
                "POST",
                "/api/chat/messages/",
                Some(token),
                Some(json!({"conversation_id": conv, "content": format!("m{i}")})),
            )
            .await;
        assert_eq!(status, 201, "{msg}");
    }
    let base = format!("/api/chat/conversations/{conv}/messages/");
    let items = walk_pages(&api, &base, &ta, 50).await;
    assert_eq!(
        items[0]["content"],
        format!("m{}", total - 1),
        "newest first"
    );
    assert_eq!(items[total - 1]["content"], "m0");
    for size in [100, 1000] {
        walk_pages(&api, &format!("{base}?page_size={size}"), &tb, 100).await;
    }
    walk_pages(&api, &format!("{base}?page_size=7"), &tb, 7).await;
    let (status, body) = api
        .call("GET", &format!("{base}?page=4"), Some(&ta), None)
        .await;
    assert_error(status, &body, 404);

    // Conversations: alice has three.
    for name in ["carol", "dave"] {
        let (user, token) = api.user(name).await;
        api.connect(&ta, &token, assert_id(&user["id"])).await;
    }
    let all = walk_pages(&api, "/api/chat/conversations/?page_size=2", &ta, 2).await;
    assert_eq!(all.len(), 3);
    let (status, body) = api
        .call(
            "GET",
            "/api/chat/conversations/?page_size=2&page=3",
            Some(&ta),
            None,
        )
        .await;
    assert_error(status, &body, 404);
    let (_, loner) = api.user("erin").await;
    let (status, empty) = api
        .call("GET", "/api/chat/conversations/", Some(&loner), None)
        .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(
        empty,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
}

#[tokio::test]
async fn responses_are_json_and_204_is_empty() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    let (bob, _) = api.user("bob").await;
    let check = |method: &str, path: &str, body: Option<Value>, ct: Option<&str>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = api.http.request(method, api.url(path)).bearer_auth(&token);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        async move {
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            let ct = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = res.text().await.expect("body");
            (status, ct, text)
        }
    };
    let json_ct = Some("application/json");
    let cases = [
        ("GET", "/api/users/me/".to_owned(), None, None, 200),
        (
            "POST",
            "/api/connections/".to_owned(),
            Some(json!({"user_id": bob["id"]})),
            json_ct,
            201,
        ),
        ("GET", "/api/connections/".to_owned(), None, None, 200),
        ("GET", "/api/nope/".to_owned(), None, None, 404),
        ("PUT", "/api/users/me/".to_owned(), None, None, 405),
        (
            "POST",
            "/api/connections/".to_owned(),
            Some(json!({})),
            Some("text/plain"),
            415,
        ),
        (
            "POST",
            "/api/connections/".to_owned(),
            Some(json!({"user_id": bob["id"]})),
            json_ct,
            409,
        ),
    ];
    for (method, path, body, ct, expected) in cases {
        let (status, content_type, text) = check(method, &path, body, ct).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: content type {content_type:?}"
        );
        serde_json::from_str::<Value>(&text).expect("a JSON body");
    }
    let (_, list) = api
        .call("GET", "/api/connections/", Some(&token), None)
        .await;
    let id = list["results"][0]["id"].clone();
    let (status, _, text) = check("DELETE", &format!("/api/connections/{id}/"), None, None).await;
    assert_eq!((status, text.as_str()), (204, ""));
}
