//! Webhooks for offline recipients: recording an event with its change,
//! and the dispatcher every node runs.
//!
//! The dispatcher claims due events (see [`chat_persistence::outbox`]),
//! checks at send time that the event still matters (the message unread,
//! the request still pending, the recipient with no open socket on any
//! node; checked again before every retry), posts it, and records the
//! outcome. A failure is retried with exponential backoff and jitter until
//! the event is `retry_max_age_seconds` old, then dead-lettered. Delivery
//! is at least once: a node killed after the receiver took an event but
//! before it was recorded lets another node send it again, with the same
//! `webhook-id`, so receivers deduplicate on it.

use crate::dto::{ConnectionView, MessageView, user_map};
use crate::state::AppState;
use crate::webhooks::{Failed, WebhookPayload, Webhooks};
use chat_domain::{Connection, ConnectionStatus, UserId};
use chat_persistence::outbox::{self, ClaimedEvent, EventKind, Finish, NewEvent};
use chat_persistence::{DbConnection, QueryResult, connections, messages, users};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sent and skipped events are kept this long, for inspection.
const KEEP_FINISHED: chrono::Duration = chrono::Duration::days(7);
/// How often finished events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Records the `connection.requested` event of a new request in the
/// caller's transaction, when webhooks are on.
pub(crate) fn record_request(
    conn: &mut DbConnection,
    delay: Option<Duration>,
    created: &Connection,
) -> QueryResult<()> {
    let Some(delay) = delay else {
        return Ok(());
    };
    let event = NewEvent {
        kind: EventKind::ConnectionRequested(created.id),
        recipient: created.addressee_id,
        at: created.created_at,
    };
    outbox::enqueue(conn, &[event], delay)
}

/// Starts this node's dispatcher, when a webhook URL is configured.
pub fn spawn_dispatcher(state: AppState) {
    let Some(hooks) = state.webhooks.clone() else {
        return;
    };
    tokio::spawn(run(state, hooks));
}

async fn run(state: AppState, hooks: Arc<Webhooks>) {
    let s = &hooks.settings;
    let poll = Duration::from_millis(s.poll_interval_ms);
    let lease = Duration::from_millis(s.claim_lease_ms);
    let slots = Arc::new(Semaphore::new(s.concurrency));
    let mut draining = state.shutdown.watch();
    let mut pruned = Instant::now();
    loop {
        if *draining.borrow() {
            return;
        }
        observe_backlog(&state).await;
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            let before = Utc::now() - KEEP_FINISHED;
            if let Err(e) = state.db.run(move |c| outbox::prune(c, before)).await {
                tracing::warn!(error = %e.report(), "webhooks: pruning failed");
            }
        }
        let free = slots.available_permits();
        let mut claimed_all = false;
        if free > 0 {
            let token = uuid::Uuid::new_v4().to_string();
            let t = token.clone();
            let limit = i64::try_from(free).unwrap_or(i64::MAX);
            match state
                .db
                .run(move |c| outbox::claim(c, Utc::now(), lease, limit, &t))
                .await
            {
                Ok(events) => {
                    claimed_all = events.len() == free;
                    for event in events {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let (state, hooks, token) = (state.clone(), hooks.clone(), token.clone());
                        tokio::spawn(deliver(state, hooks, event, token, permit));
                    }
                }
                Err(e) => tracing::warn!(error = %e.report(), "webhooks: claiming failed"),
            }
        }
        if claimed_all {
            // More may be due: claim again as soon as a slot frees.
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = draining.changed() => {}
        }
    }
}

/// Updates the age of the oldest pending event.
async fn observe_backlog(state: &AppState) {
    match state.db.run(outbox::oldest_pending).await {
        Ok(oldest) => {
            let age = oldest.map_or(0.0, |t| {
                (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
            });
            state.metrics.webhooks_oldest_pending.set(age);
        }
        Err(e) => tracing::debug!(error = %e.report(), "webhooks: backlog not read"),
    }
}

/// One attempt of a claimed event, and its outcome recorded.
async fn deliver(
    state: AppState,
    hooks: Arc<Webhooks>,
    event: ClaimedEvent,
    token: String,
    _slot: OwnedSemaphorePermit,
) {
    let id = event.kind.webhook_id();
    let (payload, outcome) = match prepare(&state, &event).await {
        Ok(Ok(body)) => {
            let outcome = match hooks.post(&id, &body).await {
                Ok(()) => Finish::Sent,
                Err(Failed(why)) => after_failure(&hooks, &event, why, Utc::now()),
            };
            (Some(body), outcome)
        }
        Ok(Err(skip)) => (None, Finish::Skipped(skip.into())),
        Err(why) => (None, after_failure(&hooks, &event, why, Utc::now())),
    };
    let m = &state.metrics;
    match &outcome {
        Finish::Sent => {
            m.webhooks_sent.inc();
            tracing::debug!(webhook_id = %id, "webhook sent");
        }
        Finish::Skipped(why) => tracing::debug!(webhook_id = %id, why, "webhook not needed"),
        Finish::Retry { at, error } => {
            m.webhooks_retried.inc();
            tracing::warn!(webhook_id = %id, attempt = event.attempts + 1, %at, error, "webhook failed; will retry");
        }
        Finish::Dead(error) => {
            m.webhooks_dead.inc();
            tracing::error!(webhook_id = %id, attempts = event.attempts + 1, error, "webhook dead-lettered: retries exhausted");
        }
    }
    let recorded = state
        .db
        .run(move |c| outbox::finish(c, &event, &token, payload.as_deref(), &outcome, Utc::now()))
        .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(webhook_id = %id, "webhook claim lapsed before its outcome was recorded")
        }
        // The claim lapses and the event is attempted again: at least once.
        Err(e) => {
            tracing::warn!(webhook_id = %id, error = %e.report(), "webhook outcome not recorded")
        }
    }
}

