//! The two WebSockets: `/ws/chat/{conversation_id}/` (one conversation) and
//! `/ws/chat/` (the user stream: every conversation of the user). One task
//! per socket; its frames are handled in order, so one sender's messages
//! keep their order everywhere.
//!
//! Gapless delivery: each socket knows the last position it delivered (the
//! user's `seq` on a stream, the message's position in its conversation on
//! a conversation socket). A frame further ahead, or a resync signal from
//! the bus, makes the socket fill the gap from the database first; what it
//! already delivered is skipped. If the log cannot fill it, the socket
//! closes with 1012 and the client resumes with `since`/`after`.

use super::ws_read::{self, Frames, Incoming};
use crate::auth::{authenticate_with, bearer_token};
use crate::error::ApiError;
use crate::limits::{FrameKind, too_many};
use crate::pagination::query_pairs;
use crate::service::chat::{self, NewMessage, ReadSelection, Sent};
use crate::service::delivery;
use crate::state::AppState;
use actix_web::FromRequest;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Session};
use chat_domain::{
    ClientEvent, ClientEventError, ClientFrame, ClientId, Conversation, ConversationId,
    MessageContent, MessageId, ServerEvent, StreamStart, User,
};
use chat_persistence::events;
use chat_persistence::messages::{self, Cursor};
use chat_persistence::{PersistenceError, conversations, users};
use chat_realtime::{Dropped, Frame, Outbound, Registration, Topic};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Close codes after the upgrade (API.md).
const CLOSE_UNAUTHENTICATED: u16 = 4001;
const CLOSE_FORBIDDEN: u16 = 4003;
const CLOSE_NOT_FOUND: u16 = 4004;
/// `since` or `after` is not a non-negative integer.
const CLOSE_BAD_CURSOR: u16 = 4400;
/// The user has `rate_limits.max_sockets_per_user` sockets open already.
const CLOSE_TOO_MANY_SOCKETS: u16 = 4029;
/// Rows read per query while replaying or filling a gap.
const FILL_CHUNK: i64 = 500;

/// The WebSocket routes.
pub fn configure(r: &mut super::Router<'_>) {
    r.resource("/ws/chat/", |e| e.get(upgrade_stream))
        .resource("/ws/chat/{id}/", |e| e.get(upgrade));
}

/// Open the conversation's WebSocket
///
/// Upgrades to a WebSocket carrying the conversation's live events. The
/// token goes in `?token=` or an `Authorization: Bearer` header; token and
/// membership failures close the socket after the upgrade (4001, 4003,
/// 4004). With `?after=<message id>` the socket first sends every later
/// message of the conversation, oldest first (4400 if `after` is not a
/// non-negative integer). Frames, events and close codes are described at
/// the top of this document and in the `ClientEvent` and `ServerEvent`
/// schemas.
#[utoipa::path(get, path = "/ws/chat/{conversation_id}/", tag = "websocket",
    operation_id = "ws_chat", security(("jwt" = []), ()),
    params(
        ("conversation_id" = i64, Path, description = "Conversation id."),
        ("token" = Option<String>, Query, description = "Access token (or use the header)."),
        ("after" = Option<i64>, Query, description = "Replay the messages after this id first."),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the socket is open; its first frame \
            is `connection_established`, or a close with 4001, 4003, 4004 or 4400."),
        (status = 400, description = "Not a valid WebSocket upgrade request.", body = ApiError),
    ))]
pub(crate) async fn upgrade(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let conversation = req
        .match_info()
        .get("id")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .map(ConversationId);
    open(state, req, body, Kind::Conversation(conversation), "after").await
}

/// Open the user stream
///
/// One WebSocket for all of the user's conversations: every durable event
/// carries the user's `seq` (1, 2, 3 … with no gaps); `?since=<seq>`
/// replays what came after it (`recovered: false` when it cannot, 4400 if
/// `since` is not a non-negative integer). Client frames name their
/// `conversation_id`.
#[utoipa::path(get, path = "/ws/chat/", tag = "websocket",
    operation_id = "ws_stream", security(("jwt" = []), ()),
    params(
        ("token" = Option<String>, Query, description = "Access token (or use the header)."),
        ("since" = Option<i64>, Query, description = "Resume after this seq."),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the socket is open; its first frame \
            is `connection_established` with `seq` and counters, or a close with 4001 or 4400."),
        (status = 400, description = "Not a valid WebSocket upgrade request.", body = ApiError),
    ))]
pub(crate) async fn upgrade_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    open(state, req, body, Kind::Stream, "since").await
}

/// Which socket was asked for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Conversation(Option<ConversationId>),
    Stream,
}

/// What the query string asked for: the token and the resume cursor
/// (`Err` when the cursor is not a non-negative integer).
struct Ask {
    token: Option<String>,
    cursor: Result<Option<i64>, ()>,
}

async fn open(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    kind: Kind,
    cursor_name: &str,
) -> Result<HttpResponse, actix_web::Error> {
    let pairs = query_pairs(&req);
    let token = pairs
        .iter()
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .or_else(|| bearer_token(&req).map(str::to_owned));
    let cursor = match pairs.iter().find(|(k, _)| k == cursor_name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .map(Some)
            .ok_or(()),
    };
    // Frames above the limit are refused from their header (see ws_read).
    let limit = state.settings.websocket.max_frame_bytes;
    let (mut guarded, verdict) = ws_read::guard(body.into_inner(), limit);
    let body = web::Payload::from_request(&req, &mut guarded).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = Frames::new(stream, verdict, limit);
    // The socket's task logs in the upgrade request's span (its request id).
    let task = run(
        state.get_ref().clone(),
        Ask { token, cursor },
        kind,
        session,
        stream,
    );
    actix_web::rt::spawn(task.instrument(tracing::Span::current()));
    Ok(response)
}

