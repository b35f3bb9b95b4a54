//! The event loop: one thread, one mio `Poll`, every socket. It accepts, reads, splits
//! frames, decodes them, admits or refuses each request by connection state, hands the rest
//! to workers, and writes what workers send back. It never touches disk and never hashes.
//!
//! Each turn: handle readiness events, take the workers' batches, retry connections with
//! work left over (a spent read budget or a full worker queue), write every connection
//! with pending output, then reap closed connections. Closing is deferred to the end of
//! the turn so no event handler ever finds its connection gone.

mod input;
mod output;

use super::accept::{Door, FIRST_CONN};
use super::conn::{Conn, Life, Phase};
use super::table::{ConnTable, Login};
use crate::apps::Apps;
use crate::config::Config;
use crate::frame;
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Push, ServerFrame, NO_REQUEST};
use crate::route::{ConnId, Destination, Inbound, LoopMsg, OutputLedger, Router, SessionUser};
use crossbeam_channel::{Receiver, TryRecvError};
use input::Intake;
use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
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
    door: Door,
    // The input and output sides (input.rs, output.rs) are impl blocks of this type and
    // need these four: the table and config both, the router and the intake the input side.
    pub(super) table: ConnTable,
    pub(super) config: Arc<Config>,
    pub(super) router: Router,
    /// Its fields are private to input.rs.
    pub(super) intake: Intake,
    from_workers: Receiver<Vec<LoopMsg>>,
    stop: Arc<AtomicBool>,
    shutdown: Shutdown,
    /// "Connection closed" notices a full worker queue refused; they must not be lost, or
    /// a worker would think a vanished user is still online.
    closed_notices: VecDeque<(Destination, Inbound)>,
    metrics: Arc<Metrics>,
}

impl EventLoop {
    /// Creates the poll, the workers' waker, and registers the listener. The workers
    /// are started after this (they need the waker); their router is handed to [`EventLoop::new`].
    pub fn prepare(listener: &mut TcpListener) -> io::Result<(Poll, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry().register(listener, LISTENER, Interest::READABLE)?;
        Ok((poll, waker))
    }

