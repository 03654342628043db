//! `chat-bench report`: turns the JSON of `chat-bench all` into
//! BENCHMARKS.md, with the targets and whether each was met.

use crate::Result;
use crate::args::Args;
use serde_json::Value;
use std::fmt::Write as _;

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn num(v: &Value, decimals: usize) -> String {
    match f(v) {
        Some(x) => format!("{x:.decimals$}"),
        None => "n/a".into(),
    }
}

/// 25000.4 -> "25,000".
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    }
}

fn lat_row(name: &str, v: &Value) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} |\n",
        v["count"],
        num(&v["p50_ms"], 3),
        num(&v["p90_ms"], 3),
        num(&v["p99_ms"], 3),
        num(&v["p999_ms"], 3),
        num(&v["max_ms"], 3)
    )
}

const LAT_HEAD: &str =
    "| | n | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|\n";

/// One row of the targets table: (target, measured, verdict).
type Row = (String, String, &'static str);

fn targets(r: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    let tp = &r["throughput"];
    if tp.get("error").is_none() && tp.is_object() {
        let delivered = f(&tp["delivered_msgs_per_s"]);
        let integrity_ok = tp["integrity"]["ok"].as_bool() == Some(true);
        let mut measured = format!(
            "{} deliveries/s to receiver sockets ({} persisted msgs/s, each delivered to {} receiver sockets), {} pairs",
            delivered.map_or("n/a".into(), thousands),
            f(&tp["persisted_msgs_per_s"]).map_or("n/a".into(), thousands),
            tp["sockets_per_user"],
            tp["pairs"]
        );
        if !integrity_ok {
            measured.push_str("; INTEGRITY FAILURES (see details)");
        }
        rows.push((
            "≥ 25,000 delivered persisted msgs/s with 100 pairs".into(),
            measured,
            verdict(delivered.map(|d| d >= 25_000.0 && integrity_ok)),
        ));
    } else {
        rows.push((
            "≥ 25,000 delivered persisted msgs/s with 100 pairs".into(),
            error_of(tp),
            verdict(None),
        ));
    }
    let lt = &r["latency"];
    if lt.get("error").is_none() && lt.is_object() {
        let p99 = f(&lt["latency"]["p99_ms"]);
        rows.push((
            "p99 ≤ 5 ms at 2,000 msgs/s".into(),
            format!(
                "p99 {} ms (p50 {} ms) from the scheduled send time, at {} msgs/s achieved (target rate {})",
                num(&lt["latency"]["p99_ms"], 3),
                num(&lt["latency"]["p50_ms"], 3),
                num(&lt["send_rate_per_s"], 0),
                lt["target_rate_per_s"]
            ),
            verdict(p99.map(|p| p <= 5.0 && lt["integrity"]["ok"].as_bool() == Some(true))),
        ));
    } else {
        rows.push((
            "p99 ≤ 5 ms at 2,000 msgs/s".into(),
            error_of(lt),
            verdict(None),
        ));
    }
    let id = &r["idle"];
    if id.get("error").is_none() && id.is_object() {
        let kib = f(&id["kib_per_socket"]);
        let clamped = id["sockets_opened"].as_u64().unwrap_or(0)
            < id["sockets_requested"].as_u64().unwrap_or(0);
        rows.push((
            "≤ 10 KiB per idle socket at 20,000 sockets".into(),
            format!(
                "{} KiB per socket with {} sockets open{}",
                num(&id["kib_per_socket"], 2),
                id["sockets_opened"],
                if clamped {
                    " (fewer than requested: see details)"
                } else {
                    ""
                }
            ),
            verdict(kib.map(|k| k <= 10.0)),
        ));
        let hs = f(&id["handshakes_per_s"]);
        rows.push((
            "≥ 5,000 handshakes/s".into(),
            format!(
                "{} handshakes/s ({} in flight)",
                hs.map_or("n/a".into(), thousands),
                id["ramp_concurrency"]
            ),
            verdict(hs.map(|h| h >= 5_000.0)),
        ));
    } else {
        rows.push((
            "≤ 10 KiB per idle socket at 20,000 sockets".into(),
            error_of(id),
            verdict(None),
        ));
        rows.push(("≥ 5,000 handshakes/s".into(), error_of(id), verdict(None)));
    }
    let hi = &r["history"];
    if hi.get("error").is_none() && hi.is_object() {
        let size = format!(
            "{} vs {} messages",
            hi["messages_big"], hi["messages_small"]
        );
        let p1 = f(&hi["page_1"]["ratio_p50"]);
        rows.push((
            "history page 1 on 1M within 1.5x of 1k".into(),
            format!(
                "ratio p50 {} (p99 {}): {} ms vs {} ms p50, {size}",
                num(&hi["page_1"]["ratio_p50"], 2),
                num(&hi["page_1"]["ratio_p99"], 2),
                num(&hi["page_1"]["big"]["p50_ms"], 3),
                num(&hi["page_1"]["small"]["p50_ms"], 3)
            ),
            verdict(p1.map(|x| x <= 1.5)),
        ));
        let b = f(&hi["cursor_before_middle"]["ratio_p50"]);
        let a = f(&hi["cursor_after_middle"]["ratio_p50"]);
        rows.push((
            "cursor reads on 1M within 1.5x of 1k".into(),
            format!(
                "before: ratio p50 {} (p99 {}); after: ratio p50 {} (p99 {}); {size}",
                num(&hi["cursor_before_middle"]["ratio_p50"], 2),
                num(&hi["cursor_before_middle"]["ratio_p99"], 2),
                num(&hi["cursor_after_middle"]["ratio_p50"], 2),
                num(&hi["cursor_after_middle"]["ratio_p99"], 2)
            ),
            verdict(b.zip(a).map(|(b, a)| b <= 1.5 && a <= 1.5)),
        ));
        let l = &hi["conversation_list"];
        let p99 = f(&l["latency"]["p99_ms"]);
        rows.push((
            "conversation list of a user with 1,000 conversations p99 ≤ 10 ms".into(),
            format!(
                "p99 {} ms (p50 {} ms) with {} conversations",
                num(&l["latency"]["p99_ms"], 3),
                num(&l["latency"]["p50_ms"], 3),
                l["conversations"]
            ),
            verdict(p99.map(|p| p <= 10.0)),
        ));
    } else {
        for t in [
            "history page 1 on 1M within 1.5x of 1k",
            "cursor reads on 1M within 1.5x of 1k",
            "conversation list of a user with 1,000 conversations p99 ≤ 10 ms",
        ] {
            rows.push((t.into(), error_of(hi), verdict(None)));
        }
    }
    rows
}

fn error_of(v: &Value) -> String {
    v["error"]
        .as_str()
        .map_or_else(|| "not run".into(), |e| format!("error: {e}"))
}

fn details(r: &Value, out: &mut String) -> std::fmt::Result {
    for name in ["throughput", "latency"] {
        let v = &r[name];
        writeln!(out, "### {name}\n")?;
        if v.get("error").is_some() || !v.is_object() {
            writeln!(out, "{}\n", error_of(v))?;
            continue;
        }
        if name == "throughput" {
            writeln!(
                out,
                "{} pairs, {} sockets ({} per user), window {} messages in flight per sender, {} s measured after {} s warm-up.\n",
                v["pairs"],
                v["sockets"],
                v["sockets_per_user"],
                v["window"],
                v["duration_s"],
                v["warmup_s"]
            )?;
        } else {
            writeln!(
                out,
                "Open loop: {} msgs/s scheduled evenly over {} pairs ({} sockets), {} s measured after {} s warm-up; latency counts from the scheduled send time.\n",
                v["target_rate_per_s"], v["pairs"], v["sockets"], v["duration_s"], v["warmup_s"]
            )?;
        }
        writeln!(out, "| figure | value |\n|---|---|")?;
        writeln!(
            out,
            "| messages sent in the window per s | {} |",
            num(&v["send_rate_per_s"], 0)
        )?;
        writeln!(
            out,
            "| persisted and echoed to the sender, msgs/s | {} |",
            num(&v["persisted_msgs_per_s"], 0)
        )?;
        writeln!(
            out,
            "| deliveries to the receiver's sockets per s | {} |",
            num(&v["delivered_msgs_per_s"], 0)
        )?;
        let i = &v["integrity"];
        writeln!(
            out,
            "| receiver sockets checked / missing / duplicate / out of order / socket errors | {} / {} / {} / {} / {} |",
            i["sockets"], i["missing"], i["duplicates"], i["out_of_order"], i["socket_errors"]
        )?;
        writeln!(
            out,
            "| CPU used during the window (cores) | `{}` |\n",
            v["cpu_cores"]
        )?;
        out.push_str(LAT_HEAD);
        out.push_str(&lat_row("end-to-end latency", &v["latency"]));
        out.push_str(&lat_row(
            "from the actual send",
            &v["latency_from_actual_send"],
        ));
        if name == "latency" {
            out.push_str(&lat_row("send lag (scheduled → written)", &v["send_lag"]));
        }
        out.push('\n');
    }
    let v = &r["idle"];
    writeln!(out, "### idle\n")?;
    if v.get("error").is_some() || !v.is_object() {
        writeln!(out, "{}\n", error_of(v))?;
    } else {
        writeln!(out, "| figure | value |\n|---|---|")?;
        writeln!(
            out,
            "| sockets requested / attempted / opened / still open after idling | {} / {} / {} / {} |",
            v["sockets_requested"],
            v["sockets_attempted"],
            v["sockets_opened"],
            v["sockets_open_after_idle"]
        )?;
        if let Some(c) = v["clamped_because"].as_array().filter(|c| !c.is_empty()) {
            let reasons: Vec<&str> = c.iter().filter_map(Value::as_str).collect();
            writeln!(out, "| why fewer were attempted | {} |", reasons.join("; "))?;
        }
        writeln!(out, "| users (pairs) | {} ({}) |", v["users"], v["pairs"])?;
        writeln!(out, "| failures | {} |", v["failures"])?;
        writeln!(
            out,
            "| ramp: seconds, handshakes in flight | {} s, {} |",
            num(&v["ramp_s"], 2),
            v["ramp_concurrency"]
        )?;
        writeln!(out, "| handshakes/s | {} |", num(&v["handshakes_per_s"], 0))?;
        writeln!(
            out,
            "| CPU during the ramp (cores) | `{}` |",
            v["ramp_cpu_cores"]
        )?;
        writeln!(
            out,
            "| server RSS before / after (KiB) | {} / {} |",
            v["server_rss_before_kib"], v["server_rss_after_kib"]
        )?;
        writeln!(
            out,
            "| server open fds before / after | {} / {} |",
            v["server_fds_before"], v["server_fds_after"]
        )?;
        writeln!(out, "| KiB per socket | {} |", num(&v["kib_per_socket"], 2))?;
        writeln!(
            out,
            "| RLIMIT_NOFILE tool / server | {} / {} |\n",
            v["own_nofile_limit"], v["server_nofile_limit"]
        )?;
        out.push_str(LAT_HEAD);
        out.push_str(&lat_row(
            "handshake (upgrade → connection_established)",
            &v["handshake_latency"],
        ));
        out.push('\n');
    }
    let v = &r["history"];
    writeln!(out, "### history\n")?;
    if v.get("error").is_some() || !v.is_object() {
        writeln!(out, "{}\n", error_of(v))?;
    } else {
        writeln!(
            out,
            "{} messages (big) and {} (small), inserted via {} in {} s; {} sequential reads of each kind, alternating big and small.\n",
            v["messages_big"],
            v["messages_small"],
            v["insert_method"],
            v["insert_s"],
            v["reads_per_kind"]
        )?;
        out.push_str(LAT_HEAD);
        for (kind, label) in [
            ("page_1", "page 1"),
            ("cursor_before_middle", "`?before=<middle id>&limit=50`"),
            ("cursor_after_middle", "`?after=<middle id>&limit=50`"),
        ] {
            out.push_str(&lat_row(&format!("{label}, big"), &v[kind]["big"]));
            out.push_str(&lat_row(&format!("{label}, small"), &v[kind]["small"]));
        }
        let d = &v["deep_page"];
        out.push_str(&lat_row(
            &format!("page {} (page_size {}), big", d["big_page"], d["page_size"]),
            &d["big"],
        ));
        out.push_str(&lat_row(
            &format!("page {} (last), small", d["small_page"]),
            &d["small"],
        ));
        let l = &v["conversation_list"];
        out.push_str(&lat_row(
            &format!("conversation list, {} conversations", l["conversations"]),
            &l["latency"],
        ));
        out.push('\n');
        writeln!(
            out,
            "Ratios big/small (p50, p99): page 1 {} / {}, before {} / {}, after {} / {}. The deep page uses OFFSET, whose cost grows with depth: reported, not a target.\n",
            num(&v["page_1"]["ratio_p50"], 2),
            num(&v["page_1"]["ratio_p99"], 2),
            num(&v["cursor_before_middle"]["ratio_p50"], 2),
            num(&v["cursor_before_middle"]["ratio_p99"], 2),
            num(&v["cursor_after_middle"]["ratio_p50"], 2),
            num(&v["cursor_after_middle"]["ratio_p99"], 2),
        )?;
    }
    Ok(())
}

/// Builds the markdown from the combined JSON.
pub fn render(all: &Value, machine: &str, settings: &str, notes: &str) -> Result<String> {
    let r = &all["results"];
    let mut out = String::new();
    writeln!(out, "# Benchmarks\n")?;
    writeln!(
        out,
        "Written by `crates/bench/run.sh` (`chat-bench all`, then `chat-bench report`) from a run started {} and finished {}.{}\n",
        all["started_at"].as_str().unwrap_or("?"),
        all["finished_at"].as_str().unwrap_or("?"),
        if all["quick"].as_bool() == Some(true) {
            " **Quick run: sizes are far below the targets' sizes, so the verdicts below say little.**"
        } else {
            ""
        }
    )?;
    writeln!(out, "## Targets\n")?;
    writeln!(out, "| target | measured | verdict |\n|---|---|---|")?;
    for (t, m, v) in targets(r) {
        writeln!(out, "| {t} | {m} | **{v}** |")?;
    }
    writeln!(out, "\n## Machine\n\n```text\n{}\n```\n", machine.trim())?;
    writeln!(out, "## Settings\n\n{}\n", settings.trim())?;
    if !notes.trim().is_empty() {
        writeln!(out, "## Notes\n\n{}\n", notes.trim())?;
    }
    writeln!(out, "## Details\n")?;
    details(r, &mut out)?;
    writeln!(
        out,
        "Raw results: the JSON line printed by `chat-bench all` (kept beside this file as `bench-results.json` by run.sh)."
    )?;
    Ok(out)
}

/// `chat-bench report --input all.json --out BENCHMARKS.md [--machine F] [--settings F] [--notes F]`.
pub fn run(mut args: Args) -> Result<()> {
    let input = args
        .take("input")
        .ok_or("report: --input FILE is required")?;
    let out_path = args.take("out").ok_or("report: --out FILE is required")?;
    let read = |opt: Option<String>| -> Result<String> {
        match opt {
            Some(p) => {
                std::fs::read_to_string(&p).map_err(|e| format!("cannot read {p}: {e}").into())
            }
            None => Ok(String::new()),
        }
    };
    let machine = read(args.take("machine"))?;
    let settings = read(args.take("settings"))?;
    let notes = read(args.take("notes"))?;
    args.finish()?;
    let raw = std::fs::read_to_string(&input).map_err(|e| format!("cannot read {input}: {e}"))?;
    let all: Value = serde_json::from_str(raw.trim())?;
    let md = render(&all, &machine, &settings, &notes)?;
    std::fs::write(&out_path, md).map_err(|e| format!("cannot write {out_path}: {e}"))?;
    println!("wrote {out_path}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(25_000.0), "25,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn renders_verdicts_and_errors() -> Result<()> {
        let all = json!({
            "quick": false, "started_at": "a", "finished_at": "b",
            "results": {
                "throughput": {"delivered_msgs_per_s": 30000.0, "persisted_msgs_per_s": 15000.0,
                               "sockets_per_user": 2, "pairs": 100, "integrity": {"ok": true}},
                "latency": {"latency": {"p99_ms": 7.5, "p50_ms": 1.0}, "integrity": {"ok": true}},
                "history": {"error": "no psql"},
            }
        });
        let md = render(&all, "m", "s", "")?;
        assert!(md.contains("30,000 deliveries/s"));
        assert!(md.contains("| **met** |"));
        assert!(md.contains("| **not met** |"));
        assert!(md.contains("error: no psql"));
        assert!(md.contains("not run"));
        Ok(())
    }
}
