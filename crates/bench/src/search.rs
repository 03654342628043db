//! The `search` scenario: one user with `conversations` conversations
//! holding `user_messages` messages in all, in a database of `messages`
//! (the rest in conversations of other users), then timed searches by
//! that user, `GET /api/chat/search/?q=`, in classes of query: common
//! words, medium and rare words, prefixes and phrases.
//!
//! Users and conversations are seeded with SQL ([`crate::seed`]); the
//! messages with one `INSERT ... SELECT generate_series`, each message 4
//! to 16 words drawn from a vocabulary of 100 common English words and
//! 64,000 made-up ones with a Zipf-like law (the rank is log-uniform, so
//! "the" is in about half the messages and the rarest words in a handful),
//! so full-text search has the selectivity of real text. The search index
//! is dropped for the load and recreated from its own definition (read
//! from `pg_indexes` before, compared after), then `VACUUM ANALYZE`.

use crate::Result;
use crate::api::Api;
use crate::history::psql;
use crate::seed;
use crate::stats::{Percentiles, round3};
use crate::sysinfo::CpuSnapshot;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Settings of the search scenario.
#[derive(Debug, Clone)]
pub struct Config {
    pub messages: u64,
    pub user_messages: u64,
    pub conversations: usize,
    /// Timed queries per class.
    pub queries: usize,
    /// The timed rounds stop after this long (slow plans stay measurable).
    pub max_seconds: f64,
    /// Measure a database seeded before, whose users are named so.
    pub existing: Option<String>,
    pub database_url: Option<String>,
    pub server_pid: Option<u32>,
}

/// The most frequent words first (rank 0 is the most frequent).
const COMMON: [&str; 100] = [
    "the", "be", "to", "of", "and", "a", "in", "that", "have", "i", "it", "for", "not", "on",
    "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they", "we", "say",
    "her", "she", "or", "an", "will", "my", "one", "all", "would", "there", "their", "what", "so",
    "up", "out", "if", "about", "who", "get", "which", "go", "me", "when", "make", "can", "like",
    "time", "no", "just", "him", "know", "take", "people", "into", "year", "your", "good", "some",
    "could", "them", "see", "other", "than", "then", "now", "look", "only", "come", "its", "over",
    "think", "also", "back", "after", "use", "two", "how", "our", "work", "first", "well", "way",
    "even", "new", "want", "because", "any", "these", "give", "day", "most", "us",
];

/// Made-up words are three of these: `p % 40`, `p / 40 % 40`, `p / 1600`.
const SYLLABLES: [&str; 40] = [
    "ba", "be", "bi", "bo", "bu", "da", "de", "di", "do", "du", "fa", "fe", "fi", "fo", "fu", "ga",
    "ge", "gi", "go", "gu", "ka", "ke", "ki", "ko", "ku", "la", "le", "li", "lo", "lu", "ma", "me",
    "mi", "mo", "mu", "na", "ne", "ni", "no", "nu",
];

const MADE_UP: usize = 40 * 40 * 40;
const VOCABULARY: usize = COMMON.len() + MADE_UP;

/// The word of a rank, as the SQL below builds it.
fn word(rank: usize) -> String {
    match COMMON.get(rank) {
        Some(w) => (*w).to_owned(),
        None => {
            let p = (rank - COMMON.len()) % MADE_UP;
            [p % 40, p / 40 % 40, p / 1600 % 40]
                .iter()
                .map(|&s| SYLLABLES[s])
                .collect()
        }
    }
}

fn sql_array(words: &[&str]) -> String {
    format!("'{{{}}}'::text[]", words.join(","))
}

/// Sessions writing the messages at once: the generated `tsvector` of
/// each row costs most of the load, and one backend does it on one core.
const LOAD_SESSIONS: u64 = 3;

/// The table of the conversations the messages go to, dropped after the load.
const SC: &str = "bench_search_conversations";

