//! Webhooks for offline recipients, from outside: a receiver of the test's
//! own (a small HTTP/1.1 server on a free port that records every request,
//! checks signatures with its own HMAC, and can be told to fail), the real
//! server posting to it.

use crate::support::{Api, NodeProcess, ServerOptions, TestDb, TestServer, node_options};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_persistence::Database;
use chat_persistence::schema::webhook_outbox;
use diesel::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The key, as a Standard Webhooks secret (`whsec_` and its base64).
const KEY: &[u8] = b"a test key of thirty-two bytes!!";

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(KEY))
}

// ------------------------------------------------------------- receiver

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200.
    Ok,
    /// This status.
    Status(u16),
    /// Never answers (the sender's timeout ends it).
    Hang,
    /// Closes the connection without answering.
    Close,
}

/// One request as received.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: String,
    answer: Answer,
    at: Instant,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Whether the signature is right, by this file's own HMAC-SHA256.
    fn signed(&self) -> bool {
        let signed = format!("{}.{}.{}", self.id, self.timestamp, self.body);
        let expected = format!(
            "v1,{}",
            STANDARD.encode(hmac_sha256(KEY, signed.as_bytes()))
        );
        self.signature.split(' ').any(|s| s == expected)
    }
}

/// RFC 2104 over SHA-256, written here so the check does not share code
/// with the server.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[derive(Debug)]
struct ReceiverState {
    hits: Vec<Hit>,
    /// Answers for the next requests, in order; then `default`.
    script: VecDeque<Answer>,
    default: Answer,
}

