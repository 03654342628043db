//! Test support: a database per test and the real server on a free port.
//!
//! Backends come from the environment, so one command tests either:
//! - nothing set: SQLite temp files and the in-process bus;
//! - `TEST_DATABASE_URL=postgres://…/postgres`: a PostgreSQL database per
//!   test, cloned from a template migrated once, dropped afterwards;
//! - `TEST_REDIS_URL=redis://…`: servers relay through Redis.
//! - Redis Cluster tests: see [`cluster_wanted`] (on by default whenever
//!   one of the two above is set; the harness starts its own cluster).
//!
//! `TEST_RUN_PREFIX` names the databases and Redis channels of a run, so
//! runs sharing the servers do not meet.

use chat_persistence::{Database, PoolOptions};
use chat_server::Settings;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// PostgreSQL maintenance URL when tests run on PostgreSQL.
pub fn pg_base_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Redis URL when tests relay through Redis.
pub fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The run's prefix: lower-case letters, digits and `_` only.
pub fn run_prefix() -> String {
    let raw = std::env::var("TEST_RUN_PREFIX").unwrap_or_else(|_| "chat_test".into());
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A name unique within this run.
pub fn unique_name(kind: &str) -> String {
    format!(
        "{}_{}_{}_{}",
        run_prefix(),
        kind,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of its own for one test; removed on drop.
#[derive(Debug)]
pub struct TestDb {
    /// URL to give the server.
    pub url: String,
    /// The attachment directory of the servers on this database (nodes
    /// sharing a database share it, as nodes share a volume or a bucket).
    pub files_dir: PathBuf,
    cleanup: Cleanup,
}

/// A fresh directory for a test database's attachment files.
fn files_dir() -> PathBuf {
    std::env::temp_dir().join(unique_name("files"))
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(PathBuf),
    Postgres { base: String, name: String },
}

impl TestDb {
    /// A fresh, migrated database on the configured backend.
    pub async fn new() -> TestDb {
        match pg_base_url() {
            Some(base) => {
                let name = unique_name("db");
                let (b, n) = (base.clone(), name.clone());
                tokio::task::spawn_blocking(move || create_pg_database(&b, &n))
                    .await
                    .expect("create task")
                    .expect("create PostgreSQL test database");
                TestDb {
                    url: with_database(&base, &name),
                    files_dir: files_dir(),
                    cleanup: Cleanup::Postgres { base, name },
                }
            }
            None => {
                let path = std::env::temp_dir().join(format!("{}.sqlite3", unique_name("db")));
                let url = format!("sqlite://{}", path.display());
                let db = Database::new(&url, &PoolOptions::default()).expect("open sqlite");
                db.migrate().await.expect("migrate sqlite");
                TestDb {
                    url,
                    files_dir: files_dir(),
                    cleanup: Cleanup::Sqlite(path),
                }
            }
        }
    }

    /// An empty, unmigrated database (for migration tests).
    pub async fn empty() -> TestDb {
        match pg_base_url() {
            Some(base) => {
                let name = unique_name("empty");
                let (b, n) = (base.clone(), name.clone());
                tokio::task::spawn_blocking(move || {
                    let mut conn = PgConnection::establish(&b).expect("connect to PostgreSQL");
                    diesel::sql_query(format!("CREATE DATABASE \"{n}\""))
                        .execute(&mut conn)
                        .expect("create database");
                })
                .await
                .expect("create task");
                TestDb {
                    url: with_database(&base, &name),
                    files_dir: files_dir(),
                    cleanup: Cleanup::Postgres { base, name },
                }
            }
            None => {
                let path = std::env::temp_dir().join(format!("{}.sqlite3", unique_name("empty")));
                TestDb {
                    url: format!("sqlite://{}", path.display()),
                    files_dir: files_dir(),
                    cleanup: Cleanup::Sqlite(path),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files_dir);
        match &self.cleanup {
            Cleanup::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { base, name } => {
                if let Ok(mut conn) = PgConnection::establish(base) {
                    let _ = diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    ))
                    .execute(&mut conn);
                }
            }
        }
    }
}

/// Replaces the database name of a PostgreSQL URL.
fn with_database(base: &str, name: &str) -> String {
    let (head, query) = base
        .split_once('?')
        .map_or((base, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let root = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// The template's name changes with the migrations, so a stale one is never used.
fn template_name() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations/postgres");
    let mut files: Vec<PathBuf> = walk(&dir);
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        for b in std::fs::read(&f)
            .unwrap_or_default()
            .into_iter()
            .chain(f.to_string_lossy().bytes())
        {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{}_tmpl_{:x}", run_prefix(), hash)
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
    }
    out
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Clones the migrated template (made once, under an advisory lock, so
/// concurrent test processes agree).
fn create_pg_database(base: &str, name: &str) -> Result<(), String> {
    let mut conn = PgConnection::establish(base).map_err(|e| e.to_string())?;
    let template = template_name();
    diesel::sql_query("SELECT pg_advisory_lock(90210)")
        .execute(&mut conn)
        .map_err(|e| e.to_string())?;
    let made = ensure_template(&mut conn, base, &template);
    let _ = diesel::sql_query("SELECT pg_advisory_unlock(90210)").execute(&mut conn);
    made?;
    let mut last = String::new();
    for _ in 0..50 {
        match diesel::sql_query(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .execute(&mut conn)
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Err(last)
}

fn ensure_template(conn: &mut PgConnection, base: &str, template: &str) -> Result<(), String> {
    let found: Exists = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_database WHERE datname = '{template}'"
    ))
    .get_result(conn)
    .map_err(|e| e.to_string())?;
    if found.n > 0 {
        return Ok(());
    }
    let building = format!("{template}_build");
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
    ))
    .execute(conn)
    .map_err(|e| e.to_string())?;
    diesel::sql_query(format!("CREATE DATABASE \"{building}\""))
        .execute(conn)
        .map_err(|e| e.to_string())?;
    let url = with_database(base, &building);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let db = Database::new(&url, &PoolOptions::default()).map_err(|e| e.to_string())?;
        db.migrate().await.map_err(|e| e.to_string())
    })?;
    drop(runtime);
    diesel::sql_query(format!(
        "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
    ))
    .execute(conn)
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Knobs for a test server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Relay through this Redis (defaults to `TEST_REDIS_URL`).
    pub redis_url: Option<String>,
    /// Relay through the Redis Cluster with these seeds
    /// (`REDIS_CLUSTER_NODES`) instead of any Redis URL.
    pub redis_cluster_nodes: Option<String>,
    /// Channel prefix (defaults to a fresh unique one; give two nodes the same).
    pub channel_prefix: Option<String>,
    /// Extra `CHAT__SECTION__KEY` style variables.
    pub env: Vec<(String, String)>,
}

/// The secret test servers sign with, so tests can mint tokens like a Django service.
pub const TEST_JWT_SECRET: &str = "test-secret-shared-with-django";

/// The settings' variables of a test node on `db`.
fn node_vars(db: &TestDb, options: &ServerOptions) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("CHAT_CONFIG_DIR".into(), "/nonexistent-config-dir".into()),
        ("PORT".into(), "0".into()),
        ("DATABASE_URL".into(), db.url.clone()),
        (
            "CHAT__ATTACHMENTS__DIR".into(),
            db.files_dir.display().to_string(),
        ),
        ("JWT_SECRET".into(), TEST_JWT_SECRET.into()),
        ("CHAT__SERVER__WORKERS".into(), "2".into()),
        ("CHAT__SERVER__RUN_MIGRATIONS".into(), "false".into()),
        ("CHAT__SERVER__SHUTDOWN_TIMEOUT_SECONDS".into(), "1".into()),
        ("CHAT__AUTH__ARGON2_MEMORY_KIB".into(), "1024".into()),
        ("CHAT__AUTH__ARGON2_ITERATIONS".into(), "1".into()),
        // Suites register many users from one address; limit tests switch them on.
        ("CHAT__RATE_LIMITS__AUTH_PER_MINUTE".into(), "0".into()),
        ("CHAT__RATE_LIMITS__MESSAGES_PER_SECOND".into(), "0".into()),
        ("CHAT__RATE_LIMITS__FRAMES_PER_SECOND".into(), "0".into()),
        ("CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER".into(), "0".into()),
        (
            "CHAT__REDIS__CHANNEL_PREFIX".into(),
            options
                .channel_prefix
                .clone()
                .unwrap_or_else(|| format!("{}:", unique_name("ch"))),
        ),
    ];
    if let Some(seeds) = options.redis_cluster_nodes.clone() {
        vars.push(("REDIS_CLUSTER_NODES".into(), seeds));
    } else if let Some(redis) = options.redis_url.clone().or_else(redis_url) {
        vars.push(("REDIS_URL".into(), redis));
    }
    vars.extend(options.env.iter().cloned());
    vars
}

/// A running server on a free port; stopped on drop.
pub struct TestServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// The server's pool (statement counts).
    pub database: Database,
    handle: actix_web::dev::ServerHandle,
    shutdown: chat_server::Shutdown,
    stopped: Arc<tokio::sync::Notify>,
    /// Kept alive as long as the server.
    pub db: Arc<TestDb>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// A server on its own fresh database, with the environment's backends.
    pub async fn start() -> TestServer {
        let db = Arc::new(TestDb::new().await);
        Self::start_on(db, ServerOptions::default()).await
    }

    /// A server on its own fresh database with extra `CHAT__SECTION__KEY`
    /// settings (the environment's backends otherwise).
    pub async fn start_with(env: &[(&str, &str)]) -> TestServer {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let db = Arc::new(TestDb::new().await);
        Self::start_on(
            db,
            ServerOptions {
                env,
                ..ServerOptions::default()
            },
        )
        .await
    }

    /// A server on `db` (share it between servers for multi-node tests).
    pub async fn start_on(db: Arc<TestDb>, options: ServerOptions) -> TestServer {
        let vars = node_vars(&db, &options);
        let settings = Settings::load_from(&vars).expect("test settings");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                match chat_server::start(settings).await {
                    Ok(running) => {
                        let stopped = Arc::new(tokio::sync::Notify::new());
                        let _ = tx.send(Ok((
                            running.addr,
                            running.handle.clone(),
                            running.database.clone(),
                            running.shutdown.clone(),
                            stopped.clone(),
                        )));
                        let _ = running.server.await;
                        stopped.notify_waiters();
                        stopped.notify_one();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let (addr, handle, database, shutdown, stopped) =
            tokio::task::spawn_blocking(move || rx.recv())
                .await
                .expect("join")
                .expect("server thread")
                .expect("server starts");
        TestServer {
            addr,
            database,
            handle,
            shutdown,
            stopped,
            db,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Shuts the node down as SIGTERM does ([`chat_server::drain`]) and
    /// returns once the server has stopped.
    pub async fn drain(&self) {
        let stopped = self.stopped.notified();
        chat_server::drain(&self.handle, &self.shutdown).await;
        stopped.await;
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // stop() sends the command at once; the returned future only waits for it.
        drop(self.handle.stop(false));
    }
}

/// Set in a [`NodeProcess`]'s environment: its settings' variables, one
/// `KEY=VALUE` a line.
const NODE_VARS: &str = "CHAT_TEST_NODE_VARS";
/// What a node process prints once it listens, before its address.
const NODE_LISTENING: &str = "chat-test-node listening on ";

/// A node in a process of its own, so it can die as a process does
/// (SIGKILL: every connection cut by the kernel, nothing answered, no close
/// frame) or stop on SIGTERM as in production. The process is this test
/// binary run again with only `entry` selected: a test whose body is
/// [`node_process_main`]. Killed on drop.
pub struct NodeProcess {
    /// Bound address.
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess")
            .field("addr", &self.addr)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl NodeProcess {
    /// Starts a node on `db` with `options` (give it the channel prefix of
    /// the nodes it works with) and waits until it listens.
    pub async fn start(db: &TestDb, options: &ServerOptions, entry: &str) -> NodeProcess {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let vars: Vec<String> = node_vars(db, options)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", entry, "--nocapture", "--test-threads=1"])
            .env(NODE_VARS, vars.join("\n"))
            // The child leaves when this pipe closes (this process is gone).
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the node process");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                // libtest's "test … " precedes it on the line.
                if let Some((_, addr)) = line.split_once(NODE_LISTENING)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
            }
        });
        let addr = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .expect("the node process listens within 30 s")
            .expect("the node process printed its address")
            .expect("an address");
        NodeProcess { addr, child }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill();
        self.wait().await;
    }

    /// SIGTERM (the node drains as in production), and waits until the
    /// process is gone: within its drain time of 1 s, and a margin.
    pub async fn terminate(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM: {status}");
        self.wait().await;
    }

    async fn wait(&mut self) {
        for _ in 0..200 {
            if self.child.try_wait().expect("wait for the node").is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the node process did not end within 10 s");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a [`NodeProcess`]: in one, serves with the settings it was
/// given until SIGKILL, SIGTERM (drained as `chat-server` does) or its
/// parent going away, and never returns. Anywhere else it returns at once.
pub fn node_process_main() {
    use std::io::Write;
    let Ok(encoded) = std::env::var(NODE_VARS) else {
        return;
    };
    let vars: Vec<(String, String)> = encoded
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let settings = Settings::load_from(&vars).expect("node settings");
    let served = actix_rt::System::new().block_on(async move {
        let running = chat_server::start(settings).await.expect("the node starts");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n{NODE_LISTENING}{}", running.addr);
        let _ = out.flush();
        drop(out);
        let (handle, shutdown) = (running.handle.clone(), running.shutdown.clone());
        actix_rt::spawn(async move {
            chat_server::termination().await;
            chat_server::drain(&handle, &shutdown).await;
        });
        running.server.await.is_ok()
    });
    std::process::exit(if served { 0 } else { 1 });
}

/// A local S3-compatible server for the tests of the S3 store: `moto` in
/// server mode (PyPI `moto[server]`, installed here when missing), started
/// once per test process on a free port and stopped when the process ends
/// (it runs under a shell that kills it when its stdin, held by this
/// process, closes).
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _guard: std::sync::Mutex<std::process::Child>,
}

static S3: std::sync::OnceLock<Result<S3Server, String>> = std::sync::OnceLock::new();

impl S3Server {
    /// The process's server, started on first use. Panics (the test fails,
    /// it is not skipped) when moto cannot be installed or started.
    pub fn get() -> &'static S3Server {
        match S3.get_or_init(Self::start) {
            Ok(s) => s,
            Err(e) => panic!("the local S3 server (moto) could not start: {e}"),
        }
    }

    fn start() -> Result<S3Server, String> {
        use std::process::{Command, Stdio};
        let has_moto = || {
            Command::new("python3")
                .args(["-c", "import moto.server, flask"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has_moto() {
            let installed = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "moto[server]"])
                .status()
                .map_err(|e| format!("pip: {e}"))?;
            if !installed.success() || !has_moto() {
                return Err("`python3 -m pip install 'moto[server]'` failed".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let script = format!(
            "python3 -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; \
             read _; kill $pid"
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("nothing listens on {endpoint} after 30 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(S3Server {
            endpoint,
            _guard: std::sync::Mutex::new(child),
        })
    }

    /// A new, empty bucket; returns its name.
    pub async fn bucket(&self) -> String {
        let name = unique_name("bucket").replace('_', "-").to_lowercase();
        let res = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(res.status().is_success(), "create bucket: {}", res.status());
        name
    }

    /// The keys in `bucket`.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let text = reqwest::Client::new()
            .get(format!("{}/{bucket}?list-type=2", self.endpoint))
            .send()
            .await
            .expect("list bucket")
            .text()
            .await
            .expect("listing");
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    /// Settings of a server that keeps its files in `bucket`.
    pub fn settings(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("CHAT__ATTACHMENTS__STORE", "s3"),
            ("CHAT__ATTACHMENTS__S3_BUCKET", bucket),
            ("CHAT__ATTACHMENTS__S3_ENDPOINT", self.endpoint.as_str()),
            ("CHAT__ATTACHMENTS__S3_ALLOW_HTTP", "true"),
            ("CHAT__ATTACHMENTS__S3_ACCESS_KEY_ID", "testing"),
            ("CHAT__ATTACHMENTS__S3_SECRET_ACCESS_KEY", "testing"),
            ("CHAT__ATTACHMENTS__S3_PREFIX", "chat/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
// ------------------------------------------------------------ Redis Cluster

/// Whether this run tests on a Redis Cluster: `TEST_REDIS_CLUSTER=1`, or a
/// run on shared backends (`TEST_REDIS_URL` or `TEST_DATABASE_URL` set, as
/// in the PostgreSQL + Redis pass of `.ci/run`); `TEST_REDIS_CLUSTER=0`
/// turns it off. The harness starts the cluster itself (redis-server 7+
/// and redis-cli must be installed; a run that wants a cluster and cannot
/// start one fails rather than skips).
pub fn cluster_wanted() -> bool {
    match std::env::var("TEST_REDIS_CLUSTER").ok().as_deref() {
        Some("0") => false,
        Some("") | None => redis_url().is_some() || pg_base_url().is_some(),
        Some(_) => true,
    }
}

/// A local Redis Cluster of the tests' own: redis-server processes with
/// `--cluster-enabled yes` on free ports, each in a directory of a temp
/// dir, joined by `redis-cli --cluster create`. Every node process is
/// watched by a shell that SIGKILLs it and removes its directory when the
/// pipe to it closes, so nothing outlives the test process (even one
/// killed). Stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    dir: PathBuf,
    nodes: std::sync::Mutex<Vec<ClusterNode>>,
}

#[derive(Debug)]
struct ClusterNode {
    port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

/// A port free for a cluster node: it and its bus port (+10000).
fn free_cluster_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl ClusterNode {
    /// Starts (or restarts) the node process; returns once it takes
    /// connections.
    fn spawn(&mut self) {
        use std::process::{Command, Stdio};
        // The shell kills redis-server when its stdin closes; "keep" on
        // stdin (a deliberate kill) leaves the directory for a restart.
        let script = r#"redis-server "$@" & pid=$!; read cmd; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; d=$PWD; [ "$cmd" = keep ] || { rm -rf "$d"; rmdir "${d%/*}" 2>/dev/null; }"#;
        let child = Command::new("sh")
            .args(["-c", script, "sh"])
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                // The other shards keep serving while one is down.
                "--cluster-require-full-coverage",
                "no",
                "--cluster-allow-reads-when-down",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                ".",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (cluster node)");
        self.child = Some(child);
        for _ in 0..200 {
            if redis_cli(self.port, &["ping"]).is_ok_and(|o| o.trim() == "PONG") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("cluster node on {} did not come up", self.port);
    }

    /// SIGKILL; with `keep` its directory (nodes.conf) stays for a restart.
    fn kill(&mut self, keep: bool) {
        use std::io::Write;
        if let Some(mut child) = self.child.take() {
            if let Some(mut stdin) = child.stdin.take()
                && keep
            {
                let _ = stdin.write_all(b"keep\n");
            }
            let _ = child.wait();
        }
    }
}

impl RedisCluster {
    /// Starts `masters` primaries with `replicas` replicas each and waits
    /// until every node says `cluster_state:ok`. Blocking (a few seconds).
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        for tool in ["redis-server", "redis-cli"] {
            let version = std::process::Command::new(tool).arg("--version").output();
            assert!(
                version.is_ok_and(|o| o.status.success()),
                "{tool} (Redis 7 or later) is needed for the Redis Cluster tests"
            );
        }
        let dir = std::env::temp_dir().join(unique_name("redis_cluster"));
        let mut nodes = Vec::new();
        for i in 0..masters * (1 + replicas) {
            let node_dir = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("cluster node dir");
            let mut node = ClusterNode {
                port: free_cluster_port(),
                dir: node_dir,
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            dir,
            nodes: std::sync::Mutex::new(nodes),
        };
        cluster.wait_ok();
        cluster
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, Vec<ClusterNode>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every node's port, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes().iter().map(|n| n.port).collect()
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,…`: what `REDIS_CLUSTER_NODES` takes.
    pub fn seeds(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits (up to 30 s) until every running node says `cluster_state:ok`
    /// and sees every slot served.
    pub fn wait_ok(&self) {
        let ports: Vec<u16> = self
            .nodes()
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect();
        for _ in 0..600 {
            let ok = ports.iter().all(|p| {
                redis_cli(*p, &["cluster", "info"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            });
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the Redis Cluster on {ports:?} did not become ok");
    }

    /// `redis-cli` on node `port` (any node answers cluster commands).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args).unwrap_or_else(|e| panic!("redis-cli -p {port} {args:?}: {e}"))
    }

    /// The primaries now serving slots, as (port, slot ranges), read from a
    /// running node's `CLUSTER NODES`.
    pub fn primaries(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        let running: Vec<u16> = self
            .nodes()
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect();
        let port = *running.first().expect("a running node");
        let text = self.cli(port, &["cluster", "nodes"]);
        let mut out = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let Some(node_port) = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
            else {
                continue;
            };
            let ranges: Vec<(u16, u16)> = fields[8..]
                .iter()
                .filter(|f| !f.starts_with('['))
                .filter_map(|f| match f.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => f.parse().ok().map(|s| (s, s)),
                })
                .collect();
            if !ranges.is_empty() {
                out.push((node_port, ranges));
            }
        }
        out
    }

    /// The port of a replica of the primary on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let text = self.cli(port, &["cluster", "nodes"]);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .filter(|f: &Vec<&str>| f.len() >= 8)
            .collect();
        let port_of = |addr: &str| -> Option<u16> {
            addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()
        };
        let id = lines
            .iter()
            .find(|f| port_of(f[1]) == Some(port))
            .map(|f| f[0])
            .expect("the node is in its own CLUSTER NODES");
        lines
            .iter()
            .find(|f| f[2].contains("slave") && f[3] == id)
            .and_then(|f| port_of(f[1]))
            .unwrap_or_else(|| panic!("no replica of {port}"))
    }

    /// The port of the primary serving `key`'s (or channel's) slot.
    pub fn primary_of(&self, key: &str) -> u16 {
        let port = self.ports()[0];
        let slot: u16 = self
            .cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot");
        self.primaries()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// Runs `f` on the node listening on `port`.
    fn with_node(&self, port: u16, f: impl FnOnce(&mut ClusterNode)) {
        let mut nodes = self.nodes();
        f(nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster"));
    }

    /// SIGKILLs the node on `port` (its cluster config stays for a restart).
    pub fn kill(&self, port: u16) {
        self.with_node(port, |node| node.kill(true));
    }

    /// Starts the node on `port` again with its cluster config (it rejoins
    /// with the slots it had, unless a replica took them over).
    pub fn restart(&self, port: u16) {
        self.with_node(port, |node| {
            node.kill(true);
            node.spawn();
        });
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes().iter_mut() {
            node.kill(false);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SHARED_CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();

/// The run's three-primary Redis Cluster, started on first use and shared
/// by the tests that only need one (each gets its own channel prefix);
/// `None` when [`cluster_wanted`] says no. Its nodes die with the test
/// process. Tests that kill nodes start a [`RedisCluster`] of their own.
pub fn shared_redis_cluster() -> Option<&'static RedisCluster> {
    if !cluster_wanted() {
        return None;
    }
    Some(SHARED_CLUSTER.get_or_init(|| RedisCluster::start(3, 0)))
}