/// The statement that writes messages `g` of 1..=`count` with
/// `g % sessions = part` over the conversations of table [`SC`] (`k`
/// 0..`convs`): message `g` into conversation `g % convs`, so ids
/// interleave the conversations as live traffic does (looked up in arrays:
/// a join would write them conversation by conversation), senders
/// alternating, times increasing with `g`, everything read.
fn messages_sql(count: u64, convs: usize, part: u64, sessions: u64, vector: bool) -> String {
    let cw = sql_array(&COMMON);
    let sy = sql_array(&SYLLABLES);
    let nc = COMMON.len();
    let ln_v = (VOCABULARY as f64).ln();
    let (vector_column, vector) = if vector {
        (
            ", search_vector",
            ", chat_search_vector(s.content, s.low, s.high)",
        )
    } else {
        ("", "")
    };
    format!(
        "INSERT INTO messages (conversation_id, sender_id, content, client_id, created_at, read_at{vector_column})
         SELECT s.conversation_id, s.sender_id, s.content, NULL, s.created_at, s.read_at{vector}
         FROM (SELECT a.ids[g % {convs} + 1] AS conversation_id,
                CASE WHEN (g / {convs}) % 2 = 0 THEN a.lows[g % {convs} + 1] ELSE a.highs[g % {convs} + 1] END
                  AS sender_id,
                a.lows[g % {convs} + 1] AS low, a.highs[g % {convs} + 1] AS high,
                (SELECT string_agg(CASE WHEN z.r < {nc} THEN ({cw})[z.r + 1]
                                   ELSE ({sy})[(z.r - {nc}) % 40 + 1]
                                     || ({sy})[(z.r - {nc}) / 40 % 40 + 1]
                                     || ({sy})[(z.r - {nc}) / 1600 % 40 + 1] END, ' ')
                 FROM (SELECT least(floor(exp(random() * {ln_v}))::int - 1 + 0 * w, {max_rank}) AS r
                       FROM generate_series(1, 4 + (g % 13)::int) AS w) z) AS content,
                (now() AT TIME ZONE 'UTC') - ({count} - g) * interval '1 millisecond' AS created_at,
                (now() AT TIME ZONE 'UTC') AS read_at
         FROM generate_series(1, {count}) AS g,
              (SELECT array_agg(id ORDER BY k) AS ids, array_agg(user_low ORDER BY k) AS lows,
                      array_agg(user_high ORDER BY k) AS highs FROM {SC}) AS a
         WHERE g % {sessions} = {part}
         OFFSET 0) AS s",
        max_rank = VOCABULARY - 1,
    )
}

/// The query classes and their queries.
fn query_classes() -> Vec<(&'static str, Vec<String>)> {
    let nc = COMMON.len();
    vec![
        // In 8 % to 48 % of the messages.
        (
            "common_word",
            COMMON[..10].iter().map(|w| (*w).to_owned()).collect(),
        ),
        // Ranks 100..1,000: 0.1 % to 1 % of the messages.
        (
            "medium_word",
            (0..10).map(|i| word(nc + 7 + i * 97)).collect(),
        ),
        // Ranks above 30,000: a few dozen messages in the whole database.
        (
            "rare_word",
            (0..10).map(|i| word(nc + 30_011 + i * 3_331)).collect(),
        ),
        (
            "prefix",
            [
                "th*", "wo*", "pe*", "ka*", "kami*", "lubo*", "ne*", "dufa*", "ab*", "so*",
            ]
            .iter()
            .map(|w| (*w).to_owned())
            .collect(),
        ),
        (
            "phrase",
            [
                "\"of the\"",
                "\"to be\"",
                "\"and a\"",
                "\"the people\"",
                "\"in that\"",
                "\"you know\"",
                "\"it is the\"",
                "\"have to\"",
                "\"for the\"",
                "\"one of the\"",
            ]
            .iter()
            .map(|w| (*w).to_owned())
            .collect(),
        ),
        // Two words anywhere in a message.
        (
            "two_words",
            (0..10)
                .map(|i| format!("{} {}", COMMON[i], word(nc + 50 + i * 13)))
                .collect(),
        ),
    ]
}

fn search_path(api: &Api, q: &str) -> Result<String> {
    let mut u = api.url("/api/chat/search/")?;
    u.query_pairs_mut().append_pair("q", q);
    Ok(format!("{}?{}", u.path(), u.query().unwrap_or_default()))
}

