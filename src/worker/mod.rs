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
pub use inbox::now_ms;
pub use legacy_names::tidy_stored_names;
pub use lookalikes::Lookalikes;
pub use open_groups::OpenGroups;
pub use seats::GroupSeats;

use crate::auth::Hasher;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::{ConnId, Outbox, OutputLedger, SessionUser};
use crate::protocol::{ErrorCode, Request};
use crate::signup::SignupLimit;
use crate::store::Store;
use crate::throttle::LoginThrottle;
use crossbeam_channel::{bounded, unbounded, Sender, TrySendError};
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the event loop, other workers and the hashing threads send a worker.
pub enum WorkerCmd {
    /// `peer` is the client's address, for throttling failed logins.
    Request { conn: ConnId, peer: IpAddr, user: Option<SessionUser>, request_id: u32, request: Request },
    /// A password hash or check finished.
    Hashed(accounts::HashOutcome),
    /// The connection's session ended (closed or logged out). Sent to every worker: each
    /// forgets what it holds for the connection (sessions, rooms, subscriptions).
    Closed { conn: ConnId, user: SessionUser, reason: &'static str },
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

/// Who owns a piece of state, and so which worker handles requests about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    User(&'a str),
    Group(u64),
    Room(&'a str),
    Service(&'a str),
}

impl Owner<'_> {
    pub fn partition(self, workers: usize) -> usize {
        let workers = workers.max(1) as u64;
        let hash = match self {
            Owner::User(name) => fnv1a(name.as_bytes(), 0),
            // A different seed, so a room and a user of the same name spread independently.
            Owner::Room(name) => fnv1a(name.as_bytes(), 0x52),
            Owner::Service(name) => fnv1a(name.as_bytes(), 0x53),
            Owner::Group(id) => id,
        };
        (hash % workers) as usize
    }
}

/// FNV-1a: stable across runs and platforms, cheap, good enough spread for partitioning.
fn fnv1a(bytes: &[u8], seed: u8) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in std::iter::once(&seed).chain(bytes) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

/// The loop's handle on the workers: which worker gets what, and a non-blocking send.
pub struct Pool {
    senders: Vec<Sender<WorkerCmd>>,
    internal: Vec<Sender<WorkerCmd>>,
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

impl Pool {
    pub fn start(shared: Shared) -> (Pool, Vec<JoinHandle<()>>) {
        let count = shared.config.workers.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..count).map(|_| bounded::<WorkerCmd>(shared.config.worker_queue)).unzip();
        let (internal, internal_receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| unbounded::<WorkerCmd>()).unzip();
        let handles = receivers
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
        (Pool { senders, internal }, handles)
    }

    /// The worker that owns `owner`.
    pub fn partition(&self, owner: Owner<'_>) -> usize {
        owner.partition(self.senders.len())
    }

    /// Hands a command to a worker without blocking; a full queue gives the command back
    /// so the loop can hold it and stop reading from that connection.
    // Handing the command back by value is the point; boxing it would cost an
    // allocation per request on the hot path.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, worker: usize, cmd: WorkerCmd) -> Result<(), WorkerCmd> {
        match self.senders[worker].try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(cmd)) => Err(cmd),
            // A worker only exits at shutdown; treat it as a full queue.
            Err(TrySendError::Disconnected(cmd)) => Err(cmd),
        }
    }

    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Tells every worker to finish what is queued and exit. Goes through the unbounded
    /// queues, so it never blocks the loop.
    pub fn stop(&self) {
        for sender in &self.internal {
            let _ = sender.send(WorkerCmd::Stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(Owner::User("alice").partition(4), Owner::User("alice").partition(4));
        let used: std::collections::HashSet<_> =
            (0..100).map(|i| Owner::User(&format!("user{i}")).partition(4)).collect();
        assert_eq!(used.len(), 4);
        assert_eq!(Owner::Group(7).partition(4), 3);
        assert_eq!(Owner::Room("x").partition(1), 0);
    }
}
