//! The report's rows and sections for presence, delivery acks and search
//! (issues 12 and 13): `presence`, `search`, `compare_acks` and
//! `compare_index` in the results, each present only when it was run.

use crate::report::{LAT_HEAD, Row, cores, error_of, f, lat_row, num, thousands, verdict};
use serde_json::Value;
use std::fmt::Write as _;

const PRESENCE_TARGET: &str = "presence with 10,000 users × 20 connections, user streams churning at 500/s: \
     presence events/s, Redis commands/s and server CPU recorded";
const ACKS_TARGET: &str = "throughput with every receiver acking what it gets within 10 % of without acks \
     (each socket acks the highest id it got, at most every 100 ms, as the web client does)";
const ACKS_EACH_TARGET: &str = "the same with an ack frame for every message, as soon as it arrives (the \
     flood the server coalesces)";
const SEARCH_TARGET: &str = "search p99 ≤ 50 ms, a user with 100 conversations holding 1,000,000 messages \
     (5,000,000 in the database)";
const INDEX_TARGET: &str = "the search index cuts sends (persisted msgs/s) by ≤ 15 %";

/// Present results only: rows for what was run.
pub fn targets(r: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    if r["presence"].is_object() {
        rows.push(presence_target(&r["presence"]));
    }
    if r["compare_acks"].is_object() {
        rows.push(ratio_target(&r["compare_acks"], ACKS_TARGET, 0.90, false));
    }
    if r["compare_acks-each"].is_object() {
        rows.push(ratio_target(
            &r["compare_acks-each"],
            ACKS_EACH_TARGET,
            0.90,
            false,
        ));
    }
    if r["search"].is_object() {
        rows.push(search_target(&r["search"]));
    }
    if r["compare_index"].is_object() {
        rows.push(ratio_target(&r["compare_index"], INDEX_TARGET, 0.85, true));
    }
    rows
}

fn phase_line(p: &Value) -> String {
    format!(
        "{} connects/s, observers got {} online + {} offline presence events ({} /s), Redis {} commands/s, \
         server {} cores",
        num(&p["connects_per_s"], 0),
        p["observer_events"]["online"],
        p["observer_events"]["offline"],
        num(&p["observer_events"]["per_s"], 1),
        num(&p["redis"]["commands_per_s"], 0),
        num(&p["cpu_cores"]["server"], 2),
    )
}

fn presence_target(p: &Value) -> Row {
    if p.get("error").is_some() {
        return (PRESENCE_TARGET.into(), error_of(p), verdict(None));
    }
    let ph = &p["phases"];
    let measured = format!(
        "away longer than the grace: {}; back within the grace: {}",
        phase_line(&ph["after_grace"]),
        phase_line(&ph["within_grace"])
    );
    let ok = p["failed"].as_bool() == Some(false);
    (
        PRESENCE_TARGET.into(),
        measured,
        if ok {
            "recorded"
        } else {
            "failed (see details)"
        },
    )
}

/// Variant / baseline of a comparison: on deliveries/s, or on persisted
/// msgs/s (`persisted`), at least `min`.
fn ratio_target(c: &Value, target: &str, min: f64, persisted: bool) -> Row {
    let key = if persisted {
        "persisted_median"
    } else {
        "median"
    };
    let label = |l: &str| c["labels"][l].as_str().unwrap_or(l).to_owned();
    let base = f(&c["by_label"]["before"][key]);
    let var = f(&c["by_label"]["after"][key]);
    let (Some(base), Some(var)) = (base, var) else {
        return (
            target.into(),
            "no figures (see details)".into(),
            verdict(None),
        );
    };
    let ratio = if base > 0.0 { var / base } else { f64::NAN };
    let failed = c["failed"].as_bool() == Some(true);
    let mut measured = format!(
        "{} {} vs {} {} {}/s, medians of {} alternating runs each: ratio {ratio:.3}",
        label("after"),
        thousands(var),
        label("before"),
        thousands(base),
        if persisted {
            "persisted msgs"
        } else {
            "deliveries"
        },
        c["by_label"]["after"]["runs"],
    );
    if failed {
        measured.push_str("; SOME RUNS FAILED (see details)");
    }
    (
        target.into(),
        measured,
        verdict(Some(ratio >= min && !failed)),
    )
}

fn search_target(s: &Value) -> Row {
    if s.get("error").is_some() {
        return (SEARCH_TARGET.into(), error_of(s), verdict(None));
    }
    let mut parts = Vec::new();
    for (class, v) in s["by_class"].as_object().into_iter().flatten() {
        parts.push(format!("{class} {} ms", num(&v["latency"]["p99_ms"], 1)));
    }
    let worst = f(&s["worst_class_p99_ms"]);
    (
        SEARCH_TARGET.into(),
        format!(
            "p99 by class of query: {}; worst {} ms ({} messages, {} of the user's)",
            parts.join(", "),
            num(&s["worst_class_p99_ms"], 1),
            f(&s["load"]["messages_in_database"]).map_or("?".into(), thousands),
            f(&s["load"]["messages_of_user"]).map_or("?".into(), thousands),
        ),
        verdict(worst.map(|w| w <= 50.0)),
    )
}

