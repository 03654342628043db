//! Redis up/down state, so an outage is logged once when it starts and once
//! when it ends instead of once per message.
//!
//! The publisher and subscriber connections are tracked separately: Redis
//! counts as down while either is, so the two reconnecting at slightly
//! different times does not make the log flap.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use tracing::{info, warn};

/// One of the two Redis connections of a node.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Link {
    Publisher = 1,
    Subscriber = 2,
}

#[derive(Debug)]
pub(crate) struct Health {
    /// Bit set of the links currently down.
    down: AtomicU8,
    overflowing: AtomicBool,
    /// Events not relayed to other nodes since the outage began.
    dropped: AtomicU64,
    /// Events never relayed, since start (for metrics).
    dropped_total: AtomicU64,
    /// Payloads from Redis refused before reaching sockets, since start.
    refused_total: AtomicU64,
    /// Events were dropped and other nodes have not been told yet (they
    /// resync their sockets when told).
    announce: AtomicBool,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            down: AtomicU8::new(0),
            overflowing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            announce: AtomicBool::new(false),
        }
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.down.load(Ordering::Acquire) == 0
    }

    /// Records a failure; logs only when Redis goes from up to down.
    pub(crate) fn mark_down(&self, link: Link, context: &str, reason: impl Display) {
        let before = self.down.fetch_or(link as u8, Ordering::AcqRel);
        if before == 0 {
            warn!(
                %reason,
                "redis unavailable ({context}); events reach this node's sockets only until it is back"
            );
        }
    }

    /// Records a success; logs only when Redis goes from down to up.
    pub(crate) fn mark_up(&self, link: Link) {
        let bit = link as u8;
        let before = self.down.fetch_and(!bit, Ordering::AcqRel);
        if before == bit {
            let dropped = self.dropped.swap(0, Ordering::AcqRel);
            info!(
                not_relayed = dropped,
                "redis available again; cross-node delivery resumed"
            );
        }
    }

    /// Payloads from Redis refused since start.
    pub(crate) fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// Counts one payload from Redis that was not let through.
    pub(crate) fn add_refused(&self) {
        self.refused_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts events that other nodes will never see.
    pub(crate) fn add_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        self.dropped_total.fetch_add(n as u64, Ordering::Relaxed);
        self.announce.store(true, Ordering::Release);
    }

    /// Whether drops are waiting to be announced; clears the flag, so the
    /// caller must [`request_announce`](Self::request_announce) again if
    /// announcing fails.
    pub(crate) fn take_announce(&self) -> bool {
        self.announce.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn request_announce(&self) {
        self.announce.store(true, Ordering::Release);
    }

    /// The outbound Redis queue stayed full for a whole command timeout
    /// although Redis counted as up; logged once per episode.
    pub(crate) fn note_overflow(&self) {
        self.add_dropped(1);
        if !self.overflowing.swap(true, Ordering::AcqRel) {
            warn!("redis publish queue full; events are not relayed to other nodes");
        }
    }

    pub(crate) fn clear_overflow(&self) {
        if self.overflowing.swap(false, Ordering::AcqRel) {
            info!("redis publish queue drained");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_only_when_both_links_are() {
        let h = Health::new();
        assert!(h.is_up());
        h.mark_down(Link::Publisher, "t", "x");
        h.mark_down(Link::Subscriber, "t", "x");
        h.mark_up(Link::Publisher);
        assert!(!h.is_up());
        h.mark_up(Link::Subscriber);
        assert!(h.is_up());
        h.mark_up(Link::Subscriber);
        assert!(h.is_up());
    }

    #[test]
    fn drops_are_announced_once() {
        let h = Health::new();
        assert!(!h.take_announce());
        h.add_dropped(3);
        h.note_overflow();
        assert!(h.take_announce());
        assert!(!h.take_announce());
        h.request_announce();
        assert!(h.take_announce());
        assert_eq!(h.dropped_total(), 4);
    }
}
