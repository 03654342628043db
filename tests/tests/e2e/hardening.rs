//! Hardening, from outside: what a hostile or unlucky client can do to the
//! HTTP side (slow bodies, random methods, forged forwarding headers, hang
//! ups), and the start-up refusals of unsafe secrets.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The value of the first sample of `name` whose line holds every label.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}

/// `/metrics` as text.
pub async fn scrape(api: &Api) -> String {
    api.http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

/// Reads what the server sends until it closes the connection or `within`
/// passes; returns it and whether the server closed.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

const SHORT_BODY: &[u8] = b"POST /api/auth/token/ HTTP/1.1\r\nHost: t\r\n\
    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":";
const ENDLESS_CHUNKS: &[u8] = b"POST /api/auth/token/ HTTP/1.1\r\nHost: t\r\n\
    Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"us\r\n";

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closed() {
    let server = TestServer::start_with(&[("CHAT__LIMITS__BODY_TIMEOUT_MS", "800")]).await;
    for (what, request) in [
        ("shorter than its Content-Length", SHORT_BODY),
        ("chunks that never end", ENDLESS_CHUNKS),
    ] {
        let started = Instant::now();
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(request).await.expect("write");
        // The client keeps the connection open and sends nothing more.
        let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer:?}");
        assert!(
            answer.contains("\"code\":\"bad_request\""),
            "{what}: {answer}"
        );
        assert!(closed, "{what}: the connection is closed after the 408");
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "{what}: answered after {took:?}, the deadline is 800 ms"
        );
    }
    // A body that arrives in time, even in pieces, is served.
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(
        b"POST /api/auth/token/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 31\r\nConnection: close\r\n\r\n{\"username\":\"x\",",
    )
    .await
    .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(b"\"password\":\"y\"}").await.expect("write");
    let (answer, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn slow_bodies_cannot_take_every_connection_slot() {
    // Two workers of 4 connections each: 8 slots, and 24 clients that
    // announce a body and stall. Each holds its slot for the body deadline
    // at most, so a normal request is served within a few deadlines.
    let server = TestServer::start_with(&[
        ("CHAT__LIMITS__BODY_TIMEOUT_MS", "700"),
        ("CHAT__SERVER__MAX_CONNECTIONS", "4"),
    ])
    .await;
    let mut stalled = Vec::new();
    for _ in 0..24 {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(SHORT_BODY).await.expect("write");
        stalled.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::get(server.url("/healthz/")),
    )
    .await
    .expect("a normal request is served while slow clients come and go")
    .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_secs(8));
    let mut closed = 0;
    for tcp in &mut stalled {
        let (answer, was_closed) = read_until_closed(tcp, Duration::from_secs(5)).await;
        if was_closed && answer.starts_with("HTTP/1.1 408") {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        stalled.len(),
        "every stalled client got 408 and was closed"
    );
}

#[tokio::test]
async fn random_methods_and_paths_add_no_metric_labels() {
    let (server, api, ta, _, _, _, _) = pair_server().await;
    let _ = api.call("GET", "/api/users/me/", Some(&ta), None).await;
    let series = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("chat_http_request"))
            .filter_map(|l| l.split_once('{').and_then(|(_, rest)| rest.split_once('}')))
            .map(|(labels, _)| labels.to_owned())
            .collect()
    };
    scrape(&api).await; // so /metrics itself is among the series before
    let before = series(&scrape(&api).await);
    for i in 0..150 {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        let request = format!(
            "M{i}X{} /api/users/me/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            i * 7919
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let (answer, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        let _ = api
            .call("GET", &format!("/no/such/path/{i}/"), None, None)
            .await;
    }
    let text = scrape(&api).await;
    let after = series(&text);
    let added: Vec<&String> = after.difference(&before).collect();
    // At most: the `other` method on the route (count, and the latency's
    // buckets, sum and count), and the `other` route for the unknown paths.
    assert!(
        added
            .iter()
            .all(|l| l.contains("method=\"other\"") || l.contains("route=\"other\"")),
        "{added:#?}"
    );
    let methods: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("chat_http_requests_total"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        methods.iter().all(|m| ["GET", "POST", "other"].contains(m)),
        "{methods:?}"
    );
    assert_eq!(
        metric(
            &text,
            "chat_http_requests_total",
            &[
                "route=\"/api/users/me/\"",
                "method=\"other\"",
                "status=\"4xx\""
            ]
        ),
        Some(150.0),
        "{text}"
    );
    let statuses: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("chat_http_requests_total"))
        .filter_map(|l| l.split("status=\"").nth(1)?.split('"').next())
        .collect();
    assert!(statuses.iter().all(|s| s.ends_with("xx")), "{statuses:?}");
}

