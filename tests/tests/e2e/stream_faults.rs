//! The user stream under faults and across nodes, from outside: real
//! servers, real sockets, PostgreSQL and Redis. Events caused on one node
//! reach streams on the other with the same `seq`; Redis killed under load,
//! a node killed abruptly and a node drained lose nothing acknowledged and
//! repeat nothing; a client hanging up after an HTTP send still gets its
//! message stored and delivered.
//!
//! The load tests record every socket in a task of its own while the test
//! sends on it, then compare what each socket saw with the event log read
//! afresh (a new stream with `since`): the same events, by seq, once each.

use crate::support::*;
use crate::ws_support::*;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long a send on an open socket may wait for its answer.
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// How long a socket may take to catch up with the log (or to end).
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// Pause between one sender's messages (they also wait for each answer).
const PACE: Duration = Duration::from_millis(20);

/// Whether the run has PostgreSQL and Redis; a note when not. Two nodes
/// under load on one SQLite file would test SQLite's locking, not this.
fn fault_backends() -> bool {
    if chat_tests::pg_base_url().is_none() || chat_tests::redis_url().is_none() {
        eprintln!("skipped: fault tests need TEST_DATABASE_URL and TEST_REDIS_URL");
        return false;
    }
    true
}

// ------------------------------------------------------ recorded sockets

/// How a socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A close frame with this code.
    Close(u16),
    /// The connection ended without a close frame.
    Cut,
}

/// What a socket received, as its reader task records it.
#[derive(Debug, Default)]
struct Log {
    frames: Vec<Value>,
    end: Option<End>,
}

/// A socket whose frames a task records while the test sends on it.
struct Recorded {
    sink: SplitSink<Ws, Message>,
    log: watch::Receiver<Log>,
}

impl Recorded {
    async fn open(url: String) -> Recorded {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket upgrade");
        let (sink, mut source) = ws.split();
        let (tx, log) = watch::channel(Log::default());
        tokio::spawn(async move {
            let end = loop {
                match source.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                        tx.send_modify(|l| l.frames.push(v));
                    }
                    Some(Ok(Message::Close(c))) => {
                        break End::Close(c.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break End::Cut,
                }
            };
            tx.send_modify(|l| l.end = Some(end));
        });
        Recorded { sink, log }
    }

    fn frames(&self) -> Vec<Value> {
        self.log.borrow().frames.clone()
    }

    fn end(&self) -> Option<End> {
        self.log.borrow().end
    }

    /// Waits (bounded) for the socket to end; how it ended.
    async fn ended(&self, what: &str) -> End {
        self.until(&format!("{what} ending"), |_| false).await;
        self.end().expect("ended")
    }

    /// Waits (bounded) until `done` holds for what was received; false if
    /// the socket ended first.
    async fn until(&self, what: &str, mut done: impl FnMut(&Log) -> bool) -> bool {
        let mut log = self.log.clone();
        tokio::time::timeout(CATCH_UP_WAIT, log.wait_for(|l| done(l) || l.end.is_some()))
            .await
            .unwrap_or_else(|_| panic!("{what} within {CATCH_UP_WAIT:?}"))
            .is_ok_and(|l| done(&l))
    }
}

fn message_id(frame: &Value) -> i64 {
    frame["message_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("message_id in {frame}"))
}

fn is_durable(frame: &Value) -> bool {
    frame["type"] != "connection_established" && frame.get("seq").is_some()
}

/// The durable events (those with a `seq`) among `frames`, in order.
fn durable(frames: &[Value]) -> Vec<Value> {
    frames.iter().filter(|f| is_durable(f)).cloned().collect()
}

/// The seq of the last durable event among `frames`.
fn last_durable_seq(frames: &[Value]) -> Option<i64> {
    frames.iter().rev().find(|f| is_durable(f)).map(seq)
}

/// Asserts `events` carry seqs `start + 1, start + 2, …`: no gap, nothing twice.
fn assert_consecutive(who: &str, start: i64, events: &[Value]) {
    for (expected, e) in (start + 1..).zip(events) {
        assert_eq!(
            seq(e),
            expected,
            "{who}: seq {expected} expected after {}, got {e}",
            expected - 1
        );
    }
}

/// The `message_id`s of the `chat_message` frames among `frames`.
fn message_ids(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == "chat_message")
        .map(message_id)
        .collect()
}

fn assert_no_duplicates(who: &str, ids: &[i64]) {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(id), "{who}: message {id} delivered twice");
    }
}

