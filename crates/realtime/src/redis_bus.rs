//! The Redis bus: relays events between nodes through Redis pub/sub.
//!
//! One publisher client and one subscriber client per `Realtime`. Tasks:
//! - the publisher drains an outbound queue in batches, each sent as one
//!   fred pipeline, so publishing never waits for a round-trip per event and
//!   keeps call order; after events were dropped it announces so on the
//!   control channel once Redis takes publishes again;
//! - the receiver turns subscriber messages into hub deliveries, skipping
//!   this node's own echoes, and turns other nodes' announcements and its
//!   own lag into resyncs;
//! - the subscription manager applies SUBSCRIBE/UNSUBSCRIBE sequentially
//!   from refcounts, re-subscribes every wanted channel after each
//!   (re)connection, and resyncs the sockets once that is confirmed;
//! - two watchers turn fred connection events into up/down logs.
//!
//! On a Redis Cluster ([`RedisTarget::Cluster`]) the clients are fred's
//! clustered ones and every channel is a *sharded* channel: events go out
//! with `SPUBLISH` and are heard with `SSUBSCRIBE`, so each event is handled
//! by the one shard that owns its channel's slot instead of being broadcast
//! to every shard (classic pub/sub in a cluster). Subscriptions are sent
//! one channel per command (each lands on its slot's primary; fred follows
//! `MOVED`), and a channel whose shard does not answer is retried later
//! without holding up the other shards. Besides reconnections, the manager
//! re-reads the slot map every few seconds: when a slot changed owner (a
//! failover, a resharding) the server drops the sharded subscriptions there
//! without closing the connection, so every channel is subscribed again and
//! every socket resynced, as after a reconnection.

use crate::envelope::{self, Channel};
use crate::health::{Health, Link};
use crate::hub::{self, Resync, SubCommand};
use crate::{Audience, Frame, RealtimeConfig, RealtimeError, Topic};
use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, Client, ClientLike, ClusterInterface, Config, EventInterface, PubsubInterface,
    ReconnectPolicy, Value,
};
use fred::types::Message;
use fred::types::config::{ClusterDiscoveryPolicy, Server, ServerConfig};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, timeout};
use tracing::{debug, error, info, warn};

/// Capacity of fred's pub/sub broadcast channel on the subscriber. fred's
/// default of 32 loses most of a burst; fred preallocates this for each of
/// its 8 event channels, so 65 536 would cost ~42 MB of RSS and 16 384 costs
/// ~10 MB. The receiver task only forwards to the hub, so it lags only if
/// starved for 16 384 messages; a lag is logged with its count.
const SUBSCRIBER_BROADCAST_CAPACITY: usize = 16_384;
/// Events waiting to be published (backpressure beyond this while Redis is up).
const OUTBOX_CAPACITY: usize = 16_384;
/// Most publishes sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Most subscription changes applied in one SUBSCRIBE/UNSUBSCRIBE round.
const MAX_SUB_BATCH: usize = 1024;
/// How often the manager retries subscriptions that failed (and the
/// publisher a failed announcement).
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// On a cluster, how long the manager waits after a reconnection event for
/// the other primaries' (fred reports one per connection), so that every
/// channel is subscribed again once, not once per primary.
const RECONNECT_SETTLE: Duration = Duration::from_millis(50);
/// How often an idle subscriber connection is pinged (so a dead connection
/// is noticed even without traffic).
const KEEPALIVE_EVERY_TICKS: u32 = 10;

/// A random id per `Realtime` instance, so a node recognizes its own echoes.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Where the bus runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RedisTarget<'a> {
    /// One Redis server (or a proxy), by URL: classic pub/sub.
    Single(&'a str),
    /// A Redis Cluster, by seed nodes (`host:port`): sharded pub/sub.
    Cluster(&'a [String]),
}

/// A Redis Cluster as one node sees it, for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// `cluster_state` from `CLUSTER INFO` (`ok` or `fail`), or
    /// `unknown` when no node answered.
    pub state: String,
    /// Primaries in this node's slot map.
    pub primaries: usize,
    /// Of those, how many answered a PING within the command timeout.
    pub reachable: usize,
}

/// Parses one `host:port` seed (`[v6]:port` too).
fn parse_seed(seed: &str) -> Result<Server, String> {
    let (host, port) = seed
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("{seed:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{seed:?} has no valid port"))?;
    if host.is_empty() {
        return Err(format!("{seed:?} has no host"));
    }
    Ok(Server::new(host, port))
}

