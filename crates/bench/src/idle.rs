//! The `idle` scenario: many sockets that say nothing. Measures the
//! handshake rate during the ramp (upgrade, token check, membership check,
//! subscription, `connection_established`) and the server's resident memory
//! per open socket.

use crate::Result;
use crate::api::Api;
use crate::stats::{Percentiles, round3};
use crate::sysinfo::{self, CpuSnapshot};
use crate::ws;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Settings of the idle scenario.
#[derive(Debug, Clone)]
pub struct Config {
    pub sockets: usize,
    pub pairs: usize,
    pub concurrency: usize,
    pub idle: Duration,
    pub ramp_timeout: Duration,
    pub server_pid: Option<u32>,
    pub setup_concurrency: usize,
    /// Loopback source addresses to spread the sockets over (1: let the kernel pick).
    pub source_ips: usize,
}

/// File descriptors kept free for everything else a process holds.
const FD_RESERVE: u64 = 150;

/// Runs the scenario; the JSON result.
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    let own_limit = sysinfo::raise_nofile();
    let server_limit = cfg
        .server_pid
        .and_then(|pid| sysinfo::nofile_limit(&pid.to_string()));
    let mut sockets = cfg.sockets;
    let mut clamp_reasons = Vec::new();
    let mut clamp = |max: usize, reason: String| {
        if cfg.sockets > max {
            sockets = sockets.min(max);
            clamp_reasons.push(reason);
        }
    };
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    clamp(
        as_usize(own_limit.saturating_sub(FD_RESERVE)),
        format!("this tool's RLIMIT_NOFILE is {own_limit}"),
    );
    if let Some(limit) = server_limit {
        clamp(
            as_usize(limit.saturating_sub(FD_RESERVE)),
            format!("the server's RLIMIT_NOFILE is {limit}"),
        );
    }
    let ports = sysinfo::ephemeral_ports();
    if let Some((lo, hi)) = ports {
        let available = (hi.saturating_sub(lo) + 1) as usize;
        clamp(
            available.saturating_sub(500),
            format!("ephemeral ports {lo}-{hi}"),
        );
    }
    if sockets == 0 {
        return Err("no socket can be opened within the limits".into());
    }
    if sockets < cfg.sockets {
        eprintln!(
            "idle: opening {sockets} sockets instead of {} ({})",
            cfg.sockets,
            clamp_reasons.join("; ")
        );
    }

    let rss_at_start = cfg.server_pid.map(sysinfo::rss_kib).transpose()?;
    let setup_started = Instant::now();
    let pairs = api
        .create_pairs("id", cfg.pairs.max(1), cfg.setup_concurrency)
        .await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    // Let the allocator settle after the setup burst before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = cfg.server_pid.map(sysinfo::rss_kib).transpose()?;
    let fds_before = cfg.server_pid.and_then(sysinfo::open_fds);

    // Socket i: user i % (2 * pairs), on that user's conversation.
    let targets: Vec<(i64, String)> = pairs
        .iter()
        .flat_map(|p| {
            [
                (p.conversation, p.a.token.clone()),
                (p.conversation, p.b.token.clone()),
            ]
        })
        .collect();
    let urls: Vec<String> = targets
        .iter()
        .map(|(conv, token)| api.ws_url(*conv, token))
        .collect::<Result<_>>()?;

    let cpu_before = CpuSnapshot::take(cfg.server_pid);
    let server = api.server_v4();
    let source_ips = cfg.source_ips.clamp(1, 254);
    let ramp_started = Instant::now();
    let ramp_deadline = tokio::time::Instant::now() + cfg.ramp_timeout;
    let mut holders: Vec<JoinHandle<()>> = Vec::with_capacity(sockets);
    let mut handshake = Vec::with_capacity(sockets);
    let mut completed_at: Vec<f64> = Vec::with_capacity(sockets);
    let mut failures = 0usize;
    let mut first_failures: Vec<String> = Vec::new();
    let mut attempts = stream::iter(0..sockets)
        .map(|i| {
            let url = &urls[i % urls.len()];
            let route = server.filter(|_| source_ips > 1).map(|server| ws::Route {
                // 127.0.0.1, 127.0.0.2, ...: all of 127.0.0.0/8 is this machine.
                local: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % source_ips) as u8)),
                server,
            });
            async move {
                let started = Instant::now();
                let result = ws::connect(url, true, route).await;
                (started.elapsed(), result)
            }
        })
        .buffer_unordered(cfg.concurrency.max(1));
    loop {
        let next = match tokio::time::timeout_at(ramp_deadline, attempts.next()).await {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(_) => {
                first_failures.push("ramp timeout".into());
                break;
            }
        };
        match next {
            (took, Ok(mut socket)) => {
                handshake.push(took);
                completed_at.push(ramp_started.elapsed().as_secs_f64());
                // Keep reading so pings are answered; end when closed.
                holders.push(tokio::spawn(async move {
                    while let Some(Ok(_)) = socket.next().await {}
                }));
            }
            (_, Err(e)) => {
                failures += 1;
                if first_failures.len() < 5 {
                    first_failures.push(e.to_string());
                }
            }
        }
    }
    drop(attempts);
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    let ramp_cpu = cpu_before.cores_since(&CpuSnapshot::take(cfg.server_pid), ramp_seconds);
    let opened = holders.len();

    tokio::time::sleep(cfg.idle).await;
    let rss_after = cfg.server_pid.map(sysinfo::rss_kib).transpose()?;
    let fds_after = cfg.server_pid.and_then(sysinfo::open_fds);
    let still_open = holders.iter().filter(|h| !h.is_finished()).count();
    for h in &holders {
        h.abort();
    }
    for h in holders {
        let _ = h.await;
    }

    let per_socket = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened > 0 => Some(round3((a as f64 - b as f64) / opened as f64)),
        _ => None,
    };
    let hs = Percentiles::from_durations(&handshake);
    // Handshake rate over each quarter of the sockets opened: does it
    // fall as the server holds more sockets?
    let quarters: Vec<f64> = (0..4)
        .filter_map(|q| {
            let n = completed_at.len();
            let (lo, hi) = (n * q / 4, n * (q + 1) / 4);
            if hi <= lo {
                return None;
            }
            let t0 = if lo == 0 { 0.0 } else { completed_at[lo - 1] };
            let t1 = completed_at[hi - 1];
            Some(round3((hi - lo) as f64 / (t1 - t0).max(1e-9)))
        })
        .collect();
    Ok(json!({
        "sockets_requested": cfg.sockets,
        "sockets_attempted": sockets,
        "clamped_because": clamp_reasons,
        "sockets_opened": opened,
        "sockets_open_after_idle": still_open,
        "failures": failures,
        "first_failures": first_failures,
        "pairs": pairs.len(),
        "users": pairs.len() * 2,
        "ramp_concurrency": cfg.concurrency,
        "source_ips": if server.is_some() { source_ips } else { 1 },
        "setup_s": round3(setup_seconds),
        "ramp_s": round3(ramp_seconds),
        "handshakes_per_s": round3(opened as f64 / ramp_seconds.max(1e-9)),
        "handshake_latency": hs.to_json(),
        "handshakes_per_s_by_quarter": quarters,
        "ramp_cpu_cores": ramp_cpu,
        "idle_s": cfg.idle.as_secs_f64(),
        "server_rss_at_start_kib": rss_at_start,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_fds_before": fds_before,
        "server_fds_after": fds_after,
        "kib_per_socket": per_socket,
        "own_nofile_limit": own_limit,
        "server_nofile_limit": server_limit,
        "ephemeral_ports": ports.map(|(a, b)| json!([a, b])),
        "failed": failures > 0 || still_open < opened,
    }))
}
