//! The `presence` scenario: users each connected to `degree` others
//! (seeded with SQL), a few observers holding their user stream open
//! throughout, and everyone else churning: user streams opened and closed
//! at `rate` per second, each held `hold` seconds. Counted over each
//! phase's window: the `presence` events the observers receive, the
//! Redis commands the server sends (from `INFO`, on a Redis of its own)
//! and the server's CPU.
//!
//! Two phases, as the grace period (default 10 s) decides what a churn
//! costs: `within_grace`, a pool of churners small enough that each is
//! back within 5 s of leaving (no `offline`, and no `online` after its
//! first connect: the observers should see nothing), then `after_grace`,
//! every churner, each away long enough to go offline and come back.

use crate::Result;
use crate::api::{Api, User};
use crate::now_ns;
use crate::seed;
use crate::stats::{Percentiles, round3};
use crate::sysinfo::CpuSnapshot;
use crate::ws::{self, Event, Route};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// Settings of the presence scenario.
#[derive(Debug, Clone)]
pub struct Config {
    pub users: usize,
    pub degree: usize,
    pub observers: usize,
    /// Connects (and as many disconnects) per second.
    pub rate: f64,
    /// How long each churning socket stays open.
    pub hold: Duration,
    /// How long churners stay away in the `within_grace` phase.
    pub short_away: Duration,
    /// The server's grace period (to time the windows; it is not changed).
    pub grace: Duration,
    pub duration: Duration,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
}

/// Loopback source addresses the churning sockets spread over: tens of
/// thousands of short connections would otherwise run through the
/// ephemeral ports of one address.
const SOURCE_IPS: u8 = 16;

/// What one observer saw: (time, online?) of each presence event.
type Seen = Vec<(u64, bool)>;

/// What one churning user did: the times its sockets were established.
#[derive(Debug, Default)]
struct Churned {
    connects_ns: Vec<u64>,
    disconnects_ns: Vec<u64>,
    handshakes_ns: Vec<u64>,
    failures: u64,
    first_error: Option<String>,
}

/// `INFO` of the server's Redis: total commands and calls per command.
fn redis_counters(url: &str) -> Option<(u64, BTreeMap<String, u64>)> {
    let out = Command::new("redis-cli")
        .args(["-u", url, "INFO", "all"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = None;
    let mut per = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("total_commands_processed:") {
            total = v.parse().ok();
        } else if let Some(rest) = line.strip_prefix("cmdstat_")
            && let Some((name, stats)) = rest.split_once(':')
        {
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|c| c.parse().ok());
            if let Some(calls) = calls {
                per.insert(name.to_owned(), calls);
            }
        }
    }
    Some((total?, per))
}

