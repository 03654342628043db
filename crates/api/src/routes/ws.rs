//! `/ws/chat/{conversation_id}/`: one task per socket; its frames are
//! handled in order, so one sender's messages keep their order everywhere.

use crate::auth::{authenticate_with, bearer_token};
use crate::dto::chat_message_event;
use crate::error::ApiError;
use crate::pagination::query_pairs;
use crate::service::chat::{self, NewMessage, ReadSelection, Sent};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use chat_domain::{
    ClientEvent, ClientId, ConversationId, MessageContent, MessageId, ServerEvent, User,
};
use chat_persistence::{PersistenceError, conversations};
use chat_realtime::Registration;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Close codes after the upgrade (API.md).
const CLOSE_UNAUTHENTICATED: u16 = 4001;
const CLOSE_FORBIDDEN: u16 = 4003;
const CLOSE_NOT_FOUND: u16 = 4004;
/// The user has `rate_limits.max_sockets_per_user` sockets open already.
const CLOSE_TOO_MANY_SOCKETS: u16 = 4029;

/// The WebSocket route.
pub fn configure(r: &mut super::Router<'_>) {
    r.resource("/ws/chat/{id}/", |e| e.get(upgrade));
}

/// Open the conversation's WebSocket
///
/// Upgrades to a WebSocket carrying the conversation's live events. The
/// token goes in `?token=` or an `Authorization: Bearer` header; token and
/// membership failures close the socket after the upgrade (4001, 4003,
/// 4004). Frames, events and close codes are described at the top of this
/// document and in the `ClientEvent` and `ServerEvent` schemas.
#[utoipa::path(get, path = "/ws/chat/{conversation_id}/", tag = "websocket",
    operation_id = "ws_chat", security(("jwt" = []), ()),
    params(
        ("conversation_id" = i64, Path, description = "Conversation id."),
        ("token" = Option<String>, Query, description = "Access token (or use the header)."),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the socket is open; its first frame \
            is `connection_established`, or a close with 4001, 4003 or 4004."),
        (status = 400, description = "Not a valid WebSocket upgrade request.", body = ApiError),
    ))]
async fn upgrade(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let token = query_pairs(&req)
        .into_iter()
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v)
        .or_else(|| bearer_token(&req).map(str::to_owned));
    let conversation = req
        .match_info()
        .get("id")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0);
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let limit = state.settings.websocket.max_frame_bytes;
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    // The socket's task logs in the upgrade request's span (its request id).
    let task = run(
        state.get_ref().clone(),
        token,
        conversation.map(ConversationId),
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

/// Authenticates through the one path every route uses and checks
/// membership; the close reason on failure.
async fn admit(
    state: &AppState,
    token: Option<String>,
    conversation: Option<ConversationId>,
) -> Result<(User, ConversationId), Option<CloseReason>> {
    let token = token.ok_or_else(|| {
        close_reason(
            CLOSE_UNAUTHENTICATED,
            "Authentication credentials were not provided.",
        )
    })?;
    let found = authenticate_with(state, &token, move |c, _| match conversation {
        Some(id) => match conversations::find(c, id) {
            Ok(conv) => Ok(Some(conv)),
            Err(PersistenceError::NotFound) => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    })
    .await;
    match found {
        Ok((_, None)) => Err(close_reason(CLOSE_NOT_FOUND, "Conversation not found.")),
        Ok((user, Some(conv))) if conv.can_read(user.id) => Ok((user, conv.id)),
        Ok(_) => Err(close_reason(
            CLOSE_FORBIDDEN,
            "You are not a participant of this conversation.",
        )),
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            Err(close_reason(CLOSE_UNAUTHENTICATED, e.detail()))
        }
        Err(_) => Err(Some(CloseReason {
            code: CloseCode::Error,
            description: Some("Service unavailable.".into()),
        })),
    }
}

async fn run(
    state: AppState,
    token: Option<String>,
    conversation: Option<ConversationId>,
    session: Session,
    mut stream: AggregatedMessageStream,
) {
    let (user, conversation) = match admit(&state, token, conversation).await {
        Ok(admitted) => admitted,
        Err(reason) => {
            let _ = session.close(reason).await;
            return;
        }
    };
    // Held until the socket ends; frees the user's slot when dropped.
    let Some(_slot) = state.limits.open_socket(user.id) else {
        state.metrics.limited("sockets");
        let _ = session
            .close(close_reason(
                CLOSE_TOO_MANY_SOCKETS,
                "Too many open connections.",
            ))
            .await;
        return;
    };
    let Registration {
        socket,
        mut outbound,
    } = match state.realtime.join(conversation, user.id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "realtime join failed");
            let _ = session
                .close(Some(CloseReason {
                    code: CloseCode::Error,
                    description: None,
                }))
                .await;
            return;
        }
    };
    let mut socket_task = Socket {
        state: &state,
        user,
        conversation,
        session: session.clone(),
    };
    let close = socket_task.serve(&mut stream, &mut outbound).await;
    state.realtime.leave(conversation, socket);
    let _ = session.close(close).await;
}

