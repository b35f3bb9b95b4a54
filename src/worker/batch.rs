//! What one worker batch produces, held back until the batch's writes are flushed.
//!
//! Output that promises durability (receipts, pushes of stored messages) is marked so;
//! if the flush fails it is withheld and the requests behind it get an Internal error.
//! Commands for other workers go out after the batch's frames, so anything they push
//! reaches the loop after this batch's replies (a login's reply before its group backlog).

use super::inbox::now_ms;
use super::WorkerCmd;
use crate::frame;
use crate::net::{ConnId, LoopMsg, Outbox};
use crate::protocol::{ErrorCode, Push, Reply, ServerFrame};
use crate::store::{DedupRecord, JournalBuffer, LogId, Store};
use crossbeam_channel::Sender;
use log::error;
use std::time::Instant;

#[derive(Default)]
pub struct Batch {
    out: Vec<(LoopMsg, bool)>,
    durable_requests: Vec<(ConnId, u32)>,
    to_workers: Vec<(usize, WorkerCmd)>,
    /// Dedup records of this batch's sends, written as one value at commit.
    pub dedup: Vec<DedupRecord>,
    /// This batch's new messages, written as one journal value at commit.
    pub journal: JournalBuffer,
    /// The batch wrote to the store and must flush before releasing anything durable.
    pub dirty: bool,
}

impl Batch {
    pub fn reply(&mut self, conn: ConnId, request_id: u32, reply: Reply, durable: bool) {
        if durable {
            self.durable_requests.push((conn, request_id));
        }
        self.frame(conn, &ServerFrame::Reply { request_id, reply }, durable);
    }

    pub fn error(&mut self, conn: ConnId, request_id: u32, code: ErrorCode, message: &str) {
        self.frame(conn, &error_frame(request_id, code, message), false);
    }

    pub fn push(&mut self, conn: ConnId, push: Push, durable: bool) {
        self.frame(conn, &ServerFrame::Push(push), durable);
    }

    /// Queues an encoded frame, appending to the previous entry when it goes to the same
    /// connection, so a burst of pushes costs the loop one entry.
    pub fn frame(&mut self, conn: ConnId, frame: &ServerFrame, durable: bool) {
        if let Some(bytes) = self.tail_for(conn, durable) {
            frame::encode_into(frame, bytes);
        } else {
            self.out.push((LoopMsg::Frames { conn, bytes: frame::encode(frame) }, durable));
        }
    }

    /// Queues a frame encoded once for many recipients (fan-out).
    pub fn frame_bytes(&mut self, conn: ConnId, encoded: &[u8], durable: bool) {
        if let Some(bytes) = self.tail_for(conn, durable) {
            bytes.extend_from_slice(encoded);
        } else {
            self.out.push((LoopMsg::Frames { conn, bytes: encoded.to_vec() }, durable));
        }
    }

    pub fn control(&mut self, msg: LoopMsg) {
        self.out.push((msg, false));
    }

    pub fn send_to_worker(&mut self, worker: usize, cmd: WorkerCmd) {
        self.to_workers.push((worker, cmd));
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

    /// Group commit: one flush for everything the batch wrote, then its output.
    /// Returns the journal value written, if any: the worker migrates it later.
    pub fn commit(&mut self, store: &Store, outbox: &Outbox, workers: &[Sender<WorkerCmd>]) -> Option<Journaled> {
        let mut out = std::mem::take(&mut self.out);
        let mut journaled = None;
        if std::mem::take(&mut self.dirty) {
            let records = std::mem::take(&mut self.dedup);
            let journal = std::mem::take(&mut self.journal);
            let written = if journal.is_empty() { Ok(None) } else { store.journal_write(&journal).map(Some) };
            // Even a failed write leaves the messages staged: they must be migrated so a
            // retry, answered from the dedup index, is eventually true.
            let failed_journal = written.as_ref().is_err();
            let key = written.as_ref().ok().copied().flatten();
            if !journal.is_empty() {
                journaled = Some(Journaled { at: Instant::now(), key, records: journal.records });
            }
            let dedup = if records.is_empty() { Ok(()) } else { store.put_dedup_batch(now_ms(), &records) };
            let durable = written.map(|_| ()).and(dedup).and_then(|()| store.flush());
            if failed_journal {
                error!("journal write failed");
            }
            if let Err(e) = durable {
                error!("flush failed, withholding this batch's receipts: {e}");
                out.retain(|(_, durable)| !durable);
                for (conn, request_id) in self.durable_requests.drain(..) {
                    let bytes = frame::encode(&error_frame(request_id, ErrorCode::Internal, "storage error"));
                    out.push((LoopMsg::Frames { conn, bytes }, false));
                }
            }
        }
        self.durable_requests.clear();
        outbox.send(out.into_iter().map(|(msg, _)| msg).collect());
        for (worker, cmd) in self.to_workers.drain(..) {
            // Unbounded: never blocks. An error means that worker already stopped.
            let _ = workers[worker].send(cmd);
        }
        journaled
    }
}

/// A journal value written by this worker, to be migrated into the logs.
pub struct Journaled {
    pub at: Instant,
    /// None when the write failed: the messages are only staged.
    pub key: Option<u64>,
    pub records: Vec<(LogId, u64, u64)>,
}

pub fn error_frame(request_id: u32, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error { request_id, code, message: message.to_string() }
}
