//! What every worker shares: the configuration, the store, and the cross-worker tables
//! (who is online, rooms, open groups, throttles, seats, budgets, the output ledger, push
//! settings).
//! Each table does its own locking; none is touched per message except the ledger and the
//! dedup index, which are lock-free or per worker.

use super::{
    ConnSeats, ConnectionWatchers, DedupIndex, Directory, FanoutBudgets, GroupSeats, Lookalikes, OpenGroups, PushBook,
    RoomList,
};
use crate::apps::Apps;
use crate::auth::Hasher;
use crate::cluster::bus::BusHandle;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::route::{Outbox, OutputLedger};
use crate::signup::SignupLimit;
use crate::store::Store;
use crate::throttle::LoginThrottle;
use std::sync::Arc;

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
    /// Support conversations being opened, counted against `max_support_per_user`.
    pub support_seats: GroupSeats,
    /// What each room and broadcast sender may still fan out.
    pub fanout: FanoutBudgets,
    /// Rooms each connection is in, against `max_rooms_per_conn`.
    pub room_seats: ConnSeats,
    /// Presence subscriptions each connection holds, against `max_subscriptions`.
    pub subscription_seats: ConnSeats,
    /// Bytes owed to each connection; every frame is charged before it is queued.
    pub ledger: Arc<OutputLedger>,
    /// Every user's push devices and mutes.
    pub push: PushBook,
    /// The hosted apps, their limits and counters.
    pub apps: Apps,
    /// The other nodes of a cluster (None on a single node).
    pub bus: Option<BusHandle>,
}
