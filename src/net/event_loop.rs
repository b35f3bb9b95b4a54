//! The event loop: one thread, one mio `Poll`, every socket. It accepts, reads, splits
//! frames, decodes them, admits or refuses each request by connection state, hands the rest
//! to workers, and writes what workers send back. It never touches disk and never hashes.
//!
//! Each turn: handle readiness events, take the workers' batches, retry connections with
//! work left over (a spent read budget or a full worker queue), write every connection
//! with pending output, then reap closed connections. Closing is deferred to the end of
//! the turn so no event handler ever finds its connection gone.

use super::conn::{Conn, Life, Phase, ReadOutcome};
use super::gate::{admit, Admission};
use super::limits::PerAddress;
use super::{ConnId, LoopMsg, SessionUser};
use crate::config::Config;
use crate::frame::{self, FrameError};
use crate::metrics::Metrics;
use crate::protocol::{ClientFrame, ErrorCode, Push, Reply, ServerFrame, NO_REQUEST, PROTOCOL_VERSION};
use crate::worker::{Pool, WorkerCmd};
use crossbeam_channel::{Receiver, TryRecvError};
use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes read per connection per turn before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
const SCRATCH: usize = 64 * 1024;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Asks a running loop to shut down; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct LoopHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl LoopHandle {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the event loop to stop it: {e}");
        }
    }
}

/// Where shutdown stands.
#[derive(PartialEq, Eq)]
enum Shutdown {
    Running,
    /// Not accepting or reading; workers finish their queues and commit.
    DrainingWorkers,
    /// Workers are gone; clients were told; writing what is left until the deadline.
    Flushing {
        deadline: Instant,
    },
}

pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    serial: u32,
    pool: Pool,
    from_workers: Receiver<Vec<LoopMsg>>,
    config: Arc<Config>,
    stop: Arc<AtomicBool>,
    shutdown: Shutdown,
    /// Connections with queued output.
    to_write: Vec<usize>,
    /// Connections with input left over from an earlier turn.
    backlog: Vec<usize>,
    /// Connections to reap at the end of the turn.
    dead: Vec<usize>,
    /// "Connection closed" notices a full worker queue refused; they must not be lost, or
    /// a worker would think a vanished user is still online.
    closed_notices: VecDeque<(usize, WorkerCmd)>,
    per_address: PerAddress,
    scratch: Box<[u8]>,
    metrics: Arc<Metrics>,
    /// The Hello reply: the same for every connection.
    hello: Reply,
}

impl EventLoop {
    /// Creates the poll, the workers' waker, and registers the listener. The pool is
    /// started after this (it needs the waker) and handed to [`EventLoop::new`].
    pub fn prepare(listener: &mut TcpListener) -> io::Result<(Poll, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry().register(listener, LISTENER, Interest::READABLE)?;
        Ok((poll, waker))
    }

