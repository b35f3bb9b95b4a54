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
//! Each worker has two queues: a bounded one fed by the event loop (the loop stops reading
//! from a client while it is full: backpressure), and an unbounded one for other workers
//! and the hashing threads, which must never block on each other.

mod accounts;
mod batch;
mod budget;
mod dedup;
mod directory;
mod fanout;
mod garbage;
mod groups;
mod handler;
mod inbox;
mod legacy_names;
mod lookalikes;
mod membership;
mod open_groups;
mod presence;
mod quota;
mod rooms;
mod seats;
mod services;
mod stats;
mod waiting;

pub use budget::SessionBudget;
pub use dedup::DedupIndex;
pub use directory::{ConnSeats, ConnectionWatchers, Directory, RoomList};
pub use fanout::FanoutBudgets;
pub use legacy_names::tidy_stored_names;
pub use lookalikes::Lookalikes;
pub use open_groups::OpenGroups;
pub use seats::GroupSeats;

use crate::auth::Hasher;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::ErrorCode;
use crate::route::{ConnId, Inbound, Outbox, OutputLedger, Router, SessionUser};
use crate::signup::SignupLimit;
use crate::store::Store;
use crate::throttle::LoginThrottle;
use crossbeam_channel::{bounded, unbounded};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What other workers and the hashing threads send a worker, on its internal queue (what
/// the event loop sends comes on the inbound queue, as [`Inbound`]).
pub enum WorkerCmd {
    /// A password hash or check finished.
    Hashed(accounts::HashOutcome),
    /// The user logged out on the connection (told by the user's worker): forget what is
    /// held for it here, as for [`Inbound::Closed`].
    LoggedOut { conn: ConnId, user: SessionUser },
    /// A member of a group this worker owns is online at `conn` (sent by the member's
    /// worker after login): deliver what the member has not acknowledged.
    MemberOnline { group_id: u64, username: Arc<str>, conn: ConnId },
    /// Create a group whose id the creator's worker allocated.
    /// The creator's seat is given back once the membership is written (or not).
    CreateGroup {
        conn: ConnId,
        request_id: u32,
        creator: SessionUser,
        group_id: u64,
        name: String,
        open: bool,
        seat: seats::Seat,
    },
    /// Part of a service's send: store and push to these users of this worker (all its
    /// online users when `users` is None), then report to the coordinating worker.
    ServiceDeliver {
        coordinator: usize,
        gather: u64,
        service: SessionUser,
        users: Option<Vec<String>>,
        message: services::Outgoing,
    },
    /// A service's send to a group this worker owns.
    ServiceGroup {
        coordinator: usize,
        gather: u64,
        service: SessionUser,
        group_id: u64,
        except: Option<String>,
        message: services::Outgoing,
    },
    /// One part of a service's send is done (and durable).
    Gathered { gather: u64, outcome: Result<services::Tally, (ErrorCode, String)> },
    /// Room was freed in the delivery budget of the session on `conn` (every waiting
    /// session when None): push what waits for it.
    Pump { conn: Option<ConnId> },
    /// Finish the queues, commit, and exit (shutdown).
    Stop,
}

/// What every worker shares.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub hasher: Hasher,
    pub outbox: Outbox,
    pub directory: Directory,
    /// Every username by what it looks like (display names may not impersonate one).
    pub lookalikes: Lookalikes,
    pub rooms: RoomList,
    /// The open groups of every worker, for `ListOpenGroups`.
    pub open_groups: OpenGroups,
    pub throttle: LoginThrottle,
    /// Registrations per address and overall.
    pub signups: SignupLimit,
    pub metrics: Arc<Metrics>,
    /// Service connections that asked for connection events.
    pub connection_watchers: ConnectionWatchers,
    /// One dedup index per worker, by index: each is only ever touched by its worker.
    pub dedup: Arc<Vec<DedupIndex>>,
    /// Group memberships being made, counted against `max_groups_per_user`.
    pub seats: GroupSeats,
    /// What each room and broadcast sender may still fan out.
    pub fanout: FanoutBudgets,
    /// Rooms each connection is in, against `max_rooms_per_conn`.
    pub room_seats: ConnSeats,
    /// Presence subscriptions each connection holds, against `max_subscriptions`.
    pub subscription_seats: ConnSeats,
    /// Bytes owed to each connection; every frame is charged before it is queued.
    pub ledger: Arc<OutputLedger>,
}

/// Starts one thread per worker; the router is the event loop's handle on them.
pub fn start(shared: Shared) -> (Router, Vec<JoinHandle<()>>) {
    let count = shared.config.workers.max(1);
    let (inbound, inbound_receivers): (Vec<_>, Vec<_>) =
        (0..count).map(|_| bounded::<Inbound>(shared.config.worker_queue)).unzip();
    let (internal, internal_receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| unbounded::<WorkerCmd>()).unzip();
    let handles = inbound_receivers
        .into_iter()
        .zip(internal_receivers)
        .enumerate()
        .map(|(index, (rx, internal_rx))| {
            let worker = handler::Worker::new(index, shared.clone(), internal.clone());
            std::thread::Builder::new()
                .name(format!("confab-worker-{index}"))
                .spawn(move || worker.run(rx, internal_rx))
                .expect("spawning a worker thread")
        })
        .collect();
    // Stop goes through the unbounded internal queues, so it never blocks the loop.
    let stop = Box::new(move || {
        for sender in &internal {
            let _ = sender.send(WorkerCmd::Stop);
        }
    });
    (Router::new(inbound, stop), handles)
}
