//! The HTTP and WebSocket API of the chat service (actix-web).
//!
//! Handlers stay thin: rules live in `chat-domain`, SQL in
//! `chat-persistence`, fan-out in `chat-realtime`; errors become responses in
//! one place, [`error::ApiError`].

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod notify;
pub mod openapi;
pub mod pagination;
pub mod routes;
pub mod service;
pub mod settings;
pub mod state;
pub mod webhooks;

pub use routes::route_table;
pub use settings::{ApiSettings, InvalidSetting, Secret};
pub use state::{AppState, Shutdown, StateError};

use actix_web::web;

/// Mounts every route of the API (the caller adds the middleware; see
/// [`error::json_error_handlers`] and [`extract::json_config`]);
/// [`route_table`] lists them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}