// ------------------------------------------------------------ clients

/// One user's stream as a reconnecting client holds it: the connections
/// that ended and the open one, each recorded.
struct StreamClient {
    name: String,
    id: i64,
    token: String,
    /// The seq of the first `connection_established`.
    start: i64,
    past: Vec<Recorded>,
    now: Recorded,
}

impl StreamClient {
    /// Opens the stream on the node at `base_ws` (`ws://host:port`).
    async fn open(base_ws: &str, name: &str, id: i64, token: &str) -> StreamClient {
        let now = Recorded::open(format!("{base_ws}/ws/chat/?token={token}")).await;
        now.until("connection_established", |l| !l.frames.is_empty())
            .await;
        let first = now.frames()[0].clone();
        assert_eq!(first["type"], "connection_established", "{first}");
        StreamClient {
            name: name.to_owned(),
            id,
            token: token.to_owned(),
            start: seq(&first),
            past: Vec::new(),
            now,
        }
    }

    /// Every frame of every connection, in order.
    fn frames(&self) -> Vec<Value> {
        self.past
            .iter()
            .chain([&self.now])
            .flat_map(Recorded::frames)
            .collect()
    }

    /// The last seq this client holds.
    fn last_seq(&self) -> i64 {
        last_durable_seq(&self.frames()).unwrap_or(self.start)
    }

    /// Reconnects to the node at `base_ws` with `since=<last seq held>`, as
    /// a client does after its socket ended; the server must recover.
    async fn reconnect(&mut self, base_ws: &str) {
        let since = self.last_seq();
        let url = format!("{base_ws}/ws/chat/?token={}&since={since}", self.token);
        let now = Recorded::open(url).await;
        now.until("connection_established", |l| !l.frames.is_empty())
            .await;
        let first = now.frames()[0].clone();
        assert_eq!(
            (first["type"].as_str(), first["recovered"].as_bool()),
            (Some("connection_established"), Some(true)),
            "{}: resume with since={since}: {first}",
            self.name
        );
        self.past.push(std::mem::replace(&mut self.now, now));
    }

    /// Sends `client_id` (also the content) into `conversation` over the
    /// open stream and waits for its answer: the `chat_message` that came
    /// back (stored now, or the original of a retry), `None` when the
    /// socket ended first.
    async fn send(&mut self, conversation: i64, client_id: &str) -> Option<Value> {
        let from = self.now.log.borrow().frames.len();
        let frame = json!({"type": "chat_message", "conversation_id": conversation,
                           "content": client_id, "client_id": client_id});
        if self
            .now
            .sink
            .send(Message::text(frame.to_string()))
            .await
            .is_err()
        {
            return None;
        }
        let answer = |l: &Log| {
            l.frames[from..]
                .iter()
                .find(|f| f["client_id"] == client_id)
                .cloned()
        };
        let mut log = self.now.log.clone();
        let _ = tokio::time::timeout(
            ANSWER_WAIT,
            log.wait_for(|l| answer(l).is_some() || l.end.is_some()),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: no answer to {client_id} on an open socket", self.name));
        let answer = answer(&self.now.log.borrow())?;
        assert_eq!(answer["type"], "chat_message", "{}: {answer}", self.name);
        Some(answer)
    }

    /// The seq the open connection's `connection_established` announced.
    fn connected_at(&self) -> i64 {
        seq(&self.now.frames()[0])
    }

    /// Waits until the open connection holds `target`.
    async fn reach(&self, target: i64) {
        let held_before = self
            .past
            .iter()
            .rev()
            .find_map(|p| last_durable_seq(&p.frames()))
            .unwrap_or(self.start);
        let reached = self
            .now
            .until(&format!("{} reaching seq {target}", self.name), |l| {
                last_durable_seq(&l.frames).unwrap_or(held_before) >= target
            })
            .await;
        assert!(
            reached,
            "{}: the stream ended ({:?}) before seq {target}",
            self.name,
            self.now.end()
        );
    }

    /// The log as a fresh stream replays it from this client's start, on
    /// `server`: every durable event since, by seq.
    async fn log(&self, server: &TestServer) -> Vec<Value> {
        let (mut ws, first) = stream(server, &self.token, &format!("since={}", self.start)).await;
        assert_eq!(first["recovered"], true, "{}: {first}", self.name);
        let mut events = Vec::new();
        for _ in self.start..seq(&first) {
            events.push(next(&mut ws).await);
        }
        events
    }

    /// Once the stream has caught up with the log: it saw exactly the log's
    /// events since its start, in order, each once; returns them.
    async fn check_against_log(&self, server: &TestServer) -> Vec<Value> {
        let log = self.log(server).await;
        assert_consecutive(&format!("{} (log)", self.name), self.start, &log);
        self.reach(log.last().map_or(self.start, seq)).await;
        let seen = durable(&self.frames());
        assert_consecutive(&self.name, self.start, &seen);
        assert_eq!(
            seen.len(),
            log.len(),
            "{}: saw {} events, the log holds {}",
            self.name,
            seen.len(),
            log.len()
        );
        for (s, l) in seen.iter().zip(&log) {
            assert_eq!(
                s, l,
                "{}: what the stream saw is what the log holds",
                self.name
            );
        }
        assert_no_duplicates(&self.name, &message_ids(&seen));
        log
    }
}

/// A conversation socket as a reconnecting client holds it (`after=`).
struct ConversationClient {
    name: String,
    conversation: i64,
    token: String,
    past: Vec<Recorded>,
    now: Recorded,
}

impl ConversationClient {
    async fn open(base_ws: &str, name: &str, conversation: i64, token: &str) -> Self {
        let url = format!("{base_ws}/ws/chat/{conversation}/?token={token}");
        let now = Self::connect(url).await;
        ConversationClient {
            name: name.to_owned(),
            conversation,
            token: token.to_owned(),
            past: Vec::new(),
            now,
        }
    }

