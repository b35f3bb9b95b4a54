//! A worker thread: its state, its run loop (batch, commit, repeat) and the dispatch of
//! each command to the module that handles it (accounts, inbox, groups, rooms, presence).

use super::batch::Batch;
use super::garbage::GarbageQueue;
use super::groups::GroupState;
use super::inbox::UserState;
use super::presence::Watchers;
use super::rooms::Room;
use super::services::{Gather, Outgoing};
use super::waiting::Waiting;
use super::{Shared, WorkerCmd};
use crate::clock::now_ms;
use crate::memory::{self, Trimmer};
use crate::protocol::{retry_ms, Conversation, ErrorCode, MediaKind, Request, Target};
use crate::route::{ConnId, Inbound, Owner, SessionUser};
use crate::store::{Partition, StoreError};
use crossbeam_channel::{never, select, tick, Receiver, Sender};
use log::{debug, error, warn};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often cursors waiting for a delivery budget are looked at even without a wake
/// (room freed by a session that ended rather than by an ack).
const WAITING_RETRY: Duration = Duration::from_millis(250);

/// How often worker 0 looks whether traffic has stopped, to trim the heap (see `memory`).
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Why a request was refused; becomes an error frame.
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// For `RateLimited`: when to try again, in ms (protocol.md "Errors"); 0 otherwise.
    pub retry_after_ms: u32,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into(), retry_after_ms: 0 }
    }

    /// `RateLimited`, to be tried again after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: Duration) -> Self {
        Refusal { code: ErrorCode::RateLimited, message: message.into(), retry_after_ms: retry_ms(wait) }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::Full) {
            return Refusal::new(ErrorCode::StorageFull, "the server's disk is full; retry later");
        }
        error!("store: {e}");
        Refusal::new(ErrorCode::Internal, "storage error")
    }
}

pub type Handled = Result<(), Refusal>;

/// One item of a batch: from the loop, or from another worker or a hashing thread.
enum Work {
    Inbound(Inbound),
    Internal(WorkerCmd),
}

pub struct Worker {
    pub index: usize,
    pub shared: Shared,
    /// Every worker's unbounded queue (this one's included), by index.
    pub peers: Vec<Sender<WorkerCmd>>,
    pub batch: Batch,
    /// Users of this partition touched since start.
    pub users: HashMap<Arc<str>, UserState>,
    /// Groups of this partition touched since start.
    pub groups: HashMap<u64, GroupState>,
    /// Rooms of this partition that have members.
    pub rooms: HashMap<Arc<str>, Room>,
    pub watchers: Watchers,
    /// What each connection has here, so a closed connection is forgotten in O(its state).
    pub conn_groups: HashMap<ConnId, Vec<u64>>,
    pub conn_rooms: HashMap<ConnId, Vec<Arc<str>>>,
    /// Service sends this worker coordinates, waiting for their parts.
    pub gathers: HashMap<u64, Gather>,
    pub next_gather: u64,
    /// Acknowledged messages still to delete.
    pub garbage: GarbageQueue,
    /// This worker's share of the store: every durable change goes through it.
    pub partition: Partition,
    /// Cursors waiting for their session's delivery budget, by connection.
    pub waiting: HashMap<ConnId, Vec<Waiting>>,
}

impl Worker {
    pub fn new(index: usize, shared: Shared, peers: Vec<Sender<WorkerCmd>>) -> Self {
        Worker {
            index,
            peers,
            batch: Batch::new(shared.ledger.clone()),
            users: HashMap::new(),
            groups: HashMap::new(),
            rooms: HashMap::new(),
            watchers: Watchers::default(),
            conn_groups: HashMap::new(),
            conn_rooms: HashMap::new(),
            gathers: HashMap::new(),
            next_gather: 0,
            garbage: GarbageQueue::default(),
            partition: Partition::new(shared.store.clone(), index, shared.config.log_settings()),
            waiting: HashMap::new(),
            shared,
        }
    }

