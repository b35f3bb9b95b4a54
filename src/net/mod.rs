//! Networking: the mio event loop that owns every socket, and the messages workers send it.

mod accept;
mod conn;
mod event_loop;
mod gate;
mod input;
mod ledger;
mod limits;
mod output;
mod outqueue;
mod refusals;

pub use event_loop::{EventLoop, LoopHandle};
pub use ledger::{Charge, OutputLedger};

use crossbeam_channel::Sender;
use std::sync::Arc;

/// Identifies one connection for its whole life: the slab slot in the low 32 bits and an
/// accept counter in the high 32. The slot makes lookup O(1); the counter makes the id
/// never reused, so a reply for a closed connection can never reach the slot's next owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    pub fn new(serial: u32, slot: usize) -> Self {
        ConnId((u64::from(serial) << 32) | slot as u64)
    }

    pub fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
}

/// The logged-in user of a connection, as the loop tells workers with every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUser {
    pub name: Arc<str>,
    pub uid: u64,
    /// May broadcast when only administrators may, and read statistics.
    pub admin: bool,
    /// A back-end service (ServiceLogin), not a user.
    pub service: bool,
}

/// What workers ask of the event loop.
#[derive(Debug)]
pub enum LoopMsg {
    /// Encoded frames (prefix included) to queue on the connection.
    Frames { conn: ConnId, bytes: Vec<u8> },
    /// One encoded frame shared with other connections (fan-out), queued without a copy.
    Shared { conn: ConnId, bytes: Arc<[u8]> },
    /// The connection logged in as this user; its later requests carry it.
    Bind { conn: ConnId, user: SessionUser },
    /// The connection logged out.
    Unbind { conn: ConnId },
    /// Close the connection once what is queued for it has been written.
    Close { conn: ConnId, reason: &'static str },
    /// Output for the connection would have passed `--max-outbound` (see [`OutputLedger`]):
    /// tell it `SlowConsumer` and close it.
    Cut { conn: ConnId },
}

/// A worker's way back to the loop: a channel plus the loop's waker. Workers send one
/// batch per commit, so the loop is woken once per batch rather than once per frame.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Vec<LoopMsg>>,
    waker: Arc<mio::Waker>,
}

impl Outbox {
    pub fn new(tx: Sender<Vec<LoopMsg>>, waker: Arc<mio::Waker>) -> Self {
        Outbox { tx, waker }
    }

    pub fn send(&self, batch: Vec<LoopMsg>) {
        if batch.is_empty() {
            return;
        }
        // A send error means the loop has gone (shutdown); nothing is left to tell.
        if self.tx.send(batch).is_ok() {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }
}