/// The test's webhook receiver.
#[derive(Debug, Clone)]
struct Receiver {
    port: u16,
    state: Arc<Mutex<ReceiverState>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let receiver = Self {
            port,
            state: Arc::new(Mutex::new(ReceiverState {
                hits: Vec::new(),
                script: VecDeque::new(),
                default: Answer::Ok,
            })),
            tasks: Arc::default(),
        };
        receiver.serve(listener);
        receiver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let this = self.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = tokio::spawn(this.clone().connection(stream));
                this.tasks.lock().expect("tasks").push(conn.abort_handle());
            }
        });
        self.tasks
            .lock()
            .expect("tasks")
            .push(accept.abort_handle());
    }

    /// Requests on one connection, one after the other (keep-alive).
    async fn connection(self, stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        loop {
            let mut headers: HashMap<String, String> = HashMap::new();
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            loop {
                line.clear();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let answer = {
                let mut s = self.state.lock().expect("state");
                let answer = s.script.pop_front().unwrap_or(s.default);
                let header = |k: &str| headers.get(k).cloned().unwrap_or_default();
                s.hits.push(Hit {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                    content_type: header("content-type"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    answer,
                    at: Instant::now(),
                });
                answer
            };
            let status = match answer {
                Answer::Ok => 200,
                Answer::Status(s) => s,
                Answer::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                Answer::Close => return,
            };
            let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            if stream.get_mut().write_all(head.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Stops listening and cuts every connection.
    fn down(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the same port again");
        self.serve(listener);
    }

    fn answer_next(&self, answers: &[Answer]) {
        self.state.lock().expect("state").script.extend(answers);
    }

    fn answer_all(&self, answer: Answer) {
        self.state.lock().expect("state").default = answer;
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().expect("state").hits.clone()
    }

    /// Hits answered 200.
    fn delivered(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.answer == Answer::Ok)
            .collect()
    }

    async fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&[Hit]) -> bool) {
        let end = Instant::now() + timeout;
        while !done(&self.hits()) {
            assert!(
                Instant::now() < end,
                "{what}: not within {timeout:?}; received {:#?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.tasks) == 1 {
            self.down();
        }
    }
}

// ---------------------------------------------------------------- setup

/// Webhook settings for a test server posting to `receiver`: short delay,
/// timeout, retries and poll interval.
fn webhook_env(receiver: &Receiver, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("CHAT__WEBHOOKS__URL", receiver.url()),
        ("WEBHOOK_SECRET", secret()),
        ("CHAT__WEBHOOKS__DELAY_MS", "300".into()),
        ("CHAT__WEBHOOKS__REQUEST_TIMEOUT_MS", "500".into()),
        ("CHAT__WEBHOOKS__RETRY_INITIAL_MS", "200".into()),
        ("CHAT__WEBHOOKS__RETRY_MAX_INTERVAL_MS", "400".into()),
        ("CHAT__WEBHOOKS__POLL_INTERVAL_MS", "50".into()),
        ("CHAT__WEBHOOKS__CLAIM_LEASE_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env
}

async fn server_for(receiver: &Receiver, extra: &[(&str, &str)]) -> TestServer {
    let db = Arc::new(TestDb::new().await);
    TestServer::start_on(
        db,
        ServerOptions {
            env: webhook_env(receiver, extra),
            ..ServerOptions::default()
        },
    )
    .await
}

/// (kind, state) of every outbox row, in id order.
async fn outbox(db: &Database) -> Vec<(String, String)> {
    db.run(|c| {
        Ok(webhook_outbox::table
            .order(webhook_outbox::id)
            .select((webhook_outbox::kind, webhook_outbox::state))
            .load::<(String, String)>(c)?)
    })
    .await
    .expect("outbox rows")
}

async fn wait_for_state(db: &Database, what: &str, done: impl Fn(&[(String, String)]) -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = outbox(db).await;
        if done(&rows) {
            return;
        }
        assert!(Instant::now() < end, "{what}: outbox is {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn message_hits(hits: &[Hit], message: i64) -> Vec<Hit> {
    hits.iter()
        .filter(|h| h.json()["message"]["id"].as_i64() == Some(message))
        .cloned()
        .collect()
}

async fn metric(api: &Api, name: &str) -> f64 {
    let text = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

// ---------------------------------------------------------------- cases

#[tokio::test]
async fn an_offline_recipient_gets_a_signed_webhook_after_the_delay() {
    let receiver = Receiver::start().await;
    let server = server_for(&receiver, &[]).await;
    let api = Api::new(&server);
    let (ta, _tb, conv, a, b) = api.pair("alice", "bob").await;
    let sent_at = Instant::now();
    let message = api.send_message(&ta, conv, "Are you there?").await;
    let id = message["id"].as_i64().expect("id");
    receiver
        .wait_until("the webhook", Duration::from_secs(10), |h| {
            !message_hits(h, id).is_empty()
        })
        .await;
    let hit = message_hits(&receiver.hits(), id).remove(0);
    assert!(
        hit.at.duration_since(sent_at) >= Duration::from_millis(300),
        "not before the delay"
    );
    assert!(hit.signed(), "signature checks out: {hit:?}");
    assert_eq!(hit.id, format!("msg_{id}"));
    assert!(hit.content_type.starts_with("application/json"));
    let ts: i64 = hit.timestamp.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    let body = hit.json();
    assert_eq!(body["type"], "message.created");
    assert_eq!(body["recipient_id"], b);
    assert_eq!(body["conversation_id"], conv);
    let m = &body["message"];
    assert_eq!(m, &message, "the message object, as POST answered it");
    for key in crate::chat::MESSAGE_KEYS {
        assert!(m.get(key).is_some(), "message.{key}");
    }
    assert_eq!(m["sender_id"], a);
    assert_eq!(m["is_read"], false);
    // bob accepted alice's request at once: that event was not needed.
    let hits = receiver.hits();
    assert!(
        hits.iter().all(|h| h.json()["type"] == "message.created"),
        "{hits:?}"
    );
    assert_eq!(hits.len(), 1, "one request: {hits:?}");
    wait_for_state(&server.database, "sent", |rows| {
        rows.contains(&("message.created".into(), "sent".into()))
    })
    .await;
    assert_eq!(metric(&api, "chat_webhooks_sent_total").await, 1.0);
}

#[tokio::test]
async fn a_pending_request_to_an_offline_user_is_posted() {
    let receiver = Receiver::start().await;
    let server = server_for(&receiver, &[]).await;
    let api = Api::new(&server);
    let (_ua, ta) = api.user("alice").await;
    let (uc, _tc) = api.user("carol").await;
    let carol = uc["id"].as_i64().expect("id");
    let requested = api.request(&ta, carol).await;
    receiver
        .wait_until("the request's webhook", Duration::from_secs(10), |h| {
            !h.is_empty()
        })
        .await;
    let hit = receiver.hits().remove(0);
    assert!(hit.signed());
    assert_eq!(hit.id, format!("conn_{}", requested["id"]));
    let body = hit.json();
    assert_eq!(body["type"], "connection.requested");
    assert_eq!(body["recipient_id"], carol);
    assert_eq!(body["connection"], requested, "the connection object");
}

#[tokio::test]
async fn an_online_recipient_gets_none() {
    let receiver = Receiver::start().await;
    let server = server_for(&receiver, &[]).await;
    let api = Api::new(&server);
    let (ta, tb, conv, _a, _b) = api.pair("alice", "bob").await;
    let (_ws, _first) = crate::ws_support::stream(&server, &tb, "").await;
    api.send_message(&ta, conv, "you are online").await;
    wait_for_state(&server.database, "skipped", |rows| {
        rows.iter()
            .all(|(_, state)| state == "skipped" || state == "sent")
            && rows.len() == 2
    })
    .await;
    assert_eq!(outbox(&server.database).await[1].1, "skipped");
    assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
}

#[tokio::test]
async fn a_message_read_before_the_delay_gets_none() {
    let receiver = Receiver::start().await;
    let server = server_for(&receiver, &[("CHAT__WEBHOOKS__DELAY_MS", "1500")]).await;
    let api = Api::new(&server);
    let (ta, tb, conv, _a, _b) = api.pair("alice", "bob").await;
    api.send_message(&ta, conv, "read me quickly").await;
    api.mark_read(&tb, conv).await;
    wait_for_state(&server.database, "skipped", |rows| {
        rows.len() == 2 && rows.iter().all(|(_, state)| state == "skipped")
    })
    .await;
    assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
}

#[tokio::test]
async fn failures_are_retried_until_delivered_with_the_same_id_in_order() {
    let receiver = Receiver::start().await;
    let server = server_for(&receiver, &[]).await;
    let api = Api::new(&server);
    let (ta, _tb, conv, _a, _b) = api.pair("alice", "bob").await;
    receiver.answer_next(&[
        Answer::Status(500),
        Answer::Hang,
        Answer::Close,
        Answer::Status(503),
        Answer::Status(302),
    ]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = api.send_message(&ta, conv, &format!("m{i}")).await;
        ids.push(m["id"].as_i64().expect("id"));
    }
    receiver
        .wait_until("five failed attempts", Duration::from_secs(15), |h| {
            h.len() >= 5
        })
        .await;
    // Down for a while: connections refused.
    receiver.down();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.up().await;
    receiver
        .wait_until("all three delivered", Duration::from_secs(15), |h| {
            h.iter().filter(|h| h.answer == Answer::Ok).count() >= 3
        })
        .await;
    let hits = receiver.hits();
    for h in &hits {
        assert!(h.signed(), "{h:?}");
    }
    // Every attempt of an event: the same id and the same body.
    for id in &ids {
        let attempts = message_hits(&hits, *id);
        assert!(!attempts.is_empty());
        assert!(attempts.iter().all(|h| h.id == format!("msg_{id}")));
        assert!(attempts.iter().all(|h| h.body == attempts[0].body));
    }
    // Order per recipient: nothing newer went out before an older one was taken.
    let delivered: Vec<i64> = receiver
        .delivered()
        .iter()
        .map(|h| h.json()["message"]["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(delivered, ids, "delivered once each, in order");
    let attempted: Vec<i64> = hits
        .iter()
        .map(|h| h.json()["message"]["id"].as_i64().expect("id"))
        .collect();
    let mut sorted = attempted.clone();
    sorted.sort_unstable();
    assert_eq!(
        attempted, sorted,
        "no newer attempt before an older success"
    );
    assert!(metric(&api, "chat_webhooks_retried_total").await >= 5.0);
    assert_eq!(metric(&api, "chat_webhooks_sent_total").await, 3.0);
    wait_for_state(&server.database, "nothing pending", |rows| {
        rows.iter().all(|(_, s)| s != "pending")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metric(&api, "chat_webhooks_oldest_pending_seconds").await,
        0.0
    );
}

#[tokio::test]
async fn an_event_is_dead_lettered_after_the_retry_period() {
    let receiver = Receiver::start().await;
    let server = server_for(&receiver, &[("CHAT__WEBHOOKS__RETRY_MAX_AGE_SECONDS", "2")]).await;
    let api = Api::new(&server);
    let (ta, _tb, conv, _a, _b) = api.pair("alice", "bob").await;
    receiver.answer_all(Answer::Status(500));
    api.send_message(&ta, conv, "never taken").await;
    wait_for_state(&server.database, "dead", |rows| {
        rows.contains(&("message.created".into(), "dead".into()))
    })
    .await;
    assert_eq!(metric(&api, "chat_webhooks_dead_lettered_total").await, 1.0);
    assert!(receiver.hits().len() >= 3, "retried until then");
    // The next event of the recipient is no longer held back.
    receiver.answer_all(Answer::Ok);
    let m = api.send_message(&ta, conv, "taken").await;
    let id = m["id"].as_i64().expect("id");
    receiver
        .wait_until("the next event", Duration::from_secs(10), |h| {
            message_hits(h, id).iter().any(|h| h.answer == Answer::Ok)
        })
        .await;
}

#[tokio::test]
async fn without_a_url_nothing_is_recorded_or_sent() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (ta, _tb, conv, _a, _b) = api.pair("alice", "bob").await;
    api.send_message(&ta, conv, "no webhooks here").await;
    let (_uc, tc) = api.user("carol").await;
    let (ud, _td) = api.user("dave").await;
    api.request(&tc, ud["id"].as_i64().expect("id")).await;
    assert!(outbox(&server.database).await.is_empty());
    assert_eq!(metric(&api, "chat_webhooks_sent_total").await, 0.0);
}

fn load(extra: &[(&str, &str)]) -> Result<chat_server::Settings, String> {
    let mut vars: Vec<(String, String)> =
        vec![("CHAT_CONFIG_DIR".into(), "/nonexistent-config-dir".into())];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    chat_server::Settings::load_from(&vars).map_err(|e| e.to_string())
}

#[test]
fn bad_webhook_settings_are_refused_at_start() {
    let s = secret();
    let ok = load(&[
        ("WEBHOOK_URL", "https://push.example.com/hook"),
        ("WEBHOOK_SECRET", &s),
    ])
    .expect("a good configuration loads");
    assert_eq!(ok.api.webhooks.url, "https://push.example.com/hook");
    for (extra, key) in [
        (
            vec![("WEBHOOK_URL", "ftp://push.example.com/")],
            "webhooks.url",
        ),
        (vec![("WEBHOOK_URL", "not a url")], "webhooks.url"),
        (
            vec![("WEBHOOK_URL", "mailto:push@example.com")],
            "webhooks.url",
        ),
        (vec![("WEBHOOK_URL", "http://h/")], "webhooks.secret"),
        (
            vec![
                ("WEBHOOK_URL", "http://h/"),
                ("WEBHOOK_SECRET", "whsec_***"),
            ],
            "webhooks.secret",
        ),
        (
            vec![("CHAT__WEBHOOKS__CLAIM_LEASE_MS", "100")],
            "webhooks.claim_lease_ms",
        ),
        (
            vec![("CHAT__WEBHOOKS__CONCURRENCY", "0")],
            "webhooks.concurrency",
        ),
        (
            vec![("CHAT__WEBHOOKS__RETRY_MAX_INTERVAL_MS", "10")],
            "webhooks.retry_max_interval_ms",
        ),
        (
            vec![
                ("CHAT_ENV", "production"),
                ("JWT_SECRET", "x"),
                ("CHAT__WEBHOOKS__RETRY_MAX_AGE_SECONDS", "3600"),
            ],
            "webhooks.retry_max_age_seconds",
        ),
    ] {
        let err = load(&extra).expect_err(&format!("{extra:?} refused"));
        assert!(err.contains(key), "{extra:?}: {err}");
    }
    // The secret from a file is refused; the environment's is taken.
    let dir = std::env::temp_dir().join(chat_tests::unique_name("webhook-config"));
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::write(
        dir.join("local.toml"),
        "[webhooks]\nsecret = \"in-a-file\"\n",
    )
    .expect("file");
    let vars = vec![("CHAT_CONFIG_DIR".to_owned(), dir.display().to_string())];
    let err = chat_server::Settings::load_from(&vars).expect_err("a secret in a file");
    assert!(err.to_string().contains("environment"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A PostgreSQL database and the options of nodes sharing it (and Redis,
/// when the run has one) that post to `receiver`; `None` on SQLite.
async fn pg_nodes(
    receiver: &Receiver,
    extra: &[(&str, &str)],
) -> Option<(Arc<TestDb>, ServerOptions)> {
    if chat_tests::pg_base_url().is_none() {
        eprintln!("skipped: needs TEST_DATABASE_URL");
        return None;
    }
    let db = Arc::new(TestDb::new().await);
    let mut options = chat_tests::redis_url()
        .map(node_options)
        .unwrap_or_default();
    options.env = webhook_env(receiver, extra);
    Some((db, options))
}

/// Two nodes on one PostgreSQL database: each event goes out once.
#[tokio::test]
async fn two_nodes_send_each_event_once() {
    let receiver = Receiver::start().await;
    let Some((db, options)) =
        pg_nodes(&receiver, &[("CHAT__WEBHOOKS__POLL_INTERVAL_MS", "10")]).await
    else {
        return;
    };
    let a = TestServer::start_on(db.clone(), options.clone()).await;
    let b = TestServer::start_on(db, options).await;
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let mut sent: Vec<i64> = Vec::new();
    let mut pairs = Vec::new();
    for p in 0..4 {
        let (ta, _tb, conv, _x, _y) = api_a
            .pair(&format!("sender{p}"), &format!("recipient{p}"))
            .await;
        pairs.push((ta, conv));
    }
    for round in 0..5 {
        for (i, (token, conv)) in pairs.iter().enumerate() {
            let api = if (round + i) % 2 == 0 { &api_a } else { &api_b };
            let m = api.send_message(token, *conv, &format!("r{round}")).await;
            sent.push(m["id"].as_i64().expect("id"));
        }
    }
    receiver
        .wait_until("every event", Duration::from_secs(20), |h| h.len() >= 20)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits();
    let mut ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "an event was sent twice: {hits:#?}");
    assert_eq!(ids.len(), 20);
    // Per recipient, in message order.
    let mut per_recipient: HashMap<i64, Vec<i64>> = HashMap::new();
    for h in &hits {
        let body = h.json();
        per_recipient
            .entry(body["recipient_id"].as_i64().expect("recipient"))
            .or_default()
            .push(body["message"]["id"].as_i64().expect("id"));
    }
    for (recipient, got) in per_recipient {
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, sorted, "recipient {recipient}");
    }
}

/// A node killed while its request is in flight: once its claim lapses,
/// another node sends the event, with the same id.
#[tokio::test]
async fn an_event_a_killed_node_was_sending_is_sent_by_another() {
    let receiver = Receiver::start().await;
    // A's request outlives the moment it is killed; its claim lapses 3 s
    // after it was taken.
    let extra = [
        ("CHAT__WEBHOOKS__REQUEST_TIMEOUT_MS", "2500"),
        ("CHAT__WEBHOOKS__CLAIM_LEASE_MS", "3000"),
    ];
    let Some((db, options)) = pg_nodes(&receiver, &extra).await else {
        return;
    };
    let mut node_a = NodeProcess::start(&db, &options, "stream_faults::node_process").await;
    let api_a = Api {
        http: reqwest::Client::new(),
        base: node_a.url(""),
    };
    let (ta, _tb, conv, _a, _b) = api_a.pair("alice", "bob").await;
    receiver.answer_next(&[Answer::Hang]);
    let m = api_a.send_message(&ta, conv, "in flight").await;
    let id = m["id"].as_i64().expect("id");
    receiver
        .wait_until("node A's attempt", Duration::from_secs(10), |h| {
            !message_hits(h, id).is_empty()
        })
        .await;
    let first = message_hits(&receiver.hits(), id).remove(0);
    node_a.kill().await;
    let b = TestServer::start_on(db, options).await;
    receiver
        .wait_until("node B's attempt", Duration::from_secs(15), |h| {
            message_hits(h, id).iter().any(|h| h.answer == Answer::Ok)
        })
        .await;
    let attempts = message_hits(&receiver.hits(), id);
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[1].id, first.id, "the same webhook-id");
    assert_eq!(attempts[1].body, first.body);
    assert!(
        attempts[1].at.duration_since(first.at) >= Duration::from_millis(2500),
        "not while A's claim held"
    );
    wait_for_state(&b.database, "sent", |rows| {
        rows.contains(&("message.created".into(), "sent".into()))
    })
    .await;
}
