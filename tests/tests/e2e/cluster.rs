//! Three server nodes on a three-primary Redis Cluster behave as one:
//! conversation sockets, user streams, resume with `since`/`after`,
//! presence, readiness; every channel is a sharded channel on the shard
//! that owns its slot; deployments on one cluster stay apart; and a primary
//! killed under load and brought back loses no acknowledged message.
//!
//! The cluster is started by the harness ([`chat_tests::RedisCluster`]):
//! these tests run whenever the run has shared backends (`TEST_REDIS_URL`
//! or `TEST_DATABASE_URL`, as in the PostgreSQL + Redis pass of `.ci/run`)
//! or `TEST_REDIS_CLUSTER=1`.

use crate::support::*;
use crate::ws_support::*;
use chat_tests::{RedisCluster, shared_redis_cluster};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const GRACE_MS: &str = "400";

/// Options for nodes of one deployment on `cluster`.
fn cluster_options(cluster: &RedisCluster, prefix: &str) -> ServerOptions {
    ServerOptions {
        redis_url: None,
        redis_cluster_nodes: Some(cluster.seeds()),
        channel_prefix: Some(prefix.to_owned()),
        env: vec![("CHAT__REDIS__PRESENCE_GRACE_MS".into(), GRACE_MS.into())],
    }
}

/// Three nodes on one database and `cluster`, with a fresh prefix.
async fn three_nodes(cluster: &RedisCluster) -> (String, [TestServer; 3]) {
    let prefix = format!("{}:", chat_tests::unique_name("cl"));
    let db = Arc::new(TestDb::new().await);
    let options = cluster_options(cluster, &prefix);
    let a = TestServer::start_on(db.clone(), options.clone()).await;
    let b = TestServer::start_on(db.clone(), options.clone()).await;
    let c = TestServer::start_on(db, options).await;
    (prefix, [a, b, c])
}

fn skip() {
    eprintln!(
        "skipped: Redis Cluster tests run with TEST_REDIS_URL, TEST_DATABASE_URL or TEST_REDIS_CLUSTER=1"
    );
}

