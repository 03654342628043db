//! `chat-bench <scenario> [options]`: load benchmarks of a running chat
//! server on this machine. Each scenario prints a short summary and, last,
//! one JSON line with its results (also written to `--json-out FILE`).

mod api;
mod args;
mod compare;
mod history;
mod idle;
mod pairs;
mod presence;
mod report;
mod report_features;
mod resume;
mod search;
mod seed;
mod stats;
mod sysinfo;
mod uploads;
mod ws;

use api::Api;
use args::Args;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

/// Errors are reported, never unwrapped.
pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();

fn epoch() -> tokio::time::Instant {
    *EPOCH.get_or_init(tokio::time::Instant::now)
}

/// Nanoseconds of the tool's monotonic clock since its epoch.
pub fn now_ns() -> u64 {
    ns_since_epoch(tokio::time::Instant::now())
}

/// An instant as nanoseconds since the tool's epoch.
pub fn ns_since_epoch(t: tokio::time::Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

const USAGE: &str = "\
usage: chat-bench <scenario> [options]

scenarios:
  throughput  --pairs 100 --window 16 --duration 10 --warmup 2 [--sockets-per-user 2] [--drain 10]
              [--user-streams: each user also holds one /ws/chat/ stream, reported apart]
              [--acks: every socket of the receiving user acks each message it gets]
              [--acks-batched-ms 100: ... acks the highest id it got, at most once per period]
  latency     --rate 2000 --pairs 50 --duration 10 [--warmup 1] [--sockets-per-user 2] [--drain 10]
  idle        --sockets 20000 --server-pid PID [--pairs 500] [--concurrency 64] [--idle 5] [--ramp-timeout 180]
              [--source-ips 16: spread sockets over 127.0.0.1..N]
  history     --messages 1000000 --small 1000 --conversations 1000 --reads 200
              --database-url postgres://...  [--deep-page 10000] [--max-seconds-per-kind 120]
  resume      --events 1000 --resumes 200 [--warmup 3]: a user with that many missed events
              reconnects with /ws/chat/?since=, timed to the last replayed event
  presence    --users 10000 --degree 20 --observers 200 --rate 500 --hold 2 --short-away 5
              --duration 20 --database-url postgres://... --redis-url redis://... [--grace 10]:
              users seeded with SQL, user streams churning; presence events, Redis commands, CPU
  search      --messages 5000000 --user-messages 1000000 --conversations 100 --queries 100 [--max-seconds 300]
              [--existing NAME: a database seeded before by the same SQL, users NAME0...]
              --database-url postgres://...: timed searches of one user, by class of query
  uploads     --clients 50 --size-mib 10 [--rounds 1]: that many users upload a file at once
              (multipart, text); MiB/s, per-upload time, server RSS idle and peak (--server-pid)
  all         throughput, latency, history, resume and idle with their defaults (--quick: small sizes), one combined JSON;
              also latency at lower rates first: --latency-sweep 500,1000 (empty: none);
              --skip idle,... leaves scenarios out
  report      --input all.json --out BENCHMARKS.md [--extra idle.json] [--machine FILE]
              [--settings FILE] [--notes FILE] [--merged-out FILE]
  compare     --runs before=F,after=F,... [--before-rev R] [--after-rev R] [--json-out F]
              [--baseline L --variant L --kind acks|index: one server with and without a feature]
              combines throughput runs of two servers (crates/bench/compare.sh runs them)

common options:
  --url http://127.0.0.1:8000   the server (loopback addresses only)
  --server-pid PID              the server's process (RSS, CPU and fd figures)
  --setup-concurrency 32        requests in flight while creating users and pairs
  --json-out FILE               also write the JSON result there
  --nodes URL,URL               throughput/latency: other nodes of the same deployment; each
                                pair's users then sit on different nodes (cross-node delivery)
  --watch-pids NAME=PID,...     also report these processes' CPU (cores) under their names
";

/// Options every scenario understands.
#[derive(Debug, Clone)]
struct Common {
    url: String,
    server_pid: Option<u32>,
    setup_concurrency: usize,
    json_out: Option<String>,
    /// Other nodes of the deployment (throughput and latency).
    nodes: Vec<String>,
    /// Where readiness is asked (`--ready-path`; the Django reference has
    /// no `/readyz/`: any answer below 500 from the given path will do).
    ready_path: String,
}

impl Common {
    fn take(args: &mut Args) -> Result<Self> {
        if let Some(list) = args.take("watch-pids") {
            sysinfo::watch_pids(&list)?;
        }
        Ok(Self {
            url: args
                .take("url")
                .unwrap_or_else(|| "http://127.0.0.1:8000".into()),
            server_pid: args.take("server-pid").map(|p| p.parse()).transpose()?,
            setup_concurrency: args.get("setup-concurrency", 32)?,
            json_out: args.take("json-out"),
            nodes: args
                .take("nodes")
                .map(|list| list.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            ready_path: args.take("ready-path").unwrap_or_else(|| "/readyz/".into()),
        })
    }
}

fn secs(v: f64) -> Result<Duration> {
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{v} is not a duration in seconds").into())
    }
}

fn ack_mode(args: &mut Args) -> Result<pairs::Acks> {
    let each = args.flag("acks")?;
    let batched: u64 = args.get("acks-batched-ms", 0)?;
    Ok(match (each, batched) {
        (true, 0) => pairs::Acks::EachMessage,
        (false, 0) => pairs::Acks::Off,
        (false, ms) if ms <= 60_000 => pairs::Acks::Batched(Duration::from_millis(ms)),
        (true, _) => return Err("--acks and --acks-batched-ms exclude each other".into()),
        (false, _) => return Err("--acks-batched-ms must be at most 60000".into()),
    })
}

fn throughput_config(args: &mut Args, c: &Common, quick: bool) -> Result<pairs::Config> {
    let window: usize = args.get("window", 16)?;
    Ok(pairs::Config {
        mode: pairs::Mode::Closed { window },
        pairs: args.get("pairs", if quick { 10 } else { 100 })?,
        sockets_per_user: args.get("sockets-per-user", 2)?,
        user_streams: args.flag("user-streams")?,
        acks: ack_mode(args)?,
        warmup: secs(args.get("warmup", if quick { 1.0 } else { 2.0 })?)?,
        duration: secs(args.get("duration", if quick { 3.0 } else { 10.0 })?)?,
        drain: secs(args.get("drain", 10.0)?)?,
        concurrency: c.setup_concurrency,
        server_pid: c.server_pid,
        nodes: c.nodes.clone(),
    })
}

fn latency_config(args: &mut Args, c: &Common, quick: bool) -> Result<pairs::Config> {
    let rate: f64 = args.get("rate", if quick { 500.0 } else { 2000.0 })?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
        return Err("--rate must be between 0 and 1000000 messages/s".into());
    }
    Ok(pairs::Config {
        mode: pairs::Mode::Open { rate },
        pairs: args.get("pairs", if quick { 10 } else { 50 })?,
        sockets_per_user: args.get("sockets-per-user", 2)?,
        user_streams: false,
        acks: pairs::Acks::Off,
        warmup: secs(args.get("warmup", 1.0)?)?,
        duration: secs(args.get("duration", if quick { 3.0 } else { 10.0 })?)?,
        drain: secs(args.get("drain", 10.0)?)?,
        concurrency: c.setup_concurrency,
        server_pid: c.server_pid,
        nodes: c.nodes.clone(),
    })
}

