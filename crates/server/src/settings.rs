//! Layered configuration: compiled-in defaults, config files, environment.

use chat_api::ApiSettings;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `config/default.toml`, compiled in so a deployed binary runs anywhere.
const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Development placeholder key; production refuses to run with it.
const DEV_SECRET: &str = "insecure-development-secret-change-me";

/// All settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Storage.
    pub database: DatabaseSettings,
    /// Multi-node relay.
    pub redis: RedisSettings,
    /// What the API reads.
    #[serde(flatten)]
    pub api: ApiSettings,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// "development" or "production".
    pub environment: String,
    /// Bind address.
    pub host: String,
    /// Bind port (0 picks a free one).
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// "human" or "json".
    pub log_format: String,
    /// Migrate at start-up.
    pub run_migrations: bool,
    /// Grace period on shutdown.
    pub shutdown_timeout_seconds: u64,
}

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Empty means SQLite in `data_dir`.
    pub url: String,
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
}

/// Redis settings.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Empty means the in-process bus.
    pub url: String,
    /// Channel name prefix.
    pub channel_prefix: String,
    /// Command timeout.
    pub command_timeout_ms: u64,
    /// Per-socket queue.
    pub socket_queue: usize,
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
            ("JWT_SECRET", "auth.jwt_secret"),
        ] {
            if let Some(value) = get(var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, value)?;
            }
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        if settings.api.auth.jwt_secret.is_empty() {
            if settings.is_production() {
                return Err(SettingsError::MissingSecret);
            }
            settings.api.auth.jwt_secret = DEV_SECRET.into();
        }
        Ok(settings)
    }

    /// Whether this is a production deployment.
    pub fn is_production(&self) -> bool {
        self.server.environment.eq_ignore_ascii_case("production")
    }

    /// Whether the development placeholder key is in use.
    pub fn uses_dev_secret(&self) -> bool {
        self.api.auth.jwt_secret == DEV_SECRET
    }

    /// The database URL, defaulting to an SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            let path = Path::new(&self.database.data_dir).join("chat.sqlite3");
            format!("sqlite://{}", path.display())
        } else {
            self.database.url.clone()
        }
    }

    /// The Redis URL, if one is configured.
    pub fn redis_url(&self) -> Option<String> {
        Some(self.redis.url.clone()).filter(|u| !u.is_empty())
    }
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
        assert!(s.database_url().starts_with("sqlite://"));
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
        assert_eq!(s.database_url(), "postgres://u@h/db");
        assert_eq!(s.redis_url().as_deref(), Some("redis://h:6379"));
        assert_eq!(s.api.auth.access_token_minutes, 5);
        assert!(!s.uses_dev_secret());
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
        assert!(ok.is_ok());
    }
}
