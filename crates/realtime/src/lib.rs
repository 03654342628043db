//! WebSocket fan-out for the chat service.
//!
//! A [`Realtime`] owns a *hub* (one task holding the registry of this node's
//! sockets) and a *bus* that relays events between nodes: in-process when no
//! Redis is configured (a single node), Redis pub/sub otherwise. Socket tasks
//! [`join`](Realtime::join) a [`Topic`] (a conversation, or one user's
//! stream), read [`Outbound`] items from their bounded queue, and
//! [`leave`](Realtime::leave) when they end; handlers
//! [`publish`](Realtime::publish) events.
//!
//! Redis is best effort by design: while it is down, events still reach the
//! sockets of the node that published them, other nodes miss them, and
//! nothing blocks or fails. Whenever this node may have missed events, its
//! sockets get [`Outbound::Resync`] so the API can re-read them from the
//! database log; no event is missed silently.

mod envelope;
mod health;
mod hub;
mod presence;
mod redis_bus;

use chat_domain::{ConversationId, ServerEvent, UserId};
pub use presence::{Presence, PresenceChange};
pub use redis_bus::{ClusterStatus, parse_cluster_nodes};
use redis_bus::{RedisBus, RedisTarget};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error};

/// Counters the hub keeps; read through [`Realtime::stats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) open_sockets: AtomicU64,
    pub(crate) frames_delivered: AtomicU64,
    pub(crate) slow_sockets_dropped: AtomicU64,
    pub(crate) resyncs_sent: AtomicU64,
}

/// A snapshot of this node's fan-out counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealtimeStats {
    /// Sockets registered on this node now.
    pub open_sockets: u64,
    /// Frames handed to local sockets' queues since start.
    pub frames_delivered: u64,
    /// Sockets dropped because their queue was full.
    pub slow_sockets_dropped: u64,
    /// Events not relayed to other nodes (Redis down or saturated).
    pub relay_failures: u64,
    /// [`Outbound::Resync`] items handed to local sockets' queues since start.
    pub resyncs_sent: u64,
    /// Payloads read from Redis and refused (malformed, oversized, not an
    /// event object) before reaching any socket, since start.
    pub redis_events_refused: u64,
}

/// A pre-serialized JSON text frame, shared by every recipient so an event is
/// serialized once however many sockets receive it.
pub type Frame = Arc<str>;

/// What a socket listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The events of one conversation.
    Conversation(ConversationId),
    /// One user's stream (every durable event of that user).
    User(UserId),
}

/// Lets call sites written before user topics pass a conversation id.
impl From<ConversationId> for Topic {
    fn from(conversation: ConversationId) -> Self {
        Self::Conversation(conversation)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conversation(c) => write!(f, "conversation {c}"),
            Self::User(u) => write!(f, "user {u}"),
        }
    }
}

/// One item of a socket's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame to write to the client.
    Frame {
        /// The event's JSON, shared by every recipient.
        json: Frame,
        /// Where the event stands in the log the publisher numbered it in
        /// (a user's `seq`, a message's position in its conversation), so
        /// the socket can notice gaps; `None` for ephemeral events.
        position: Option<u64>,
    },
    /// Events for this socket may have been missed (the bus reconnected or
    /// lagged, another node failed to relay, or the API asked): re-read the
    /// log from the last position delivered.
    Resync,
}