/// Splits a comma-separated list of `host:port` seeds, each checked;
/// the error names the first bad one. Empty entries are refused too.
pub fn parse_cluster_nodes(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(|seed| parse_seed(seed).map(|_| seed.trim().to_owned()))
        .collect()
}

/// The fred configuration of a target.
fn fred_config(target: RedisTarget<'_>) -> Result<Config, RealtimeError> {
    match target {
        RedisTarget::Single(url) => {
            Config::from_url(url).map_err(|e| RealtimeError::Config(format!("redis url: {e}")))
        }
        RedisTarget::Cluster(seeds) => {
            let hosts = seeds
                .iter()
                .map(|s| parse_seed(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RealtimeError::Config(format!("redis cluster nodes: {e}")))?;
            if hosts.is_empty() {
                return Err(RealtimeError::Config(
                    "redis cluster nodes: none given".into(),
                ));
            }
            Ok(Config {
                server: ServerConfig::Clustered {
                    hosts,
                    // Seeds and the last slot map: a dead seed is not fatal.
                    policy: ClusterDiscoveryPolicy::UseCache,
                },
                ..Config::default()
            })
        }
    }
}

#[derive(Debug)]
pub(crate) struct RedisBus {
    node_id: String,
    prefix: String,
    /// On a cluster: sharded pub/sub, hash-tagged presence keys.
    sharded: bool,
    publisher: Client,
    subscriber: SubscriberClient,
    outbox: mpsc::Sender<(String, String)>,
    health: Arc<Health>,
    command_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
    connections: Vec<JoinHandle<Result<(), fred::error::Error>>>,
}

impl RedisBus {
    /// Events that never reached other nodes, since start.
    pub(crate) fn relay_failures(&self) -> u64 {
        self.health.dropped_total()
    }

    /// Payloads from Redis refused before reaching sockets, since start.
    pub(crate) fn events_refused(&self) -> u64 {
        self.health.refused_total()
    }

    /// Builds and connects the clients and spawns the bus tasks. Fails only
    /// on an invalid configuration: an unreachable server is retried in the
    /// background.
    pub(crate) async fn start(
        config: &RealtimeConfig,
        target: RedisTarget<'_>,
        hub: mpsc::Sender<hub::Command>,
    ) -> Result<(Self, mpsc::UnboundedSender<SubCommand>), RealtimeError> {
        let t = config.command_timeout;
        let sharded = matches!(target, RedisTarget::Cluster(_));
        let mut fred_config = fred_config(target)?;
        // Without this the first connection failure is final.
        fred_config.fail_fast = false;
        let policy = ReconnectPolicy::new_exponential(0, 100, 2_000, 2);

        let mut builder = Builder::from_config(fred_config);
        builder
            .set_policy(policy)
            .with_performance_config(|p| {
                p.default_command_timeout = t;
            })
            .with_connection_config(|c| {
                c.connection_timeout = t;
                c.internal_command_timeout = t;
                // A frame unanswered for this long means a dead connection: reconnect.
                c.unresponsive.max_timeout = Some((t * 2).max(Duration::from_secs(1)));
                c.unresponsive.interval = (t / 2).max(Duration::from_millis(100));
            });
        let subscriber = builder
            .clone()
            .with_performance_config(|p| {
                p.broadcast_channel_capacity = SUBSCRIBER_BROADCAST_CAPACITY;
            })
            .build_subscriber_client()
            .map_err(|e| RealtimeError::Config(format!("redis: {e}")))?;
        let publisher = builder
            .with_connection_config(|c| {
                // A retried PUBLISH could be delivered twice; at most once is
                // the pub/sub contract anyway.
                c.max_command_attempts = 1;
            })
            .build()
            .map_err(|e| RealtimeError::Config(format!("redis: {e}")))?;

        let health = Arc::new(Health::new());
        let node_id = random_node_id();
        let prefix = config.channel_prefix.clone();

        // Receivers are taken before connecting so no event is missed.
        let messages = subscriber.message_rx();
        let sub_reconnects = subscriber.reconnect_rx();
        let mut tasks = vec![
            spawn_watcher(
                Link::Subscriber,
                subscriber.error_rx(),
                subscriber.reconnect_rx(),
                health.clone(),
            ),
            spawn_watcher(
                Link::Publisher,
                publisher.error_rx(),
                publisher.reconnect_rx(),
                health.clone(),
            ),
        ];
        let connections = vec![publisher.connect(), subscriber.connect()];
        // Deliberately no `subscriber.manage_subscriptions()`: in fred 10.1 its
        // `resubscribe_all` sends PSUBSCRIBE even with no patterns tracked;
        // Redis answers that with an error, and as fred expects no reply to
        // (P)SUBSCRIBE it hands the error to the next command on the
        // connection (seen in the restart test: the confirming PING failed).
        // The `Manager` re-subscribes on every reconnect instead, which also
        // covers channels whose SUBSCRIBE failed during the outage (fred only
        // tracks successful ones).

        // Give a reachable server the chance to be connected before the first
        // join or publish; an unreachable one only delays startup by `t`.
        let connected = timeout(t, async {
            while !(publisher.is_connected() && subscriber.is_connected()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if connected.is_err() {
            for (link, is_connected) in [
                (Link::Publisher, publisher.is_connected()),
                (Link::Subscriber, subscriber.is_connected()),
            ] {
                if !is_connected {
                    health.mark_down(
                        link,
                        "startup",
                        format!("not connected after {t:?}; retrying in the background"),
                    );
                }
            }
        }

        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let announcement = (
            envelope::channel_name(&prefix, Channel::Control),
            envelope::encode_resync(&node_id),
        );
        tasks.push(tokio::spawn(run_publisher(
            Publisher {
                client: publisher.clone(),
                sharded,
                health: health.clone(),
                command_timeout: t,
            },
            outbox_rx,
            announcement,
        )));
        tasks.push(tokio::spawn(run_receiver(
            messages,
            hub.clone(),
            node_id.clone(),
            prefix.clone(),
            health.clone(),
        )));
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        let manager = Manager {
            client: subscriber.clone(),
            prefix: prefix.clone(),
            sharded,
            slot_map: None,
            timeout: t,
            health: health.clone(),
            hub,
            // Never released: other nodes' announcements must always arrive.
            wanted: HashMap::from([(Channel::Control, 1)]),
            subscribed: HashSet::new(),
            unconfirmed: HashSet::new(),
            connected_before: false,
            resync_when_subscribed: false,
        };
        tasks.push(tokio::spawn(manager.run(sub_rx, sub_reconnects)));

        Ok((
            Self {
                node_id,
                prefix,
                sharded,
                publisher,
                subscriber,
                outbox,
                health,
                command_timeout: t,
                tasks,
                connections,
            },
            sub_tx,
        ))
    }

    /// Queues the event for other nodes. Never waits for a Redis reply: with
    /// Redis up, a full queue (a burst faster than Redis takes it) makes the
    /// caller wait for room, at most `command_timeout`; with Redis down the
    /// event is dropped at once (pub/sub keeps nothing for later anyway).
    pub(crate) async fn publish(
        &self,
        topic: Topic,
        audience: Audience,
        position: Option<u64>,
        json: &str,
    ) {
        let payload = envelope::encode(&self.node_id, audience, position, json);
        let channel = envelope::channel_name(&self.prefix, Channel::Topic(topic));
        match self.outbox.try_send((channel, payload)) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                if !self.health.is_up() {
                    self.health.add_dropped(1);
                    return;
                }
                match timeout(self.command_timeout, self.outbox.send(item)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => error!("redis publisher task stopped"),
                    Err(_) => self.health.note_overflow(),
                }
            }
            Err(TrySendError::Closed(_)) => error!("redis publisher task stopped"),
        }
    }

    /// What presence needs: the publisher client, channel prefix, node id,
    /// and whether keys need hash tags (on a cluster).
    pub(crate) fn presence_client(&self) -> crate::presence::RedisHandle {
        crate::presence::RedisHandle {
            client: self.publisher.clone(),
            prefix: self.prefix.clone(),
            node: self.node_id.clone(),
            hash_tags: self.sharded,
        }
    }

    /// Whether the bus runs on a Redis Cluster.
    pub(crate) fn is_clustered(&self) -> bool {
        self.sharded
    }

    /// Readiness: a PING through the publisher (every primary's, on a
    /// cluster, and the cluster's own state), and the subscriber's state.
    pub(crate) async fn check(&self) -> (Result<(), String>, Option<ClusterStatus>) {
        let mut cluster = None;
        let result = async {
            if !self.publisher.is_connected() {
                return Err("redis: not connected".to_owned());
            }
            if self.sharded {
                let status = self.cluster_status().await;
                let problem = if status.state != "ok" {
                    Some(format!("redis: cluster_state is {}", status.state))
                } else if status.primaries == 0 || status.reachable < status.primaries {
                    Some(format!(
                        "redis: {} of {} cluster primaries answered",
                        status.reachable, status.primaries
                    ))
                } else {
                    None
                };
                cluster = Some(status);
                if let Some(problem) = problem {
                    return Err(problem);
                }
            } else {
                match timeout(self.command_timeout, self.publisher.ping::<Value>(None)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("redis: {e}")),
                    Err(_) => return Err("redis: PING timed out".into()),
                }
            }
            if !self.subscriber.is_connected() {
                return Err("redis: subscriber not connected".into());
            }
            Ok(())
        }
        .await;
        (result, cluster)
    }

    /// `CLUSTER INFO`'s state, and a PING to every primary of the slot map
    /// (concurrently, each bounded by the command timeout).
    async fn cluster_status(&self) -> ClusterStatus {
        let t = self.command_timeout;
        let primaries = self
            .publisher
            .cached_cluster_state()
            .map(|s| s.unique_primary_nodes())
            .unwrap_or_default();
        let info = timeout(t, self.publisher.cluster_info::<String>()).await;
        let state = match info {
            Ok(Ok(text)) => text
                .lines()
                .find_map(|l| l.trim().strip_prefix("cluster_state:"))
                .unwrap_or("unknown")
                .to_owned(),
            _ => "unknown".to_owned(),
        };
        let pings = primaries.iter().map(|server| {
            let node = self.publisher.with_cluster_node(server.clone());
            async move { matches!(timeout(t, node.ping::<Value>(None)).await, Ok(Ok(_))) }
        });
        let reachable = futures_util::future::join_all(pings)
            .await
            .into_iter()
            .filter(|up| *up)
            .count();
        ClusterStatus {
            state,
            primaries: primaries.len(),
            reachable,
        }
    }

    /// Marks Redis down after a join gave up waiting for its SUBSCRIBE.
    pub(crate) fn note_subscribe_timeout(&self) {
        self.health.mark_down(
            Link::Subscriber,
            "subscribe",
            "SUBSCRIBE not confirmed in time",
        );
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let publisher = self.publisher.clone();
        let subscriber = self.subscriber.clone();
        let connections = std::mem::take(&mut self.connections);
        let close = async move {
            let _ = timeout(Duration::from_secs(1), async {
                let _ = publisher.quit().await;
                let _ = subscriber.quit().await;
            })
            .await;
            // With unlimited reconnects a client that could not QUIT would
            // keep retrying forever.
            for c in connections {
                c.abort();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(close);
            }
            Err(_) => debug!("no runtime at drop; redis connections close with the process"),
        }
    }
}

/// Logs connection loss and recovery (once each) from fred's events.
fn spawn_watcher(
    link: Link,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
    health: Arc<Health>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // Biased: when both are pending the error is older, so the
            // reconnect must be applied last.
            tokio::select! {
                biased;
                e = errors.recv() => match e {
                    Ok((error, _)) => health.mark_down(link, "connection", error),
                    Err(RecvError::Lagged(_)) => health.mark_down(link, "connection", "errors"),
                    Err(RecvError::Closed) => break,
                },
                r = reconnects.recv() => match r {
                    Ok(_) | Err(RecvError::Lagged(_)) => health.mark_up(link),
                    Err(RecvError::Closed) => break,
                },
            }
        }
    })
}