    async fn connect(url: String) -> Recorded {
        let now = Recorded::open(url).await;
        now.until("connection_established", |l| !l.frames.is_empty())
            .await;
        assert_eq!(now.frames()[0]["type"], "connection_established");
        now
    }

    fn message_ids(&self) -> Vec<i64> {
        let frames: Vec<Value> = self
            .past
            .iter()
            .chain([&self.now])
            .flat_map(Recorded::frames)
            .collect();
        message_ids(&frames)
    }

    /// Reconnects with `after=<last message id held>`.
    async fn reconnect(&mut self, base_ws: &str) {
        let after = self.message_ids().last().copied().unwrap_or(0);
        let url = format!(
            "{base_ws}/ws/chat/{}/?token={}&after={after}",
            self.conversation, self.token
        );
        let now = Self::connect(url).await;
        self.past.push(std::mem::replace(&mut self.now, now));
    }

    /// Once caught up: every message of `stored` exactly once and in its
    /// order, nothing else.
    async fn check(&self, stored: &[i64]) {
        let before: HashSet<i64> = self
            .past
            .iter()
            .flat_map(|p| message_ids(&p.frames()))
            .collect();
        let reached = self
            .now
            .until(
                &format!("{} holding all {} messages", self.name, stored.len()),
                |l| {
                    let got: HashSet<i64> = message_ids(&l.frames).into_iter().collect();
                    stored
                        .iter()
                        .all(|id| got.contains(id) || before.contains(id))
                },
            )
            .await;
        assert!(
            reached,
            "{}: ended ({:?}) before catching up",
            self.name,
            self.now.end()
        );
        let ids = self.message_ids();
        assert_no_duplicates(&self.name, &ids);
        assert_eq!(
            ids, stored,
            "{}: exactly the stored messages, in order",
            self.name
        );
    }
}

/// The `chat_message` events of `conversation` in a user's log.
fn stored_in(log: &[Value], conversation: i64) -> Vec<i64> {
    let of_conversation: Vec<Value> = log
        .iter()
        .filter(|e| e["conversation_id"] == conversation)
        .cloned()
        .collect();
    message_ids(&of_conversation)
}

/// Asserts every acknowledged message of `sender` is in `log` exactly once
/// (by client_id: a retry stored nothing twice), with the acknowledged id.
fn assert_acked_once(who: &str, sender: i64, acked: &[(String, i64)], log: &[Value]) {
    let mut by_client_id: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in log
        .iter()
        .filter(|e| e["type"] == "chat_message" && e["sender_id"] == sender)
    {
        by_client_id
            .entry(e["client_id"].as_str().expect("client_id"))
            .or_default()
            .push(e["message_id"].as_i64().expect("message_id"));
    }
    for (client_id, id) in acked {
        assert_eq!(
            by_client_id.get(client_id.as_str()).map(Vec::as_slice),
            Some(&[*id][..]),
            "{who}: acknowledged {client_id} (message {id}) is in the log exactly once"
        );
    }
}

/// Sends `client_id` over HTTP: the status and message id on 201 (stored)
/// or 200 (a retry's original), `None` when the request failed on the way
/// or was refused (noted).
async fn http_send(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    conversation: i64,
    client_id: &str,
) -> Option<(u16, i64)> {
    let body =
        json!({"conversation_id": conversation, "content": client_id, "client_id": client_id});
    let res = http
        .post(format!("{server}/api/chat/messages/"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    let msg: Value = res.json().await.ok()?;
    if status != 201 && status != 200 {
        eprintln!("{client_id}: {status} {msg}");
        return None;
    }
    Some((status, msg["id"].as_i64().expect("id")))
}

/// What a sender task hands back.
struct Sent {
    client: StreamClient,
    /// (client_id, message id) of every message acknowledged.
    acked: Vec<(String, i64)>,
    /// Sends tried again after no answer (same client_id).
    retries: usize,
    /// Retries answered with the message the first try had stored.
    already_stored: usize,
}

impl Sent {
    fn new(client: StreamClient) -> Sent {
        Sent {
            client,
            acked: Vec::new(),
            retries: 0,
            already_stored: 0,
        }
    }
}

/// The checks of one pair once sending stopped, the log read on `server`:
/// each stream saw exactly its log; every acknowledged message is in both
/// logs once; the conversation socket saw exactly the stored messages.
async fn check_pair(alice: &Sent, bob: &Sent, watcher: &ConversationClient, server: &TestServer) {
    let a_log = alice.client.check_against_log(server).await;
    let b_log = bob.client.check_against_log(server).await;
    for log in [&a_log, &b_log] {
        for sent in [alice, bob] {
            assert_acked_once(&sent.client.name, sent.client.id, &sent.acked, log);
        }
    }
    let stored = stored_in(&a_log, watcher.conversation);
    assert_eq!(stored, stored_in(&b_log, watcher.conversation));
    watcher.check(&stored).await;
}

// ------------------------------------------------------------------ tests

/// Each user's two streams: one on node 2, where nothing is caused, and
/// one on node 1, where everything is; and the seq they stand at.
struct TwoStreams {
    far: Ws,
    near: Ws,
    seq: i64,
}

impl TwoStreams {
    async fn open(far: &TestServer, near: &TestServer, token: &str) -> TwoStreams {
        let (far, f) = stream(far, token, "").await;
        let (near, n) = stream(near, token, "").await;
        assert_eq!(seq(&f), seq(&n), "{f} {n}");
        TwoStreams {
            far,
            near,
            seq: seq(&f),
        }
    }

    /// The next durable event on both: of `kind`, one seq further, the same
    /// frame on both nodes.
    async fn next(&mut self, kind: &str) -> Value {
        let far = next_durable(&mut self.far).await;
        let near = next_durable(&mut self.near).await;
        assert_eq!(far["type"], kind, "{far}");
        assert_eq!(seq(&far), self.seq + 1, "one more than the last: {far}");
        assert_eq!(far, near, "the same event with the same seq on both nodes");
        self.seq += 1;
        far
    }

    async fn silent(&mut self) {
        silent(&mut self.far, 300).await;
        silent(&mut self.near, 100).await;
    }
}

/// The `chat_message` of `sender` with `content` on both users' streams
/// (the same message); alice's copy.
async fn both_get_message(
    alice: &mut TwoStreams,
    bob: &mut TwoStreams,
    content: &str,
    sender: i64,
) -> Value {
    let on_a = alice.next("chat_message").await;
    let on_b = bob.next("chat_message").await;
    for e in [&on_a, &on_b] {
        assert_eq!(
            (e["content"].as_str(), e["sender_id"].as_i64()),
            (Some(content), Some(sender)),
            "{e}"
        );
        assert_eq!(e["message_id"], on_a["message_id"]);
    }
    on_a
}

async fn next_durable(ws: &mut Ws) -> Value {
    loop {
        let v = next(ws).await;
        if v.get("seq").is_some() {
            return v;
        }
    }
}

#[tokio::test]
async fn streams_on_another_node_get_every_event_with_the_same_seq() {
    let Some((node1, node2)) = two_nodes(None).await else {
        return;
    };
    let api1 = Api::new(&node1);
    let (ua, ta) = api1.user("alice").await;
    let (ub, tb) = api1.user("bob").await;
    let (a, b) = (assert_id(&ua["id"]), assert_id(&ub["id"]));
    let mut alice = TwoStreams::open(&node2, &node1, &ta).await;
    let mut bob = TwoStreams::open(&node2, &node1, &tb).await;
    assert_eq!((alice.seq, bob.seq), (0, 0));

    // Over HTTP on node 1: the request (bob's only), the acceptance.
    let requested = api1.request(&ta, b).await;
    assert_eq!(
        bob.next("connection_request").await["connection"],
        requested
    );
    let id = assert_id(&requested["id"]);
    let accepted = api1.accept(&tb, id).await;
    let conv = accepted["conversation_id"].as_i64().expect("conversation");
    for (s, other) in [(&mut alice, b), (&mut bob, a)] {
        assert_eq!(s.next("connection_updated").await["connection"], accepted);
        let created = s.next("conversation_created").await;
        assert_eq!(created["conversation"]["id"], conv);
        assert_eq!(created["conversation"]["other_user"]["id"], other);
    }

    // Messages from node 1: over alice's stream, bob's conversation socket, HTTP.
    send(
        &mut alice.near,
        json!({"type": "chat_message", "conversation_id": conv, "content": "stream", "client_id": "s1"}),
    )
    .await;
    let on_a = both_get_message(&mut alice, &mut bob, "stream", a).await;
    assert_eq!(on_a["client_id"], "s1");
    let mut conv_b = join(&node1.ws_url(""), conv, &tb).await;
    send(
        &mut conv_b,
        json!({"type": "chat_message", "content": "conversation socket"}),
    )
    .await;
    let first = both_get_message(&mut alice, &mut bob, "conversation socket", b).await;
    let over_http = api1.send_message(&tb, conv, "http").await;
    let second = both_get_message(&mut alice, &mut bob, "http", b).await;
    assert_eq!(second["message_id"], over_http["id"]);
    let from_bob = [first["message_id"].clone(), second["message_id"].clone()];

    // Reads from node 1: one over alice's stream, the rest over HTTP.
    send(
        &mut alice.near,
        json!({"type": "message_read", "conversation_id": conv, "message_ids": [from_bob[0]]}),
    )
    .await;
    for s in [&mut alice, &mut bob] {
        let read = s.next("messages_read").await;
        assert_eq!(
            (read["user_id"].as_i64(), &read["message_ids"]),
            (Some(a), &json!([from_bob[0]]))
        );
    }
    api1.mark_read(&ta, conv).await;
    // Each stream carries its own user's counters: bob has not read alice's.
    for (s, unread) in [(&mut alice, 0), (&mut bob, 1)] {
        let read = s.next("messages_read").await;
        assert_eq!(read["message_ids"], json!([from_bob[1]]));
        assert_eq!(read["total_unread"], unread, "{read}");
    }

    // The removal over HTTP on node 1.
    let (status, _) = api1
        .call(
            "DELETE",
            &format!("/api/connections/{id}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 204);
    for s in [&mut alice, &mut bob] {
        assert_eq!(
            s.next("connection_updated").await["connection"]["status"],
            "removed"
        );
        assert_eq!(
            s.next("conversation_updated").await["conversation"]["can_send"],
            false
        );
    }
    alice.silent().await;
    bob.silent().await;
    assert_eq!((alice.seq, bob.seq), (9, 10));
}

/// Ten pairs send to each other across two nodes while Redis is killed for
/// five seconds and restarted. In two of them only alice sends, and she
/// stops in the middle of the outage: what bob missed then reaches his
/// stream (and pair 1's conversation socket, also on node 2) only through
/// the resync that follows Redis's return, as nothing comes after it.
#[tokio::test]
async fn redis_killed_under_load_loses_and_repeats_nothing() {
    let Some((mut redis, node1, node2)) = two_nodes_on_private_redis().await else {
        return;
    };
    let api = Api::new(&node1);
    let (pairs, quiet) = (10, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let hush = Arc::new(AtomicBool::new(false));
    let mut senders: Vec<JoinHandle<Sent>> = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..pairs {
        let (ta, tb, conv, a, b) = api.pair(&format!("alice{i}"), &format!("bob{i}")).await;
        let is_quiet = i < quiet;
        // a's stream on node 1, b's on node 2; each sends to the other node.
        let alice = StreamClient::open(&node1.ws_url(""), &format!("alice{i}"), a, &ta).await;
        let bob = StreamClient::open(&node2.ws_url(""), &format!("bob{i}"), b, &tb).await;
        let (watch_node, watch_token) = if i % 2 == 0 {
            (node1.ws_url(""), &ta)
        } else {
            (node2.ws_url(""), &tb)
        };
        watchers.push(
            ConversationClient::open(&watch_node, &format!("conversation {i}"), conv, watch_token)
                .await,
        );
        let (stop_a, hush_a) = (stop.clone(), hush.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Sent::new(alice);
            for n in 0.. {
                if stop_a.load(Ordering::Relaxed) || (is_quiet && hush_a.load(Ordering::Relaxed)) {
                    break;
                }
                let client_id = format!("a{i}-{n}");
                let answer = sent.client.send(conv, &client_id).await;
                let answer = answer.unwrap_or_else(|| panic!("a{i}: the stream ended"));
                sent.acked.push((client_id, message_id(&answer)));
                tokio::time::sleep(PACE).await;
            }
            sent
        }));
        let (stop_b, base) = (stop.clone(), node2.url(""));
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = Sent::new(bob);
            for n in 0.. {
                if stop_b.load(Ordering::Relaxed) || is_quiet {
                    break;
                }
                let client_id = format!("b{i}-{n}");
                let answer = http_send(&http, &base, &sent.client.token, conv, &client_id).await;
                let (status, id) = answer.expect("HTTP send on a live node");
                assert_eq!(status, 201, "{client_id} sent once");
                sent.acked.push((client_id, id));
                tokio::time::sleep(PACE).await;
            }
            sent
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    hush.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    redis.restart().await;
    // Keep sending until both nodes reach Redis again, and a bit after.
    for node in [&node1, &node2] {
        let api = Api::new(node);
        let mut ready = false;
        for _ in 0..100 {
            if api.call("GET", "/readyz", None, None).await.0 == 200 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "the node is ready again once Redis is back");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.expect("sender"));
    }
    let mut total = 0;
    for (pair, watcher) in clients.chunks(2).zip(&watchers) {
        let [a_sent, b_sent] = pair else {
            unreachable!("senders come in pairs")
        };
        total += a_sent.acked.len() + b_sent.acked.len();
        check_pair(a_sent, b_sent, watcher, &node2).await;
        for s in [&a_sent.client, &b_sent.client] {
            assert_eq!(s.past.len(), 0, "{}: the stream stayed open", s.name);
        }
    }
    let mut resyncs = Vec::new();
    for node in [&node1, &node2] {
        let (_, metrics) = Api::new(node).call("GET", "/metrics", None, None).await;
        let n = metrics
            .as_str()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("chat_websocket_resyncs_total "))
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("a resync counter in /metrics: {metrics}"));
        assert!(n > 0, "Redis's return resynced the node's sockets");
        resyncs.push(n);
    }
    eprintln!(
        "redis killed under load: {total} messages acknowledged; resyncs per node {resyncs:?}"
    );
}

/// How node A goes away in [`clients_move_to_the_other_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// SIGKILL: the kernel cuts its connections; no close frames, no answers.
    Kill,
    /// SIGTERM: it drains, closing its sockets with 1012.
    Drain,
}

/// Not a test: the body of the node processes of
/// [`clients_move_to_the_other_node`] (this binary run again, see
/// [`NodeProcess`]); anywhere else it returns at once.
#[test]
fn node_process() {
    chat_tests::node_process_main();
}

/// Clients of six pairs all on node A, a process of its own, send to each
/// other (over their streams and over HTTP); A goes away; every client
/// moves to node B with `since` / `after` and retries what was not
/// answered with the same client_id. Nothing acknowledged is missing,
/// nothing is stored or delivered twice.
async fn clients_move_to_the_other_node(departure: Departure) {
    if !fault_backends() {
        return;
    }
    let db = Arc::new(TestDb::new().await);
    let options = node_options(chat_tests::redis_url().expect("checked"));
    let mut node_a = NodeProcess::start(&db, &options, "stream_faults::node_process").await;
    let node_b = Arc::new(TestServer::start_on(db, options).await);
    let (a_ws, b_ws) = (node_a.ws_url(""), node_b.ws_url(""));
    let api = Api::new(&node_b);
    let pairs = 6;
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders: Vec<JoinHandle<Sent>> = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..pairs {
        let (ta, tb, conv, a, b) = api.pair(&format!("alice{i}"), &format!("bob{i}")).await;
        let alice = StreamClient::open(&a_ws, &format!("alice{i}"), a, &ta).await;
        let bob = StreamClient::open(&a_ws, &format!("bob{i}"), b, &tb).await;
        watchers
            .push(ConversationClient::open(&a_ws, &format!("conversation {i}"), conv, &tb).await);
        // alice sends over her stream; when it ends she resumes on B and
        // retries the unanswered message.
        let (stop_a, b_ws_a) = (stop.clone(), b_ws.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Sent::new(alice);
            for n in 0.. {
                if stop_a.load(Ordering::Relaxed) {
                    break;
                }
                let client_id = format!("a{i}-{n}");
                let mut retried = false;
                let answer = loop {
                    if let Some(answer) = sent.client.send(conv, &client_id).await {
                        break answer;
                    }
                    assert!(!retried, "a{i}: moved once only");
                    retried = true;
                    sent.client.reconnect(&b_ws_a).await;
                };
                if retried {
                    sent.retries += 1;
                    // The first try was stored if the retry was answered
                    // by the replay or by a retry's echo (no seq).
                    let stored_before = answer
                        .get("seq")
                        .is_none_or(|_| seq(&answer) <= sent.client.connected_at());
                    sent.already_stored += usize::from(stored_before);
                }
                sent.acked.push((client_id, message_id(&answer)));
                tokio::time::sleep(PACE).await;
            }
            sent
        }));
        // bob sends over HTTP to A, then to B once A fails him; his stream
        // resumes on B when it ends.
        let (stop_b, b_ws_b, a_url, b_url) =
            (stop.clone(), b_ws.clone(), node_a.url(""), node_b.url(""));
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut base = a_url;
            let mut sent = Sent::new(bob);
            for n in 0.. {
                if stop_b.load(Ordering::Relaxed) {
                    break;
                }
                let client_id = format!("b{i}-{n}");
                let mut tries = 0;
                let (status, id) = loop {
                    if sent.client.now.end().is_some() && sent.client.past.is_empty() {
                        sent.client.reconnect(&b_ws_b).await;
                    }
                    let token = sent.client.token.clone();
                    if let Some(answer) = http_send(&http, &base, &token, conv, &client_id).await {
                        break answer;
                    }
                    tries += 1;
                    assert!(tries < 20, "b{i}: {client_id} never answered");
                    base.clone_from(&b_url);
                };
                if tries > 0 {
                    sent.retries += 1;
                    sent.already_stored += usize::from(status == 200);
                } else {
                    assert_eq!(status, 201, "{client_id} sent once");
                }
                sent.acked.push((client_id, id));
                tokio::time::sleep(PACE).await;
            }
            sent
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    match departure {
        Departure::Kill => node_a.kill().await,
        Departure::Drain => node_a.terminate().await,
    }
    let expected_end = match departure {
        Departure::Kill => End::Cut,
        Departure::Drain => End::Close(1012),
    };
    for w in &mut watchers {
        assert_eq!(w.now.ended(&w.name).await, expected_end, "{}", w.name);
        w.reconnect(&b_ws).await;
    }
    // Let the clients go on for a while on B.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.expect("sender"));
    }
    let (mut total, mut retries, mut already_stored) = (0, 0, 0);
    for (pair, watcher) in clients.chunks_mut(2).zip(&watchers) {
        let [a_sent, b_sent] = pair else {
            unreachable!("senders come in pairs")
        };
        for s in [&*a_sent, &*b_sent] {
            total += s.acked.len();
            retries += s.retries;
            already_stored += s.already_stored;
        }
        let (alice, bob) = (&mut a_sent.client, &mut b_sent.client);
        // bob's stream may have been idle since A went: it moves now.
        if bob.past.is_empty() {
            bob.now.ended(&bob.name).await;
            bob.reconnect(&b_ws).await;
        }
        for s in [&*alice, &*bob] {
            assert_eq!(s.past.len(), 1, "{}: moved once", s.name);
            assert_eq!(
                s.past[0].end(),
                Some(expected_end),
                "{}: how A ended it",
                s.name
            );
        }
        check_pair(a_sent, b_sent, watcher, &node_b).await;
    }
    eprintln!(
        "{departure:?}: {total} messages acknowledged; {retries} retried after node A went, \
         {already_stored} of them stored by the first try"
    );
}

