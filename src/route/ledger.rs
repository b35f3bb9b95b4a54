//! The output ledger: how many bytes are owed to each connection, wherever they are —
//! in a worker's batch, in the channel to the event loop, or in the connection's output
//! buffer — and to all connections together.
//!
//! `--max-outbound` is a promise about memory: a client that stops reading costs at most
//! that much. Counting only the loop's buffer broke it: when workers produce faster than
//! the loop copies (a room of members who never read, each sent 30 KB at a time), the
//! bytes pile up in the channel where no bound sees them. So a worker charges a frame
//! here before it queues it, and a frame that would pass the bound is not made: the
//! connection is cut as a slow consumer instead. The loop gives bytes back as it writes
//! them to the socket, or drops them for a connection that is gone.
//!
//! Each slot holds the connection's serial (high 32 bits), whether it was cut (bit 31) and
//! its bytes (low 31), so one compare-and-swap both checks that the slot still belongs to
//! the connection and counts the bytes: a charge for a closed connection can never land on
//! the next one in its slot, and once a connection is cut every worker stops making frames
//! for it at once, not only when the loop gets round to closing it.

use super::ConnId;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a charge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Counted: queue the frame.
    Queued,
    /// It would pass the connection's bound: drop it and cut the connection. Said once
    /// per connection; later charges get `Gone`.
    SlowConsumer,
    /// The connection is gone or cut: drop it.
    Gone,
}

pub struct OutputLedger {
    slots: Box<[AtomicU64]>,
    total: AtomicU64,
    per_conn: u64,
    /// The cluster node whose connections these are (0 outside a cluster). A frame for
    /// another node's connection is not counted here: that node's ledger counts it when it
    /// arrives there.
    node: u8,
}

const CUT: u64 = 1 << 31;
const BYTES: u64 = CUT - 1;

impl OutputLedger {
    /// A ledger for connection slots `0..slots`; `per_conn` is `--max-outbound` (at most
    /// 1 GiB, see `Config::normalized`, which leaves room for the loop's forced frames).
    pub fn new(slots: usize, per_conn: usize) -> Self {
        OutputLedger {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            per_conn: (per_conn as u64).min(BYTES),
            node: 0,
        }
    }

    /// The ledger of cluster node `node`'s connections.
    pub fn on_node(mut self, node: u8) -> Self {
        self.node = node;
        self
    }

    /// The node whose connections these are.
    pub fn node(&self) -> u8 {
        self.node
    }

    /// How many connection slots the ledger has room for.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// A new connection takes its slot with nothing owed. Bytes still charged to the slot's
    /// previous connection stay in the total until the loop drops them.
    pub fn open(&self, id: ConnId) {
        if let Some(slot) = self.slots.get(id.slot()) {
            slot.store(serial(id) << 32, Ordering::SeqCst);
        }
    }

    /// Counts `bytes` owed to `id` unless that would pass the connection's bound.
    pub fn charge(&self, id: ConnId, bytes: usize) -> Charge {
        self.add(id, bytes, true)
    }

    /// Counts `bytes` whatever the bound (the loop's own small frames: a Hello reply, an
    /// error, the slow-consumer notice itself).
    pub fn force(&self, id: ConnId, bytes: usize) {
        self.add(id, bytes, false);
    }

    fn add(&self, id: ConnId, bytes: usize, bounded: bool) -> Charge {
        if id.node() != self.node {
            return Charge::Queued;
        }
        let Some(slot) = self.slots.get(id.slot()) else {
            return Charge::Gone;
        };
        let bytes = bytes as u64;
        let mut current = slot.load(Ordering::SeqCst);
        loop {
            if current >> 32 != serial(id) || (bounded && current & CUT != 0) {
                return Charge::Gone;
            }
            let owed = current & BYTES;
            if bounded && owed + bytes > self.per_conn {
                // Whoever marks it cut says so; everyone after finds it cut.
                if slot.compare_exchange(current, current | CUT, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return Charge::SlowConsumer;
                }
                current = slot.load(Ordering::SeqCst);
                continue;
            }
            let next = (current & !BYTES) | (owed + bytes).min(BYTES);
            match slot.compare_exchange_weak(current, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.total.fetch_add(bytes, Ordering::SeqCst);
        Charge::Queued
    }

    /// Marks the connection cut: no worker makes frames for it any more.
    pub fn cut(&self, id: ConnId) {
        if id.node() != self.node {
            return;
        }
        if let Some(slot) = self.slots.get(id.slot()) {
            let _ = slot.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                (current >> 32 == serial(id)).then_some(current | CUT)
            });
        }
    }

    /// Gives back `bytes` charged to `id`: written to its socket, or dropped.
    pub fn release(&self, id: ConnId, bytes: usize) {
        if id.node() != self.node {
            return;
        }
        let bytes = bytes as u64;
        // Saturating: a release never makes the total wrap, whatever went wrong before.
        let _ = self.total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_sub(bytes)));
        let Some(slot) = self.slots.get(id.slot()) else {
            return;
        };
        let _ = slot.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
            (current >> 32 == serial(id)).then(|| (current & !BYTES) | (current & BYTES).saturating_sub(bytes))
        });
    }

    /// Bytes owed to `id` (0 once it is gone).
    pub fn owed(&self, id: ConnId) -> u64 {
        if id.node() != self.node {
            return 0;
        }
        self.slots
            .get(id.slot())
            .map(|slot| slot.load(Ordering::SeqCst))
            .filter(|current| current >> 32 == serial(id))
            .map_or(0, |current| current & BYTES)
    }

    /// Bytes owed to all connections together.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
}

fn serial(id: ConnId) -> u64 {
    id.0 >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_bound_and_come_back_when_written() {
        let ledger = OutputLedger::new(4, 100);
        let a = ConnId::new(7, 1);
        ledger.open(a);
        assert_eq!(ledger.charge(a, 60), Charge::Queued);
        assert_eq!(ledger.charge(a, 40), Charge::Queued);
        assert_eq!((ledger.owed(a), ledger.total()), (100, 100));
        ledger.release(a, 50);
        assert_eq!(ledger.charge(a, 51), Charge::SlowConsumer);
        assert_eq!(ledger.charge(a, 1), Charge::Gone, "cut once, for every worker");
        ledger.force(a, 10);
        assert_eq!(ledger.owed(a), 60, "the loop's own frames are counted, never refused");
        ledger.release(a, 60);
        assert_eq!((ledger.owed(a), ledger.total()), (0, 0));
        let b = ConnId::new(8, 2);
        ledger.open(b);
        ledger.cut(b);
        assert_eq!(ledger.charge(b, 1), Charge::Gone);
    }

    #[test]
    fn a_closed_connections_bytes_never_land_on_the_next_in_its_slot() {
        let ledger = OutputLedger::new(4, 100);
        let old = ConnId::new(1, 2);
        ledger.open(old);
        assert_eq!(ledger.charge(old, 50), Charge::Queued);
        let new = ConnId::new(2, 2);
        ledger.open(new);
        assert_eq!(ledger.charge(old, 10), Charge::Gone);
        assert_eq!(ledger.charge(new, 30), Charge::Queued);
        // The old connection's 50 are dropped by the loop later: only the total moves.
        ledger.release(old, 50);
        assert_eq!((ledger.owed(new), ledger.total()), (30, 30));
        assert_eq!(ledger.charge(ConnId::new(1, 99), 1), Charge::Gone, "a slot beyond the ledger");
    }
}
