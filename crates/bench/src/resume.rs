//! The `resume` scenario: a user with `events` missed events in the log
//! reconnects with `/ws/chat/?since=<seq - events>`, `resumes` times in a
//! row; each is timed from the start of the connect (TCP connect and the
//! upgrade request) to the last replayed event. Every resume is checked:
//! `recovered: true`, the current `seq`, then exactly the events
//! `since + 1 ..= seq` in order.

use crate::Result;
use crate::api::{Api, Pair};
use crate::stats::{Percentiles, round3};
use crate::sysinfo::CpuSnapshot;
use crate::ws::{self, Event, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// Settings of the scenario.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events replayed by each resume.
    pub events: usize,
    /// Timed resumes.
    pub resumes: usize,
    /// Untimed resumes first (the first reads of the log from disk).
    pub warmup: usize,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
}

/// How long one resume may take before it counts as failed.
const RESUME_TIMEOUT: Duration = Duration::from_secs(20);

/// Messages in flight while filling the log: a client that writes all
/// of them at once has its socket dropped as too slow (the server's
/// per-socket queue is 256 frames), so the sender keeps a window.
const SEND_WINDOW: usize = 32;

/// `a` sends `n` messages to `b` over its conversation socket, keeping
/// [`SEND_WINDOW`] in flight (a new one per own echo).
async fn send_messages(api: &Api, pair: &Pair, n: usize) -> Result<()> {
    let mut ws = ws::connect(&api.ws_url(pair.conversation, &pair.a.token)?, false, None).await?;
    let frame = |i: usize| {
        let frame = json!({
            "type": "chat_message",
            "content": format!("resume filler {i}"),
            "client_id": format!("r{i}"),
        });
        Message::text(frame.to_string())
    };
    let mut sent = 0;
    while sent < n.min(SEND_WINDOW) {
        ws.send(frame(sent)).await?;
        sent += 1;
    }
    let mut echoes = 0;
    while echoes < n {
        let next = match timeout(Duration::from_secs(30), ws.next()).await {
            Err(_) => return Err(format!("only {echoes} of {n} echoes arrived").into()),
            Ok(None) => return Err(format!("socket closed after {echoes} of {n} echoes").into()),
            Ok(Some(next)) => next?,
        };
        let Message::Text(text) = next else { continue };
        let event: Event<'_> = serde_json::from_str(text.as_str())?;
        match event.kind.as_ref() {
            "chat_message" if event.sender_id == Some(pair.a.id) => {
                echoes += 1;
                if sent < n {
                    ws.send(frame(sent)).await?;
                    sent += 1;
                }
            }
            "error" => return Err(format!("the server refused a message: {text}").into()),
            _ => {}
        }
    }
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok(())
}

/// One resume: (time to `connection_established`, time to the last event).
async fn resume_once(url: &str, since: i64, current: i64) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    let (mut ws, first): (Ws, _) = ws::connect_established(url, false, None).await?;
    let established = started.elapsed();
    if first.recovered != Some(true) || first.seq != Some(current) {
        return Err(format!(
            "connection_established said recovered {:?}, seq {:?} (expected true, {current})",
            first.recovered, first.seq
        )
        .into());
    }
    let mut expected = since + 1;
    let replay = async {
        while expected <= current {
            let frame = match ws.next().await {
                None => return Err("socket closed during the replay".into()),
                Some(frame) => frame?,
            };
            let Message::Text(text) = frame else { continue };
            let event: Event<'_> = serde_json::from_str(text.as_str())?;
            match event.seq {
                Some(seq) if seq == expected => expected += 1,
                Some(seq) => {
                    return Err(format!("replayed seq {seq}, expected {expected}").into());
                }
                // Ephemeral frames carry no seq; there are none here.
                None => {}
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    match timeout(RESUME_TIMEOUT, replay).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("replay stalled at seq {expected} of {current}").into()),
    }
    let total = started.elapsed();
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok((established, total))
}

/// Runs the scenario on a fresh pair; the JSON result.
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    if cfg.events == 0 || cfg.resumes == 0 {
        return Err("--events and --resumes must be at least 1".into());
    }
    let setup_started = Instant::now();
    let pair = api
        .create_pairs("rs", 1, cfg.concurrency)
        .await?
        .into_iter()
        .next()
        .ok_or("no pair was created")?;
    send_messages(api, &pair, cfg.events).await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    // b received every message: its seq now stands at the connection's
    // events plus one per message.
    let (mut ws, now) =
        ws::connect_established(&api.stream_url(&pair.b.token, None)?, false, None).await?;
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    let current = now
        .seq
        .ok_or("connection_established of the user stream has no seq")?;
    let events = i64::try_from(cfg.events)?;
    if current < events {
        return Err(format!("the user's seq is {current}, fewer than {events} events").into());
    }
    let since = current - events;
    let url = api.stream_url(&pair.b.token, Some(since))?;

    for _ in 0..cfg.warmup {
        resume_once(&url, since, current).await?;
    }
    let before = CpuSnapshot::take(cfg.server_pid);
    let measure_started = Instant::now();
    let (mut established, mut total, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.resumes {
        match resume_once(&url, since, current).await {
            Ok((e, t)) => {
                established.push(e);
                total.push(t);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let seconds = measure_started.elapsed().as_secs_f64();
    let cpu = before.cores_since(&CpuSnapshot::take(cfg.server_pid), seconds);
    let total = Percentiles::from_durations(&total);
    Ok(json!({
        "events_per_resume": cfg.events,
        "resumes": cfg.resumes,
        "warmup_resumes": cfg.warmup,
        "since": since,
        "seq": current,
        "setup_s": round3(setup_seconds),
        "measure_s": round3(seconds),
        "latency": total.to_json(),
        "established_latency": Percentiles::from_durations(&established).to_json(),
        "events_per_s_p50": round3(cfg.events as f64 / (total.p50 / 1e3)),
        "errors": errors.len(),
        "first_errors": errors.iter().take(3).collect::<Vec<_>>(),
        "cpu_cores": cpu,
        "failed": !errors.is_empty(),
    }))
}
