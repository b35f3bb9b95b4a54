//! The worker pool. Each worker owns a partition of the users (by a hash of the username):
//! their sessions, inbox positions and deliveries. A message is handled by its recipient's
//! worker, so storing it, numbering it and pushing it need no lock shared with any other
//! worker.
//!
//! A worker drains its queue in batches; all store writes of a batch are made durable by
//! one flush (group commit) before any reply or push of that batch leaves the worker.

mod directory;
mod handler;
mod inbox;

pub use directory::Directory;

use crate::auth::Hasher;
use crate::config::Config;
use crate::net::{ConnId, Outbox, SessionUser};
use crate::protocol::Request;
use crate::store::Store;
use crossbeam_channel::{bounded, Sender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the event loop and the hashing threads send a worker.
pub enum WorkerCmd {
    Request {
        conn: ConnId,
        user: Option<SessionUser>,
        request_id: u32,
        request: Request,
    },
    /// A password hash or check finished.
    Hashed(handler::HashOutcome),
    /// The connection is gone; drop its session if it still holds one.
    Closed { conn: ConnId, user: SessionUser },
    /// Finish the queue, commit, and exit (shutdown).
    Stop,
}

/// The loop's handle on the workers: which worker gets what, and a non-blocking send.
pub struct Pool {
    senders: Vec<Sender<WorkerCmd>>,
}

impl Pool {
    pub fn start(
        config: Arc<Config>,
        store: Store,
        hasher: Hasher,
        outbox: Outbox,
        directory: Directory,
    ) -> (Pool, Vec<JoinHandle<()>>) {
        let count = config.workers.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| bounded::<WorkerCmd>(config.worker_queue))
            .unzip();
        let handles = receivers
            .into_iter()
            .enumerate()
            .map(|(index, rx)| {
                let worker = handler::Worker::new(
                    config.clone(),
                    store.clone(),
                    hasher.clone(),
                    outbox.clone(),
                    directory.clone(),
                    senders[index].clone(),
                );
                std::thread::Builder::new()
                    .name(format!("confab-worker-{index}"))
                    .spawn(move || worker.run(rx))
                    .expect("spawning a worker thread")
            })
            .collect();
        (Pool { senders }, handles)
    }

    /// The worker that owns `username`.
    pub fn partition(&self, username: &str) -> usize {
        partition(username, self.senders.len())
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
            // A worker only exits when the pool is dropped; treat it as a full queue.
            Err(TrySendError::Disconnected(cmd)) => Err(cmd),
        }
    }

    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Tells every worker to finish what is queued and exit. Blocks while a queue is
    /// full; workers never wait on the loop, so they always make room.
    pub fn stop(&self) {
        for sender in &self.senders {
            let _ = sender.send(WorkerCmd::Stop);
        }
    }
}

/// FNV-1a: stable across runs and platforms, cheap, good enough spread for partitioning.
pub fn partition(username: &str, workers: usize) -> usize {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in username.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    (hash % workers.max(1) as u64) as usize
}