#[tokio::test]
async fn node_killed_abruptly_clients_resume_on_the_other_node() {
    clients_move_to_the_other_node(Departure::Kill).await;
}

#[tokio::test]
async fn drained_node_sends_clients_to_the_other_node_missing_nothing() {
    clients_move_to_the_other_node(Departure::Drain).await;
}

/// How the client of [`http_sender_hanging_up_still_stores_and_delivers`] hangs up.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// Closes the socket right after writing the request.
    Close,
    /// Shuts its sending side down first, then closes.
    HalfClose,
    /// Resets the connection (RST) while the server is inside the send,
    /// waiting for a row lock the test holds: the request's own future is
    /// cancelled then, so only an action running in a task of its own still
    /// publishes what it stores. PostgreSQL only.
    ResetWhileWaiting,
}

/// Writes a whole `POST /api/chat/messages/` on a raw TCP socket; the
/// answer is never read.
async fn write_send(
    server: &TestServer,
    token: &str,
    conversation: i64,
    content: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let body = json!({"conversation_id": conversation, "content": content}).to_string();
    let request = format!(
        "POST /api/chat/messages/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    tcp
}

/// A conversation's row held `FOR UPDATE` by a connection of the test's
/// own, so the server's send waits inside its transaction; released on
/// [`RowLock::release`].
struct RowLock {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RowLock {
    async fn hold(url: &str, conversation: i64) -> RowLock {
        use diesel::{Connection, RunQueryDsl};
        let url = url.to_owned();
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut conn = diesel::PgConnection::establish(&url).expect("connect to PostgreSQL");
            conn.transaction::<_, diesel::result::Error, _>(|c| {
                diesel::sql_query(format!(
                    "SELECT id FROM conversations WHERE id = {conversation} FOR UPDATE"
                ))
                .execute(c)?;
                let _ = locked_tx.send(());
                let _ = release_rx.recv();
                Ok(())
            })
            .expect("lock transaction");
        });
        locked_rx.await.expect("row locked");
        RowLock { release, thread }
    }

    /// Waits (bounded) until a session of the server waits for the lock.
    async fn wait_for_waiter(url: &str) {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel::{Connection, RunQueryDsl};
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = diesel::PgConnection::establish(&url).expect("connect to PostgreSQL");
            for _ in 0..200 {
                let waiting: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE NOT l.granted AND a.datname = current_database()",
                )
                .get_result(&mut conn)
                .expect("pg_locks");
                if waiting.n > 0 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            panic!("the send never waited for the row lock");
        })
        .await
        .expect("wait task");
    }

    async fn release(self) {
        let _ = self.release.send(());
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .expect("join task")
            .expect("lock thread");
    }
}