/// Settings of [`Realtime::start`].
#[derive(Clone)]
pub struct RealtimeConfig {
    /// Redis URL; `None` (and no cluster nodes) runs a single node with an
    /// in-process bus.
    pub redis_url: Option<String>,
    /// Seed nodes (`host:port`) of a Redis Cluster, in place of
    /// `redis_url`: the bus then uses sharded pub/sub (`SSUBSCRIBE` /
    /// `SPUBLISH`) and presence keys carry hash tags. Setting both is a
    /// configuration error.
    pub redis_cluster_nodes: Vec<String>,
    /// Prepended to every Redis channel name, so deployments (and tests)
    /// sharing one Redis do not hear each other.
    pub channel_prefix: String,
    /// Capacity of each socket's outbound queue; a socket whose queue is full
    /// is dropped rather than letting memory grow behind a slow client.
    pub socket_queue: usize,
    /// Bound on every Redis command (fred's default is to wait forever).
    pub command_timeout: Duration,
    /// How long a user stays online after their last socket closed.
    pub presence_grace: Duration,
    /// A node's presence lease: a node silent for this long is taken for
    /// dead and its users go offline.
    pub presence_lease: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            channel_prefix: "chat:".into(),
            socket_queue: 256,
            command_timeout: Duration::from_secs(2),
            presence_grace: Duration::from_secs(10),
            presence_lease: Duration::from_secs(15),
        }
    }
}

impl fmt::Debug for RealtimeConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeConfig")
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_cluster_nodes", &self.redis_cluster_nodes)
            .field("channel_prefix", &self.channel_prefix)
            .field("socket_queue", &self.socket_queue)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Who receives a published event.
#[derive(Debug, Clone, Copy)]
pub enum Audience {
    /// Every socket of the topic, the sender's own included.
    Everyone,
    /// Every socket of the topic except those joined by this user, on every
    /// node (typing indicators are not echoed to the typist).
    ExceptUser(UserId),
}

/// Identifies one registered socket, to [`leave`](Realtime::leave) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId(pub u64);

/// What [`Realtime::join`] hands the socket task.
#[derive(Debug)]
pub struct Registration {
    /// Pass to [`Realtime::leave`] when the socket ends.
    pub socket: SocketId,
    /// Items for the client. `None` means the hub dropped this socket (its
    /// queue overflowed, or the hub stopped): close the WebSocket; the
    /// client reconnects and catches up from history.
    pub outbound: mpsc::Receiver<Outbound>,
    /// Resolves as soon as the hub drops this socket, before the queue is
    /// drained: a task waiting on a write to a slow client watches it.
    pub dropped: Dropped,
}

/// Resolves once the hub has dropped a socket (see [`Registration`]).
#[derive(Debug)]
pub struct Dropped {
    signal: Option<oneshot::Receiver<()>>,
}

impl Dropped {
    /// Waits until the hub drops the socket; at once if it has already.
    pub async fn wait(&mut self) {
        if let Some(signal) = self.signal.as_mut() {
            // Never sent: only the hub dropping its end resolves it.
            let _ = signal.await;
            self.signal = None;
        }
    }
}

/// Why a realtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The configuration cannot work (bad Redis URL, zero queue size).
    #[error("invalid realtime configuration: {0}")]
    Config(String),
    /// The hub task is gone (the `Realtime` is shutting down).
    #[error("realtime hub stopped")]
    HubStopped,
}

/// Handle to the hub and bus; cheap to clone, no global state (several
/// instances can live in one process, e.g. to simulate nodes in tests).
#[derive(Clone, Debug)]
pub struct Realtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stats: Arc<Stats>,
    hub: mpsc::Sender<hub::Command>,
    next_socket: AtomicU64,
    redis: Option<RedisBus>,
    socket_queue: usize,
    command_timeout: Duration,
    hub_task: JoinHandle<()>,
    presence: Presence,
    presence_changes: std::sync::Mutex<Option<mpsc::UnboundedReceiver<PresenceChange>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.hub_task.abort();
    }
}

