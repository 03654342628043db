//! Layered configuration: compiled-in defaults, config files, environment.
//!
//! Everything is checked once, in [`Settings::load_from`]: a value that
//! cannot work stops the start with its key named, instead of surfacing
//! later as a panic or a silent clamp.

use chat_api::settings::{
    AuthSettings, LimitSettings, RateLimitSettings, WebSocketSettings, WebhookSettings,
    at_least_one,
};
use chat_api::{ApiSettings, InvalidSetting, Secret};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// `config/default.toml`, compiled in so a deployed binary runs anywhere.
const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Development placeholder key; production refuses to run with it, and a
/// server using it listens only on a loopback address.
const DEV_SECRET: &str = "insecure-development-secret-change-me";

/// Shortest JWT secret production accepts: HS256's own 256 bits.
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// All settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "Sections")]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Storage.
    pub database: DatabaseSettings,
    /// Multi-node relay.
    pub redis: RedisSettings,
    /// What the API reads.
    pub api: ApiSettings,
}

/// The sections as the files lay them out, the API's next to the server's.
/// Read without `#[serde(flatten)]`, which would drop the key from errors.
#[derive(Deserialize)]
struct Sections {
    server: ServerSettings,
    database: DatabaseSettings,
    redis: RedisSettings,
    auth: AuthSettings,
    websocket: WebSocketSettings,
    limits: LimitSettings,
    rate_limits: RateLimitSettings,
    webhooks: WebhookSettings,
    attachments: chat_api::settings::AttachmentSettings,
}

impl From<Sections> for Settings {
    fn from(s: Sections) -> Self {
        Self {
            server: s.server,
            database: s.database,
            redis: s.redis,
            api: ApiSettings {
                auth: s.auth,
                websocket: s.websocket,
                limits: s.limits,
                rate_limits: s.rate_limits,
                webhooks: s.webhooks,
                attachments: s.attachments,
            },
        }
    }
}

/// What kind of deployment this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A laptop or test run: a missing JWT secret falls back to a placeholder.
    Development,
    /// A real deployment: a JWT secret is required.
    Production,
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(
            d,
            &[
                ("development", Self::Development),
                ("production", Self::Production),
            ],
        )
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable text for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &[("human", Self::Human), ("json", Self::Json)])
    }
}

/// A string naming one of `choices` (any case, as before these were
/// enums). The error lists the choices: config-rs's own enum error names
/// none of them.
fn one_of<'de, D: Deserializer<'de>, T: Copy>(d: D, choices: &[(&str, T)]) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&text))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            serde::de::Error::custom(format!(
                "unknown value \"{text}\", expected {}",
                names.join(" or ")
            ))
        })
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Development or production.
    pub environment: Environment,
    /// Bind address.
    pub host: String,
    /// Bind port (0 picks a free one).
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Human or JSON lines.
    pub log_format: LogFormat,
    /// Migrate at start-up.
    pub run_migrations: bool,
    /// Grace period on shutdown.
    pub shutdown_timeout_seconds: u64,
    /// Most connections each worker serves at once; more wait in the
    /// listen backlog (bounds what slow clients can hold).
    pub max_connections: usize,
    /// Connections the kernel queues while every slot is taken.
    pub backlog: u32,
}

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Empty means SQLite in `data_dir`. A PostgreSQL URL may hold a password.
    pub url: Secret,
    /// Where the embedded SQLite file lives.
    pub data_dir: String,
    /// Pool size.
    pub pool_size: u32,
    /// Longest wait for a turn and a pooled connection, together.
    pub checkout_timeout_seconds: u64,
    /// Concurrent message-writer transactions (PostgreSQL).
    pub writers: usize,
    /// Most sends stored in one transaction (PostgreSQL).
    pub max_batch: usize,
    /// The user-stream log keeps at least each user's last this many events…
    pub event_log_keep_events: u64,
    /// …and at least this many days of them.
    pub event_log_keep_days: u64,
    /// How often older events are pruned.
    pub event_log_prune_seconds: u64,
}

