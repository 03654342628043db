//! Presence as users see it: who may see whom, `presence` events on the
//! user streams of a user's connections (at most one per user per
//! second), and `last_seen`.

use crate::error::ApiError;
use crate::state::AppState;
use chat_domain::{ServerEvent, User, UserId};
use chat_persistence::{connections, users};
use chat_realtime::{Audience, PresenceChange, Topic};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most presence events of one user per this window.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// A user's presence as a viewer may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PresenceView {
    /// `online` or `offline`.
    #[schema(value_type = String, example = "online")]
    pub status: &'static str,
    /// When the user was last online; null while online or when never
    /// seen (or hidden).
    #[schema(required = true)]
    pub last_seen: Option<DateTime<Utc>>,
}

impl PresenceView {
    /// What a viewer sees of a user they are not connected to, or who
    /// does not share presence.
    pub const HIDDEN: Self = Self {
        status: "offline",
        last_seen: None,
    };

    /// `user` as a connected viewer sees them.
    pub fn of(user: &User, online: bool) -> Self {
        match (user.share_presence, online) {
            (false, _) => Self::HIDDEN,
            (true, true) => Self {
                status: "online",
                last_seen: None,
            },
            (true, false) => Self {
                status: "offline",
                last_seen: user.last_seen,
            },
        }
    }
}

/// Which of `users` are online; everyone offline when the store cannot be
/// reached (a list still renders while Redis is down).
pub async fn online_or_offline(state: &AppState, users: &[UserId]) -> Vec<bool> {
    match state.realtime.presence().online(users).await {
        Ok(online) => online,
        Err(e) => {
            tracing::warn!(error = %e, "presence lookup failed; showing users offline");
            vec![false; users.len()]
        }
    }
}

/// Which of `users` are online, or 503.
pub async fn online(state: &AppState, users: &[UserId]) -> Result<Vec<bool>, ApiError> {
    state.realtime.presence().online(users).await.map_err(|e| {
        tracing::error!(error = %e, "presence lookup failed");
        ApiError::unavailable()
    })
}

/// Sends `user`'s presence to the streams of everyone connected to them.
async fn announce(state: &AppState, user: &User, view: PresenceView) {
    let id = user.id;
    let partners = match state.db.run(move |c| connections::partners(c, id)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e.report(), "presence: connections not loaded");
            return;
        }
    };
    let json = ServerEvent::Presence {
        user_id: user.id,
        status: view.status.to_owned(),
        last_seen: view.last_seen,
    }
    .to_json();
    for partner in partners {
        state
            .realtime
            .publish_frame(Topic::User(partner), json.clone(), None, Audience::Everyone)
            .await;
    }
}

/// `share_presence` was switched: the user's connections see the change
/// at once (offline when hidden, the current status when shown again).
pub async fn sharing_changed(state: &AppState, user: &User) {
    let online = online_or_offline(state, &[user.id]).await;
    let online = online.first().copied().unwrap_or(false);
    // Hidden: offline with no last_seen; shown again: what is true now.
    announce(state, user, PresenceView::of(user, online)).await
}

enum Work {
    Change(PresenceChange),
    Due(UserId),
}

/// Consumes the presence changes this node decides: records `last_seen`
/// when a user goes offline and announces changes, at most one event per
/// user per second (a change inside the window is sent when it ends, if it
/// still is one).
pub fn spawn_announcer(state: AppState) {
    let Some(mut changes) = state.realtime.take_presence_changes() else {
        return;
    };
    let (work_tx, mut work) = mpsc::unbounded_channel::<Work>();
    let forward = work_tx.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            if forward.send(Work::Change(change)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        // Per user: when the last event went out and what it said.
        let mut sent: HashMap<UserId, (Instant, bool)> = HashMap::new();
        // Per user: the newest state not yet announced.
        let mut waiting: HashMap<UserId, bool> = HashMap::new();
        while let Some(item) = work.recv().await {
            let (user, online) = match item {
                Work::Change(c) => {
                    if !c.online {
                        let (id, now) = (c.user, chat_domain::now());
                        if let Err(e) = state
                            .db
                            .run(move |db| users::set_last_seen(db, id, now))
                            .await
                        {
                            tracing::warn!(error = %e.report(), "last_seen not recorded");
                        }
                    }
                    (c.user, c.online)
                }
                Work::Due(user) => match waiting.remove(&user) {
                    Some(online) => (user, online),
                    None => continue,
                },
            };
            if let Some((at, last)) = sent.get(&user).copied() {
                if at.elapsed() < DEBOUNCE {
                    if waiting.insert(user, online).is_none() {
                        let tx = work_tx.clone();
                        let wait = DEBOUNCE.saturating_sub(at.elapsed());
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let _ = tx.send(Work::Due(user));
                        });
                    }
                    continue;
                }
                if last == online {
                    continue;
                }
            }
            sent.insert(user, (Instant::now(), online));
            // Forget users quiet for long, so the map stays bounded.
            if sent.len() > 10_000 {
                sent.retain(|_, (at, _)| at.elapsed() < DEBOUNCE);
            }
            let id = user;
            match state.db.run(move |c| users::find(c, id)).await {
                Ok(u) if u.share_presence => {
                    announce(&state, &u, PresenceView::of(&u, online)).await
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.report(), "presence: user not loaded"),
            }
        }
    });
}
