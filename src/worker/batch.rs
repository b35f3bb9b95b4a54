//! What one worker batch produces, held back until the batch's changes are durable.
//!
//! Output that promises durability (receipts, pushes of stored messages) is marked so;
//! if the commit fails it is withheld and the requests behind it get an error
//! (`StorageFull` when the disk is full, else `Internal`).
//! Commands for other workers go out after the batch's frames, so anything they push
//! reaches the loop after this batch's replies (a login's reply before its group backlog).
//!
//! Every frame is charged to its connection's [`OutputLedger`] entry as it is queued here:
//! one that would pass `--max-outbound` is not queued, and the connection is cut as a
//! slow consumer instead, so no queue between here and the socket can outgrow the bound.

use super::push::notes::PushNote;
use super::push::PushBook;
use super::refusal::Refusal;
use super::WorkerCmd;
use crate::apps::wire::localize_frame;
use crate::clock::now_ms;
use crate::cluster::bus::BusHandle;
use crate::cluster::wire::RemoteCmd;
use crate::frame;
use crate::protocol::{ErrorCode, Push, Reply, ServerFrame};
use crate::route::{Charge, ConnId, LoopMsg, Outbox, OutputLedger};
use crate::store::{Partition, StoreError};
use crossbeam_channel::Sender;
use log::{error, warn};
use std::sync::Arc;

/// Fan-out frames from this size on are shared between their recipients' queues.
const SHARE_FROM: usize = 1024;

/// A command for a worker of another cluster node: the node, the command, the request it
/// answers, and whether it may go only once the batch is durable.
type ToNode = (u8, RemoteCmd, Option<(ConnId, u32)>, bool);

pub struct Batch {
    out: Vec<(LoopMsg, bool)>,
    durable_requests: Vec<(ConnId, u32)>,
    to_workers: Vec<(usize, WorkerCmd)>,
    /// Commands that follow from this batch's changes being durable (a sent copy of a stored
    /// message): sent only if its commit works.
    after_commit: Vec<(usize, WorkerCmd)>,
    /// Push notes of this batch's messages, for the push queue's worker: one command per
    /// batch, not one per message, and none for messages the commit did not make durable.
    notes: Option<(usize, Vec<PushNote>)>,
    /// Commands for workers of other cluster nodes: (node, command, the request it
    /// answers, whether only after a successful commit).
    to_nodes: Vec<ToNode>,
    bus: Option<BusHandle>,
    /// Counts the notes on their way (see `PushBook::reserve_notes`).
    push: PushBook,
    ledger: Arc<OutputLedger>,
    /// Connections cut in this batch: nothing more is queued for them.
    cut: Vec<ConnId>,
}

impl Batch {
    pub fn new(ledger: Arc<OutputLedger>, push: PushBook, bus: Option<BusHandle>) -> Self {
        Batch {
            to_nodes: Vec::new(),
            bus,
            out: Vec::new(),
            durable_requests: Vec::new(),
            to_workers: Vec::new(),
            after_commit: Vec::new(),
            notes: None,
            push,
            ledger,
            cut: Vec::new(),
        }
    }

    pub fn reply(&mut self, conn: ConnId, request_id: u32, reply: Reply, durable: bool) {
        if durable {
            self.durable_requests.push((conn, request_id));
        }
        self.frame(conn, ServerFrame::Reply { request_id, reply }, durable);
    }

    pub fn error(&mut self, conn: ConnId, request_id: u32, code: ErrorCode, message: &str) {
        self.frame(conn, ServerFrame::error(request_id, code, message), false);
    }

    /// A refusal as its error frame, with its retry time if it has one.
    pub fn refuse(&mut self, conn: ConnId, request_id: u32, refusal: &Refusal) {
        let frame = ServerFrame::Error {
            request_id,
            code: refusal.code,
            message: refusal.message.clone(),
            retry_after_ms: refusal.retry_after_ms,
        };
        self.frame(conn, frame, false);
    }

    pub fn push(&mut self, conn: ConnId, push: Push, durable: bool) {
        self.frame(conn, ServerFrame::Push(push), durable);
    }

    /// Queues an encoded frame, appending to the previous entry when it goes to the same
    /// connection, so a burst of pushes costs the loop one entry. Its names leave without
    /// their app (see [`crate::apps::wire`]).
    pub fn frame(&mut self, conn: ConnId, mut frame: ServerFrame, durable: bool) {
        if self.cut.contains(&conn) {
            return;
        }
        let fresh = self.tail_for(conn, durable).is_none();
        if fresh {
            self.out.push((LoopMsg::Frames { conn, bytes: Vec::new() }, durable));
        }
        let Some(bytes) = self.tail_for(conn, durable) else { return };
        let before = bytes.len();
        localize_frame(&mut frame);
        frame::encode_into(&frame, bytes);
        let added = bytes.len() - before;
        let charge = self.ledger.charge(conn, added);
        if charge != Charge::Queued {
            self.take_back(fresh, before);
            self.refused(conn, charge);
        }
    }

