//! Redis, from outside: deployments sharing one Redis do not hear each
//! other by default, and what is published on a deployment's channels
//! reaches no socket unless it is a well-formed event.

use crate::hardening::{metric, scrape};
use crate::support::*;
use crate::ws_support::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `PUBLISH channel payload` in RESP on a connection of its own; returns
/// Redis's answer line (`:1` when one subscriber heard it).
async fn publish(redis_url: &str, channel: &str, payload: &[u8]) -> String {
    let addr = redis_url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("host:port");
    let mut tcp = TcpStream::connect(addr).await.expect("connect to redis");
    let mut command = format!(
        "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes();
    command.extend_from_slice(payload);
    command.extend_from_slice(b"\r\n");
    tcp.write_all(&command).await.expect("publish");
    let mut answer = [0_u8; 64];
    let n = tcp.read(&mut answer).await.expect("answer");
    String::from_utf8_lossy(&answer[..n]).trim().to_owned()
}

/// Options of a node with the default (derived) channel prefix, on `redis`.
fn default_prefixed(redis: String) -> ServerOptions {
    ServerOptions {
        redis_cluster_nodes: None,
        redis_url: Some(redis),
        // Empty: the prefix a deployment gets when it sets none.
        channel_prefix: Some(String::new()),
        env: vec![],
    }
}

#[tokio::test]
async fn deployments_sharing_a_redis_never_share_channels() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    // Two deployments: databases of their own, Redis databases 1 and 2 of
    // one server (pub/sub ignores the number), and no prefix configured.
    deployments_stay_apart(
        default_prefixed(format!("{}/1", redis.url())),
        default_prefixed(format!("{}/2", redis.url())),
    )
    .await;
}

/// Deployments A and B (databases of their own, each node with the
/// options given, no prefix configured) do not hear each other, and a
/// second node of B hears B (also run on a Redis Cluster).
pub(crate) async fn deployments_stay_apart(a_options: ServerOptions, b_options: ServerOptions) {
    let a = TestServer::start_on(Arc::new(TestDb::new().await), a_options).await;
    let b_db = Arc::new(TestDb::new().await);
    let b = TestServer::start_on(b_db.clone(), b_options.clone()).await;
    let (a, api_a, ta, _, conv_a, _, _) = pair_on(a).await;
    let (b, api_b, tb, _, conv_b, _, _) = pair_on(b).await;
    assert_eq!(conv_a, conv_b, "equal conversation ids in both");
    let mut on_b = join(&b.ws_url(""), conv_b, &tb).await;
    let (mut stream_b, _) = stream(&b, &tb, "").await;
    api_a
        .send_message(&ta, conv_a, "private to deployment A")
        .await;
    silent(&mut on_b, 1_000).await;
    silent(&mut stream_b, 300).await;

    // A second node of deployment B (same database) derives the same
    // prefix, so B's nodes still hear each other.
    let b2 = TestServer::start_on(b_db, b_options).await;
    let mut on_b2 = join(&b2.ws_url(""), conv_b, &tb).await;
    api_b.send_message(&tb, conv_b, "within B").await;
    assert_eq!(
        next_of(&mut on_b2, "chat_message").await["content"],
        "within B"
    );
    assert_eq!(
        next_of(&mut on_b, "chat_message").await["content"],
        "within B"
    );
    drop(a);
}

#[tokio::test]
async fn payloads_from_redis_are_checked_before_they_reach_sockets() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let prefix = format!("{}:", chat_tests::unique_name("rv"));
    let options = ServerOptions {
        redis_cluster_nodes: None,
        redis_url: Some(redis.url()),
        channel_prefix: Some(prefix.clone()),
        env: vec![],
    };
    let db = Arc::new(TestDb::new().await);
    let node1 = TestServer::start_on(db.clone(), options.clone()).await;
    let node2 = TestServer::start_on(db, options).await;
    let (node1, api1, ta, tb, conv, _, _) = pair_on(node1).await;
    let api2 = Api::new(&node2);
    let mut wb = join(&node2.ws_url(""), conv, &tb).await;
    let channel = format!("{prefix}conv:{conv}");
    let huge = format!(
        "x1|*|{{\"type\":\"chat_message\",\"content\":\"{}\"}}",
        "a".repeat(300 * 1024)
    );
    let garbage: Vec<Vec<u8>> = vec![
        b"not an envelope".to_vec(),
        b"x1|*|not json".to_vec(),
        b"x1|*|[1,2,3]".to_vec(),
        b"x1|*|{\"content\":\"no type\"}".to_vec(),
        b"x1|*|{\"type\":\"chat_message\"".to_vec(),
        b"x1|*|{\"type\":\"<script>\"}".to_vec(),
        b"bad node id!|*|{\"type\":\"chat_message\"}".to_vec(),
        b"x1|*|\xff\xfe{\"type\":\"chat_message\"}".to_vec(),
        huge.into_bytes(),
    ];
    for payload in &garbage {
        let heard = publish(&redis.url(), &channel, payload).await;
        assert_eq!(heard, ":1", "node 2 is subscribed to {channel}");
    }
    let mut refused = None;
    for _ in 0..30 {
        refused = metric(&scrape(&api2).await, "chat_redis_events_refused_total", &[]);
        if refused == Some(garbage.len() as f64) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        refused,
        Some(garbage.len() as f64),
        "each refusal is counted"
    );
    silent(&mut wb, 500).await;

    // Real events still flow between the nodes.
    api1.send_message(&ta, conv, "still relayed").await;
    assert_eq!(
        next_of(&mut wb, "chat_message").await["content"],
        "still relayed"
    );
    let text = scrape(&api2).await;
    assert_eq!(
        metric(&text, "chat_redis_events_refused_total", &[]),
        Some(garbage.len() as f64)
    );
    drop(node1);
}
