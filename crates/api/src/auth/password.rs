//! Argon2id password hashing, run on the blocking pool.

use crate::error::ApiError;
use crate::settings::AuthSettings;
use crate::state::StateError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Hasher with the configured parameters, and a dummy hash so that a login
/// for an unknown user costs as much as one with a wrong password.
///
/// At most one hash per core runs at a time: Argon2 is CPU- and
/// memory-bound, so more only adds memory (each hash holds its memory cost,
/// and allocators keep it per thread) without finishing sooner.
pub struct PasswordHashing {
    argon2: Argon2<'static>,
    dummy_hash: String,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for PasswordHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHashing").finish_non_exhaustive()
    }
}

impl PasswordHashing {
    /// Fails on parameters Argon2 refuses, or when it cannot hash with them.
    pub fn new(settings: &AuthSettings) -> Result<Self, StateError> {
        let params = settings.argon2_params()?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2
            .hash_password(b"timing-equalizer-password")
            .map_err(StateError::PasswordSelfTest)?
            .to_string();
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            argon2,
            dummy_hash,
            permits: Arc::new(Semaphore::new(cores)),
        })
    }

    /// Hashes on the blocking pool, one hash per core at a time.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, ApiError> {
        let this = self.clone();
        self.limited(move || this.hash_now(&password)).await?
    }

    /// Verifies on the blocking pool (see [`PasswordHashing::verify_now`]).
    pub async fn verify(
        self: &Arc<Self>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let this = self.clone();
        self.limited(move || this.verify_now(&password, hash.as_deref()))
            .await
    }

    async fn limited<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(ApiError::internal_because)?;
        // The work logs in the request's span, though on another thread.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .await
            .map_err(ApiError::internal_because)
    }

    /// Hashes a password into a PHC string.
    pub fn hash_now(&self, password: &str) -> Result<String, ApiError> {
        self.argon2
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                ApiError::internal()
            })
    }

    /// Verifies against `hash`, or against the dummy hash when there is no
    /// user, so both cases take the same time. Returns whether it matched.
    pub fn verify_now(&self, password: &str, hash: Option<&str>) -> bool {
        let target = hash.unwrap_or(&self.dummy_hash);
        let matched = PasswordHash::new(target)
            .map(|parsed| {
                self.argon2
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        matched && hash.is_some()
    }
}
