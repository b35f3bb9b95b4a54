//! The event loop's connection table: the slab of open connections, the serial that makes
//! every `ConnId` new, the lists of connections with work for later in the turn (output to
//! write, input left over, closed ones to reap), and the counts that must move with every
//! insert and remove: connections per address, connections nobody is logged in on, the
//! connection's entry in the output ledger and the connections gauge.
//!
//! Keeping them together is what keeps them true: a connection is counted exactly while it
//! is in the slab, so a limit can neither leak a place nor hand out one twice.

use super::conn::{Conn, Life};
use super::limits::{PerAddress, Unauthenticated};
use super::outqueue::OutQueue;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::route::{ConnId, OutputLedger, SessionUser};
use slab::Slab;
use std::io;
use std::net::IpAddr;
use std::ops::{Index, IndexMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A place [`ConnTable::admit`] counted for a newcomer; [`ConnTable::insert`] uses it, or
/// gives it back if the connection cannot be opened. It cannot be made any other way, so
/// the counts only move through the table.
#[must_use]
pub struct Admitted {
    ip: IpAddr,
}

/// What became of a login a worker told the loop of.
pub enum Login {
    /// The connection is logged in as the user.
    Bound,
    /// Another user is already logged in on it: two logins raced.
    Conflict(SessionUser),
    /// The connection closed (or is closing) while the login was checked.
    Gone(SessionUser),
}

/// The caps on newcomers, from the configuration.
struct Caps {
    connections: usize,
    per_address: usize,
    unauthenticated: usize,
    unauthenticated_per_address: usize,
}

pub struct ConnTable {
    slab: Slab<Conn>,
    /// The serial of the last `ConnId` handed out.
    serial: u32,
    /// Connections with queued output.
    to_write: Vec<usize>,
    /// Connections with input left over from an earlier turn.
    backlog: Vec<usize>,
    /// Connections to reap at the end of the turn.
    dead: Vec<usize>,
    per_address: PerAddress,
    /// Connections without a logged-in user (or service), capped by
    /// `max_unauthenticated` and `max_unauthenticated_per_ip`.
    unauthenticated: Unauthenticated,
    caps: Caps,
    /// Bytes owed to each connection, shared with the workers that charge them.
    ledger: Arc<OutputLedger>,
    metrics: Arc<Metrics>,
}

/// Where a run's serials start. On a single node, at 0. On a cluster node, anywhere: other
/// nodes may still hold something for the connections of this node's last run (a crash
/// tells them nothing), and a connection of this run must not pass for one of those.
fn first_serial(node: u8) -> u32 {
    let mut bytes = [0u8; 4];
    match node {
        0 => 0,
        _ => getrandom::getrandom(&mut bytes).map_or(crate::clock::now_ms() as u32, |()| u32::from_le_bytes(bytes)),
    }
}

impl ConnTable {
    pub fn new(config: &Config, ledger: Arc<OutputLedger>, metrics: Arc<Metrics>) -> Self {
        ConnTable {
            slab: Slab::with_capacity(1024),
            serial: first_serial(ledger.node()),
            to_write: Vec::new(),
            backlog: Vec::new(),
            dead: Vec::new(),
            per_address: PerAddress::default(),
            unauthenticated: Unauthenticated::default(),
            caps: Caps {
                connections: config.max_connections,
                per_address: config.max_connections_per_ip,
                unauthenticated: config.max_unauthenticated,
                unauthenticated_per_address: config.max_unauthenticated_per_ip,
            },
            ledger,
            metrics,
        }
    }

    /// Counts a newcomer from `ip` against every cap, or says which one it would pass.
    pub fn admit(&mut self, ip: IpAddr) -> Result<Admitted, &'static str> {
        // The ledger has a fixed number of slots; a connection beyond them could not be charged.
        if self.slab.len() >= self.caps.connections.min(self.ledger.capacity()) {
            return Err("too many connections");
        }
        self.unauthenticated.admit(ip, self.caps.unauthenticated, self.caps.unauthenticated_per_address)?;
        if !self.per_address.admit(ip, self.caps.per_address) {
            self.unauthenticated.remove(ip);
            return Err("too many connections from your address");
        }
        Ok(Admitted { ip })
    }

    /// Puts an admitted connection in a free slot. `open` gets the connection's id (that
    /// slot and the next serial) and makes the connection; if it fails, the place is given
    /// back and the serial is not used.
    pub fn insert(&mut self, admitted: Admitted, open: impl FnOnce(ConnId) -> io::Result<Conn>) -> io::Result<ConnId> {
        let entry = self.slab.vacant_entry();
        let serial = self.serial.wrapping_add(1);
        let id = ConnId::on_node(self.ledger.node(), serial, entry.key());
        match open(id) {
            Ok(conn) => {
                debug_assert_eq!((conn.id, conn.peer.ip()), (id, admitted.ip));
                self.serial = serial;
                self.ledger.open(id);
                entry.insert(conn);
                self.metrics.connections.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
            Err(e) => {
                self.unauthenticated.remove(admitted.ip);
                self.per_address.release(admitted.ip);
                Err(e)
            }
        }
    }

    /// Takes a connection out of the table: workers stop making frames for it, what it
    /// still had queued is given back to the ledger, and its places are freed.
    pub fn remove(&mut self, slot: usize) -> Option<Conn> {
        let conn = self.slab.try_remove(slot)?;
        self.ledger.cut(conn.id);
        self.ledger.release(conn.id, conn.pending_out());
        self.per_address.release(conn.peer.ip());
        if conn.user.is_none() {
            self.unauthenticated.remove(conn.peer.ip());
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        Some(conn)
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn contains(&self, slot: usize) -> bool {
        self.slab.contains(slot)
    }

    pub fn get(&self, slot: usize) -> Option<&Conn> {
        self.slab.get(slot)
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.slab.get_mut(slot)
    }

    /// The connection with this id, if it is still the one in its slot and not about to
    /// be reaped: what a worker's message for it must find before it is acted on.
    pub fn live(&self, id: ConnId) -> Option<&Conn> {
        self.slab.get(id.slot()).filter(|c| c.id == id && c.life != Life::Dead)
    }

    pub fn live_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab.get_mut(id.slot()).filter(|c| c.id == id && c.life != Life::Dead)
    }

    /// Every connection in the table (closing ones too), with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.slab.iter()
    }

    /// The output ledger the table opens and closes entries in, for charging and giving
    /// back bytes.
    pub fn ledger(&self) -> &OutputLedger {
        &self.ledger
    }

    /// Logs the connection in as `user`, unless another user (or another device of the
    /// user) got there first or the connection is gone or closing.
    pub fn log_in(&mut self, id: ConnId, user: SessionUser) -> Login {
        let Some(conn) = self.live_mut(id).filter(|c| c.is_open()) else {
            return Login::Gone(user);
        };
        match &conn.user {
            Some(existing) if existing.name != user.name || existing.device != user.device => Login::Conflict(user),
            _ => {
                if conn.user.replace(user).is_none() {
                    let ip = conn.peer.ip();
                    self.unauthenticated.remove(ip);
                }
                Login::Bound
            }
        }
    }

    /// The connection's user logged out: it counts as not logged in again, and its login
    /// deadline starts over from `now`.
    pub fn log_out(&mut self, id: ConnId, now: Instant) {
        if let Some(conn) = self.live_mut(id) {
            if conn.user.take().is_some() {
                conn.unauthenticated_since = now;
                let ip = conn.peer.ip();
                self.unauthenticated.add(ip);
            }
        }
    }

    /// Queues output for the connection; one that had none is marked for writing.
    pub fn queue_out(&mut self, slot: usize, push: impl FnOnce(&mut OutQueue)) {
        let conn = &mut self.slab[slot];
        if conn.pending_out() == 0 {
            self.to_write.push(slot);
        }
        push(&mut conn.out);
    }

    /// Marks the connection for a write attempt at the end of the turn.
    pub fn mark_for_write(&mut self, slot: usize) {
        self.to_write.push(slot);
    }

    /// The connections marked for writing since the last call.
    pub fn take_to_write(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.to_write)
    }

    /// Marks the connection as having input left for a later turn.
    pub fn mark_for_backlog(&mut self, slot: usize) {
        self.backlog.push(slot);
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// The connections with input left over, marked since the last call.
    pub fn take_backlog(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.backlog)
    }

    /// Marks the connection for reaping at the end of the turn (once, however often it is
    /// marked); `reason` counts only if no earlier decision to close it gave one.
    pub fn mark_dead(&mut self, slot: usize, reason: &'static str) {
        if let Some(conn) = self.slab.get_mut(slot) {
            if conn.is_open() {
                conn.close_reason = reason;
            }
            if conn.life != Life::Dead {
                conn.life = Life::Dead;
                self.dead.push(slot);
            }
        }
    }

    /// The connections marked dead since the last call, to [`ConnTable::remove`].
    pub fn take_dead(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.dead)
    }
}