/// Redis settings.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Empty means the in-process bus. The URL may hold a password.
    pub url: Secret,
    /// Seed nodes of a Redis Cluster, `host:port,host:port`, in place of
    /// `url` (sharded pub/sub). Empty: no cluster.
    pub cluster_nodes: String,
    /// Channel name prefix.
    pub channel_prefix: String,
    /// Command timeout.
    pub command_timeout_ms: u64,
    /// Per-socket queue.
    pub socket_queue: usize,
    /// Milliseconds a user stays online after their last socket closed.
    pub presence_grace_ms: u64,
    /// Milliseconds of a node's presence lease: a node silent this long is
    /// taken for dead and its users go offline.
    pub presence_lease_ms: u64,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file or value could not be read.
    #[error("configuration error: {0}")]
    Config(#[from] config::ConfigError),
    /// Production without a secret.
    #[error("JWT_SECRET must be set in production (server.environment = \"production\")")]
    MissingSecret,
    /// The webhook secret was found in a config file.
    #[error(
        "webhooks.secret must come from the environment (WEBHOOK_SECRET or CHAT__WEBHOOKS__SECRET), not a file"
    )]
    WebhookSecretInFile,
    /// No secret, and an address other machines can reach: the placeholder
    /// key is in the source, so anyone could mint tokens.
    #[error(
        "JWT_SECRET must be set to listen on {0} (without it the server signs with a \
         development key from its source, so it only listens on a loopback address)"
    )]
    SecretNeededToListen(String),
    /// A production secret too short to resist guessing.
    #[error(
        "JWT_SECRET is {0} bytes; production needs at least {MIN_PRODUCTION_SECRET_BYTES} \
         (HS256 keys shorter than the hash can be brute-forced)"
    )]
    WeakSecret(usize),
    /// A value was read but cannot work.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
}