    /// Queues a frame encoded once for many recipients (fan-out): shared by all their
    /// queues when it is large, copied when it is small enough that a copy costs less.
    pub fn frame_bytes(&mut self, conn: ConnId, encoded: &Arc<[u8]>, durable: bool) {
        if self.cut.contains(&conn) {
            return;
        }
        let charge = self.ledger.charge(conn, encoded.len());
        if charge != Charge::Queued {
            return self.refused(conn, charge);
        }
        if encoded.len() >= SHARE_FROM {
            self.out.push((LoopMsg::Shared { conn, bytes: encoded.clone() }, durable));
        } else if let Some(bytes) = self.tail_for(conn, durable) {
            bytes.extend_from_slice(encoded);
        } else {
            self.out.push((LoopMsg::Frames { conn, bytes: encoded.to_vec() }, durable));
        }
    }

    /// A frame the ledger refused: for a slow consumer, the connection is cut (once).
    fn refused(&mut self, conn: ConnId, charge: Charge) {
        if charge == Charge::SlowConsumer {
            warn!("{conn:?} is not reading its output; closing it as a slow consumer");
            self.cut.push(conn);
            self.out.push((LoopMsg::Cut { conn }, false));
        }
    }

    /// Removes a frame that was encoded but not charged.
    fn take_back(&mut self, fresh: bool, len: usize) {
        if fresh {
            self.out.pop();
        } else if let Some((LoopMsg::Frames { bytes, .. }, _)) = self.out.last_mut() {
            bytes.truncate(len);
        }
    }

    pub fn control(&mut self, msg: LoopMsg) {
        self.out.push((msg, false));
    }

    pub fn send_to_worker(&mut self, worker: usize, cmd: WorkerCmd) {
        self.to_workers.push((worker, cmd));
    }

    /// A command for `worker` that may go only once this batch is durable.
    pub fn send_to_worker_after_commit(&mut self, worker: usize, cmd: WorkerCmd) {
        self.after_commit.push((worker, cmd));
    }

    /// A command for a worker of cluster node `node`, answering `answer` if it owes one;
    /// `after_commit`: only once this batch is durable.
    pub fn send_to_node(&mut self, node: u8, cmd: RemoteCmd, answer: Option<(ConnId, u32)>, after_commit: bool) {
        self.to_nodes.push((node, cmd, answer, after_commit));
    }

    /// Push notes for `worker` (the push queue's), sent together after a successful commit.
    pub fn push_notes(&mut self, worker: usize, notes: Vec<PushNote>) {
        match &mut self.notes {
            Some((_, held)) => held.extend(notes),
            None => self.notes = Some((worker, notes)),
        }
    }

    fn tail_for(&mut self, conn: ConnId, durable: bool) -> Option<&mut Vec<u8>> {
        match self.out.last_mut() {
            Some((LoopMsg::Frames { conn: last, bytes }, last_durable))
                if *last == conn && *last_durable == durable =>
            {
                Some(bytes)
            }
            _ => None,
        }
    }

    /// Group commit: the partition makes the batch's changes durable, then the batch's
    /// output goes out (its durable part only if that worked).
    pub fn commit(&mut self, partition: &mut Partition, outbox: &Outbox, workers: &[Sender<WorkerCmd>]) {
        let mut out = std::mem::take(&mut self.out);
        let notes = self.notes.take();
        let committed = partition.commit(now_ms());
        if let Err(e) = committed.as_ref() {
            error!("commit failed, withholding this batch's receipts: {e}");
            for (msg, durable) in &out {
                match (msg, durable) {
                    (LoopMsg::Frames { conn, bytes }, true) => self.ledger.release(*conn, bytes.len()),
                    (LoopMsg::Shared { conn, bytes }, true) => self.ledger.release(*conn, bytes.len()),
                    _ => {}
                }
            }
            out.retain(|(_, durable)| !durable);
            let (code, message) = match *e {
                StoreError::Full => (ErrorCode::StorageFull, "the server's disk is full; retry later"),
                _ => (ErrorCode::Internal, "storage error"),
            };
            for (conn, request_id) in self.durable_requests.drain(..) {
                let bytes = frame::encode(&ServerFrame::error(request_id, code, message));
                self.ledger.force(conn, bytes.len());
                out.push((LoopMsg::Frames { conn, bytes }, false));
            }
        }
        self.durable_requests.clear();
        self.cut.clear();
        // What follows from this batch's messages being durable (their sent copies) is
        // queued before the messages reach anyone, so it comes first at the worker that
        // stores it, before anything an answer to them could cause there.
        let after_commit = std::mem::take(&mut self.after_commit);
        for (worker, cmd) in committed.is_ok().then_some(after_commit).into_iter().flatten() {
            let _ = workers[worker].send(cmd);
        }
        // Before the frames too, for the same reason (a sent copy first at its home).
        let to_nodes = std::mem::take(&mut self.to_nodes);
        if let Some(bus) = &self.bus {
            for (node, cmd, answer, after_commit) in to_nodes {
                if committed.is_ok() || !after_commit {
                    bus.command(node, cmd, answer);
                }
            }
        }
        outbox.send(out.into_iter().map(|(msg, _)| msg).collect());
        match notes {
            Some((worker, notes)) if committed.is_ok() => {
                let _ = workers[worker].send(WorkerCmd::PushNotes(notes));
            }
            // Their messages are not durable: no notification, and they no longer count.
            Some((_, notes)) => self.push.notes_taken(notes.len()),
            None => {}
        }
        for (worker, cmd) in self.to_workers.drain(..) {
            // Unbounded: never blocks. An error means that worker already stopped.
            let _ = workers[worker].send(cmd);
        }
    }
}
