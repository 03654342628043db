//! The hub: one task that owns the registry of local sockets.
//!
//! Everything reaches it through one bounded command channel, so the
//! registry needs no lock and commands are applied in the order they were
//! sent (which is what keeps one sender's events in order).

use crate::{Audience, Frame, SocketId, Stats};
use chat_domain::{ConversationId, UserId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
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

/// How often sockets whose receiver is gone without a `leave` (a cancelled
/// join, a panicked socket task) are removed, so their conversation does not
/// stay subscribed until its next event.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

struct Hub {
    registry: HashMap<ConversationId, Sockets>,
    subscriptions: Subscriptions,
    stats: Arc<Stats>,
}

/// Runs until every command sender is gone.
pub(crate) async fn run(
    mut commands: mpsc::Receiver<Command>,
    subscriptions: Subscriptions,
    stats: Arc<Stats>,
) {
    let mut hub = Hub {
        registry: HashMap::new(),
        subscriptions,
        stats,
    };
    let mut sweep = tokio::time::interval_at(Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(command) => hub.handle(command),
                None => break,
            },
            _ = sweep.tick() => hub.sweep(),
        }
    }
}

impl Hub {
    fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                conversation,
                user,
                socket,
                sender,
                ready,
            } => {
                let added = self
                    .registry
                    .entry(conversation)
                    .or_default()
                    .insert(socket, (user, sender))
                    .is_none();
                if added {
                    self.stats.open_sockets.fetch_add(1, Ordering::Relaxed);
                }
                self.subscriptions.acquire(conversation, ready);
            }
            Command::Leave {
                conversation,
                socket,
            } => self.remove(conversation, &[socket]),
            Command::Deliver {
                conversation,
                frame,
                audience,
            } => self.deliver(conversation, &frame, audience),
        }
    }

    fn deliver(&mut self, conversation: ConversationId, frame: &Frame, audience: Audience) {
        let Some(sockets) = self.registry.get(&conversation) else {
            return;
        };
        let mut gone: Vec<SocketId> = Vec::new();
        let mut delivered = 0u64;
        for (id, (user, sender)) in sockets {
            if let Audience::ExceptUser(excluded) = audience
                && *user == excluded
            {
                continue;
            }
            match sender.try_send(Frame::clone(frame)) {
                Ok(()) => delivered += 1,
                Err(TrySendError::Full(_)) => {
                    self.stats
                        .slow_sockets_dropped
                        .fetch_add(1, Ordering::Relaxed);
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
        self.stats
            .frames_delivered
            .fetch_add(delivered, Ordering::Relaxed);
        if !gone.is_empty() {
            self.remove(conversation, &gone);
        }
    }

    /// Removes sockets (unknown ones are ignored, which makes `leave`
    /// idempotent). Dropping a socket's sender makes its task's `recv()`
    /// return None.
    fn remove(&mut self, conversation: ConversationId, ids: &[SocketId]) {
        let Some(sockets) = self.registry.get_mut(&conversation) else {
            return;
        };
        for id in ids {
            if sockets.remove(id).is_some() {
                self.stats.open_sockets.fetch_sub(1, Ordering::Relaxed);
                self.subscriptions.release(conversation);
            }
        }
        if sockets.is_empty() {
            self.registry.remove(&conversation);
        }
    }

    fn sweep(&mut self) {
        let closed: Vec<(ConversationId, SocketId)> = self
            .registry
            .iter()
            .flat_map(|(c, sockets)| {
                sockets
                    .iter()
                    .filter(|(_, (_, sender))| sender.is_closed())
                    .map(|(id, _)| (*c, *id))
            })
            .collect();
        for (conversation, socket) in closed {
            debug!(socket = socket.0, "removing a socket that never left");
            self.remove(conversation, &[socket]);
        }
    }
}