fn idle_config(args: &mut Args, c: &Common, quick: bool) -> Result<idle::Config> {
    Ok(idle::Config {
        sockets: args.get("sockets", if quick { 1000 } else { 20_000 })?,
        pairs: args.get("pairs", if quick { 25 } else { 500 })?,
        concurrency: args.get("concurrency", 64)?,
        idle: secs(args.get("idle", if quick { 2.0 } else { 5.0 })?)?,
        ramp_timeout: secs(args.get("ramp-timeout", 180.0)?)?,
        server_pid: c.server_pid,
        setup_concurrency: c.setup_concurrency,
        source_ips: args.get("source-ips", 16)?,
    })
}

fn history_config(args: &mut Args, c: &Common, quick: bool) -> Result<history::Config> {
    Ok(history::Config {
        messages: args.get("messages", if quick { 20_000 } else { 1_000_000 })?,
        small: args.get("small", 1000)?,
        conversations: args.get("conversations", if quick { 100 } else { 1000 })?,
        reads: args.get("reads", if quick { 50 } else { 200 })?,
        deep_page: args.get("deep-page", 10_000)?,
        page_size: args.get("page-size", 50)?,
        max_seconds_per_kind: args.get("max-seconds-per-kind", 120.0)?,
        database_url: args.take("database-url"),
        concurrency: c.setup_concurrency,
        server_pid: c.server_pid,
    })
}