/// The body to send, `Ok(Err(why))` when the event no longer matters, or
/// `Err` when that cannot be told now (the database or presence is down).
async fn prepare(
    state: &AppState,
    event: &ClaimedEvent,
) -> Result<Result<String, &'static str>, String> {
    let (kind, recipient) = (event.kind, event.recipient);
    let fresh = match state.db.run(move |c| render(c, kind, recipient)).await {
        Ok(Ok(body)) => body,
        Ok(Err(skip)) => return Ok(Err(skip)),
        Err(e) => return Err(format!("database: {}", e.report())),
    };
    match state.realtime.presence().online(&[recipient]).await {
        Ok(online) if online.first().copied().unwrap_or(false) => {
            return Ok(Err("recipient online"));
        }
        Ok(_) => {}
        Err(e) => return Err(format!("presence: {e}")),
    }
    // Every retry sends the first attempt's bytes.
    Ok(Ok(event.payload.clone().unwrap_or(fresh)))
}

/// Loads what the event announces and renders its payload, unless the
/// message has been read or the request is no longer pending.
fn render(
    conn: &mut DbConnection,
    kind: EventKind,
    recipient: UserId,
) -> QueryResult<Result<String, &'static str>> {
    let payload = match kind {
        EventKind::MessageCreated(id) => {
            let Some(m) = messages::find_many(conn, &[id])?.into_iter().next() else {
                return Ok(Err("message gone"));
            };
            if m.is_read() {
                return Ok(Err("message read"));
            }
            let sender = users::find(conn, m.sender_id)?;
            WebhookPayload::MessageCreated {
                recipient_id: recipient,
                conversation_id: m.conversation_id,
                message: MessageView::build(&m, &sender),
            }
        }
        EventKind::ConnectionRequested(id) => {
            let c = connections::find_for(conn, id, recipient)?;
            if c.status != ConnectionStatus::Pending {
                return Ok(Err("request no longer pending"));
            }
            let users = user_map(users::find_many(conn, &[c.requester_id, c.addressee_id])?);
            let Some(connection) = ConnectionView::build(&c, &users) else {
                return Ok(Err("user gone"));
            };
            WebhookPayload::ConnectionRequested {
                recipient_id: recipient,
                connection,
            }
        }
    };
    serde_json::to_string(&payload)
        .map(Ok)
        .map_err(|e| chat_persistence::PersistenceError::other_with("webhook payload", e))
}

/// A retry with backoff and jitter, or the dead letter once the event has
/// been retried for `retry_max_age_seconds`.
fn after_failure(
    hooks: &Webhooks,
    event: &ClaimedEvent,
    error: String,
    now: DateTime<Utc>,
) -> Finish {
    let s = &hooks.settings;
    let max_age = chrono::Duration::seconds(
        i64::try_from(s.retry_max_age_seconds).unwrap_or(i64::MAX / 1000),
    );
    if now - event.created_at >= max_age {
        return Finish::Dead(error);
    }
    let wait = backoff(
        s.retry_initial_ms,
        s.retry_max_interval_ms,
        event.attempts,
        jitter(),
    );
    Finish::Retry {
        at: now + chrono::Duration::milliseconds(i64::try_from(wait).unwrap_or(i64::MAX / 2)),
        error,
    }
}

/// Milliseconds before the retry after `attempts` earlier failed attempts:
/// `initial` doubled per attempt up to `max`, of which the second half is
/// scaled by `jitter` (0..1), so retries of many events spread out.
fn backoff(initial: u64, max: u64, attempts: i64, jitter: f64) -> u64 {
    let doublings = u32::try_from(attempts.clamp(0, 40)).unwrap_or(40);
    let base = initial.saturating_mul(1u64 << doublings).min(max);
    let half = base / 2;
    half + (half as f64 * jitter.clamp(0.0, 1.0)) as u64
}

fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        assert_eq!(backoff(1000, 60_000, 0, 0.0), 500);
        assert_eq!(backoff(1000, 60_000, 0, 1.0), 1000);
        assert_eq!(backoff(1000, 60_000, 3, 1.0), 8000);
        assert_eq!(backoff(1000, 60_000, 10, 1.0), 60_000);
        assert_eq!(backoff(1000, 60_000, 1_000, 0.5), 45_000);
    }
}