fn close_reason(code: u16, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::Other(code),
        description: Some(description.to_owned()),
    })
}

fn unavailable() -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::Error,
        description: Some("Service unavailable.".into()),
    })
}

/// Authenticates through the one path every route uses and checks
/// membership; the close reason on failure.
async fn admit(
    state: &AppState,
    token: Option<String>,
    kind: Kind,
) -> Result<(User, Option<Conversation>), Option<CloseReason>> {
    let token = token.ok_or_else(|| {
        close_reason(
            CLOSE_UNAUTHENTICATED,
            "Authentication credentials were not provided.",
        )
    })?;
    let found = authenticate_with(state, &token, move |c, _| match kind {
        Kind::Conversation(Some(id)) => match conversations::find(c, id) {
            Ok(conv) => Ok(Some(conv)),
            Err(PersistenceError::NotFound) => Ok(None),
            Err(e) => Err(e),
        },
        Kind::Conversation(None) | Kind::Stream => Ok(None),
    })
    .await;
    match (kind, found) {
        (Kind::Stream, Ok((user, _))) => Ok((user, None)),
        (_, Ok((_, None))) => Err(close_reason(CLOSE_NOT_FOUND, "Conversation not found.")),
        (_, Ok((user, Some(conv)))) if conv.can_read(user.id) => Ok((user, Some(conv))),
        (_, Ok(_)) => Err(close_reason(
            CLOSE_FORBIDDEN,
            "You are not a participant of this conversation.",
        )),
        (_, Err(e)) if e.status() == StatusCode::UNAUTHORIZED => {
            Err(close_reason(CLOSE_UNAUTHENTICATED, e.detail()))
        }
        (_, Err(_)) => Err(unavailable()),
    }
}

/// Closes the socket, waiting at most the write timeout for the close
/// frame to be taken (a client that stops reading cannot hold the task).
async fn close_within(session: Session, reason: Closing, deadline: Duration) {
    let _ = tokio::time::timeout(deadline, session.close(reason)).await;
}

/// The socket's task. Not an `async fn`: its arguments would be stored
/// twice in the future (rustc keeps the arguments and their moved copies),
/// and every idle socket holds that future for as long as it is open.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in every idle socket's task"
)]
fn run(
    state: AppState,
    ask: Ask,
    kind: Kind,
    session: Session,
    mut stream: Frames,
) -> impl std::future::Future<Output = ()> {
    async move {
        let write_timeout = Duration::from_secs(state.settings.websocket.write_timeout_seconds);
        // Every await but `serve` is boxed: a task's future is as large as its
        // largest await, and that size is held by every idle socket for as
        // long as it is open (heap.sh measures it).
        let (user, conversation) = match Box::pin(admit(&state, ask.token, kind)).await {
            Ok(admitted) => admitted,
            Err(reason) => return Box::pin(close_within(session, reason, write_timeout)).await,
        };
        let Ok(cursor) = ask.cursor else {
            let reason = close_reason(
                CLOSE_BAD_CURSOR,
                "The resume cursor must be a non-negative integer.",
            );
            return Box::pin(close_within(session, reason, write_timeout)).await;
        };
        // Held until the socket ends; frees the user's slot when dropped.
        let Some(slot) = state.limits.open_socket(user.id) else {
            state.metrics.limited("sockets");
            let reason = close_reason(CLOSE_TOO_MANY_SOCKETS, "Too many open connections.");
            return Box::pin(close_within(session, reason, write_timeout)).await;
        };
        let topic = match &conversation {
            Some(conv) => Topic::Conversation(conv.id),
            None => Topic::User(user.id),
        };
        let Registration {
            socket,
            mut outbound,
            dropped,
        } = match Box::pin(state.realtime.join(topic, user.id)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "realtime join failed");
                return Box::pin(close_within(session, unavailable(), write_timeout)).await;
            }
        };
        let presence = state.realtime.presence().clone();
        Box::pin(presence.opened(user.id)).await;
        let user_id = user.id;
        let scope = match conversation {
            Some(conversation) => Scope::Conversation {
                position: conversation.message_count,
                anchor: conversation.last_message_id.map_or(0, |m| m.0),
                last_frame: None,
                conversation,
            },
            None => Scope::Stream {
                seq: 0,
                verified: Vec::new(),
            },
        };
        let mut socket_task = Socket {
            state: &state,
            user,
            session: session.clone(),
            scope,
            acks: Acks::default(),
            dropped,
            write_timeout,
            failed: None,
            inflight: Inflight::default(),
        };
        let close = socket_task.serve(cursor, &mut stream, &mut outbound).await;
        // Acks the client sent are stored even when it leaves within the window.
        Box::pin(socket_task.store_acks()).await;
        state.realtime.leave(topic, socket);
        presence.closed(user_id);
        drop(slot);
        // A client too slow to read would not take the close frame either.
        let slow = close.as_ref().is_some_and(|c| c.code == CloseCode::Again);
        let wait = if slow { Duration::ZERO } else { write_timeout };
        Box::pin(close_within(session, close, wait)).await;
    }
}

