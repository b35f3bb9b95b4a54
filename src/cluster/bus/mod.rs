//! The bus thread: this node's one NATS connection, on a thread of its own running a small
//! tokio runtime (async-nats needs one; the rest of confab is threads and channels).
//!
//! In: [`ToBus`] on an unbounded channel from the event loop (client requests for owners on
//! other nodes, counted so that the loop stalls a client rather than queue without end)
//! and from the workers (frames for connections other nodes hold, commands for their
//! workers). Out: frames to the loop through its channel and waker (charged to the output
//! ledger first, as a worker would), requests and commands to the workers' queues.
//!
//! A forwarded request is a NATS request: published with a reply subject naming it, and
//! answered by the owner's node with the one frame that answers it. No answer within the
//! cluster timeout, nobody listening (the owner's node is down: NATS says "no responders"
//! at once), or no bus at all: the client gets `Unavailable`, never a receipt.

mod beats;
mod gather;

use beats::run_id;

use super::figures;
use super::liveness::{Liveness, BEAT};
use super::wire::{self, Entry, Envelope, Page, Query, RemoteCmd};
use super::{ClusterConfig, Membership};
use crate::apps::wire as apps_wire;
use crate::clock::mono_ms;
use crate::frame;
use crate::protocol::{
    AppFigures, ErrorCode, GroupId, GroupInfo, OnlineUser, Reply, Request, RoomInfo, ServerFrame, ServerStats,
    NO_REQUEST,
};
use crate::route::{
    partition_of, Charge, ConnId, Elsewhere, Inbound, LoopMsg, Outbox, OutputLedger, Owner, SessionUser,
};
use async_nats::{Client, Message};
use futures_util::StreamExt;
use log::{debug, info, warn};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Client requests on their way to other nodes at most, before the loop holds further ones
/// back (and stops reading from their clients): a few seconds of a busy node's traffic.
const MAX_FORWARDING: usize = 64 * 1024;
/// Requests from other nodes held for a worker whose queue is full, per worker, at most;
/// beyond, they are refused `Unavailable` (the worker is that far behind).
const MAX_HELD: usize = 64 * 1024;
/// Requests this node forwarded and still waits on, at most.
const MAX_PENDING: usize = 256 * 1024;
/// Bytes per published envelope at most (NATS refuses payloads over 1 MiB by default).
const MAX_PAYLOAD: usize = 512 * 1024;
/// How long a publish may wait for room in the client's queue before it is dropped: the
/// bus task must never stall behind a connection that is down.
const PUBLISH_WAIT: Duration = Duration::from_millis(200);
/// What a client is told to wait before it retries after `Unavailable`.
const RETRY: Duration = Duration::from_secs(1);

/// Encoded frames for one connection another node holds.
type ConnFrame = (ConnId, Vec<u8>);

/// What the loop and the workers hand the bus.
#[derive(Debug)]
pub enum ToBus {
    /// A client's request for an owner on `node`; `answer` is the request it owes.
    Forward { node: u8, envelope: Envelope, answer: (ConnId, u32) },
    /// Frames for connections held by other nodes.
    Frames(Vec<(ConnId, Vec<u8>)>),
    /// A command for a worker on `node`, answering `answer` if it owes one.
    Cmd { node: u8, cmd: RemoteCmd, answer: Option<(ConnId, u32)> },
    /// A connection of this node ended its session: tell the nodes it used.
    Closed { nodes: Vec<u8>, conn: ConnId, user: SessionUser },
    /// A listing to gather from every node and answer on `conn` (whose user asks).
    Gather { conn: ConnId, request_id: u32, request: Request, user: Option<SessionUser> },
}