/// Sends queued events in pipelines, one batch at a time (order preserved).
/// After events were dropped, publishes `announcement` (control channel,
/// payload) once Redis takes publishes again, so the other nodes resync the
/// sockets that missed them; retried until it goes through.
/// The publisher task's client and what it needs to report.
struct Publisher {
    client: Client,
    /// `SPUBLISH` (on a cluster) rather than `PUBLISH`.
    sharded: bool,
    health: Arc<Health>,
    command_timeout: Duration,
}

async fn run_publisher(
    publisher: Publisher,
    mut outbox: mpsc::Receiver<(String, String)>,
    announcement: (String, String),
) {
    let Publisher {
        ref client,
        sharded,
        ref health,
        command_timeout,
    } = publisher;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut retry = tokio::time::interval(RETRY_INTERVAL);
    retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let working = tokio::select! {
            n = outbox.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                send_batch(&publisher, &mut batch).await
            }
            _ = retry.tick() => client.is_connected(),
        };
        if working && health.take_announce() {
            let (channel, payload) = announcement.clone();
            let sent = timeout(command_timeout, async {
                if sharded {
                    client.spublish::<Value, _, _>(channel, payload).await
                } else {
                    client.publish::<Value, _, _>(channel, payload).await
                }
            })
            .await;
            match sent {
                Ok(Ok(_)) => {
                    health.mark_up(Link::Publisher);
                    info!("told the other nodes to resync after events were not relayed");
                }
                Ok(Err(e)) => {
                    health.request_announce();
                    health.mark_down(Link::Publisher, "announce", e);
                }
                Err(_) => {
                    health.request_announce();
                    health.mark_down(Link::Publisher, "announce", "timed out");
                }
            }
        }
    }
}

