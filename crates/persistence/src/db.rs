//! Connections, the pool, migrations and the helper that runs queries off
//! the async threads.

use crate::error::{Cause, PersistenceError, QueryResult};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Lock id that serializes migrations of nodes starting at once.
const MIGRATION_LOCK_ID: i64 = 0x6368_6174; // "chat"

/// One connection type over both backends; match on it for backend-specific code.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// Production backend.
    Pg(diesel::PgConnection),
    /// Embedded default.
    Sqlite(diesel::SqliteConnection),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pg(_) => "DbConnection::Pg",
            Self::Sqlite(_) => "DbConnection::Sqlite",
        })
    }
}

/// Which backend a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `sqlite://path` (or `sqlite:path`); the path of the database file.
    Sqlite(String),
}

impl DatabaseUrl {
    /// Chooses the backend by URL scheme.
    pub fn parse(url: &str) -> QueryResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(PersistenceError::other("sqlite URL without a path"));
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else {
            Err(PersistenceError::other(format!(
                "unsupported database URL scheme (expected postgres:// or sqlite://): {}",
                redact(url)
            )))
        }
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Counts statements per pool, so tests can prove a request issues a fixed number.
#[derive(Debug, Default)]
struct StatementCounter(Arc<AtomicU64>);

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// r2d2 manager that dispatches on the URL scheme, so a connection failure
/// is reported at once with its real cause.
#[derive(Debug)]
pub struct DbManager {
    url: DatabaseUrl,
    statements: Arc<AtomicU64>,
}

/// A pooled connection, and whether its last use failed. Only a connection
/// that saw an error is pinged before it goes back to the pool, so a
/// healthy pool pays no round trip per checkout, and a connection broken by
/// a database restart is dropped after its first failure.
#[derive(Debug)]
pub struct PooledDb {
    conn: DbConnection,
    suspect: bool,
}

impl r2d2::ManageConnection for DbManager {
    type Connection = PooledDb;
    type Error = diesel::ConnectionError;

    fn connect(&self) -> Result<PooledDb, Self::Error> {
        self.establish().map(|conn| PooledDb {
            conn,
            suspect: false,
        })
    }

    fn is_valid(&self, conn: &mut PooledDb) -> Result<(), Self::Error> {
        conn.conn
            .ping()
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
    }

    fn has_broken(&self, conn: &mut PooledDb) -> bool {
        if std::mem::take(&mut conn.suspect) {
            return conn.conn.ping().is_err();
        }
        conn.conn.is_broken()
    }
}

impl DbManager {
    fn establish(&self) -> Result<DbConnection, diesel::ConnectionError> {
        let counter = StatementCounter(self.statements.clone());
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let mut conn = diesel::PgConnection::establish(url)?;
                conn.set_instrumentation(counter);
                Ok(DbConnection::Pg(conn))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(path)?;
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                conn.set_instrumentation(counter);
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections (PostgreSQL). SQLite always uses one: it has a
    /// single writer, and one connection avoids lock-upgrade failures.
    pub max_size: u32,
    /// How long a query may wait for its turn and a connection, together,
    /// before it fails as `Unavailable` without having started.
    pub checkout_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 10,
            checkout_timeout: Duration::from_secs(5),
        }
    }
}

/// The pool and the way to use it.
#[derive(Clone, Debug)]
pub struct Database {
    pool: r2d2::Pool<DbManager>,
    /// One permit per pooled connection: queries wait here as futures, not
    /// as blocking threads parked in the pool, and a permit holder always
    /// finds a connection.
    gate: Arc<Semaphore>,
    checkout_timeout: Duration,
    statements: Arc<AtomicU64>,
    is_sqlite: bool,
}