/// Opens `/ws/chat/{conv}/?after={after}` on `node`.
async fn open_after(node: &TestServer, conv: i64, after: i64, token: &str) -> Ws {
    let url = node.ws_url(&format!("/ws/chat/{conv}/?after={after}&token={token}"));
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
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

#[tokio::test]
async fn three_nodes_on_a_cluster_behave_as_one() {
    let Some(cluster) = shared_redis_cluster() else {
        return skip();
    };
    let (prefix, [n1, n2, n3]) = three_nodes(cluster).await;
    let (api1, api2, api3) = (Api::new(&n1), Api::new(&n2), Api::new(&n3));
    let (ta, tb, conv, a, b) = api1.pair("alice", "bob").await;

    // Conversation sockets on three nodes.
    let mut wa = join(&n1.ws_url(""), conv, &ta).await;
    let mut wb2 = join(&n2.ws_url(""), conv, &tb).await;
    let mut wb3 = join(&n3.ws_url(""), conv, &tb).await;
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "to all"}),
    )
    .await;
    let own = next(&mut wa).await;
    assert_eq!(own["content"], "to all");
    assert_eq!(next(&mut wb2).await, own);
    assert_eq!(next(&mut wb3).await, own);
    // HTTP on node 3 reaches sockets on nodes 1 and 2, and 3's own.
    let msg = api3.send_message(&tb, conv, "over http").await;
    for ws in [&mut wa, &mut wb2, &mut wb3] {
        assert_eq!(next(ws).await["message_id"], msg["id"]);
    }
    // HTTP mark_read on node 2 reaches node 1.
    api2.mark_read(&ta, conv).await;
    let read = next_of(&mut wb3, "messages_read").await;
    assert_eq!(read["user_id"], a);

    // User streams on other nodes, numbered without gaps.
    let (mut sa, first_a) = stream(&n2, &ta, "").await;
    let (mut sb, first_b) = stream(&n3, &tb, "").await;
    assert_eq!(first_a["type"], "connection_established");
    send(
        &mut wa,
        json!({"type": "chat_message", "content": "streamed"}),
    )
    .await;
    let on_a = next_of(&mut sa, "chat_message").await;
    let on_b = next_of(&mut sb, "chat_message").await;
    assert_eq!(
        (on_a["content"].clone(), seq(&on_a)),
        (json!("streamed"), seq(&first_a) + 1)
    );
    assert_eq!(seq(&on_b), seq(&first_b) + 1);

    // Resume on another node with `since`: the missed events, once, in order, then live.
    let last = seq(&on_b);
    drop(sb);
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(api1.send_message(&ta, conv, &format!("missed {i}")).await["id"].clone());
    }
    let (mut sb, first) = stream(&n2, &tb, &format!("since={last}")).await;
    assert_eq!(first["recovered"], true, "{first}");
    assert_eq!(seq(&first), last + 3);
    for (i, id) in sent.iter().enumerate() {
        let ev = next_of(&mut sb, "chat_message").await;
        assert_eq!(
            (ev["message_id"].clone(), seq(&ev)),
            (id.clone(), last + 1 + i as i64)
        );
    }
    let live = api3.send_message(&ta, conv, "live again").await;
    let ev = next_of(&mut sb, "chat_message").await;
    assert_eq!(
        (ev["message_id"].clone(), seq(&ev)),
        (live["id"].clone(), last + 4)
    );
    // The conversation socket resumes with `after` on any node.
    let after = sent[0].as_i64().expect("id");
    let mut wr = open_after(&n1, conv, after, &tb).await;
    assert_eq!(next(&mut wr).await["type"], "connection_established");
    for id in sent[1..].iter().chain([&live["id"]]) {
        assert_eq!(next_of(&mut wr, "chat_message").await["message_id"], *id);
    }

    // Presence across nodes: carol online on node 1 is seen on node 3's
    // stream and node 2's REST; offline after the grace period.
    let (tc, td, _, c, _) = api1.pair("carol", "dave").await;
    let (mut sd, _) = stream(&n3, &td, "").await;
    let (sc, _) = stream(&n1, &tc, "").await;
    assert_eq!(
        presence_event(&mut sd).await,
        json!({"type": "presence", "user_id": c, "status": "online", "last_seen": null})
    );
    let (status, p) = api2
        .call(
            "GET",
            &format!("/api/presence/?user_ids={c}"),
            Some(&td),
            None,
        )
        .await;
    assert_eq!(
        (status, p["results"][0]["status"].clone()),
        (200, json!("online"))
    );
    // Her presence key carries a hash tag and lives on its slot's primary.
    let key = format!("{prefix}pres:{{{c}}}");
    let owner = cluster.primary_of(&key);
    assert_eq!(cluster.cli(owner, &["hlen", &key]).trim(), "1", "{key}");
    drop(sc);
    let off = presence_event(&mut sd).await;
    assert_eq!(
        (off["user_id"].clone(), off["status"].clone()),
        (json!(c), json!("offline"))
    );

    // Every channel is a sharded channel, subscribed on the primary that
    // owns its slot; none is a classic channel.
    let channels = [
        format!("{prefix}conv:{conv}"),
        format!("{prefix}user:{a}"),
        format!("{prefix}user:{b}"),
        format!("{prefix}ctl"),
    ];
    for channel in &channels {
        let owner = cluster.primary_of(channel);
        let here = cluster.cli(owner, &["pubsub", "shardnumsub", channel]);
        let count: i64 = here
            .lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            count >= 1,
            "{channel} is subscribed on its shard {owner}: {here}"
        );
    }
    for port in cluster.ports() {
        let classic = cluster.cli(port, &["pubsub", "channels", &format!("{prefix}*")]);
        assert!(
            classic.trim().is_empty(),
            "classic channels on {port}: {classic}"
        );
    }
}

#[tokio::test]
async fn readyz_reports_the_cluster() {
    let Some(cluster) = shared_redis_cluster() else {
        return skip();
    };
    let prefix = format!("{}:", chat_tests::unique_name("cl"));
    let node = TestServer::start_on(
        Arc::new(TestDb::new().await),
        cluster_options(cluster, &prefix),
    )
    .await;
    let (status, ready) = Api::new(&node).call("GET", "/readyz/", None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["redis"], "ok");
    assert_eq!(
        ready["checks"]["redis_cluster"],
        json!({"state": "ok", "primaries": 3, "reachable": 3})
    );
}

#[tokio::test]
async fn deployments_on_one_cluster_never_share_channels() {
    let Some(cluster) = shared_redis_cluster() else {
        return skip();
    };
    // No prefix configured: each deployment derives one from its database.
    let options = ServerOptions {
        channel_prefix: Some(String::new()),
        ..cluster_options(cluster, "")
    };
    crate::hardening_redis::deployments_stay_apart(options.clone(), options).await;
}