/// Publishes one batch as a pipeline; whether Redis took it. A batch that
/// fails is dropped and counted (pub/sub keeps nothing for later, so stale
/// events are not piled up while reconnecting).
async fn send_batch(publisher: &Publisher, batch: &mut Vec<(String, String)>) -> bool {
    let Publisher {
        ref client,
        sharded,
        ref health,
        command_timeout,
    } = *publisher;
    if !client.is_connected() {
        health.add_dropped(batch.len());
        health.mark_down(Link::Publisher, "publish", "not connected");
        batch.clear();
        return false;
    }
    let pipeline = client.pipeline();
    let n = batch.len();
    for (channel, payload) in batch.drain(..) {
        // Only queues in memory.
        let _: Result<Value, _> = if sharded {
            pipeline.spublish(channel, payload).await
        } else {
            pipeline.publish(channel, payload).await
        };
    }
    let sent = timeout(
        command_timeout + Duration::from_millis(100),
        pipeline.all::<Value>(),
    )
    .await;
    match sent {
        Ok(Ok(_)) => {
            health.mark_up(Link::Publisher);
            health.clear_overflow();
            return true;
        }
        Ok(Err(e)) => health.mark_down(Link::Publisher, "publish", e),
        Err(_) => health.mark_down(Link::Publisher, "publish", "timed out"),
    }
    health.add_dropped(n);
    false
}