impl Realtime {
    /// Spawns the hub (and with Redis, the clients and bus tasks). Must be
    /// called inside a tokio runtime. An unreachable Redis is not an error:
    /// the node starts after at most `command_timeout`, logs it, and
    /// reconnects in the background, so the server can start while Redis is
    /// down. Only an invalid configuration fails.
    pub async fn start(config: RealtimeConfig) -> Result<Realtime, RealtimeError> {
        if config.socket_queue == 0 {
            return Err(RealtimeError::Config(
                "socket_queue must be at least 1".into(),
            ));
        }
        if config.command_timeout.is_zero() {
            // fred reads zero as "no timeout", which hangs during outages.
            return Err(RealtimeError::Config(
                "command_timeout must be positive".into(),
            ));
        }
        let (hub_tx, hub_rx) = mpsc::channel(hub::HUB_QUEUE);
        let target = match (config.redis_url.as_deref(), &config.redis_cluster_nodes[..]) {
            (None, []) => None,
            (Some(url), []) => Some(RedisTarget::Single(url)),
            (None, nodes) => Some(RedisTarget::Cluster(nodes)),
            (Some(_), _) => {
                return Err(RealtimeError::Config(
                    "a Redis URL and Redis Cluster nodes are mutually exclusive".into(),
                ));
            }
        };
        let (subscriptions, redis) = match target {
            None => (hub::Subscriptions::InProcess, None),
            Some(target) => {
                let (bus, sub_tx) = RedisBus::start(&config, target, hub_tx.clone()).await?;
                (hub::Subscriptions::Redis(sub_tx), Some(bus))
            }
        };
        let stats = Arc::new(Stats::default());
        let hub_task = tokio::spawn(hub::run(hub_rx, subscriptions, stats.clone()));
        let (presence, presence_changes) = Presence::start(
            redis.as_ref().map(RedisBus::presence_client),
            config.presence_grace,
            config.presence_lease,
        );
        Ok(Realtime {
            inner: Arc::new(Inner {
                stats,
                hub: hub_tx,
                next_socket: AtomicU64::new(1),
                redis,
                socket_queue: config.socket_queue,
                command_timeout: config.command_timeout,
                hub_task,
                presence,
                presence_changes: std::sync::Mutex::new(Some(presence_changes)),
            }),
        })
    }

