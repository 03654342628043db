//! `chat-bench compare`: gathers the throughput runs of two servers (run
//! alternately by `compare.sh`, each on a fresh database) into one result:
//! every run, the median per server and the ratio after / before.

use crate::Result;
use crate::args::Args;
use crate::stats::round3;
use serde_json::{Value, json};

/// The figure compared: deliveries per second to the receiving user's
/// conversation sockets, the throughput target's own figure.
pub const METRIC: &str = "delivered_msgs_per_s";

/// The median of some values (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// The label of the runs against the Django Channels reference stack.
pub const DJANGO: &str = "django";

/// CPU milliseconds of `who` (a `cpu_cores` key) per 1,000 persisted
/// messages, one value per run of `label`: machine-independent where the
/// rates are not.
fn core_ms_per_1k(rows: &[Value], label: &str, who: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r["label"] == label)
        .filter_map(|r| {
            let cores = r["cpu_cores"][who].as_f64()?;
            let rate = r["persisted_msgs_per_s"].as_f64().filter(|x| *x > 0.0)?;
            Some(cores / rate * 1_000_000.0)
        })
        .collect()
}

/// One run's row: the few figures the comparison shows.
fn row(order: usize, label: &str, r: &Value) -> Value {
    let mut row = json!({
        "order": order,
        "label": label,
        "failed": r["failed"].as_bool() != Some(false) || r.get("error").is_some(),
    });
    if let Some(e) = r.get("error") {
        row["error"] = e.clone();
        return row;
    }
    for key in [
        METRIC,
        "persisted_msgs_per_s",
        "send_rate_per_s",
        "cpu_cores",
        "load_avg_start",
        "load_avg_end",
        "started_at",
    ] {
        row[key] = r[key].clone();
    }
    row["latency_p50_ms"] = r["latency"]["p50_ms"].clone();
    row["latency_p99_ms"] = r["latency"]["p99_ms"].clone();
    row["integrity_ok"] = r["integrity"]["ok"].clone();
    row["integrity_missing"] = r["integrity"]["missing"].clone();
    row["acks"] = r["acks"].clone();
    if r["user_streams"].is_object() {
        row["user_stream_sockets"] = r["user_streams"]["sockets"].clone();
        row["user_stream_deliveries_per_s"] = r["user_streams"]["deliveries_per_s"].clone();
        row["user_stream_integrity_ok"] = r["user_streams"]["integrity"]["ok"].clone();
    }
    row
}

/// The comparison of `runs` (label, result) in the order they ran.
pub fn combine(runs: &[(String, Value)], before_rev: &str, after_rev: &str) -> Value {
    let rows: Vec<Value> = runs
        .iter()
        .enumerate()
        .map(|(i, (label, r))| row(i + 1, label, r))
        .collect();
    let mut labels: Vec<&str> = Vec::new();
    for (label, _) in runs {
        if !labels.contains(&label.as_str()) {
            labels.push(label);
        }
    }
    let values = |label: &str, key: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r["label"] == label)
            .filter_map(|r| r[key].as_f64())
            .collect()
    };
    let mut by_label = serde_json::Map::new();
    for label in &labels {
        let v = values(label, METRIC);
        let p = values(label, "persisted_msgs_per_s");
        let per_1k = |who: &str| median(&core_ms_per_1k(&rows, label, who)).map(round3);
        by_label.insert(
            (*label).to_owned(),
            json!({
                "runs": rows.iter().filter(|r| r["label"] == *label).count(),
                "values": v,
                "median": median(&v).map(round3),
                "min": v.iter().copied().reduce(f64::min),
                "max": v.iter().copied().reduce(f64::max),
                "persisted_median": median(&p).map(round3),
                "server_core_ms_per_1k": per_1k("server"),
                "postgres_core_ms_per_1k": per_1k("postgres"),
            }),
        );
    }
    let med = |label: &str| median(&values(label, METRIC));
    let ratio_to = |label: &str, base: &str| {
        med(label)
            .zip(med(base))
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| round3(a / b))
    };
    let ratio = |label: &str| ratio_to(label, "before");
    // Round by round: the n-th run of a label against the n-th before.
    let round_ratios = |label: &str| -> Vec<f64> {
        values(label, METRIC)
            .iter()
            .zip(values("before", METRIC))
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| round3(a / b))
            .collect()
    };
    // The reference stack loses messages under this load; that is its
    // figure, not a failure of the comparison.
    let failed = rows
        .iter()
        .filter(|r| r["label"] != DJANGO)
        .any(|r| r["failed"].as_bool() == Some(true));
    json!({
        "scenario": "compare",
        "metric": METRIC,
        "before_rev": before_rev,
        "after_rev": after_rev,
        "started_at": runs.first().map(|(_, r)| r["started_at"].clone()),
        "finished_at": runs.last().map(|(_, r)| r["finished_at"].clone()),
        "runs": rows,
        "by_label": by_label,
        "ratio_after_before": ratio("after"),
        "ratio_after_streams_before": ratio("after_streams"),
        "round_ratios_after_before": round_ratios("after"),
        "round_ratios_after_streams_before": round_ratios("after_streams"),
        "ratio_after_django": ratio_to("after", DJANGO),
        "ratio_after_streams_django": ratio_to("after_streams", DJANGO),
        "failed": failed,
    })
}

