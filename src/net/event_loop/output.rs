//! The event loop's output side: each connection's bounded output buffer (a client that
//! stops reading is cut off as a slow consumer), writes until the socket would block, and
//! closing: after the queued output is written, or at once.

use super::EventLoop;
use crate::frame;
use crate::net::conn::Life;
use crate::net::outqueue::OutQueue;
use crate::protocol::{ErrorCode, ServerFrame, NO_REQUEST};
use log::{debug, warn};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a client is told to wait before it retries a request for a node that is down:
/// about the time a restarted node takes to be heard again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

impl EventLoop {
    /// Queues the loop's own frame (a Hello reply, a pong, an error), charging it to the
    /// connection's ledger entry.
    pub(super) fn queue(&mut self, slot: usize, bytes: &[u8]) {
        let conn = &self.table[slot];
        // Once a connection is closing, what it was last told (the reason) stays last.
        if !conn.is_open() {
            return;
        }
        if self.table.ledger().owed(conn.id) as usize + bytes.len() > self.config.max_outbound {
            // Output beyond the bound is dropped, never buffered: a client that stops
            // reading costs at most max_outbound. What it missed of stored messages stays
            // stored, unacknowledged, for its next session.
            warn!("{:?} is not reading its output; closing it as a slow consumer", conn.id);
            self.cut_slow_consumer(slot);
            return;
        }
        self.table.ledger().force(conn.id, bytes.len());
        self.queue_charged(slot, bytes);
    }

    /// Queues bytes a worker already charged to the connection.
    fn queue_charged(&mut self, slot: usize, bytes: &[u8]) {
        self.queue_chunk(slot, bytes.len(), |out| out.push(bytes));
    }

    /// Queues a worker's frames for the connection (charged), without copying them.
    pub(super) fn queue_owned(&mut self, slot: usize, bytes: Vec<u8>) {
        self.queue_chunk(slot, bytes.len(), |out| out.push_owned(bytes));
    }

    /// Queues a frame shared with other connections (charged), without copying it.
    pub(super) fn queue_shared(&mut self, slot: usize, bytes: Arc<[u8]>) {
        self.queue_chunk(slot, bytes.len(), |out| out.push_shared(bytes));
    }

    fn queue_chunk(&mut self, slot: usize, len: usize, push: impl FnOnce(&mut OutQueue)) {
        let conn = &self.table[slot];
        if !conn.is_open() {
            self.table.ledger().release(conn.id, len);
            return;
        }
        self.table.queue_out(slot, push);
    }

    /// Tells the connection `SlowConsumer` (past the bound: the notice is small and last)
    /// and closes it once that is written.
    pub(super) fn cut_slow_consumer(&mut self, slot: usize) {
        let conn = &self.table[slot];
        if !conn.is_open() {
            return;
        }
        let notice =
            frame::encode(&ServerFrame::error(NO_REQUEST, ErrorCode::SlowConsumer, "output buffer limit reached"));
        self.table.ledger().cut(conn.id);
        self.table.ledger().force(conn.id, notice.len());
        self.table.queue_out(slot, |out| out.push(&notice));
        self.close_after_flush(slot, "slow consumer");
    }

    pub(super) fn send_error(&mut self, slot: usize, request_id: u32, code: ErrorCode, message: &str) {
        let bytes = frame::encode(&ServerFrame::error(request_id, code, message));
        self.queue(slot, &bytes);
        if code.closes() {
            self.close_after_flush(slot, close_reason(code));
        }
    }

    /// Keeps the bytes owed to all connections under `--max-outbound-total`: past it, the
    /// connections owed the most are closed at once (their output is dropped, not flushed:
    /// flushing is what they were not doing). Stored messages they missed stay stored.
    pub(super) fn shed_output(&mut self) {
        let limit = self.config.max_outbound_total as u64;
        let mut total = self.table.ledger().total();
        if total <= limit {
            return;
        }
        let mut owed: Vec<(u64, usize)> = self
            .table
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(slot, c)| (self.table.ledger().owed(c.id), slot))
            .collect();
        owed.sort_unstable_by(|a, b| b.cmp(a));
        for (bytes, slot) in owed {
            if total <= limit || bytes == 0 {
                break;
            }
            let id = self.table[slot].id;
            warn!("output owed to all clients passed {limit} bytes; closing {id:?}, owed {bytes}");
            self.table.ledger().cut(id);
            self.table.mark_dead(slot, "slow consumer");
            total = total.saturating_sub(bytes);
        }
    }

    /// A `RateLimited` refusal with the time after which the request would be taken.
    pub(super) fn send_rate_limited(&mut self, slot: usize, request_id: u32, message: &str, wait: Duration) {
        let bytes = frame::encode(&ServerFrame::rate_limited(request_id, message, wait));
        self.queue(slot, &bytes);
    }

    /// `Unavailable`: the node the request is for cannot be reached now.
    pub(super) fn send_unavailable(&mut self, slot: usize, request_id: u32, message: String) {
        let bytes = frame::encode(&ServerFrame::unavailable(request_id, message, UNAVAILABLE_RETRY));
        self.queue(slot, &bytes);
    }

    pub(super) fn write_pending(&mut self) {
        for slot in self.table.take_to_write() {
            let Some(conn) = self.table.get_mut(slot) else {
                continue;
            };
            if conn.life == Life::Dead || conn.pending_out() == 0 {
                continue;
            }
            let before = conn.pending_out();
            let result = conn.write_to_socket();
            let (id, written) = (conn.id, before - conn.pending_out());
            let flushed_close = conn.pending_out() == 0 && matches!(conn.life, Life::Closing { .. });
            self.table.ledger().release(id, written);
            match result {
                Ok(_) if flushed_close => self.table.mark_dead(slot, "closed by the server"),
                Ok(_) => {}
                Err(e) => {
                    debug!("{id:?} write failed: {e}");
                    self.table.mark_dead(slot, "connection error");
                }
            }
        }
    }

    pub(super) fn close_after_flush(&mut self, slot: usize, reason: &'static str) {
        if let Some(conn) = self.table.get_mut(slot) {
            if conn.is_open() {
                conn.close_reason = reason;
                conn.life = Life::Closing { since: Instant::now() };
                let flushed = conn.pending_out() == 0;
                // An empty buffer would never produce the write that completes the close.
                self.table.mark_for_write(slot);
                if flushed {
                    self.table.mark_dead(slot, reason);
                }
            }
        }
    }
}

/// Why a connection closed after an error of this code (for services watching connections).
fn close_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UnsupportedVersion => "unsupported protocol version",
        ErrorCode::FrameTooLarge => "frame too large",
        ErrorCode::HelloRequired => "protocol error",
        ErrorCode::SlowConsumer => "slow consumer",
        ErrorCode::IdleTimeout => "idle timeout",
        ErrorCode::ShuttingDown => "server shutting down",
        ErrorCode::ServerFull => "server full",
        _ => "closed by the server",
    }
}
