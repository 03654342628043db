//! The actions of the chat, each written once for every transport.
//!
//! HTTP handlers and socket tasks only parse their input into the typed
//! arguments of these functions and render the typed outcome; checking,
//! storing, counting and publishing happen here and nowhere else, so a new
//! transport (or a new feature on an old one) never copies an action.
//! Failures are [`ApiError`](crate::error::ApiError)s: HTTP renders them as
//! the error body, sockets as an `error` event.

pub mod attachments;
pub mod chat;
pub mod connections;
pub mod delivery;
pub mod presence;
pub mod tokens;
pub mod webhooks;

use crate::error::ApiError;
use std::future::Future;
use tracing::Instrument;

/// Runs an action to its end in a task of its own: a caller that goes away
/// (an HTTP client hanging up, a socket closing) cannot cancel it between
/// storing and publishing. The caller still awaits the outcome, so one
/// caller's actions keep their order.
pub(crate) async fn to_completion<T: 'static>(
    action: impl Future<Output = Result<T, ApiError>> + 'static,
) -> Result<T, ApiError> {
    actix_web::rt::spawn(action.instrument(tracing::Span::current()))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::internal_because(format!(
                "action task failed: {e}"
            )))
        })
}