/// What the bus needs of this node's workers (implemented by the worker pool).
pub trait Workers: Send + 'static {
    fn count(&self) -> usize;
    /// Whether every worker has stopped (at shutdown): the bus then stops too, letting go
    /// of the loop's channel, whose last sender the loop waits to see go.
    fn stopped(&self) -> bool;
    /// Hands `inbound` to worker `index` without blocking; a full queue gives it back.
    #[allow(clippy::result_large_err)]
    fn try_send(&self, index: usize, inbound: Inbound) -> Result<(), Inbound>;
    /// A command from another node's worker, for the worker of its owner; returns
    /// commands to send back at once (before any part of the work can report).
    fn command(&self, cmd: RemoteCmd) -> Vec<(u8, RemoteCmd)>;
    /// A user's display name as this node knows it (its account is here).
    fn display_name(&self, username: &str) -> String;
    /// A user of another node is called `display_name` (for what this node sends about it).
    fn remember_name(&self, username: &str, display_name: String);
    /// The listing `request` from `user` asks for, if it is one gathered from every node;
    /// Err: refused, and why.
    fn query_of(&self, request: &Request, user: Option<&SessionUser>) -> Result<Query, (ErrorCode, String)>;
    /// This node's part of a listing.
    fn page(&self, query: &Query) -> Page;
    /// The session of `conn`, a connection of another node, ended: what was kept for it
    /// here outside the workers (its delivery budget) goes. Called before the workers hear.
    fn session_ended(&self, conn: ConnId);
    /// `node` (every other node when None) may have lost what this node told it about the
    /// sessions of this node (it restarted, or this node's bus connection was down): tell it
    /// again.
    fn reannounce(&self, node: Option<u8>);
    /// `node` is down: what the workers hold for its connections goes.
    fn node_down(&self, node: u8);
    /// The sessions of `node`'s connections kept here (see `session_ended`), each with its
    /// user as far as this node knows it: to end when that node is down.
    fn sessions_on(&self, node: u8) -> Vec<(ConnId, SessionUser)>;
}

/// The loop's and the workers' handle on the bus.
#[derive(Clone)]
pub struct BusHandle {
    tx: mpsc::UnboundedSender<ToBus>,
    forwarding: Arc<AtomicUsize>,
    liveness: Arc<Liveness>,
    membership: Arc<Membership>,
    timeout: Duration,
}

impl BusHandle {
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// How long a node waits for another's answer (`--cluster-timeout-ms`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A worker's command for a worker of another node.
    pub fn command(&self, node: u8, cmd: RemoteCmd, answer: Option<(ConnId, u32)>) {
        let _ = self.tx.send(ToBus::Cmd { node, cmd, answer });
    }
}

impl Elsewhere for BusHandle {
    fn me(&self) -> u8 {
        self.membership.me
    }

    fn home(&self, owner: Owner<'_>) -> Option<u8> {
        let node = match owner {
            Owner::User(name) | Owner::Room(name) => self.membership.home_of(name),
            Owner::Group(id) => Membership::node_of_id(id.get()),
            _ => return None,
        };
        (node != self.membership.me).then_some(node)
    }

    fn forward(&self, node: u8, key: u64, inbound: Inbound) -> Result<(), Inbound> {
        let Inbound::Request { conn, peer, user, request_id, request } = inbound else {
            return Ok(());
        };
        if self.forwarding.load(Ordering::Relaxed) >= MAX_FORWARDING {
            return Err(Inbound::Request { conn, peer, user, request_id, request });
        }
        self.forwarding.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope::Request { key, conn, peer, user, display_name: None, request_id, request };
        let _ = self.tx.send(ToBus::Forward { node, envelope, answer: (conn, request_id) });
        Ok(())
    }

    fn frames(&self, frames: Vec<(ConnId, Vec<u8>)>) {
        if !frames.is_empty() {
            let _ = self.tx.send(ToBus::Frames(frames));
        }
    }

    fn closed(&self, nodes: Vec<u8>, conn: ConnId, user: SessionUser) {
        let _ = self.tx.send(ToBus::Closed { nodes, conn, user });
    }

    fn refusal(&self, node: u8) -> Option<String> {
        if !self.liveness.connected() {
            return Some("the cluster bus is unreachable".into());
        }
        self.liveness.is_down(node, mono_ms()).then(|| format!("node {node} is unavailable"))
    }

    fn is_down(&self, node: u8) -> bool {
        self.liveness.is_down(node, mono_ms())
    }

