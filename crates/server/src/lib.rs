//! Composes the chat server from its crates: settings, storage, fan-out, API.

pub mod settings;

pub use chat_api::Shutdown;
pub use settings::{Settings, SettingsError};

use actix_web::middleware::{NormalizePath, TrailingSlash, from_fn};
use actix_web::{App, HttpServer, web};
use chat_api::{AppState, middleware};
use chat_persistence::{Database, PoolOptions};
use chat_realtime::{Realtime, RealtimeConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// Why the server could not start (or stopped with an error): the one
/// error type of start-up, from settings to the listening socket.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Settings could not be read or cannot work.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Storage could not be opened or migrated.
    #[error("database: {}", .0.report())]
    Database(#[from] chat_persistence::PersistenceError),
    /// The realtime layer could not start.
    #[error("realtime: {0}")]
    Realtime(#[from] chat_realtime::RealtimeError),
    /// The API state could not be built.
    #[error("api: {0}")]
    State(#[from] chat_api::StateError),
    /// The address could not be bound.
    #[error("cannot bind: {0}")]
    Bind(#[from] std::io::Error),
    /// Bound, yet the server reports no address (should not happen).
    #[error("no address bound")]
    NoAddress,
    /// The running server failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
    /// The command line names no known command.
    #[error("unknown command '{0}' (expected serve or migrate)")]
    UnknownCommand(String),
}

/// A started server.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Stops the server.
    pub handle: actix_web::dev::ServerHandle,
    /// Await it to run until shutdown.
    pub server: actix_web::dev::Server,
    /// The pool (for tests counting statements).
    pub database: Database,
    /// Closes this node's sockets with 1012 (see [`drain`]).
    pub shutdown: chat_api::Shutdown,
}

/// Shuts a node down the way SIGTERM does: sockets close with 1012, no new
/// connections are accepted, requests and frames already taken are
/// answered, and the server stops within its shutdown timeout.
pub async fn drain(handle: &actix_web::dev::ServerHandle, shutdown: &chat_api::Shutdown) {
    shutdown.begin();
    handle.stop(true).await;
}

/// Waits for SIGTERM or SIGINT.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Forgets idle rate-limit keys every minute, so memory stays bounded.
fn spawn_limiter_upkeep(limits: std::sync::Arc<chat_api::limits::RateLimits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.shrink();
        }
    });
}

/// Prunes the user-stream log and the expired rows of the token blacklist
/// in the background (every node may: the deletes are idempotent).
fn spawn_event_log_pruning(db: Database, settings: &Settings) {
    let d = &settings.database;
    let keep_events = i64::try_from(d.event_log_keep_events).unwrap_or(i64::MAX);
    let keep_for = chrono::Duration::days(i64::try_from(d.event_log_keep_days).unwrap_or(36_500));
    let every = Duration::from_secs(d.event_log_prune_seconds);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let since = chrono::Utc::now() - keep_for;
            match db
                .run(move |c| chat_persistence::events::prune(c, keep_events, since))
                .await
            {
                Ok(n) => tracing::debug!(pruned = n, "user event log pruned"),
                Err(e) => tracing::warn!(error = %e.report(), "user event log pruning failed"),
            }
            // Blacklisted refresh tokens past their expiry are refused anyway.
            let now = chrono::Utc::now();
            match db
                .run(move |c| chat_persistence::tokens::prune_expired(c, now))
                .await
            {
                Ok(n) => tracing::debug!(pruned = n, "expired blacklisted tokens pruned"),
                Err(e) => tracing::warn!(error = %e.report(), "token blacklist pruning failed"),
            }
        }
    });
}

/// Sets the connection's TCP user timeout (Linux): data the peer has not
/// acknowledged for `timeout` ends the connection, zero-window probes
/// included. A socket task gives up on a client that stopped reading after
/// the same time, but actix keeps a connection while bytes wait in its
/// write buffer; the kernel ends it, so neither memory nor the connection
/// is held for ever.
fn cut_off_stalled_peers(connection: &dyn std::any::Any, timeout: Duration) {
    #[cfg(target_os = "linux")]
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout))
    {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (connection, timeout);
}

/// The Redis channel prefix: `redis.channel_prefix` when set, else one
/// derived from this deployment's id (kept in its database) and the Redis
/// database number, `chat:{deployment}:{db}:`. Redis pub/sub ignores the
/// database number, so without this two deployments sharing one Redis
/// would hear each other's conversations.
async fn channel_prefix(settings: &Settings, db: &Database) -> Result<String, StartError> {
    if !settings.redis.channel_prefix.is_empty() {
        return Ok(settings.redis.channel_prefix.clone());
    }
    if !settings.uses_redis() {
        return Ok("chat:".into()); // the in-process bus: nothing is shared
    }
    // A cluster has database 0 only: the same prefix as on one Redis's db 0.
    let redis_db = settings
        .redis_url()
        .map_or(0, |url| redis_database(url.expose()));
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    let id = db
        .run(move |c| chat_persistence::deployment::identity(c, &fresh))
        .await?;
    Ok(format!("chat:{id}:{redis_db}:"))
}

/// The database number of a Redis URL (`redis://host:6379/2` is 2); 0 when
/// it names none.
fn redis_database(url: &str) -> u32 {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .split_once('/')
        .map(|(_, path)| path.split(['?', '#']).next().unwrap_or(""))
        .and_then(|db| db.parse().ok())
        .unwrap_or(0)
}

