//! Which nodes answer: every node publishes a heartbeat every [`BEAT`]; a node not heard
//! for [`SILENCE`] while this node's own bus connection is up is down. Logins for users
//! homed on a down node get `Unavailable` rather than a `Redirect` to a dead address, and
//! requests for it are refused at once rather than after the request timeout.
//!
//! While this node's bus connection is down nothing is known about the others: they count
//! as up (a client redirected to a live node is served there; one redirected to a dead
//! node finds out by itself), and requests to them are refused by the bus instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often a node says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// Silence after which a node counts as down: three beats, so one late beat on a busy
/// machine does not take a node down.
pub const SILENCE: Duration = Duration::from_secs(3);

/// Last heard times by node id, in ms since the process's clock origin (0: never).
pub struct Liveness {
    heard: Box<[AtomicU64]>,
    /// When this node's bus connection last came up (0 while it is down).
    connected_since: AtomicU64,
    connected: AtomicBool,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            heard: (0..256).map(|_| AtomicU64::new(0)).collect(),
            connected_since: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }
    }
}

impl Liveness {
    pub fn heard(&self, node: u8, now_ms: u64) {
        self.heard[usize::from(node)].store(now_ms, Ordering::Relaxed);
    }

    pub fn set_connected(&self, connected: bool, now_ms: u64) {
        self.connected.store(connected, Ordering::Relaxed);
        self.connected_since.store(if connected { now_ms } else { 0 }, Ordering::Relaxed);
    }

    /// Whether this node's bus connection is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether `node` is known to be down: the bus is up, has been for a while, and the
    /// node has not been heard for [`SILENCE`].
    pub fn is_down(&self, node: u8, now_ms: u64) -> bool {
        if !self.connected() {
            return false;
        }
        let silence = SILENCE.as_millis() as u64;
        let since = self.connected_since.load(Ordering::Relaxed);
        let heard = self.heard[usize::from(node)].load(Ordering::Relaxed).max(since);
        now_ms.saturating_sub(heard) > silence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_down_only_after_silence_on_a_live_bus() {
        let l = Liveness::default();
        assert!(!l.is_down(2, 100_000), "nothing is known without the bus");
        l.set_connected(true, 100_000);
        assert!(!l.is_down(2, 101_000), "not yet: the bus just came up");
        assert!(l.is_down(2, 103_001), "never heard since the bus came up");
        l.heard(2, 103_500);
        assert!(!l.is_down(2, 106_000));
        assert!(l.is_down(2, 106_501));
        l.set_connected(false, 107_000);
        assert!(!l.is_down(2, 200_000), "unknown again once the bus is down");
    }
}
