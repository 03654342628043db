//! Shared application state, cloned into every worker.

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHashing;
use crate::settings::ApiSettings;
use chat_persistence::Database;
use chat_realtime::Realtime;
use std::sync::Arc;

/// What handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool.
    pub db: Database,
    /// Fan-out to WebSocket clients on every node.
    pub realtime: Realtime,
    /// Token signing and checking.
    pub jwt: Arc<JwtKeys>,
    /// Password hashing.
    pub passwords: Arc<PasswordHashing>,
    /// Settings.
    pub settings: Arc<ApiSettings>,
}

impl AppState {
    /// Builds the state; fails only on settings that cannot work (bad Argon2 parameters).
    pub fn new(db: Database, realtime: Realtime, settings: ApiSettings) -> Result<Self, String> {
        let jwt = JwtKeys::new(&settings.auth);
        let passwords = PasswordHashing::new(&settings.auth)?;
        Ok(Self {
            db,
            realtime,
            jwt: Arc::new(jwt),
            passwords: Arc::new(passwords),
            settings: Arc::new(settings),
        })
    }
}
