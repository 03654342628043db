//! What the benchmark reads from /proc: a process's RSS, CPU time, open
//! files and limits, and this machine's ephemeral port range.

use crate::Result;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::sync::OnceLock;

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status").into())
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// The soft "Max open files" of a process (from /proc/PID/limits).
pub fn nofile_limit(pid: &str) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Raises this process's soft RLIMIT_NOFILE as far as the hard limit
/// allows; the resulting soft limit.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => nofile_limit("self").unwrap_or(1024),
    }
}

/// This machine's load average over 1, 5 and 15 minutes.
pub fn load_avg() -> Option<[f64; 3]> {
    let raw = fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = raw.split_whitespace().filter_map(|s| s.parse().ok());
    Some([it.next()?, it.next()?, it.next()?])
}

/// The local ephemeral port range (for the idle scenario's arithmetic).
pub fn ephemeral_ports() -> Option<(u32, u32)> {
    let raw = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = raw.split_whitespace().filter_map(|s| s.parse().ok());
    Some((it.next()?, it.next()?))
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// (comm, utime + stime in ticks) of a process.
fn stat(pid: &str) -> Option<(String, u64)> {
    let raw = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = raw.find('(')?;
    let close = raw.rfind(')')?;
    let comm = raw.get(open + 1..close)?.to_owned();
    // Fields after the comm start at field 3 (state); utime and stime are 14 and 15.
    let rest: Vec<&str> = raw.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Busy time of the whole machine (all cores) from /proc/stat, in ticks.
fn machine_busy_ticks() -> Option<u64> {
    let raw = fs::read_to_string("/proc/stat").ok()?;
    let line = raw.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// Processes named on the command line (`--watch-pids name=pid,...`: the
/// other nodes, each shard's redis-server), reported under their names.
static WATCHED: OnceLock<Vec<(&'static str, u32)>> = OnceLock::new();

/// Parses and records `name=pid,name=pid` for every later [`CpuSnapshot`].
pub fn watch_pids(list: &str) -> Result<()> {
    let mut watched = Vec::new();
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let (name, pid) = item
            .split_once('=')
            .ok_or_else(|| format!("--watch-pids: '{item}' is not name=pid"))?;
        let pid: u32 = pid
            .parse()
            .map_err(|_| format!("--watch-pids: bad pid in '{item}'"))?;
        // A handful of names for the life of the process.
        watched.push((&*Box::leak(name.to_owned().into_boxed_str()), pid));
    }
    WATCHED
        .set(watched)
        .map_err(|_| "--watch-pids given twice".to_owned())?;
    Ok(())
}

/// CPU time consumed so far by the server, this tool, PostgreSQL and Redis.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    ticks: BTreeMap<&'static str, u64>,
    /// PostgreSQL and Redis per process: backends come and go, and a sum
    /// would fall when one ends between two snapshots.
    procs: BTreeMap<(&'static str, u32), u64>,
}

impl CpuSnapshot {
    /// Reads /proc now. PostgreSQL and Redis are summed over every process
    /// with that name (the benchmark is alone on this machine).
    pub fn take(server_pid: Option<u32>) -> Self {
        let mut ticks = BTreeMap::new();
        let mut procs = BTreeMap::new();
        if let Some(pid) = server_pid
            && let Some((_, t)) = stat(&pid.to_string())
        {
            ticks.insert("server", t);
        }
        if let Some((_, t)) = stat("self") {
            ticks.insert("bench", t);
        }
        for (name, pid) in WATCHED.get().map_or(&[][..], Vec::as_slice) {
            if let Some((_, t)) = stat(&pid.to_string()) {
                ticks.insert(name, t);
            }
        }
        if let Ok(dir) = fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str() else { continue };
                let Ok(number) = pid.parse::<u32>() else {
                    continue;
                };
                let Some((comm, t)) = stat(pid) else { continue };
                let key = match comm.as_str() {
                    "postgres" => "postgres",
                    "redis-server" => "redis",
                    _ => continue,
                };
                procs.insert((key, number), t);
            }
        }
        if let Some(busy) = machine_busy_ticks() {
            ticks.insert("machine_busy", busy);
        }
        Self { ticks, procs }
    }

    /// Cores used by each between `self` and `later` over `seconds`
    /// (1.0 = one core busy the whole time), with `machine_busy` (every
    /// process) and `other` (everything not named: e.g. a compiler running
    /// beside the benchmark, which disturbs it).
    pub fn cores_since(&self, later: &Self, seconds: f64) -> Value {
        let hz = clock_ticks();
        let mut out = serde_json::Map::new();
        let mut named = 0.0;
        // Per process: what each used since the first snapshot (all of it
        // for one started since); one that ended in between is not seen.
        let mut ticks = later.ticks.clone();
        let mut earlier = self.ticks.clone();
        for key in ["postgres", "redis"] {
            let used: u64 = later
                .procs
                .iter()
                .filter(|((k, _), _)| *k == key)
                .map(|(id, &t1)| t1.saturating_sub(self.procs.get(id).copied().unwrap_or(0)))
                .sum();
            ticks.insert(key, used);
            earlier.insert(key, 0);
        }
        for (k, &t1) in &ticks {
            if let Some(&t0) = earlier.get(k) {
                let cores = t1.saturating_sub(t0) as f64 / hz / seconds.max(1e-9);
                if *k != "machine_busy" {
                    named += cores;
                }
                out.insert((*k).to_owned(), json!(crate::stats::round3(cores)));
            }
        }
        if let Some(busy) = out.get("machine_busy").and_then(Value::as_f64) {
            out.insert(
                "other".into(),
                json!(crate::stats::round3((busy - named).max(0.0))),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() -> Result<()> {
        let pid = std::process::id();
        assert!(rss_kib(pid)? > 0);
        assert!(open_fds(pid).unwrap_or(0) > 0);
        assert!(nofile_limit("self").unwrap_or(0) > 0);
        assert!(load_avg().is_some_and(|l| l.iter().all(|x| *x >= 0.0)));
        let (comm, _) = stat("self").ok_or("no stat")?;
        assert!(!comm.is_empty());
        let a = CpuSnapshot::take(Some(pid));
        let b = CpuSnapshot::take(Some(pid));
        let c = a.cores_since(&b, 1.0);
        assert!(c.get("server").is_some());
        assert!(c.get("machine_busy").is_some() && c.get("other").is_some());
        Ok(())
    }
}
