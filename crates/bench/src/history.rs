//! The `history` scenario: reads of a conversation with a long history
//! against one with a short history (page 1, a deep page, cursors), and
//! the conversation list of a user with many conversations.
//!
//! A million messages over the API would take longer than the benchmark,
//! so with `--database-url` the histories are bulk-inserted by `psql` (an
//! `INSERT ... SELECT generate_series(...)`, then the conversation row is
//! set as the server would have left it); without it they go through
//! `POST /api/chat/messages/` (small sizes only).

use crate::Result;
use crate::api::{Api, Pair, User, bounded};
use crate::stats::{Percentiles, round3};
use crate::sysinfo::CpuSnapshot;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// Settings of the history scenario.
#[derive(Debug, Clone)]
pub struct Config {
    pub messages: u64,
    pub small: u64,
    pub conversations: usize,
    pub reads: usize,
    pub deep_page: u64,
    pub page_size: u64,
    pub max_seconds_per_kind: f64,
    pub database_url: Option<String>,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
}

/// Messages left unread at the end of each history (the rest are read).
const UNREAD_TAIL: u64 = 10;
/// Largest history sent through the API when no database URL is given.
const API_INSERT_MAX: u64 = 50_000;

/// Runs statements with `psql` in one session; what they printed.
pub fn psql(database_url: &str, statements: &[&str]) -> Result<String> {
    let mut cmd = Command::new("psql");
    cmd.arg(database_url)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    for s in statements {
        cmd.arg("-c").arg(s);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run psql (is the PostgreSQL client installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The reactions of every other message of the big conversation (when the
/// schema has them): the history page then carries reaction summaries.
pub(crate) const REACTIONS: &str =
    "every other message: 👍 by both participants and 🎉 by one (3 reactions, 2 emoji)";

/// The statement that fills `conversation` with `count` messages,
/// alternating senders, ids and times increasing together, all read but
/// the last few (with `reacted`, every other one with [`REACTIONS`]); then
/// sets the conversation row consistently.
fn bulk_sql(
    conversation: i64,
    (a, b): (i64, i64),
    count: u64,
    has_message_count: bool,
    writes_vector: bool,
    reacted: bool,
) -> String {
    let message_count = if has_message_count {
        "message_count = (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id),"
    } else {
        ""
    };
    let content = "'history message ' || g || ': the quick brown fox jumps over the lazy dog'";
    let (vector_column, vector) = if writes_vector {
        (
            ", search_vector",
            format!(", chat_search_vector({content}, {a}, {b})"),
        )
    } else {
        ("", String::new())
    };
    let (lo, hi) = (a.min(b), a.max(b));
    let (reactions_column, reactions, reaction_rows) = if reacted {
        (
            ", reactions",
            format!(
                ", CASE WHEN g % 2 = 0 THEN '[{{\"emoji\":\"👍\",\"count\":2,\"user_ids\":[{lo},{hi}]}},\
                 {{\"emoji\":\"🎉\",\"count\":1,\"user_ids\":[{a}]}}]' ELSE '[]' END"
            ),
            format!(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)
                 SELECT m.id, v.user_id, v.emoji, m.created_at
                 FROM messages m CROSS JOIN (VALUES ({lo}, '👍'), ({hi}, '👍'), ({a}, '🎉')) AS v(user_id, emoji)
                 WHERE m.conversation_id = {conversation} AND m.reactions <> '[]';"
            ),
        )
    } else {
        ("", String::new(), String::new())
    };
    format!(
        "INSERT INTO messages (conversation_id, sender_id, content, client_id, created_at, read_at{vector_column}{reactions_column})
         SELECT {conversation},
                CASE WHEN g % 2 = 0 THEN {a} ELSE {b} END,
                {content},
                NULL,
                (now() AT TIME ZONE 'UTC') - ({count} - g) * interval '1 millisecond',
                CASE WHEN g > {count} - {UNREAD_TAIL} THEN NULL ELSE (now() AT TIME ZONE 'UTC') END
                {vector}{reactions}
         FROM generate_series(1, {count}) AS g
         ORDER BY g;
         {reaction_rows}
         UPDATE conversations c SET
           {message_count}
           last_message_id = s.max_id,
           updated_at = s.max_created,
           unread_for_low = (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id
                               AND m.read_at IS NULL AND m.sender_id = c.user_high),
           unread_for_high = (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id
                               AND m.read_at IS NULL AND m.sender_id = c.user_low)
         FROM (SELECT max(id) AS max_id, max(created_at) AS max_created
               FROM messages WHERE conversation_id = {conversation}) s
         WHERE c.id = {conversation};"
    )
}

/// Whether `table` of the current schema has `column`.
fn has_column(database_url: &str, table: &str, column: &str) -> Result<bool> {
    let out = psql(
        database_url,
        &[&format!(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}' \
               AND column_name = '{column}'"
        )],
    )?;
    Ok(out.trim() == "1")
}

/// Whether rows are written with their search vector (since migration
/// `000018_search_terms`; before it the column was generated, and a
/// benchmark variant drops it): SQL loads then compute it with the
/// database's `chat_search_vector`, as the server would.
pub(crate) fn writes_search_vector(database_url: &str) -> Result<bool> {
    let out = psql(
        database_url,
        &["SELECT count(*) FROM information_schema.columns \
           WHERE table_schema = current_schema() AND table_name = 'messages' \
             AND column_name = 'search_vector' AND is_generated = 'NEVER' \
             AND data_type = 'tsvector'"],
    )?;
    Ok(out.trim() == "1")
}

/// (min id, max id) of a conversation's messages.
fn id_range(database_url: &str, conversation: i64) -> Result<(i64, i64)> {
    let out = psql(
        database_url,
        &[&format!(
            "SELECT min(id), max(id) FROM messages WHERE conversation_id = {conversation}"
        )],
    )?;
    let (lo, hi) = out
        .split_once('|')
        .ok_or_else(|| format!("unexpected psql output '{out}'"))?;
    Ok((lo.trim().parse()?, hi.trim().parse()?))
}

async fn fill_with_psql(
    url: String,
    big: &Pair,
    small: &Pair,
    m: u64,
    s: u64,
) -> Result<([(i64, i64); 2], bool)> {
    let jobs = [
        (big.conversation, big.a.id, big.b.id, m),
        (small.conversation, small.a.id, small.b.id, s),
    ];
    tokio::task::spawn_blocking(move || {
        // Counters the server maintains on the conversation row, and the
        // columns of messages, vary with the schema version: set the ones
        // this database has.
        let has_message_count = has_column(&url, "conversations", "message_count")?;
        let vector = writes_search_vector(&url)?;
        let reacted = has_column(&url, "messages", "reactions")?;
        for (i, (conv, a, b, n)) in jobs.into_iter().enumerate() {
            let sql = bulk_sql(
                conv,
                (a, b),
                n,
                has_message_count,
                vector,
                reacted && i == 0,
            );
            psql(&url, &[&sql])?;
        }
        psql(
            &url,
            &[
                "VACUUM ANALYZE messages",
                "ANALYZE conversations",
                "ANALYZE reactions",
            ],
        )?;
        Ok((
            [id_range(&url, jobs[0].0)?, id_range(&url, jobs[1].0)?],
            reacted,
        ))
    })
    .await?
}

async fn fill_with_api(api: &Api, pair: &Pair, n: u64, concurrency: usize) -> Result<(i64, i64)> {
    let count = usize::try_from(n)?;
    let ids = bounded(count, concurrency, |i| {
        let sender = if i % 2 == 0 { &pair.a } else { &pair.b };
        async move {
            api.send_message(sender, pair.conversation, &format!("history message {i}"))
                .await
        }
    })
    .await?;
    let lo = ids.iter().copied().min().unwrap_or(0);
    let hi = ids.iter().copied().max().unwrap_or(0);
    Ok((lo, hi))
}

/// Connection requests and acceptances in flight while building the
/// owner's conversations.
const LIST_SETUP_CONCURRENCY: usize = 1;

/// `reads` timed GETs of each path, alternating between the two, bounded by time.
async fn measure_alternating(
    api: &Api,
    a: (&str, &str),
    b: (&str, &str),
    reads: usize,
    max: Duration,
) -> Result<(Percentiles, Percentiles)> {
    // Warm the caches (and the HTTP connection) first.
    for _ in 0..3 {
        api.get_timed(a.1, a.0).await?;
        api.get_timed(b.1, b.0).await?;
    }
    let deadline = Instant::now() + max;
    let (mut ta, mut tb) = (Vec::with_capacity(reads), Vec::with_capacity(reads));
    for _ in 0..reads {
        if Instant::now() >= deadline {
            break;
        }
        ta.push(api.get_timed(a.1, a.0).await?);
        tb.push(api.get_timed(b.1, b.0).await?);
    }
    Ok((
        Percentiles::from_durations(&ta),
        Percentiles::from_durations(&tb),
    ))
}

fn ratio(big: f64, small: f64) -> Value {
    if small > 0.0 {
        json!(round3(big / small))
    } else {
        Value::Null
    }
}

fn compare(big: &Percentiles, small: &Percentiles) -> Value {
    json!({
        "big": big.to_json(),
        "small": small.to_json(),
        "ratio_p50": ratio(big.p50, small.p50),
        "ratio_p99": ratio(big.p99, small.p99),
    })
}

/// Runs the scenario; the JSON result.
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    if let Some(url) = &cfg.database_url {
        crate::api::check_database_url(url)?;
    } else if cfg.messages > API_INSERT_MAX {
        return Err(format!(
            "history: {} messages need --database-url postgres://... (bulk insert with psql); \
             without it at most {API_INSERT_MAX} are sent through the API",
            cfg.messages
        )
        .into());
    }
    let setup_started = Instant::now();
    let pairs = api.create_pairs("hi", 2, cfg.concurrency).await?;
    let (big, small) = (&pairs[0], &pairs[1]);
    let insert_started = Instant::now();
    let (method, ([(big_lo, big_hi), (small_lo, small_hi)], reacted)) = match &cfg.database_url {
        Some(url) => (
            "psql",
            fill_with_psql(url.clone(), big, small, cfg.messages, cfg.small).await?,
        ),
        None => (
            "api",
            (
                [
                    fill_with_api(api, big, cfg.messages, cfg.concurrency).await?,
                    fill_with_api(api, small, cfg.small, cfg.concurrency).await?,
                ],
                false,
            ),
        ),
    };
    let insert_seconds = insert_started.elapsed().as_secs_f64();
    eprintln!(
        "history: {} + {} messages inserted via {method} in {insert_seconds:.1} s",
        cfg.messages, cfg.small
    );
    // Tokens may have aged during a long insert.
    let tok_big = api.login(&big.a.username).await?;
    let tok_small = api.login(&small.a.username).await?;
    // What page 1 of the big conversation shows: its messages with reactions.
    let first_page = api
        .get_json(
            &format!("/api/chat/conversations/{}/messages/", big.conversation),
            &tok_big,
        )
        .await?;
    let with_reactions = first_page["results"].as_array().map(|ms| {
        ms.iter()
            .filter(|m| m["reactions"].as_array().is_some_and(|r| !r.is_empty()))
            .count()
    });
    let max = Duration::from_secs_f64(cfg.max_seconds_per_kind);
    let ps = cfg.page_size.clamp(1, 100);

    let reads_started = Instant::now();
    let cpu_before = CpuSnapshot::take(cfg.server_pid);
    let page1 = |c: i64| format!("/api/chat/conversations/{c}/messages/");
    let mut errors: Vec<String> = Vec::new();
    let mut kind = |label: &str, result: Result<(Percentiles, Percentiles)>| match result {
        Ok((big, small)) => compare(&big, &small),
        Err(e) => {
            errors.push(format!("{label}: {e}"));
            json!({"error": e.to_string()})
        }
    };
    let page_1 = kind(
        "page 1",
        measure_alternating(
            api,
            (&tok_big, &page1(big.conversation)),
            (&tok_small, &page1(small.conversation)),
            cfg.reads,
            max,
        )
        .await,
    );
    let mid_big = big_lo + (big_hi - big_lo) / 2;
    let mid_small = small_lo + (small_hi - small_lo) / 2;
    let cursor = |c: i64, dir: &str, id: i64| {
        format!("/api/chat/conversations/{c}/messages/?{dir}={id}&limit=50")
    };
    let before = kind(
        "before cursor",
        measure_alternating(
            api,
            (&tok_big, &cursor(big.conversation, "before", mid_big)),
            (&tok_small, &cursor(small.conversation, "before", mid_small)),
            cfg.reads,
            max,
        )
        .await,
    );
    let after = kind(
        "after cursor",
        measure_alternating(
            api,
            (&tok_big, &cursor(big.conversation, "after", mid_big)),
            (&tok_small, &cursor(small.conversation, "after", mid_small)),
            cfg.reads,
            max,
        )
        .await,
    );
    let last_page = |n: u64| n.div_ceil(ps).max(1);
    let deep_big = cfg.deep_page.clamp(1, last_page(cfg.messages));
    let deep_small = last_page(cfg.small);
    let deep = |c: i64, page: u64| {
        format!("/api/chat/conversations/{c}/messages/?page={page}&page_size={ps}")
    };
    let deep_page = match measure_alternating(
        api,
        (&tok_big, &deep(big.conversation, deep_big)),
        (&tok_small, &deep(small.conversation, deep_small)),
        cfg.reads,
        max,
    )
    .await
    {
        Ok((b, s)) => json!({
            "page_size": ps,
            "big_page": deep_big,
            "small_page": deep_small,
            "big": b.to_json(),
            "small": s.to_json(),
        }),
        Err(e) => {
            errors.push(format!("deep page: {e}"));
            json!({"page_size": ps, "big_page": deep_big, "small_page": deep_small, "error": e.to_string()})
        }
    };

    let cpu = cpu_before.cores_since(
        &CpuSnapshot::take(cfg.server_pid),
        reads_started.elapsed().as_secs_f64(),
    );

    // A user with many conversations, each with one message from the partner.
    let list_started = Instant::now();
    let users = api
        .create_users("hl", cfg.conversations + 1, cfg.concurrency)
        .await?;
    let (owner, partners): (&User, &[User]) = (&users[0], &users[1..]);
    // One connection at a time: every one changes the owner, and the
    // server with the user event log deadlocks on concurrent connection
    // changes of one user (see the notes); the list read is what counts.
    let convs = bounded(partners.len(), LIST_SETUP_CONCURRENCY, |i| {
        let partner = &partners[i];
        async move {
            let conv = api.connect(owner, partner).await?;
            api.send_message(partner, conv, &format!("hello from partner {i}"))
                .await?;
            Ok(conv)
        }
    })
    .await?;
    let list_setup_seconds = list_started.elapsed().as_secs_f64();
    let owner_token = api.login(&owner.username).await?;
    let listed = api
        .get_json("/api/chat/conversations/", &owner_token)
        .await?;
    let count = listed["count"].as_u64().unwrap_or(0);
    let mut list_times = Vec::with_capacity(cfg.reads);
    let deadline = Instant::now() + max;
    for _ in 0..cfg.reads {
        if Instant::now() >= deadline {
            break;
        }
        list_times.push(
            api.get_timed("/api/chat/conversations/", &owner_token)
                .await?,
        );
    }
    let list = Percentiles::from_durations(&list_times);

    Ok(json!({
        "messages_big": cfg.messages,
        "messages_small": cfg.small,
        "insert_method": method,
        "reactions_big": reacted.then_some(REACTIONS),
        "page_1_messages_with_reactions": with_reactions,
        "insert_s": round3(insert_seconds),
        "setup_s": round3(setup_started.elapsed().as_secs_f64()),
        "reads_per_kind": cfg.reads,
        "page_1": page_1,
        "cursor_before_middle": before,
        "cursor_after_middle": after,
        "deep_page": deep_page,
        "read_errors": errors,
        "conversation_list": {
            "conversations": convs.len(),
            "count_reported": count,
            "setup_s": round3(list_setup_seconds),
            "setup_concurrency": LIST_SETUP_CONCURRENCY,
            "latency": list.to_json(),
        },
        "cpu_cores_during_history_reads": cpu,
        "failed": count != convs.len() as u64 || !errors.is_empty(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_sql_mentions_every_column() {
        let old = bulk_sql(3, (1, 2), 1000, false, false, false);
        assert!(!old.contains("message_count") && !old.contains("search_vector"));
        assert!(!old.contains("reactions"));
        let sql = bulk_sql(3, (1, 2), 1000, true, true, true);
        assert!(sql.contains(", reactions)") && sql.contains("INSERT INTO reactions"));
        assert!(sql.contains(r#""user_ids":[1,2]"#));
        assert!(sql.contains(", search_vector, reactions)"));
        assert!(sql.contains("chat_search_vector('history message ' || g"));
        assert!(sql.contains("message_count = (SELECT count(*)"));
        for col in [
            "conversation_id",
            "sender_id",
            "content",
            "client_id",
            "created_at",
            "read_at",
        ] {
            assert!(sql.contains(col), "{col}");
        }
        assert!(sql.contains("generate_series(1, 1000)"));
        assert!(sql.contains("last_message_id"));
    }
}