/// What a payload read from Redis asks of the hub: `None` for nothing (this
/// node's own echo or announcement), `Err` for a payload refused (not
/// text, over [`envelope::MAX_PAYLOAD_BYTES`], malformed, or an event that
/// is no JSON object with a `type`).
fn command_for(
    message: &Message,
    channel: Channel,
    node_id: &str,
) -> Option<Result<hub::Command, &'static str>> {
    let Some(payload) = message.value.as_str() else {
        return Some(Err("not text"));
    };
    if payload.len() > envelope::MAX_PAYLOAD_BYTES {
        return Some(Err("too large"));
    }
    let command = match channel {
        Channel::Topic(topic) => {
            let Some(env) = envelope::decode(&payload) else {
                return Some(Err("malformed envelope"));
            };
            if env.node_id == node_id {
                return None; // already delivered locally
            }
            if !envelope::is_event_json(env.json) {
                return Some(Err("not an event"));
            }
            hub::Command::Deliver {
                topic,
                json: Frame::from(env.json),
                position: env.position,
                audience: env.audience,
            }
        }
        Channel::Control => match envelope::decode_resync(&payload) {
            Some(from) if from == node_id => return None,
            Some(from) => {
                info!(
                    node = from,
                    "another node failed to relay events; resyncing sockets"
                );
                hub::Command::Resync(Resync::All)
            }
            None => return Some(Err("malformed control payload")),
        },
    };
    Some(Ok(command))
}

