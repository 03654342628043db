//! Route modules; each exports `configure`.

pub mod auth;
pub mod connections;
pub mod conversations;
pub mod health;
pub mod messages;
pub mod users;
pub mod ws;

use crate::error::{ApiError, FieldErrors};
use actix_web::web;

/// Mounts every route. Paths end in `/`; the server's path normalization
/// makes the slash optional for clients.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    auth::configure(cfg);
    users::configure(cfg);
    connections::configure(cfg);
    conversations::configure(cfg);
    messages::configure(cfg);
    ws::configure(cfg);
}

/// Collects per-field validation messages.
#[derive(Debug, Default)]
pub(crate) struct Validator(FieldErrors);

impl Validator {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// A required value, or a "required" message.
    pub fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(field, "This field is required.");
        }
        value
    }

    /// Keeps the parsed value or records the parse error.
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.add(field, e.to_string())).ok()
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}