/// actix-http logs at ERROR what a client did wrong on its connection (a
/// malformed request line or header, a body cut short, a peer gone while
/// written to): "stream error: …", "write zero; closing", "unexpected
/// eof". None is a fault of the service (the response or a 400 already
/// told the client), and ERROR is kept for those, so its dispatcher is
/// silenced unless `RUST_LOG` names actix_http itself.
const QUIET_CLIENT_ERRORS: &str = "actix_http::h1::dispatcher=off";

/// The log filter: `RUST_LOG` (default `info`), with actix-http's
/// per-connection client errors off (see [`QUIET_CLIENT_ERRORS`]).
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let wanted = rust_log.filter(|v| !v.trim().is_empty()).unwrap_or("info");
    let directives = if wanted.contains("actix_http") {
        wanted.to_owned()
    } else {
        format!("{wanted},{QUIET_CLIENT_ERRORS}")
    };
    tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("info,{QUIET_CLIENT_ERRORS}"))
    })
}

/// Opens the database pool from settings.
pub fn open_database(settings: &Settings) -> Result<Database, StartError> {
    let options = PoolOptions {
        max_size: settings.database.pool_size,
        checkout_timeout: Duration::from_secs(settings.database.checkout_timeout_seconds),
    };
    Ok(Database::new(settings.database_url().expose(), &options)?)
}

/// Migrates (when configured), binds and starts serving. Must run inside
/// an actix (tokio) runtime; returns once the socket is bound.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let database = open_database(&settings)?;
    if settings.server.run_migrations {
        let applied = database.migrate().await?;
        tracing::info!(applied, "migrations up to date");
    }
    let channel_prefix = channel_prefix(&settings, &database).await?;
    tracing::debug!(%channel_prefix, "redis channel prefix");
    let realtime = Realtime::start(RealtimeConfig {
        redis_url: settings.redis_url().map(|url| url.expose().to_owned()),
        redis_cluster_nodes: settings.redis_cluster_nodes(),
        channel_prefix,
        socket_queue: settings.redis.socket_queue,
        command_timeout: Duration::from_millis(settings.redis.command_timeout_ms),
        presence_grace: Duration::from_millis(settings.redis.presence_grace_ms),
        presence_lease: Duration::from_millis(settings.redis.presence_lease_ms),
    })
    .await?;
    let writer = chat_persistence::MessageWriter::start(
        database.clone(),
        settings.database.writers,
        settings.database.max_batch,
        settings.api.webhooks.delay(),
    );
    let mut state = AppState::new(database.clone(), writer, realtime, settings.api.clone())?;
    // Sockets must close within the drain time, or they are cut without 1012.
    state.shutdown = chat_api::Shutdown::new(Duration::from_secs(
        settings.server.shutdown_timeout_seconds,
    ));
    let body_limit = settings.api.limits.max_body_bytes;
    spawn_limiter_upkeep(state.limits.clone());
    spawn_event_log_pruning(database.clone(), &settings);
    let shutdown = state.shutdown.clone();
    let write_timeout = Duration::from_secs(settings.api.websocket.write_timeout_seconds);
    chat_api::service::presence::spawn_announcer(state.clone());
    chat_api::service::delivery::spawn_batcher(state.clone());
    chat_api::service::webhooks::spawn_dispatcher(state.clone());
    chat_api::service::attachments::spawn_cleanup(state.clone());
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(chat_api::extract::json_config(body_limit))
            .app_data(chat_api::extract::path_config())
            .app_data(chat_api::extract::query_config())
            .app_data(web::PayloadConfig::new(body_limit))
            .configure(chat_api::configure)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(chat_api::error::ApiError::not_found(
                    "Not found.",
                ))
            }))
            // Inside the header limit: oversized headers are refused before any body is read.
            .wrap(from_fn(middleware::read_body_in_time))
            .wrap(from_fn(middleware::limit_headers))
            .wrap(chat_api::error::json_error_handlers())
            .wrap(NormalizePath::new(TrailingSlash::Always))
            .wrap(from_fn(middleware::observe))
    })
    // Chat frames are small and latency-bound: without TCP_NODELAY, Nagle's
    // algorithm holds a frame back while an earlier one is unacknowledged.
    .tcp_nodelay(true)
    .on_connect(move |connection, _| cut_off_stalled_peers(connection, write_timeout))
    .shutdown_timeout(settings.server.shutdown_timeout_seconds)
    .max_connections(settings.server.max_connections)
    .backlog(settings.server.backlog)
    // Signals are handled by the caller (see `drain`), so sockets are closed
    // with 1012 rather than cut when the timeout ends.
    .disable_signals()
    .bind((settings.server.host.as_str(), settings.server.port))?;
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or(StartError::NoAddress)?;
    let server = server.run();
    Ok(Running {
        addr,
        handle: server.handle(),
        server,
        database,
        shutdown,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_redis_database_number_comes_from_the_url_path() {
        for (url, db) in [
            ("redis://127.0.0.1:6379", 0),
            ("redis://127.0.0.1:6379/", 0),
            ("redis://127.0.0.1:6379/2", 2),
            ("redis://:pw@h:6379/15?timeout=1", 15),
            ("rediss://h/3", 3),
        ] {
            assert_eq!(super::redis_database(url), db, "{url}");
        }
    }
}
