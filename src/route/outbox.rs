//! The way back from the workers to the event loop: what a worker asks of the loop, and
//! the channel plus waker that carry it.

use super::{ConnId, SessionUser};
use crossbeam_channel::Sender;
use std::sync::Arc;

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
    /// Output for the connection would have passed `--max-outbound` (see
    /// [`super::OutputLedger`]): tell it `SlowConsumer` and close it.
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