fn resume_config(args: &mut Args, c: &Common, quick: bool) -> Result<resume::Config> {
    Ok(resume::Config {
        events: args.get("events", 1000)?,
        resumes: args.get("resumes", if quick { 50 } else { 200 })?,
        warmup: args.get("warmup", 3)?,
        concurrency: c.setup_concurrency,
        server_pid: c.server_pid,
    })
}

fn presence_config(args: &mut Args, c: &Common, quick: bool) -> Result<presence::Config> {
    Ok(presence::Config {
        users: args.get("users", if quick { 1000 } else { 10_000 })?,
        degree: args.get("degree", if quick { 10 } else { 20 })?,
        observers: args.get("observers", if quick { 20 } else { 200 })?,
        rate: args.get("rate", if quick { 50.0 } else { 500.0 })?,
        hold: secs(args.get("hold", 2.0)?)?,
        short_away: secs(args.get("short-away", 5.0)?)?,
        grace: secs(args.get("grace", 10.0)?)?,
        duration: secs(args.get("duration", if quick { 5.0 } else { 20.0 })?)?,
        database_url: args.take("database-url"),
        redis_url: args.take("redis-url"),
        concurrency: c.setup_concurrency,
        server_pid: c.server_pid,
    })
}

fn search_config(args: &mut Args, c: &Common, quick: bool) -> Result<search::Config> {
    Ok(search::Config {
        messages: args.get("messages", if quick { 100_000 } else { 5_000_000 })?,
        user_messages: args.get("user-messages", if quick { 20_000 } else { 1_000_000 })?,
        conversations: args.get("conversations", 100)?,
        queries: args.get("queries", if quick { 20 } else { 100 })?,
        max_seconds: args.get("max-seconds", 300.0)?,
        existing: args.take("existing"),
        database_url: args.take("database-url"),
        server_pid: c.server_pid,
    })
}

fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{:010x}", mixed & 0xff_ffff_ffff)
}

fn get_f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

fn latency_line(v: &Value) -> String {
    format!(
        "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
        get_f(v, &["p50_ms"]),
        get_f(v, &["p90_ms"]),
        get_f(v, &["p99_ms"]),
        get_f(v, &["p999_ms"]),
        get_f(v, &["max_ms"]),
        v["count"]
    )
}

