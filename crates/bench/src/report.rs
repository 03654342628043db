//! `chat-bench report`: turns the JSON of `chat-bench all` into
//! BENCHMARKS.md, with the targets and whether each was met.

use crate::Result;
use crate::args::Args;
use serde_json::Value;
use std::fmt::Write as _;

pub(crate) fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

pub(crate) fn num(v: &Value, decimals: usize) -> String {
    match f(v) {
        Some(x) => format!("{x:.decimals$}"),
        None => "n/a".into(),
    }
}

/// 25000.4 -> "25,000".
pub(crate) fn thousands(x: f64) -> String {
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

pub(crate) fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    }
}

pub(crate) fn lat_row(name: &str, v: &Value) -> String {
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

pub(crate) const LAT_HEAD: &str =
    "| | n | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|\n";

/// One row of the targets table: (target, measured, verdict).
pub(crate) type Row = (String, String, &'static str);

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
            {
                let mut m = format!(
                    "p99 {} ms (p50 {} ms) from the scheduled send time; sent {} msgs/s, the other user received {} distinct msgs/s",
                    num(&lt["latency"]["p99_ms"], 3),
                    num(&lt["latency"]["p50_ms"], 3),
                    f(&lt["send_rate_per_s"]).map_or("n/a".into(), thousands),
                    f(&lt["delivered_unique_msgs_per_s"]).map_or("n/a".into(), thousands),
                );
                let below: Vec<String> = r["latency_sweep"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter(|v| v.get("error").is_none())
                            .map(|v| {
                                format!(
                                    "p99 {} ms at {} msgs/s",
                                    num(&v["latency"]["p99_ms"], 3),
                                    f(&v["target_rate_per_s"]).map_or("?".into(), thousands)
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if !below.is_empty() {
                    m.push_str(&format!(" (lower rates: {})", below.join(", ")));
                }
                m
            },
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
                "{} KiB per socket with {} sockets open{}{}",
                num(&id["kib_per_socket"], 2),
                f(&id["sockets_opened"]).map_or("?".into(), thousands),
                if clamped {
                    " (fewer than requested: see details)"
                } else {
                    ""
                },
                f(&r["heap"]["bytes_per_socket"]).map_or(String::new(), |b| format!(
                    "; live heap {:.1} KiB per socket, by allocation site in \"what an idle \
                     socket holds\"",
                    b / 1024.0
                )),
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
            f(&hi["messages_big"]).map_or("?".into(), thousands),
            f(&hi["messages_small"]).map_or("?".into(), thousands)
        );
        let p1 = f(&hi["page_1"]["ratio_p50"]);
        let label = match hi["reactions_big"].as_str() {
            Some(_) => "history page 1 on 1M, reactions on every other message, within 1.5x of 1k",
            None => "history page 1 on 1M within 1.5x of 1k",
        };
        rows.push((
            label.into(),
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
    rows.push(resume_target(&r["resume"]));
    if r["compare"].is_object() {
        rows.push(compare_target(&r["compare"]));
        rows.push(full_feature_target(&r["compare"]));
        rows.push(cpu_per_message_row(&r["compare"]));
    }
    rows.extend(crate::report_features::targets(r));
    rows
}

const RESUME_TARGET: &str = "replaying 1,000 missed events on resume p99 < 50 ms";

fn resume_target(rs: &Value) -> Row {
    if rs.get("error").is_some() || !rs.is_object() {
        return (RESUME_TARGET.into(), error_of(rs), verdict(None));
    }
    let p99 = f(&rs["latency"]["p99_ms"]);
    let errors = rs["errors"].as_u64().unwrap_or(0);
    let mut measured = format!(
        "p99 {} ms (p50 {} ms, max {} ms) from the upgrade request to the {} replayed event, {} resumes",
        num(&rs["latency"]["p99_ms"], 3),
        num(&rs["latency"]["p50_ms"], 3),
        num(&rs["latency"]["max_ms"], 3),
        ordinal(&rs["events_per_resume"]),
        rs["resumes"]
    );
    if errors > 0 {
        measured.push_str(&format!("; {errors} RESUMES FAILED (see details)"));
    }
    (
        RESUME_TARGET.into(),
        measured,
        verdict(p99.map(|p| p < 50.0 && errors == 0)),
    )
}

/// 1000 -> "1,000th".
fn ordinal(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => {
            let suffix = match (n % 10, n % 100) {
                (_, 11..=13) => "th",
                (1, _) => "st",
                (2, _) => "nd",
                (3, _) => "rd",
                _ => "th",
            };
            format!("{}{suffix}", thousands(n as f64))
        }
        None => "last".into(),
    }
}

fn rev(v: &Value) -> String {
    v.as_str()
        .map(|s| s.chars().take(7).collect())
        .filter(|s: &String| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn compare_target(c: &Value) -> Row {
    let target = format!(
        "throughput with the event log not below before it ({}), same machine, one run",
        rev(&c["before_rev"])
    );
    let median = |label: &str| f(&c["by_label"][label]["median"]);
    let runs = |label: &str| c["by_label"][label]["runs"].as_u64().unwrap_or(0);
    let (Some(before), Some(after), Some(ratio)) = (
        median("before"),
        median("after"),
        f(&c["ratio_after_before"]),
    ) else {
        return (target, "no figures (see details)".into(), verdict(None));
    };
    let mut measured = format!(
        "after ({}) {} vs before {} deliveries/s, medians of {}, alternating, on fresh databases \
         (persisted msgs/s {} vs {}): ratio {ratio:.3}",
        rev(&c["after_rev"]),
        thousands(after),
        thousands(before),
        if runs("after") == runs("before") {
            format!("{} runs each", runs("after"))
        } else {
            format!("{} and {} runs", runs("after"), runs("before"))
        },
        f(&c["by_label"]["after"]["persisted_median"]).map_or("n/a".into(), thousands),
        f(&c["by_label"]["before"]["persisted_median"]).map_or("n/a".into(), thousands),
    );
    if let (Some(s), Some(sr)) = (median("after_streams"), f(&c["ratio_after_streams_before"])) {
        measured.push_str(&format!(
            "; with one user stream per user also open: {} ({sr:.3})",
            thousands(s)
        ));
    }
    let failed = c["failed"].as_bool() == Some(true);
    if failed {
        measured.push_str("; SOME RUNS FAILED (see details)");
    }
    (target, measured, verdict(Some(ratio >= 1.0 && !failed)))
}

const FULL_FEATURE_TARGET: &str = "≥ 16,000 persisted msgs/s (100 pairs, window 16) with the user stream and \
     the event log on, and ≥ 100x the Django stack on the same scenario in the same run";

/// Issue 18's throughput target: the after server with every user's
/// stream open, against its floor and against the Django reference.
fn full_feature_target(c: &Value) -> Row {
    let persisted = |label: &str| f(&c["by_label"][label]["persisted_median"]);
    let Some(streams) = persisted("after_streams") else {
        return (
            FULL_FEATURE_TARGET.into(),
            "no run with user streams (BENCH_USER_STREAMS=0?)".into(),
            verdict(None),
        );
    };
    let mut measured = format!(
        "{} persisted msgs/s with one user stream per user open (median of {} runs; {} without)",
        thousands(streams),
        c["by_label"]["after_streams"]["runs"],
        persisted("after").map_or("n/a".into(), thousands),
    );
    let django = persisted(crate::compare::DJANGO);
    let ratio = f(&c["ratio_after_streams_django"]);
    match (django, ratio) {
        (Some(d), Some(r)) => measured.push_str(&format!(
            "; Django {} persisted msgs/s ({} runs, {} messages lost in all): {r:.0}x with streams, \
             {}x without (ratio of deliveries/s)",
            thousands(d),
            c["by_label"][crate::compare::DJANGO]["runs"],
            c["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["label"] == crate::compare::DJANGO)
                .filter_map(|r| r["integrity_missing"].as_u64())
                .sum::<u64>(),
            num(&c["ratio_after_django"], 0),
        )),
        _ => measured.push_str("; Django not run (BENCH_DJANGO_DIR)"),
    }
    let failed = c["failed"].as_bool() == Some(true);
    if failed {
        measured.push_str("; SOME RUNS FAILED (see details)");
    }
    let ok = ratio.map(|r| r >= 100.0 && streams >= 16_000.0 && !failed);
    (FULL_FEATURE_TARGET.into(), measured, verdict(ok))
}

/// Server and PostgreSQL CPU per 1,000 messages, before and after.
fn cpu_per_message_row(c: &Value) -> Row {
    let cell = |label: &str| {
        let l = &c["by_label"][label];
        format!(
            "server {} / PostgreSQL {}",
            num(&l["server_core_ms_per_1k"], 1),
            num(&l["postgres_core_ms_per_1k"], 1)
        )
    };
    let mut measured = format!(
        "core-ms per 1,000 persisted messages (each delivered to 4 conversation sockets), medians: \
         before ({}) {}; after {}",
        rev(&c["before_rev"]),
        cell("before"),
        cell("after")
    );
    if c["by_label"]["after_streams"].is_object() {
        measured.push_str(&format!(
            "; after with user streams {}",
            cell("after_streams")
        ));
    }
    if c["by_label"][crate::compare::DJANGO].is_object() {
        measured.push_str(&format!("; Django {}", cell(crate::compare::DJANGO)));
    }
    (
        "server and PostgreSQL CPU per 1,000 delivered messages, before and after".into(),
        measured,
        "recorded",
    )
}

pub(crate) fn error_of(v: &Value) -> String {
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
                f(&v["target_rate_per_s"]).map_or("?".into(), thousands),
                v["pairs"],
                v["sockets"],
                v["duration_s"],
                v["warmup_s"]
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
            "| sender sockets that failed | {} {} |",
            v["sender_errors"], v["first_sender_errors"]
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
    if let Some(sweep) = r["latency_sweep"].as_array().filter(|s| !s.is_empty()) {
        writeln!(out, "### latency at lower rates\n")?;
        writeln!(
            out,
            "The latency scenario again below the target rate (same pairs and sockets), to show where queueing starts.\n"
        )?;
        writeln!(
            out,
            "| rate scheduled | achieved send rate | persisted msgs/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | integrity | sender errors |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
        for v in sweep {
            if v.get("error").is_some() {
                writeln!(out, "| ? | {} | | | | | | | | |", error_of(v))?;
                continue;
            }
            let l = &v["latency"];
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f(&v["target_rate_per_s"]).map_or("?".into(), thousands),
                num(&v["send_rate_per_s"], 0),
                num(&v["persisted_msgs_per_s"], 0),
                num(&l["p50_ms"], 3),
                num(&l["p90_ms"], 3),
                num(&l["p99_ms"], 3),
                num(&l["p999_ms"], 3),
                num(&l["max_ms"], 3),
                if v["integrity"]["ok"].as_bool() == Some(true) {
                    "ok"
                } else {
                    "FAILED"
                },
                v["sender_errors"]
            )?;
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
            "| handshakes/s over each quarter of the ramp | {} |",
            v["handshakes_per_s_by_quarter"]
        )?;
        writeln!(
            out,
            "| CPU during the ramp (cores) | `{}` |",
            v["ramp_cpu_cores"]
        )?;
        writeln!(
            out,
            "| server RSS at start / before the sockets / after (KiB) | {} / {} / {} |",
            v["server_rss_at_start_kib"], v["server_rss_before_kib"], v["server_rss_after_kib"]
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
    resume_details(&r["resume"], out)?;
    if r["compare"].is_object() {
        compare_details(&r["compare"], out)?;
    }
    crate::report_features::details(r, out)?;
    let v = &r["history"];
    writeln!(out, "### history\n")?;
    if v.get("error").is_some() || !v.is_object() {
        writeln!(out, "{}\n", error_of(v))?;
    } else {
        writeln!(
            out,
            "{} messages (big) and {} (small), inserted via {} in {} s; {} sequential reads of each kind, alternating big and small.{}\n",
            f(&v["messages_big"]).map_or("?".into(), thousands),
            f(&v["messages_small"]).map_or("?".into(), thousands),
            v["insert_method"].as_str().unwrap_or("?"),
            v["insert_s"],
            v["reads_per_kind"],
            v["reactions_big"]
                .as_str()
                .map_or(String::new(), |r| format!(
                    " Reactions in the big conversation: {r} ({} of page 1's messages show \
                     reactions); none in the small one.",
                    v["page_1_messages_with_reactions"]
                ))
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
        if let Some(errs) = v["read_errors"].as_array().filter(|e| !e.is_empty()) {
            for e in errs {
                writeln!(
                    out,
                    "| read error: {} | | | | | | |",
                    e.as_str().unwrap_or_default()
                )?;
            }
        }
        out.push_str(&lat_row(
            &format!("conversation list, {} conversations", l["conversations"]),
            &l["latency"],
        ));
        out.push('\n');
        writeln!(
            out,
            "Ratios big/small (p50, p99): page 1 {} / {}, before {} / {}, after {} / {}. The deep page uses OFFSET, whose cost grows with depth: reported, not a target. CPU during the reads, in cores: {}.\n",
            num(&v["page_1"]["ratio_p50"], 2),
            num(&v["page_1"]["ratio_p99"], 2),
            num(&v["cursor_before_middle"]["ratio_p50"], 2),
            num(&v["cursor_before_middle"]["ratio_p99"], 2),
            num(&v["cursor_after_middle"]["ratio_p50"], 2),
            num(&v["cursor_after_middle"]["ratio_p99"], 2),
            cores(&v["cpu_cores_during_history_reads"]),
        )?;
    }
    Ok(())
}

fn resume_details(v: &Value, out: &mut String) -> std::fmt::Result {
    writeln!(out, "### resume\n")?;
    if v.get("error").is_some() || !v.is_object() {
        return writeln!(out, "{}\n", error_of(v));
    }
    writeln!(
        out,
        "One user with {} events in the log (a partner sent that many messages over a conversation \
         socket); {} resumes in a row, each `/ws/chat/?since={}` (the user stood at seq {}), after {} \
         untimed ones. Each is timed from the start of the connect (TCP connect and upgrade request) \
         and checked: `recovered: true`, the current seq, then exactly the events {}..={} in order.\n",
        f(&v["events_per_resume"]).map_or("?".into(), thousands),
        v["resumes"],
        v["since"],
        v["seq"],
        v["warmup_resumes"],
        f(&v["since"]).map_or("?".into(), |s| format!("{}", s as i64 + 1)),
        v["seq"],
    )?;
    writeln!(out, "| figure | value |\n|---|---|")?;
    writeln!(
        out,
        "| resumes / failed | {} / {} {} |",
        v["resumes"], v["errors"], v["first_errors"]
    )?;
    writeln!(
        out,
        "| replayed events per s at p50 | {} |",
        num(&v["events_per_s_p50"], 0)
    )?;
    writeln!(
        out,
        "| CPU during the resumes (cores) | `{}` |\n",
        v["cpu_cores"]
    )?;
    out.push_str(LAT_HEAD);
    out.push_str(&lat_row(
        "upgrade → connection_established",
        &v["established_latency"],
    ));
    out.push_str(&lat_row(
        &format!(
            "upgrade → {} replayed event",
            ordinal(&v["events_per_resume"])
        ),
        &v["latency"],
    ));
    out.push('\n');
    Ok(())
}

fn compare_details(c: &Value, out: &mut String) -> std::fmt::Result {
    let intro = format!(
        "`crates/bench/compare.sh`: the throughput scenario (the settings above, the same `chat-bench` \
         binary) against the release server built from {} (before) and from {} (after), alternately, \
         each run on a fresh database and a freshly started server. `after_streams` is the after \
         server with one user stream `/ws/chat/` per user also open (one more socket per user, \
         each getting every message of its pair); its conversation sockets are measured as in the other runs.",
        rev(&c["before_rev"]),
        rev(&c["after_rev"])
    );
    runs_table(c, "throughput before and after", &intro, out)
}

/// A heading, an introduction and the table of a comparison's runs.
pub(crate) fn runs_table(
    c: &Value,
    heading: &str,
    intro: &str,
    out: &mut String,
) -> std::fmt::Result {
    let label = |l: &str| -> String {
        c["labels"][l]
            .as_str()
            .map_or_else(|| l.to_owned(), str::to_owned)
    };
    writeln!(out, "### {heading}\n")?;
    writeln!(out, "{intro}\n")?;
    writeln!(
        out,
        "| run | server | deliveries/s | persisted msgs/s | p50 ms | p99 ms | user-stream deliveries/s | CPU server / postgres / bench / other (cores) | load avg at start | integrity |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
    for run in c["runs"].as_array().into_iter().flatten() {
        if run.get("error").is_some() {
            writeln!(
                out,
                "| {} | {} | {} | | | | | | | |",
                run["order"],
                label(run["label"].as_str().unwrap_or("?")),
                error_of(run)
            )?;
            continue;
        }
        let cpu = &run["cpu_cores"];
        let load = run["load_avg_start"]
            .as_array()
            .and_then(|l| l.first())
            .map_or("?".into(), |l| num(l, 2));
        let ok = run["integrity_ok"].as_bool() == Some(true)
            && run["user_stream_integrity_ok"].as_bool() != Some(false)
            && run["failed"].as_bool() != Some(true);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {load} | {} |",
            run["order"],
            label(run["label"].as_str().unwrap_or("?")),
            num(&run[crate::compare::METRIC], 0),
            num(&run["persisted_msgs_per_s"], 0),
            num(&run["latency_p50_ms"], 3),
            num(&run["latency_p99_ms"], 3),
            if run["user_stream_deliveries_per_s"].is_null() {
                "".into()
            } else {
                num(&run["user_stream_deliveries_per_s"], 0)
            },
            num(&cpu["server"], 2),
            num(&cpu["postgres"], 2),
            num(&cpu["bench"], 2),
            num(&cpu["other"], 2),
            if ok { "ok" } else { "FAILED" }
        )?;
    }
    out.push('\n');
    let mut summary = Vec::new();
    for (l, v) in c["by_label"].as_object().into_iter().flatten() {
        summary.push(format!(
            "{} median {} (min {}, max {}) deliveries/s over {} runs",
            label(l),
            num(&v["median"], 0),
            num(&v["min"], 0),
            num(&v["max"], 0),
            v["runs"]
        ));
    }
    writeln!(
        out,
        "{}. Ratio of the medians {} / {}: {}; run by run: {}{}.\n",
        summary.join("; "),
        label("after"),
        label("before"),
        num(&c["ratio_after_before"], 3),
        c["round_ratios_after_before"],
        if c["ratio_after_streams_before"].is_null() {
            String::new()
        } else {
            format!(
                "; with user streams {} (run by run {})",
                num(&c["ratio_after_streams_before"], 3),
                c["round_ratios_after_streams_before"]
            )
        }
    )?;
    Ok(())
}

pub(crate) fn cores(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return "n/a".into();
    };
    let mut parts: Vec<(String, f64)> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "machine_busy" | "other"))
        .filter_map(|(k, c)| c.as_f64().map(|c| (k.clone(), c)))
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut list: Vec<String> = parts.iter().map(|(k, c)| format!("{k} {c:.2}")).collect();
    if let Some(o) = map.get("other").and_then(Value::as_f64) {
        list.push(format!("other processes {o:.2}"));
    }
    match map.get("machine_busy").and_then(Value::as_f64) {
        Some(b) => format!("{} (machine busy {b:.2} cores)", list.join(", ")),
        None => list.join(", "),
    }
}

/// Cores used by processes other than the benchmark's own four.
fn other_cores(v: &Value) -> f64 {
    v["other"].as_f64().unwrap_or(0.0)
}

/// Sentences drawn from the figures: where the time went, what limited a run.
fn observations(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut watched: Vec<(String, &Value)> = vec![
        ("throughput".into(), &r["throughput"]["cpu_cores"]),
        ("latency".into(), &r["latency"]["cpu_cores"]),
        ("idle ramp".into(), &r["idle"]["ramp_cpu_cores"]),
        (
            "history reads".into(),
            &r["history"]["cpu_cores_during_history_reads"],
        ),
        ("resume".into(), &r["resume"]["cpu_cores"]),
    ];
    for run in r["compare"]["runs"].as_array().into_iter().flatten() {
        watched.push((
            format!(
                "before/after run {} ({})",
                run["order"],
                run["label"].as_str().unwrap_or("?")
            ),
            &run["cpu_cores"],
        ));
    }
    let disturbed: Vec<String> = watched
        .iter()
        .filter(|(_, c)| other_cores(c) >= 0.15)
        .map(|(name, c)| format!("{name} {:.2} cores", other_cores(c)))
        .collect();
    if !disturbed.is_empty() {
        out.push(format!(
            "**Disturbed run:** processes other than the server, PostgreSQL, Redis and chat-bench \
             used CPU while measuring ({}), e.g. a build running on the same machine; those \
             figures understate what the server can do.",
            disturbed.join(", ")
        ));
    }
    for (name, v) in r.as_object().into_iter().flatten() {
        if let Some(n) = v["setup_retries"].as_u64() {
            out.push(format!(
                "**Server errors during setup ({name}):** {n} setup request(s) were answered with a \
                 5xx and retried (the setup, not the measured part; first answers: {}).",
                v["first_setup_retry_errors"]
            ));
        }
    }
    let tp = &r["throughput"];
    if tp["cpu_cores"].is_object() {
        out.push(format!(
            "Throughput: CPU in use during the measured window, in cores: {}. The machine's cores are \
             shared by all of these, so the load generator's share is not available to the server.",
            cores(&tp["cpu_cores"])
        ));
    }
    let lt = &r["latency"];
    if let (Some(sent), Some(got)) = (
        f(&lt["send_rate_per_s"]),
        f(&lt["delivered_unique_msgs_per_s"]),
    ) {
        if got < 0.95 * sent {
            out.push(format!(
                "Latency: the server delivered {} of the {} msgs/s scheduled, so a queue grew through the \
                 run and the latency measured from the scheduled send time is mostly waiting in it. \
                 CPU in cores: {}.",
                thousands(got),
                thousands(sent),
                cores(&lt["cpu_cores"])
            ));
        }
        if lt["sender_errors"].as_u64().unwrap_or(0) > 0 {
            out.push(format!(
                "Latency: {} sender socket(s) were closed by the server during the run ({}).",
                lt["sender_errors"], lt["first_sender_errors"]
            ));
        }
    }
    let id = &r["idle"];
    if id.is_object() && id.get("error").is_none() {
        if let Some(c) = id["clamped_because"].as_array().filter(|c| !c.is_empty()) {
            let reasons: Vec<&str> = c.iter().filter_map(Value::as_str).collect();
            let rlimit = reasons.iter().any(|r| r.contains("RLIMIT_NOFILE"));
            out.push(format!(
                "Idle: {} sockets instead of {} because {}{}. The per-socket memory is a ratio, so it \
                 carries over.",
                f(&id["sockets_attempted"]).map_or("?".into(), thousands),
                f(&id["sockets_requested"]).map_or("?".into(), thousands),
                reasons.join(" and "),
                if rlimit {
                    " (each process needs one descriptor per socket plus a few; run.sh tries to raise \
                     the hard limit, which needs CAP_SYS_RESOURCE, and could not)"
                } else {
                    ""
                }
            ));
        }
        if let (Some(start), Some(before)) = (
            f(&id["server_rss_at_start_kib"]),
            f(&id["server_rss_before_kib"]),
        ) {
            out.push(format!(
                "Idle: the server's RSS was {:.0} MiB when the scenario began and {:.0} MiB after \
                 registering its {} users (the baseline for the per-socket figure): memory grown \
                 during the setup (registering and logging in users) that the allocator keeps; it is \
                 not socket memory.",
                start / 1024.0,
                before / 1024.0,
                id["users"]
            ));
        }
        out.push(format!(
            "Idle: CPU during the handshake ramp, in cores: {}. Handshakes/s over each quarter of \
             the ramp: {}.",
            cores(&id["ramp_cpu_cores"]),
            id["handshakes_per_s_by_quarter"]
        ));
    }
    let c = &r["compare"];
    if let (Some(ratio), Some(a_max), Some(b_min), Some(a_min), Some(b_max)) = (
        f(&c["ratio_after_before"]),
        f(&c["by_label"]["after"]["max"]),
        f(&c["by_label"]["before"]["min"]),
        f(&c["by_label"]["after"]["min"]),
        f(&c["by_label"]["before"]["max"]),
    ) {
        let overlap = a_max >= b_min && b_max >= a_min;
        out.push(format!(
            "Before/after: the after server's median is {:.1} % {} the before server's; the two \
             servers' runs {} (after {}–{}, before {}–{} deliveries/s).",
            (ratio - 1.0).abs() * 100.0,
            if ratio >= 1.0 { "above" } else { "below" },
            if overlap {
                "overlap, so part of the difference is run-to-run spread"
            } else {
                "do not overlap"
            },
            thousands(a_min),
            thousands(a_max),
            thousands(b_min),
            thousands(b_max)
        ));
    }
    let hi = &r["history"];
    if let (Some(b), Some(s)) = (
        f(&hi["page_1"]["big"]["p50_ms"]),
        f(&hi["page_1"]["small"]["p50_ms"]),
    ) && b > 1.5 * s
    {
        out.push(format!(
            "History: page 1 grows with the history ({b:.1} ms vs {s:.1} ms p50) while the cursor \
             reads do not: a page-numbered read answers with the total `count` of the \
             conversation's messages (and pages further back add an OFFSET), which costs time in \
             proportion to the history; the keyset cursors read 50 rows whatever the depth."
        ));
    }
    out
}

/// Hand-written parts beside the figures: `notes` (what bounds the targets
/// not met) after the settings, `history` (earlier sessions' measured
/// changes, kept verbatim) at the end.
pub struct Prose<'a> {
    pub notes: &'a str,
    pub history: &'a str,
}

/// Builds the markdown from the combined JSON.
pub fn render(all: &Value, machine: &str, settings: &str, prose: &Prose<'_>) -> Result<String> {
    let notes = prose.notes;
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
    let obs = observations(r);
    if !obs.is_empty() {
        writeln!(out, "## Observations\n")?;
        for o in obs {
            writeln!(out, "- {o}")?;
        }
        out.push('\n');
    }
    writeln!(out, "## Details\n")?;
    details(r, &mut out)?;
    writeln!(
        out,
        "Raw results: the JSON line printed by `chat-bench all` (kept beside this file as `bench-results.json` by run.sh)."
    )?;
    if !prose.history.trim().is_empty() {
        writeln!(out, "\n{}", prose.history.trim())?;
    }
    Ok(out)
}

/// `chat-bench report --input all.json --out BENCHMARKS.md [--machine F] [--settings F] [--notes F]
/// [--history F]`.
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
    let history = read(args.take("history"))?;
    let extra = args.take("extra");
    let merged_out = args.take("merged-out");
    args.finish()?;
    let raw = std::fs::read_to_string(&input).map_err(|e| format!("cannot read {input}: {e}"))?;
    let mut all: Value = serde_json::from_str(raw.trim())?;
    // A scenario run on its own (e.g. idle on a fresh server) joins the results.
    for path in extra.iter().flat_map(|e| e.split(',')) {
        let raw = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let one: Value = serde_json::from_str(raw.trim())?;
        let name = one["scenario"]
            .as_str()
            .ok_or_else(|| format!("{path}: no scenario name"))?
            .to_owned();
        all["failed"] = Value::Bool(
            all["failed"].as_bool() == Some(true) || one["failed"].as_bool() == Some(true),
        );
        // The run spans every part (RFC 3339 times in UTC compare as text).
        if let Some(o) = one["finished_at"].as_str()
            && all["finished_at"].as_str().is_none_or(|a| o > a)
        {
            all["finished_at"] = Value::String(o.to_owned());
        }
        if let Some(o) = one["started_at"].as_str()
            && all["started_at"].as_str().is_none_or(|a| o < a)
        {
            all["started_at"] = Value::String(o.to_owned());
        }
        all["results"][name] = one;
    }
    if let Some(path) = merged_out {
        std::fs::write(&path, format!("{}\n", serde_json::to_string(&all)?))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    let prose = Prose {
        notes: &notes,
        history: &history,
    };
    let md = render(&all, &machine, &settings, &prose)?;
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
                "resume": {"latency": {"p99_ms": 12.5, "p50_ms": 9.0, "max_ms": 20.0},
                           "events_per_resume": 1000, "resumes": 200, "errors": 0},
                "compare": crate::compare::combine(&[
                    ("before".into(), json!({"delivered_msgs_per_s": 100.0, "failed": false})),
                    ("after".into(), json!({"delivered_msgs_per_s": 95.0, "failed": false})),
                ], "8ea6d49fa8", "1670a3f00"),
            }
        });
        let none = Prose {
            notes: "",
            history: "",
        };
        let md = render(&all, "m", "s", &none)?;
        assert!(
            md.contains("| replaying 1,000 missed events on resume p99 < 50 ms | p99 12.500 ms")
        );
        assert!(md.contains("to the 1,000th replayed event"));
        assert!(md.contains("not below before it (8ea6d49)"));
        assert!(md.contains("after (1670a3f) 95 vs before 100 deliveries/s"));
        assert!(md.contains("ratio 0.950 | **not met** |"));
        assert!(md.contains("### throughput before and after"));
        assert!(md.contains("30,000 deliveries/s"));
        assert!(md.contains("| **met** |"));
        assert!(md.contains("| **not met** |"));
        assert!(md.contains("error: no psql"));
        assert!(md.contains("not run"));
        Ok(())
    }
}