    pub fn run(mut self, requests: Receiver<Inbound>, internal: Receiver<WorkerCmd>) {
        // Worker 0 also logs the statistics line; the others never tick.
        let interval = self.shared.config.stats_interval;
        let ticks = if self.index == 0 && !interval.is_zero() { tick(interval) } else { never() };
        // Worker 0 also forgets expired dedup records on disk, once a minute...
        let upkeep = if self.index == 0 { tick(Duration::from_secs(60)) } else { never() };
        // ...and gives the heap's free pages back once a burst of traffic is over.
        let trims = if self.index == 0 { tick(TRIM_EVERY) } else { never() };
        let mut trimmer = Trimmer::default();
        let mut stopping = false;
        while !stopping {
            // Idle: migrate what is due and retire log segments, or delete a step of
            // garbage, then look again.
            if internal.is_empty() && requests.is_empty() {
                if self.partition.upkeep(true) {
                    continue;
                }
                if !self.garbage.is_empty() {
                    self.collect_garbage();
                    continue;
                }
            }
            // Wake when the oldest staged batch comes due, if nothing comes before; and
            // look at cursors waiting for a delivery budget now and then.
            let mut wait = self.partition.next_due(Instant::now()).unwrap_or(Duration::from_secs(3600));
            if !self.waiting.is_empty() {
                wait = wait.min(WAITING_RETRY);
            }
            let first = select! {
                recv(internal) -> cmd => cmd.map(Work::Internal),
                recv(requests) -> inbound => inbound.map(Work::Inbound),
                recv(ticks) -> _ => {
                    self.log_stats();
                    continue;
                }
                recv(upkeep) -> _ => {
                    self.prune_dedup();
                    continue;
                }
                recv(trims) -> _ => {
                    let metrics = &self.shared.metrics;
                    let traffic = metrics.received.load(Ordering::Relaxed) + metrics.delivered.load(Ordering::Relaxed);
                    if trimmer.due(traffic) {
                        memory::trim();
                    }
                    continue;
                }
                default(wait) => {
                    if self.waiting.is_empty() {
                        continue;
                    }
                    Ok(Work::Internal(WorkerCmd::Pump { conn: None }))
                }
            };
            let Ok(first) = first else { break };
            stopping = !self.handle(first);
            let mut handled = 1;
            // Drain both queues for this batch; once stopping, drain them completely so
            // nothing accepted before shutdown is dropped.
            while stopping || handled < self.shared.config.max_batch {
                let next = internal.try_recv().map(Work::Internal).or_else(|_| requests.try_recv().map(Work::Inbound));
                let Ok(work) = next else { break };
                stopping |= !self.handle(work);
                handled += 1;
            }
            self.batch.commit(&mut self.partition, &self.shared.outbox, &self.peers);
            self.partition.upkeep(false);
        }
        // A clean stop leaves sled complete and the commit log empty.
        match self.partition.finish() {
            Ok(()) => {}
            Err(e @ StoreError::Full) => {
                warn!("worker {}: {e}; the commit log keeps its changes for the next start", self.index)
            }
            Err(e) => error!(
                "worker {}: final checkpoint failed (the commit log keeps the changes for the next start): {e}",
                self.index
            ),
        }
        debug!("worker {} exiting", self.index);
    }