/// The human summary of one scenario's result.
fn summarize(name: &str, r: &Value) {
    println!("== {name}");
    if let Some(e) = r.get("error") {
        println!("  ERROR: {}", e.as_str().unwrap_or_default());
        return;
    }
    match name {
        "throughput" | "latency" => {
            println!(
                "  {} pairs, {} sockets, {} s measured after {} s warm-up",
                r["pairs"], r["sockets"], r["duration_s"], r["warmup_s"]
            );
            println!(
                "  sent {:.0}/s, persisted+echoed {:.0} msgs/s, delivered to receiver sockets {:.0} msgs/s",
                get_f(r, &["send_rate_per_s"]),
                get_f(r, &["persisted_msgs_per_s"]),
                get_f(r, &["delivered_msgs_per_s"])
            );
            println!("  latency {}", latency_line(&r["latency"]));
            if name == "latency" {
                println!(
                    "  send lag (scheduled -> written) {}",
                    latency_line(&r["send_lag"])
                );
            }
            let i = &r["integrity"];
            println!(
                "  integrity over {} receiver sockets: missing {} duplicates {} out-of-order {} errors {}{}",
                i["sockets"],
                i["missing"],
                i["duplicates"],
                i["out_of_order"],
                i["socket_errors"],
                if i["ok"].as_bool() == Some(true) {
                    "  OK"
                } else {
                    "  FAILED"
                }
            );
            if r["acks"].is_object() {
                println!("  acks {}", r["acks"]);
            }
            let s = &r["user_streams"];
            if s.is_object() {
                println!(
                    "  user streams: {} sockets, {:.0} deliveries/s, latency {}, integrity {}",
                    s["sockets"],
                    get_f(s, &["deliveries_per_s"]),
                    latency_line(&s["latency"]),
                    if s["integrity"]["ok"].as_bool() == Some(true) {
                        "OK"
                    } else {
                        "FAILED"
                    }
                );
            }
            if r["cpu_cores"].is_object() {
                println!("  cpu (cores) {}", r["cpu_cores"]);
            }
        }
        "presence" => {
            println!(
                "  {} users, {} connections, {} observers, churn {}/s, hold {} s",
                r["users"], r["connections"], r["observers"], r["rate_per_s"], r["hold_s"]
            );
            for (phase, p) in r["phases"].as_object().into_iter().flatten() {
                println!(
                    "  {phase}: {} churning users away {} s; {:.0} connects/s {:.0} disconnects/s ({} failures); \
                     observers got {} online + {} offline = {:.1} events/s (neighbour connects {}); \
                     redis {} commands/s; cpu {}",
                    p["churning_users"],
                    p["away_s"],
                    get_f(p, &["connects_per_s"]),
                    get_f(p, &["disconnects_per_s"]),
                    p["failures"],
                    p["observer_events"]["online"],
                    p["observer_events"]["offline"],
                    get_f(p, &["observer_events", "per_s"]),
                    p["observer_neighbour_connects"],
                    p["redis"]["commands_per_s"],
                    p["cpu_cores"]
                );
            }
        }
        "search" => {
            println!(
                "  {} messages, {} in the searcher's {} conversations; load {}",
                r["messages"], r["user_messages"], r["user_conversations"], r["load"]
            );
            for (class, v) in r["by_class"].as_object().into_iter().flatten() {
                println!("  {class}: {}", latency_line(&v["latency"]));
            }
            println!("  first page hits {}", r["first_page_hits"]);
        }
        "uploads" => {
            println!(
                "  {} uploads of {} MiB ({} at once) in {} s: {} MiB/s; {} errors",
                r["uploads_ok"],
                r["size_mib"],
                r["clients"],
                r["wall_s"],
                r["throughput_mib_per_s"],
                r["upload_errors"]
            );
            println!("  per upload {}", latency_line(&r["upload_latency"]));
            println!(
                "  server RSS idle {} KiB, peak {} KiB ({} MiB above idle); cpu {}",
                r["server_rss_idle_kib"],
                r["server_rss_peak_kib"],
                r["server_rss_peak_above_idle_mib"],
                r["cpu_cores"]
            );
        }
        "resume" => {
            println!(
                "  {} resumes of {} events (since {} up to seq {}), {} errors",
                r["resumes"], r["events_per_resume"], r["since"], r["seq"], r["errors"]
            );
            println!(
                "  upgrade -> last replayed event {}",
                latency_line(&r["latency"])
            );
            println!(
                "  upgrade -> connection_established {}",
                latency_line(&r["established_latency"])
            );
            if r["cpu_cores"].is_object() {
                println!("  cpu (cores) {}", r["cpu_cores"]);
            }
        }
        "compare" => {
            for run in r["runs"].as_array().into_iter().flatten() {
                println!(
                    "  run {} {}: {:.0} deliveries/s ({:.0} persisted msgs/s){}",
                    run["order"],
                    run["label"].as_str().unwrap_or("?"),
                    get_f(run, &[compare::METRIC]),
                    get_f(run, &["persisted_msgs_per_s"]),
                    if run["failed"].as_bool() == Some(true) {
                        "  FAILED"
                    } else {
                        ""
                    }
                );
            }
            for (label, v) in r["by_label"].as_object().into_iter().flatten() {
                println!(
                    "  {label}: median {:.0} deliveries/s over {} runs",
                    get_f(v, &["median"]),
                    v["runs"]
                );
            }
            println!(
                "  ratio after/before {} (with user streams {})",
                r["ratio_after_before"], r["ratio_after_streams_before"]
            );
        }
        "idle" => {
            println!(
                "  {} of {} sockets open ({} failures) in {:.2} s: {:.0} handshakes/s",
                r["sockets_opened"],
                r["sockets_attempted"],
                r["failures"],
                get_f(r, &["ramp_s"]),
                get_f(r, &["handshakes_per_s"])
            );
            println!("  handshake {}", latency_line(&r["handshake_latency"]));
            println!(
                "  handshakes/s over each quarter of the ramp {}",
                r["handshakes_per_s_by_quarter"]
            );
            if r["ramp_cpu_cores"].is_object() {
                println!("  cpu during the ramp (cores) {}", r["ramp_cpu_cores"]);
            }
            println!(
                "  server RSS {} KiB -> {} KiB: {} KiB per socket",
                r["server_rss_before_kib"], r["server_rss_after_kib"], r["kib_per_socket"]
            );
            if let Some(c) = r["clamped_because"].as_array().filter(|c| !c.is_empty()) {
                println!("  (requested {}, clamped: {:?})", r["sockets_requested"], c);
            }
        }
        "history" => {
            println!(
                "  {} vs {} messages (inserted via {} in {} s)",
                r["messages_big"],
                r["messages_small"],
                r["insert_method"].as_str().unwrap_or("?"),
                r["insert_s"]
            );
            for kind in ["page_1", "cursor_before_middle", "cursor_after_middle"] {
                let k = &r[kind];
                println!(
                    "  {kind}: big p50 {:.3} p99 {:.3} ms | small p50 {:.3} p99 {:.3} ms | ratio p50 {} p99 {}",
                    get_f(k, &["big", "p50_ms"]),
                    get_f(k, &["big", "p99_ms"]),
                    get_f(k, &["small", "p50_ms"]),
                    get_f(k, &["small", "p99_ms"]),
                    k["ratio_p50"],
                    k["ratio_p99"]
                );
            }
            let d = &r["deep_page"];
            println!(
                "  deep page {} of big: p50 {:.3} p99 {:.3} ms | page {} of small: p50 {:.3} ms",
                d["big_page"],
                get_f(d, &["big", "p50_ms"]),
                get_f(d, &["big", "p99_ms"]),
                d["small_page"],
                get_f(d, &["small", "p50_ms"])
            );
            if let Some(errs) = r["read_errors"].as_array().filter(|e| !e.is_empty()) {
                for e in errs {
                    println!("  read error: {}", e.as_str().unwrap_or_default());
                }
            }
            let l = &r["conversation_list"];
            println!(
                "  conversation list ({} conversations): {}",
                l["conversations"],
                latency_line(&l["latency"])
            );
        }
        _ => {}
    }
    if r["failed"].as_bool() == Some(true) {
        println!("  FAILED: see the JSON");
    }
}