/// Redis commands per second between two readings (the `INFO` calls
/// themselves taken out), with the busiest commands.
fn redis_rates(
    before: Option<&(u64, BTreeMap<String, u64>)>,
    after: Option<&(u64, BTreeMap<String, u64>)>,
    seconds: f64,
) -> Value {
    let (Some((t0, p0)), Some((t1, p1))) = (before, after) else {
        return Value::Null;
    };
    let mut per: Vec<(String, u64)> = p1
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(p0.get(k).copied().unwrap_or(0))))
        .filter(|(k, d)| *d > 0 && k != "info")
        .collect();
    per.sort_by_key(|p| std::cmp::Reverse(p.1));
    let info_calls = 1;
    json!({
        "commands_per_s": round3(t1.saturating_sub(*t0).saturating_sub(info_calls) as f64 / seconds),
        "by_command_per_s": per.iter().take(12)
            .map(|(k, d)| (k.clone(), json!(round3(*d as f64 / seconds))))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// An observer: reads its stream until `stop`, noting presence events.
async fn observe(mut socket: ws::Ws, stop: Arc<AtomicBool>) -> (Seen, Option<String>) {
    let mut seen = Vec::new();
    let error = loop {
        if stop.load(Ordering::Acquire) {
            break None;
        }
        let frame = match timeout(Duration::from_millis(200), socket.next()).await {
            Err(_) => continue,
            Ok(None) => break Some("observer socket closed by the server".to_owned()),
            Ok(Some(Err(e))) => break Some(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        let Message::Text(text) = frame else { continue };
        if let Ok(event) = serde_json::from_str::<Event<'_>>(text.as_str())
            && event.kind == "presence"
        {
            let online = text.as_str().contains("\"status\":\"online\"");
            seen.push((now_ns(), online));
        }
    };
    let _ = timeout(Duration::from_secs(1), socket.close(None)).await;
    (seen, error)
}

/// A churning user: from `first`, every `period`, opens its stream, reads
/// it for `hold`, closes it; until `end`.
async fn churn(
    url: String,
    route: Option<Route>,
    first: Instant,
    period: Duration,
    hold: Duration,
    end: Instant,
) -> Churned {
    let mut out = Churned::default();
    let mut at = first;
    while at < end {
        sleep_until(at).await;
        let started = now_ns();
        match ws::connect(&url, true, route).await {
            Ok(mut socket) => {
                let established = now_ns();
                out.connects_ns.push(established);
                out.handshakes_ns.push(established.saturating_sub(started));
                let until = at + hold;
                while let Ok(Some(Ok(_))) = timeout_at(until, socket.next()).await {}
                let _ = timeout(Duration::from_secs(1), socket.close(None)).await;
                out.disconnects_ns.push(now_ns());
            }
            Err(e) => {
                out.failures += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(e.to_string());
                }
            }
        }
        at += period;
    }
    out
}

/// One phase: `churners` (indexes into `users`) churn from `start`,
/// spread evenly over one period; measured over `[measure_start, end)`.
struct Phase<'a> {
    name: &'static str,
    churners: &'a [usize],
    start: Instant,
    measure_start: Instant,
    end: Instant,
}

/// Runs the scenario; the JSON result.
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    let url = cfg
        .database_url
        .as_deref()
        .ok_or("presence: --database-url postgres://... is required (users are seeded with SQL)")?;
    let n = cfg.users;
    let half = cfg.degree / 2;
    if n < 4 || half == 0 || half * 2 >= n {
        return Err("presence: need --users >= 4 and 2 <= --degree < --users".into());
    }
    let rate = cfg.rate.clamp(1.0, 100_000.0);
    let setup_started = std::time::Instant::now();
    // A ring: user i is connected to i ± 1 ..= i ± degree/2.
    let edges = format!(
        "SELECT i, (i + k) % {n} FROM generate_series(0, {n} - 1) AS i, generate_series(1, {half}) AS k"
    );
    let seeded = seed::graph(api, url, "pr", n, &edges).await?;
    let seed_seconds = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "presence: {n} users and {} connections seeded in {seed_seconds:.1} s",
        n * half
    );
    // Observers spread evenly over the ring, so no two share neighbours.
    let observers = cfg.observers.clamp(1, n / (cfg.degree + 1)).max(1);
    let step = n / observers;
    let observer_idx: Vec<usize> = (0..observers).map(|k| k * step).collect();
    let churn_idx: Vec<usize> = (0..n)
        .filter(|i| i % step != 0 || i / step >= observers)
        .collect();
    let login_started = std::time::Instant::now();
    let all: Vec<usize> = observer_idx.iter().chain(&churn_idx).copied().collect();
    let users: Vec<User> = seeded.login(api, &all, cfg.concurrency).await?;
    let login_seconds = login_started.elapsed().as_secs_f64();
    let (observer_users, churn_users) = users.split_at(observers);

    let stop = Arc::new(AtomicBool::new(false));
    let mut observer_tasks = Vec::new();
    for u in observer_users {
        let socket = ws::connect(&api.stream_url(&u.token, None)?, false, None).await?;
        observer_tasks.push(tokio::spawn(observe(socket, stop.clone())));
    }

    let hold = cfg.hold;
    let within_pool = ((rate * (hold + cfg.short_away).as_secs_f64()).ceil() as usize)
        .clamp(1, churn_users.len());
    // Churners of the first phase: spread over the ring.
    let within: Vec<usize> = (0..within_pool)
        .map(|k| k * churn_users.len() / within_pool)
        .collect();
    let every: Vec<usize> = (0..churn_users.len()).collect();
    let settle = Duration::from_secs(1);
    let t0 = Instant::now() + Duration::from_millis(500);
    // Within the grace: measure once every churner has made its first
    // connect (the online events of coming online at all).
    let cycle_within = Duration::from_secs_f64(within_pool as f64 / rate);
    let p1_measure = t0 + cycle_within + settle;
    let p1_end = p1_measure + cfg.duration;
    // After the grace: the first ones gone offline have their offline
    // events out `hold + grace` after the phase began.
    let p2_start = p1_end + cfg.grace + hold + Duration::from_secs(2);
    let p2_measure = p2_start + hold + cfg.grace + settle;
    let p2_end = p2_measure + cfg.duration;
    let phases = [
        Phase {
            name: "within_grace",
            churners: &within,
            start: t0,
            measure_start: p1_measure,
            end: p1_end,
        },
        Phase {
            name: "after_grace",
            churners: &every,
            start: p2_start,
            measure_start: p2_measure,
            end: p2_end,
        },
    ];
    let server = api.server_v4();
    let mut results = serde_json::Map::new();
    let mut failed = false;
    for phase in &phases {
        let pool = phase.churners.len();
        let period = Duration::from_secs_f64(pool as f64 / rate);
        let mut tasks = Vec::with_capacity(pool);
        for (k, &c) in phase.churners.iter().enumerate() {
            let user = &churn_users[c];
            let route = server.map(|server| Route {
                local: IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    1 + (c % usize::from(SOURCE_IPS)) as u8,
                )),
                server,
            });
            let first = phase.start + Duration::from_secs_f64(k as f64 / rate);
            tasks.push(tokio::spawn(churn(
                api.stream_url(&user.token, None)?,
                route,
                first,
                period,
                hold,
                phase.end,
            )));
        }
        sleep_until(phase.measure_start).await;
        let pid = cfg.server_pid;
        let redis = cfg.redis_url.clone();
        let (cpu0, redis0) = tokio::task::spawn_blocking(move || {
            (
                CpuSnapshot::take(pid),
                redis.as_deref().and_then(redis_counters),
            )
        })
        .await?;
        let m0 = now_ns();
        sleep_until(phase.end).await;
        let redis = cfg.redis_url.clone();
        let (cpu1, redis1) = tokio::task::spawn_blocking(move || {
            (
                CpuSnapshot::take(pid),
                redis.as_deref().and_then(redis_counters),
            )
        })
        .await?;
        let m1 = now_ns();
        let secs = (m1 - m0) as f64 / 1e9;
        let in_window = |t: &u64| (m0..m1).contains(t);
        let (mut connects, mut disconnects, mut failures) = (0u64, 0u64, 0u64);
        let mut handshakes = Vec::new();
        let mut first_error = None;
        let mut connects_of: BTreeMap<usize, u64> = BTreeMap::new();
        for (task, &c) in tasks.into_iter().zip(phase.churners) {
            let r = task.await?;
            let mine = r.connects_ns.iter().filter(|t| in_window(t)).count() as u64;
            connects += mine;
            connects_of.insert(c, mine);
            disconnects += r.disconnects_ns.iter().filter(|t| in_window(t)).count() as u64;
            failures += r.failures;
            handshakes.extend(r.handshakes_ns);
            first_error = first_error.or(r.first_error);
        }
        // Connects of the observers' neighbours in the window: how many
        // online events there would be with no grace period at all.
        let churn_pos: BTreeMap<usize, usize> =
            churn_idx.iter().enumerate().map(|(c, &g)| (g, c)).collect();
        let mut neighbour_connects = 0u64;
        for &o in &observer_idx {
            for d in 1..=half {
                for g in [(o + d) % n, (o + n - d) % n] {
                    if let Some(c) = churn_pos.get(&g) {
                        neighbour_connects += connects_of.get(c).copied().unwrap_or(0);
                    }
                }
            }
        }
        failed |= failures > 0;
        results.insert(
            phase.name.to_owned(),
            json!({
                "churning_users": pool,
                "away_s": round3(period.saturating_sub(hold).as_secs_f64()),
                "window_s": round3(secs),
                "connects_per_s": round3(connects as f64 / secs),
                "disconnects_per_s": round3(disconnects as f64 / secs),
                "open_sockets_avg": round3(rate.min(pool as f64 / hold.as_secs_f64()) * hold.as_secs_f64()),
                "failures": failures,
                "first_error": first_error,
                "handshake": Percentiles::from_ns(&mut handshakes).to_json(),
                "observer_neighbour_connects": neighbour_connects,
                "window_ns": [m0, m1],
                "redis": redis_rates(redis0.as_ref(), redis1.as_ref(), secs),
                "cpu_cores": cpu0.cores_since(&cpu1, secs),
            }),
        );
        eprintln!("presence: phase {} done", phase.name);
    }
    stop.store(true, Ordering::Release);
    let mut seen_all: Vec<Seen> = Vec::new();
    let mut observer_errors = Vec::new();
    for task in observer_tasks {
        let (seen, error) = task.await?;
        seen_all.push(seen);
        observer_errors.extend(error);
    }
    for (_, v) in results.iter_mut() {
        let (Some(m0), Some(m1)) = (v["window_ns"][0].as_u64(), v["window_ns"][1].as_u64()) else {
            continue;
        };
        let secs = (m1 - m0) as f64 / 1e9;
        let (mut online, mut offline) = (0u64, 0u64);
        for (t, on) in seen_all.iter().flatten() {
            if (m0..m1).contains(t) {
                if *on {
                    online += 1;
                } else {
                    offline += 1;
                }
            }
        }
        v["observer_events"] = json!({
            "online": online,
            "offline": offline,
            "per_s": round3((online + offline) as f64 / secs),
            "per_observer_per_s": round3((online + offline) as f64 / secs / observers as f64),
        });
    }
    failed |= !observer_errors.is_empty();
    Ok(json!({
        "users": n,
        "degree": half * 2,
        "connections": n * half,
        "observers": observers,
        "rate_per_s": rate,
        "hold_s": hold.as_secs_f64(),
        "grace_s": cfg.grace.as_secs_f64(),
        "seed_s": round3(seed_seconds),
        "login_s": round3(login_seconds),
        "phases": results,
        "observer_errors": observer_errors,
        "failed": failed,
    }))
}
