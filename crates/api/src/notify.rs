//! Every push leaves through here, whatever caused it and whatever
//! transport carries it (vaultwarden's one notifier).

use crate::state::AppState;
use chat_domain::ServerEvent;
use chat_persistence::events::UserEvent;
use chat_persistence::messages::Stored;
use chat_realtime::Audience;

/// Publishes committed stream events to their users' streams on every node.
pub async fn user_events(state: &AppState, events: Vec<UserEvent>) {
    // Wired to the user topics once chat-realtime has them.
    let _ = (state, events);
}

/// Publishes a stored message: `chat_message` to the conversation's
/// sockets (with its position there) and to both participants' streams.
pub async fn message_stored(state: &AppState, stored: Stored) {
    let event = ServerEvent::chat_message(&stored.message, &stored.sender);
    state
        .realtime
        .publish(stored.message.conversation_id, &event, Audience::Everyone)
        .await;
    user_events(state, stored.events).await;
}
