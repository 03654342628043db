//! The hub: one task that owns the registry of local sockets.
//!
//! Everything reaches it through one bounded command channel, so the
//! registry needs no lock and commands are applied in the order they were
//! sent (which is what keeps one sender's events in order).

use crate::{Audience, Frame, Outbound, SocketId, Stats, Topic};
use chat_domain::UserId;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
        topic: Topic,
        user: UserId,
        socket: SocketId,
        sender: mpsc::Sender<Outbound>,
        /// Dropped when the hub drops the socket, so its task learns of it
        /// even while it waits on a write.
        alive: oneshot::Sender<()>,
        /// Answered once the topic's channel is subscribed on the bus (or
        /// the bus gave up for now).
        ready: oneshot::Sender<()>,
    },
    Leave {
        topic: Topic,
        socket: SocketId,
    },
    Deliver {
        topic: Topic,
        json: Frame,
        position: Option<u64>,
        audience: Audience,
    },
    /// Queue [`Outbound::Resync`] on the sockets in scope.
    Resync(Resync),
}

/// Which sockets a [`Command::Resync`] reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resync {
    All,
    Topic(Topic),
}

/// What the hub tells the bus when a topic gains or loses a socket.
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
    Acquire(Topic, oneshot::Sender<()>),
    Release(Topic),
}

impl Subscriptions {
    fn acquire(&self, topic: Topic, ready: oneshot::Sender<()>) {
        match self {
            Self::InProcess => {
                let _ = ready.send(());
            }
            Self::Redis(tx) => {
                if let Err(e) = tx.send(SubCommand::Acquire(topic, ready)) {
                    // Manager gone (shutting down): do not keep the joiner waiting.
                    if let SubCommand::Acquire(_, ready) = e.0 {
                        let _ = ready.send(());
                    }
                }
            }
        }
    }

    fn release(&self, topic: Topic) {
        if let Self::Redis(tx) = self {
            let _ = tx.send(SubCommand::Release(topic));
        }
    }
}

/// A registered socket: its user, its queue, and the signal its task
/// watches (dropped with the entry).
#[derive(Debug)]
struct Entry {
    user: UserId,
    sender: mpsc::Sender<Outbound>,
    _alive: oneshot::Sender<()>,
}

type Sockets = HashMap<SocketId, Entry>;

/// How often sockets whose receiver is gone without a `leave` (a cancelled
/// join, a panicked socket task) are removed, so their topic does not stay
/// subscribed until its next event.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

struct Hub {
    registry: HashMap<Topic, Sockets>,
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
                topic,
                user,
                socket,
                sender,
                alive,
                ready,
            } => {
                let entry = Entry {
                    user,
                    sender,
                    _alive: alive,
                };
                let added = self
                    .registry
                    .entry(topic)
                    .or_default()
                    .insert(socket, entry)
                    .is_none();
                if added {
                    self.stats.open_sockets.fetch_add(1, Ordering::Relaxed);
                }
                self.subscriptions.acquire(topic, ready);
            }
            Command::Leave { topic, socket } => self.remove(&[(topic, socket)]),
            Command::Deliver {
                topic,
                json,
                position,
                audience,
            } => self.deliver(topic, Outbound::Frame { json, position }, audience),
            Command::Resync(scope) => self.resync(scope),
        }
    }

    fn deliver(&mut self, topic: Topic, frame: Outbound, audience: Audience) {
        let Some(sockets) = self.registry.get(&topic) else {
            return;
        };
        let recipients = sockets.iter().filter(|(_, entry)| match audience {
            Audience::Everyone => true,
            Audience::ExceptUser(excluded) => entry.user != excluded,
        });
        let gone = offer_all(
            &self.stats,
            recipients.map(|s| (topic, s)),
            &frame,
            &self.stats.frames_delivered,
        );
        self.remove(&gone);
    }

    fn resync(&mut self, scope: Resync) {
        let recipients = self
            .registry
            .iter()
            .filter(|(topic, _)| scope == Resync::All || scope == Resync::Topic(**topic))
            .flat_map(|(topic, sockets)| sockets.iter().map(|s| (*topic, s)));
        let gone = offer_all(
            &self.stats,
            recipients,
            &Outbound::Resync,
            &self.stats.resyncs_sent,
        );
        self.remove(&gone);
    }

    /// Removes sockets (unknown ones are ignored, which makes `leave`
    /// idempotent). Dropping a socket's sender makes its task's `recv()`
    /// return None.
    fn remove(&mut self, sockets: &[(Topic, SocketId)]) {
        for (topic, id) in sockets {
            let Some(registered) = self.registry.get_mut(topic) else {
                continue;
            };
            if registered.remove(id).is_some() {
                self.stats.open_sockets.fetch_sub(1, Ordering::Relaxed);
                self.subscriptions.release(*topic);
            }
            if registered.is_empty() {
                self.registry.remove(topic);
            }
        }
    }

    fn sweep(&mut self) {
        let closed: Vec<(Topic, SocketId)> = self
            .registry
            .iter()
            .flat_map(|(topic, sockets)| {
                sockets
                    .iter()
                    .filter(|(_, entry)| entry.sender.is_closed())
                    .map(|(id, _)| (*topic, *id))
            })
            .collect();
        for (_, socket) in &closed {
            debug!(socket = socket.0, "removing a socket that never left");
        }
        self.remove(&closed);
    }
}

/// Queues `item` on every recipient without waiting, counting successes in
/// `counter`; returns the sockets to remove: a full queue means a client too
/// slow to keep up (dropped rather than blocking the hub or growing memory),
/// a closed one a socket task that ended without `leave`.
fn offer_all<'a>(
    stats: &Stats,
    recipients: impl Iterator<Item = (Topic, (&'a SocketId, &'a Entry))>,
    item: &Outbound,
    counter: &AtomicU64,
) -> Vec<(Topic, SocketId)> {
    let mut gone = Vec::new();
    let mut sent = 0u64;
    for (topic, (id, Entry { user, sender, .. })) in recipients {
        match sender.try_send(item.clone()) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => {
                stats.slow_sockets_dropped.fetch_add(1, Ordering::Relaxed);
                warn!(
                    topic = %topic,
                    user = %user,
                    socket = id.0,
                    "socket outbound queue full; dropping the slow socket"
                );
                gone.push((topic, *id));
            }
            Err(TrySendError::Closed(_)) => {
                debug!(socket = id.0, "socket receiver gone; removing it");
                gone.push((topic, *id));
            }
        }
    }
    counter.fetch_add(sent, Ordering::Relaxed);
    gone
}
