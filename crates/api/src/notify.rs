//! Every push leaves through here, whatever caused it and whatever
//! transport carries it (vaultwarden's one notifier).

use crate::state::AppState;
use chat_persistence::events::UserEvent;

/// Publishes committed stream events to their users' streams on every node.
pub async fn user_events(state: &AppState, events: Vec<UserEvent>) {
    // Wired to the user topics once chat-realtime has them.
    let _ = (state, events);
}
