//! The event loop's output side: each connection's bounded output buffer (a client that
//! stops reading is cut off as a slow consumer), writes until the socket would block, and
//! closing: after the queued output is written, or at once.

use super::conn::Life;
use super::event_loop::EventLoop;
use crate::frame;
use crate::protocol::{ErrorCode, ServerFrame, NO_REQUEST};
use log::{debug, warn};
use std::time::{Duration, Instant};

impl EventLoop {
    pub(super) fn queue(&mut self, slot: usize, bytes: &[u8]) {
        let conn = &mut self.conns[slot];
        // Once a connection is closing, what it was last told (the reason) stays last.
        if !conn.is_open() {
            return;
        }
        if conn.pending_out() + bytes.len() > self.config.max_outbound {
            // Output beyond the bound is dropped, never buffered: a client that stops
            // reading costs at most max_outbound. What it missed of stored messages stays
            // stored, unacknowledged, for its next session.
            if conn.is_open() {
                warn!("{:?} is not reading its output; closing it as a slow consumer", conn.id);
                let notice = error_frame(NO_REQUEST, ErrorCode::SlowConsumer, "output buffer limit reached");
                conn.write_buf.extend_from_slice(&frame::encode(&notice));
                self.close_after_flush(slot, "slow consumer");
            }
            return;
        }
        if conn.pending_out() == 0 {
            self.to_write.push(slot);
        }
        conn.write_buf.extend_from_slice(bytes);
    }

    pub(super) fn send_error(&mut self, slot: usize, request_id: u32, code: ErrorCode, message: &str) {
        let bytes = frame::encode(&error_frame(request_id, code, message));
        self.queue(slot, &bytes);
        if code.closes() {
            self.close_after_flush(slot, close_reason(code));
        }
    }

    /// A `RateLimited` refusal with the time after which the request would be taken.
    pub(super) fn send_rate_limited(&mut self, slot: usize, request_id: u32, message: &str, wait: Duration) {
        let bytes = frame::encode(&ServerFrame::rate_limited(request_id, message, wait));
        self.queue(slot, &bytes);
    }

    pub(super) fn write_pending(&mut self) {
        for slot in std::mem::take(&mut self.to_write) {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.life == Life::Dead || conn.pending_out() == 0 {
                continue;
            }
            match conn.write_to_socket() {
                Ok(()) if conn.pending_out() == 0 && matches!(conn.life, Life::Closing { .. }) => {
                    self.kill(slot, "closed by the server")
                }
                Ok(()) => {}
                Err(e) => {
                    debug!("{:?} write failed: {e}", conn.id);
                    self.kill(slot, "connection error");
                }
            }
        }
    }

    pub(super) fn close_after_flush(&mut self, slot: usize, reason: &'static str) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if conn.is_open() {
                conn.close_reason = reason;
                conn.life = Life::Closing { since: Instant::now() };
                // An empty buffer would never produce the write that completes the close.
                self.to_write.push(slot);
                if conn.pending_out() == 0 {
                    self.kill(slot, reason);
                }
            }
        }
    }

    /// Marks the connection for reaping; `reason` counts only if no earlier decision to
    /// close it gave one.
    pub(super) fn kill(&mut self, slot: usize, reason: &'static str) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if conn.is_open() {
                conn.close_reason = reason;
            }
            if conn.life != Life::Dead {
                conn.life = Life::Dead;
                self.dead.push(slot);
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

pub(super) fn error_frame(request_id: u32, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::error(request_id, code, message)
}