    // Each is a separate piece of the server handed over once at start; a struct for
    // them would only be taken apart again here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        waker: Arc<Waker>,
        router: Router,
        from_workers: Receiver<Vec<LoopMsg>>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        ledger: Arc<OutputLedger>,
        apps: Apps,
    ) -> (EventLoop, LoopHandle) {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = LoopHandle { stop: stop.clone(), waker };
        let event_loop = EventLoop {
            poll,
            door: Door::new(listener),
            table: ConnTable::new(&config, ledger, metrics.clone()),
            router,
            intake: Intake::new(&config, apps),
            config,
            from_workers,
            stop,
            shutdown: Shutdown::Running,
            closed_notices: VecDeque::new(),
            metrics,
        };
        (event_loop, handle)
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            let timeout = if !self.table.has_backlog() && self.closed_notices.is_empty() {
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
                        if event.is_writable() && self.table.contains(slot) {
                            self.table.mark_for_write(slot);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.take_input(slot);
                        }
                    }
                }
            }
            let workers_gone = self.take_from_workers();
            self.retry_closed_notices();
            for slot in self.table.take_backlog() {
                self.take_input(slot);
            }
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP_EVERY {
                last_sweep = now;
                self.sweep(now);
            }
            self.write_pending();
            self.shed_output();
            self.reap();
            if self.advance_shutdown(workers_gone, now) {
                break;
            }
        }
        info!("event loop stopped");
    }

    /// Once shutdown has begun no request is read, so connections with input left over
    /// simply keep it.
    fn take_input(&mut self, slot: usize) {
        if self.shutdown == Shutdown::Running {
            self.service(slot);
        }
    }

    fn accept(&mut self) {
        self.door.accept(&mut self.table, self.poll.registry(), &self.config);
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
                if self.table.live(conn).is_some() {
                    self.queue_owned(conn.slot(), bytes);
                } else {
                    self.table.ledger().release(conn, bytes.len());
                }
            }
            LoopMsg::Shared { conn, bytes } => {
                if self.table.live(conn).is_some() {
                    self.queue_shared(conn.slot(), bytes);
                } else {
                    self.table.ledger().release(conn, bytes.len());
                }
            }
            LoopMsg::Cut { conn } => {
                if self.table.live(conn).is_some() {
                    self.cut_slow_consumer(conn.slot());
                }
            }
            LoopMsg::Bind { conn, user } => match self.table.log_in(conn, user) {
                Login::Bound => {}
                Login::Conflict(user) => {
                    // Two logins raced on one connection; trust neither.
                    self.send_error(conn.slot(), NO_REQUEST, ErrorCode::BadRequest, "concurrent logins");
                    self.close_after_flush(conn.slot(), "protocol error");
                    self.notify_closed(conn, user, "protocol error");
                }
                // The client left while its login was checked: the worker must forget the
                // session it just opened.
                Login::Gone(user) => self.notify_closed(conn, user, "closed during login"),
            },
            LoopMsg::Unbind { conn } => {
                // Other nodes holding something for the session forget it, as at a close.
                if let Some(c) = self.table.live_mut(conn) {
                    if let Some(user) = c.user.clone() {
                        let nodes = std::mem::take(&mut c.remote_nodes);
                        self.tell_other_nodes(conn, user, nodes);
                    }
                }
                self.table.log_out(conn, Instant::now());
            }
            LoopMsg::Close { conn, reason } => {
                if self.table.live(conn).is_some() {
                    self.close_after_flush(conn.slot(), reason);
                }
            }
            LoopMsg::Reached { conn, node, user } => match self.table.live_mut(conn) {
                Some(c) if c.user.as_ref().is_some_and(|u| u.name == user.name && u.device == user.device) => {
                    if !c.remote_nodes.contains(&node) {
                        c.remote_nodes.push(node);
                    }
                }
                // The session ended before the loop heard: the node hears it now (after
                // what the worker told it, which went out first).
                _ => self.tell_other_nodes(conn, user, vec![node]),
            },
        }
    }

    fn reap(&mut self) {
        for slot in self.table.take_dead() {
            let Some(mut conn) = self.table.remove(slot) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut conn.stream);
            debug!("connection {:?} closed", conn.id);
            if let Some(user) = conn.user.take() {
                self.tell_other_nodes(conn.id, user.clone(), std::mem::take(&mut conn.remote_nodes));
                self.notify_closed(conn.id, user, conn.close_reason);
            }
        }
    }

    /// Every worker may hold something for the connection (a session, group cursors,
    /// rooms, subscriptions), so every worker hears of it.
    fn notify_closed(&mut self, conn: ConnId, user: SessionUser, reason: &'static str) {
        for to in self.router.everywhere() {
            self.closed_notices.push_back((to, Inbound::Closed { conn, user: user.clone(), reason }));
        }
        self.retry_closed_notices();
    }

    /// In a cluster, the other nodes the session used hear that it ended.
    fn tell_other_nodes(&mut self, conn: ConnId, user: SessionUser, nodes: Vec<u8>) {
        if let (false, Some(elsewhere)) = (nodes.is_empty(), self.router.elsewhere()) {
            elsewhere.closed(nodes, conn, user);
        }
    }

    fn retry_closed_notices(&mut self) {
        while let Some((to, notice)) = self.closed_notices.pop_front() {
            if let Err(notice) = self.router.try_send(to, notice) {
                self.closed_notices.push_front((to, notice));
                return;
            }
        }
    }

    /// Closes connections silent past the idle timeout, connections past the Hello or
    /// login deadline, and closing ones past the grace; samples the metrics; sums up
    /// refused connections.
    fn sweep(&mut self, now: Instant) {
        // Everything owed to clients: in output buffers, and on its way from the workers.
        self.metrics.outbound_bytes.store(self.table.ledger().total(), Ordering::Relaxed);
        self.metrics.sample(now);
        let mut timed_out = Vec::new();
        for (slot, conn) in self.table.iter() {
            if let Some(expired) = self.expired(conn, now) {
                timed_out.push((slot, expired));
            }
        }
        for (slot, expired) in timed_out {
            match expired {
                Some(message) => {
                    debug!("{:?}: {message}; closing", self.table[slot].id);
                    self.send_error(slot, NO_REQUEST, ErrorCode::IdleTimeout, message);
                }
                None => self.table.mark_dead(slot, "closed by the server"),
            }
        }
        if let Some(line) = self.door.refusal_summary(now) {
            warn!("{line}");
        }
        // An accept that failed for lack of descriptors is not signalled again.
        self.accept();
    }

    /// Whether a connection is past a deadline: Some(the IdleTimeout message) for an open
    /// one, None for a closing one past the grace.
    fn expired(&self, conn: &Conn, now: Instant) -> Option<Option<&'static str>> {
        let config = &self.config;
        match conn.life {
            Life::Open if now.duration_since(conn.last_heard) > config.idle_timeout => {
                Some(Some("no frame within the idle timeout"))
            }
            Life::Open if conn.user.is_none() => {
                let waited = now.duration_since(conn.unauthenticated_since);
                if conn.phase == Phase::AwaitHello && waited > config.hello_timeout {
                    Some(Some("no Hello within the handshake deadline"))
                } else if waited > config.login_timeout {
                    Some(Some("no login within the login deadline"))
                } else {
                    None
                }
            }
            Life::Closing { since } if now.duration_since(since) > config.shutdown_grace => Some(None),
            _ => None,
        }
    }

    /// Drives the shutdown phases; true when the loop should exit.
    fn advance_shutdown(&mut self, workers_gone: bool, now: Instant) -> bool {
        match self.shutdown {
            Shutdown::Running if self.stop.load(Ordering::SeqCst) => {
                info!("shutting down: no new connections or requests");
                self.door.close(self.poll.registry());
                self.router.stop();
                self.shutdown = Shutdown::DrainingWorkers;
                false
            }
            Shutdown::Running => false,
            Shutdown::DrainingWorkers if workers_gone => {
                let farewell = frame::encode(&ServerFrame::Push(Push::ShuttingDown));
                let slots: Vec<usize> = self.table.iter().map(|(slot, _)| slot).collect();
                for slot in slots {
                    if self.table[slot].is_open() {
                        self.queue(slot, &farewell);
                        self.close_after_flush(slot, "server shutting down");
                    }
                }
                self.write_pending();
                self.reap();
                self.shutdown = Shutdown::Flushing { deadline: now + self.config.shutdown_grace };
                self.table.is_empty()
            }
            Shutdown::DrainingWorkers => false,
            Shutdown::Flushing { deadline } => self.table.is_empty() || now >= deadline,
        }
    }
}
