//! Presence as users see it: who may see whom, `presence` events on the
//! user streams of a user's connections (at most one per user per
//! second), and `last_seen`.

use crate::error::ApiError;
use crate::state::AppState;
use chat_domain::{ServerEvent, User, UserId};
use chat_persistence::{connections, users};
use chat_realtime::{Audience, Frame, PresenceChange, Topic};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most presence events of one user per this window.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Changes the announcer takes at once: one database round trip for all.
const BATCH: usize = 256;

/// Presence publishes awaited together.
const PUBLISHES_IN_FLIGHT: usize = 64;

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

/// Sends each user's presence to the streams of everyone connected to
/// them: one statement for all their connections, the publishes in flight
/// together.
async fn announce(state: &AppState, views: Vec<(User, PresenceView)>) {
    if views.is_empty() {
        return;
    }
    let ids: Vec<UserId> = views.iter().map(|(u, _)| u.id).collect();
    let pairs = match state
        .db
        .run(move |c| connections::partners_of_many(c, &ids))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e.report(), "presence: connections not loaded");
            return;
        }
    };
    let frames: HashMap<UserId, Frame> = views
        .into_iter()
        .map(|(user, view)| {
            let json = ServerEvent::Presence {
                user_id: user.id,
                status: view.status.to_owned(),
                last_seen: view.last_seen,
            }
            .to_json();
            (user.id, Frame::from(json))
        })
        .collect();
    let publishes = pairs.into_iter().filter_map(|(user, partner)| {
        let frame = frames.get(&user)?.clone();
        Some(
            state
                .realtime
                .publish_frame(Topic::User(partner), frame, None, Audience::Everyone),
        )
    });
    futures_util::stream::iter(publishes)
        .buffer_unordered(PUBLISHES_IN_FLIGHT)
        .for_each(|()| async {})
        .await;
}

/// `share_presence` was switched: the user's connections see the change
/// at once (offline when hidden, the current status when shown again).
pub async fn sharing_changed(state: &AppState, user: &User) {
    let online = online_or_offline(state, &[user.id]).await;
    let online = online.first().copied().unwrap_or(false);
    // Hidden: offline with no last_seen; shown again: what is true now.
    announce(state, vec![(user.clone(), PresenceView::of(user, online))]).await
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
        let mut debounce = Debounce::default();
        let mut batch = Vec::with_capacity(BATCH);
        while work.recv_many(&mut batch, BATCH).await > 0 {
            let mut went_offline = Vec::new();
            let mut due = Vec::new();
            for item in batch.drain(..) {
                let (user, online) = match item {
                    Work::Change(c) => {
                        if !c.online {
                            went_offline.push(c.user);
                        }
                        (c.user, c.online)
                    }
                    Work::Due(user) => match debounce.waiting.remove(&user) {
                        Some(online) => (user, online),
                        None => continue,
                    },
                };
                match debounce.decide(user, online) {
                    Decision::Announce => due.push((user, online)),
                    Decision::Later(wait) => {
                        let tx = work_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let _ = tx.send(Work::Due(user));
                        });
                    }
                    Decision::Nothing => {}
                }
            }
            // last_seen first: an offline event carries it.
            let ids: Vec<UserId> = due.iter().map(|(u, _)| *u).collect();
            let now = chat_domain::now();
            let loaded = state
                .db
                .run(move |db| {
                    users::set_last_seen_many(db, &went_offline, now)?;
                    users::find_many(db, &ids)
                })
                .await;
            let found = match loaded {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e.report(), "presence: users not loaded");
                    continue;
                }
            };
            let online: HashMap<UserId, bool> = due.into_iter().collect();
            let views = found
                .into_iter()
                .filter(|u| u.share_presence)
                .filter_map(|u| {
                    let view = PresenceView::of(&u, *online.get(&u.id)?);
                    Some((u, view))
                })
                .collect();
            announce(&state, views).await;
        }
    });
}

/// What to do with a user's change now.
enum Decision {
    Announce,
    /// Inside the window: decide again after this long.
    Later(Duration),
    Nothing,
}

/// At most one event per user per [`DEBOUNCE`].
#[derive(Default)]
struct Debounce {
    /// Per user: when the last event went out and what it said.
    sent: HashMap<UserId, (Instant, bool)>,
    /// Per user: the newest state not yet announced.
    waiting: HashMap<UserId, bool>,
}

impl Debounce {
    fn decide(&mut self, user: UserId, online: bool) -> Decision {
        if let Some((at, last)) = self.sent.get(&user).copied() {
            if at.elapsed() < DEBOUNCE {
                return match self.waiting.insert(user, online) {
                    None => Decision::Later(DEBOUNCE.saturating_sub(at.elapsed())),
                    Some(_) => Decision::Nothing,
                };
            }
            if last == online {
                return Decision::Nothing;
            }
        }
        self.sent.insert(user, (Instant::now(), online));
        // Forget users quiet for long, so the map stays bounded.
        if self.sent.len() > 10_000 {
            self.sent.retain(|_, (at, _)| at.elapsed() < DEBOUNCE);
        }
        Decision::Announce
    }
}
