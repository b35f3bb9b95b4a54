//! Which position the gateway may acknowledge while events are delivered out of order.
//!
//! Acks are cumulative (`AckPush{up_to}` says every event up to `up_to` is handled), but
//! with several POSTs in flight a later event may get its 2xx before an earlier one. The
//! tracker keeps the events of one subscription in the order they were received, and the
//! position it gives is the highest seq such that it and every event received before it
//! are delivered: a later event finished first waits for the earlier ones.
//!
//! Pure bookkeeping, no I/O: the loop in [`crate::feed`] tells it what was received and
//! what was delivered, and sends the acks it gives.

use std::collections::VecDeque;
use thiserror::Error;

/// The server sent an event whose seq is not above the previous one's (protocol.md,
/// "Push notifications": events come in increasing seq order).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the server sent event {seq} after event {previous}")]
pub struct OutOfOrder {
    pub seq: u64,
    pub previous: u64,
}

#[derive(Debug, Default)]
pub struct AckTracker {
    /// Events received and not yet acknowledged, in increasing seq order, each with
    /// whether it is delivered. At most the server's window (256) of them.
    pending: VecDeque<(u64, bool)>,
    /// The last seq received, so a repeat or a step back is refused even when `pending`
    /// is empty.
    last_received: Option<u64>,
}

impl AckTracker {
    /// Counts an event in, in the order the server sent it.
    pub fn received(&mut self, seq: u64) -> Result<(), OutOfOrder> {
        if let Some(previous) = self.last_received.filter(|&previous| previous >= seq) {
            return Err(OutOfOrder { seq, previous });
        }
        self.last_received = Some(seq);
        self.pending.push_back((seq, false));
        Ok(())
    }

    /// Marks a received event delivered; a seq not pending (already acknowledged, or
    /// never received) changes nothing.
    pub fn delivered(&mut self, seq: u64) {
        // Increasing seqs: a binary search, not a scan of up to 256 entries.
        if let Ok(index) = self.pending.binary_search_by_key(&seq, |&(pending, _)| pending) {
            self.pending[index].1 = true;
        }
    }

    /// The new position to acknowledge, if the run of delivered events at the front grew
    /// since the last call: its last seq. Each position is given once.
    pub fn advance(&mut self) -> Option<u64> {
        let mut up_to = None;
        while let Some(&(seq, true)) = self.pending.front() {
            up_to = Some(seq);
            self.pending.pop_front();
        }
        up_to
    }

    /// Events received and not yet acknowledged (delivered or not).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(seqs: &[u64]) -> AckTracker {
        let mut tracker = AckTracker::default();
        for &seq in seqs {
            tracker.received(seq).expect("increasing seqs");
        }
        tracker
    }

    #[test]
    fn in_order_deliveries_are_acked_one_by_one() {
        let mut acks = tracker(&[1, 2, 3]);
        assert_eq!(acks.advance(), None, "nothing delivered yet");
        for seq in 1..=3 {
            acks.delivered(seq);
            assert_eq!(acks.advance(), Some(seq));
            assert_eq!(acks.advance(), None, "each position is given once");
        }
        assert_eq!(acks.pending(), 0);
    }

    #[test]
    fn a_later_event_delivered_first_waits_for_every_earlier_one() {
        let mut acks = tracker(&[1, 2, 3, 4]);
        acks.delivered(3);
        acks.delivered(4);
        assert_eq!(acks.advance(), None, "1 and 2 are not delivered");
        acks.delivered(2);
        assert_eq!(acks.advance(), None, "1 is not delivered");
        acks.delivered(1);
        assert_eq!(acks.advance(), Some(4), "one ack for the whole run");
        assert_eq!(acks.pending(), 0);
    }

    #[test]
    fn the_ack_stops_at_the_first_undelivered_event() {
        let mut acks = tracker(&[1, 2, 3, 4, 5]);
        for seq in [1, 3, 4, 5] {
            acks.delivered(seq);
        }
        assert_eq!(acks.advance(), Some(1));
        assert_eq!(acks.advance(), None, "2 holds the rest back");
        acks.received(6).expect("later");
        acks.delivered(2);
        assert_eq!(acks.advance(), Some(5), "6 is not delivered");
        assert_eq!(acks.pending(), 1);
    }

    #[test]
    fn gaps_in_the_seqs_are_covered_by_the_ack() {
        // The server skips events (protocol.md): a gap is not a loss.
        let mut acks = tracker(&[3, 7, 20]);
        acks.delivered(20);
        acks.delivered(3);
        assert_eq!(acks.advance(), Some(3));
        acks.delivered(7);
        assert_eq!(acks.advance(), Some(20));
    }

    #[test]
    fn unknown_or_repeated_deliveries_change_nothing() {
        let mut acks = tracker(&[5, 6]);
        acks.delivered(4);
        acks.delivered(99);
        assert_eq!(acks.advance(), None);
        acks.delivered(5);
        acks.delivered(5);
        assert_eq!(acks.advance(), Some(5));
        acks.delivered(5);
        assert_eq!(acks.advance(), None, "an acknowledged event is not acknowledged again");
    }

    #[test]
    fn an_event_not_after_the_previous_one_is_refused() {
        let mut acks = tracker(&[4]);
        assert_eq!(acks.received(4), Err(OutOfOrder { seq: 4, previous: 4 }));
        assert_eq!(acks.received(2), Err(OutOfOrder { seq: 2, previous: 4 }));
        acks.delivered(4);
        assert_eq!(acks.advance(), Some(4));
        // Still refused once the earlier one is acknowledged and gone from the queue.
        assert_eq!(acks.received(3), Err(OutOfOrder { seq: 3, previous: 4 }));
        assert_eq!(acks.received(5), Ok(()));
    }
}
