//! The event loop's input side: reading a connection's socket within a per-turn budget,
//! splitting frames, decoding them, applying the request budget, admitting each request by
//! connection state, and handing it to its worker (or holding it while that worker's queue
//! is full: backpressure).

use super::EventLoop;
use crate::apps::{wire::qualify_request, Apps};
use crate::config::Config;
use crate::frame::{self, FrameError};
use crate::net::conn::{Phase, ReadOutcome};
use crate::net::gate::{admit, Admission};
use crate::protocol::{
    valid_app_name, ClientFrame, ErrorCode, Limits, Reply, Request, ServerFrame, NO_REQUEST, PROTOCOL_VERSION,
};
use crate::route::{Destination, Inbound};
use log::{debug, warn};
use std::sync::Arc;
use std::time::Instant;

/// Bytes read per connection per turn before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
const SCRATCH: usize = 64 * 1024;

/// What the input side keeps for every connection alike.
pub struct Intake {
    /// Where reads land before they join a connection's buffer.
    scratch: Box<[u8]>,
    /// The Hello reply: the same for every connection.
    hello: Reply,
    /// The apps a Hello may name.
    apps: Apps,
}

impl Intake {
    pub fn new(config: &Config, apps: Apps) -> Self {
        let hello = Reply::Hello {
            version: PROTOCOL_VERSION,
            server: format!("confabd {}", env!("CARGO_PKG_VERSION")),
            max_frame: config.max_frame,
            max_body: config.max_body,
            heartbeat_secs: config.heartbeat.as_secs() as u32,
            idle_timeout_secs: config.idle_timeout.as_secs() as u32,
            delivery_window: config.delivery_window,
            limits: Limits {
                request_rate: config.request_rate,
                request_burst: config.request_burst,
                delivery_window_bytes: saturate(config.delivery_window_bytes as u64),
                max_outbound: saturate(config.max_outbound as u64),
                token_ttl_secs: saturate(config.token_ttl.as_secs()),
                max_frame_before_login: config.max_frame_before_login,
            },
        };
        Intake { scratch: vec![0; SCRATCH].into_boxed_slice(), hello, apps }
    }
}

impl EventLoop {
    /// Moves a connection's input along: the stalled command, buffered frames, then the
    /// socket. Only while the loop is running: the caller checks.
    pub(super) fn service(&mut self, slot: usize) {
        let Some(conn) = self.table.get_mut(slot) else {
            return;
        };
        if !conn.is_open() {
            return;
        }
        if let Some((to, request)) = conn.stalled.take() {
            if let Err(request) = self.router.try_send(to, request) {
                conn.stalled = Some((to, request));
                self.table.mark_for_backlog(slot);
                return;
            }
        }
        if !self.decode_frames(slot) {
            return;
        }
        let Some(conn) = self.table.get_mut(slot) else {
            return;
        };
        match conn.read_from_socket(&mut self.intake.scratch, READ_BUDGET) {
            ReadOutcome::Drained => {
                self.decode_frames(slot);
            }
            ReadOutcome::BudgetSpent => {
                if self.decode_frames(slot) {
                    self.table.mark_for_backlog(slot);
                }
            }
            ReadOutcome::Closed => {
                // Handle what arrived before the close: a client may send and hang up.
                self.decode_frames(slot);
                self.table.mark_dead(slot, "closed by the client");
            }
        }
    }

    /// Handles every complete frame buffered; false when the connection cannot take more
    /// input now (stalled on a worker, or closing).
    fn decode_frames(&mut self, slot: usize) -> bool {
        loop {
            let Some(conn) = self.table.get_mut(slot) else {
                return false;
            };
            // Before login, a stranger's partial frame may hold only a small buffer.
            let (max, limit_name) = match conn.user {
                Some(_) => (self.config.max_frame, "frame exceeds max_frame"),
                None => (self.config.max_frame_before_login, "frame exceeds max_frame_before_login"),
            };
            if !conn.is_open() {
                return false;
            }
            if conn.stalled.is_some() {
                conn.compact_input();
                self.table.mark_for_backlog(slot);
                return false;
            }
            let decoded = match frame::split(conn.unread(), max) {
                Ok(None) => {
                    conn.compact_input();
                    return true;
                }
                Ok(Some((body, used))) => {
                    let decoded = frame::decode_body::<ClientFrame>(body).map_err(|e| (salvage_request_id(body), e));
                    conn.read_pos += used;
                    decoded
                }
                Err(FrameError::TooLarge { len, max }) => {
                    warn!("{:?} sent a {len}-byte frame (limit {max}); closing", conn.id);
                    self.send_error(slot, NO_REQUEST, ErrorCode::FrameTooLarge, limit_name);
                    return false;
                }
                Err(e) => {
                    warn!("{:?} sent garbage ({e}); closing", conn.id);
                    self.send_error(slot, NO_REQUEST, ErrorCode::BadRequest, "zero-length frame");
                    self.close_after_flush(slot, "protocol error");
                    return false;
                }
            };
            let now = Instant::now();
            conn.last_heard = now;
            let (rate, burst) = (self.config.request_rate, self.config.request_burst);
            if !conn.budget.allow(rate, burst, now) {
                let request_id = decoded.as_ref().map_or_else(|(id, _)| *id, |f| f.request_id);
                let wait = conn.budget.wait(rate);
                self.send_rate_limited(slot, request_id, "slow down", wait);
                // A client that ignores a whole burst of refusals is not going to stop.
                if self.table.get(slot).is_some_and(|c| c.budget.refused > burst) {
                    warn!("{:?} keeps exceeding its request rate; closing", self.table[slot].id);
                    self.close_after_flush(slot, "rate limited");
                    return false;
                }
                continue;
            }
            match decoded {
                Ok(frame) => self.admit_frame(slot, frame),
                Err((request_id, e)) => {
                    // The length prefix was sound, so the stream is still in step: refuse
                    // this frame and carry on.
                    debug!("undecodable frame: {e}");
                    self.send_error(slot, request_id, ErrorCode::BadRequest, "malformed or unknown request");
                }
            }
        }
    }

