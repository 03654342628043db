//! Migrations: up, down and up again on the configured backend, and the
//! schema they produce agrees with `crates/persistence/src/schema.rs`
//! (`just schema-check`).

use chat_persistence::{Database, DbConnection, PersistenceError, PoolOptions};
use chat_tests::TestDb;
use diesel::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};
use std::collections::BTreeMap;

#[derive(diesel::QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = BigInt)]
    nullable: i64,
}

/// (table, column) -> (type, nullable) as the database reports it.
type Columns = BTreeMap<(String, String), (String, bool)>;

fn db_columns(conn: &mut DbConnection) -> Result<Columns, PersistenceError> {
    let rows: Vec<Column> = match conn {
        DbConnection::Pg(c) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             data_type::text AS data_type, (CASE WHEN is_nullable = 'YES' THEN 1 ELSE 0 END)::int8 AS nullable \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name <> '__diesel_schema_migrations'",
        )
        .load(c)?,
        DbConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
             CAST((p.\"notnull\" = 0 AND p.pk = 0) AS BIGINT) AS nullable \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '__diesel_schema_migrations'",
        )
        .load(c)?,
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (r.table_name, r.column_name),
                (r.data_type.to_lowercase(), r.nullable != 0),
            )
        })
        .collect())
}

/// (table, column) -> (diesel type, nullable) as schema.rs declares it.
fn schema_columns() -> BTreeMap<(String, String), (String, bool)> {
    let text = include_str!("../../../crates/persistence/src/schema.rs");
    let mut out = BTreeMap::new();
    let mut table: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_suffix('{') {
            let rest = rest.trim();
            if let Some((name, _)) = rest.split_once(" (") {
                table = Some(name.trim().to_owned());
            }
            continue;
        }
        if line.starts_with('}') {
            continue;
        }
        let column = line
            .trim_end_matches(',')
            .split_once("->")
            .map(|(c, t)| (c.trim(), t.trim()));
        let column = column.filter(|(c, _)| {
            !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        });
        if let (Some(t), Some((col, ty))) = (&table, column) {
            let (ty, nullable) = match ty
                .strip_prefix("Nullable<")
                .and_then(|t| t.strip_suffix('>'))
            {
                Some(inner) => (inner.to_owned(), true),
                None => (ty.to_owned(), false),
            };
            out.insert((t.clone(), col.trim().to_owned()), (ty, nullable));
        }
    }
    out
}

/// The search index of one backend, which schema.rs does not declare (it
/// lists what both backends share and diesel queries): PostgreSQL's
/// generated `messages.search_vector`, SQLite's FTS5 table `messages_fts`
/// and its shadow tables (`messages_fts_data`, …).
fn is_search_index((table, column): &(String, String)) -> bool {
    (table == "messages" && column == "search_vector")
        || table == "messages_fts"
        || table.starts_with("messages_fts_")
}

fn compatible(diesel_type: &str, db_type: &str) -> bool {
    match diesel_type {
        "BigInt" => matches!(db_type, "bigint" | "integer"),
        "Text" => db_type == "text",
        "Timestamp" => db_type.starts_with("timestamp"),
        "Bool" => matches!(db_type, "boolean" | "bool"),
        _ => false,
    }
}

