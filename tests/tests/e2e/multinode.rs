//! Several nodes sharing one database and one Redis behave as one; Redis
//! going down loses nothing stored and same-node delivery never stops.

use crate::support::*;
use crate::ws_support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn events_cross_nodes() {
    let Some((node1, node2)) = two_nodes(None).await else {
        return;
    };
    events_cross_nodes_on(node1, node2).await;
}

/// Every kind of conversation event reaches the other node (also run on a
/// Redis Cluster).
pub(crate) async fn events_cross_nodes_on(node1: TestServer, node2: TestServer) {
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
    api1.mark_read(&ta, conv).await;
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
    per_sender_order_on(node1, node2).await;
}

/// One sender's messages arrive in order on both nodes (also run on a
/// Redis Cluster).
pub(crate) async fn per_sender_order_on(node1: TestServer, node2: TestServer) {
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

#[tokio::test]
async fn redis_outage_loses_nothing_and_recovers() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let (node1, node2) = two_nodes(Some(redis.url()))
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

    redis.kill();
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
    assert_eq!(
        api1.history_len(&tb, conv).await,
        6,
        "everything sent during the outage is stored"
    );

    redis.restart().await;
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
}
