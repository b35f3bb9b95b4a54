//! The routing seam between the event loop and the owners of state.
//!
//! `net` (which owns the sockets) and `worker` (which owns users, groups and rooms) both
//! stand on this module and never import each other:
//!
//! - inbound, the loop decides who owns what a request is about ([`Owner`]), asks the
//!   [`Router`] where that owner lives ([`Destination`]) and hands it an [`Inbound`];
//! - outbound, an owner charges every frame to the [`OutputLedger`] and sends it back
//!   through the [`Outbox`] as [`LoopMsg`]s.
//!
//! A destination is a local worker thread or, in a cluster, another node
//! ([`Destination::Remote`], reached through the [`Elsewhere`] the bus implements): one
//! more kind of destination, not another path through the loop.

mod ledger;
mod outbox;

pub use ledger::{Charge, OutputLedger};
pub use outbox::{LoopMsg, Outbox};

use crate::protocol::{GroupId, Request, SupportId, UserId};
use crossbeam_channel::{Sender, TrySendError};
use std::net::IpAddr;
use std::sync::Arc;

/// Identifies one connection for its whole life: the slab slot in the low 24 bits, the
/// node that holds the connection in the next 8 (0 outside a cluster) and an accept
/// counter in the high 32. The slot makes lookup O(1); the counter makes the id never
/// reused, so a reply for a closed connection can never reach the slot's next owner; the
/// node makes it unique across a cluster, so an owner on another node can answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ConnId(pub u64);

/// Slots a node's connection table may use (connections are bounded far below, by the
/// open-file limit).
const SLOT_BITS: u32 = 24;

impl ConnId {
    /// A connection of a single node (node 0).
    pub fn new(serial: u32, slot: usize) -> Self {
        ConnId::on_node(0, serial, slot)
    }

    /// A connection held by cluster node `node`.
    pub fn on_node(node: u8, serial: u32, slot: usize) -> Self {
        let slot = slot as u64 & ((1 << SLOT_BITS) - 1);
        ConnId((u64::from(serial) << 32) | (u64::from(node) << SLOT_BITS) | slot)
    }

    pub fn slot(self) -> usize {
        (self.0 & ((1 << SLOT_BITS) - 1)) as usize
    }

    /// The node whose event loop holds the connection (0 outside a cluster).
    pub fn node(self) -> u8 {
        (self.0 >> SLOT_BITS) as u8
    }
}

/// The logged-in user of a connection, as the loop tells owners with every request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionUser {
    pub name: Arc<str>,
    /// The account's id; a service's own, from the same counter.
    pub uid: UserId,
    /// May broadcast when only administrators may, and read statistics.
    pub admin: bool,
    /// A back-end service (ServiceLogin), not a user.
    pub service: bool,
    /// The device of the session: the client's own id for it (`LoginDevice`), or empty for
    /// the legacy device (a `Login` or `Resume` that names none) and for services.
    pub device: Arc<str>,
}