/// The connection in `slot`, which must be in the table.
impl Index<usize> for ConnTable {
    type Output = Conn;

    fn index(&self, slot: usize) -> &Conn {
        &self.slab[slot]
    }
}

impl IndexMut<usize> for ConnTable {
    fn index_mut(&mut self, slot: usize) -> &mut Conn {
        &mut self.slab[slot]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LogStats;
    use crate::protocol::UserId;
    use std::net::SocketAddr;

    fn table(config: Config) -> ConnTable {
        let ledger = Arc::new(OutputLedger::new(8, config.max_outbound));
        ConnTable::new(&config, ledger, Arc::new(Metrics::new(0, Arc::new(LogStats::default()))))
    }

    /// Admits and inserts a connection from `ip`, on a real loopback socket.
    fn open(table: &mut ConnTable, ip: [u8; 4]) -> Result<ConnId, &'static str> {
        let admitted = table.admit(ip.into())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream =
            mio::net::TcpStream::from_std(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        let peer = SocketAddr::from((ip, 40_000));
        Ok(table.insert(admitted, |id| Ok(Conn::new(id, stream, peer, 10, Instant::now()))).unwrap())
    }

    fn alice() -> SessionUser {
        SessionUser { name: "alice".into(), uid: UserId(1), admin: false, service: false, device: "".into() }
    }

    #[test]
    fn a_slot_is_reused_but_never_an_id() {
        let mut table = table(Config::default());
        let first = open(&mut table, [10, 0, 0, 1]).unwrap();
        table.mark_dead(first.slot(), "closed by the client");
        for slot in table.take_dead() {
            assert!(table.remove(slot).is_some());
        }
        let second = open(&mut table, [10, 0, 0, 1]).unwrap();
        assert_eq!(second.slot(), first.slot(), "the slot is reused");
        assert_ne!(second, first, "the id is not");
        assert!(table.live(first).is_none(), "a stale id finds nothing");
        assert_eq!(table.live(second).map(|c| c.id), Some(second));
        assert_eq!(table.iter().count(), 1);
    }

    #[test]
    fn a_connection_marked_dead_twice_is_reaped_once() {
        let mut table = table(Config::default());
        let id = open(&mut table, [10, 0, 0, 1]).unwrap();
        table.mark_dead(id.slot(), "slow consumer");
        table.mark_dead(id.slot(), "closed by the server");
        assert!(table.live(id).is_none(), "a dead connection takes no more messages");
        let dead = table.take_dead();
        assert_eq!(dead, vec![id.slot()]);
        let conn = table.remove(id.slot()).unwrap();
        assert_eq!(conn.close_reason, "slow consumer", "the first reason counts");
        assert!(table.remove(id.slot()).is_none());
        assert!(table.take_dead().is_empty() && table.is_empty());
    }

    #[test]
    fn places_are_counted_while_connections_are_in_the_table() {
        let config = Config { max_connections: 3, max_connections_per_ip: 2, ..Config::default() };
        let mut table = table(config);
        let a = open(&mut table, [10, 0, 0, 1]).unwrap();
        open(&mut table, [10, 0, 0, 1]).unwrap();
        assert_eq!(open(&mut table, [10, 0, 0, 1]), Err("too many connections from your address"));
        open(&mut table, [10, 0, 0, 2]).unwrap();
        assert_eq!(open(&mut table, [10, 0, 0, 3]), Err("too many connections"));
        table.mark_dead(a.slot(), "closed by the client");
        table.remove(a.slot());
        assert!(open(&mut table, [10, 0, 0, 1]).is_ok(), "a removed connection frees its places");
    }

    #[test]
    fn a_connection_that_cannot_be_opened_gives_its_place_back() {
        let config = Config { max_unauthenticated_per_ip: 1, ..Config::default() };
        let mut table = table(config);
        let admitted = table.admit([10, 0, 0, 1].into()).unwrap();
        let failed = table.insert(admitted, |_| Err(io::ErrorKind::Other.into()));
        assert!(failed.is_err() && table.is_empty());
        let id = open(&mut table, [10, 0, 0, 1]).unwrap();
        assert_eq!(id, ConnId::new(1, 0), "the failed attempt used no serial");
    }

    #[test]
    fn logging_in_and_out_moves_the_not_logged_in_count() {
        let config = Config { max_unauthenticated_per_ip: 1, ..Config::default() };
        let mut table = table(config);
        let id = open(&mut table, [10, 0, 0, 1]).unwrap();
        let refused = "too many connections not logged in from your address";
        assert_eq!(open(&mut table, [10, 0, 0, 1]).err(), Some(refused));
        assert!(matches!(table.log_in(id, alice()), Login::Bound));
        let other = open(&mut table, [10, 0, 0, 1]).unwrap();
        let bob = SessionUser { name: "bob".into(), ..alice() };
        assert!(matches!(table.log_in(id, bob), Login::Conflict(_)));
        let laptop = SessionUser { device: "laptop".into(), ..alice() };
        assert!(matches!(table.log_in(id, laptop), Login::Conflict(_)), "two devices raced on one connection");
        table.mark_dead(other.slot(), "closed by the client");
        assert!(matches!(table.log_in(other, alice()), Login::Gone(_)));
        table.remove(other.slot());
        let later = Instant::now();
        table.log_out(id, later);
        assert_eq!(table[id.slot()].unauthenticated_since, later);
        assert_eq!(open(&mut table, [10, 0, 0, 1]).err(), Some(refused), "a logout counts again");
    }

    #[test]
    fn the_ledger_entry_lives_as_long_as_the_connection() {
        let mut table = table(Config::default());
        let id = open(&mut table, [10, 0, 0, 1]).unwrap();
        table.ledger().force(id, 101);
        table.queue_out(id.slot(), |out| out.push(&[0; 100]));
        table.queue_out(id.slot(), |out| out.push(&[0; 1]));
        assert_eq!(table.take_to_write(), vec![id.slot()], "marked for writing once");
        assert_eq!(table.metrics.connections.load(Ordering::Relaxed), 1);
        table.mark_dead(id.slot(), "closed by the client");
        table.remove(id.slot());
        assert_eq!(table.ledger().total(), 0, "what it was owed is given back");
        assert_eq!(table.ledger().owed(id), 0);
        assert_eq!(table.metrics.connections.load(Ordering::Relaxed), 0);
    }
}