/// Seeds the messages; (seconds, facts about the load).
fn load(url: &str, name: &str, searcher: i64, cfg: &Config, convs: usize) -> Result<Value> {
    let len = name.len();
    let index_def = |url: &str| {
        psql(
            url,
            &["SELECT indexdef FROM pg_indexes \
               WHERE schemaname = current_schema() AND indexname = 'messages_search'"],
        )
    };
    let before = index_def(url)?;
    let sc = format!(
        "CREATE TABLE {SC} AS
         SELECT row_number() OVER (ORDER BY (v.user_low = {searcher} OR v.user_high = {searcher}) DESC, v.id) - 1 AS k,
                v.id, v.user_low, v.user_high
         FROM conversations v JOIN users u ON u.id = v.user_low
         WHERE left(u.username, {len}) = '{name}'"
    );
    let started = Instant::now();
    psql(url, &[&format!("DROP TABLE IF EXISTS {SC}"), &sc])?;
    if !before.is_empty() {
        psql(url, &["DROP INDEX messages_search"])?;
    }
    let vector = crate::history::writes_search_vector(url)?;
    let parts: Vec<std::thread::JoinHandle<Result<String>>> = (0..LOAD_SESSIONS)
        .map(|part| {
            let url = url.to_owned();
            let sql = messages_sql(cfg.messages, convs, part, LOAD_SESSIONS, vector);
            std::thread::spawn(move || psql(&url, &[&sql]))
        })
        .collect();
    for part in parts {
        part.join().map_err(|_| "a load thread panicked")??;
    }
    let insert_s = started.elapsed().as_secs_f64();
    let indexing = Instant::now();
    let mut statements: Vec<String> = vec!["SET maintenance_work_mem = '512MB'".into()];
    if !before.is_empty() {
        statements.push(before.clone());
    }
    statements.push(format!(
        "UPDATE conversations c SET message_count = s.n, last_message_id = s.max_id,
                updated_at = s.max_created
         FROM (SELECT m.conversation_id, count(*) AS n, max(m.id) AS max_id,
                      max(m.created_at) AS max_created
               FROM messages m JOIN {SC} sc ON sc.id = m.conversation_id GROUP BY 1) s
         WHERE c.id = s.conversation_id"
    ));
    statements.push(format!("DROP TABLE {SC}"));
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    psql(url, &refs)?;
    let index_s = indexing.elapsed().as_secs_f64();
    let analyze = Instant::now();
    psql(url, &["VACUUM ANALYZE messages", "ANALYZE conversations"])?;
    let after = index_def(url)?;
    let mut facts = database_facts(url, searcher)?;
    for (k, v) in [
        ("search_index", json!(before)),
        (
            "search_index_recreated_identically",
            json!(!before.is_empty() && before == after),
        ),
    ] {
        facts[k] = v;
    }
    let mut out = json!({
        "insert_s": round3(insert_s),
        "insert_sessions": LOAD_SESSIONS,
        "index_and_counters_s": round3(index_s),
        "vacuum_analyze_s": round3(analyze.elapsed().as_secs_f64()),
        "vectors_written_by": if vector {
            "chat_search_vector (the SQL twin of the server's vectors)"
        } else {
            "the generated column"
        },
    });
    for (k, v) in facts.as_object().into_iter().flatten() {
        out[k] = v.clone();
    }
    Ok(out)
}

/// How many messages there are, how many are the searcher's, the sizes.
fn database_facts(url: &str, searcher: i64) -> Result<Value> {
    let facts = psql(
        url,
        &[&format!(
            "SELECT (SELECT count(*) FROM messages),
                    (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                     WHERE c.user_low = {searcher} OR c.user_high = {searcher}),
                    pg_size_pretty(pg_total_relation_size('messages')),
                    (SELECT pg_size_pretty(pg_relation_size('messages_search'))
                     WHERE to_regclass('messages_search') IS NOT NULL)"
        )],
    )?;
    let f: Vec<&str> = facts.split('|').map(str::trim).collect();
    Ok(json!({
        "messages_in_database": f.first().and_then(|v| v.parse::<u64>().ok()),
        "messages_of_user": f.get(1).and_then(|v| v.parse::<u64>().ok()),
        "messages_table_size": f.get(2),
        "search_index_size": f.get(3),
    }))
}

/// A database seeded before (`--existing NAME`: the searcher is user
/// `NAME0`, seeded by this scenario's SQL, e.g. with the server not yet
/// built): the searcher gets the password of a user registered now.
async fn existing(api: &Api, url: &str, name: &str) -> Result<(String, Value)> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("--existing: letters, digits and _ only".into());
    }
    let template = api.create_users("set", 1, 1).await?;
    let template = template.first().ok_or("no template user")?;
    let searcher = format!("{name}0");
    let id = psql(
        url,
        &[&format!(
            "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE id = {})
             WHERE username = '{searcher}' RETURNING id",
            template.id
        )],
    )?;
    let id: i64 = id
        .lines()
        .next()
        .ok_or_else(|| format!("--existing: no user {searcher}"))?
        .trim()
        .parse()?;
    let url = url.to_owned();
    let mut facts = tokio::task::spawn_blocking(move || database_facts(&url, id)).await??;
    facts["seeded_before"] = json!(name);
    Ok((api.login(&searcher).await?, facts))
}

