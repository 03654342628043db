//! Every push leaves through here, whatever caused it and whatever
//! transport carries it (vaultwarden's one notifier).

use crate::state::AppState;
use chat_domain::{Conversation, ServerEvent, UserId};
use chat_persistence::events::UserEvent;
use chat_persistence::messages::Stored;
use chat_realtime::{Audience, Topic};

/// Publishes committed stream events to their users' streams on every
/// node, each with its seq so sockets can notice gaps.
pub async fn user_events(state: &AppState, events: Vec<UserEvent>) {
    for e in events {
        let seq = u64::try_from(e.seq).ok();
        state
            .realtime
            .publish_frame(Topic::User(e.user), e.payload, seq, Audience::Everyone)
            .await;
    }
}

/// Publishes a stored message: `chat_message` to the conversation's
/// sockets (with its position there) and to both participants' streams.
pub async fn message_stored(state: &AppState, stored: Stored) {
    let event = ServerEvent::chat_message(&stored.message, &stored.sender);
    let position = u64::try_from(stored.position).ok();
    state
        .realtime
        .publish_frame(
            Topic::Conversation(stored.message.conversation_id),
            event.to_json(),
            position,
            Audience::Everyone,
        )
        .await;
    user_events(state, stored.events).await;
}

/// An ephemeral event of a conversation: to its sockets except the
/// actor's, and to the other participant's streams (naming the
/// conversation there).
pub async fn typing(
    state: &AppState,
    conversation: &Conversation,
    actor: UserId,
    event: ServerEvent,
) {
    state
        .realtime
        .publish(conversation.id, &event, Audience::ExceptUser(actor))
        .await;
    let on_stream = match event {
        ServerEvent::TypingIndicator {
            user_id,
            user_name,
            is_typing,
            ..
        } => ServerEvent::TypingIndicator {
            conversation_id: Some(conversation.id),
            user_id,
            user_name,
            is_typing,
        },
        other => other,
    };
    state
        .realtime
        .publish_frame(
            Topic::User(conversation.other_participant(actor)),
            on_stream.to_json(),
            None,
            Audience::Everyone,
        )
        .await;
}