/// Two of the nodes, for the two-node acceptance tests.
async fn two_cluster_nodes(cluster: &RedisCluster) -> (TestServer, TestServer) {
    let prefix = format!("{}:", chat_tests::unique_name("cl"));
    let db = Arc::new(TestDb::new().await);
    let options = cluster_options(cluster, &prefix);
    let a = TestServer::start_on(db.clone(), options.clone()).await;
    (a, TestServer::start_on(db, options).await)
}

#[tokio::test]
async fn events_cross_nodes_on_a_cluster() {
    let Some(cluster) = shared_redis_cluster() else {
        return skip();
    };
    let (a, b) = two_cluster_nodes(cluster).await;
    crate::multinode::events_cross_nodes_on(a, b).await;
}

#[tokio::test]
async fn per_sender_order_holds_on_a_cluster() {
    let Some(cluster) = shared_redis_cluster() else {
        return skip();
    };
    let (a, b) = two_cluster_nodes(cluster).await;
    crate::multinode::per_sender_order_on(a, b).await;
}

#[tokio::test]
async fn a_dead_nodes_users_go_offline_on_a_cluster() {
    let Some(cluster) = shared_redis_cluster() else {
        return skip();
    };
    let (a, b) = crate::presence::two_nodes_on(None, Some(cluster.seeds())).await;
    crate::presence::a_dead_nodes_users_go_offline(a, b).await;
}

/// What a receiving socket ends up with: the `chat_message` ids in the
/// order received, and the close code if the server closed it.
#[derive(Debug, Default)]
struct Received {
    ids: Vec<i64>,
    seqs: Vec<i64>,
    closed: Option<u16>,
}

/// Reads `ws` until it holds every id of `want` (or `deadline`), or the
/// server closes it.
async fn collect(ws: &mut Ws, got: &mut Received, want: &BTreeSet<i64>, deadline: Instant) {
    let deadline = tokio::time::Instant::from_std(deadline);
    while !want.iter().all(|id| got.ids.contains(id)) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "chat_message" {
                    got.ids.push(v["message_id"].as_i64().expect("id"));
                    if let Some(s) = v["seq"].as_i64() {
                        got.seqs.push(s);
                    }
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                got.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                return;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("socket ended without a close frame: {other:?}"),
        }
    }
}

/// What happens to the shard of the conversation's channel under load.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL its primary, and start it again 2 s after readiness said 503.
    KillAndRestart,
    /// `CLUSTER FAILOVER` on its replica: the slots move to the replica
    /// while every connection stays open (Redis drops the sharded
    /// subscriptions there with a `sunsubscribe` push).
    Failover,
}

#[tokio::test]
async fn a_primary_killed_under_load_loses_no_acknowledged_message() {
    if !chat_tests::cluster_wanted() {
        return skip();
    }
    // A cluster of this test's own: one of its primaries dies.
    fault_under_load(3, 0, Fault::KillAndRestart).await;
}

#[tokio::test]
async fn a_failover_under_load_loses_no_acknowledged_message() {
    if !chat_tests::cluster_wanted() {
        return skip();
    }
    fault_under_load(3, 1, Fault::Failover).await;
}