    fn gather(&self, conn: ConnId, request_id: u32, request: &Request, user: Option<&SessionUser>) -> bool {
        let gathered = matches!(
            request,
            Request::ListOnline { .. }
                | Request::ListRooms { .. }
                | Request::QueryOnline { .. }
                | Request::Stats
                | Request::ListGroups
        );
        if !gathered {
            return false;
        }
        // Counted with the forwarded requests: past the bound the node answers from what it
        // has itself (its worker), rather than queue gathers without end.
        if self.forwarding.load(Ordering::Relaxed) >= MAX_FORWARDING {
            return false;
        }
        self.forwarding.fetch_add(1, Ordering::Relaxed);
        let user = user.cloned();
        let _ = self.tx.send(ToBus::Gather { conn, request_id, request: request.clone(), user });
        true
    }

    fn others(&self) -> Vec<u8> {
        self.membership.others().collect()
    }

    fn address_of(&self, node: u8) -> Option<String> {
        self.membership.address_of(node).map(str::to_string)
    }
}

/// The running bus thread.
pub struct Bus {
    pub handle: BusHandle,
    thread: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// This node's ends of the bus: where what arrives goes.
pub struct Ends<W: Workers> {
    /// The loop's channel (frames for local connections only); None once the workers have
    /// stopped.
    pub outbox: Option<Outbox>,
    pub ledger: Arc<OutputLedger>,
    pub workers: W,
}

impl Bus {
    /// The handle, and a starter for the thread: the thread needs the workers, which need
    /// the handle.
    pub fn prepare(config: &ClusterConfig) -> (BusHandle, mpsc::UnboundedReceiver<ToBus>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = BusHandle {
            tx,
            forwarding: Arc::new(AtomicUsize::new(0)),
            liveness: Arc::new(Liveness::default()),
            membership: Arc::new(config.membership.clone()),
            timeout: config.timeout,
        };
        (handle, rx)
    }

    pub fn start<W: Workers>(
        config: ClusterConfig,
        handle: BusHandle,
        rx: mpsc::UnboundedReceiver<ToBus>,
        ends: Ends<W>,
    ) -> std::io::Result<Bus> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = BusState::new(config, handle.clone(), ends);
        let thread = std::thread::Builder::new()
            .name("confab-bus".into())
            .spawn(move || runtime.block_on(state.run(rx, stopped)))?;
        Ok(Bus { handle, thread: Some(thread), stop: Some(stop) })
    }

    /// Stops the thread (after the workers stopped: nothing more comes to send).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request this node forwarded and waits on.
struct Pending {
    conn: ConnId,
    request_id: u32,
    node: u8,
    /// The listing it is part of, if it is a node's page of one.
    gather: Option<u64>,
}

/// A listing being gathered from every node.
struct Gathering {
    conn: ConnId,
    request_id: u32,
    query: Query,
    pages: Vec<Page>,
    /// Nodes still to answer.
    waiting: usize,
}

struct BusState<W: Workers> {
    config: ClusterConfig,
    handle: BusHandle,
    ends: Ends<W>,
    /// Forwarded requests by token (the last part of their reply subject).
    pending: HashMap<u64, Pending>,
    /// Tokens in the order they were sent: with one timeout for all, also the order of
    /// their deadlines, so expiry looks only at the front.
    deadlines: VecDeque<(Instant, u64)>,
    /// When owed answers were last looked over.
    owed_checked: Instant,
    next_token: u64,
    /// Requests from other nodes: where the frame that answers each goes, by connection
    /// and request id (a client may reuse an id, so a queue), with when it came.
    owed: HashMap<(ConnId, u32), VecDeque<(String, Instant)>>,
    /// Inbound held for workers whose queue was full, per worker, in order.
    held: Vec<VecDeque<Inbound>>,
    /// Listings being gathered, by their own token.
    gathering: HashMap<u64, Gathering>,
    /// This run of this node, in its heartbeats (its start time), so that the others can
    /// tell that it restarted however quickly.
    boot: u64,
    /// The run each other node last said it is in.
    boots: HashMap<u8, u64>,
    /// Set when the bus connection comes up (again): what other nodes hold for this node's
    /// sessions may have been lost meanwhile.
    connected_again: Arc<AtomicBool>,
    /// Set when the bus connection comes up (again): a beat goes before anything else.
    beat_owed: Arc<AtomicBool>,
    /// Other nodes known to be down, and when that was last looked at.
    down: Vec<u8>,
    down_checked: Instant,
}

impl<W: Workers> BusState<W> {
    fn new(config: ClusterConfig, handle: BusHandle, ends: Ends<W>) -> Self {
        let workers = ends.workers.count();
        BusState {
            config,
            handle,
            ends,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            owed_checked: Instant::now(),
            // Anywhere: a late answer to the last run's request must not match this run's.
            next_token: run_id() >> 16,
            owed: HashMap::new(),
            held: (0..workers).map(|_| VecDeque::new()).collect(),
            gathering: HashMap::new(),
            boot: run_id(),
            boots: HashMap::new(),
            connected_again: Arc::new(AtomicBool::new(false)),
            beat_owed: Arc::new(AtomicBool::new(false)),
            down: Vec::new(),
            down_checked: Instant::now(),
        }
    }