    /// Returns false when told to stop.
    fn handle(&mut self, work: Work) -> bool {
        let cmd = match work {
            Work::Inbound(Inbound::Request { conn, peer, user, request_id, request }) => {
                if let Err(refusal) = self.request(conn, peer, user, request_id, request) {
                    self.batch.refuse(conn, request_id, &refusal);
                }
                return true;
            }
            Work::Inbound(Inbound::Closed { conn, user, reason }) => {
                self.closed(conn, &user, reason);
                return true;
            }
            Work::Internal(cmd) => cmd,
        };
        match cmd {
            WorkerCmd::Hashed(outcome) => self.hashed(outcome),
            WorkerCmd::LoggedOut { conn, user } => self.closed(conn, &user, "logout"),
            WorkerCmd::ServiceDeliver { coordinator, gather, service, users, message } => {
                self.service_deliver(coordinator, gather, &service, users, &message)
            }
            WorkerCmd::ServiceGroup { coordinator, gather, service, group_id, except, message } => {
                self.service_group(coordinator, gather, &service, group_id, except, message)
            }
            WorkerCmd::Gathered { gather, outcome } => self.gathered(gather, outcome),
            WorkerCmd::MemberOnline { group_id, username, conn } => {
                if let Err(refusal) = self.member_online(group_id, &username, conn) {
                    debug!("group {group_id} catch-up for {username}: {}", refusal.message);
                }
            }
            WorkerCmd::CreateGroup { conn, request_id, creator, group_id, name, open, seat } => {
                let created = self.create_group_here(conn, request_id, &creator, group_id, name, open);
                self.shared.seats.release(seat);
                if let Err(refusal) = created {
                    self.batch.refuse(conn, request_id, &refusal);
                }
            }
            WorkerCmd::Pump { conn } => {
                let pumped = match conn {
                    Some(conn) => self.pump_waiting(conn),
                    None => self.pump_all_waiting(),
                };
                if let Err(refusal) = pumped {
                    debug!("pumping waiting cursors: {}", refusal.message);
                }
            }
            WorkerCmd::Stop => return false,
        }
        true
    }

    fn request(
        &mut self,
        conn: ConnId,
        peer: IpAddr,
        user: Option<SessionUser>,
        request_id: u32,
        request: Request,
    ) -> Handled {
        let Some(user) = user else {
            return match request {
                Request::Register { username, password } => self.register(conn, peer, request_id, username, password),
                Request::Login { username, password } => self.login(conn, peer, request_id, username, password),
                Request::Resume { username, token } => self.resume(conn, peer, request_id, username, token),
                Request::ServiceLogin { name, token } => self.service_login(conn, peer, request_id, name, token),
                // The loop admits nothing else before login.
                other => Err(unexpected(other)),
            };
        };
        match request {
            Request::Send { to, client_msg_id, transient, content } => {
                self.validate(&content)?;
                // System is how the server marks its own messages (group events); a user's
                // message must never pass for one. Services may use it (ServiceSend).
                if content.kind == MediaKind::System {
                    return Err(Refusal::new(ErrorCode::InvalidContent, "the System kind is reserved to the server"));
                }
                match to {
                    Target::User(to) if transient => self.send_transient(conn, request_id, &user, &to, content),
                    Target::User(to) => self.send_direct(conn, request_id, &user, &to, client_msg_id, content),
                    Target::Group(_) if transient => {
                        Err(Refusal::new(ErrorCode::BadRequest, "transient messages go to users or rooms, not groups"))
                    }
                    Target::Group(id) => self.send_group(conn, request_id, &user, id, client_msg_id, content),
                    Target::Room(room) => self.send_room(conn, request_id, &user, &room, content),
                    Target::Everyone => self.broadcast(conn, request_id, &user, content),
                }
            }
            Request::Ack { conversation: Conversation::Inbox, up_to } => self.ack_inbox(conn, request_id, &user, up_to),
            Request::Ack { conversation: Conversation::Group(id), up_to } => {
                self.ack_group(conn, request_id, &user, id, up_to)
            }
            Request::Resync { conversation: Conversation::Inbox, after } => {
                self.resync_inbox(conn, request_id, &user, after)
            }
            Request::Resync { conversation: Conversation::Group(id), after } => {
                self.resync_group(conn, request_id, &user, id, after)
            }
            Request::Rename { display_name } => self.rename(conn, request_id, &user, display_name),
            Request::ListOnline { after, limit } => {
                self.list_online(conn, request_id, &after, limit);
                Ok(())
            }
            Request::Logout => self.logout(conn, request_id, &user),
            Request::CreateGroup { name, open } => self.create_group(conn, request_id, &user, name, open),
            Request::RenameGroup { group_id, name } => self.rename_group(conn, request_id, &user, group_id, name),
            Request::AddMember { group_id, username } => self.add_member(conn, request_id, &user, group_id, &username),
            Request::RemoveMember { group_id, username } => {
                self.remove_member(conn, request_id, &user, group_id, &username)
            }
            Request::SetRole { group_id, username, role } => {
                self.set_role(conn, request_id, &user, group_id, &username, role)
            }
            Request::JoinGroup { group_id } => self.join_group(conn, request_id, &user, group_id),
            Request::LeaveGroup { group_id } => self.leave_group(conn, request_id, &user, group_id),
            Request::DeleteGroup { group_id } => self.delete_group(conn, request_id, &user, group_id),
            Request::ListGroups => self.list_groups(conn, request_id, &user),
            Request::GroupMembers { group_id } => self.group_members(conn, request_id, &user, group_id),
            Request::JoinRoom { room } => self.join_room(conn, request_id, &user, room),
            Request::LeaveRoom { room } => self.leave_room(conn, request_id, &user, &room),
            Request::ListRooms { after, limit } => {
                self.list_rooms(conn, request_id, &after, limit);
                Ok(())
            }
            Request::RoomMembers { room } => {
                self.room_members(conn, request_id, &room);
                Ok(())
            }
            Request::SubscribePresence { username } => self.subscribe(conn, request_id, &user, &username),
            Request::UnsubscribePresence { username } => self.unsubscribe(conn, request_id, &username),
            Request::ServiceSend { to, client_msg_id, transient, content } => {
                let message = Outgoing { client_msg_id, transient, content };
                self.service_send(conn, request_id, &user, to, message)
            }
            Request::QueryOnline { users } => self.query_online(conn, request_id, users),
            Request::Disconnect { username, reason } => self.disconnect_user(conn, request_id, &username, reason),
            Request::WatchConnections => {
                self.watch_connections(conn, request_id);
                Ok(())
            }
            Request::Stats => self.stats(conn, request_id, &user),
            Request::ListOpenGroups { after, limit } => {
                self.list_open_groups(conn, request_id, after, limit);
                Ok(())
            }
            other @ (Request::Hello { .. }
            | Request::Ping
            | Request::Register { .. }
            | Request::Login { .. }
            | Request::Resume { .. }
            | Request::ServiceLogin { .. }) => Err(unexpected(other)),
        }
    }