/// A scenario with its settings, checked before anything is sent.
enum Plan {
    Pairs(pairs::Config),
    Idle(idle::Config),
    History(history::Config),
    Resume(resume::Config),
    Presence(presence::Config),
    Search(search::Config),
    Uploads(uploads::Config),
}

fn plan(name: &str, args: &mut Args, c: &Common, quick: bool) -> Result<Plan> {
    let plan = match name {
        "throughput" => Plan::Pairs(throughput_config(args, c, quick)?),
        "latency" => Plan::Pairs(latency_config(args, c, quick)?),
        "idle" => Plan::Idle(idle_config(args, c, quick)?),
        "history" => Plan::History(history_config(args, c, quick)?),
        "resume" => Plan::Resume(resume_config(args, c, quick)?),
        "presence" => Plan::Presence(presence_config(args, c, quick)?),
        "search" => Plan::Search(search_config(args, c, quick)?),
        "uploads" => Plan::Uploads(uploads::Config {
            clients: args.get("clients", if quick { 5 } else { 50 })?,
            size_mib: args.get("size-mib", 10)?,
            rounds: args.get("rounds", 1)?,
            concurrency: c.setup_concurrency,
            server_pid: c.server_pid,
        }),
        other => return Err(format!("unknown scenario '{other}'\n\n{USAGE}").into()),
    };
    std::mem::take(args).finish()?;
    Ok(plan)
}

