//! The way back from the workers to the event loop: what a worker asks of the loop, and
//! the channel plus waker that carry it.

use super::{ConnId, Elsewhere, SessionUser};
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
    /// In a cluster: cluster node `node` holds something for the session of `user` on the
    /// connection (a worker told it the user is online in a group homed there), so it
    /// must hear when the session ends, as if the connection had sent it a request; at
    /// once if the session (the user's on that device) already ended.
    Reached { conn: ConnId, node: u8, user: SessionUser },
}

impl LoopMsg {
    /// The connection it is for.
    pub fn conn(&self) -> ConnId {
        match self {
            LoopMsg::Frames { conn, .. }
            | LoopMsg::Shared { conn, .. }
            | LoopMsg::Bind { conn, .. }
            | LoopMsg::Unbind { conn }
            | LoopMsg::Close { conn, .. }
            | LoopMsg::Cut { conn }
            | LoopMsg::Reached { conn, .. } => *conn,
        }
    }
}

/// A worker's way back to the loop: a channel plus the loop's waker. Workers send one
/// batch per commit, so the loop is woken once per batch rather than once per frame.
///
/// In a cluster, frames for connections another node holds go to that node through the
/// bus instead (in the order they were made).
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Vec<LoopMsg>>,
    waker: Arc<mio::Waker>,
    elsewhere: Option<Arc<dyn Elsewhere>>,
}

impl Outbox {
    pub fn new(tx: Sender<Vec<LoopMsg>>, waker: Arc<mio::Waker>) -> Self {
        Outbox { tx, waker, elsewhere: None }
    }

    /// The same outbox, sending frames for other nodes' connections through `elsewhere`.
    pub fn with_elsewhere(&self, elsewhere: Arc<dyn Elsewhere>) -> Self {
        Outbox { tx: self.tx.clone(), waker: self.waker.clone(), elsewhere: Some(elsewhere) }
    }

    pub fn send(&self, mut batch: Vec<LoopMsg>) {
        if let Some(elsewhere) = &self.elsewhere {
            let me = elsewhere.me();
            let mut remote = Vec::new();
            batch.retain_mut(|msg| match msg {
                LoopMsg::Frames { conn, bytes } if conn.node() != me => {
                    remote.push((*conn, std::mem::take(bytes)));
                    false
                }
                LoopMsg::Shared { conn, bytes } if conn.node() != me => {
                    remote.push((*conn, bytes.to_vec()));
                    false
                }
                // The rest is about a connection's session, which only its own node has.
                other => other.conn().node() == me,
            });
            elsewhere.frames(remote);
        }
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