/// Who owns a piece of state, and so where requests about it are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    User(&'a str),
    Group(GroupId),
    Room(&'a str),
    Service(&'a str),
    /// The push queue: one owner for the whole server, so its events have one order.
    PushQueue,
    /// A shop, by name: its staff list and every one of its support conversations, so
    /// claims and staff changes need no lock shared with another worker (and one busy
    /// shop is one worker's load).
    Shop(&'a str),
    /// A support conversation named by id alone: its worker looks up the conversation's
    /// shop and hands the request on to the shop's worker (the loop cannot know the shop).
    Support(SupportId),
}

impl Owner<'_> {
    /// Which of `workers` local partitions holds this owner.
    pub fn partition(self, workers: usize) -> usize {
        partition_of(self.key(), workers)
    }

    /// The number partitions are taken from: stable across runs, platforms and nodes, so
    /// a node can tell another which owner a request is for without naming it.
    pub fn key(self) -> u64 {
        match self {
            Owner::User(name) => fnv1a(name.as_bytes(), 0),
            // A different seed, so a room and a user of the same name spread independently.
            Owner::Room(name) => fnv1a(name.as_bytes(), 0x52),
            Owner::Service(name) => fnv1a(name.as_bytes(), 0x53),
            Owner::Group(id) => id.get(),
            Owner::PushQueue => 0,
            Owner::Shop(name) => fnv1a(name.as_bytes(), 0x48),
            Owner::Support(id) => id.get(),
        }
    }
}

/// Which of `workers` partitions holds the owner whose [`Owner::key`] is `key`.
pub fn partition_of(key: u64, workers: usize) -> usize {
    (key % workers.max(1) as u64) as usize
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

/// Where an owner's state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A worker thread of this process, by index.
    Local(usize),
    /// Another node of the cluster, and the owner's [`Owner::key`] there.
    Remote { node: u8, key: u64 },
}

/// What the loop and the workers need of the other nodes of a cluster (the bus, see
/// `cluster::bus`). Outside a cluster there is none.
pub trait Elsewhere: Send + Sync {
    /// This node's id.
    fn me(&self) -> u8;
    /// The node that owns `owner`, when it is not this one.
    fn home(&self, owner: Owner<'_>) -> Option<u8>;
    /// Hands a client's request to the owner on `node` (whose key is `key`) without
    /// blocking; gives it back when too many are on their way (backpressure).
    #[allow(clippy::result_large_err)]
    fn forward(&self, node: u8, key: u64, inbound: Inbound) -> Result<(), Inbound>;
    /// Frames for connections held by other nodes.
    fn frames(&self, frames: Vec<(ConnId, Vec<u8>)>);
    /// A connection of this node ended its session: the nodes in `nodes` hold something
    /// for it.
    fn closed(&self, nodes: Vec<u8>, conn: ConnId, user: SessionUser);
    /// Why a request for `node` cannot go there now (the bus or the node is down), if so.
    fn refusal(&self, node: u8) -> Option<String>;
    /// Whether `node` is known to be down (see `cluster::liveness`).
    fn is_down(&self, node: u8) -> bool;
    /// Where clients reach `node`.
    fn address_of(&self, node: u8) -> Option<String>;
    /// Every other node.
    fn others(&self) -> Vec<u8>;
    /// Takes a request whose answer is gathered from every node (who is online, the
    /// rooms, a service's query, the statistics) from `user`; false for any other request.
    fn gather(&self, conn: ConnId, request_id: u32, request: &Request, user: Option<&SessionUser>) -> bool;
}

/// What the loop hands an owner: the typed inbound queue. An owner's own traffic (other
/// workers, the hashing threads) travels on a queue of its own, which the loop never sees.
#[derive(Debug)]
pub enum Inbound {
    /// A client's request. `peer` is the client's address, for throttling failed logins;
    /// `user` is who the connection is logged in as, if anyone.
    Request { conn: ConnId, peer: IpAddr, user: Option<SessionUser>, request_id: u32, request: Request },
    /// The connection's session ended (closed or logged out). Sent to every destination:
    /// each forgets what it holds for the connection (sessions, rooms, subscriptions).
    Closed { conn: ConnId, user: SessionUser, reason: &'static str },
}

/// The loop's handle on the owners: where each lives, and a send that never blocks.
pub struct Router {
    local: Vec<Sender<Inbound>>,
    /// The other nodes, in a cluster.
    elsewhere: Option<Arc<dyn Elsewhere>>,
    /// Tells every owner to finish what it has queued and exit.
    stop: Box<dyn Fn() + Send>,
}

impl Router {
    /// `local` holds one bounded queue per worker, by index; `stop` must not block.
    pub fn new(local: Vec<Sender<Inbound>>, stop: Box<dyn Fn() + Send>) -> Self {
        Router { local, elsewhere: None, stop }
    }

    /// Routes owners homed on other nodes there.
    pub fn with_elsewhere(mut self, elsewhere: Option<Arc<dyn Elsewhere>>) -> Self {
        self.elsewhere = elsewhere;
        self
    }

    pub fn elsewhere(&self) -> Option<&Arc<dyn Elsewhere>> {
        self.elsewhere.as_ref()
    }

    /// Where `owner` lives.
    pub fn destination(&self, owner: Owner<'_>) -> Destination {
        match self.elsewhere.as_ref().and_then(|e| e.home(owner)) {
            Some(node) => Destination::Remote { node, key: owner.key() },
            None => Destination::Local(owner.partition(self.local.len())),
        }
    }

    /// Every destination, for what all of them must hear (a closed connection).
    pub fn everywhere(&self) -> impl Iterator<Item = Destination> {
        (0..self.local.len()).map(Destination::Local)
    }

    /// Hands `message` over without blocking; a full queue gives it back so the loop can
    /// hold it and stop reading from that connection (backpressure).
    // Handing the message back by value is the point; boxing it would cost an allocation
    // per request on the hot path.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, to: Destination, message: Inbound) -> Result<(), Inbound> {
        let worker = match (to, &self.elsewhere) {
            (Destination::Local(worker), _) => worker,
            (Destination::Remote { node, key }, Some(elsewhere)) => return elsewhere.forward(node, key, message),
            // No cluster, no remote destination: nothing to send to.
            (Destination::Remote { .. }, None) => return Ok(()),
        };
        match self.local[worker].try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => Err(message),
            // A worker only exits at shutdown; treat it as a full queue.
            Err(TrySendError::Disconnected(message)) => Err(message),
        }
    }

    /// Tells every owner to finish what is queued and exit.
    pub fn stop(&self) {
        (self.stop)();
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
        assert_eq!(Owner::Group(GroupId(7)).partition(4), 3);
        assert_eq!(Owner::Room("x").partition(1), 0);
    }

    #[test]
    fn a_full_queue_gives_the_message_back() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let router = Router::new(vec![tx], Box::new(|| {}));
        let to = router.destination(Owner::User("alice"));
        let closed = |n| Inbound::Closed {
            conn: ConnId(n),
            user: SessionUser { name: "alice".into(), uid: UserId(1), admin: false, service: false, device: "".into() },
            reason: "test",
        };
        assert!(router.try_send(to, closed(1)).is_ok());
        assert!(matches!(router.try_send(to, closed(2)), Err(Inbound::Closed { conn: ConnId(2), .. })));
        assert!(matches!(rx.try_recv(), Ok(Inbound::Closed { conn: ConnId(1), .. })));
        assert_eq!(router.everywhere().collect::<Vec<_>>(), vec![Destination::Local(0)]);
    }
}
