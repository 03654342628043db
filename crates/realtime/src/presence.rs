//! Presence: a user is online while a socket of theirs is open on some
//! node, and offline once the last one has been closed for the grace
//! period (so a reconnect does not flicker).
//!
//! Cost does not grow with sockets: each node counts its own sockets per
//! user in memory and writes to Redis only when a user's count on this node
//! goes from 0 to 1 or (after the grace period) back to 0. Redis holds, per
//! user, a hash of the nodes that have the user (`pres:{user}`), and per
//! node a lease key refreshed by one command per tick whatever the number
//! of users. A node whose lease lapsed is reaped by another node, which
//! takes its users offline. A transition is decided atomically in Redis
//! (a script that changes the hash and returns its size), so exactly one
//! node reports each change. Without Redis the same happens in memory.
//!
//! On a Redis Cluster every key is a single-key command (or a script over
//! its one key), and the id in each name is a hash tag: `pres:{7}`,
//! `node:{a1}`, `node:{a1}:users`, `reap:{a1}`. So all of one user's keys
//! live on one shard, and so do all of one node's, while different users
//! and nodes spread over the shards. On a single Redis the names stay as
//! they were (`pres:7`, `node:a1`, …), so a rolling deploy keeps working.

use chat_domain::UserId;
use fred::clients::Client;
use fred::interfaces::{HashesInterface, KeysInterface, LuaInterface, SetsInterface};
use fred::types::{Expiration, SetOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::warn;

/// A user came online or went offline (decided once, on one node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// Whose presence changed.
    pub user: UserId,
    /// Whether they are online now.
    pub online: bool,
}

/// Adds this node to the user's hash; returns the hash's size.
const JOIN: &str = "redis.call('HSET', KEYS[1], ARGV[1], 1) return redis.call('HLEN', KEYS[1])";
/// Removes this node from the user's hash; returns the hash's size.
const LEAVE: &str = "redis.call('HDEL', KEYS[1], ARGV[1]) return redis.call('HLEN', KEYS[1])";

#[derive(Debug, Default)]
struct Local {
    /// Open sockets per user on this node.
    sockets: HashMap<UserId, usize>,
    /// Users whose last socket here closed; the number tells a later
    /// reconnect's timer apart from this one's.
    leaving: HashMap<UserId, u64>,
    next_leave: u64,
    /// A Redis write failed: re-assert every local user on the next tick.
    dirty: bool,
}

/// What presence is given of the Redis bus.
#[derive(Debug)]
pub(crate) struct RedisHandle {
    pub(crate) client: Client,
    /// The deployment's channel prefix, also the keys'.
    pub(crate) prefix: String,
    /// This node's id.
    pub(crate) node: String,
    /// Wrap ids in `{…}` (a cluster), so related keys share a slot.
    pub(crate) hash_tags: bool,
}

#[derive(Debug)]
struct RedisPresence {
    client: Client,
    prefix: String,
    node: String,
    hash_tags: bool,
    lease: Duration,
}

/// This node's presence bookkeeping; cheap to clone.
#[derive(Debug, Clone)]
pub struct Presence {
    local: Arc<Mutex<Local>>,
    redis: Option<Arc<RedisPresence>>,
    changes: mpsc::UnboundedSender<PresenceChange>,
    grace: Duration,
}