/// Runs the scenario; the JSON result.
pub async fn run(api: &Api, cfg: &Config) -> Result<Value> {
    let url = cfg.database_url.clone().ok_or(
        "search: --database-url postgres://... is required (messages are seeded with SQL)",
    )?;
    let c = cfg.conversations.max(1);
    if cfg.user_messages == 0 || cfg.user_messages > cfg.messages {
        return Err("search: need 0 < --user-messages <= --messages".into());
    }
    // Other users' conversations, as many as keeps every conversation the
    // same size.
    let others = ((c as u64 * (cfg.messages - cfg.user_messages)) as f64 / cfg.user_messages as f64)
        .round() as usize;
    let convs = c + others;
    let setup_started = Instant::now();
    if let Some(name) = &cfg.existing {
        let (token, loaded) = existing(api, &url, name).await?;
        return measure(api, cfg, &token, loaded, (c, others), setup_started).await;
    }
    let edges = format!(
        "SELECT 0, j FROM generate_series(1, {c}) AS j
         UNION ALL SELECT {c} + 1 + 2 * k, {c} + 2 + 2 * k FROM generate_series(0, {others} - 1) AS k"
    );
    let seeded = seed::graph(api, &url, "se", 1 + c + 2 * others, &edges).await?;
    let searcher_id = seeded.ids[0];
    let name = seeded.prefix.clone();
    let cfg2 = cfg.clone();
    let loaded =
        tokio::task::spawn_blocking(move || load(&url, &name, searcher_id, &cfg2, convs)).await??;
    eprintln!(
        "search: {} messages ({} of the searcher's) seeded in {:.1} s",
        cfg.messages,
        cfg.user_messages,
        setup_started.elapsed().as_secs_f64()
    );
    let searcher = seeded.login(api, &[0], 1).await?;
    let token = &searcher.first().ok_or("no searcher")?.token;
    measure(api, cfg, token, loaded, (c, others), setup_started).await
}

/// The timed searches; the scenario's JSON.
async fn measure(
    api: &Api,
    cfg: &Config,
    token: &str,
    loaded: Value,
    (c, others): (usize, usize),
    setup_started: Instant,
) -> Result<Value> {
    let classes = query_classes();
    // Warm-up, and how many each query finds (one page: up to 20, more
    // when has_more says so).
    let mut hits = serde_json::Map::new();
    for (class, queries) in &classes {
        let mut counts = Vec::new();
        for q in queries {
            let v = api.get_json(&search_path(api, q)?, token).await?;
            let n = v["results"].as_array().map_or(0, Vec::len);
            let more = v["has_more"].as_bool() == Some(true);
            counts.push(json!(format!("{q}: {n}{}", if more { "+" } else { "" })));
        }
        hits.insert((*class).to_owned(), Value::Array(counts));
    }
    let cpu_before = CpuSnapshot::take(cfg.server_pid);
    let started = Instant::now();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); classes.len()];
    let mut all = Vec::new();
    // Round robin over the classes, each query in turn.
    let deadline = started + Duration::from_secs_f64(cfg.max_seconds.max(1.0));
    for i in 0..cfg.queries {
        if Instant::now() >= deadline {
            break;
        }
        for (k, (_, queries)) in classes.iter().enumerate() {
            let q = &queries[i % queries.len()];
            let t = api.get_timed(&search_path(api, q)?, token).await?;
            times[k].push(t);
            all.push(t);
        }
    }
    let cpu = cpu_before.cores_since(
        &CpuSnapshot::take(cfg.server_pid),
        started.elapsed().as_secs_f64(),
    );
    let mut by_class = serde_json::Map::new();
    let mut worst_p99: f64 = 0.0;
    for ((class, queries), t) in classes.iter().zip(&times) {
        let p = Percentiles::from_durations(t);
        worst_p99 = worst_p99.max(p.p99);
        by_class.insert(
            (*class).to_owned(),
            json!({"queries": queries, "latency": p.to_json()}),
        );
    }
    Ok(json!({
        "messages": cfg.messages,
        "user_messages": cfg.user_messages,
        "user_conversations": c,
        "other_conversations": others,
        "load": loaded,
        "setup_s": round3(setup_started.elapsed().as_secs_f64()),
        "queries_per_class": cfg.queries,
        "rounds_run": times.first().map_or(0, Vec::len),
        "by_class": by_class,
        "overall": Percentiles::from_durations(&all).to_json(),
        "worst_class_p99_ms": round3(worst_p99),
        "first_page_hits": hits,
        "cpu_cores": cpu,
        "failed": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_sql_matches() {
        let mut seen = std::collections::HashSet::new();
        for r in 0..VOCABULARY {
            assert!(seen.insert(word(r)), "{}", word(r));
        }
        assert_eq!(word(0), "the");
        assert_eq!(word(100), "bababa");
        assert_eq!(word(101), "bebaba");
        let sql = messages_sql(1000, 500, 1, 3, true);
        assert!(sql.contains("chat_search_vector(s.content, s.low, s.high)"));
        assert!(!messages_sql(1000, 500, 1, 3, false).contains("search_vector"));
        assert!(sql.contains("a.ids[g % 500 + 1]"));
        assert!(sql.contains("FROM bench_search_conversations) AS a"));
        assert!(sql.contains("WHERE g % 3 = 1"));
        assert!(sql.contains(&format!("{}", VOCABULARY - 1)));
    }
}