/// Forwards other nodes' events to the hub; resyncs every local socket when
/// another node announces it failed to relay, or when this receiver lagged
/// (fred's broadcast channel overwrote messages before they were read).
async fn run_receiver(
    mut messages: broadcast::Receiver<Message>,
    hub: mpsc::Sender<hub::Command>,
    node_id: String,
    prefix: String,
    health: Arc<Health>,
) {
    let mut lost_total: u64 = 0;
    loop {
        let message = match messages.recv().await {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                lost_total += n;
                warn!(
                    lost = n,
                    lost_total,
                    "redis subscriber lagged; events from other nodes were lost; resyncing sockets"
                );
                if hub.send(hub::Command::Resync(Resync::All)).await.is_err() {
                    break;
                }
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        let Some(channel) = envelope::parse_channel(&prefix, &message.channel) else {
            continue;
        };
        // Anyone who can reach Redis can publish here: nothing goes to a
        // socket before it is checked, and what is refused is counted.
        let Some(command) = command_for(&message, channel, &node_id) else {
            continue;
        };
        let command = match command {
            Ok(command) => command,
            Err(why) => {
                health.add_refused();
                debug!(channel = %message.channel, why, "payload from redis refused");
                continue;
            }
        };
        if hub.send(command).await.is_err() {
            break;
        }
    }
}

/// Applies subscription changes one round at a time, so a SUBSCRIBE and a
/// later UNSUBSCRIBE of the same channel can never be reordered, and a join
/// whose SUBSCRIBE is in flight waits for it.
///
/// It also decides when sockets must resync because they may have missed
/// events while their channel was not subscribed: all of them after a
/// reconnection, those of a topic after a join returned before its
/// SUBSCRIBE was confirmed. Either resync is sent once the SUBSCRIBE is
/// confirmed, so every event after it reaches the socket.
struct Manager {
    client: SubscriberClient,
    prefix: String,
    /// Sharded channels (a cluster): `SSUBSCRIBE` one channel at a time.
    sharded: bool,
    /// On a cluster, the slot ranges and their primaries last seen: a
    /// change means the sharded subscriptions of the moved slots are gone.
    slot_map: Option<Vec<(u16, u16, Server)>>,
    timeout: Duration,
    health: Arc<Health>,
    hub: mpsc::Sender<hub::Command>,
    /// Local sockets per channel (the control channel is always wanted).
    wanted: HashMap<Channel, usize>,
    /// Channels believed subscribed on the server.
    subscribed: HashSet<Channel>,
    /// Topics a join returned for before their channel was subscribed.
    unconfirmed: HashSet<Topic>,
    /// Whether the subscriber has connected before: the first connection
    /// has nothing to resync (nothing was live yet).
    connected_before: bool,
    /// A reconnection happened: resync every socket once every wanted
    /// channel is subscribed again.
    resync_when_subscribed: bool,
}

impl Manager {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<SubCommand>,
        mut reconnects: broadcast::Receiver<fred::types::config::Server>,
    ) {
        let mut tick = tokio::time::interval(RETRY_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reconnects_open = true;
        let mut idle_ticks: u32 = 0;
        let mut buf = Vec::with_capacity(MAX_SUB_BATCH);
        let mut waiters: Vec<(Topic, oneshot::Sender<()>)> = Vec::new();
        loop {
            tokio::select! {
                n = commands.recv_many(&mut buf, MAX_SUB_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for command in buf.drain(..) {
                        match command {
                            SubCommand::Acquire(topic, ready) => {
                                *self.wanted.entry(Channel::Topic(topic)).or_insert(0) += 1;
                                waiters.push((topic, ready));
                            }
                            SubCommand::Release(topic) => {
                                let c = Channel::Topic(topic);
                                if let Some(count) = self.wanted.get_mut(&c) {
                                    *count -= 1;
                                    if *count == 0 {
                                        self.wanted.remove(&c);
                                    }
                                }
                            }
                        }
                    }
                    self.sync(false).await;
                    for (topic, ready) in waiters.drain(..) {
                        let confirmed = self.subscribed.contains(&Channel::Topic(topic));
                        // A failed send means the join gave up waiting and
                        // returned before this SUBSCRIBE was confirmed.
                        if ready.send(()).is_err() || !confirmed {
                            self.unconfirmed.insert(topic);
                        }
                    }
                    self.send_resyncs().await;
                    idle_ticks = 0;
                }
                r = reconnects.recv(), if reconnects_open => match r {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if self.sharded {
                            // fred reports each primary's new connection
                            // apart: subscribe everything once for them all.
                            tokio::time::sleep(RECONNECT_SETTLE).await;
                            while reconnects.try_recv().is_ok() {}
                        }
                        self.after_reconnect();
                        self.sync(true).await;
                        self.send_resyncs().await;
                    }
                    Err(RecvError::Closed) => reconnects_open = false,
                },
                _ = tick.tick() => {
                    if self.pending() {
                        self.sync(false).await;
                        self.send_resyncs().await;
                    } else {
                        idle_ticks += 1;
                        if idle_ticks >= KEEPALIVE_EVERY_TICKS {
                            idle_ticks = 0;
                            self.keepalive().await;
                            if self.slots_moved().await {
                                self.after_reconnect();
                                self.sync(true).await;
                                self.send_resyncs().await;
                            }
                        }
                    }
                }
            }
        }
    }

    fn pending(&self) -> bool {
        self.subscribed.len() != self.wanted.len()
            || self.wanted.keys().any(|c| !self.subscribed.contains(c))
    }

    /// A new connection has none of our subscriptions: every wanted channel
    /// is sent again (SUBSCRIBE is idempotent), and channels fred still
    /// tracks but nobody wants (their UNSUBSCRIBE failed during the outage)
    /// are dropped. Events published while the connection was down are
    /// lost, so a reconnection (not the first connection) resyncs every
    /// socket.
    fn after_reconnect(&mut self) {
        if self.connected_before {
            self.resync_when_subscribed = true;
        }
        self.connected_before = true;
        let tracked = if self.sharded {
            self.client.tracked_shard_channels()
        } else {
            self.client.tracked_channels()
        };
        self.subscribed = tracked
            .iter()
            .filter_map(|ch| envelope::parse_channel(&self.prefix, ch))
            .filter(|c| !self.wanted.contains_key(c))
            .collect();
    }

    /// Tells the hub which sockets to resync, now that their channels are
    /// subscribed: all after a reconnection once nothing is pending, else
    /// those of topics whose join returned unconfirmed.
    async fn send_resyncs(&mut self) {
        let mut resyncs = Vec::new();
        if self.resync_when_subscribed {
            if self.pending() {
                return;
            }
            self.resync_when_subscribed = false;
            self.unconfirmed.clear();
            resyncs.push(Resync::All);
        }
        self.unconfirmed.retain(|topic| {
            let c = Channel::Topic(*topic);
            if self.subscribed.contains(&c) {
                resyncs.push(Resync::Topic(*topic));
                false
            } else {
                // Forgotten once nobody listens to it any more.
                self.wanted.contains_key(&c)
            }
        });
        for scope in resyncs {
            if self.hub.send(hub::Command::Resync(scope)).await.is_err() {
                return;
            }
        }
    }

    /// Brings the server's subscriptions in line with `wanted`. Bounded by
    /// the command timeout; what fails is retried on the next tick.
    async fn sync(&mut self, force: bool) {
        let to_unsub: Vec<Channel> = self
            .subscribed
            .iter()
            .filter(|c| !self.wanted.contains_key(c))
            .copied()
            .collect();
        let to_sub: Vec<Channel> = self
            .wanted
            .keys()
            .filter(|c| !self.subscribed.contains(c))
            .copied()
            .collect();
        if to_unsub.is_empty() && to_sub.is_empty() {
            return;
        }
        // While disconnected, commands would only wait for the timeout: leave
        // them pending (joins return at once) and retry after reconnecting.
        if !force && !self.client.is_connected() {
            return;
        }
        if self.sharded {
            self.sync_sharded(to_unsub, to_sub).await;
            return;
        }
        let names = |channels: &[Channel]| -> Vec<String> {
            channels
                .iter()
                .map(|c| envelope::channel_name(&self.prefix, *c))
                .collect()
        };
        if !to_unsub.is_empty() {
            match timeout(self.timeout, self.client.unsubscribe(names(&to_unsub))).await {
                Ok(Ok(())) => {
                    for c in &to_unsub {
                        self.subscribed.remove(c);
                    }
                }
                Ok(Err(e)) => self.health.mark_down(Link::Subscriber, "unsubscribe", e),
                Err(_) => self
                    .health
                    .mark_down(Link::Subscriber, "unsubscribe", "timed out"),
            }
        }
        if !to_sub.is_empty() {
            let channels = names(&to_sub);
            let client = &self.client;
            // fred answers SUBSCRIBE once it is written; the PING answer on
            // the same connection proves Redis has processed it.
            let confirmed = timeout(self.timeout, async move {
                client.subscribe(channels).await?;
                client.ping::<Value>(None).await.map(|_| ())
            })
            .await;
            match confirmed {
                Ok(Ok(())) => {
                    self.subscribed.extend(to_sub);
                    self.health.mark_up(Link::Subscriber);
                }
                Ok(Err(e)) => self.health.mark_down(Link::Subscriber, "subscribe", e),
                Err(_) => self
                    .health
                    .mark_down(Link::Subscriber, "subscribe", "timed out"),
            }
        }
    }

    /// [`sync`](Self::sync) on a cluster: one `SSUBSCRIBE`/`SUNSUBSCRIBE`
    /// per channel (a multi-channel one must stay within one slot, and
    /// fred reads only the first of its replies), each bounded by the
    /// command timeout. Once a shard fails to answer, its other channels
    /// wait for the next round, so one dead shard delays only its own.
    async fn sync_sharded(&mut self, to_unsub: Vec<Channel>, to_sub: Vec<Channel>) {
        let routing = self.client.cached_cluster_state();
        let shard_of = |name: &str| -> Option<Server> {
            let slot = fred::util::redis_keyslot(name.as_bytes());
            routing.as_ref().and_then(|r| r.get_server(slot).cloned())
        };
        let mut failed: HashSet<Server> = HashSet::new();
        let mut all_ok = true;
        for (channel, subscribe) in to_unsub
            .into_iter()
            .map(|c| (c, false))
            .chain(to_sub.into_iter().map(|c| (c, true)))
        {
            let name = envelope::channel_name(&self.prefix, channel);
            let shard = shard_of(&name);
            if shard.as_ref().is_some_and(|s| failed.contains(s)) {
                all_ok = false;
                continue;
            }
            let what = if subscribe {
                "ssubscribe"
            } else {
                "sunsubscribe"
            };
            let done = if subscribe {
                timeout(self.timeout, self.client.ssubscribe(name)).await
            } else {
                timeout(self.timeout, self.client.sunsubscribe(name)).await
            };
            match done {
                Ok(Ok(())) => {
                    if subscribe {
                        self.subscribed.insert(channel);
                    } else {
                        self.subscribed.remove(&channel);
                    }
                }
                Ok(Err(e)) => {
                    all_ok = false;
                    self.health.mark_down(Link::Subscriber, what, e);
                    failed.extend(shard);
                }
                Err(_) => {
                    all_ok = false;
                    self.health.mark_down(Link::Subscriber, what, "timed out");
                    failed.extend(shard);
                }
            }
        }
        if all_ok {
            self.health.mark_up(Link::Subscriber);
        }
    }

    /// On a cluster: re-reads the slot map (`CLUSTER SLOTS` through fred)
    /// and tells whether a slot changed primary since the last look (the
    /// first look only records it).
    async fn slots_moved(&mut self) -> bool {
        if !self.sharded || !self.client.is_connected() {
            return false;
        }
        match timeout(self.timeout, self.client.sync_cluster()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "reading the cluster's slot map failed");
                return false;
            }
            Err(_) => return false,
        }
        let Some(routing) = self.client.cached_cluster_state() else {
            return false;
        };
        let map: Vec<(u16, u16, Server)> = routing
            .slots()
            .iter()
            .map(|r| (r.start, r.end, r.primary.clone()))
            .collect();
        match self.slot_map.replace(map) {
            Some(before) if Some(&before) != self.slot_map.as_ref() => {
                info!("cluster slots changed owner; subscribing again and resyncing sockets");
                true
            }
            _ => false,
        }
    }

    async fn keepalive(&self) {
        if !self.client.is_connected() {
            return;
        }
        if self.sharded {
            // A PING would reach one node only; the slot map check that
            // follows talks to the cluster.
            return;
        }
        match timeout(self.timeout, self.client.ping::<Value>(None)).await {
            Ok(Ok(_)) => self.health.mark_up(Link::Subscriber),
            Ok(Err(e)) => self.health.mark_down(Link::Subscriber, "keepalive", e),
            Err(_) => self
                .health
                .mark_down(Link::Subscriber, "keepalive", "PING timed out"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chat_domain::UserId;
    use fred::types::MessageKind;
    use fred::types::config::Server;

    const EVENT: &str = r#"{"type":"typing_indicator"}"#;

    fn message(channel: Channel, payload: &str) -> Message {
        Message {
            channel: envelope::channel_name("p:", channel).into(),
            value: Value::from(payload),
            kind: MessageKind::Message,
            server: Server::new("127.0.0.1", 6379),
        }
    }

    /// Lag and other nodes' announcements resync every socket; own echoes
    /// and own announcements are skipped; positions survive.
    #[tokio::test]
    async fn receiver_turns_lag_and_announcements_into_resyncs() {
        let topic = Channel::Topic(Topic::User(UserId(1)));
        let (tx, rx) = broadcast::channel(4);
        for position in 0..6 {
            let payload = envelope::encode("other", Audience::Everyone, Some(position), EVENT);
            tx.send(message(topic, &payload)).unwrap();
        }
        let (hub_tx, mut hub_rx) = mpsc::channel(16);
        let health = Arc::new(Health::new());
        let receiver = tokio::spawn(run_receiver(
            rx,
            hub_tx,
            "me".into(),
            "p:".into(),
            health.clone(),
        ));
        // The first two were overwritten before the receiver read them.
        let mut got = Vec::new();
        while got.len() < 5 {
            got.push(hub_rx.recv().await.unwrap());
        }
        let echo = envelope::encode("me", Audience::Everyone, Some(9), EVENT);
        tx.send(message(topic, &echo)).unwrap();
        tx.send(message(Channel::Control, &envelope::encode_resync("me")))
            .unwrap();
        tx.send(message(Channel::Control, &envelope::encode_resync("other")))
            .unwrap();
        drop(tx);
        receiver.await.unwrap();
        while let Ok(command) = hub_rx.try_recv() {
            got.push(command);
        }
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(matches!(got[0], hub::Command::Resync(Resync::All)));
        for (command, expected) in got[1..5].iter().zip(2..) {
            assert!(
                matches!(command, hub::Command::Deliver { topic: Topic::User(UserId(1)), position: Some(p), .. } if *p == expected),
                "{command:?}"
            );
        }
        assert!(matches!(got[5], hub::Command::Resync(Resync::All)));
    }
}
