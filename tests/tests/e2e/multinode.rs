//! Several nodes sharing one database and one Redis behave as one; Redis
//! going down loses nothing stored and same-node delivery never stops.

use crate::support::*;
use crate::ws_support::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Two nodes on one database and one Redis, or `None` (with a note) when
/// the run has no Redis.
async fn two_nodes(redis: Option<String>) -> Option<(TestServer, TestServer)> {
    let redis = redis.or_else(chat_tests::redis_url);
    let Some(redis) = redis else {
        eprintln!("skipped: multi-node tests need TEST_REDIS_URL");
        return None;
    };
    let db = Arc::new(TestDb::new().await);
    let prefix = format!("{}:", chat_tests::unique_name("mn"));
    let options = ServerOptions {
        redis_url: Some(redis),
        channel_prefix: Some(prefix),
        env: vec![],
    };
    let a = TestServer::start_on(db.clone(), options.clone()).await;
    let b = TestServer::start_on(db, options).await;
    Some((a, b))
}

#[tokio::test]
async fn events_cross_nodes() {
    let Some((node1, node2)) = two_nodes(None).await else {
        return;
    };
    let (node1, api1, ta, tb, conv, a, b) = pair_on(node1).await;
    let api2 = Api::new(&node2);
    let mut wa = join(&node1.ws_url(""), conv, &ta).await;
    let mut wb = join(&node2.ws_url(""), conv, &tb).await;

    send(
        &mut wa,
        json!({"type": "chat_message", "content": "across"}),
    )
    .await;
    let on_b = next(&mut wb).await;
    assert_eq!(on_b["content"], "across");
    assert_eq!(
        next(&mut wa).await,
        on_b,
        "the sender's node delivers once, not again via the relay"
    );

    send(
        &mut wb,
        json!({"type": "typing_indicator", "is_typing": true}),
    )
    .await;
    let typing = next(&mut wa).await;
    assert_eq!(
        (typing["type"].as_str(), typing["user_id"].as_i64()),
        (Some("typing_indicator"), Some(b))
    );
    silent(&mut wb, 300).await;

    send(
        &mut wb,
        json!({"type": "message_read", "message_ids": [on_b["message_id"]]}),
    )
    .await;
    assert_eq!(next(&mut wa).await["type"], "messages_read");
    assert_eq!(next(&mut wb).await["type"], "messages_read");

    // An HTTP send on node 2 reaches a socket on node 1.
    let msg = api2.send_message(&tb, conv, "http").await;
    let ev = next(&mut wa).await;
    assert_eq!(
        (ev["message_id"].clone(), ev["sender_id"].as_i64()),
        (msg["id"].clone(), Some(b))
    );
    next(&mut wb).await;
    // HTTP mark_read on node 1 reaches node 2.
    let (status, _) = api1
        .call(
            "POST",
            &format!("/api/chat/conversations/{conv}/mark_read/"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let ev = next(&mut wb).await;
    assert_eq!(
        (ev["type"].as_str(), ev["user_id"].as_i64()),
        (Some("messages_read"), Some(a))
    );
}

#[tokio::test]
async fn per_sender_order_holds_across_nodes() {
    let Some((node1, node2)) = two_nodes(None).await else {
        return;
    };
    let (node1, _, ta, tb, conv, _, _) = pair_on(node1).await;
    let mut wa = join(&node1.ws_url(""), conv, &ta).await;
    let mut wb = join(&node2.ws_url(""), conv, &tb).await;
    let mut wb_local = join(&node1.ws_url(""), conv, &tb).await;
    for i in 0..100 {
        send(
            &mut wa,
            json!({"type": "chat_message", "content": format!("n{i}")}),
        )
        .await;
    }
    for ws in [&mut wb, &mut wb_local] {
        for i in 0..100 {
            assert_eq!(next(ws).await["content"], format!("n{i}"));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis on {port} did not come up");
}

#[tokio::test]
async fn redis_outage_loses_nothing_and_recovers() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: redis-server is not installed");
        return;
    }
    let port = free_port();
    let mut redis = start_redis(port);
    wait_for_port(port).await;
    let (node1, node2) = two_nodes(Some(format!("redis://127.0.0.1:{port}")))
        .await
        .expect("a Redis URL was given");
    let (node1, api1, ta, tb, conv, _, _) = pair_on(node1).await;
    let mut wa = join(&node1.ws_url(""), conv, &ta).await;
    let mut wb_local = join(&node1.ws_url(""), conv, &tb).await;
    let mut wb_remote = join(&node2.ws_url(""), conv, &tb).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "before"}),
    )
    .await;
    for ws in [&mut wa, &mut wb_local, &mut wb_remote] {
        assert_eq!(next(ws).await["content"], "before");
    }

    redis.kill().expect("kill redis");
    let _ = redis.wait();
    let (status, ready) = api1.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["redis"], "unavailable");
    for i in 0..5 {
        send(
            &mut wa,
            json!({"type": "chat_message", "content": format!("during {i}")}),
        )
        .await;
        assert_eq!(next(&mut wa).await["content"], format!("during {i}"));
        assert_eq!(
            next(&mut wb_local).await["content"],
            format!("during {i}"),
            "same-node delivery never stops"
        );
    }
    let (_, history) = api1
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(
        history["count"], 6,
        "everything sent during the outage is stored"
    );

    let mut redis = start_redis(port);
    wait_for_port(port).await;
    // Cross-node delivery resumes without restarting anything.
    let mut resumed = false;
    for attempt in 0..60 {
        send(
            &mut wa,
            json!({"type": "chat_message", "content": format!("after {attempt}")}),
        )
        .await;
        next(&mut wa).await;
        next(&mut wb_local).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        use futures_util::StreamExt;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, wb_remote.next()).await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = frame {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                if v["content"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("after"))
                {
                    resumed = true;
                }
            }
        }
        if resumed {
            break;
        }
    }
    assert!(resumed, "cross-node delivery resumed after Redis came back");
    let (status, _) = api1.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
    let _ = redis.kill();
    let _ = redis.wait();
}