/// Logs in with a wrong password from `forwarded` (header lines of
/// `X-Forwarded-For`, in order); returns the status.
async fn attempt(api: &Api, forwarded: &[&str]) -> u16 {
    let mut req = api
        .http
        .post(api.url("/api/auth/token/"))
        .json(&json!({"username": "nobody", "password": "wrong-password"}));
    for line in forwarded {
        req = req.header("x-forwarded-for", *line);
    }
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn auth_limits_group_ipv6_by_64_and_read_every_forwarded_line() {
    let server = TestServer::start_with(&[
        ("CHAT__RATE_LIMITS__AUTH_PER_MINUTE", "2"),
        (
            "CHAT__RATE_LIMITS__TRUSTED_PROXIES",
            "127.0.0.0/8,10.0.0.0/8",
        ),
    ])
    .await;
    let api = Api::new(&server);

    // One /64: two attempts from two of its addresses spend its budget.
    assert_eq!(attempt(&api, &["2001:db8:1:2::1"]).await, 401);
    assert_eq!(attempt(&api, &["2001:db8:1:2::beef"]).await, 401);
    assert_eq!(attempt(&api, &["2001:db8:1:2:ffff::9"]).await, 429);
    assert_eq!(
        attempt(&api, &["2001:db8:1:3::1"]).await,
        401,
        "another /64"
    );

    // Two header lines: the client is the right-most untrusted hop over all
    // of them (10.0.0.7 is a trusted proxy), not the first line's address.
    for _ in 0..2 {
        assert_eq!(
            attempt(&api, &["198.51.100.7", "203.0.113.9, 10.0.0.7"]).await,
            401
        );
    }
    assert_eq!(attempt(&api, &["203.0.113.9"]).await, 429);
    assert_eq!(attempt(&api, &["198.51.100.7"]).await, 401);

    // Without a trusted proxy the header is ignored: the peer is the client.
    let plain = TestServer::start_with(&[("CHAT__RATE_LIMITS__AUTH_PER_MINUTE", "2")]).await;
    let api = Api::new(&plain);
    assert_eq!(attempt(&api, &["192.0.2.1"]).await, 401);
    assert_eq!(attempt(&api, &["192.0.2.2"]).await, 401);
    assert_eq!(attempt(&api, &["192.0.2.3"]).await, 429);
}

/// The `next` link of alice's first page of one connection, with `headers`.
async fn next_link(api: &Api, token: &str, headers: &[(&str, &str)]) -> String {
    let mut req = api
        .http
        .get(api.url("/api/connections/?page_size=1"))
        .bearer_auth(token);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let page: Value = req.send().await.expect("list").json().await.expect("json");
    page["next"]
        .as_str()
        .unwrap_or_else(|| panic!("a next link: {page}"))
        .to_owned()
}

const FORGED: [(&str, &str); 3] = [
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
    ("forwarded", "host=evil.example;proto=https"),
];

#[tokio::test]
async fn page_links_use_a_forwarded_host_only_from_a_trusted_proxy() {
    for (trusted, expected) in [(false, None), (true, Some("https://evil.example/"))] {
        let env: &[(&str, &str)] = if trusted {
            &[("CHAT__RATE_LIMITS__TRUSTED_PROXIES", "127.0.0.1")]
        } else {
            &[]
        };
        let server = TestServer::start_with(env).await;
        let api = Api::new(&server);
        let (ta, _, _, _, _) = api.pair("alice", "bob").await;
        let (_, tc) = api.user("carol").await;
        let (_, me) = api.call("GET", "/api/users/me/", Some(&ta), None).await;
        api.request(&tc, assert_id(&me["id"])).await;
        let own = format!("http://{}/", server.addr);
        assert!(next_link(&api, &ta, &[]).await.starts_with(&own));
        let link = next_link(&api, &ta, &FORGED).await;
        let want = expected.unwrap_or(&own);
        assert!(link.starts_with(want), "trusted {trusted}: {link}");
    }
}

#[tokio::test]
async fn unsafe_secrets_stop_the_start() {
    let load = |pairs: &[(&str, &str)]| {
        let mut vars = vec![("CHAT_CONFIG_DIR".to_owned(), "/nonexistent".to_owned())];
        vars.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        chat_server::Settings::load_from(&vars)
    };
    let err = load(&[("HOST", "0.0.0.0")]).expect_err("no secret on a public address");
    assert!(
        err.to_string().contains("JWT_SECRET") && err.to_string().contains("0.0.0.0"),
        "{err}"
    );
    let err = load(&[
        ("CHAT_ENV", "production"),
        ("JWT_SECRET", "only-twenty-two-bytes!"),
    ])
    .expect_err("a short production secret");
    assert!(err.to_string().contains("32"), "{err}");
    assert!(
        load(&[("HOST", "127.0.0.1")]).is_ok(),
        "loopback without a secret"
    );
    assert!(
        load(&[
            ("CHAT_ENV", "production"),
            ("HOST", "0.0.0.0"),
            ("JWT_SECRET", "a-production-secret-of-40-bytes-or-so!!!"),
        ])
        .is_ok()
    );
}

#[tokio::test]
async fn stored_messages_are_counted_even_when_the_sender_hangs_up() {
    let (server, api, ta, _, conv, _, _) = pair_server().await;
    let body = json!({"conversation_id": conv, "content": "fire and forget"}).to_string();
    let request = format!(
        "POST /api/chat/messages/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ta}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut senders = Vec::new();
    for _ in 0..40 {
        let request = request.clone();
        let addr = server.addr;
        senders.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(request.as_bytes()).await.expect("write");
            // Hang up at once, before any answer.
            drop(tcp);
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    let mut stored = 0;
    let mut counted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = api.history_len(&ta, conv).await;
        counted = metric(&scrape(&api).await, "chat_messages_stored_total", &[]);
        if counted == Some(stored as f64) && stored > 0 {
            break;
        }
    }
    assert!(stored > 0, "some sends were taken");
    assert_eq!(counted, Some(stored as f64), "counted as stored");
}