/// Three nodes on a cluster of the test's own; `fault` strikes the shard
/// of the conversation's channel while alice sends over HTTP; then every
/// acknowledged message must reach every socket of bob's once and in order.
async fn fault_under_load(masters: usize, replicas: usize, fault: Fault) {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(move || RedisCluster::start(masters, replicas))
            .await
            .expect("cluster"),
    );
    let (prefix, [n1, n2, n3]) = three_nodes(&cluster).await;
    let api1 = Api::new(&n1);
    let (ta, tb, conv, _, _) = api1.pair("alice", "bob").await;
    let victim = cluster.primary_of(&format!("{prefix}conv:{conv}"));

    // bob listens on nodes 2 and 3 (two conversation sockets and a stream).
    let mut conv2 = join(&n2.ws_url(""), conv, &tb).await;
    let mut conv3 = join(&n3.ws_url(""), conv, &tb).await;
    let (mut stream3, first) = stream(&n3, &tb, "").await;
    let start_seq = seq(&first);

    // alice sends over HTTP from nodes 1 and 2 all along; 201 = acknowledged.
    let sender = {
        let (api1, api2, ta) = (api1.clone(), Api::new(&n2), ta.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let started = Instant::now();
            let mut i = 0;
            while started.elapsed() < Duration::from_secs(9) {
                let api = if i % 2 == 0 { &api1 } else { &api2 };
                let body = json!({"conversation_id": conv, "content": format!("load {i}")});
                let (status, msg) = api
                    .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
                    .await;
                if status == 201 {
                    acked.push(msg["id"].as_i64().expect("id"));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    match fault {
        Fault::KillAndRestart => {
            cluster.kill(victim);
            // Readiness notices within a few seconds.
            let mut unready = false;
            for _ in 0..40 {
                let (status, _) = api1.call("GET", "/readyz/", None, None).await;
                if status == 503 {
                    unready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(unready, "/readyz says 503 while a primary is down");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || {
                c.restart(victim);
                c.wait_ok();
            })
            .await
            .expect("restart");
        }
        Fault::Failover => {
            let replica = cluster.replica_of(victim);
            cluster.cli(replica, &["cluster", "failover"]);
            let channel = format!("{prefix}conv:{conv}");
            let c = cluster.clone();
            let moved = tokio::task::spawn_blocking(move || {
                for _ in 0..200 {
                    if c.primary_of(&channel) == replica {
                        c.wait_ok();
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                false
            })
            .await
            .expect("failover");
            assert!(moved, "the replica {replica} took over from {victim}");
        }
    }
    let acked = sender.await.expect("sender");
    assert!(
        acked.len() > 20,
        "the load kept being stored: {}",
        acked.len()
    );
    // Delivery resumes: a message after the load reaches every socket live.
    let last = api1.send_message(&ta, conv, "after the fault").await["id"]
        .as_i64()
        .expect("id");
    let mut want: BTreeSet<i64> = acked.iter().copied().collect();
    want.insert(last);

    // Every acknowledged message reaches every socket once, in order: on the
    // live socket (repaired from the database), or, if the server closed it
    // with 1012, after reconnecting with `after` / `since`.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, ws) in [("node 2", &mut conv2), ("node 3", &mut conv3)] {
        let mut got = Received::default();
        collect(ws, &mut got, &want, deadline).await;
        if let Some(code) = got.closed {
            assert_eq!(code, 1012, "{name}: closed with {code}");
            let after = got.ids.last().copied().unwrap_or(0);
            let mut again = open_after(&n2, conv, after, &tb).await;
            assert_eq!(next(&mut again).await["type"], "connection_established");
            got.closed = None;
            collect(&mut again, &mut got, &want, deadline).await;
        }
        eprintln!(
            "{name}: {} of {} messages, closed: {:?}",
            got.ids.len(),
            want.len(),
            got.closed
        );
        let ids: BTreeSet<i64> = got.ids.iter().copied().collect();
        assert_eq!(ids.len(), got.ids.len(), "{name}: no duplicates");
        assert!(got.ids.windows(2).all(|w| w[0] < w[1]), "{name}: in order");
        let missing: Vec<_> = want.difference(&ids).collect();
        assert!(
            missing.is_empty(),
            "{name}: missing {missing:?} of {}",
            want.len()
        );
    }
    let mut got = Received::default();
    collect(&mut stream3, &mut got, &want, deadline).await;
    if let Some(code) = got.closed {
        assert_eq!(code, 1012, "stream closed with {code}");
        let since = got.seqs.last().copied().unwrap_or(start_seq);
        let (mut again, first) = stream(&n2, &tb, &format!("since={since}")).await;
        assert_eq!(first["recovered"], true, "{first}");
        got.closed = None;
        collect(&mut again, &mut got, &want, deadline).await;
    }
    let expected: Vec<i64> = (start_seq + 1..=start_seq + got.seqs.len() as i64).collect();
    assert_eq!(
        got.seqs, expected,
        "the stream's seq has no gap and no repeat"
    );
    let ids: BTreeSet<i64> = got.ids.iter().copied().collect();
    assert!(want.is_subset(&ids), "the stream got every message");
    assert_eq!(api1.history_len(&tb, conv).await, want.len(), "all stored");
    let (status, _) = api1.call("GET", "/readyz/", None, None).await;
    assert_eq!(status, 200, "ready again");
    for (name, node) in [("node 1", &n1), ("node 2", &n2), ("node 3", &n3)] {
        let text = crate::hardening::scrape(&Api::new(node)).await;
        let resyncs = crate::hardening::metric(&text, "chat_websocket_resyncs_total", &[]);
        let failures = crate::hardening::metric(&text, "chat_redis_publish_failures_total", &[]);
        eprintln!("{name}: resyncs {resyncs:?}, events not relayed {failures:?}");
    }
    drop(n3);
}
