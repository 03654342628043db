//! Sending, marking read and typing.

use crate::error::ApiError;
use crate::limits::too_many;
use crate::notify;
use crate::service::to_completion;
use crate::state::AppState;
use chat_domain::reaction::{Emoji, MAX_REACTIONS_PER_USER};
use chat_domain::{
    ClientId, Conversation, ConversationId, Message, MessageContent, MessageId, ServerEvent, User,
    UserId,
};
use chat_persistence::events::Ledger;
use chat_persistence::messages::{self, SendOutcome};
use chat_persistence::reactions::{self, Reacted};
use chat_persistence::{SendRequest, conversations, users};
use chat_realtime::Audience;
use chrono::{DateTime, Utc};

/// A message to send, already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Where to send it.
    pub conversation: ConversationId,
    /// Trimmed, length-checked content.
    pub content: MessageContent,
    /// The sender's idempotency key.
    pub client_id: Option<ClientId>,
    /// Uploads of the sender's to send with it (checked: at most 10, each once).
    pub attachments: Vec<chat_domain::AttachmentId>,
}

/// What a send did.
#[derive(Debug)]
pub enum Sent {
    /// Stored now, and published to the conversation.
    Stored(Message),
    /// A retry of a stored message (same sender, conversation and
    /// `client_id`): nothing stored, nothing published.
    Duplicate(Message),
}

impl Sent {
    /// The stored message, new or original.
    pub fn message(&self) -> &Message {
        match self {
            Self::Stored(m) | Self::Duplicate(m) => m,
        }
    }
}

/// Sends a message as `sender`: rate limit, rules, store, then publish,
/// to the end even if the caller goes away.
pub async fn send_message(
    state: &AppState,
    sender: &User,
    new: NewMessage,
) -> Result<Sent, ApiError> {
    let (state, sender) = (state.clone(), sender.clone());
    to_completion(async move { take_message(&state, &sender, new).await?.finish().await }).await
}

/// A send the writer has taken, in the order it was taken:
/// [`TakenMessage::finish`] waits for it to be stored and publishes it.
#[derive(Debug)]
pub struct TakenMessage {
    state: AppState,
    submitted: chat_persistence::Submitted,
}

/// The first half of [`send_message`]: the rate limit, then the send
/// handed to the writer. Sends of one conversation taken one after the
/// other are stored in that order even when nobody waits in between
/// (when [`pipelines`] says so).
pub async fn take_message(
    state: &AppState,
    sender: &User,
    new: NewMessage,
) -> Result<TakenMessage, ApiError> {
    state.check_message_rate(sender.id).map_err(too_many)?;
    let submitted = state.writer.submit(request(sender, new)).await?;
    Ok(TakenMessage {
        state: state.clone(),
        submitted,
    })
}

/// Whether `new` may be taken before the sends taken before it are
/// stored: it goes through a writer's queue, which keeps the order.
pub fn pipelines(state: &AppState, new: &NewMessage) -> bool {
    state
        .writer
        .queues(new.conversation, !new.attachments.is_empty())
}

fn request(sender: &User, new: NewMessage) -> SendRequest {
    SendRequest {
        conversation: new.conversation,
        sender: sender.id,
        content: new.content,
        client_id: new.client_id,
        attachments: new.attachments,
    }
}

impl TakenMessage {
    /// Waits for the send to be stored (or refused).
    pub async fn stored(self) -> Result<StoredMessage, ApiError> {
        let outcome = self.submitted.outcome().await?;
        Ok(StoredMessage {
            state: self.state,
            outcome,
        })
    }

    /// Waits for the send, then publishes what was stored.
    pub async fn finish(self) -> Result<Sent, ApiError> {
        self.stored().await?.publish().await
    }
}

/// A send's outcome, committed, not yet published.
#[derive(Debug)]
pub struct StoredMessage {
    state: AppState,
    outcome: SendOutcome,
}