impl Presence {
    pub(crate) fn start(
        redis: Option<RedisHandle>,
        grace: Duration,
        lease: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<PresenceChange>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let redis = redis.map(|h| {
            Arc::new(RedisPresence {
                client: h.client,
                prefix: h.prefix,
                node: h.node,
                hash_tags: h.hash_tags,
                lease,
            })
        });
        let presence = Self {
            local: Arc::default(),
            redis,
            changes,
            grace,
        };
        if presence.redis.is_some() {
            tokio::spawn(presence.clone().keep_lease());
        }
        (presence, rx)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A socket of `user` opened on this node.
    pub async fn opened(&self, user: UserId) {
        let first_here = {
            let mut local = self.local();
            let count = local.sockets.entry(user).or_default();
            *count += 1;
            // A reconnect within the grace period: the user never left.
            let returning = local.leaving.remove(&user).is_some();
            *local.sockets.get(&user).unwrap_or(&0) == 1 && !returning
        };
        if !first_here {
            return;
        }
        match &self.redis {
            None => self.report(user, true),
            Some(r) => match r.script(JOIN, user).await {
                Ok(1) => self.report(user, true),
                Ok(_) => {}
                Err(e) => self.failed("join", e),
            },
        }
    }

    /// A socket of `user` closed on this node.
    pub fn closed(&self, user: UserId) {
        let ticket = {
            let mut local = self.local();
            let Some(count) = local.sockets.get_mut(&user) else {
                return;
            };
            *count = count.saturating_sub(1);
            if *count > 0 {
                return;
            }
            local.sockets.remove(&user);
            local.next_leave += 1;
            let ticket = local.next_leave;
            local.leaving.insert(user, ticket);
            ticket
        };
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            let still_gone = {
                let mut local = this.local();
                if local.leaving.get(&user) == Some(&ticket) {
                    local.leaving.remove(&user);
                    true
                } else {
                    false
                }
            };
            if still_gone {
                this.left(user).await;
            }
        });
    }

    async fn left(&self, user: UserId) {
        match &self.redis {
            None => self.report(user, false),
            Some(r) => match r.script(LEAVE, user).await {
                Ok(0) => self.report(user, false),
                Ok(_) => {}
                Err(e) => self.failed("leave", e),
            },
        }
    }

    /// Which of `users` are online (on any node, or in their grace period).
    pub async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, String> {
        let Some(r) = &self.redis else {
            let local = self.local();
            return Ok(users
                .iter()
                .map(|u| local.sockets.contains_key(u) || local.leaving.contains_key(u))
                .collect());
        };
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = r.client.pipeline();
        for u in users {
            let _: Result<(), _> = pipeline.hlen(r.user_key(*u)).await;
        }
        let sizes: Vec<i64> = pipeline.all().await.map_err(|e| e.to_string())?;
        Ok(sizes.into_iter().map(|n| n > 0).collect())
    }

    fn report(&self, user: UserId, online: bool) {
        let _ = self.changes.send(PresenceChange { user, online });
    }

    fn failed(&self, what: &str, e: fred::error::Error) {
        warn!(error = %e, what, "presence write failed; re-asserting on the next lease tick");
        self.local().dirty = true;
    }

    /// Refreshes this node's lease, re-asserts its users after a failed
    /// write, and reaps nodes whose lease lapsed.
    async fn keep_lease(self) {
        let Some(r) = self.redis.clone() else {
            return;
        };
        let mut tick = tokio::time::interval((r.lease / 3).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = r.refresh().await {
                warn!(error = %e, "presence lease refresh failed");
                self.local().dirty = true;
                continue;
            }
            let reassert: Vec<UserId> = {
                let mut local = self.local();
                if std::mem::take(&mut local.dirty) {
                    local
                        .sockets
                        .keys()
                        .chain(local.leaving.keys())
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                }
            };
            for user in reassert {
                match r.script(JOIN, user).await {
                    Ok(1) => self.report(user, true),
                    Ok(_) => {}
                    Err(e) => {
                        self.failed("re-assert", e);
                        break;
                    }
                }
            }
            match r.reap().await {
                Ok(offline) => {
                    for user in offline {
                        self.report(user, false);
                    }
                }
                Err(e) => warn!(error = %e, "presence reaping failed"),
            }
        }
    }
}

impl RedisPresence {
    /// `{prefix}{kind}:{id}{suffix}`, the id as a hash tag on a cluster.
    fn key(&self, kind: &str, id: impl std::fmt::Display, suffix: &str) -> String {
        if self.hash_tags {
            format!("{}{kind}:{{{id}}}{suffix}", self.prefix)
        } else {
            format!("{}{kind}:{id}{suffix}", self.prefix)
        }
    }

    fn user_key(&self, user: UserId) -> String {
        self.key("pres", user, "")
    }

    fn node_key(&self, node: &str) -> String {
        self.key("node", node, "")
    }

    fn node_users_key(&self, node: &str) -> String {
        self.key("node", node, ":users")
    }

    fn reap_key(&self, node: &str) -> String {
        self.key("reap", node, "")
    }

    fn nodes_key(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    async fn script(&self, script: &str, user: UserId) -> Result<i64, fred::error::Error> {
        let size: i64 = self
            .client
            .eval(script, vec![self.user_key(user)], vec![self.node.clone()])
            .await?;
        // Which users this node holds, for whoever reaps it.
        let users = self.node_users_key(&self.node);
        if script == JOIN {
            let _: i64 = self.client.sadd(users, user.0).await?;
        } else {
            let _: i64 = self.client.srem(users, user.0).await?;
        }
        Ok(size)
    }

    async fn refresh(&self) -> Result<(), fred::error::Error> {
        let ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let _: () = self
            .client
            .set(
                self.node_key(&self.node),
                1,
                Some(Expiration::PX(ms)),
                None,
                false,
            )
            .await?;
        let _: i64 = self
            .client
            .sadd(self.nodes_key(), self.node.clone())
            .await?;
        Ok(())
    }

    /// Takes the users of nodes whose lease lapsed out of presence; returns
    /// those now offline everywhere (one node reaps each dead node).
    async fn reap(&self) -> Result<Vec<UserId>, fred::error::Error> {
        let nodes: Vec<String> = self.client.smembers(self.nodes_key()).await?;
        let mut offline = Vec::new();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let alive: i64 = self.client.exists(self.node_key(&node)).await?;
            if alive > 0 {
                continue;
            }
            let ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
            let claimed: Option<String> = self
                .client
                .set(
                    self.reap_key(&node),
                    &self.node,
                    Some(Expiration::PX(ms)),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            if claimed.is_none() {
                continue;
            }
            let users: Vec<i64> = self.client.smembers(self.node_users_key(&node)).await?;
            for user in users.into_iter().map(UserId) {
                let size: i64 = self
                    .client
                    .eval(LEAVE, vec![self.user_key(user)], vec![node.clone()])
                    .await?;
                if size == 0 {
                    offline.push(user);
                }
            }
            let _: i64 = self.client.del(self.node_users_key(&node)).await?;
            let _: i64 = self.client.srem(self.nodes_key(), node).await?;
        }
        Ok(offline)
    }
}
