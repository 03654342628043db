//! Delivery acks. Every socket and request of a node hands its acks to one
//! queue, and the acks waiting at the same moment are stored in one
//! transaction (a fixed number of statements, one commit, see
//! `chat_persistence::delivery`):
//! an ack per message per receiving socket would otherwise be a commit of
//! its own that locks the rows the message writer locks, and the sends
//! would wait on them. Each caller still awaits its own outcome. A batch
//! takes whatever is queued when the last one is done, so an idle system
//! adds no delay.

use crate::error::ApiError;
use crate::notify;
use crate::state::AppState;
use chat_domain::{ConversationId, MessageId, ServerEvent, UserId};
use chat_persistence::PersistenceError;
use chat_persistence::delivery::{self, Ack, AckOutcome, Delivered};
use chat_persistence::events::Ledger;
use chat_realtime::Audience;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Acks one transaction takes at most.
const MAX_BATCH: usize = 256;

type Job = (Ack, oneshot::Sender<Result<Delivered, ApiError>>);

/// The node's ack queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct DeliveryQueue {
    tx: mpsc::Sender<Job>,
    /// Taken once by [`spawn_batcher`].
    rx: Arc<Mutex<Option<mpsc::Receiver<Job>>>>,
}

impl Default for DeliveryQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        Self {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }
}

/// Acknowledges delivery as `recipient` of the other participant's
/// messages up to `up_to` (any message of the conversation); records and
/// publishes `messages_delivered` when something changed. 404 for a
/// non-participant or a message that is not in the conversation.
pub async fn mark_delivered(
    state: &AppState,
    recipient: UserId,
    conversation: ConversationId,
    up_to: MessageId,
) -> Result<Delivered, ApiError> {
    let ack = Ack {
        recipient,
        conversation,
        up_to,
    };
    let (reply, answer) = oneshot::channel();
    let stopped = || ApiError::internal_because("delivery batcher stopped");
    state
        .deliveries
        .tx
        .send((ack, reply))
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// Starts the task that stores the node's acks (once; later calls do
/// nothing).
pub fn spawn_batcher(state: AppState) {
    let taken = state.deliveries.rx.lock().ok().and_then(|mut rx| rx.take());
    let Some(mut rx) = taken else {
        return;
    };
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (acks, replies): (Vec<Ack>, Vec<_>) = batch.drain(..).unzip();
            let outcomes = store_and_publish(&state, acks).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
    });
}

/// Stores `acks` in one transaction and publishes what changed; one outcome
/// per ack, in order.
async fn store_and_publish(state: &AppState, acks: Vec<Ack>) -> Vec<Result<Delivered, ApiError>> {
    let n = acks.len();
    let stored = state
        .db
        .transaction(move |c| {
            let outcomes = delivery::mark_delivered_many(c, &acks)?;
            let mut participants = Vec::new();
            for o in &outcomes {
                if let AckOutcome::Changed(conv, _) = o {
                    participants.extend([conv.user_low, conv.user_high]);
                }
            }
            if participants.is_empty() {
                return Ok((acks, outcomes, Vec::new()));
            }
            // Users' rows last, as in every transaction (lock order).
            let mut ledger = Ledger::lock(c, &participants)?;
            for (ack, o) in acks.iter().zip(&outcomes) {
                if let AckOutcome::Changed(conv, d) = o {
                    for user in [conv.user_low, conv.user_high] {
                        ledger.record(user, |seq, _| delivered_event(ack, d, Some(seq)).to_json());
                    }
                }
            }
            let events = ledger.write(c, chat_domain::now())?;
            Ok((acks, outcomes, events))
        })
        .await;
    let (acks, outcomes, events) = match stored {
        Ok(stored) => stored,
        Err(e) => {
            let e = ApiError::from(e);
            return (0..n).map(|_| Err(e.clone())).collect();
        }
    };
    for (ack, o) in acks.iter().zip(&outcomes) {
        if let AckOutcome::Changed(_, d) = o {
            let event = delivered_event(ack, d, None);
            state
                .realtime
                .publish(ack.conversation, &event, Audience::Everyone)
                .await;
        }
    }
    notify::user_events(state, events).await;
    outcomes
        .into_iter()
        .map(|o| match o {
            AckOutcome::Changed(_, d) | AckOutcome::Unchanged(d) => Ok(d),
            AckOutcome::NotFound => Err(PersistenceError::NotFound.into()),
        })
        .collect()
}

fn delivered_event(ack: &Ack, d: &Delivered, seq: Option<i64>) -> ServerEvent {
    ServerEvent::MessagesDelivered {
        conversation_id: ack.conversation,
        user_id: ack.recipient,
        up_to_message_id: d.up_to,
        delivered_at: d.delivered_at,
        seq,
    }
}