#[tokio::test]
async fn migrations_run_up_down_up_and_match_schema_rs() {
    let test_db = TestDb::empty().await;
    let db = Database::new(&test_db.url, &PoolOptions::default()).expect("pool");
    let applied = db.migrate().await.expect("up");
    assert!(applied >= 1, "a fresh database gets every migration");
    assert_eq!(
        db.migrate().await.expect("up again"),
        0,
        "migrating twice applies nothing"
    );
    let reverted = db.revert_all().await.expect("down");
    assert_eq!(reverted, applied);
    let after_down = db.run(db_columns).await.expect("columns");
    assert!(
        after_down.is_empty(),
        "down leaves no tables: {after_down:?}"
    );
    assert_eq!(db.migrate().await.expect("up after down"), applied);

    let mut actual = db.run(db_columns).await.expect("columns");
    let before = actual.len();
    actual.retain(|key, _| !is_search_index(key));
    assert!(actual.len() < before, "the search index exists");
    let declared = schema_columns();
    assert!(!declared.is_empty(), "schema.rs parsed");
    let actual_keys: Vec<_> = actual.keys().collect();
    let declared_keys: Vec<_> = declared.keys().collect();
    assert_eq!(
        actual_keys, declared_keys,
        "tables and columns of the migrations and schema.rs differ"
    );
    for (key, (diesel_type, nullable)) in &declared {
        let (db_type, db_nullable) = &actual[key];
        assert!(
            compatible(diesel_type, db_type),
            "{key:?}: schema.rs says {diesel_type}, database has {db_type}"
        );
        assert_eq!(nullable, db_nullable, "{key:?}: nullability differs");
    }
}

#[tokio::test]
async fn two_nodes_migrating_at_once_both_succeed() {
    let test_db = TestDb::empty().await;
    let a = Database::new(&test_db.url, &PoolOptions::default()).expect("pool a");
    let b = Database::new(&test_db.url, &PoolOptions::default()).expect("pool b");
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.expect("node a migrates"), rb.expect("node b migrates"));
    assert!(ra + rb >= 1, "the migrations ran once between them");
    assert_eq!(a.migrate().await.expect("again"), 0);
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Vector {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    vector: String,
}

fn vectors(conn: &mut DbConnection) -> Result<Vec<Vector>, PersistenceError> {
    match conn {
        DbConnection::Pg(c) => Ok(diesel::sql_query(
            "SELECT id, search_vector::text AS vector FROM messages ORDER BY id",
        )
        .load(c)?),
        DbConnection::Sqlite(_) => Ok(Vec::new()),
    }
}

/// PostgreSQL: migration 000018 re-indexes the messages stored before it
/// with the SQL twin of the server's vectors (the same for text of letters,
/// digits, punctuation and spaces), and a phrase is then found by its pairs.
#[tokio::test]
async fn search_terms_migration_reindexes_older_messages() {
    if chat_tests::pg_base_url().is_none() {
        return; // SQLite's FTS5 index is not touched by it.
    }
    let test_db = std::sync::Arc::new(TestDb::new().await);
    let server = chat_tests::TestServer::start_on(test_db.clone(), Default::default()).await;
    let api = crate::support::Api::new(&server);
    let (ta, tb, conv, _, _) = api.pair("alice", "bob").await;
    for content in [
        "One of the best, e-mail me",
        "CAFÉ crème at 9?",
        "the one of them",
    ] {
        api.send_message(&ta, conv, content).await;
    }
    drop(server);

    let db = Database::new(&test_db.url, &PoolOptions::default()).expect("pool");
    let written = db.run(vectors).await.expect("vectors");
    assert_eq!(written.len(), 3);
    assert!(
        written[0].vector.contains("' of the'") && written[0].vector.contains("' e mail'"),
        "{written:?}"
    );
    db.revert_last().await.expect("down 000018");
    let generated = db.run(vectors).await.expect("vectors");
    assert!(
        generated.iter().all(|v| !v.vector.contains("' ")),
        "the generated column has no pairs: {generated:?}"
    );
    assert_eq!(db.migrate().await.expect("up 000018"), 1);
    assert_eq!(db.run(vectors).await.expect("vectors"), written);

    // Bob's token, from the first server (the same secret).
    let _server = chat_tests::TestServer::start_on(test_db, Default::default()).await;
    let api = crate::support::Api::new(&_server);
    let (status, body) = api
        .call(
            "GET",
            "/api/chat/search/?q=%22one%20of%20the%22",
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["content"], "One of the best, e-mail me");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1), "{body}");
}
