//! The gateway's loop over one subscription: take events from the feed, hand them to the
//! delivery threads ([`crate::pool`]), and ack what they delivered. [`Feed`] is what the
//! loop needs of the server connection, so the loop is tested with a feed of its own
//! (tests/) and runs with [`crate::link::Link`].
//!
//! Up to `concurrency` events are POSTed at once, so the webhook may see them out of
//! order. Acks stay in order: acks are cumulative (`AckPush{up_to}`), so the loop acks
//! only the highest seq such that it and every event received before it on this
//! subscription got the webhook's 2xx ([`crate::acks`]). With a concurrency of 1 each
//! event is POSTed, delivered and acked before the next is taken, as one loop would.
//!
//! The tokens a webhook's answer lists as dead ([`crate::dead_tokens`]) are sent to the
//! server (`DropPushToken`) as the event's delivery ends, so always before the ack that
//! covers the event (`Pumping::report` says why no more is done to make sure of them).

use crate::acks::AckTracker;
use crate::backoff::RetryPolicy;
use crate::config::MAX_CONCURRENCY;
use crate::dead_tokens::DeadTokens;
use crate::deliver::Delivery;
use crate::pool::{Finished, Pool};
use crate::stop::Stop;
use crate::webhook::Webhook;
use confab_proto::protocol::PushEvent;
use crossbeam_channel::Receiver;
use log::{debug, info};
use thiserror::Error;

/// What the feed gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Event(PushEvent),
    /// An event handed to the delivery threads ended (taken from the `finished` channel
    /// the feed waits on beside its own events).
    Finished(Finished),
    /// Stop was asked while waiting.
    Stopped,
}

/// The subscription ended; the gateway connects and subscribes again.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct FeedError(pub String);

/// The server's push feed, as the loop sees it.
pub trait Feed {
    /// The next event (in seq order); or what came of a delivery, if `finished` has one
    /// first (one wait for both, so an ack is not held back by a quiet feed, nor an event
    /// by a slow webhook); or [`Next::Stopped`] as soon as stop is asked.
    fn next_event(&mut self, stop: &Stop, finished: &Receiver<Finished>) -> Result<Next, FeedError>;
    /// Tells the server that every event up to and including `seq` is delivered. May
    /// return before the server has confirmed it.
    fn ack(&mut self, seq: u64) -> Result<(), FeedError>;
    /// Tells the server that the push service rejected `token` of `username` as no longer
    /// valid (`DropPushToken`), ahead of any ack asked for after it. May return before the
    /// server has answered; an error in answer does not end the subscription.
    fn drop_token(&mut self, username: &str, token: &str) -> Result<(), FeedError>;
}

/// The highest seq up to which this process saw the webhook take (2xx) every event,
/// across reconnects.
///
/// When a connection drops between a 2xx and the server's receipt of the ack, the next
/// subscription sends the event again; the mark lets the gateway ack it without a second
/// POST. The webhook must still deduplicate (a restart of the gateway forgets the mark).
///
/// It holds the acked run only, not each event delivered ahead of it: [`pump`] returns
/// only when every event it took has ended, and without a stop each has been delivered
/// by then, so the run reaches the last event taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveredMark(Option<u64>);

impl DeliveredMark {
    pub fn covers(&self, seq: u64) -> bool {
        self.0.is_some_and(|mark| seq <= mark)
    }

    /// Every event up to and including `seq` was delivered.
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

/// Delivers the feed's events, up to `concurrency` POSTs at once, until stop is asked
/// (Ok) or the feed fails. Either way it returns only after every POST it started has
/// ended: on a stop the POSTs under way finish and no new one starts; when the feed fails
/// the events already taken are still delivered, so the mark covers them and the next
/// subscription acks them without a second POST.
pub fn pump(
    feed: &mut dyn Feed,
    webhook: &dyn Webhook,
    retry: RetryPolicy,
    concurrency: usize,
    stop: &Stop,
    mark: &mut DeliveredMark,
) -> Result<(), FeedError> {
    let size = concurrency.clamp(1, MAX_CONCURRENCY);
    std::thread::scope(|scope| {
        let pool = Pool::start(scope, size, webhook, retry, stop)
            .map_err(|e| FeedError(format!("starting the delivery threads: {e}")))?;
        let mut pumping = Pumping { feed, acks: AckTracker::default(), mark, in_flight: 0 };
        let taken = pumping.take_events(&pool, size, stop);
        pumping.finish(&pool, taken)
        // The pool is dropped here, which ends its threads; the scope joins them.
    })
}

/// The loop's state over one subscription.
struct Pumping<'a> {
    feed: &'a mut dyn Feed,
    acks: AckTracker,
    mark: &'a mut DeliveredMark,
    /// Events handed to the pool whose end the loop has not taken yet.
    in_flight: usize,
}