impl StoredMessage {
    /// Publishes a stored message; a duplicate or a refusal publishes nothing.
    pub async fn publish(self) -> Result<Sent, ApiError> {
        match self.outcome {
            SendOutcome::Stored(stored) => {
                let m = stored.message.clone();
                notify::message_stored(&self.state, *stored).await;
                Ok(Sent::Stored(m))
            }
            SendOutcome::Duplicate(m) => Ok(Sent::Duplicate(m)),
            SendOutcome::Denied(denied) => Err(denied.into()),
            SendOutcome::NotAttachable => Err(ApiError::field(
                "attachment_ids",
                "Each attachment must be a file you uploaded that has not been sent yet.",
            )),
        }
    }
}

/// Which messages a read marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSelection {
    /// Every unread message of the other participant.
    All,
    /// Only these ids, among the other participant's unread messages.
    Only(Vec<MessageId>),
}

/// What a read marked.
#[derive(Debug, Clone)]
pub struct Read {
    /// Ids marked now, ascending; empty when nothing changed.
    pub marked: Vec<MessageId>,
    /// The time recorded on them.
    pub read_at: DateTime<Utc>,
}

/// Marks messages of the other participant read as `reader`, records
/// `messages_read` in both participants' streams in the same transaction,
/// and publishes it when something was marked. 404 for a non-participant.
pub async fn mark_read(
    state: &AppState,
    reader: UserId,
    conversation: ConversationId,
    selection: ReadSelection,
) -> Result<Read, ApiError> {
    let state = state.clone();
    to_completion(async move { read_and_publish(&state, reader, conversation, selection).await })
        .await
}

async fn read_and_publish(
    state: &AppState,
    reader: UserId,
    conversation: ConversationId,
    selection: ReadSelection,
) -> Result<Read, ApiError> {
    let (marked, events) = state
        .db
        .transaction(move |c| {
            let conv = conversations::find_for(c, conversation, reader)?;
            let ids = match &selection {
                ReadSelection::All => None,
                ReadSelection::Only(ids) => Some(ids.as_slice()),
            };
            let marked = messages::mark_read(c, &conv, reader, ids)?;
            let Some((low, high)) = marked.unread_after else {
                return Ok((marked, Vec::new()));
            };
            let unread_of = |user: UserId| if user == conv.user_low { low } else { high };
            let mut ledger = Ledger::lock(c, &[conv.user_low, conv.user_high])?;
            // One event per part, each with its own seq and the counters
            // after it: the reader's unread count falls part by part.
            let mut left = marked.ids.len() as i64;
            for part in marked.ids.chunks(MAX_READ_EVENT_IDS) {
                let n = part.len() as i64;
                ledger.unread_removed(reader, unread_of(reader) + left, n);
                left -= n;
                let event = read_event(conversation, reader, part, marked.read_at, true);
                for user in [conv.user_low, conv.user_high] {
                    let unread = unread_of(user) + if user == reader { left } else { 0 };
                    ledger.record(user, |seq, s| {
                        event.clone().on_stream(s.counters(seq, unread)).to_json()
                    });
                }
            }
            let events = ledger.write(c, marked.read_at)?;
            Ok((marked, events))
        })
        .await?;
    for part in marked.ids.chunks(MAX_READ_EVENT_IDS) {
        let event = read_event(conversation, reader, part, marked.read_at, false);
        state
            .realtime
            .publish(conversation, &event, Audience::Everyone)
            .await;
    }
    notify::user_events(state, events).await;
    Ok(Read {
        marked: marked.ids,
        read_at: marked.read_at,
    })
}

/// Most ids one `messages_read` event lists: a read that marks more (a
/// `mark_read` of everything after a long absence) is told in several
/// events, ids ascending across them, so no event grows with a backlog.
pub const MAX_READ_EVENT_IDS: usize = 1000;

/// `messages_read` for `ids` (one part of a read); `on_stream` names the
/// conversation (user streams do).
fn read_event(
    conversation: ConversationId,
    reader: UserId,
    ids: &[MessageId],
    read_at: DateTime<Utc>,
    on_stream: bool,
) -> ServerEvent {
    ServerEvent::MessagesRead {
        conversation_id: on_stream.then_some(conversation),
        user_id: reader,
        message_ids: ids.to_vec(),
        read_at,
        stream: None,
    }
}

