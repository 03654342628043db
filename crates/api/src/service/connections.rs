//! Requesting, accepting, rejecting and removing connections; each change
//! and the stream events it causes commit in one transaction.

use crate::dto::{ConnectionView, ConversationView, user_map};
use crate::error::ApiError;
use crate::notify;
use crate::service::presence;
use crate::service::to_completion;
use crate::state::AppState;
use chat_domain::{Connection, ConnectionId, ConnectionStatus, ServerEvent, UserId};
use chat_persistence::connections::{self, RuleResult};
use chat_persistence::events::{Ledger, UserEvent};
use chat_persistence::{
    DbConnection, PersistenceError, QueryResult, conversations, messages, users,
};

/// Asks `addressee` to connect; `connection_request` reaches the addressee's stream.
pub async fn request(
    state: &AppState,
    requester: UserId,
    addressee: UserId,
) -> Result<ConnectionView, ApiError> {
    let state = state.clone();
    to_completion(async move { request_now(&state, requester, addressee).await }).await
}

async fn request_now(
    state: &AppState,
    requester: UserId,
    addressee: UserId,
) -> Result<ConnectionView, ApiError> {
    let webhook_delay = state.webhook_delay();
    let result = state
        .db
        .transaction(move |c| {
            let created = match connections::request(c, requester, addressee)? {
                Ok(created) => created,
                Err(e) => return Ok(Err(e)),
            };
            crate::service::webhooks::record_request(c, webhook_delay, &created)?;
            record(c, &created, false, &[]).map(Ok)
        })
        .await;
    match result {
        Err(PersistenceError::NotFound) => Err(ApiError::not_found("User not found.")),
        other => finish(state, other).await,
    }
}

/// What a status change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The addressee accepts.
    Accept,
    /// The addressee declines.
    Reject,
    /// Either side withdraws, declines or ends it.
    Remove,
}

/// Changes a connection's status as `actor`; `connection_updated` (and,
/// when `can_send` changes, `conversation_created`/`conversation_updated`)
/// reach both users' streams.
pub async fn change(
    state: &AppState,
    actor: UserId,
    id: ConnectionId,
    change: Change,
) -> Result<ConnectionView, ApiError> {
    let state = state.clone();
    to_completion(async move { change_now(&state, actor, id, change).await }).await
}

async fn change_now(
    state: &AppState,
    actor: UserId,
    id: ConnectionId,
    change: Change,
) -> Result<ConnectionView, ApiError> {
    // Presence of the pair, for the conversation objects the events carry
    // (read before the transaction: the store is not SQL).
    let current = state
        .db
        .run(move |c| connections::find_for(c, id, actor))
        .await?;
    let pair = [current.requester_id, current.addressee_id];
    let online: Vec<(UserId, bool)> = pair
        .into_iter()
        .zip(presence::online_or_offline(state, &pair).await)
        .collect();
    let result = state
        .db
        .transaction(move |c| {
            let before = connections::find_for(c, id, actor)?;
            let outcome = match change {
                Change::Accept => connections::accept(c, id, actor)?,
                Change::Reject => connections::reject(c, id, actor)?,
                Change::Remove => connections::remove(c, id, actor)?,
            };
            let after = match outcome {
                Ok(after) => after,
                Err(e) => return Ok(Err(e)),
            };
            let conversation_changed = change == Change::Accept
                || (change == Change::Remove && before.status == ConnectionStatus::Accepted);
            record(c, &after, conversation_changed, &online).map(Ok)
        })
        .await;
    finish(state, result).await
}

type Rendered = (ConnectionView, Vec<UserEvent>);

/// Renders the connection's view and records its events: a pending one is
/// a new request (to the addressee); otherwise `connection_updated` to both
/// users and, when `conversation_changed`, the conversation as each sees it.
fn record(
    c: &mut DbConnection,
    connection: &Connection,
    conversation_changed: bool,
    online: &[(UserId, bool)],
) -> QueryResult<Rendered> {
    let pair = [connection.requester_id, connection.addressee_id];
    let users = user_map(users::find_many(c, &pair)?);
    let view = ConnectionView::build(connection, &users).ok_or(PersistenceError::NotFound)?;
    let json = serde_json::to_value(&view)
        .map_err(|e| PersistenceError::other_with("rendering a stream event", e))?;
    let conversation = match (conversation_changed, connection.conversation_id) {
        (true, Some(id)) => Some(conversations::find(c, id)?),
        _ => None,
    };
    let last = match conversation.as_ref().and_then(|conv| conv.last_message_id) {
        Some(id) => messages::find_many(c, &[id])?.pop(),
        None => None,
    };
    let mut ledger = Ledger::lock(c, &pair)?;
    let mut pending: Vec<(UserId, ServerEvent)> = Vec::new();
    if connection.status == ConnectionStatus::Pending {
        pending.push((
            connection.addressee_id,
            ServerEvent::ConnectionRequest {
                connection: json,
                seq: 0,
            },
        ));
    } else {
        for user in pair {
            pending.push((
                user,
                ServerEvent::ConnectionUpdated {
                    connection: json.clone(),
                    seq: 0,
                },
            ));
            if let Some(conv) = &conversation {
                let other = conv.other_participant(user);
                let other_online = online.iter().any(|(u, on)| *u == other && *on);
                let seen = ConversationView::build(conv, user, &users, last.as_ref(), other_online)
                    .ok_or(PersistenceError::NotFound)?;
                let seen = serde_json::to_value(&seen)
                    .map_err(|e| PersistenceError::other_with("rendering a stream event", e))?;
                let event = if connection.status == ConnectionStatus::Accepted
                    && conv.created_at >= connection.updated_at
                {
                    ServerEvent::ConversationCreated {
                        conversation: seen,
                        seq: 0,
                    }
                } else {
                    ServerEvent::ConversationUpdated {
                        conversation: seen,
                        seq: 0,
                    }
                };
                pending.push((user, event));
            }
        }
    }
    for (user, event) in pending {
        ledger.record(user, |seq, _| with_seq(event, seq).to_json());
    }
    let events = ledger.write(c, chat_domain::now())?;
    Ok((view, events))
}

fn with_seq(mut event: ServerEvent, n: i64) -> ServerEvent {
    match &mut event {
        ServerEvent::ConnectionRequest { seq, .. }
        | ServerEvent::ConnectionUpdated { seq, .. }
        | ServerEvent::ConversationCreated { seq, .. }
        | ServerEvent::ConversationUpdated { seq, .. } => *seq = n,
        _ => {}
    }
    event
}

/// Publishes what committed and answers the view.
async fn finish(
    state: &AppState,
    result: QueryResult<RuleResult<Rendered>>,
) -> Result<ConnectionView, ApiError> {
    let (view, events) = result??;
    notify::user_events(state, events).await;
    Ok(view)
}