impl Pumping<'_> {
    /// Takes events while the pool has room, and the ends of deliveries as they come,
    /// acking as the delivered run grows; until stop is asked or the feed fails.
    fn take_events(&mut self, pool: &Pool, size: usize, stop: &Stop) -> Result<(), FeedError> {
        loop {
            let next = if self.in_flight < size {
                self.feed.next_event(stop, pool.finished())?
            } else {
                // Every thread is busy: the feed's events wait (the server's window of
                // unacknowledged events bounds them) until one is free.
                Next::Finished(pool.wait()?)
            };
            let dead_tokens = match next {
                Next::Event(event) => {
                    self.received(event, pool)?;
                    None
                }
                Next::Finished(finished) => self.finished(finished),
                Next::Stopped => return Ok(()),
            };
            let up_to = self.advance();
            self.report(dead_tokens, up_to)?;
        }
    }

    /// Waits for every event still in the pool and acks what it delivers (dropping the
    /// dead tokens it reports), unless the feed has failed (`taken`), in which case only
    /// the mark remembers it.
    fn finish(&mut self, pool: &Pool, taken: Result<(), FeedError>) -> Result<(), FeedError> {
        let mut ended = taken;
        while self.in_flight > 0 {
            let dead_tokens = self.finished(pool.wait()?);
            let up_to = self.advance();
            if ended.is_ok() {
                ended = self.report(dead_tokens, up_to);
            }
        }
        ended
    }

    /// Sends the drops of a delivery that just ended, then the ack the delivered run
    /// allows, which may cover that event: on the one connection the drops reach the
    /// server first, so an event is never acknowledged (and gone for good) with its drops
    /// still to send.
    ///
    /// Nothing more is done to make sure a drop arrives: one is harmless to repeat (the
    /// server answers Done for a token it no longer has) and harmless to lose (the device
    /// is still listed, so the next event for its user names it and the webhook reports it
    /// again). So a drop is not retried, not remembered across reconnects (an event the
    /// mark acks without a POST has no answer to read), and lost with the connection if
    /// it fails first; and an error in answer to one is only logged ([`crate::link`]).
    fn report(&mut self, dead_tokens: Option<DeadTokens>, up_to: Option<u64>) -> Result<(), FeedError> {
        if let Some(DeadTokens { username, tokens }) = dead_tokens {
            info!(
                "the webhook reported {} dead push token(s) of {username}; asking the server to forget them",
                tokens.len()
            );
            for token in &tokens {
                self.feed.drop_token(&username, token)?;
            }
        }
        match up_to {
            Some(up_to) => self.feed.ack(up_to),
            None => Ok(()),
        }
    }

    fn received(&mut self, event: PushEvent, pool: &Pool) -> Result<(), FeedError> {
        self.acks.received(event.seq).map_err(|e| FeedError(e.to_string()))?;
        if self.mark.covers(event.seq) {
            debug!("event {} was delivered before the connection dropped; acking it again", event.seq);
            self.acks.delivered(event.seq);
        } else {
            pool.post(event)?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// Counts an event's delivery in; returns the dead tokens its answer listed.
    fn finished(&mut self, finished: Finished) -> Option<DeadTokens> {
        // Every Finished answers one post: the count cannot go below zero.
        self.in_flight -= 1;
        match finished.delivery {
            Delivery::Delivered { dead_tokens, .. } => {
                self.acks.delivered(finished.seq);
                dead_tokens
            }
            Delivery::Stopped => None,
        }
    }

    /// The new position to ack, if the delivered run grew; the mark takes it at once, so
    /// a connection lost before the ack reaches the server does not cost a second POST.
    fn advance(&mut self) -> Option<u64> {
        let up_to = self.acks.advance()?;
        self.mark.record(up_to);
        Some(up_to)
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
