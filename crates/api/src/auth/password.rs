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

    /// Runs `work` on the blocking pool once a permit is free. The permit
    /// moves into the blocking task: a client hanging up drops this future,
    /// not the hash, so the permit is held until the hash has finished.
    async fn limited<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal_because)?;
        // The work logs in the request's span, though on another thread.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hashing() -> Arc<PasswordHashing> {
        let settings = AuthSettings {
            jwt_secret: crate::Secret::new("k"),
            access_token_minutes: 1,
            refresh_token_days: 1,
            leeway_seconds: 0,
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            argon2_parallelism: 1,
        };
        Arc::new(PasswordHashing::new(&settings).expect("hashing"))
    }

    #[tokio::test]
    async fn a_hash_keeps_its_permit_after_the_caller_hangs_up() {
        let hashing = hashing();
        let all = hashing.permits.available_permits();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let caller = {
            let hashing = hashing.clone();
            tokio::spawn(async move {
                hashing
                    .limited(move || {
                        let _ = started_tx.send(());
                        let _ = finish_rx.recv();
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("join")
            .expect("the work started");
        // The client hangs up: the request's future is dropped mid-hash.
        caller.abort();
        let _ = caller.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            hashing.permits.available_permits(),
            all - 1,
            "the running hash still holds its permit"
        );
        finish_tx.send(()).expect("finish");
        for _ in 0..100 {
            if hashing.permits.available_permits() == all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the permit is returned once the hash ends");
    }
}