    /// Everything this worker holds for a connection whose session ended.
    pub fn closed(&mut self, conn: ConnId, user: &SessionUser, reason: &str) {
        if !user.service && self.owns(Owner::User(&user.name)) {
            self.end_session(conn, user, reason);
        }
        self.shared.connection_watchers.remove(conn);
        if let Some(ids) = self.conn_groups.remove(&conn) {
            for id in ids {
                self.detach_member(id, &user.name, conn);
            }
        }
        self.leave_all_rooms(conn);
        self.shared.fanout.forget(conn);
        self.waiting.remove(&conn);
        let subscriptions = self.watchers.forget_conn(conn);
        self.shared.subscription_seats.release(conn, subscriptions);
    }

    fn prune_dedup(&self) {
        let window = self.shared.config.dedup_window.as_millis() as u64;
        if let Err(e) = self.partition.store().prune_dedup(now_ms().saturating_sub(window)) {
            warn!("pruning dedup records: {e}");
        }
    }

    /// This worker's dedup index (of the destinations it owns).
    pub fn dedup(&self) -> &super::DedupIndex {
        &self.shared.dedup[self.index]
    }

    pub fn owns(&self, owner: Owner<'_>) -> bool {
        owner.partition(self.peers.len()) == self.index
    }

    pub fn worker_of(&self, owner: Owner<'_>) -> usize {
        owner.partition(self.peers.len())
    }
}

/// The loop enforces which requests each connection state allows; reaching this means it
/// let through something it should not have.
fn unexpected(request: Request) -> Refusal {
    error!("worker got a request the loop should have refused: {request:?}");
    Refusal::new(ErrorCode::BadRequest, "request not allowed in this state")
}
