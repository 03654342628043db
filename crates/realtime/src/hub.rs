//! The hub: one task that owns the registry of local sockets.
//!
//! Everything reaches it through one bounded command channel, so the
//! registry needs no lock and commands are applied in the order they were
//! sent (which is what keeps one sender's events in order).

use crate::{Audience, Frame, SocketId};
use chat_domain::{ConversationId, UserId};
use std::collections::HashMap;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Capacity of the hub's command channel.
pub(crate) const HUB_QUEUE: usize = 4096;

#[derive(Debug)]
pub(crate) enum Command {
    Join {
        conversation: ConversationId,
        user: UserId,
        socket: SocketId,
        sender: mpsc::Sender<Frame>,
        /// Answered once the conversation's channel is subscribed on the bus.
        ready: oneshot::Sender<()>,
    },
    Leave {
        conversation: ConversationId,
        socket: SocketId,
    },
    Deliver {
        conversation: ConversationId,
        frame: Frame,
        audience: Audience,
    },
}

/// What the hub tells the bus when a conversation gains or loses a socket.
#[derive(Debug)]
pub(crate) enum Subscriptions {
    /// Single node: nothing to subscribe to.
    InProcess,
    /// The Redis subscription manager (one `Acquire` per registered socket,
    /// one `Release` per removed socket).
    Redis(mpsc::UnboundedSender<SubCommand>),
}

#[derive(Debug)]
pub(crate) enum SubCommand {
    Acquire(ConversationId, oneshot::Sender<()>),
    Release(ConversationId),
}

impl Subscriptions {
    fn acquire(&self, conversation: ConversationId, ready: oneshot::Sender<()>) {
        match self {
            Self::InProcess => {
                let _ = ready.send(());
            }
            Self::Redis(tx) => {
                if let Err(e) = tx.send(SubCommand::Acquire(conversation, ready)) {
                    // Manager gone (shutting down): do not keep the joiner waiting.
                    if let SubCommand::Acquire(_, ready) = e.0 {
                        let _ = ready.send(());
                    }
                }
            }
        }
    }

    fn release(&self, conversation: ConversationId) {
        if let Self::Redis(tx) = self {
            let _ = tx.send(SubCommand::Release(conversation));
        }
    }
}

type Sockets = HashMap<SocketId, (UserId, mpsc::Sender<Frame>)>;

/// Runs until every command sender is gone.
pub(crate) async fn run(mut commands: mpsc::Receiver<Command>, subscriptions: Subscriptions) {
    let mut registry: HashMap<ConversationId, Sockets> = HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            Command::Join {
                conversation,
                user,
                socket,
                sender,
                ready,
            } => {
                registry
                    .entry(conversation)
                    .or_default()
                    .insert(socket, (user, sender));
                subscriptions.acquire(conversation, ready);
            }
            Command::Leave {
                conversation,
                socket,
            } => {
                if let Some(sockets) = registry.get_mut(&conversation)
                    && sockets.remove(&socket).is_some()
                {
                    subscriptions.release(conversation);
                    if sockets.is_empty() {
                        registry.remove(&conversation);
                    }
                }
            }
            Command::Deliver {
                conversation,
                frame,
                audience,
            } => {
                let Some(sockets) = registry.get_mut(&conversation) else {
                    continue;
                };
                let mut gone: Vec<SocketId> = Vec::new();
                for (id, (user, sender)) in sockets.iter() {
                    if let Audience::ExceptUser(excluded) = audience
                        && *user == excluded
                    {
                        continue;
                    }
                    match sender.try_send(Frame::clone(&frame)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            warn!(
                                conversation = %conversation,
                                user = %user,
                                socket = id.0,
                                "socket outbound queue full; dropping the slow socket"
                            );
                            gone.push(*id);
                        }
                        Err(TrySendError::Closed(_)) => {
                            debug!(socket = id.0, "socket receiver gone; removing it");
                            gone.push(*id);
                        }
                    }
                }
                for id in gone {
                    // Dropping the sender makes the socket task's `recv()` return None.
                    sockets.remove(&id);
                    subscriptions.release(conversation);
                }
                if sockets.is_empty() {
                    registry.remove(&conversation);
                }
            }
        }
    }
}