async fn run_plan(plan: &Plan, api: &Api) -> Result<Value> {
    Ok(match plan {
        Plan::Pairs(cfg) => {
            let mut v = pairs::run(api, cfg).await?;
            match cfg.mode {
                pairs::Mode::Closed { window } => v["window"] = json!(window),
                pairs::Mode::Open { rate } => v["target_rate_per_s"] = json!(rate),
            }
            v
        }
        Plan::Idle(cfg) => idle::run(api, cfg).await?,
        Plan::History(cfg) => history::run(api, cfg).await?,
        Plan::Resume(cfg) => resume::run(api, cfg).await?,
        Plan::Presence(cfg) => presence::run(api, cfg).await?,
        Plan::Search(cfg) => search::run(api, cfg).await?,
        Plan::Uploads(cfg) => uploads::run(api, cfg).await?,
    })
}

async fn ready(api: &Api, c: &Common) -> Result<()> {
    api.ready(&c.ready_path)
        .await
        .map_err(|e| format!("server at {} is not ready: {e}", c.url).into())
}

fn emit(result: &Value, json_out: Option<&str>) -> Result<()> {
    let line = serde_json::to_string(result)?;
    println!("{line}");
    if let Some(path) = json_out {
        std::fs::write(path, format!("{line}\n"))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}

/// Records the setup requests retried since `before` (5xx answers), if any.
fn note_retries(r: &mut Value, before: u64) {
    let (now, errors) = api::setup_retries();
    if now > before {
        r["setup_retries"] = json!(now - before);
        r["first_setup_retry_errors"] = json!(errors);
    }
}

/// The machine's load average (1, 5, 15 min) as JSON, null when unknown.
fn load_avg() -> Value {
    sysinfo::load_avg().map_or(Value::Null, |l| json!(l))
}

fn failed(v: &Value) -> bool {
    v["failed"].as_bool() == Some(true) || v.get("error").is_some()
}

async fn main_async(scenario: String, mut args: Args) -> Result<bool> {
    if scenario == "report" {
        report::run(args)?;
        return Ok(true);
    }
    if scenario == "compare" {
        let r = compare::run(args)?;
        summarize("compare", &r);
        return Ok(!failed(&r));
    }
    let common = Common::take(&mut args)?;
    let api = Api::new(&common.url, run_tag())?;
    epoch();
    let started = chrono::Utc::now();
    if scenario == "all" {
        let quick = args.flag("quick")?;
        let database_url = args.take("database-url");
        let sweep_default = if quick { "200" } else { "500,1000" };
        let sweep: Vec<f64> = args
            .take("latency-sweep")
            .unwrap_or_else(|| sweep_default.into())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--latency-sweep: {e}"))?;
        let skip: Vec<String> = args
            .take("skip")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        for s in &skip {
            if !["throughput", "latency", "history", "resume", "idle"].contains(&s.as_str()) {
                return Err(format!("--skip: unknown scenario '{s}'").into());
            }
        }
        args.finish()?;
        // (result key, scenario, its options). The sweep runs the latency
        // scenario below the target rate, to show where the knee is.
        let mut jobs: Vec<(String, &str, Args)> =
            vec![("throughput".into(), "throughput", Args::default())];
        for rate in &sweep {
            jobs.push((
                format!("latency_at_{rate}"),
                "latency",
                Args::with(&[("rate", rate.to_string())]),
            ));
        }
        jobs.push(("latency".into(), "latency", Args::default()));
        let history_args = match &database_url {
            Some(url) => Args::with(&[("database-url", url.clone())]),
            None => Args::default(),
        };
        jobs.push(("history".into(), "history", history_args));
        jobs.push(("resume".into(), "resume", Args::default()));
        // Idle goes last: its thousands of closed sockets linger in TIME_WAIT.
        jobs.push(("idle".into(), "idle", Args::default()));
        let mut results = serde_json::Map::new();
        let mut sweep_results = Vec::new();
        let mut any_failed = false;
        jobs.retain(|(_, name, _)| !skip.iter().any(|s| s == name));
        let plans: Vec<(String, &str, Plan)> = jobs
            .into_iter()
            .map(|(key, name, mut sub)| Ok((key, name, plan(name, &mut sub, &common, quick)?)))
            .collect::<Result<_>>()?;
        ready(&api, &common).await?;
        for (key, name, plan) in plans {
            eprintln!(
                "chat-bench: running {key}{}",
                if quick { " (quick)" } else { "" }
            );
            let load_start = load_avg();
            let retries_before = api::setup_retries().0;
            let mut r = match run_plan(&plan, &api).await {
                Ok(mut v) => {
                    v["scenario"] = json!(name);
                    v
                }
                Err(e) => json!({"scenario": name, "error": e.to_string(), "failed": true}),
            };
            r["load_avg_start"] = load_start;
            r["load_avg_end"] = load_avg();
            note_retries(&mut r, retries_before);
            summarize(name, &r);
            if key.starts_with("latency_at_") {
                // Informative: not part of the pass/fail verdict.
                sweep_results.push(r);
            } else {
                any_failed |= failed(&r);
                results.insert(key, r);
            }
            // Let the server settle between scenarios.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        results.insert("latency_sweep".into(), Value::Array(sweep_results));
        let all = json!({
            "scenario": "all",
            "quick": quick,
            "url": common.url,
            "started_at": started.to_rfc3339(),
            "finished_at": chrono::Utc::now().to_rfc3339(),
            "results": results,
            "failed": any_failed,
        });
        emit(&all, common.json_out.as_deref())?;
        return Ok(!any_failed);
    }
    let quick = args.flag("quick")?;
    let plan = plan(&scenario, &mut args, &common, quick)?;
    ready(&api, &common).await?;
    let load_start = load_avg();
    let mut r = run_plan(&plan, &api).await?;
    r["load_avg_start"] = load_start;
    r["load_avg_end"] = load_avg();
    note_retries(&mut r, 0);
    r["scenario"] = json!(scenario);
    r["url"] = json!(common.url);
    r["started_at"] = json!(started.to_rfc3339());
    r["finished_at"] = json!(chrono::Utc::now().to_rfc3339());
    summarize(&scenario, &r);
    emit(&r, common.json_out.as_deref())?;
    Ok(!failed(&r))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = argv.first().cloned() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(scenario.as_str(), "-h" | "--help" | "help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(scenario, args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chat-bench: some checks failed (see the JSON)");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