struct Socket<'a> {
    state: &'a AppState,
    user: User,
    conversation: ConversationId,
    session: Session,
}

impl Socket<'_> {
    /// Runs until the client leaves, stops answering, or falls behind;
    /// returns the close reason to send.
    async fn serve(
        &mut self,
        stream: &mut AggregatedMessageStream,
        outbound: &mut tokio::sync::mpsc::Receiver<chat_realtime::Outbound>,
    ) -> Option<CloseReason> {
        let established = ServerEvent::established(self.conversation, self.user.id).to_json();
        if self.session.text(established).await.is_err() {
            return None;
        }
        let settings = &self.state.settings.websocket;
        let timeout = Duration::from_secs(settings.client_timeout_seconds);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(
            settings.heartbeat_interval_seconds.max(1),
        ));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                incoming = stream.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        Some(Ok(AggregatedMessage::Text(text))) => {
                            // Boxed: the frame handler's state lives only while
                            // a frame is handled, not in every idle socket.
                            Box::pin(self.handle_frame(&text)).await
                        }
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            self.send_event(&ServerEvent::Error {
                                message: "Binary frames are not supported; send JSON text.".into(),
                                client_id: None,
                            }).await;
                        }
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            if self.session.pong(&bytes).await.is_err() { return None; }
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Close(_))) | None => return None,
                        Some(Err(ProtocolError::Overflow)) => {
                            return Some(CloseReason { code: CloseCode::Size, description: Some("Frame too large.".into()) });
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "websocket protocol error");
                            return Some(CloseReason { code: CloseCode::Protocol, description: None });
                        }
                    }
                }
                frame = outbound.recv() => match frame {
                    Some(chat_realtime::Outbound::Frame { json, .. }) => {
                        if self.session.text(&*json).await.is_err() { return None; }
                    }
                    // No log to re-read here: the client catches up from history.
                    Some(chat_realtime::Outbound::Resync) => {}
                    None => {
                        return Some(CloseReason { code: CloseCode::Again, description: Some("Client too slow.".into()) });
                    }
                },
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > timeout {
                        return Some(CloseReason { code: CloseCode::Policy, description: Some("Heartbeat timeout.".into()) });
                    }
                    if self.session.ping(b"").await.is_err() { return None; }
                }
            }
        }
    }

    async fn send_event(&mut self, event: &ServerEvent) {
        let _ = self.session.text(event.to_json()).await;
    }

    async fn error(&mut self, message: impl Into<String>, client_id: Option<String>) {
        self.send_event(&ServerEvent::Error {
            message: message.into(),
            client_id,
        })
        .await;
    }

    async fn handle_frame(&mut self, text: &str) {
        match ClientEvent::parse(text) {
            Ok(ClientEvent::ChatMessage { content, client_id }) => {
                self.on_chat_message(content, client_id).await
            }
            Ok(ClientEvent::TypingIndicator { is_typing }) => {
                chat::typing(self.state, &self.user, self.conversation, is_typing).await
            }
            Ok(ClientEvent::MessageRead { message_ids }) => self.on_message_read(message_ids).await,
            Err(e) => self.error(e.message, e.client_id).await,
        }
    }

    async fn on_chat_message(&mut self, content: MessageContent, client_id: Option<ClientId>) {
        let echo = client_id.as_ref().map(|c| c.as_str().to_owned());
        let new = NewMessage {
            conversation: self.conversation,
            content,
            client_id,
        };
        match chat::send_message(self.state, &self.user, new).await {
            // Everyone's sockets, this one included, get it from the hub.
            Ok(Sent::Stored(_)) => {}
            // A retry: only this socket hears of it again.
            Ok(Sent::Duplicate(m)) => {
                let event = chat_message_event(&m, &self.user);
                self.send_event(&event).await
            }
            Err(e) => self.error(error_message(&e), echo).await,
        }
    }

    async fn on_message_read(&mut self, ids: Vec<MessageId>) {
        let selection = ReadSelection::Only(ids);
        if let Err(e) =
            chat::mark_read(self.state, self.user.id, self.conversation, selection).await
        {
            self.error(error_message(&e), None).await;
        }
    }
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
