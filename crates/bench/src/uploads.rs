//! The `uploads` scenario: `clients` users upload a file of `size_mib` MiB
//! each, all at once, to `POST /api/chat/attachments/`; reports the
//! aggregate throughput (MiB/s of file bytes, from the first request to
//! the last answer), each upload's time, and the server's resident memory
//! before and at its peak while they run (sampled every 20 ms).

use crate::Result;
use crate::api::{Api, User};
use crate::stats::{Percentiles, round3};
use crate::sysinfo::{CpuSnapshot, rss_kib};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Settings of the scenario.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent uploaders (one upload each per round).
    pub clients: usize,
    /// Size of each file.
    pub size_mib: usize,
    /// Rounds (all clients at once in each).
    pub rounds: usize,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
}

const BOUNDARY: &str = "chat-bench-upload-boundary";

/// One multipart body with a text file of `size` bytes (text, so the
/// server's sniffing reads it whole: the costliest allowed type).
fn body(size: usize) -> &'static [u8] {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    let line = b"chat-bench upload payload line, plain text 0123456789\n";
    while b.len() < size {
        b.extend_from_slice(line);
    }
    b.truncate(b.len().min(size.max(1) + 128));
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    // One body shared by every request of the run.
    Box::leak(b.into_boxed_slice())
}

/// Samples the server's RSS until `stop`; returns the peak (KiB).
fn sample_peak(
    pid: u32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(kib) = rss_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

async fn upload_one(api: &Api, user: &User, body: &'static [u8]) -> Result<Duration> {
    let started = Instant::now();
    let res = api
        .http()
        .post(api.url("/api/chat/attachments/")?)
        .bearer_auth(&user.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    if status.as_u16() != 201 {
        return Err(format!("upload answered {status}: {text}").into());
    }
    Ok(started.elapsed())
}

/// Runs the scenario.
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    let users = api.create_users("up", cfg.clients, cfg.concurrency).await?;
    let size = cfg.size_mib * 1024 * 1024;
    let payload = body(size);
    // One small upload per user first: connections and code paths warm.
    for u in users.iter().take(4) {
        let small = body(1024);
        upload_one(api, u, small).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = cfg.server_pid.map(rss_kib).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle_kib.unwrap_or(0)));
    let sampler = cfg
        .server_pid
        .map(|pid| sample_peak(pid, stop.clone(), peak.clone()));
    let cpu_before = CpuSnapshot::take(cfg.server_pid);
    let started = Instant::now();
    let mut times = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..cfg.rounds.max(1) {
        let round =
            futures_util::future::join_all(users.iter().map(|u| upload_one(api, u, payload))).await;
        for r in round {
            match r {
                Ok(t) => times.push(t),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_before.cores_since(&CpuSnapshot::take(cfg.server_pid), wall);
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.join();
    }
    let after_kib = cfg.server_pid.map(rss_kib).transpose()?;
    let ok = times.len();
    let mib = (ok * cfg.size_mib) as f64;
    let peak_kib = peak.load(Ordering::Relaxed);
    let above = idle_kib.map(|idle| peak_kib.saturating_sub(idle));
    errors.truncate(5);
    Ok(json!({
        "clients": cfg.clients,
        "size_mib": cfg.size_mib,
        "rounds": cfg.rounds,
        "uploads_ok": ok,
        "upload_errors": errors,
        "wall_s": round3(wall),
        "throughput_mib_per_s": round3(mib / wall.max(1e-9)),
        "upload_latency": Percentiles::from_durations(&times).to_json(),
        "server_rss_idle_kib": idle_kib,
        "server_rss_peak_kib": cfg.server_pid.map(|_| peak_kib),
        "server_rss_after_kib": after_kib,
        "server_rss_peak_above_idle_mib": above.map(|k| round3(k as f64 / 1024.0)),
        "cpu_cores": cpu,
        "failed": ok != cfg.clients * cfg.rounds.max(1),
    }))
}