impl Settings {
    /// Loads every layer from the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(&vars)
    }

    /// Loads every layer with the given environment variables (testable
    /// without touching the process environment).
    pub fn load_from(vars: &[(String, String)]) -> Result<Self, SettingsError> {
        let get = |k: &str| {
            vars.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        let dir = get("CHAT_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let env_name = get("CHAT_ENV").unwrap_or_else(|| "development".into());
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(optional_file(&dir.join(format!("{env_name}.toml"))))
            .add_source(optional_file(&dir.join("local.toml")))
            .add_source(
                config::Environment::with_prefix("CHAT")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("rate_limits.trusted_proxies")
                    .with_list_parse_key("attachments.allowed_types")
                    .source(Some(vars.iter().cloned().collect())),
            );
        if get("CHAT_ENV").is_some() {
            builder = builder.set_override("server.environment", env_name.clone())?;
        }
        for (var, key) in [
            ("HOST", "server.host"),
            ("PORT", "server.port"),
            ("DATABASE_URL", "database.url"),
            ("REDIS_URL", "redis.url"),
            ("REDIS_CLUSTER_NODES", "redis.cluster_nodes"),
            ("JWT_SECRET", "auth.jwt_secret"),
            ("WEBHOOK_URL", "webhooks.url"),
        ] {
            if let Some(value) = get(var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, value)?;
            }
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        // The webhook secret is read from the environment only.
        let env_secret = get("WEBHOOK_SECRET")
            .or_else(|| get("CHAT__WEBHOOKS__SECRET"))
            .filter(|v| !v.is_empty());
        let read = settings.api.webhooks.secret.take();
        if read.as_ref().is_some_and(|s| !s.is_empty())
            && read.as_ref().map(Secret::expose) != env_secret.as_deref()
        {
            return Err(SettingsError::WebhookSecretInFile);
        }
        settings.api.webhooks.secret = env_secret.map(Secret::new);
        settings.check_secret()?;
        if settings.api.auth.jwt_secret.is_empty() {
            settings.api.auth.jwt_secret = Secret::new(DEV_SECRET);
        }
        if settings.api.attachments.dir.is_empty() {
            let dir = Path::new(&settings.database.data_dir).join("attachments");
            settings.api.attachments.dir = dir.display().to_string();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Production needs a secret of at least 32 bytes; without one the
    /// placeholder key is used, and only on a loopback address.
    fn check_secret(&self) -> Result<(), SettingsError> {
        let secret = &self.api.auth.jwt_secret;
        if secret.is_empty() {
            if self.is_production() {
                return Err(SettingsError::MissingSecret);
            }
            if !is_loopback(&self.server.host) {
                return Err(SettingsError::SecretNeededToListen(
                    self.server.host.clone(),
                ));
            }
        } else if self.is_production() && secret.expose().len() < MIN_PRODUCTION_SECRET_BYTES {
            return Err(SettingsError::WeakSecret(secret.expose().len()));
        }
        Ok(())
    }

    /// Refuses values that cannot work. Zero stays allowed where it means
    /// something: port (pick a free one), workers (one per core), rate
    /// limits (off), shutdown timeout (stop at once).
    fn validate(&self) -> Result<(), InvalidSetting> {
        let db = &self.database;
        at_least_one("database.pool_size", db.pool_size)?;
        at_least_one(
            "database.checkout_timeout_seconds",
            db.checkout_timeout_seconds,
        )?;
        at_least_one("database.writers", db.writers)?;
        at_least_one("database.max_batch", db.max_batch)?;
        at_least_one(
            "database.event_log_prune_seconds",
            db.event_log_prune_seconds,
        )?;
        // fred reads a zero timeout as "wait forever", which hangs during outages.
        at_least_one("redis.command_timeout_ms", self.redis.command_timeout_ms)?;
        at_least_one("redis.socket_queue", self.redis.socket_queue)?;
        at_least_one("redis.presence_lease_ms", self.redis.presence_lease_ms)?;
        self.check_cluster()?;
        // API.md: failed deliveries are retried for at least 24 hours.
        if self.is_production() && self.api.webhooks.retry_max_age_seconds < 86_400 {
            return Err(InvalidSetting::new(
                "webhooks.retry_max_age_seconds",
                "must be at least 86400 (24 hours) in production",
            ));
        }
        at_least_one("server.max_connections", self.server.max_connections)?;
        at_least_one("server.backlog", self.server.backlog)?;
        self.api.validate()
    }

    /// `redis.cluster_nodes`: well-formed seeds, not together with
    /// `redis.url`, and no hash tag in the channel prefix (it would put
    /// every channel and key on one shard).
    fn check_cluster(&self) -> Result<(), InvalidSetting> {
        let nodes = self.redis.cluster_nodes.trim();
        if nodes.is_empty() {
            return Ok(());
        }
        if !self.redis.url.is_empty() {
            return Err(InvalidSetting::new(
                "redis.cluster_nodes",
                "REDIS_CLUSTER_NODES and REDIS_URL (redis.url) are mutually exclusive: \
                 set one (the cluster's seed nodes take the place of the URL)",
            ));
        }
        chat_realtime::parse_cluster_nodes(nodes).map_err(|e| {
            InvalidSetting::new(
                "redis.cluster_nodes",
                format!("must be host:port[,host:port...]: {e}"),
            )
        })?;
        if self.redis.channel_prefix.contains(['{', '}']) {
            return Err(InvalidSetting::new(
                "redis.channel_prefix",
                "must not contain { or } on a Redis Cluster (a hash tag in the prefix \
                 would put every channel and key on one shard)",
            ));
        }
        Ok(())
    }

    /// The Redis Cluster's seed nodes; empty without a cluster.
    pub fn redis_cluster_nodes(&self) -> Vec<String> {
        chat_realtime::parse_cluster_nodes(self.redis.cluster_nodes.trim())
            .ok()
            .filter(|_| !self.redis.cluster_nodes.trim().is_empty())
            .unwrap_or_default()
    }

    /// Whether Redis (one server or a cluster) relays between nodes.
    pub fn uses_redis(&self) -> bool {
        self.redis_url().is_some() || !self.redis_cluster_nodes().is_empty()
    }

    /// Whether this is a production deployment.
    pub fn is_production(&self) -> bool {
        self.server.environment == Environment::Production
    }

    /// Whether the development placeholder key is in use.
    pub fn uses_dev_secret(&self) -> bool {
        self.api.auth.jwt_secret.expose() == DEV_SECRET
    }

    /// The database URL, defaulting to an SQLite file in the data directory.
    pub fn database_url(&self) -> Secret {
        if self.database.url.is_empty() {
            let path = Path::new(&self.database.data_dir).join("chat.sqlite3");
            Secret::new(format!("sqlite://{}", path.display()))
        } else {
            self.database.url.clone()
        }
    }

    /// The Redis URL, if one is configured.
    pub fn redis_url(&self) -> Option<Secret> {
        Some(self.redis.url.clone()).filter(|u| !u.is_empty())
    }
}

/// Whether `host` names only this machine (`localhost`, 127.0.0.0/8, ::1).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn optional_file(path: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path.to_path_buf())
        .format(config::FileFormat::Toml)
        .required(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_safe_and_local() {
        let s = Settings::load_from(&vars(&[("CHAT_CONFIG_DIR", "/nonexistent")]))
            .expect("defaults load");
        assert_eq!((s.server.host.as_str(), s.server.port), ("127.0.0.1", 8000));
        assert!(s.database_url().expose().starts_with("sqlite://"));
        assert!(s.redis_url().is_none());
        assert!(s.uses_dev_secret());
    }

    #[test]
    fn conventional_variables_override() {
        let s = Settings::load_from(&vars(&[
            ("CHAT_CONFIG_DIR", "/nonexistent"),
            ("PORT", "9001"),
            ("HOST", "0.0.0.0"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("REDIS_URL", "redis://h:6379"),
            ("JWT_SECRET", "s3cret"),
            ("CHAT__AUTH__ACCESS_TOKEN_MINUTES", "5"),
        ]))
        .expect("loads");
        assert_eq!(s.server.port, 9001);
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.database_url().expose(), "postgres://u@h/db");
        assert_eq!(
            s.redis_url().as_ref().map(Secret::expose),
            Some("redis://h:6379")
        );
        assert_eq!(s.api.auth.access_token_minutes, 5);
        assert!(!s.uses_dev_secret());
    }

    #[test]
    fn cluster_nodes_are_checked_at_load() {
        let base = [("CHAT_CONFIG_DIR", "/nonexistent")];
        let load = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            Settings::load_from(&vars(&all))
        };
        let s = load(&[("REDIS_CLUSTER_NODES", "10.0.0.1:7000, 10.0.0.2:7001")]).expect("loads");
        assert_eq!(s.redis_cluster_nodes(), ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert!(s.redis_url().is_none() && s.uses_redis());
        let both = load(&[
            ("REDIS_CLUSTER_NODES", "h:7000"),
            ("REDIS_URL", "redis://h:6379"),
        ])
        .expect_err("both");
        assert!(both.to_string().contains("mutually exclusive"), "{both}");
        for bad in ["h", "h:", ":7000", "h:0", "h:70000", "h:7000,", "h:x"] {
            let err = load(&[("REDIS_CLUSTER_NODES", bad)]).expect_err(bad);
            assert!(
                err.to_string().contains("redis.cluster_nodes"),
                "{bad}: {err}"
            );
        }
        let tagged = load(&[
            ("REDIS_CLUSTER_NODES", "h:7000"),
            ("CHAT__REDIS__CHANNEL_PREFIX", "chat{x}:"),
        ])
        .expect_err("tagged prefix");
        assert!(tagged.to_string().contains("channel_prefix"), "{tagged}");
        assert!(
            load(&[])
                .expect("defaults")
                .redis_cluster_nodes()
                .is_empty()
        );
    }

    #[test]
    fn production_requires_a_secret() {
        let err = Settings::load_from(&vars(&[
            ("CHAT_CONFIG_DIR", "/nonexistent"),
            ("CHAT_ENV", "production"),
        ]));
        assert!(matches!(err, Err(SettingsError::MissingSecret)));
        let ok = Settings::load_from(&vars(&[
            ("CHAT_CONFIG_DIR", "/nonexistent"),
            ("CHAT_ENV", "production"),
            ("JWT_SECRET", "x"),
        ]));
        assert!(matches!(ok, Err(SettingsError::WeakSecret(1))), "{ok:?}");
        let ok = Settings::load_from(&vars(&[
            ("CHAT_CONFIG_DIR", "/nonexistent"),
            ("CHAT_ENV", "production"),
            ("JWT_SECRET", LONG_SECRET),
        ]));
        assert!(ok.is_ok());
    }

    const LONG_SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn without_a_secret_only_loopback() {
        for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"] {
            assert!(load(&[("HOST", host)]).is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.5", "example.com"] {
            let message = refusal(&[("HOST", host)]);
            assert!(
                message.contains("JWT_SECRET") && message.contains(host),
                "{message}"
            );
        }
        assert!(load(&[("HOST", "0.0.0.0"), ("JWT_SECRET", "dev")]).is_ok());
    }

    fn load(extra: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut pairs = vec![("CHAT_CONFIG_DIR", "/nonexistent")];
        pairs.extend_from_slice(extra);
        Settings::load_from(&vars(&pairs))
    }

    fn refusal(extra: &[(&str, &str)]) -> String {
        match load(extra) {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn zero_where_zero_cannot_work_is_refused_by_key() {
        for (var, key) in [
            ("CHAT__DATABASE__POOL_SIZE", "database.pool_size"),
            (
                "CHAT__DATABASE__CHECKOUT_TIMEOUT_SECONDS",
                "database.checkout_timeout_seconds",
            ),
            ("CHAT__DATABASE__WRITERS", "database.writers"),
            ("CHAT__DATABASE__MAX_BATCH", "database.max_batch"),
            (
                "CHAT__REDIS__COMMAND_TIMEOUT_MS",
                "redis.command_timeout_ms",
            ),
            ("CHAT__REDIS__SOCKET_QUEUE", "redis.socket_queue"),
            (
                "CHAT__AUTH__ACCESS_TOKEN_MINUTES",
                "auth.access_token_minutes",
            ),
            ("CHAT__AUTH__REFRESH_TOKEN_DAYS", "auth.refresh_token_days"),
            ("CHAT__AUTH__ARGON2_ITERATIONS", "auth.argon2_iterations"),
            ("CHAT__AUTH__ARGON2_PARALLELISM", "auth.argon2_parallelism"),
            ("CHAT__AUTH__ARGON2_MEMORY_KIB", "auth.argon2_memory_kib"),
            (
                "CHAT__WEBSOCKET__MAX_FRAME_BYTES",
                "websocket.max_frame_bytes",
            ),
            (
                "CHAT__WEBSOCKET__HEARTBEAT_INTERVAL_SECONDS",
                "websocket.heartbeat_interval_seconds",
            ),
            (
                "CHAT__WEBSOCKET__WRITE_TIMEOUT_SECONDS",
                "websocket.write_timeout_seconds",
            ),
            ("CHAT__LIMITS__MAX_BODY_BYTES", "limits.max_body_bytes"),
            ("CHAT__LIMITS__MAX_READ_IDS", "limits.max_read_ids"),
            ("CHAT__LIMITS__MAX_HEADER_BYTES", "limits.max_header_bytes"),
            ("CHAT__LIMITS__BODY_TIMEOUT_MS", "limits.body_timeout_ms"),
            ("CHAT__SERVER__MAX_CONNECTIONS", "server.max_connections"),
            ("CHAT__SERVER__BACKLOG", "server.backlog"),
        ] {
            let message = refusal(&[(var, "0")]);
            assert!(message.contains(key), "{var}=0: {message}");
        }
        let pool = load(&[("CHAT__DATABASE__POOL_SIZE", "0")]);
        assert!(
            matches!(
                &pool,
                Err(SettingsError::Invalid(InvalidSetting {
                    key: "database.pool_size",
                    ..
                }))
            ),
            "{pool:?}"
        );
    }

    #[test]
    fn zero_where_it_means_something_is_accepted() {
        let s = load(&[
            ("PORT", "0"),
            ("CHAT__SERVER__WORKERS", "0"),
            ("CHAT__SERVER__SHUTDOWN_TIMEOUT_SECONDS", "0"),
            ("CHAT__RATE_LIMITS__AUTH_PER_MINUTE", "0"),
            ("CHAT__RATE_LIMITS__MESSAGES_PER_SECOND", "0"),
            ("CHAT__RATE_LIMITS__MESSAGES_BURST", "0"),
            ("CHAT__RATE_LIMITS__FRAMES_PER_SECOND", "0"),
            ("CHAT__RATE_LIMITS__FRAMES_BURST", "0"),
            ("CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER", "0"),
        ]);
        assert!(s.is_ok(), "{s:?}");
    }

    #[test]
    fn a_client_timeout_within_one_ping_is_refused() {
        let message = refusal(&[
            ("CHAT__WEBSOCKET__HEARTBEAT_INTERVAL_SECONDS", "20"),
            ("CHAT__WEBSOCKET__CLIENT_TIMEOUT_SECONDS", "20"),
        ]);
        assert!(
            message.contains("websocket.client_timeout_seconds"),
            "{message}"
        );
    }

    #[test]
    fn environment_and_log_format_are_enums() {
        let s = load(&[("CHAT_ENV", "production"), ("JWT_SECRET", LONG_SECRET)]).expect("loads");
        assert_eq!(s.server.environment, Environment::Production);
        let s = load(&[("CHAT__SERVER__LOG_FORMAT", "json")]).expect("loads");
        assert_eq!(s.server.log_format, LogFormat::Json);

        let message = refusal(&[("CHAT_ENV", "staging")]);
        assert!(
            message.contains("staging") && message.contains("production"),
            "{message}"
        );
        let message = refusal(&[("CHAT__SERVER__LOG_FORMAT", "xml")]);
        assert!(
            message.contains("xml") && message.contains("json"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_trusted_proxy_is_refused_at_load() {
        let message = refusal(&[("CHAT__RATE_LIMITS__TRUSTED_PROXIES", "10.0.0.1,not-an-ip")]);
        assert!(message.contains("trusted_proxies"), "{message}");
        let s = load(&[("CHAT__RATE_LIMITS__TRUSTED_PROXIES", "10.0.0.1,::1")]).expect("loads");
        assert_eq!(s.api.rate_limits.trusted_proxies.len(), 2);
    }

    #[test]
    fn secrets_never_print() {
        let s = load(&[
            ("JWT_SECRET", "jwt-key-do-not-print"),
            ("DATABASE_URL", "postgres://u:db-password@h/db"),
            ("REDIS_URL", "redis://:redis-password@h:6379"),
        ])
        .expect("loads");
        let printed = format!("{s:?} {} {:?}", s.database_url(), s.redis_url());
        for secret in ["jwt-key-do-not-print", "db-password", "redis-password"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("***"));
        assert_eq!(s.api.auth.jwt_secret.expose(), "jwt-key-do-not-print");
    }
}