/// What a socket carries, and the last position it delivered.
enum Scope {
    /// `/ws/chat/{id}/`: positions are messages' places in the conversation.
    Conversation {
        conversation: Conversation,
        /// The position of the last message delivered.
        position: i64,
        /// A message id at or before `position`: gaps are read after it.
        anchor: i64,
        /// The last positioned frame delivered; its `message_id` is a
        /// better anchor, read only when a gap needs it.
        last_frame: Option<Frame>,
    },
    /// `/ws/chat/`: positions are the user's seq.
    Stream {
        seq: i64,
        /// Conversations this socket has seen the user take part in.
        verified: Vec<Conversation>,
    },
}

/// Why a socket must close.
type Closing = Option<CloseReason>;

fn restart(description: &str) -> Closing {
    Some(CloseReason {
        code: CloseCode::Restart,
        description: Some(description.to_owned()),
    })
}

struct Socket<'a> {
    state: &'a AppState,
    user: User,
    session: Session,
    scope: Scope,
    acks: Acks,
    /// Resolves once the hub dropped this socket (its queue overflowed).
    dropped: Dropped,
    /// Every write must be taken within this.
    write_timeout: Duration,
    /// Set when a write failed outside the paths that return a close
    /// reason (events answering a frame); the loop closes with it.
    failed: Option<Closing>,
    inflight: Inflight,
}

/// How many sends a socket may have taken and not yet answered.
const PIPELINE_DEPTH: usize = 32;

/// An answer to a send: the task that stores and publishes it.
type Answer = actix_web::rt::task::JoinHandle<Result<Sent, ApiError>>;

/// Sends this socket has handed to the writer and not yet answered, oldest
/// first, all to one conversation: the writer's queue stores them in the
/// order they were taken, so the socket reads the next frame without
/// waiting for the previous send to commit, and batches fill up. Each is
/// published by its own task (the client may leave; the send is still
/// published), after the one before it.
#[derive(Default)]
struct Inflight {
    conversation: Option<ConversationId>,
    /// Each answer with the `client_id` an error names.
    sends: std::collections::VecDeque<(Answer, Option<String>)>,
    /// Resolves once the newest send is published.
    published: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The send in flight is stored on its own (SQLite, or with files):
    /// no frame is read until it is answered.
    exclusive: bool,
    /// A frame read while sends were in flight that must wait for them;
    /// no frame is read after it until it is handled.
    deferred: Option<Result<ClientFrame, ClientEventError>>,
}

impl Inflight {
    /// Whether the socket reads its next frame now. While it does not, it
    /// still delivers its queue and answers its sends.
    fn takes_frames(&self) -> bool {
        self.deferred.is_none() && !self.exclusive && self.sends.len() < PIPELINE_DEPTH
    }
}

/// What the acks being stored gave (never resolves when none are).
async fn stored_acks(
    storing: &mut Option<AckStore>,
) -> Result<AckResults, actix_web::rt::task::JoinError> {
    match storing {
        Some(store) => store.await,
        None => std::future::pending().await,
    }
}

/// The oldest send's answer (never resolves when there is none).
async fn next_answer(
    sends: &mut std::collections::VecDeque<(Answer, Option<String>)>,
) -> Result<Result<Sent, ApiError>, actix_web::rt::task::JoinError> {
    match sends.front_mut() {
        Some((answer, _)) => answer.await,
        None => std::future::pending().await,
    }
}

/// The client does not read what it is sent (1013).
fn too_slow() -> Closing {
    Some(CloseReason {
        code: CloseCode::Again,
        description: Some("Client too slow.".into()),
    })
}

/// Runs one write to the client with a deadline: a client that stopped
/// reading makes it wait once the socket's buffers are full. It also gives
/// up as soon as the hub drops the socket for a full queue, so the slow
/// client is let go even while this write is pending.
async fn bounded(
    deadline: Duration,
    dropped: &mut Dropped,
    write: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), Closing> {
    tokio::select! {
        biased;
        written = write => written.map_err(|_| None),
        () = tokio::time::sleep(deadline) => Err(too_slow()),
        () = dropped.wait() => Err(too_slow()),
    }
}

/// Acks are coalesced: within [`ACK_WINDOW`] of the last one stored, a
/// socket's acks only raise a pending watermark per conversation, so a
/// flood of acks costs one transaction per window, not one each.
#[derive(Default)]
struct Acks {
    /// Highest ack waiting to be stored, per conversation.
    pending: Vec<(ConversationId, MessageId)>,
    /// Highest ack stored per conversation (a lower one changes nothing).
    stored: Vec<(ConversationId, MessageId)>,
    /// When the pending ones are stored.
    due: Option<Instant>,
    /// When the last ack was stored.
    last: Option<Instant>,
    /// The acks being stored, beside the socket's loop (a store waits for
    /// the node's ack batch, and the socket keeps delivering meanwhile).
    storing: Option<AckStore>,
}

/// Each stored ack with what storing it gave.
type AckResults = Vec<(ConversationId, MessageId, Result<(), ApiError>)>;
type AckStore = actix_web::rt::task::JoinHandle<AckResults>;

