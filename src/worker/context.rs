//! What an owner's method works with besides the state it owns: the batch its output goes
//! into, its partition of the store, the queue of cursors waiting for a delivery budget,
//! and what all workers share. One `Ctx` is made per command from the worker's fields.

use super::batch::Batch;
use super::cursor::{Cursor, Window};
use super::mailbox;
use super::{DedupIndex, Shared, WorkerCmd};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{GroupId, Seq, SupportId};
use crate::route::{ConnId, Elsewhere, Owner, SessionUser};
use crate::store::Partition;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Ctx<'a> {
    /// This worker's index among `workers`.
    pub index: usize,
    pub workers: usize,
    pub shared: &'a Shared,
    pub batch: &'a mut Batch,
    pub partition: &'a mut Partition,
    pub waiting: &'a mut WaitQueue,
    /// This worker's internal queue, for work finished on other threads (hashing).
    pub me: &'a Sender<WorkerCmd>,
}

impl Ctx<'_> {
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// What one conversation may have outstanding per session.
    pub fn window(&self) -> Window {
        let config = &self.shared.config;
        Window { messages: u64::from(config.delivery_window), bytes: config.delivery_window_bytes }
    }

    /// `n` messages accepted from `sender` (counted for the server and the sender's app).
    pub fn received(&self, sender: &SessionUser, n: u64) {
        Metrics::add(&self.shared.metrics.received, n);
        if let Some(app) = self.shared.apps.of(&sender.name) {
            app.count_message(n);
        }
    }

    pub fn delivered(&self, n: u64) {
        Metrics::add(&self.shared.metrics.delivered, n);
    }

    pub fn owns(&self, owner: Owner<'_>) -> bool {
        owner.partition(self.workers) == self.index
    }

    pub fn worker_of(&self, owner: Owner<'_>) -> usize {
        owner.partition(self.workers)
    }

    /// The cluster node that owns `owner`, when it is not this one.
    pub fn home_of(&self, owner: Owner<'_>) -> Option<u8> {
        self.shared.bus.as_ref().and_then(|bus| bus.home(owner))
    }

    /// Hands `cmd` (one of the commands that may cross nodes, see `mailbox::remote`) to
    /// the worker of the user it is for: on this node, or on that user's home node.
    /// `after_commit`: only once this batch is durable.
    pub fn tell(&mut self, cmd: WorkerCmd, after_commit: bool) {
        let Some(owner) = mailbox::owner_of(&cmd) else { return };
        if let Some(node) = self.home_of(owner) {
            if let Some(remote) = mailbox::remote(&cmd) {
                let answer = match &cmd {
                    WorkerCmd::DeleteDirect { conn, request_id, .. } => Some((*conn, *request_id)),
                    _ => None,
                };
                self.batch.send_to_node(node, remote, answer, after_commit);
            }
            return;
        }
        let worker = self.worker_of(owner);
        match after_commit {
            true => self.batch.send_to_worker_after_commit(worker, cmd),
            false => self.batch.send_to_worker(worker, cmd),
        }
    }

    /// This worker's dedup index (of the destinations it owns).
    pub fn dedup(&self) -> &DedupIndex {
        &self.shared.dedup[self.index]
    }

    /// Queues `who` if it has something to push and room in its own window: then only its
    /// session's budget held it. If the budget has room after all (freed by another worker
    /// between the cursor's pump and this look), it is pumped again in the next batch, so
    /// no wake is ever lost.
    pub fn wait_if_starved(&mut self, cursor: &Cursor, last_seq: Seq, who: Waiting) {
        let Some((conn, budget)) = cursor.stalled(last_seq, self.window()) else {
            return;
        };
        let budget = budget.clone();
        self.waiting.enqueue(conn, who);
        if budget.wait(self.index) {
            // Room was freed while it looked: try again in the next batch.
            self.batch.send_to_worker(self.index, WorkerCmd::Pump { conn: Some(conn) });
        }
    }
}

/// A cursor, by what owns it: the user (and then its device) whose cursor it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    Inbox(Arc<str>, Arc<str>),
    Group(GroupId, Arc<str>, Arc<str>),
    /// A reader (customer or staff member) of a support conversation.
    Support(SupportId, Arc<str>, Arc<str>),
}

/// Cursors waiting for their session's delivery budget, by connection, in the order they
/// started waiting (see `waiting` for how they are woken).
#[derive(Default)]
pub struct WaitQueue {
    by_conn: HashMap<ConnId, Vec<Waiting>>,
}

impl WaitQueue {
    /// Puts the cursor in `conn`'s queue (once).
    pub fn enqueue(&mut self, conn: ConnId, who: Waiting) {
        let queue = self.by_conn.entry(conn).or_default();
        if !queue.contains(&who) {
            queue.push(who);
        }
    }

    /// Takes `conn`'s queue, to pump it.
    pub fn take(&mut self, conn: ConnId) -> Vec<Waiting> {
        self.by_conn.remove(&conn).unwrap_or_default()
    }

    pub fn conns(&self) -> Vec<ConnId> {
        self.by_conn.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }
}