/// The sections, after the existing ones.
pub fn details(r: &Value, out: &mut String) -> std::fmt::Result {
    if r["presence"].is_object() {
        presence_details(&r["presence"], out)?;
    }
    if r["compare_acks"].is_object() {
        crate::report::runs_table(
            &r["compare_acks"],
            "throughput with acks on and off",
            "`crates/bench/variants.sh acks`: the throughput scenario (settings above) against one \
             release server, alternately without acks (`acks_off`) and with every socket of the \
             receiving user acking what it gets as the web client does (`acks_on`: an `ack` frame \
             with the highest id received, at most every 100 ms, on the conversation socket; the \
             server stores them per socket at most every 100 ms and sends `messages_delivered` to \
             the conversation's sockets and both user streams), each run on a fresh database and \
             a freshly started server.",
            out,
        )?;
    }
    if r["compare_acks-each"].is_object() {
        crate::report::runs_table(
            &r["compare_acks-each"],
            "throughput with an ack frame per message",
            "`crates/bench/variants.sh acks-each`: as above, but each receiving socket sends an \
             `ack` frame for every message as soon as it arrives (`acks_each`), the flood a client \
             may send; the server still stores them at most every 100 ms per socket, so what \
             this costs beyond `acks_on` is reading and parsing one frame per delivered message.",
            out,
        )?;
    }
    if r["heap"].is_object() {
        heap_details(&r["heap"], out)?;
    }
    if r["search"].is_object() {
        search_details(&r["search"], out)?;
    }
    if r["compare_index"].is_object() {
        crate::report::runs_table(
            &r["compare_index"],
            "throughput with and without the search index",
            "`crates/bench/variants.sh index`: the throughput scenario against one release server, \
             alternately on a database where the GIN index `messages_search` was dropped after \
             migrating (`without_index`; the server still writes each message's vector, whose cost \
             shows against the server before migration 000018 with `compare.sh`) and on an \
             unchanged one (`with_index`), each run on a fresh database and a freshly started \
             server. The target is read on persisted msgs/s (sends).",
            out,
        )?;
    }
    Ok(())
}

fn presence_details(p: &Value, out: &mut String) -> std::fmt::Result {
    writeln!(out, "### presence\n")?;
    if p.get("error").is_some() {
        writeln!(out, "{}\n", error_of(p))?;
        return Ok(());
    }
    writeln!(
        out,
        "`chat-bench presence`: {} users seeded with SQL, each with an accepted connection (and \
         conversation) to the {} nearest on a ring ({} connections); {} observers spread over the \
         ring hold their user stream `/ws/chat/` open throughout (all their connections churn); \
         every other user churns: opens its user stream, holds it {} s, closes it, at {} connects \
         (and disconnects) per second. The server's grace is {} s. Redis is a `redis-server` of \
         the run's own, so `INFO` counts this server's commands only.\n",
        p["users"],
        p["degree"],
        f(&p["connections"]).map_or("?".into(), thousands),
        p["observers"],
        p["hold_s"],
        p["rate_per_s"],
        p["grace_s"],
    )?;
    writeln!(
        out,
        "| phase | churning users | away s | window s | connects/s | disconnects/s | failures | handshake p50 / p99 ms | observer online / offline events | events/s (per observer) | neighbour connects | Redis commands/s | CPU |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for name in ["within_grace", "after_grace"] {
        let v = &p["phases"][name];
        writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} ({}) | {} | {} | {} |",
            v["churning_users"],
            num(&v["away_s"], 1),
            num(&v["window_s"], 1),
            num(&v["connects_per_s"], 0),
            num(&v["disconnects_per_s"], 0),
            v["failures"],
            num(&v["handshake"]["p50_ms"], 2),
            num(&v["handshake"]["p99_ms"], 2),
            v["observer_events"]["online"],
            v["observer_events"]["offline"],
            num(&v["observer_events"]["per_s"], 1),
            num(&v["observer_events"]["per_observer_per_s"], 2),
            v["observer_neighbour_connects"],
            num(&v["redis"]["commands_per_s"], 0),
            cores(&v["cpu_cores"]),
        )?;
    }
    out.push('\n');
    for name in ["within_grace", "after_grace"] {
        let by = &p["phases"][name]["redis"]["by_command_per_s"];
        if let Some(m) = by.as_object() {
            let list: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} {}", num(v, 0)))
                .collect();
            writeln!(out, "Redis commands/s in {name}: {}.\n", list.join(", "))?;
        }
    }
    writeln!(out, "{}\n", load_line(p))?;
    writeln!(
        out,
        "`neighbour connects` counts the connects of the observers' neighbours in the window: \
         the online events there would be if every connect were announced. Within the grace a \
         churner is back before it could go offline, so neither its leaving nor its return is \
         announced; after the grace each leave is one offline event {} s later and each return \
         one online event.\n",
        p["grace_s"]
    )?;
    Ok(())
}