    /// Registers a socket of `user` on a topic. Returns once the topic's
    /// channel is subscribed on the bus, so any event published anywhere
    /// after this returns reaches the socket (which is what makes
    /// `connection_established` a safe "you are live" signal). If Redis is
    /// down it returns anyway, within about `command_timeout`: same-node
    /// delivery works at once, and once Redis is back and the subscription
    /// is confirmed the socket gets [`Outbound::Resync`] for what it missed.
    pub async fn join(
        &self,
        topic: impl Into<Topic>,
        user: UserId,
    ) -> Result<Registration, RealtimeError> {
        let topic = topic.into();
        let socket = SocketId(self.inner.next_socket.fetch_add(1, Ordering::Relaxed));
        // socket_queue >= 1 is checked in start().
        let (sender, outbound) = mpsc::channel(self.inner.socket_queue);
        let (alive, dropped) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        self.inner
            .hub
            .send(hub::Command::Join {
                topic,
                user,
                socket,
                sender,
                alive,
                ready: ready_tx,
            })
            .await
            .map_err(|_| RealtimeError::HubStopped)?;
        let wait = self.inner.command_timeout + Duration::from_millis(250);
        match tokio::time::timeout(wait, ready_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RealtimeError::HubStopped),
            Err(_) => {
                if let Some(redis) = &self.inner.redis {
                    redis.note_subscribe_timeout();
                }
                debug!(topic = %topic, "join returned before SUBSCRIBE was confirmed");
            }
        }
        Ok(Registration {
            socket,
            outbound,
            dropped: Dropped {
                signal: Some(dropped),
            },
        })
    }

    /// Deregisters a socket; also safe to call for a socket the hub already
    /// dropped, or twice. The last socket of a topic leaving unsubscribes
    /// its channel.
    pub fn leave(&self, topic: impl Into<Topic>, socket: SocketId) {
        let command = hub::Command::Leave {
            topic: topic.into(),
            socket,
        };
        match self.inner.hub.try_send(command) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(command)) => {
                // Not async: finish the send in the background rather than
                // losing the leave (which would keep the channel subscribed).
                let hub = self.inner.hub.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(async move {
                            let _ = hub.send(command).await;
                        });
                    }
                    Err(_) => error!("leave called outside a tokio runtime with a full hub queue"),
                }
            }
        }
    }

    /// Delivers an unpositioned event to every socket of the conversation
    /// on every node; see [`publish_frame`](Self::publish_frame).
    pub async fn publish(
        &self,
        conversation: ConversationId,
        event: &ServerEvent,
        audience: Audience,
    ) {
        self.publish_frame(conversation, event.to_json(), None, audience)
            .await;
    }

    /// Delivers pre-serialized event JSON, with its log position if it has
    /// one, to every socket of the topic on every node. The JSON is shared
    /// by every recipient; this node's sockets get it at once (not via a
    /// Redis echo), other nodes through Redis without waiting for a
    /// round-trip. Events published by one caller arrive in call order
    /// everywhere. Never fails, and never blocks because Redis is down:
    /// then only this node's sockets receive the event, and the other nodes'
    /// sockets get [`Outbound::Resync`] once this node can reach Redis
    /// again. With Redis up, a burst faster than Redis accepts is slowed
    /// down (bounded by `command_timeout`) rather than dropped.
    pub async fn publish_frame(
        &self,
        topic: impl Into<Topic>,
        json: impl Into<Frame>,
        position: Option<u64>,
        audience: Audience,
    ) {
        let topic = topic.into();
        let json = json.into();
        let command = hub::Command::Deliver {
            topic,
            json: Frame::clone(&json),
            position,
            audience,
        };
        if self.inner.hub.send(command).await.is_err() {
            error!("realtime hub stopped; event not delivered");
        }
        if let Some(redis) = &self.inner.redis {
            redis.publish(topic, audience, position, &json).await;
        }
    }

    /// Queues [`Outbound::Resync`] on every socket of this node (not of
    /// other nodes), e.g. when the API knows events went unpublished.
    pub async fn resync_all(&self) {
        let command = hub::Command::Resync(hub::Resync::All);
        if self.inner.hub.send(command).await.is_err() {
            error!("realtime hub stopped; resync not delivered");
        }
    }

    /// Readiness: `Ok` without Redis; with Redis, a PING bounded by the
    /// command timeout, `Err("redis: <reason>")` when it is down. On a
    /// cluster, the cluster must say `cluster_state:ok` and every primary
    /// answer a PING (see [`check_cluster`](Self::check_cluster)).
    pub async fn check(&self) -> Result<(), String> {
        self.check_cluster().await.0
    }

    /// [`check`](Self::check), with the cluster's state when the bus runs
    /// on a Redis Cluster (`None` otherwise).
    pub async fn check_cluster(&self) -> (Result<(), String>, Option<ClusterStatus>) {
        match &self.inner.redis {
            None => (Ok(()), None),
            Some(redis) => redis.check().await,
        }
    }

    /// This node's fan-out counters.
    pub fn stats(&self) -> RealtimeStats {
        let s = &self.inner.stats;
        RealtimeStats {
            open_sockets: s.open_sockets.load(Ordering::Relaxed),
            frames_delivered: s.frames_delivered.load(Ordering::Relaxed),
            slow_sockets_dropped: s.slow_sockets_dropped.load(Ordering::Relaxed),
            resyncs_sent: s.resyncs_sent.load(Ordering::Relaxed),
            relay_failures: self
                .inner
                .redis
                .as_ref()
                .map_or(0, RedisBus::relay_failures),
            redis_events_refused: self
                .inner
                .redis
                .as_ref()
                .map_or(0, RedisBus::events_refused),
        }
    }

    /// This node's presence bookkeeping.
    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    /// The presence changes this node decides, once (the API consumes them).
    pub fn take_presence_changes(&self) -> Option<mpsc::UnboundedReceiver<PresenceChange>> {
        self.inner
            .presence_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Whether the bus runs on a Redis Cluster (sharded pub/sub).
    pub fn is_clustered(&self) -> bool {
        self.inner
            .redis
            .as_ref()
            .is_some_and(RedisBus::is_clustered)
    }

    /// Whether Redis is configured (multi-node mode).
    pub fn is_distributed(&self) -> bool {
        self.inner.redis.is_some()
    }
}
