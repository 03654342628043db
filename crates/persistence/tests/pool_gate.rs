//! The async gate in front of the pool: when every connection is busy, a
//! query waits as a future and gives up with `Unavailable` at the checkout
//! deadline, without ever running.
//!
//! Runs on an SQLite file, and also on PostgreSQL when `TEST_DATABASE_URL`
//! is set.

use chat_persistence::{Database, DbConnection, PersistenceError, PoolOptions};
use diesel::RunQueryDsl;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_millis(300);
const HOLD: Duration = Duration::from_millis(1500);

/// One blocking thread: a waiter parked on a blocking thread would queue
/// behind the holder and could not time out before it finishes.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn options() -> PoolOptions {
    PoolOptions {
        max_size: 1,
        checkout_timeout: DEADLINE,
    }
}

/// Keeps the only connection busy for `HOLD`, on the database itself where
/// it can (PostgreSQL), so the connection is really in use.
fn hold(conn: &mut DbConnection) -> Result<(), PersistenceError> {
    match conn {
        DbConnection::Pg(pg) => {
            diesel::sql_query(format!("SELECT pg_sleep({})", HOLD.as_secs_f64())).execute(pg)?;
        }
        DbConnection::Sqlite(_) => std::thread::sleep(HOLD),
    }
    Ok(())
}

async fn busy_pool_times_out(db: Database) {
    // Warm up, so the holder does not spend its time connecting. The first
    // connection may take longer than the deadline on a busy machine (a
    // checkpoint, a parallel suite): retry it, the timing under test starts
    // after.
    let warm_up = Instant::now();
    while let Err(e) = db.run(|_| Ok(())).await {
        assert!(
            warm_up.elapsed() < Duration::from_secs(20),
            "first query: {e:?}"
        );
    }
    let holder = tokio::spawn({
        let db = db.clone();
        async move { db.run(hold).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            let started = started.clone();
            tokio::spawn(async move {
                db.run(move |_| {
                    started.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        })
        .collect();
    for w in waiters {
        let result = w.await.expect("waiter task");
        assert!(
            matches!(result, Err(PersistenceError::Unavailable(_))),
            "expected Unavailable, got {result:?}"
        );
    }
    let waited = t0.elapsed();
    assert!(
        waited >= DEADLINE - Duration::from_millis(20),
        "gave up early: {waited:?}"
    );
    assert!(
        waited < HOLD - Duration::from_millis(300),
        "waited for the holder instead of the deadline: {waited:?}"
    );

    holder.await.expect("holder task").expect("holder query");
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "a timed-out query ran anyway"
    );
    // The permit came back: the pool serves again.
    db.run(|_| Ok(())).await.expect("query after the holder");
}

#[test]
fn busy_sqlite_pool_times_out_without_running() {
    let path = std::env::temp_dir().join(format!("pool_gate_{}.sqlite3", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    runtime().block_on(async {
        let db = Database::new(&url, &options()).expect("open sqlite");
        busy_pool_times_out(db).await;
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn busy_postgres_pool_times_out_without_running() {
    let Some(url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    runtime().block_on(async {
        let db = Database::new(&url, &options()).expect("open postgres");
        busy_pool_times_out(db).await;
    });
}

/// The deadline covers the checkout too: with the database down, a query
/// fails at the deadline rather than after r2d2's own timeout.
#[test]
fn unreachable_database_fails_at_the_deadline() {
    runtime().block_on(async {
        let db = Database::new("postgres://postgres@127.0.0.1:1/none", &options()).expect("pool");
        let started = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let result = db
            .run({
                let started = started.clone();
                move |_| {
                    started.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .await;
        let waited = t0.elapsed();
        assert!(
            matches!(result, Err(PersistenceError::Unavailable(_))),
            "expected Unavailable, got {result:?}"
        );
        assert!(waited < DEADLINE * 3, "took {waited:?}");
        assert_eq!(started.load(Ordering::SeqCst), 0);
    });
}
