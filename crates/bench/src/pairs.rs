//! The `throughput` and `latency` scenarios: pairs of users, several
//! sockets each on the pair's conversation; one socket of user `a` sends,
//! every socket of user `b` is checked for exactly-once, in-order delivery
//! and timed (send time → receipt, one monotonic clock in this process).
//! With `user_streams` each user also holds one user stream (`/ws/chat/`),
//! checked the same way and reported apart, so the figures of the
//! conversation sockets stay comparable with runs without streams.
//! With `nodes` (other servers of the same deployment) the users of pair
//! `p` are put on different nodes: `a` (the sender) on node `p % n`, `b` on
//! node `(p + 1) % n`, so every receiver socket is fed across nodes
//! (through Redis, or the Redis Cluster's sharded channels).

use crate::api::{Api, Pair, bounded};
use crate::stats::{Percentiles, round3};
use crate::sysinfo::CpuSnapshot;
use crate::ws::{self, Event, Stamp, Ws};
use crate::{Result, now_ns, ns_since_epoch};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// How the sender of each pair paces itself.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Keep `window` messages in flight: a new one when an echo comes back.
    Closed { window: usize },
    /// Open loop: `rate` messages/s in total, evenly spread over the pairs;
    /// latency counts from the scheduled send time.
    Open { rate: f64 },
}

/// How a receiving socket acknowledges delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    Off,
    /// An `ack` frame for every message, as soon as it arrives: the flood
    /// the server must coalesce.
    EachMessage,
    /// As the web client does: the highest id received, at most once per
    /// period (the first message after a quiet spell starts the period).
    Batched(Duration),
}

/// Settings shared by both scenarios.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub pairs: usize,
    pub sockets_per_user: usize,
    /// Each user also holds one user stream `/ws/chat/` open.
    pub user_streams: bool,
    /// How each socket of the receiving user acks what it gets (the `ack`
    /// client frame, API.md "Delivery status").
    pub acks: Acks,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
    /// Other nodes' URLs (`http://127.0.0.1:PORT`); empty: one node.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Timeline {
    start: Instant,
    measure_end: Instant,
    drain_deadline: Instant,
    measure_start_ns: u64,
    measure_end_ns: u64,
}

impl Timeline {
    fn in_window_ns(&self, t: u64) -> bool {
        t >= self.measure_start_ns && t < self.measure_end_ns
    }
}

/// What the sender has sent so far, and whether it has stopped.
#[derive(Debug, Default)]
struct PairState {
    sent: AtomicU64,
    done: AtomicBool,
}