/// Half a second: in a busy conversation the sender's "delivered" lags by
/// at most this; the first ack after a quiet spell is stored at once. Each
/// store is a `messages_delivered` event to every socket of the
/// conversation and a log row for each user, which at 100 ms cost a fifth
/// of the throughput scenario's sends (BENCHMARKS.md, acks).
const ACK_WINDOW: Duration = Duration::from_millis(500);

impl Socket<'_> {
    /// Runs until the client leaves, stops answering, or falls behind;
    /// returns the close reason to send.
    async fn serve(
        &mut self,
        cursor: Option<i64>,
        stream: &mut Frames,
        outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    ) -> Closing {
        let mut draining = self.state.shutdown.watch();
        if *draining.borrow_and_update() {
            return restart("Server shutting down; reconnect.");
        }
        if let Err(close) = Box::pin(self.establish(cursor)).await {
            return close;
        }
        let settings = &self.state.settings.websocket;
        let timeout = Duration::from_secs(settings.client_timeout_seconds);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(
            settings.heartbeat_interval_seconds.max(1),
        ));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            if let Some(close) = self.failed.take() {
                return close;
            }
            let acks_due = self.acks.due.filter(|_| self.acks.storing.is_none());
            tokio::select! {
                _ = tokio::time::sleep_until(acks_due.unwrap_or_else(Instant::now).into()), if acks_due.is_some() => {
                    self.start_storing_acks();
                }
                stored = stored_acks(&mut self.acks.storing), if self.acks.storing.is_some() => {
                    self.acks.storing = None;
                    Box::pin(self.acks_stored(stored)).await;
                }
                answer = next_answer(&mut self.inflight.sends), if !self.inflight.sends.is_empty() => {
                    Box::pin(self.answered(answer)).await;
                    if self.inflight.sends.is_empty()
                        && let Some(frame) = self.inflight.deferred.take()
                    {
                        Box::pin(self.handle_parsed(frame)).await;
                    }
                }
                incoming = stream.recv(), if self.inflight.takes_frames() => {
                    last_heard = Instant::now();
                    match incoming {
                        Some(Ok(Incoming::Text(text))) => {
                            // Boxed: the frame handler's state lives only while
                            // a frame is handled, not in every idle socket.
                            Box::pin(self.handle_frame(&text)).await
                        }
                        Some(Ok(Incoming::Binary)) => {
                            Box::pin(self.error("Binary frames are not supported; send JSON text.", None)).await;
                        }
                        Some(Ok(Incoming::Ping(bytes))) => {
                            let pong = self.session.pong(&bytes);
                            if let Err(close) = Box::pin(bounded(self.write_timeout, &mut self.dropped, pong)).await {
                                return close;
                            }
                        }
                        Some(Ok(Incoming::Pong)) => {}
                        Some(Ok(Incoming::Close)) | None => {
                            // What the client sent before leaving is still done.
                            Box::pin(self.settle()).await;
                            return None;
                        }
                        Some(Err(refused)) => {
                            tracing::debug!(?refused, "websocket input refused");
                            return Some(CloseReason {
                                code: refused.close_code(),
                                description: Some(refused.description().into()),
                            });
                        }
                    }
                }
                item = outbound.recv() => {
                    let delivered = match item {
                        Some(Outbound::Frame { json, position }) => {
                            Box::pin(self.deliver(json, position)).await
                        }
                        Some(Outbound::Resync) => Box::pin(self.fill(None)).await,
                        None => Err(Some(CloseReason { code: CloseCode::Again, description: Some("Client too slow.".into()) })),
                    };
                    if let Err(close) = delivered { return close; }
                }
                _ = draining.changed() => {
                    // Frames already taken have been handled (actions run to
                    // their end before the loop gets here again; sends are
                    // answered now); deliver what they queued, then close.
                    Box::pin(self.settle()).await;
                    Box::pin(self.store_acks()).await;
                    if let Err(close) = Box::pin(self.flush(outbound)).await {
                        return close;
                    }
                    return restart("Server shutting down; reconnect.");
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > timeout {
                        return Some(CloseReason { code: CloseCode::Policy, description: Some("Heartbeat timeout.".into()) });
                    }
                    let ping = self.session.ping(b"");
                    if let Err(close) = Box::pin(bounded(self.write_timeout, &mut self.dropped, ping)).await {
                        return close;
                    }
                }
            }
        }
    }

    /// Delivers what reaches the queue until it has been quiet for a moment
    /// (at most the shutdown's flush budget, so the close still goes out
    /// within the drain time): the answers to frames handled before a drain.
    async fn flush(
        &mut self,
        outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    ) -> Result<(), Closing> {
        let deadline = Instant::now() + self.state.shutdown.flush_budget();
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(50), outbound.recv()).await {
                Ok(Some(Outbound::Frame { json, position })) => {
                    self.deliver(json, position).await?
                }
                Ok(Some(Outbound::Resync)) => self.fill(None).await?,
                Ok(None) | Err(_) => break,
            }
        }
        Ok(())
    }

    /// Sends `connection_established`, then what `cursor` asks to replay.
    /// The socket is subscribed already: anything committed from here on
    /// arrives live, and anything before is read here.
    async fn establish(&mut self, cursor: Option<i64>) -> Result<(), Closing> {
        let user = self.user.id;
        let conversation = match &self.scope {
            Scope::Conversation { conversation, .. } => Some(conversation.id),
            Scope::Stream { .. } => None,
        };
        match conversation {
            Some(id) => {
                let first = ServerEvent::established(id, user);
                self.write(&first.to_json()).await?;
                if let Some(after) = cursor {
                    let now = self
                        .db(move |c| conversations::find(c, id))
                        .await
                        .map_err(|_| unavailable())?;
                    let last_id = now.last_message_id.map_or(0, |m| m.0);
                    self.replay_messages(after, last_id).await?;
                    // From here on the socket stands at the newest message
                    // of that moment; anything later arrives live or fills.
                    if let Scope::Conversation {
                        position,
                        anchor,
                        last_frame,
                        ..
                    } = &mut self.scope
                    {
                        *position = now.message_count;
                        *anchor = last_id;
                        *last_frame = None;
                    }
                }
                Ok(())
            }
            None => {
                let (state, next) = self
                    .db(move |c| {
                        let state = events::stream_state(c, user)?;
                        let since = cursor.unwrap_or(state.seq);
                        let next = if since < state.seq {
                            events::replay(c, user, since, state.seq, 1)?
                        } else {
                            Vec::new()
                        };
                        Ok((state, next))
                    })
                    .await
                    .map_err(|_| unavailable())?;
                let recovered = cursor.map(|since| {
                    since == state.seq
                        || (since < state.seq && next.first().map(|e| e.0) == Some(since + 1))
                });
                let start = StreamStart {
                    seq: state.seq,
                    total_unread: state.total_unread,
                    unread_conversations: state.unread_conversations,
                    recovered,
                };
                self.write(&ServerEvent::stream_established(user, start).to_json())
                    .await?;
                match (cursor, recovered) {
                    (Some(since), Some(true)) => {
                        self.set_seq(since);
                        self.fill(Some(state.seq)).await
                    }
                    _ => {
                        self.set_seq(state.seq);
                        Ok(())
                    }
                }
            }
        }
    }

    fn set_seq(&mut self, to: i64) {
        if let Scope::Stream { seq, .. } = &mut self.scope {
            *seq = to;
        }
    }

    /// The last position delivered.
    fn last(&self) -> i64 {
        match &self.scope {
            Scope::Conversation { position, .. } => *position,
            Scope::Stream { seq, .. } => *seq,
        }
    }

    /// Writes a live frame in order: skipped when already delivered, after
    /// the gap is filled when it is ahead.
    async fn deliver(&mut self, json: Frame, position: Option<u64>) -> Result<(), Closing> {
        let Some(p) = position.and_then(|p| i64::try_from(p).ok()) else {
            return self.write(&json).await;
        };
        if p <= self.last() {
            return Ok(());
        }
        if p > self.last() + 1 {
            self.fill(Some(p)).await?;
            if p <= self.last() {
                return Ok(());
            }
        }
        self.write(&json).await?;
        match &mut self.scope {
            Scope::Conversation {
                position,
                last_frame,
                ..
            } => {
                *position = p;
                *last_frame = Some(json);
            }
            Scope::Stream { seq, .. } => *seq = p,
        }
        Ok(())
    }

    /// Delivers from the database what lies after the last position, up
    /// to `upto` (or everything, for a resync).
    async fn fill(&mut self, upto: Option<i64>) -> Result<(), Closing> {
        if let Scope::Conversation {
            anchor, last_frame, ..
        } = &mut self.scope
        {
            // The last live frame is newer than the stored anchor.
            if let Some(id) = last_frame.take().as_deref().and_then(message_id_of) {
                *anchor = id;
            }
            return self.fill_conversation(upto).await;
        }
        self.fill_stream(upto).await
    }

    async fn fill_stream(&mut self, upto: Option<i64>) -> Result<(), Closing> {
        let user = self.user.id;
        loop {
            let after = self.last();
            if upto.is_some_and(|u| after >= u) {
                return Ok(());
            }
            let limit = upto.map_or(FILL_CHUNK, |u| (u - after).min(FILL_CHUNK));
            let rows = self
                .db(move |c| events::replay(c, user, after, upto.unwrap_or(i64::MAX), limit))
                .await
                .map_err(|_| restart("Could not read the event log; resume with since."))?;
            let Some(first) = rows.first() else {
                return match upto {
                    // The frame is ahead of what the log holds: not committed? Never.
                    Some(_) => Err(restart("Events are missing; resume with since.")),
                    None => Ok(()),
                };
            };
            if first.0 != after + 1 {
                return Err(restart("Events were pruned; reload and reconnect."));
            }
            let n = rows.len() as i64;
            for (seq, payload) in rows {
                self.write(&payload).await?;
                self.set_seq(seq);
            }
            if n < limit && upto.is_none() {
                return Ok(());
            }
        }
    }

    /// Sends the conversation's messages with `after < id <= last_id`,
    /// oldest first (`after=` on connect).
    async fn replay_messages(&mut self, after: i64, last_id: i64) -> Result<(), Closing> {
        let Scope::Conversation { conversation, .. } = &self.scope else {
            return Ok(());
        };
        let conv = conversation.clone();
        let mut from = after;
        while from < last_id {
            let c2 = conv.clone();
            let (rows, senders) = self
                .db(move |c| {
                    let (rows, _) = messages::from_cursor(
                        c,
                        c2.id,
                        Cursor::After(MessageId(from)),
                        FILL_CHUNK,
                    )?;
                    let senders = users::find_many(c, &[c2.user_low, c2.user_high])?;
                    Ok((rows, senders))
                })
                .await
                .map_err(|_| unavailable())?;
            if rows.is_empty() {
                return Ok(());
            }
            for m in rows.into_iter().filter(|m| m.id.0 <= last_id) {
                from = m.id.0;
                if let Some(sender) = senders.iter().find(|u| u.id == m.sender_id) {
                    self.write(&ServerEvent::chat_message(&m, sender).to_json())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Fills a conversation socket's gap: the messages after the anchor
    /// (the message at the last position delivered) follow it position by
    /// position, up to `upto` or the newest.
    async fn fill_conversation(&mut self, upto: Option<i64>) -> Result<(), Closing> {
        loop {
            let Scope::Conversation {
                conversation,
                anchor,
                ..
            } = &self.scope
            else {
                return Ok(());
            };
            if upto.is_some_and(|u| self.last() >= u) {
                return Ok(());
            }
            let (conv, from) = (conversation.clone(), *anchor);
            let (rows, senders) = self
                .db(move |c| {
                    let (rows, _) = messages::from_cursor(
                        c,
                        conv.id,
                        Cursor::After(MessageId(from)),
                        FILL_CHUNK,
                    )?;
                    let senders = users::find_many(c, &[conv.user_low, conv.user_high])?;
                    Ok((rows, senders))
                })
                .await
                .map_err(|_| restart("Could not read the history; resume with after."))?;
            let complete = (rows.len() as i64) < FILL_CHUNK;
            if rows.is_empty() {
                return match upto {
                    Some(_) => Err(restart("Messages are missing; resume with after.")),
                    None => Ok(()),
                };
            }
            for m in rows {
                let p = self.last() + 1;
                if upto.is_some_and(|u| p > u) {
                    return Ok(());
                }
                let Some(sender) = senders.iter().find(|u| u.id == m.sender_id) else {
                    return Err(restart("A sender is missing; resume with after."));
                };
                let json: Frame = ServerEvent::chat_message(&m, sender).to_json().into();
                self.write(&json).await?;
                if let Scope::Conversation {
                    position,
                    anchor,
                    last_frame,
                    ..
                } = &mut self.scope
                {
                    *position = p;
                    *anchor = m.id.0;
                    *last_frame = None;
                }
            }
            if complete && upto.is_none() {
                return Ok(());
            }
        }
    }

    async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut chat_persistence::DbConnection) -> chat_persistence::QueryResult<T>
            + Send
            + 'static,
        T: Send + 'static,
    {
        Ok(self.state.db.run(f).await?)
    }

    async fn write(&mut self, json: &str) -> Result<(), Closing> {
        let text = self.session.text(json.to_owned());
        let written = bounded(self.write_timeout, &mut self.dropped, text).await;
        if written.as_ref().is_err_and(Option::is_some) {
            self.state.metrics.slow_writes.inc();
        }
        written
    }

    /// An event answering a frame; a failed write closes the socket once
    /// the frame is handled.
    async fn send_event(&mut self, event: &ServerEvent) {
        if let Err(close) = self.write(&event.to_json()).await {
            self.failed.get_or_insert(close);
        }
    }

    async fn error(&mut self, message: impl Into<String>, client_id: Option<String>) {
        self.send_event(&ServerEvent::Error {
            message: message.into(),
            client_id,
        })
        .await;
    }

    /// `Err` (having answered with an `error` event) when the user sends
    /// frames of this kind faster than `rate_limits.frames_per_second`.
    async fn within_frame_rate(
        &mut self,
        kind: FrameKind,
        client_id: Option<String>,
    ) -> Result<(), ()> {
        match self.state.check_frame_rate(self.user.id, kind) {
            Ok(()) => Ok(()),
            Err(wait) => {
                self.error(error_message(&too_many(wait)), client_id).await;
                Err(())
            }
        }
    }

    async fn handle_frame(&mut self, text: &str) {
        let frame = ClientFrame::parse(text);
        if !self.inflight.sends.is_empty() && self.must_wait(&frame) {
            self.inflight.deferred = Some(frame);
            return;
        }
        self.handle_parsed(frame).await
    }

    /// Whether `frame` waits for the sends in flight to be answered, so
    /// that answers keep the order of the frames: a read, an invalid frame,
    /// and a send that cannot join them (another conversation, or stored on
    /// its own). Acks and typing do not wait (coalesced or ephemeral).
    fn must_wait(&self, frame: &Result<ClientFrame, ClientEventError>) -> bool {
        let Ok(frame) = frame else {
            return true;
        };
        match &frame.event {
            ClientEvent::Ack { .. } | ClientEvent::TypingIndicator { .. } => false,
            ClientEvent::MessageRead { .. } => true,
            ClientEvent::ChatMessage { attachment_ids, .. } => {
                let conversation = match &self.scope {
                    Scope::Conversation { conversation, .. } => {
                        Some(frame.conversation_id.unwrap_or(conversation.id))
                    }
                    Scope::Stream { .. } => frame.conversation_id,
                };
                let joins = conversation.is_some_and(|c| {
                    Some(c) == self.inflight.conversation
                        && self.state.writer.queues(c, !attachment_ids.is_empty())
                });
                self.inflight.exclusive || !joins
            }
        }
    }

    async fn handle_parsed(&mut self, frame: Result<ClientFrame, ClientEventError>) {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                if self
                    .within_frame_rate(FrameKind::Invalid, e.client_id.clone())
                    .await
                    .is_ok()
                {
                    self.error(e.message, e.client_id).await;
                }
                return;
            }
        };
        let kind = match &frame.event {
            // Limited with HTTP sends, by the message limit.
            ClientEvent::ChatMessage { .. } => None,
            ClientEvent::TypingIndicator { .. } => Some(FrameKind::Typing),
            ClientEvent::MessageRead { .. } => Some(FrameKind::Read),
            ClientEvent::Ack { .. } => Some(FrameKind::Ack),
        };
        if let Some(kind) = kind
            && self.within_frame_rate(kind, None).await.is_err()
        {
            return;
        }
        let echo = match &frame.event {
            ClientEvent::ChatMessage { client_id, .. } => {
                client_id.as_ref().map(|c| c.as_str().to_owned())
            }
            _ => None,
        };
        let conversation = match (&self.scope, frame.conversation_id) {
            (Scope::Conversation { conversation, .. }, None) => conversation.id,
            (Scope::Conversation { conversation, .. }, Some(named)) if named == conversation.id => {
                named
            }
            (Scope::Conversation { conversation, .. }, Some(_)) => {
                let message = format!(
                    "This socket carries conversation {}; use /ws/chat/ for others.",
                    conversation.id
                );
                return self.error(message, echo).await;
            }
            (Scope::Stream { .. }, Some(named)) => named,
            (Scope::Stream { .. }, None) => {
                return self.error("Missing field 'conversation_id'.", echo).await;
            }
        };
        match frame.event {
            ClientEvent::ChatMessage {
                content,
                client_id,
                attachment_ids,
            } => {
                self.on_chat_message(conversation, content, client_id, attachment_ids)
                    .await
            }
            ClientEvent::TypingIndicator { is_typing } => {
                self.on_typing(conversation, is_typing).await
            }
            ClientEvent::MessageRead { message_ids } => {
                self.on_message_read(conversation, message_ids).await
            }
            ClientEvent::Ack { message_id } => self.on_ack(conversation, message_id).await,
        }
    }

    async fn on_chat_message(
        &mut self,
        conversation: ConversationId,
        content: MessageContent,
        client_id: Option<ClientId>,
        attachments: Vec<chat_domain::AttachmentId>,
    ) {
        let echo = client_id.as_ref().map(|c| c.as_str().to_owned());
        let new = NewMessage {
            conversation,
            content,
            client_id,
            attachments,
        };
        // Alone (SQLite, or with files): nothing else is read until it is
        // answered, so it is stored after what came before and before
        // what comes after. Otherwise later sends join it.
        let exclusive = !chat::pipelines(self.state, &new);
        let taken = chat::take_message(self.state, &self.user, new).await;
        let previous = self.inflight.published.take();
        let (done, published) = tokio::sync::oneshot::channel();
        let answer = actix_web::rt::spawn(
            async move {
                let stored = match taken {
                    Ok(taken) => taken.stored().await,
                    Err(e) => Err(e),
                };
                if let Some(previous) = previous {
                    // Gone (its task failed) counts as published.
                    let _ = previous.await;
                }
                let sent = match stored {
                    Ok(stored) => stored.publish().await,
                    Err(e) => Err(e),
                };
                let _ = done.send(());
                sent
            }
            .instrument(tracing::Span::current()),
        );
        self.inflight.conversation = Some(conversation);
        self.inflight.exclusive = exclusive;
        self.inflight.published = Some(published);
        self.inflight.sends.push_back((answer, echo));
    }

    /// Answers the sends taken so far, in order, and handles the frame
    /// that waited for them.
    async fn settle(&mut self) {
        loop {
            while !self.inflight.sends.is_empty() {
                let answer = next_answer(&mut self.inflight.sends).await;
                self.answered(answer).await;
            }
            match self.inflight.deferred.take() {
                Some(frame) => Box::pin(self.handle_parsed(frame)).await,
                None => return,
            }
        }
    }

    /// Answers the oldest send, whose task has ended.
    async fn answered(
        &mut self,
        answer: Result<Result<Sent, ApiError>, actix_web::rt::task::JoinError>,
    ) {
        let Some((_, echo)) = self.inflight.sends.pop_front() else {
            return;
        };
        if self.inflight.sends.is_empty() {
            let deferred = self.inflight.deferred.take();
            self.inflight = Inflight {
                deferred,
                ..Inflight::default()
            };
        }
        let sent = answer
            .unwrap_or_else(|e| Err(ApiError::internal_because(format!("send task failed: {e}"))));
        self.answer(sent, echo).await;
    }

    /// What this socket hears of its own send.
    async fn answer(&mut self, sent: Result<Sent, ApiError>, echo: Option<String>) {
        match sent {
            // Everyone's sockets, this one included, get it from the hub.
            Ok(Sent::Stored(_)) => {}
            // A retry: only this socket hears of it again.
            Ok(Sent::Duplicate(m)) => {
                let event = ServerEvent::chat_message(&m, &self.user);
                self.send_event(&event).await
            }
            Err(e) => self.error(error_message(&e), echo).await,
        }
    }

    async fn on_typing(&mut self, id: ConversationId, is_typing: bool) {
        let conversation = match &self.scope {
            Scope::Conversation { conversation, .. } => conversation.clone(),
            Scope::Stream { .. } => match self.participant_of(id).await {
                Ok(c) => c,
                Err(e) => return self.error(error_message(&e), None).await,
            },
        };
        chat::typing(self.state, &self.user, &conversation, is_typing).await
    }

    /// The conversation if the user takes part in it (404 otherwise);
    /// remembers it, so typing does not cost a query per frame.
    async fn participant_of(&mut self, id: ConversationId) -> Result<Conversation, ApiError> {
        if let Scope::Stream { verified, .. } = &self.scope
            && let Some(known) = verified.iter().find(|c| c.id == id)
        {
            return Ok(known.clone());
        }
        let me = self.user.id;
        let conversation = self
            .db(move |c| conversations::find_for(c, id, me))
            .await
            .map_err(|e| match e.status() {
                StatusCode::NOT_FOUND => ApiError::not_found("Conversation not found."),
                _ => e,
            })?;
        if let Scope::Stream { verified, .. } = &mut self.scope {
            verified.push(conversation.clone());
        }
        Ok(conversation)
    }

    async fn on_ack(&mut self, conversation: ConversationId, message_id: MessageId) {
        let acks = &mut self.acks;
        let known = |list: &[(ConversationId, MessageId)]| {
            list.iter()
                .find(|(c, _)| *c == conversation)
                .map(|(_, m)| *m)
        };
        if known(&acks.stored).is_some_and(|m| m >= message_id)
            || known(&acks.pending).is_some_and(|m| m >= message_id)
        {
            return;
        }
        match acks.pending.iter_mut().find(|(c, _)| *c == conversation) {
            Some(entry) => entry.1 = message_id,
            None => acks.pending.push((conversation, message_id)),
        }
        let now = Instant::now();
        match acks.last {
            Some(last) if now < last + ACK_WINDOW => {
                acks.due.get_or_insert(last + ACK_WINDOW);
            }
            _ if acks.storing.is_some() => {
                acks.due.get_or_insert(now + ACK_WINDOW);
            }
            _ => self.start_storing_acks(),
        }
    }

    /// Starts storing the pending acks (one transaction per conversation,
    /// in the node's ack batches) beside the socket's loop.
    fn start_storing_acks(&mut self) {
        self.acks.due = None;
        self.acks.last = Some(Instant::now());
        let pending = std::mem::take(&mut self.acks.pending);
        if pending.is_empty() {
            return;
        }
        let (state, me) = (self.state.clone(), self.user.id);
        self.acks.storing = Some(actix_web::rt::spawn(
            async move {
                let mut stored = Vec::with_capacity(pending.len());
                for (conversation, up_to) in pending {
                    let done = delivery::mark_delivered(&state, me, conversation, up_to).await;
                    stored.push((conversation, up_to, done.map(|_| ())));
                }
                stored
            }
            .instrument(tracing::Span::current()),
        ));
    }

    /// Stores every ack taken so far, waiting for it (the socket is
    /// closing).
    async fn store_acks(&mut self) {
        if let Some(storing) = self.acks.storing.take() {
            self.acks_stored(storing.await).await;
        }
        self.start_storing_acks();
        if let Some(storing) = self.acks.storing.take() {
            self.acks_stored(storing.await).await;
        }
    }

    /// Remembers what was stored; an ack refused is answered with `error`.
    async fn acks_stored(&mut self, stored: Result<AckResults, actix_web::rt::task::JoinError>) {
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                let e = ApiError::internal_because(format!("ack task failed: {e}"));
                return self.error(error_message(&e), None).await;
            }
        };
        for (conversation, up_to, done) in stored {
            match done {
                Ok(()) => {
                    let stored = &mut self.acks.stored;
                    match stored.iter_mut().find(|(c, _)| *c == conversation) {
                        Some(entry) => entry.1 = entry.1.max(up_to),
                        None => stored.push((conversation, up_to)),
                    }
                }
                Err(e) => {
                    let e = match e.status() {
                        StatusCode::NOT_FOUND => {
                            ApiError::not_found("No such message in this conversation.")
                        }
                        _ => e,
                    };
                    self.error(error_message(&e), None).await;
                }
            }
        }
    }

    async fn on_message_read(&mut self, conversation: ConversationId, ids: Vec<MessageId>) {
        let selection = ReadSelection::Only(ids);
        if let Err(e) = chat::mark_read(self.state, self.user.id, conversation, selection).await {
            let e = match e.status() {
                StatusCode::NOT_FOUND => ApiError::not_found("Conversation not found."),
                _ => e,
            };
            self.error(error_message(&e), None).await;
        }
    }
}

/// The `message_id` of a `chat_message` frame (read only to anchor a gap fill).
fn message_id_of(json: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Id {
        message_id: i64,
    }
    serde_json::from_str::<Id>(json).ok().map(|i| i.message_id)
}

/// The `error` event's text for a refused action: what was wrong, and that
/// nothing was stored; internals never.
fn error_message(e: &ApiError) -> String {
    match e.status() {
        StatusCode::TOO_MANY_REQUESTS => format!(
            "Rate limit exceeded; retry in {} s. Nothing was stored.",
            e.retry_after().unwrap_or(1)
        ),
        StatusCode::SERVICE_UNAVAILABLE => {
            "Service unavailable; nothing was stored. Try again.".into()
        }
        s if s.is_server_error() => "Internal error; nothing was stored.".into(),
        _ => e.detail().to_owned(),
    }
}
