//! The actions of the chat, each written once for every transport.
//!
//! HTTP handlers and socket tasks only parse their input into the typed
//! arguments of these functions and render the typed outcome; checking,
//! storing, counting and publishing happen here and nowhere else, so a new
//! transport (or a new feature on an old one) never copies an action.
//! Failures are [`ApiError`](crate::error::ApiError)s: HTTP renders them as
//! the error body, sockets as an `error` event.

pub mod chat;
pub mod connections;