/// `chat-bench compare --runs before=F,after=F,... [--before-rev R] [--after-rev R] [--json-out F]
/// [--baseline LABEL --variant LABEL --kind NAME]`.
pub fn run(mut args: Args) -> Result<Value> {
    let list = args
        .take("runs")
        .ok_or("compare: --runs label=FILE,... is required")?;
    let before_rev = args.take("before-rev").unwrap_or_default();
    let after_rev = args.take("after-rev").unwrap_or_default();
    let json_out = args.take("json-out");
    // One server with and without a feature (variants.sh): its labels
    // stand for before and after.
    let baseline = args.take("baseline").unwrap_or_else(|| "before".into());
    let variant = args.take("variant").unwrap_or_else(|| "after".into());
    let kind = args.take("kind").unwrap_or_else(|| "revisions".into());
    args.finish()?;
    let internal = |label: &str| -> String {
        if label == baseline {
            "before".into()
        } else if label == variant {
            "after".into()
        } else {
            label.to_owned()
        }
    };
    let mut runs = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (label, path) = item
            .split_once('=')
            .ok_or_else(|| format!("compare: '{item}' is not label=FILE"))?;
        let result = match std::fs::read_to_string(path) {
            Ok(raw) => serde_json::from_str(raw.trim())
                .unwrap_or_else(|e| json!({"error": format!("{path}: {e}"), "failed": true})),
            // A run that produced nothing still counts, as a failure.
            Err(e) => json!({"error": format!("cannot read {path}: {e}"), "failed": true}),
        };
        runs.push((internal(label), result));
    }
    if !runs.iter().any(|(l, _)| l == "before") || !runs.iter().any(|(l, _)| l == "after") {
        return Err(format!(
            "compare: --runs needs at least one '{baseline}' and one '{variant}' run"
        )
        .into());
    }
    let mut out = combine(&runs, &before_rev, &after_rev);
    if kind != "revisions" {
        // Its own section of the report, beside the before/after one.
        out["scenario"] = json!(format!("compare_{kind}"));
    }
    out["kind"] = json!(kind);
    out["labels"] = json!({"before": baseline, "after": variant});
    let line = serde_json::to_string(&out)?;
    if let Some(path) = json_out {
        std::fs::write(&path, format!("{line}\n"))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(delivered: f64) -> Value {
        json!({"delivered_msgs_per_s": delivered, "persisted_msgs_per_s": delivered / 2.0,
               "integrity": {"ok": true}, "latency": {"p50_ms": 1.0, "p99_ms": 2.0},
               "cpu_cores": {"server": 0.5, "postgres": 0.25}, "failed": false})
    }

    #[test]
    fn cpu_per_thousand_messages() {
        let runs: Vec<(String, Value)> = [("before", 100.0), ("after", 200.0)]
            .iter()
            .map(|(l, v)| ((*l).to_owned(), run_of(*v)))
            .collect();
        let c = combine(&runs, "b", "a");
        // 0.5 cores at 50 msgs/s: 10 core-ms per message, 10,000 per 1,000.
        assert_eq!(c["by_label"]["before"]["server_core_ms_per_1k"], 10_000.0);
        assert_eq!(c["by_label"]["after"]["server_core_ms_per_1k"], 5_000.0);
        assert_eq!(c["by_label"]["after"]["postgres_core_ms_per_1k"], 2_500.0);
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let runs: Vec<(String, Value)> = [
            ("before", 100.0),
            ("after", 90.0),
            ("before", 110.0),
            ("after", 99.0),
            ("before", 105.0),
            ("after", 94.5),
        ]
        .iter()
        .map(|(l, v)| ((*l).to_owned(), run_of(*v)))
        .collect();
        let c = combine(&runs, "b", "a");
        assert_eq!(c["by_label"]["before"]["median"], 105.0);
        assert_eq!(c["by_label"]["after"]["median"], 94.5);
        assert_eq!(c["ratio_after_before"], 0.9);
        assert_eq!(c["round_ratios_after_before"], json!([0.9, 0.9, 0.9]));
        assert!(c["ratio_after_streams_before"].is_null());
        assert!(c["ratio_after_django"].is_null());
        assert_eq!(c["failed"], false);
        let mut with_django = runs.clone();
        with_django.push((DJANGO.into(), run_of(0.945)));
        assert_eq!(combine(&with_django, "b", "a")["ratio_after_django"], 100.0);
        let mut broken = runs.clone();
        broken.push(("after".into(), json!({"error": "boom", "failed": true})));
        assert_eq!(combine(&broken, "b", "a")["failed"], true);
    }
}
