//! A session's delivery budget: the bytes of stored messages pushed to one connection and
//! not yet acknowledged, across all its conversations together.
//!
//! Each conversation's cursor already limits what it has outstanding, but a user in 100
//! groups with a backlog in each would be sent 100 windows at login, far past the
//! connection's output bound: cut as a slow consumer at every login, locked out for good
//! (and anyone may add anyone to a group). So all of a session's cursors draw on one
//! budget, shared by the workers that own them. A cursor that finds it spent waits; the
//! ack that frees room wakes the workers whose cursors wait (their bits in `waiting`), so
//! any backlog drains at any size, one window at a time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct SessionBudget {
    max: usize,
    in_flight: AtomicUsize,
    /// One bit per worker with a cursor waiting for room.
    waiting: AtomicU64,
}

impl SessionBudget {
    pub fn new(max: usize) -> Self {
        SessionBudget { max: max.max(1), in_flight: AtomicUsize::new(0), waiting: AtomicU64::new(0) }
    }

    /// Whether another push may go. One always may while anything is below the budget, so
    /// a single message larger than it still goes out.
    pub fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) < self.max
    }

    /// Bytes that may still go before the budget is spent.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.in_flight.load(Ordering::SeqCst))
    }

    pub fn pushed(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Gives back acknowledged (or abandoned) bytes.
    pub fn released(&self, bytes: usize) {
        let _ = self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| Some(b.saturating_sub(bytes)));
    }

    /// Records that `worker` has a cursor waiting. Returns whether there is room after all
    /// (freed between the caller's look and this), in which case it should go on now.
    pub fn wait(&self, worker: usize) -> bool {
        self.waiting.fetch_or(bit(worker), Ordering::SeqCst);
        self.has_room()
    }

    /// Whether some worker's cursor is waiting (a cursor that just got room should queue
    /// behind them, not take it all again).
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) != 0
    }

    /// The workers to wake, if there is room for them: their bits are cleared.
    pub fn wake(&self) -> Vec<usize> {
        if !self.has_room() {
            return Vec::new();
        }
        let waiting = self.waiting.swap(0, Ordering::SeqCst);
        (0..64).filter(|w| waiting & (1 << w) != 0).collect()
    }
}

/// Workers beyond 64 share bits; a spurious wake only costs a look.
fn bit(worker: usize) -> u64 {
    1 << (worker % 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_workers_are_woken_once_room_is_freed() {
        let budget = SessionBudget::new(100);
        budget.pushed(60);
        budget.pushed(60);
        assert!(!budget.has_room());
        assert!(!budget.wait(1));
        assert!(!budget.wait(3));
        assert!(budget.contended());
        assert!(budget.wake().is_empty(), "no room yet: nobody is woken");
        budget.released(60);
        assert_eq!(budget.wake(), vec![1, 3]);
        assert!(!budget.contended());
        assert!(budget.wake().is_empty());
    }

    #[test]
    fn a_waiter_that_raced_a_release_goes_on() {
        let budget = SessionBudget::new(100);
        budget.pushed(100);
        budget.released(100);
        assert!(budget.wait(0), "room was freed before it waited: it must not sleep");
    }
}