    fn admit_frame(&mut self, slot: usize, frame: ClientFrame) {
        let conn = &mut self.table[slot];
        let ClientFrame { request_id, mut request } = frame;
        if conn.phase == Phase::Ready {
            qualify_request(&mut request, &conn.app);
        }
        let admission = admit(conn.phase, conn.user.as_ref(), &request);
        // In a cluster, who is online and the rooms are every node's: the bus gathers them.
        if let (Admission::Forward(_), Some(elsewhere)) = (&admission, self.router.elsewhere()) {
            if elsewhere.gather(conn.id, request_id, &request, conn.user.as_ref()) {
                return;
            }
        }
        let to = match admission {
            Admission::Hello(app) => {
                let Some(entry) = self.intake.apps.get(app) else {
                    let message = match valid_app_name(app) {
                        true => format!("no app named {app} on this server"),
                        false => "not a valid app name".to_string(),
                    };
                    self.send_error(slot, request_id, ErrorCode::UnknownApp, &message);
                    return;
                };
                conn.app = Arc::from(entry.name.as_str());
                conn.phase = Phase::Ready;
                let bytes = frame::encode(&ServerFrame::Reply { request_id, reply: self.intake.hello.clone() });
                self.queue(slot, &bytes);
                return;
            }
            Admission::Pong => {
                let bytes = frame::encode(&ServerFrame::Reply { request_id, reply: Reply::Pong });
                self.queue(slot, &bytes);
                return;
            }
            Admission::Refuse(code, message) => {
                self.send_error(slot, request_id, code, message);
                return;
            }
            Admission::Forward(owner) => self.router.destination(owner),
        };
        if let (Destination::Remote { node, .. }, Some(elsewhere)) = (to, self.router.elsewhere()) {
            if request.is_login() {
                // The user lives on another node: send the client there, unless that node
                // is known to be down (then nothing here or there can serve it now).
                let address = elsewhere.address_of(node).unwrap_or_default();
                match elsewhere.is_down(node) {
                    true => self.send_unavailable(slot, request_id, format!("node {node} is unavailable")),
                    false => {
                        let reply = Reply::Redirect { node: u32::from(node), address };
                        self.queue(slot, &frame::encode(&ServerFrame::Reply { request_id, reply }));
                    }
                }
                return;
            }
            if let Some(why) = elsewhere.refusal(node) {
                self.send_unavailable(slot, request_id, why);
                return;
            }
            let conn = &mut self.table[slot];
            if !conn.remote_nodes.contains(&node) {
                conn.remote_nodes.push(node);
            }
        }
        let conn = &mut self.table[slot];
        if let (Request::WatchConnections, Some(elsewhere)) = (&request, self.router.elsewhere()) {
            // Every node will push this service connection events: all of them must hear
            // when its session ends.
            for node in elsewhere.others() {
                if !conn.remote_nodes.contains(&node) {
                    conn.remote_nodes.push(node);
                }
            }
        }
        let inbound =
            Inbound::Request { conn: conn.id, peer: conn.peer.ip(), user: conn.user.clone(), request_id, request };
        if let Err(inbound) = self.router.try_send(to, inbound) {
            // Backpressure: hold the request and read nothing more from this client
            // until its owner has room.
            conn.stalled = Some((to, inbound));
        }
    }
}

/// A limit as the u32 the Hello reply carries; a larger one is announced as u32::MAX.
fn saturate(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The request id is the first field of every client frame; recover it from a frame whose
/// request did not decode, so the error can still be matched to the request.
fn salvage_request_id(body: &[u8]) -> u32 {
    postcard::take_from_bytes::<u32>(body).map(|(id, _)| id).unwrap_or(NO_REQUEST)
}