impl Database {
    /// Builds the pool without connecting: the server starts (and reports
    /// not ready) while the database is down.
    pub fn new(url: &str, options: &PoolOptions) -> QueryResult<Self> {
        let url = DatabaseUrl::parse(url)?;
        let is_sqlite = matches!(url, DatabaseUrl::Sqlite(_));
        let sqlite_dir = match &url {
            DatabaseUrl::Sqlite(path) => std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty()),
            DatabaseUrl::Postgres(_) => None,
        };
        if let Some(dir) = sqlite_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                PersistenceError::other_with(format!("cannot create {}", dir.display()), e)
            })?;
        }
        let statements = Arc::new(AtomicU64::new(0));
        let manager = DbManager {
            url,
            statements: statements.clone(),
        };
        let max_size = if is_sqlite {
            1
        } else {
            options.max_size.max(1)
        };
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(options.checkout_timeout)
            .test_on_check_out(false)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            gate: Arc::new(Semaphore::new(max_size as usize)),
            checkout_timeout: options.checkout_timeout,
            statements,
            is_sqlite,
        })
    }

    /// Whether this is the embedded SQLite backend.
    pub fn is_sqlite(&self) -> bool {
        self.is_sqlite
    }

    /// Statements run so far on this pool (for query-count tests and metrics).
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Pool state: (connections, idle connections).
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool, once
    /// a permit and a connection are had within the checkout timeout;
    /// otherwise `Unavailable`, and `f` never runs.
    pub async fn run<T, F>(&self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.with_connection(self.checkout_timeout, move |pooled| {
            let result = f(&mut pooled.conn);
            if matches!(
                result,
                Err(PersistenceError::Unavailable(_) | PersistenceError::Other(_))
            ) {
                pooled.suspect = true;
            }
            result
        })
        .await
    }

    /// Waits for a permit, then checks out a connection on the blocking
    /// thread pool, both within `timeout`, and runs `f` with it.
    async fn with_connection<T, F>(&self, timeout: Duration, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut PooledDb) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let permit = tokio::time::timeout_at(deadline, self.gate.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| PersistenceError::Unavailable(Cause::new(e)))?;
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // A blocking thread may start late; the deadline still holds.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let mut pooled = pool.get_timeout(left)?;
            f(&mut pooled)
        })
        .await
        .map_err(|e| PersistenceError::other_with("query task failed", e))?
    }

    /// Runs `f` in a transaction (see [`Database::run`]).
    pub async fn transaction<T, F>(&self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |conn| conn.transaction(|c| f(c))).await
    }

    /// Answers whether the database is reachable, within `timeout`.
    pub async fn check(&self, timeout: Duration) -> QueryResult<()> {
        self.with_connection(timeout, |pooled| {
            let result = pooled.conn.ping().map_err(PersistenceError::from);
            pooled.suspect = result.is_err();
            result
        })
        .await
    }

    /// Applies pending migrations; returns how many ran. Safe when several
    /// nodes start at once (PostgreSQL advisory lock; SQLite's write lock).
    pub async fn migrate(&self) -> QueryResult<usize> {
        self.run(run_migrations).await
    }

    /// Reverts the newest migration (for tests of a migration on data
    /// written before it).
    pub async fn revert_last(&self) -> QueryResult<()> {
        self.run(|conn| {
            let reverted = match conn {
                DbConnection::Pg(c) => c.revert_last_migration(PG_MIGRATIONS).map(drop),
                DbConnection::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS).map(drop),
            };
            reverted.map_err(|e| PersistenceError::other_with("revert failed", e))
        })
        .await
    }

    /// Reverts every migration (for the up-down-up test and `just redo`).
    pub async fn revert_all(&self) -> QueryResult<usize> {
        self.run(|conn| {
            let reverted = match conn {
                DbConnection::Pg(c) => c.revert_all_migrations(PG_MIGRATIONS).map(|v| v.len()),
                DbConnection::Sqlite(c) => {
                    c.revert_all_migrations(SQLITE_MIGRATIONS).map(|v| v.len())
                }
            };
            reverted.map_err(|e| PersistenceError::other_with("revert failed", e))
        })
        .await
    }
}

fn timed_out() -> PersistenceError {
    PersistenceError::unavailable("timed out waiting for a connection")
}

fn run_migrations(conn: &mut DbConnection) -> QueryResult<usize> {
    let applied = match conn {
        DbConnection::Pg(c) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
                .execute(c)?;
            let result = c.run_pending_migrations(PG_MIGRATIONS).map(|v| v.len());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
                .execute(c)?;
            result
        }
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| PersistenceError::other_with("migration failed", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes() {
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").ok(),
            Some(DatabaseUrl::Sqlite("data/x.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").ok(),
            Some(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://x"), "sqlite://x");
    }
}