impl PairState {
    fn finished_with(&self, distinct: u64) -> bool {
        self.done.load(Ordering::Acquire) && distinct >= self.sent.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct SenderOutcome {
    sent: u64,
    sent_in_window: u64,
    echoes: u64,
    echoes_in_window: u64,
    send_lag_ns: Vec<u64>,
    error_events: u64,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct ReceiverOutcome {
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
    missing: u64,
    in_window: u64,
    latency_ns: Vec<u64>,
    latency_from_send_ns: Vec<u64>,
    acks_sent: u64,
    /// `messages_delivered` events seen (acks taking effect).
    delivered_events: u64,
    error_events: u64,
    error: Option<String>,
}

/// Tally of exactly-once, in-order checks over a set of sockets.
#[derive(Debug, Default)]
struct Integrity {
    sockets: usize,
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
    errors: Vec<String>,
}

impl Integrity {
    fn add(&mut self, r: &ReceiverOutcome) {
        self.sockets += 1;
        self.missing += r.missing;
        self.duplicates += r.duplicates;
        self.out_of_order += r.out_of_order;
        if let Some(e) = &r.error {
            self.errors.push(e.clone());
        }
    }
    fn ok(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.errors.is_empty()
    }
    fn to_json(&self) -> Value {
        json!({
            "sockets": self.sockets,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "socket_errors": self.errors.len(),
            "first_errors": self.errors.iter().take(3).collect::<Vec<_>>(),
            "ok": self.ok(),
        })
    }
}

/// The parsed chat_message of interest: from `sender`, with our stamp.
fn stamp_from(text: &str, sender: i64) -> Option<Stamp> {
    stamped(text, sender).map(|(stamp, _)| stamp)
}

/// [`stamp_from`] with the message id.
fn stamped(text: &str, sender: i64) -> Option<(Stamp, Option<i64>)> {
    let event: Event<'_> = serde_json::from_str(text).ok()?;
    if event.kind != "chat_message" || event.sender_id != Some(sender) {
        return None;
    }
    Some((Stamp::parse(event.content.as_deref()?)?, event.message_id))
}

fn is_error_event(text: &str) -> bool {
    serde_json::from_str::<Event<'_>>(text).is_ok_and(|e| e.kind == "error")
}

async fn send_stamp<S>(sink: &mut S, stamp: Stamp) -> Result<()>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    sink.send(Message::text(stamp.frame())).await?;
    Ok(())
}

async fn close_quietly(mut ws: Ws) {
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Closed loop: `window` in flight on this socket, one more per own echo.
async fn closed_sender(
    mut ws: Ws,
    me: i64,
    window: usize,
    state: Arc<PairState>,
    tl: Timeline,
) -> SenderOutcome {
    sleep_until(tl.start).await;
    let mut out = SenderOutcome::default();
    let mut next = 0u64;
    let result: Result<()> = async {
        for _ in 0..window {
            let t = now_ns();
            send_stamp(
                &mut ws,
                Stamp {
                    seq: next,
                    scheduled_ns: t,
                    sent_ns: t,
                },
            )
            .await?;
            next += 1;
            state.sent.store(next, Ordering::Release);
        }
        loop {
            if Instant::now() >= tl.measure_end {
                state.done.store(true, Ordering::Release);
            }
            if state.finished_with(out.echoes) {
                return Ok(());
            }
            let frame = match timeout_at(tl.drain_deadline, ws.next()).await {
                Err(_) => return Err("drain deadline passed with echoes outstanding".into()),
                Ok(None) => return Err("socket closed by the server".into()),
                Ok(Some(frame)) => frame?,
            };
            let Message::Text(text) = frame else { continue };
            let Some(stamp) = stamp_from(text.as_str(), me) else {
                out.error_events += u64::from(is_error_event(text.as_str()));
                continue;
            };
            out.echoes += 1;
            let now = now_ns();
            if tl.in_window_ns(now) {
                out.echoes_in_window += 1;
            }
            if tl.in_window_ns(stamp.sent_ns) {
                out.sent_in_window += 1;
            }
            if Instant::now() < tl.measure_end {
                let t = now_ns();
                send_stamp(
                    &mut ws,
                    Stamp {
                        seq: next,
                        scheduled_ns: t,
                        sent_ns: t,
                    },
                )
                .await?;
                next += 1;
                state.sent.store(next, Ordering::Release);
            }
        }
    }
    .await;
    state.done.store(true, Ordering::Release);
    out.sent = next;
    out.error = result.err().map(|e| e.to_string());
    close_quietly(ws).await;
    out
}

/// Open loop: sends each message the schedule thread hands it (its
/// sequence number and scheduled time) at once, whatever comes back;
/// drains its own echoes meanwhile.
async fn open_sender(
    ws: Ws,
    me: i64,
    mut schedule: mpsc::UnboundedReceiver<(u64, u64)>,
    state: Arc<PairState>,
    tl: Timeline,
) -> SenderOutcome {
    let (mut sink, mut stream) = ws.split();
    let writer = async {
        let mut lag = Vec::new();
        let mut sent_in_window = 0u64;
        let mut sent = 0u64;
        let result: Result<()> = async {
            while let Some((seq, scheduled_ns)) = schedule.recv().await {
                let stamp = Stamp {
                    seq,
                    scheduled_ns,
                    sent_ns: now_ns(),
                };
                send_stamp(&mut sink, stamp).await?;
                lag.push(stamp.sent_ns.saturating_sub(stamp.scheduled_ns));
                if tl.in_window_ns(stamp.scheduled_ns) {
                    sent_in_window += 1;
                }
                sent = seq + 1;
                state.sent.store(sent, Ordering::Release);
            }
            Ok(())
        }
        .await;
        state.done.store(true, Ordering::Release);
        (sent, sent_in_window, lag, result)
    };
    let reader = async {
        let (mut echoes, mut in_window, mut errors) = (0u64, 0u64, 0u64);
        let result: Result<()> = async {
            loop {
                if state.finished_with(echoes) {
                    return Ok(());
                }
                let step = Instant::now() + Duration::from_millis(100);
                let frame = match timeout_at(step.min(tl.drain_deadline), stream.next()).await {
                    Err(_) if Instant::now() >= tl.drain_deadline => {
                        return Err("drain deadline passed with echoes outstanding".into());
                    }
                    Err(_) => continue,
                    Ok(None) => return Err("socket closed by the server".into()),
                    Ok(Some(frame)) => frame?,
                };
                let Message::Text(text) = frame else { continue };
                if stamp_from(text.as_str(), me).is_some() {
                    echoes += 1;
                    in_window += u64::from(tl.in_window_ns(now_ns()));
                } else {
                    errors += u64::from(is_error_event(text.as_str()));
                }
            }
        }
        .await;
        (echoes, in_window, errors, result)
    };
    let ((sent, sent_in_window, send_lag_ns, w), (echoes, echoes_in_window, error_events, r)) =
        tokio::join!(writer, reader);
    if let Ok(mut ws) = sink.reunite(stream) {
        let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    SenderOutcome {
        sent,
        sent_in_window,
        echoes,
        echoes_in_window,
        send_lag_ns,
        error_events,
        error: w.err().or(r.err()).map(|e| e.to_string()),
    }
}

/// A socket that receives: checks the sender's stream arrives exactly
/// once and in order, and times each message; acknowledges what it gets
/// as `acks` says (on the conversation socket).
async fn receiver(
    mut ws: Ws,
    sender: i64,
    acks: Acks,
    state: Arc<PairState>,
    tl: Timeline,
) -> ReceiverOutcome {
    let mut out = ReceiverOutcome::default();
    let mut seen: Vec<bool> = Vec::new();
    let mut highest: Option<u64> = None;
    // Batched acks: the highest id not yet acked, and when it is due.
    let mut unacked: Option<(i64, Instant)> = None;
    let result: Result<()> = async {
        loop {
            if state.finished_with(out.distinct) {
                return Ok(());
            }
            if let Some((id, due)) = unacked
                && Instant::now() >= due
            {
                send_ack(&mut ws, id).await?;
                out.acks_sent += 1;
                unacked = None;
            }
            let mut step = Instant::now() + Duration::from_millis(100);
            if let Some((_, due)) = unacked {
                step = step.min(due);
            }
            let frame = match timeout_at(step.min(tl.drain_deadline), ws.next()).await {
                Err(_) if Instant::now() >= tl.drain_deadline => return Ok(()),
                Err(_) => continue,
                Ok(None) => return Err("socket closed by the server".into()),
                Ok(Some(frame)) => frame?,
            };
            let Message::Text(text) = frame else { continue };
            let Some((stamp, message_id)) = stamped(text.as_str(), sender) else {
                if acks != Acks::Off {
                    let event = serde_json::from_str::<Event<'_>>(text.as_str());
                    let kind = event.as_ref().map(|e| e.kind.as_ref()).unwrap_or("");
                    out.delivered_events += u64::from(kind == "messages_delivered");
                    out.error_events += u64::from(kind == "error");
                }
                continue;
            };
            let now = now_ns();
            match (acks, message_id) {
                (Acks::EachMessage, Some(id)) => {
                    send_ack(&mut ws, id).await?;
                    out.acks_sent += 1;
                }
                (Acks::Batched(period), Some(id)) => {
                    let due = unacked.map_or_else(|| Instant::now() + period, |(_, due)| due);
                    let id = unacked.map_or(id, |(acked, _)| acked.max(id));
                    unacked = Some((id, due));
                }
                _ => {}
            }
            let idx = usize::try_from(stamp.seq).map_err(|_| "sequence number out of range")?;
            if idx >= seen.len() {
                if idx > 100_000_000 {
                    return Err(format!("implausible sequence number {idx}").into());
                }
                seen.resize(idx + 1024, false);
            }
            if seen[idx] {
                out.duplicates += 1;
                continue;
            }
            seen[idx] = true;
            out.distinct += 1;
            if highest.is_some_and(|h| stamp.seq < h) {
                out.out_of_order += 1;
            }
            highest = Some(highest.map_or(stamp.seq, |h| h.max(stamp.seq)));
            if tl.in_window_ns(now) {
                out.in_window += 1;
            }
            if tl.in_window_ns(stamp.scheduled_ns) {
                out.latency_ns.push(now.saturating_sub(stamp.scheduled_ns));
                out.latency_from_send_ns
                    .push(now.saturating_sub(stamp.sent_ns));
            }
        }
    }
    .await;
    out.missing = state
        .sent
        .load(Ordering::Acquire)
        .saturating_sub(out.distinct);
    out.error = result.err().map(|e| e.to_string());
    close_quietly(ws).await;
    out
}

async fn send_ack(ws: &mut Ws, message_id: i64) -> Result<()> {
    let frame = format!(r#"{{"type":"ack","message_id":{message_id}}}"#);
    ws.send(Message::text(frame)).await?;
    Ok(())
}

/// The open-loop schedule: message `g` is due at `start + g / rate`, for
/// pair `g % pairs` (its sequence number `g / pairs`). A plain thread with
/// `std::thread::sleep` keeps to it within tens of microseconds (the async
/// timer rounds up to the millisecond); a sender that falls behind gets
/// its messages queued with their scheduled times, so waiting counts.
fn spawn_schedule(
    rate: f64,
    pairs: Vec<mpsc::UnboundedSender<(u64, u64)>>,
    tl: Timeline,
) -> Result<std::thread::JoinHandle<()>> {
    let start = tl.start.into_std();
    let end = tl.measure_end.into_std();
    let handle = std::thread::Builder::new()
        .name("bench-schedule".into())
        .spawn(move || {
            let n = pairs.len() as u64;
            if n == 0 {
                return;
            }
            let step_ns = 1e9 / rate;
            for g in 0u64.. {
                let at = start + Duration::from_nanos((g as f64 * step_ns) as u64);
                if at >= end {
                    break;
                }
                let now = std::time::Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let scheduled_ns = ns_since_epoch(Instant::from_std(at));
                let idx = usize::try_from(g % n).unwrap_or(0);
                // A sender that failed has dropped its receiver: nothing to do.
                let _ = pairs[idx].send((g / n, scheduled_ns));
            }
        })?;
    Ok(handle)
}

enum Role {
    Sender,
    /// Another socket of the sending user.
    SenderOther,
    /// A socket of the other user.
    Receiver,
}

/// Runs the scenario on fresh pairs; the JSON result (without the scenario name).
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    let setup_started = std::time::Instant::now();
    let prefix = match cfg.mode {
        Mode::Closed { .. } => "tp",
        Mode::Open { .. } => "lt",
    };
    let pairs = api.create_pairs(prefix, cfg.pairs, cfg.concurrency).await?;
    let per_user = cfg.sockets_per_user.max(1);
    let mut node_apis = vec![api.clone()];
    for url in &cfg.nodes {
        node_apis.push(Api::new(url, api.tag.clone())?);
    }
    let n_nodes = node_apis.len();
    // The node a user of pair `p` connects to.
    let node_of = |p: usize, is_a: bool| -> &Api {
        let i = if is_a { p % n_nodes } else { (p + 1) % n_nodes };
        &node_apis[i]
    };
    // (pair, role, socket)
    let plan: Vec<(usize, bool, usize)> = (0..pairs.len())
        .flat_map(|p| (0..per_user).flat_map(move |s| [(p, true, s), (p, false, s)]))
        .collect();
    let sockets: Vec<Ws> = bounded(plan.len(), cfg.concurrency, |i| {
        let (p, is_a, _) = plan[i];
        let pair: &Pair = &pairs[p];
        let user = if is_a { &pair.a } else { &pair.b };
        let url = node_of(p, is_a).ws_url(pair.conversation, &user.token);
        async move { ws::connect(&url?, false, None).await }
    })
    .await?;
    // (pair, is_a) of each user stream.
    let stream_plan: Vec<(usize, bool)> = if cfg.user_streams {
        (0..pairs.len())
            .flat_map(|p| [(p, true), (p, false)])
            .collect()
    } else {
        Vec::new()
    };
    let streams: Vec<Ws> = bounded(stream_plan.len(), cfg.concurrency, |i| {
        let (p, is_a) = stream_plan[i];
        let pair: &Pair = &pairs[p];
        let user = if is_a { &pair.a } else { &pair.b };
        let url = node_of(p, is_a).stream_url(&user.token, None);
        async move { ws::connect(&url?, false, None).await }
    })
    .await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let start = Instant::now() + Duration::from_millis(300);
    let measure_start = start + cfg.warmup;
    let measure_end = measure_start + cfg.duration;
    let tl = Timeline {
        start,
        measure_end,
        drain_deadline: measure_end + cfg.drain,
        measure_start_ns: ns_since_epoch(measure_start),
        measure_end_ns: ns_since_epoch(measure_end),
    };
    let states: Vec<Arc<PairState>> = (0..pairs.len()).map(|_| Arc::default()).collect();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut schedule_txs = Vec::new();
    for ((p, is_a, s), socket) in plan.into_iter().zip(sockets) {
        let pair = &pairs[p];
        let state = states[p].clone();
        let role = match (is_a, s) {
            (true, 0) => Role::Sender,
            (true, _) => Role::SenderOther,
            (false, _) => Role::Receiver,
        };
        match role {
            Role::Sender => {
                let me = pair.a.id;
                let task = match cfg.mode {
                    Mode::Closed { window } => {
                        tokio::spawn(closed_sender(socket, me, window.max(1), state, tl))
                    }
                    Mode::Open { .. } => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        schedule_txs.push(tx);
                        tokio::spawn(open_sender(socket, me, rx, state, tl))
                    }
                };
                senders.push(task);
            }
            Role::SenderOther | Role::Receiver => {
                let is_receiver = matches!(role, Role::Receiver);
                let acks = if is_receiver { cfg.acks } else { Acks::Off };
                let task = tokio::spawn(receiver(socket, pair.a.id, acks, state, tl));
                receivers.push((is_receiver, task));
            }
        }
    }
    // Both users' streams carry every message of the pair's sender.
    let mut stream_tasks = Vec::new();
    for ((p, _), socket) in stream_plan.into_iter().zip(streams) {
        let pair = &pairs[p];
        stream_tasks.push(tokio::spawn(receiver(
            socket,
            pair.a.id,
            Acks::Off,
            states[p].clone(),
            tl,
        )));
    }
    let scheduler = match cfg.mode {
        Mode::Open { rate } => Some(spawn_schedule(rate, schedule_txs, tl)?),
        Mode::Closed { .. } => None,
    };
    let server_pid = cfg.server_pid;
    let cpu = tokio::spawn(async move {
        sleep_until(measure_start).await;
        let before = tokio::task::spawn_blocking(move || CpuSnapshot::take(server_pid)).await;
        sleep_until(measure_end).await;
        let after = tokio::task::spawn_blocking(move || CpuSnapshot::take(server_pid)).await;
        match (before, after) {
            (Ok(b), Ok(a)) => b.cores_since(&a, (measure_end - measure_start).as_secs_f64()),
            _ => Value::Null,
        }
    });

    let mut sent = SenderOutcome::default();
    let mut sender_errors = Vec::new();
    for task in senders {
        let s = task.await?;
        sent.sent += s.sent;
        sent.sent_in_window += s.sent_in_window;
        sent.echoes += s.echoes;
        sent.echoes_in_window += s.echoes_in_window;
        sent.error_events += s.error_events;
        sent.send_lag_ns.extend(s.send_lag_ns);
        if let Some(e) = s.error {
            sender_errors.push(e);
        }
    }
    if let Some(handle) = scheduler {
        handle
            .join()
            .map_err(|_| "the schedule thread panicked".to_owned())?;
    }
    let mut integrity = Integrity::default();
    let mut integrity_sender_side = Integrity::default();
    let (mut delivered, mut lat, mut lat_send) = (0u64, Vec::new(), Vec::new());
    let (mut acks_sent, mut delivered_events, mut ack_errors) = (0u64, 0u64, 0u64);
    for (is_receiver, task) in receivers {
        let r = task.await?;
        if is_receiver {
            acks_sent += r.acks_sent;
            delivered_events += r.delivered_events;
            ack_errors += r.error_events;
            integrity.add(&r);
            delivered += r.in_window;
            lat.extend(r.latency_ns);
            lat_send.extend(r.latency_from_send_ns);
        } else {
            integrity_sender_side.add(&r);
        }
    }
    let mut integrity_streams = Integrity::default();
    let (mut stream_delivered, mut stream_lat) = (0u64, Vec::new());
    for task in stream_tasks {
        let r = task.await?;
        integrity_streams.add(&r);
        stream_delivered += r.in_window;
        stream_lat.extend(r.latency_ns);
    }
    let cpu = cpu.await.unwrap_or(Value::Null);
    let secs = cfg.duration.as_secs_f64();
    let latency = Percentiles::from_ns(&mut lat);
    let latency_send = Percentiles::from_ns(&mut lat_send);
    let lag = Percentiles::from_ns(&mut sent.send_lag_ns);
    let failed = !integrity.ok()
        || !integrity_streams.ok()
        || !sender_errors.is_empty()
        || sent.error_events > 0
        || ack_errors > 0;
    let user_streams = if cfg.user_streams {
        json!({
            "sockets": integrity_streams.sockets,
            "deliveries_in_window": stream_delivered,
            "deliveries_per_s": round3(stream_delivered as f64 / secs),
            "latency": Percentiles::from_ns(&mut stream_lat).to_json(),
            "integrity": integrity_streams.to_json(),
        })
    } else {
        Value::Null
    };
    Ok(json!({
        "nodes": n_nodes,
        "pairs": pairs.len(),
        "sockets": pairs.len() * per_user * 2,
        "sockets_per_user": per_user,
        "warmup_s": cfg.warmup.as_secs_f64(),
        "duration_s": secs,
        "setup_s": round3(setup_seconds),
        "messages_sent": sent.sent,
        "messages_sent_in_window": sent.sent_in_window,
        "send_rate_per_s": round3(sent.sent_in_window as f64 / secs),
        "persisted_msgs_per_s": round3(sent.echoes_in_window as f64 / secs),
        "deliveries_in_window": delivered,
        "delivered_msgs_per_s": round3(delivered as f64 / secs),
        // Distinct messages per second reaching the other user (each of its
        // sockets gets every message).
        "delivered_unique_msgs_per_s": round3(delivered as f64 / per_user as f64 / secs),
        "latency": latency.to_json(),
        "latency_from_actual_send": latency_send.to_json(),
        "send_lag": lag.to_json(),
        "integrity": integrity.to_json(),
        "integrity_sender_other_sockets": integrity_sender_side.to_json(),
        "sender_errors": sender_errors.len(),
        "first_sender_errors": sender_errors.iter().take(3).collect::<Vec<_>>(),
        "error_events": sent.error_events,
        "user_streams": user_streams,
        "acks": if cfg.acks != Acks::Off {
            json!({
                "mode": match cfg.acks {
                    Acks::Batched(p) => format!("batched every {} ms", p.as_millis()),
                    _ => "each message".into(),
                },
                "acks_sent": acks_sent,
                "messages_delivered_events": delivered_events,
                "error_events": ack_errors,
            })
        } else {
            Value::Null
        },
        "cpu_cores": cpu,
        "failed": failed,
    }))
}