    pub fn new(
        poll: Poll,
        listener: TcpListener,
        waker: Arc<Waker>,
        pool: Pool,
        from_workers: Receiver<Vec<LoopMsg>>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
    ) -> (EventLoop, LoopHandle) {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = LoopHandle { stop: stop.clone(), waker };
        let hello = Reply::Hello {
            version: PROTOCOL_VERSION,
            server: format!("confabd {}", env!("CARGO_PKG_VERSION")),
            max_frame: config.max_frame,
            max_body: config.max_body,
            heartbeat_secs: config.heartbeat.as_secs() as u32,
            idle_timeout_secs: config.idle_timeout.as_secs() as u32,
            delivery_window: config.delivery_window,
        };
        let event_loop = EventLoop {
            poll,
            listener: Some(listener),
            conns: Slab::with_capacity(1024),
            serial: 0,
            pool,
            from_workers,
            config,
            stop,
            shutdown: Shutdown::Running,
            to_write: Vec::new(),
            backlog: Vec::new(),
            dead: Vec::new(),
            closed_notices: VecDeque::new(),
            per_address: PerAddress::default(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            metrics,
            hello,
        };
        (event_loop, handle)
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            let timeout = if self.backlog.is_empty() && self.closed_notices.is_empty() {
                SWEEP_EVERY
            } else {
                Duration::from_millis(1)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    error!("poll failed, stopping: {e}");
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(token) => {
                        let slot = token - FIRST_CONN;
                        if event.is_writable() && self.conns.contains(slot) {
                            self.to_write.push(slot);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.service(slot);
                        }
                    }
                }
            }
            let workers_gone = self.take_from_workers();
            self.retry_closed_notices();
            for slot in std::mem::take(&mut self.backlog) {
                self.service(slot);
            }
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP_EVERY {
                last_sweep = now;
                self.sweep(now);
            }
            self.write_pending();
            self.reap();
            if self.advance_shutdown(workers_gone, now) {
                break;
            }
        }
        info!("event loop stopped");
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let refusal = if self.conns.len() >= self.config.max_connections {
                        Some("too many connections")
                    } else if !self.per_address.admit(peer.ip(), self.config.max_connections_per_ip) {
                        Some("too many connections from your address")
                    } else {
                        None
                    };
                    if let Some(reason) = refusal {
                        // Best effort: the socket is fresh, so a small frame fits its buffer.
                        let _ = stream.write(&frame::encode(&error_frame(NO_REQUEST, ErrorCode::ServerFull, reason)));
                        warn!("refused {peer}: {reason}");
                        continue;
                    }
                    if let Err(e) = self.add_conn(stream, peer) {
                        self.per_address.release(peer.ip());
                        warn!("could not register {peer}: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Typically out of file descriptors; the sweep tries again.
                    warn!("accept failed: {e}");
                    break;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        // Readable and writable once, for good: edge-triggered readiness costs nothing
        // while idle, and saves a re-registration each time output backs up.
        self.poll.registry().register(
            &mut stream,
            Token(slot + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.serial = self.serial.wrapping_add(1);
        let id = ConnId::new(self.serial, slot);
        entry.insert(Conn::new(id, stream, peer, self.config.request_burst, Instant::now()));
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        debug!("connection {id:?} from {peer} accepted");
        Ok(())
    }

    /// Moves a connection's input along: the stalled command, buffered frames, then the socket.
    fn service(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if !conn.is_open() || self.shutdown != Shutdown::Running {
            return;
        }
        if let Some((worker, cmd)) = conn.stalled.take() {
            if let Err(cmd) = self.pool.try_send(worker, cmd) {
                conn.stalled = Some((worker, cmd));
                self.backlog.push(slot);
                return;
            }
        }
        if !self.decode_frames(slot) {
            return;
        }
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match conn.read_from_socket(&mut self.scratch, READ_BUDGET) {
            ReadOutcome::Drained => {
                self.decode_frames(slot);
            }
            ReadOutcome::BudgetSpent => {
                if self.decode_frames(slot) {
                    self.backlog.push(slot);
                }
            }
            ReadOutcome::Closed => {
                // Handle what arrived before the close: a client may send and hang up.
                self.decode_frames(slot);
                self.kill(slot, "closed by the client");
            }
        }
    }

    /// Handles every complete frame buffered; false when the connection cannot take more
    /// input now (stalled on a worker, or closing).
    fn decode_frames(&mut self, slot: usize) -> bool {
        let max = self.config.max_frame;
        loop {
            let Some(conn) = self.conns.get_mut(slot) else {
                return false;
            };
            if !conn.is_open() {
                return false;
            }
            if conn.stalled.is_some() {
                conn.compact_input();
                self.backlog.push(slot);
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
                    self.send_error(slot, NO_REQUEST, ErrorCode::FrameTooLarge, "frame exceeds max_frame");
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
                self.send_error(slot, request_id, ErrorCode::RateLimited, "slow down");
                // A client that ignores a whole burst of refusals is not going to stop.
                if self.conns.get(slot).is_some_and(|c| c.budget.refused > burst) {
                    warn!("{:?} keeps exceeding its request rate; closing", self.conns[slot].id);
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
        let conn = &mut self.conns[slot];
        let ClientFrame { request_id, request } = frame;
        let owner = match admit(conn.phase, conn.user.as_ref(), &request) {
            Admission::Hello => {
                conn.phase = Phase::Ready;
                let bytes = frame::encode(&ServerFrame::Reply { request_id, reply: self.hello.clone() });
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
            Admission::Worker(owner) => self.pool.partition(owner),
        };
        let cmd =
            WorkerCmd::Request { conn: conn.id, peer: conn.peer.ip(), user: conn.user.clone(), request_id, request };

        if let Err(cmd) = self.pool.try_send(owner, cmd) {
            // Backpressure: hold the command and read nothing more from this client
            // until its worker has room.
            conn.stalled = Some((owner, cmd));
        }
    }

    /// Takes every batch the workers have sent; true once every worker has exited.
    fn take_from_workers(&mut self) -> bool {
        loop {
            match self.from_workers.try_recv() {
                Ok(batch) => {
                    for msg in batch {
                        self.apply_worker_msg(msg);
                    }
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn apply_worker_msg(&mut self, msg: LoopMsg) {
        match msg {
            LoopMsg::Frames { conn, bytes } => {
                if self.live(conn).is_some() {
                    self.queue(conn.slot(), &bytes);
                }
            }
            LoopMsg::Bind { conn, user } => match self.live(conn) {
                Some(c) if c.is_open() => match &c.user {
                    Some(existing) if existing.name != user.name => {
                        // Two logins raced on one connection; trust neither.
                        self.send_error(conn.slot(), NO_REQUEST, ErrorCode::BadRequest, "concurrent logins");
                        self.close_after_flush(conn.slot(), "protocol error");
                        self.notify_closed(conn, user, "protocol error");
                    }
                    _ => c.user = Some(user),
                },
                // The client left while its login was checked: the worker must forget the
                // session it just opened.
                _ => self.notify_closed(conn, user, "closed during login"),
            },
            LoopMsg::Unbind { conn } => {
                if let Some(c) = self.live(conn) {
                    c.user = None;
                }
            }
            LoopMsg::Close { conn, reason } => {
                if self.live(conn).is_some() {
                    self.close_after_flush(conn.slot(), reason);
                }
            }
        }
    }

    /// The connection with this id, if it is still the one in its slot.
    fn live(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.slot()).filter(|c| c.id == id && c.life != Life::Dead)
    }

    fn queue(&mut self, slot: usize, bytes: &[u8]) {
        let conn = &mut self.conns[slot];
        if conn.life == Life::Dead {
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

    fn send_error(&mut self, slot: usize, request_id: u32, code: ErrorCode, message: &str) {
        let bytes = frame::encode(&error_frame(request_id, code, message));
        self.queue(slot, &bytes);
        if code.closes() {
            self.close_after_flush(slot, close_reason(code));
        }
    }

    fn write_pending(&mut self) {
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

    fn close_after_flush(&mut self, slot: usize, reason: &'static str) {
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
    fn kill(&mut self, slot: usize, reason: &'static str) {
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

    fn reap(&mut self) {
        for slot in std::mem::take(&mut self.dead) {
            if !self.conns.contains(slot) {
                continue;
            }
            let mut conn = self.conns.remove(slot);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.per_address.release(conn.peer.ip());
            debug!("connection {:?} closed", conn.id);
            self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            if let Some(user) = conn.user.take() {
                self.notify_closed(conn.id, user, conn.close_reason);
            }
        }
    }

    /// Every worker may hold something for the connection (a session, group cursors,
    /// rooms, subscriptions), so every worker hears of it.
    fn notify_closed(&mut self, conn: ConnId, user: SessionUser, reason: &'static str) {
        for worker in 0..self.pool.workers() {
            self.closed_notices.push_back((worker, WorkerCmd::Closed { conn, user: user.clone(), reason }));
        }
        self.retry_closed_notices();
    }

    fn retry_closed_notices(&mut self) {
        while let Some((worker, cmd)) = self.closed_notices.pop_front() {
            if let Err(cmd) = self.pool.try_send(worker, cmd) {
                self.closed_notices.push_front((worker, cmd));
                return;
            }
        }
    }

    /// Closes connections silent past the idle timeout, and closing ones past the grace;
    /// samples the metrics.
    fn sweep(&mut self, now: Instant) {
        let queued: usize = self.conns.iter().map(|(_, c)| c.pending_out()).sum();
        self.metrics.outbound_bytes.store(queued as u64, Ordering::Relaxed);
        self.metrics.sample(now);
        let idle = self.config.idle_timeout;
        let grace = self.config.shutdown_grace;
        let mut timed_out = Vec::new();
        for (slot, conn) in self.conns.iter() {
            match conn.life {
                Life::Open if now.duration_since(conn.last_heard) > idle => timed_out.push((slot, true)),
                Life::Closing { since } if now.duration_since(since) > grace => timed_out.push((slot, false)),
                _ => {}
            }
        }
        for (slot, idle) in timed_out {
            if idle {
                debug!("{:?} idle for over {idle:?}; closing", self.conns[slot].id);
                self.send_error(slot, NO_REQUEST, ErrorCode::IdleTimeout, "no frame within the idle timeout");
            } else {
                self.kill(slot, "closed by the server");
            }
        }
        // An accept that failed for lack of descriptors is not signalled again.
        self.accept();
    }

    /// Drives the shutdown phases; true when the loop should exit.
    fn advance_shutdown(&mut self, workers_gone: bool, now: Instant) -> bool {
        match self.shutdown {
            Shutdown::Running if self.stop.load(Ordering::SeqCst) => {
                info!("shutting down: no new connections or requests");
                if let Some(mut listener) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut listener);
                }
                self.pool.stop();
                self.shutdown = Shutdown::DrainingWorkers;
                false
            }
            Shutdown::Running => false,
            Shutdown::DrainingWorkers if workers_gone => {
                let farewell = frame::encode(&ServerFrame::Push(Push::ShuttingDown));
                let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
                for slot in slots {
                    if self.conns[slot].is_open() {
                        self.queue(slot, &farewell);
                        self.close_after_flush(slot, "server shutting down");
                    }
                }
                self.write_pending();
                self.reap();
                self.shutdown = Shutdown::Flushing { deadline: now + self.config.shutdown_grace };
                self.conns.is_empty()
            }
            Shutdown::DrainingWorkers => false,
            Shutdown::Flushing { deadline } => self.conns.is_empty() || now >= deadline,
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

fn error_frame(request_id: u32, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error { request_id, code, message: message.to_string() }
}

/// The request id is the first field of every client frame; recover it from a frame whose
/// request did not decode, so the error can still be matched to the request.
fn salvage_request_id(body: &[u8]) -> u32 {
    postcard::take_from_bytes::<u32>(body).map(|(id, _)| id).unwrap_or(NO_REQUEST)
}
