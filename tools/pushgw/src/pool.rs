//! The delivery threads of one subscription: up to N events POSTed at once, each retried
//! on its own with its own backoff ([`crate::deliver`]). The loop in [`crate::feed`] hands
//! them events through one channel and takes what came of each through another; it alone
//! decides what to acknowledge.
//!
//! Threads rather than async: a POST is one blocking ureq call and N is small (at most the
//! server's window of 256), so a thread per slot keeps each event's retries a plain loop.
//! They are scoped threads: they borrow the webhook, and the subscription's loop cannot
//! return before every one of them has ended.

use crate::backoff::RetryPolicy;
use crate::deliver::{deliver, Delivery};
use crate::feed::FeedError;
use crate::stop::Stop;
use crate::webhook::Webhook;
use confab_proto::protocol::PushEvent;
use crossbeam_channel::{Receiver, Sender};
use log::debug;
use std::thread::Scope;

/// What came of one event handed to the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub seq: u64,
    /// [`Delivery::Stopped`] also for an event that was still waiting for a thread when
    /// stop was asked: it was never POSTed.
    pub delivery: Delivery,
}

/// The threads' two channels; dropping the pool closes the first, which ends the threads
/// once they have finished what they hold.
pub struct Pool {
    jobs: Sender<PushEvent>,
    finished: Receiver<Finished>,
}

impl Pool {
    /// Starts `size` threads in `scope`.
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        size: usize,
        webhook: &'env dyn Webhook,
        retry: RetryPolicy,
        stop: &Stop,
    ) -> std::io::Result<Pool> {
        // Both bounded by the pool's size: the loop keeps at most `size` events in the
        // pool, so neither send ever waits; the bound only says so.
        let (jobs, jobs_rx) = crossbeam_channel::bounded(size);
        let (finished_tx, finished) = crossbeam_channel::bounded(size);
        for slot in 0..size {
            let (jobs_rx, finished_tx, stop) = (jobs_rx.clone(), finished_tx.clone(), stop.clone());
            // A failed spawn drops the pool's senders here, so the threads already started end.
            std::thread::Builder::new()
                .name(format!("pushgw-post-{slot}"))
                .spawn_scoped(scope, move || post_events(&jobs_rx, &finished_tx, webhook, retry, &stop))?;
        }
        Ok(Pool { jobs, finished })
    }

    /// Hands `event` to the first free thread. The caller keeps at most the pool's size in
    /// it, so this does not wait.
    pub fn post(&self, event: PushEvent) -> Result<(), FeedError> {
        self.jobs.send(event).map_err(|_| threads_gone())
    }

    /// What came of an event, as soon as one ends.
    pub fn wait(&self) -> Result<Finished, FeedError> {
        self.finished.recv().map_err(|_| threads_gone())
    }

    /// For a wait beside the feed's events ([`crate::feed::Feed::next_event`]).
    pub fn finished(&self) -> &Receiver<Finished> {
        &self.finished
    }
}

/// Not expected while the pool is held (its threads end only when it is dropped, and a
/// panicking one ends the process: [`AbortOnPanic`]); an error all the same, not a panic.
fn threads_gone() -> FeedError {
    FeedError("the delivery threads stopped".into())
}

/// A thread that panicked would never report its event's end, and the loop would wait for
/// it forever; end the process instead (the panic message is printed first), as a panic
/// in the loop itself did when it made the POSTs, so a service manager restarts it.
struct AbortOnPanic;

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::process::abort();
        }
    }
}

/// One thread: events until the pool is dropped, each delivered (or stopped) before the
/// next is taken.
fn post_events(
    jobs: &Receiver<PushEvent>,
    finished: &Sender<Finished>,
    webhook: &dyn Webhook,
    retry: RetryPolicy,
    stop: &Stop,
) {
    let _abort = AbortOnPanic;
    for event in jobs.iter() {
        // After a stop the POSTs under way end, and none starts: an event not yet POSTed
        // is not acknowledged, so the next gateway gets it.
        let delivery = if stop.is_stopped() {
            debug!("event {} not posted: stopping", event.seq);
            Delivery::Stopped
        } else {
            deliver(&event, webhook, retry, stop)
        };
        if finished.send(Finished { seq: event.seq, delivery }).is_err() {
            return;
        }
    }
}