fn search_details(s: &Value, out: &mut String) -> std::fmt::Result {
    writeln!(out, "### search\n")?;
    if s.get("error").is_some() {
        writeln!(out, "{}\n", error_of(s))?;
        return Ok(());
    }
    let l = &s["load"];
    writeln!(
        out,
        "`chat-bench search`: {} messages in {} conversations of equal size (seeded by {} concurrent \
         `INSERT ... SELECT generate_series` sessions in {} s, the GIN index dropped for the load and \
         recreated from its own definition, with the conversations' counters, in {} s: identical {}; \
         then `VACUUM ANALYZE` in {} s); {} of them \
         in the searcher's {} conversations, interleaved by id with the others'. Each message is 4 \
         to 16 words from 100 common English words and 64,000 made-up ones, log-uniform by rank \
         (\"the\" in about half the messages, the rarest words in a handful). Table {} with \
         indexes, search index {}. Then {} timed searches per class, round robin over the classes, \
         one at a time, by the searcher (`GET /api/chat/search/?q=`, first page of 20). Search \
         vectors written by {}. CPU during the searches: {}.\n",
        f(&l["messages_in_database"]).map_or("?".into(), thousands),
        s["user_conversations"].as_u64().unwrap_or(0)
            + s["other_conversations"].as_u64().unwrap_or(0),
        l["insert_sessions"],
        num(&l["insert_s"], 0),
        num(&l["index_and_counters_s"], 0),
        l["search_index_recreated_identically"],
        num(&l["vacuum_analyze_s"], 0),
        f(&l["messages_of_user"]).map_or("?".into(), thousands),
        s["user_conversations"],
        l["messages_table_size"].as_str().unwrap_or("?"),
        l["search_index_size"].as_str().unwrap_or("?"),
        s["rounds_run"],
        l["vectors_written_by"]
            .as_str()
            .unwrap_or("the generated column"),
        cores(&s["cpu_cores"]),
    )?;
    out.push_str(LAT_HEAD);
    for (class, v) in s["by_class"].as_object().into_iter().flatten() {
        out.push_str(&lat_row(class, &v["latency"]));
    }
    out.push_str(&lat_row("all", &s["overall"]));
    out.push('\n');
    writeln!(out, "{}\n", load_line(s))?;
    writeln!(
        out,
        "Queries and the results of their first page (`+`: more pages):\n"
    )?;
    for (class, v) in s["first_page_hits"].as_object().into_iter().flatten() {
        let list: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        writeln!(out, "- {class}: {}", list.join(", ").replace('|', "\\|"))?;
    }
    out.push('\n');
    Ok(())
}

/// The machine's load average when a scenario began and ended.
fn load_line(v: &Value) -> String {
    let l = |key: &str| {
        v[key]
            .as_array()
            .map(|a| a.iter().map(|x| num(x, 2)).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "Load average (1, 5, 15 min) {} at the start, {} at the end.",
        l("load_avg_start"),
        l("load_avg_end")
    )
}

/// `heap.sh`: the live heap per idle socket by allocation site.
fn heap_details(h: &Value, out: &mut String) -> std::fmt::Result {
    writeln!(
        out,
        "### what an idle socket holds
"
    )?;
    let sockets: Vec<String> = h["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| thousands(n.as_f64().unwrap_or(0.0)))
        .collect();
    writeln!(
        out,
        "`crates/bench/heap.sh`: the release server under heaptrack (PostgreSQL + Redis, the \
         settings above) with {} idle sockets, killed while they were open; live heap bytes of \
         the second run minus the first, divided by the difference in sockets, grouped by the \
         first frame that is not allocator plumbing. RSS per socket (the idle scenario) is \
         higher than the live heap: the allocator's own overhead and the pages it keeps.\n",
        sockets.join(" and ")
    )?;
    writeln!(
        out,
        "| bytes per socket | allocated in | reached from (our code) |"
    )?;
    writeln!(out, "|---|---|---|")?;
    for site in h["sites"].as_array().into_iter().flatten() {
        let via = site["via"].as_str().unwrap_or("");
        writeln!(
            out,
            "| {} | `{}` | {} |",
            num(&site["bytes_per_socket"], 0),
            site["site"].as_str().unwrap_or("?").replace('|', "\\|"),
            if via.is_empty() {
                String::new()
            } else {
                format!("`{}`", via.replace('|', "\\|"))
            }
        )?;
    }
    writeln!(
        out,
        "| {} | everything else | |\n| **{}** | **live heap per idle socket ({:.1} KiB)** | |\n",
        num(&h["other_bytes_per_socket"], 0),
        num(&h["bytes_per_socket"], 0),
        f(&h["bytes_per_socket"]).unwrap_or(0.0) / 1024.0
    )
}
