//! The gateway's loop over one subscription: take the next event, deliver it, ack it.
//! [`Feed`] is what the loop needs of the server connection, so the loop is tested with a
//! feed of its own (tests/) and runs with [`crate::link::Link`].
//!
//! Acks are cumulative (`AckPush{up_to}`) and sent only after the webhook's 2xx, one event
//! at a time in seq order: acking seq N says every event up to N was delivered.

use crate::backoff::RetryPolicy;
use crate::deliver::{deliver, Delivery};
use crate::stop::Stop;
use crate::webhook::Webhook;
use confab_proto::protocol::PushEvent;
use log::debug;
use thiserror::Error;

/// What the feed gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Event(PushEvent),
    /// Stop was asked while waiting.
    Stopped,
}

/// The subscription ended; the gateway connects and subscribes again.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct FeedError(pub String);

/// The server's push feed, as the loop sees it.
pub trait Feed {
    /// The next event (in seq order), or [`Next::Stopped`] as soon as stop is asked.
    fn next_event(&mut self, stop: &Stop) -> Result<Next, FeedError>;
    /// Tells the server that every event up to and including `seq` is delivered. May
    /// return before the server has confirmed it.
    fn ack(&mut self, seq: u64) -> Result<(), FeedError>;
}

/// The highest seq this process saw the webhook take (2xx), across reconnects.
///
/// When a connection drops between a 2xx and the server's receipt of the ack, the next
/// subscription sends the event again; the mark lets the gateway ack it without a second
/// POST. The webhook must still deduplicate (a restart of the gateway forgets the mark).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveredMark(Option<u64>);

impl DeliveredMark {
    pub fn covers(&self, seq: u64) -> bool {
        self.0.is_some_and(|mark| seq <= mark)
    }

    pub fn record(&mut self, seq: u64) {
        self.0 = Some(self.0.map_or(seq, |mark| mark.max(seq)));
    }

    /// A queue whose last seq is below the mark is not the queue the mark was made on (a
    /// server started afresh numbers from 1 again): forget the mark, or its events would
    /// be acked unsent.
    pub fn check_queue(&mut self, last_seq: u64) {
        if self.0.is_some_and(|mark| mark > last_seq) {
            log::warn!("the server's push queue ends at {last_seq}, before what this gateway delivered; a new queue?");
            self.0 = None;
        }
    }
}

/// Delivers the feed's events in order until stop is asked (Ok) or the feed fails.
pub fn pump(
    feed: &mut dyn Feed,
    webhook: &dyn Webhook,
    retry: RetryPolicy,
    stop: &Stop,
    mark: &mut DeliveredMark,
) -> Result<(), FeedError> {
    loop {
        let event = match feed.next_event(stop)? {
            Next::Event(event) => event,
            Next::Stopped => return Ok(()),
        };
        if mark.covers(event.seq) {
            debug!("event {} was delivered before the connection dropped; acking it again", event.seq);
        } else {
            match deliver(&event, webhook, retry, stop) {
                Delivery::Delivered { .. } => mark.record(event.seq),
                Delivery::Stopped => return Ok(()),
            }
        }
        feed.ack(event.seq)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_covers_what_was_delivered_and_forgets_a_new_queue() {
        let mut mark = DeliveredMark::default();
        assert!(!mark.covers(0) && !mark.covers(1));
        mark.record(5);
        mark.record(3);
        assert!(mark.covers(5) && mark.covers(1) && !mark.covers(6));
        mark.check_queue(9);
        assert!(mark.covers(5));
        mark.check_queue(4);
        assert!(!mark.covers(1));
    }
}