/// 404 unless `user` takes part in the conversation.
pub async fn ensure_participant(
    state: &AppState,
    user: UserId,
    conversation: ConversationId,
) -> Result<(), ApiError> {
    state
        .db
        .run(move |c| conversations::find_for(c, conversation, user).map(drop))
        .await?;
    Ok(())
}

/// Tells the other participant's sockets (conversation sockets and user
/// streams) that `typist` started or stopped typing. The caller has checked
/// membership (a conversation socket at admission, the stream per
/// conversation); nothing is stored.
pub async fn typing(state: &AppState, typist: &User, conversation: &Conversation, is_typing: bool) {
    let event = ServerEvent::TypingIndicator {
        conversation_id: None,
        user_id: typist.id,
        user_name: typist.display_name(),
        is_typing,
    };
    notify::typing(state, conversation, typist.id, event).await;
}

/// Adds (`add`) or removes `user`'s reaction on a message; records and
/// publishes `reaction_changed` when something changed. Returns the message
/// as it is now. 404 unless the user takes part in its conversation, 403
/// once the connection is no longer accepted, 400 beyond the per-user limit.
pub async fn react(
    state: &AppState,
    user: UserId,
    message: MessageId,
    emoji: Emoji,
    add: bool,
) -> Result<(Message, User), ApiError> {
    let state = state.clone();
    to_completion(async move { react_and_publish(&state, user, message, emoji, add).await }).await
}

async fn react_and_publish(
    state: &AppState,
    user: UserId,
    message: MessageId,
    emoji: Emoji,
    add: bool,
) -> Result<(Message, User), ApiError> {
    let e = emoji.clone();
    let outcome = state
        .db
        .transaction(move |c| {
            let m = messages::find_for(c, message, user)?;
            let conv = conversations::find(c, m.conversation_id)?;
            if let Err(denied) = conv.check_send(user) {
                return Ok(Err(denied));
            }
            let reacted = reactions::react(c, message, user, &e, add)?;
            let m = messages::find_for(c, message, user)?;
            let sender = users::find(c, m.sender_id)?;
            let Reacted::Changed(summary) = &reacted else {
                return Ok(Ok((m, sender, reacted, Vec::new())));
            };
            let event = ServerEvent::ReactionChanged {
                conversation_id: conv.id,
                message_id: message,
                user_id: user,
                emoji: e.as_str().to_owned(),
                added: add,
                reactions: summary.clone(),
                seq: None,
            };
            let mut ledger = Ledger::lock(c, &[conv.user_low, conv.user_high])?;
            for u in [conv.user_low, conv.user_high] {
                ledger.record(u, |seq, _| with_stream_seq(event.clone(), seq).to_json());
            }
            let events = ledger.write(c, chat_domain::now())?;
            Ok(Ok((m, sender, reacted, events)))
        })
        .await?;
    let (m, sender, reacted, events) = outcome?;
    match reacted {
        Reacted::TooMany => Err(ApiError::field(
            "emoji",
            format!("At most {MAX_REACTIONS_PER_USER} different reactions per message."),
        )),
        Reacted::Unchanged => Ok((m, sender)),
        Reacted::Changed(summary) => {
            let event = ServerEvent::ReactionChanged {
                conversation_id: m.conversation_id,
                message_id: message,
                user_id: user,
                emoji: emoji.as_str().to_owned(),
                added: add,
                reactions: summary,
                seq: None,
            };
            state
                .realtime
                .publish(m.conversation_id, &event, Audience::Everyone)
                .await;
            notify::user_events(state, events).await;
            Ok((m, sender))
        }
    }
}

fn with_stream_seq(mut event: ServerEvent, n: i64) -> ServerEvent {
    if let ServerEvent::ReactionChanged { seq, .. } = &mut event {
        *seq = Some(n);
    }
    event
}