#[tokio::test]
async fn http_sender_hanging_up_still_stores_and_delivers() {
    let (server, api, ta, tb, conv, _a, _b) = pair_server().await;
    let (mut wb, _) = stream(&server, &tb, "").await;
    let mut conv_b = join(&server.ws_url(""), conv, &tb).await;
    let mut ways = vec![HangUp::Close, HangUp::HalfClose];
    if chat_tests::pg_base_url().is_some() {
        ways.push(HangUp::ResetWhileWaiting);
    } else {
        eprintln!("note: resets in the middle of a send are tried on PostgreSQL only");
    }
    let rounds = 21;
    for (i, way) in (0..rounds).zip(ways.iter().cycle()) {
        let content = format!("hung up {i} ({way:?})");
        match way {
            HangUp::Close => drop(write_send(&server, &ta, conv, &content).await),
            HangUp::HalfClose => {
                use tokio::io::AsyncWriteExt;
                let mut tcp = write_send(&server, &ta, conv, &content).await;
                tcp.shutdown().await.expect("shutdown");
            }
            HangUp::ResetWhileWaiting => {
                let lock = RowLock::hold(&server.db.url, conv).await;
                let tcp = write_send(&server, &ta, conv, &content).await;
                RowLock::wait_for_waiter(&server.db.url).await;
                tcp.set_zero_linger().expect("SO_LINGER 0");
                drop(tcp);
                // Give the server the reset before the send may go on (the
                // reset cancels the request; it is not what is asserted).
                tokio::time::sleep(Duration::from_millis(100)).await;
                lock.release().await;
            }
        }
        let on_stream = next_of(&mut wb, "chat_message").await;
        assert_eq!(on_stream["content"], content.as_str());
        let on_conv = next_of(&mut conv_b, "chat_message").await;
        assert_eq!(on_conv["content"], content.as_str());
        assert_eq!(on_conv["message_id"], on_stream["message_id"]);
    }
    silent(&mut wb, 200).await;
    assert_eq!(
        api.history_len(&tb, conv).await,
        rounds,
        "every message is stored, once"
    );
}
