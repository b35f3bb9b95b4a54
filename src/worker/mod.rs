//! The worker pool. Each worker owns a partition of the users (by a hash of the username),
//! of the groups (by id) and of the rooms (by name): their sessions, positions, members and
//! deliveries. A direct message is handled by its recipient's worker, a group message by
//! its group's worker, so storing, numbering and pushing a message need no lock shared
//! with any other worker.
//!
//! A worker drains its queues in batches; all store writes of a batch are made durable by
//! one commit of the worker's partition (one commit-log sync: group commit) before any reply
//! or push of that batch leaves the worker.
//!
//! Each worker has two queues: a bounded one of [`Inbound`] fed by the event loop (the loop
//! stops reading from a client while it is full: backpressure), and an unbounded one of
//! internal commands for other workers and the hashing threads, which must never block on
//! each other.
//!
//! The files, from the thread down:
//!
//! - `thread`: the run loop and the dispatch of each command to an owner;
//! - the owners, one type per domain: `inbox` (`Inboxes`), `groups` (`Groups`, with
//!   `membership`), `support` (`Shops`: customer-support conversations, with `claims`),
//!   `rooms` (`Rooms`, and broadcast), `presence` (`Presence`), `services` (`Gathers`),
//!   `history` (`History`: pages of what the logs keep, with `deletion` and `retention`),
//!   plus `accounts`, `stats` and `read_state` (read marks and receipts, with `unread`;
//!   `read_budget` charges the requests that read many stored messages; `remote_members`
//!   the members of a group homed on other cluster nodes),
//!   which own nothing of their own;
//! - what they stand on: `context` (the `Ctx` each method gets: batch, partition, shared
//!   tables), `message` (the steps of every new stored message), `cursor` (the pure
//!   delivery state machine) and `device_cursors` (a reader's cursors, one per device),
//!   `device_readers` (what groups and support conversations do alike with those cursors),
//!   `devices` (which devices a user has, and the requests about them), `waiting` (budget
//!   wakes across inboxes and groups), `batch` (group commit), `quota`, `refusal`;
//! - `push`: push notifications (users' devices and mutes, and the push queue, an owner
//!   of its own on one worker);
//! - tables shared by all workers: `directory`, `budget`, `fanout`, `seats`, `dedup`,
//!   `lookalikes`, `open_groups`, and `push::PushBook`.

mod accounts;
mod backlog;
mod batch;
mod budget;
mod claims;
mod commands;
mod context;
mod cursor;
mod dedup;
mod deletion;
mod device_cursors;
mod device_readers;
mod devices;
mod directory;
mod fanout;
mod groups;
mod history;
mod inbox;
mod legacy_names;
mod lookalikes;
mod mailbox;
mod membership;
mod message;
mod open_groups;
mod presence;
mod push;
mod quota;
mod read_budget;
mod read_state;
mod refusal;
mod remote_members;
mod retention;
mod rooms;
mod seats;
mod services;
mod shared;
mod stats;
mod support;
mod support_delivery;
mod thread;
mod unread;
mod waiting;

pub use budget::SessionBudget;
pub use dedup::DedupIndex;
pub use directory::{ConnSeats, ConnectionWatchers, Directory, RoomList};
pub use fanout::FanoutBudgets;
pub use legacy_names::tidy_stored_names;
pub use lookalikes::Lookalikes;
pub use mailbox::Mailbox;
pub use open_groups::OpenGroups;
pub use push::PushBook;
pub use seats::GroupSeats;
pub use shared::Shared;

use commands::WorkerCmd;

use crate::route::{Inbound, Router};
use crossbeam_channel::{bounded, unbounded};
use std::thread::JoinHandle;

/// Starts one thread per worker; the router is the event loop's handle on them, the
/// mailbox the cluster bus's.
pub fn start(shared: Shared) -> (Router, Vec<JoinHandle<()>>, Mailbox) {
    let count = shared.config.workers.max(1);
    let (inbound, inbound_receivers): (Vec<_>, Vec<_>) =
        (0..count).map(|_| bounded::<Inbound>(shared.config.worker_queue)).unzip();
    let (internal, internal_receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| unbounded::<WorkerCmd>()).unzip();
    // Counts the worker threads still running: the bus lets go of the loop's channel once
    // none is (the loop stops when every sender to it is gone).
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(count));
    let mailbox = Mailbox {
        running: running.clone(),
        inbound: inbound.clone(),
        internal: internal.clone(),
        shared: shared.clone(),
    };
    let handles = inbound_receivers
        .into_iter()
        .zip(internal_receivers)
        .enumerate()
        .map(|(index, (rx, internal_rx))| {
            let worker = thread::Worker::new(index, shared.clone(), internal.clone());
            let running = running.clone();
            std::thread::Builder::new()
                .name(format!("confab-worker-{index}"))
                .spawn(move || {
                    worker.run(rx, internal_rx);
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
                .expect("spawning a worker thread")
        })
        .collect();
    // Stop goes through the unbounded internal queues, so it never blocks the loop.
    let stop = Box::new(move || {
        for sender in &internal {
            let _ = sender.send(WorkerCmd::Stop);
        }
    });
    (Router::new(inbound, stop), handles, mailbox)
}