    fn me(&self) -> u8 {
        self.handle.membership.me
    }

    fn subject_in(&self, node: u8) -> String {
        format!("{}.node.{node}.in", self.config.name)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ToBus>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
        let liveness = self.handle.liveness.clone();
        let connected = self.connected_again.clone();
        let owed = self.beat_owed.clone();
        let me = self.me();
        let options = async_nats::ConnectOptions::new()
            .name(format!("confabd node {me}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            // Reconnect soon after the bus comes back: clients wait on it.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2000)))
            .event_callback(move |event| {
                let liveness = liveness.clone();
                let connected = connected.clone();
                let owed = owed.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("cluster bus connected");
                            liveness.set_connected(true, mono_ms());
                            owed.store(true, Ordering::Relaxed);
                            connected.store(true, Ordering::Relaxed);
                        }
                        async_nats::Event::Disconnected => {
                            warn!(
                                "cluster bus disconnected; requests for other nodes get Unavailable until it is back"
                            );
                            liveness.set_connected(false, mono_ms());
                        }
                        other => debug!("cluster bus: {other}"),
                    }
                }
            });
        let client = match options.connect(self.config.urls.clone()).await {
            Ok(client) => client,
            Err(e) => {
                // Only a malformed address fails here (connecting is retried in the background).
                log::error!("cannot use the cluster bus at {:?}: {e}", self.config.urls);
                return;
            }
        };
        let mine = format!("{}.node.{me}.>", self.config.name);
        let mut inbox = match client.subscribe(mine).await {
            Ok(inbox) => inbox,
            Err(e) => {
                log::error!("cannot subscribe on the cluster bus: {e}");
                return;
            }
        };
        let mut beat = tokio::time::interval(BEAT);
        // Held requests and deadlines are looked at this often: a held request waits at most
        // this long for room, and an idle node wakes 100 times a second, not more.
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            self.beat_if_owed(&client).await;
            tokio::select! {
                _ = &mut stopped => break,
                Some(out) = rx.recv() => self.outgoing(&client, out).await,
                Some(message) = inbox.next() => self.incoming(&client, message).await,
                _ = beat.tick() => self.send_beats(&client).await,
                _ = tick.tick() => {
                    self.sweep();
                    if self.ends.workers.stopped() {
                        // What the workers sent last goes out before the bus lets go.
                        while let Ok(out) = rx.try_recv() {
                            self.outgoing(&client, out).await;
                        }
                        self.ends.outbox = None;
                        break;
                    }
                    self.end_sessions_of_down_nodes(&client).await;
                }
            }
        }
        // What the workers sent last goes out, unless the bus is down (then it cannot).
        let _ = tokio::time::timeout(PUBLISH_WAIT, client.flush()).await;
    }

    /// Something from this node's loop or workers.
    async fn outgoing(&mut self, client: &Client, out: ToBus) {
        // A connection just made says who this run is before anything else goes out.
        self.beat_if_owed(client).await;
        match out {
            ToBus::Forward { node, mut envelope, answer } => {
                self.handle.forwarding.fetch_sub(1, Ordering::Relaxed);
                if let Envelope::Request { user: Some(user), display_name, .. } = &mut envelope {
                    *display_name = Some(self.ends.workers.display_name(&user.name));
                }
                self.request(client, node, envelope, answer).await;
            }
            ToBus::Cmd { node, cmd, answer: Some(answer) } => {
                self.request(client, node, Envelope::Cmd(cmd), answer).await;
            }
            ToBus::Cmd { node, cmd, answer: None } => {
                if self.connected(client) {
                    publish(client, self.subject_in(node), wire::encode(&Envelope::Cmd(cmd))).await;
                }
            }
            ToBus::Frames(frames) => self.frames_out(client, frames).await,
            ToBus::Gather { conn, request_id, request, user } => {
                self.handle.forwarding.fetch_sub(1, Ordering::Relaxed);
                self.gather(client, conn, request_id, request, user).await
            }
            ToBus::Closed { nodes, conn, user } => {
                if self.connected(client) {
                    let payload = wire::encode(&Envelope::Closed { conn, user });
                    for node in nodes {
                        publish(client, self.subject_in(node), payload.clone()).await;
                    }
                }
            }
        }
    }

    fn connected(&self, client: &Client) -> bool {
        client.connection_state() == async_nats::connection::State::Connected
    }

    /// Sends `envelope` to `node` as a request owed an answer on `answer`'s connection.
    async fn request(&mut self, client: &Client, node: u8, envelope: Envelope, answer: (ConnId, u32)) {
        let (conn, request_id) = answer;
        if !self.connected(client) {
            return self.unavailable(conn, request_id, "the cluster bus is unreachable".into());
        }
        if self.handle.liveness.is_down(node, mono_ms()) {
            return self.unavailable(conn, request_id, format!("node {node} is unavailable"));
        }
        if self.pending.len() >= MAX_PENDING {
            return self.unavailable(conn, request_id, "too many requests waiting on other nodes".into());
        }
        let token = self.next_token;
        self.next_token += 1;
        let deadline = Instant::now() + self.config.timeout;
        self.pending.insert(token, Pending { conn, request_id, node, gather: None });
        self.deadlines.push_back((deadline, token));
        let reply = format!("{}.node.{}.reply.{token}", self.config.name, self.me());
        let subject = self.subject_in(node);
        let sent = tokio::time::timeout(
            PUBLISH_WAIT,
            client.publish_with_reply(subject, reply, wire::encode(&envelope).into()),
        );
        if !matches!(sent.await, Ok(Ok(()))) {
            self.pending.remove(&token);
            self.unavailable(conn, request_id, format!("cannot reach node {node}"));
        }
    }

    /// Frames from this node's workers for other nodes' connections: each frame that
    /// answers a request from another node goes to that request's reply subject; the rest
    /// go to the connection's node, in order.
    async fn frames_out(&mut self, client: &Client, frames: Vec<(ConnId, Vec<u8>)>) {
        let mut by_node: Vec<(u8, Vec<ConnFrame>)> = Vec::new();
        for (conn, bytes) in frames {
            for frame in wire::split_frames(&bytes) {
                let answers = wire::answers(frame).filter(|&id| id != NO_REQUEST);
                let owed = answers.and_then(|id| self.take_owed(conn, id));
                match owed {
                    Some(reply) => publish(client, reply, frame.to_vec()).await,
                    // An answer owed no more: the asking node gave up on it (and told its
                    // client `Unavailable`); a second answer would contradict that.
                    None if answers.is_some() => {
                        debug!("an answer for {conn:?} came after its node stopped waiting; dropped");
                    }
                    None => {
                        let node = conn.node();
                        match by_node.iter_mut().find(|(n, _)| *n == node) {
                            Some((_, list)) => list.push((conn, frame.to_vec())),
                            None => by_node.push((node, vec![(conn, frame.to_vec())])),
                        }
                    }
                }
            }
        }
        if !self.connected(client) {
            return;
        }
        for (node, frames) in by_node {
            let subject = self.subject_in(node);
            let mut chunk = Vec::new();
            let mut size = 0;
            for (conn, frame) in frames {
                size += frame.len() + 16;
                chunk.push((conn, frame));
                if size >= MAX_PAYLOAD {
                    let envelope = Envelope::Frames(std::mem::take(&mut chunk));
                    publish(client, subject.clone(), wire::encode(&envelope)).await;
                    size = 0;
                }
            }
            if !chunk.is_empty() {
                publish(client, subject, wire::encode(&Envelope::Frames(chunk))).await;
            }
        }
    }

    fn take_owed(&mut self, conn: ConnId, request_id: u32) -> Option<String> {
        let queue = self.owed.get_mut(&(conn, request_id))?;
        let reply = queue.pop_front().map(|(reply, _)| reply);
        if queue.is_empty() {
            self.owed.remove(&(conn, request_id));
        }
        reply
    }

    /// Something from another node (or NATS about a request of ours).
    async fn incoming(&mut self, client: &Client, message: Message) {
        let prefix = format!("{}.node.{}.", self.config.name, self.me());
        let Some(rest) = message.subject.as_str().strip_prefix(&prefix) else { return };
        if let Some(token) = rest.strip_prefix("reply.") {
            let Ok(token) = token.parse::<u64>() else { return };
            return self.answered(token, message);
        }
        if rest != "in" {
            return;
        }
        let envelope = match wire::decode(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                warn!("undecodable envelope from the cluster bus ({e}); is every node the same version?");
                return;
            }
        };
        match envelope {
            Envelope::Request { key, conn, peer, user, display_name, request_id, request } => {
                if let (Some(user), Some(name)) = (&user, display_name) {
                    self.ends.workers.remember_name(&user.name, name);
                }
                if let Some(reply) = message.reply {
                    self.owed.entry((conn, request_id)).or_default().push_back((reply.to_string(), Instant::now()));
                }
                let index = partition_of(key, self.ends.workers.count());
                let inbound = Inbound::Request { conn, peer, user, request_id, request };
                self.hand_to_worker(client, index, inbound).await;
            }
            Envelope::Cmd(cmd) => {
                if let (RemoteCmd::DeleteDirect { conn, request_id, .. }, Some(reply)) = (&cmd, message.reply) {
                    self.owed.entry((*conn, *request_id)).or_default().push_back((reply.to_string(), Instant::now()));
                }
                for (node, back) in self.ends.workers.command(cmd) {
                    publish(client, self.subject_in(node), wire::encode(&Envelope::Cmd(back))).await;
                }
            }
            Envelope::Frames(frames) => self.frames_in(frames),
            Envelope::Beat { node, run } => self.beat(client, node, run).await,
            Envelope::Query(query) => {
                if let Some(reply) = message.reply {
                    let page = self.ends.workers.page(&query);
                    publish(client, reply.to_string(), postcard::to_stdvec(&page).unwrap_or_default()).await;
                }
            }
            Envelope::Closed { conn, user } => {
                self.ends.workers.session_ended(conn);
                for index in 0..self.ends.workers.count() {
                    let inbound = Inbound::Closed { conn, user: user.clone(), reason: "closed on another node" };
                    self.hand_to_worker(client, index, inbound).await;
                }
            }
        }
    }

    /// Hands `inbound` to a worker, behind whatever is held for it.
    async fn hand_to_worker(&mut self, client: &Client, index: usize, inbound: Inbound) {
        if self.held[index].is_empty() {
            if let Err(inbound) = self.ends.workers.try_send(index, inbound) {
                self.held[index].push_back(inbound);
            }
        } else if self.held[index].len() >= MAX_HELD && matches!(inbound, Inbound::Request { .. }) {
            // Only requests are refused: a session's end must always get through (one per
            // connection of another node, so bounded by those).
            if let Inbound::Request { conn, request_id, .. } = inbound {
                let frame = ServerFrame::unavailable(request_id, "this node is too busy; retry", RETRY);
                self.answer_remote(client, conn, request_id, frame::encode(&frame)).await;
            }
        } else {
            self.held[index].push_back(inbound);
        }
    }

    /// An answer this node owes another node's client, not made by a worker.
    async fn answer_remote(&mut self, client: &Client, conn: ConnId, request_id: u32, bytes: Vec<u8>) {
        match self.take_owed(conn, request_id) {
            Some(reply) => publish(client, reply, bytes).await,
            None => self.frames_out(client, vec![(conn, bytes)]).await,
        }
    }

    /// Frames from another node for this node's connections: charged like a worker's.
    fn frames_in(&mut self, frames: Vec<(ConnId, Vec<u8>)>) {
        let mut out = Vec::with_capacity(frames.len());
        for (conn, bytes) in frames {
            if conn.node() != self.me() {
                continue;
            }
            match self.ends.ledger.charge(conn, bytes.len()) {
                Charge::Queued => out.push(LoopMsg::Frames { conn, bytes }),
                Charge::SlowConsumer => out.push(LoopMsg::Cut { conn }),
                Charge::Gone => {}
            }
        }
        if let Some(outbox) = &self.ends.outbox {
            outbox.send(out);
        }
    }

    /// The answer to a request this node forwarded.
    fn answered(&mut self, token: u64, message: Message) {
        let Some(pending) = self.pending.remove(&token) else { return };
        if let Some(gather) = pending.gather {
            // A node's page; a node that cannot answer leaves its part out.
            let page = match message.status {
                None => postcard::from_bytes::<Page>(&message.payload).ok(),
                Some(_) => None,
            };
            return self.page_came(gather, page);
        }
        if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return self.unavailable(pending.conn, pending.request_id, format!("node {} is unavailable", pending.node));
        }
        // Only the frame that answers the request, for the connection that asked.
        if wire::answers(&message.payload) != Some(pending.request_id) {
            warn!("node {} answered request {} with something else; dropped", pending.node, pending.request_id);
            return self.unavailable(pending.conn, pending.request_id, format!("node {} answered badly", pending.node));
        }
        self.frames_in(vec![(pending.conn, message.payload.to_vec())]);
    }

    fn unavailable(&mut self, conn: ConnId, request_id: u32, message: String) {
        let bytes = frame::encode(&ServerFrame::unavailable(request_id, message, RETRY));
        if let Some(outbox) = &self.ends.outbox {
            self.ends.ledger.force(conn, bytes.len());
            outbox.send(vec![LoopMsg::Frames { conn, bytes }]);
        }
    }

    /// Held requests to workers with room again; forwarded requests past their deadline;
    /// answers owed for too long (their worker never made one: forgotten).
    fn sweep(&mut self) {
        if self.connected_again.swap(false, Ordering::Relaxed) {
            self.ends.workers.reannounce(None);
        }
        for index in 0..self.held.len() {
            while let Some(inbound) = self.held[index].pop_front() {
                if let Err(inbound) = self.ends.workers.try_send(index, inbound) {
                    self.held[index].push_front(inbound);
                    break;
                }
            }
        }
        let now = Instant::now();
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            match self.pending.remove(&token) {
                Some(Pending { gather: Some(gather), .. }) => self.page_came(gather, None),
                Some(p) => {
                    let message = format!("node {} did not answer in time", p.node);
                    self.unavailable(p.conn, p.request_id, message);
                }
                None => {}
            }
        }
        if now.duration_since(self.owed_checked) >= Duration::from_secs(1) {
            self.owed_checked = now;
            let keep = self.config.timeout * 2;
            self.owed.retain(|_, queue| {
                queue.retain(|(_, since)| now.duration_since(*since) < keep);
                !queue.is_empty()
            });
        }
    }
}

/// Publishes without ever waiting long: a bus that is down loses what it cannot take
/// (requests are refused before they get here; frames for a node that is unreachable
/// have nobody to go to).
async fn publish(client: &Client, subject: String, payload: Vec<u8>) {
    match tokio::time::timeout(PUBLISH_WAIT, client.publish(subject, payload.into())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("cluster publish failed: {e}"),
        Err(_) => debug!("cluster publish dropped: the bus is not taking more"),
    }
}
