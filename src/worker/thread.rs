//! A worker thread: the run loop (batch, commit, repeat) and the dispatch of each command
//! to the owner of the state it concerns: inboxes, groups, rooms, presence, service
//! gathers. The owners' methods do the work; this file only decides who does it.

use super::batch::Batch;
use super::commands::{Outgoing, WorkerCmd};
use super::context::{Ctx, WaitQueue, Waiting};
use super::groups::Groups;
use super::history::History;
use super::inbox::Inboxes;
use super::presence::{self, Presence};
use super::push::notes;
use super::push::queue::PushQueue;
use super::push::settings::{self, DeviceRequest};
use super::read_budget;
use super::refusal::{Handled, Refusal};
use super::rooms::{self, Rooms};
use super::services::{self, Gathers};
use super::support::{self, Shops};
use super::waiting::Readers;
use super::{
    accounts, claims, deletion, devices, membership, message, read_state, remote_members, retention, stats, unread,
    waiting, Shared,
};
use crate::clock::now_ms;
use crate::memory::{self, Trimmer};
use crate::protocol::{Chat, Conversation, ErrorCode, Request, SupportId, Target};
use crate::route::{ConnId, Inbound, Owner, SessionUser};
use crate::store::{Partition, StoreError};
use crossbeam_channel::{never, select, tick, Receiver, Sender};
use log::{debug, error, warn};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often cursors waiting for a delivery budget are looked at even without a wake
/// (room freed by a session that ended rather than by an ack).
const WAITING_RETRY: Duration = Duration::from_millis(250);

/// How often worker 0 looks whether traffic has stopped, to trim the heap (see `memory`).
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// How often each worker looks for devices not seen for `--device-expiry`, at most: a
/// quarter of the expiry (so one is forgotten at most a quarter late), and never more
/// often than this (a test's expiry of milliseconds).
const EXPIRY_CHECK_MIN: Duration = Duration::from_millis(10);
const EXPIRY_CHECK_MAX: Duration = Duration::from_secs(60);

/// One item of a batch: from the loop, or from another worker or a hashing thread.
enum Work {
    Inbound(Inbound),
    Internal(WorkerCmd),
}

/// The state this worker owns, one type per domain.
#[derive(Default)]
struct Owners {
    inboxes: Inboxes,
    groups: Groups,
    rooms: Rooms,
    presence: Presence,
    gathers: Gathers,
    shops: Shops,
    /// Only on the worker of `Owner::PushQueue`; empty elsewhere.
    push: PushQueue,
    history: History,
}

pub struct Worker {
    index: usize,
    shared: Shared,
    /// Every worker's internal queue (this one's included), by index.
    peers: Vec<Sender<WorkerCmd>>,
    batch: Batch,
    /// This worker's share of the store: every durable change goes through it.
    partition: Partition,
    waiting: WaitQueue,
    owners: Owners,
}

impl Worker {
    pub fn new(index: usize, shared: Shared, peers: Vec<Sender<WorkerCmd>>) -> Self {
        let push_owner = Owner::PushQueue.partition(peers.len()) == index;
        Worker {
            index,
            peers,
            batch: Batch::new(shared.ledger.clone(), shared.push.clone(), shared.bus.clone()),
            partition: Partition::new(shared.store.clone(), index, shared.config.log_settings()),
            waiting: WaitQueue::default(),
            owners: Owners {
                push: match push_owner {
                    true => PushQueue::load(&shared.store, &shared.metrics),
                    false => PushQueue::default(),
                },
                ..Owners::default()
            },
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
        // Every worker forgets devices not seen for `--device-expiry` in what it holds.
        let expiries = tick((self.shared.config.device_expiry / 4).clamp(EXPIRY_CHECK_MIN, EXPIRY_CHECK_MAX));
        // Every worker settles its loaded logs now and then, as history's window passes.
        let passes = retention::pass_every(self.shared.config.history).map_or_else(never, tick);
        let mut trimmer = Trimmer::default();
        let mut stopping = false;
        while !stopping {
            // Idle: migrate what is due, retire log segments or delete a step of
            // acknowledged messages, then look again.
            if internal.is_empty() && requests.is_empty() && self.partition.upkeep(true) {
                continue;
            }
            // Wake when the oldest staged batch comes due, if nothing comes before; and
            // look at cursors waiting for a delivery budget now and then.
            let mut wait = self.partition.next_due(Instant::now()).unwrap_or(Duration::from_secs(3600));
            if !self.waiting.is_empty() {
                wait = wait.min(WAITING_RETRY);
            }
            let push_due = self.owners.push.next_due();
            if let Some(due) = push_due {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            let admissions_due = self.owners.groups.admissions.next_due(remote_members::patience(&self.shared));
            if let Some(due) = admissions_due {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            let gathers_due = self.owners.gathers.next_due(remote_members::patience(&self.shared) * 4);
            if let Some(due) = gathers_due {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            // Other workers' commands first, as within a batch: one queued before a client's
            // request (a sent copy before the answer that it caused) is handled before it.
            // `select!` picks at random among ready queues.
            let first = match internal.try_recv() {
                Ok(cmd) => Ok(Work::Internal(cmd)),
                Err(_) => select! {
                    recv(internal) -> cmd => cmd.map(Work::Internal),
                    recv(requests) -> inbound => inbound.map(Work::Inbound),
                    recv(ticks) -> _ => {
                        stats::log_line(&self.shared);
                        continue;
                    }
                    recv(upkeep) -> _ => {
                        self.prune_dedup();
                        continue;
                    }
                    recv(expiries) -> _ => Ok(Work::Internal(WorkerCmd::ExpireDevices)),
                    recv(passes) -> _ => Ok(Work::Internal(WorkerCmd::RetentionPass)),
                    recv(trims) -> _ => {
                        let metrics = &self.shared.metrics;
                        let traffic = metrics.received.load(Ordering::Relaxed) + metrics.delivered.load(Ordering::Relaxed);
                        if trimmer.due(traffic) {
                            memory::trim();
                        }
                        continue;
                    }
                    default(wait) => {
                        if admissions_due.is_some_and(|due| due <= Instant::now()) {
                            Ok(Work::Internal(WorkerCmd::AdmissionsDue))
                        } else if gathers_due.is_some_and(|due| due <= Instant::now()) {
                            Ok(Work::Internal(WorkerCmd::GathersDue))
                        } else if push_due.is_some_and(|due| due <= Instant::now()) {
                            Ok(Work::Internal(WorkerCmd::PushDue))
                        } else if self.waiting.is_empty() {
                            continue;
                        } else {
                            Ok(Work::Internal(WorkerCmd::Pump { conn: None }))
                        }
                    }
                },
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
        let Worker { index, shared, peers, batch, partition, waiting, owners } = self;
        let mut ctx =
            Ctx { index: *index, workers: peers.len(), shared, batch, partition, waiting, me: &peers[*index] };
        match work {
            Work::Inbound(Inbound::Request { conn, peer, user, request_id, request }) => {
                if let Err(refusal) = owners.request(&mut ctx, conn, peer, user, request_id, request) {
                    ctx.batch.refuse(conn, request_id, &refusal);
                }
            }
            Work::Inbound(Inbound::Closed { conn, user, reason }) => owners.closed(&mut ctx, conn, &user, reason),
            Work::Internal(cmd) => return owners.internal(&mut ctx, cmd),
        }
        true
    }

    fn prune_dedup(&self) {
        let window = self.shared.config.dedup_window.as_millis() as u64;
        if let Err(e) = self.partition.store().prune_dedup(now_ms().saturating_sub(window)) {
            warn!("pruning dedup records: {e}");
        }
    }
}

impl Owners {
    /// Another worker's or a hashing thread's command; false for Stop.
    fn internal(&mut self, ctx: &mut Ctx, cmd: WorkerCmd) -> bool {
        match cmd {
            WorkerCmd::Hashed(outcome) => accounts::hashed(ctx, &mut self.inboxes, &self.presence, outcome),
            WorkerCmd::LoggedOut { conn, user } => self.closed(ctx, conn, &user, "logout"),
            WorkerCmd::Broadcast { from, content } => rooms::broadcast_here(ctx, from, content),
            WorkerCmd::ServiceDeliver { part, users, message } => {
                services::deliver_to_users(ctx, &mut self.inboxes, part, users, &message)
            }
            WorkerCmd::ServiceGroup { part, group_id, except, message } => {
                services::deliver_to_group(ctx, &mut self.groups, part, group_id, except, message)
            }
            WorkerCmd::Gathered { gather, outcome } => self.gathers.gathered(ctx, gather, outcome),
            WorkerCmd::MoreParts { gather, extra } => self.gathers.more_parts(gather, extra),
            WorkerCmd::MemberOnline { group_id, username, device, conn } => {
                remote_members::member_online(ctx, &mut self.groups, group_id, &username, &device, conn)
            }
            WorkerCmd::Admit { group_id, username, admission } => {
                remote_members::admit_here(ctx, group_id, username, admission)
            }
            WorkerCmd::Admitted { group_id, username, admission, outcome } => {
                remote_members::admitted(ctx, &mut self.groups, group_id, username, admission, outcome)
            }
            WorkerCmd::MembershipEnded { group_id, username } => remote_members::ended_here(ctx, group_id, &username),
            WorkerCmd::Reannounce { node } => remote_members::reannounce(ctx, node),
            WorkerCmd::NodeDown { node } => self.node_down(ctx, node),
            WorkerCmd::GroupPresence { username, online, groups } => {
                presence::to_group_peers(ctx, &username, online, &groups)
            }
            WorkerCmd::CreateGroup { group, seat } => {
                let (conn, request_id) = (group.conn, group.request_id);
                let app = ctx.shared.apps.of(&group.creator.name).cloned();
                let created = membership::create_here(ctx, &mut self.groups, group);
                ctx.shared.seats.release(seat);
                if let Err(refusal) = created {
                    if let Some(app) = app {
                        app.release_group();
                    }
                    ctx.batch.refuse(conn, request_id, &refusal);
                }
            }
            WorkerCmd::Pump { conn } => {
                let pumped = match conn {
                    Some(conn) => waiting::pump_waiting(ctx, &mut self.readers(), conn),
                    None => waiting::pump_all_waiting(ctx, &mut self.readers()),
                };
                if let Err(refusal) = pumped {
                    debug!("pumping waiting cursors: {}", refusal.message);
                }
            }
            WorkerCmd::PushNotes(notes) => self.push.notes(ctx, notes),
            WorkerCmd::RemoteNotes { message, readers } => notes::from_elsewhere(ctx, message, readers),
            WorkerCmd::ExpireDevices => {
                let now = now_ms();
                let expired = self.inboxes.expire_devices(ctx, now);
                let expired = expired.and_then(|()| self.groups.expire_devices(ctx, now));
                if let Err(refusal) = expired.and_then(|()| self.shops.expire_devices(ctx, now)) {
                    debug!("expiring devices: {}", refusal.message);
                }
            }
            WorkerCmd::PushOnline { uid } => self.push.online(uid),
            WorkerCmd::PushDue => self.push.due(ctx),
            WorkerCmd::AdmissionsDue => remote_members::expire(ctx, &mut self.groups),
            WorkerCmd::GathersDue => self.gathers.expire(ctx),
            WorkerCmd::SupportOnline { shop, username, device, conn } => {
                if let Err(refusal) = self.shops.reader_online(ctx, &shop, &username, &device, conn) {
                    debug!("support catch-up of {username} in {shop}: {}", refusal.message);
                }
            }
            WorkerCmd::SentCopy { sender, device, conn, stored } => match self.inboxes.load(ctx, &sender) {
                Ok(Some(inbox)) => inbox.append_copy(ctx, &device, conn, stored),
                Ok(None) => debug!("no inbox for {sender}'s sent copy"),
                Err(refusal) => debug!("{sender}'s sent copy: {}", refusal.message),
            },
            WorkerCmd::ForgetDevice { username, device } => {
                let forgotten = self.groups.forget_device(ctx, &username, &device);
                if let Err(refusal) = forgotten.and_then(|()| self.shops.forget_device(ctx, &username, &device)) {
                    debug!("forgetting {username}'s device {device:?}: {}", refusal.message);
                }
            }
            WorkerCmd::Forward { conn, peer, user, request_id, request } => {
                if let Err(refusal) = self.request(ctx, conn, peer, Some(user), request_id, request) {
                    ctx.batch.refuse(conn, request_id, &refusal);
                }
            }
            WorkerCmd::ReadReceipt { sender, sender_uid, reader, up_to } => {
                if let Err(refusal) = read_state::receipt(ctx, &sender, sender_uid, &reader, up_to) {
                    debug!("read receipt from {reader} for {sender}: {}", refusal.message);
                }
            }
            WorkerCmd::RetentionPass => self.history.pass(ctx, &mut self.inboxes, &mut self.groups, &mut self.shops),
            WorkerCmd::DeleteDirect { conn, request_id, user, peer, message_id } => {
                if let Err(refusal) =
                    deletion::direct(ctx, &mut self.inboxes, conn, request_id, &user, &peer, message_id)
                {
                    ctx.batch.refuse(conn, request_id, &refusal);
                }
            }
            WorkerCmd::SenderDeleted { sender, peer, message_id } => {
                if let Err(refusal) = deletion::sender_side(ctx, &mut self.inboxes, &sender, &peer, message_id) {
                    warn!("the deletion of {message_id} by {sender} did not reach its own inbox: {}", refusal.message);
                }
            }
            WorkerCmd::Stop => {
                // Open windows' final counts, into this last commit.
                self.push.close_windows(ctx, None);
                return false;
            }
        }
        true
    }

    /// The owners of cursors, for waking those that wait for a delivery budget.
    fn readers(&mut self) -> Readers<'_> {
        Readers { inboxes: &mut self.inboxes, groups: &mut self.groups, shops: &mut self.shops }
    }

    /// A request about a support conversation known by id: handled here if this worker
    /// owns the conversation's shop, else handed on to the worker that does (protocol.md
    /// "Customer support": the id names no shop the loop could route by).
    #[allow(clippy::too_many_arguments)]
    fn by_conversation(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        peer: IpAddr,
        user: SessionUser,
        request_id: u32,
        id: SupportId,
        request: Request,
    ) -> Handled {
        let shop = ctx.shared.store.support(id)?.map(|record| record.shop).ok_or_else(support::not_a_reader)?;
        if !ctx.owns(Owner::Shop(&shop)) {
            let worker = ctx.worker_of(Owner::Shop(&shop));
            ctx.batch.send_to_worker(worker, WorkerCmd::Forward { conn, peer, user, request_id, request });
            return Ok(());
        }
        if let Request::Ack { up_to, .. } = request {
            self.shops.load(ctx, &shop)?.ack(ctx, conn, request_id, id, &user, up_to)?;
            let who = Waiting::Support(id, user.name.clone(), user.device.clone());
            return waiting::after_ack(ctx, &mut self.readers(), conn, who);
        }
        let shop = self.shops.load(ctx, &shop)?;
        match request {
            Request::Send { transient: true, .. } => Err(not_transient()),
            Request::Send { client_msg_id, content, .. } => {
                message::validate(ctx.config(), &content, &user)?;
                shop.send(ctx, conn, request_id, id, &user, client_msg_id, content)
            }
            Request::Resync { after, .. } => shop.resync(ctx, conn, request_id, id, &user, after),
            Request::ClaimSupport { .. } => claims::claim(ctx, shop, conn, request_id, id, &user),
            Request::HandOverSupport { to, .. } => claims::hand_over(ctx, shop, conn, request_id, id, &user, &to),
            Request::ReleaseSupport { .. } => claims::release(ctx, shop, conn, request_id, id, &user),
            request @ (Request::History { .. } | Request::DeleteMessage { .. } | Request::ClearHistory { .. }) => {
                read_budget::charge(ctx, conn, &request)?;
                self.history.support_request(ctx, shop, id, conn, request_id, &user, request)
            }
            other => Err(unexpected(other)),
        }
    }

    fn request(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        peer: IpAddr,
        user: Option<SessionUser>,
        request_id: u32,
        request: Request,
    ) -> Handled {
        let Some(user) = user else {
            return match request {
                Request::Register { username, password } => {
                    accounts::register(ctx, conn, peer, request_id, username, password)
                }
                Request::Login { username, password } => {
                    accounts::login(ctx, conn, peer, request_id, username, password, None)
                }
                Request::LoginDevice { username, password, device } => {
                    accounts::login(ctx, conn, peer, request_id, username, password, Some(device))
                }
                Request::Resume { username, token } => {
                    let (inboxes, presence) = (&mut self.inboxes, &self.presence);
                    accounts::resume(ctx, inboxes, presence, conn, peer, request_id, username, token, None)
                }
                Request::ResumeDevice { username, token, device } => {
                    let (inboxes, presence) = (&mut self.inboxes, &self.presence);
                    accounts::resume(ctx, inboxes, presence, conn, peer, request_id, username, token, Some(device))
                }
                Request::ServiceLogin { name, token } => {
                    services::service_login(ctx, conn, peer, request_id, name, token)
                }
                // The loop admits nothing else before login.
                other => Err(unexpected(other)),
            };
        };
        if let Some(id) = request.group() {
            self.groups.visible_to(ctx, id, &user)?;
        }
        if let Some(id) = request.support() {
            return self.by_conversation(ctx, conn, peer, user, request_id, id, request);
        }
        match request {
            Request::Send { to, client_msg_id, transient, content } => {
                message::validate(ctx.config(), &content, &user)?;
                match to {
                    Target::User(to) if transient => {
                        self.inboxes.known(ctx, &to)?.send_transient(ctx, conn, request_id, &user, content);
                        Ok(())
                    }
                    Target::User(to) => {
                        self.inboxes.known(ctx, &to)?.send_direct(ctx, conn, request_id, &user, client_msg_id, content)
                    }
                    Target::Group(_) | Target::Shop(_) | Target::Support(_) if transient => Err(not_transient()),
                    Target::Group(id) => {
                        self.groups.load(ctx, id)?.send(ctx, conn, request_id, &user, client_msg_id, content)
                    }
                    Target::Room(room) => self.rooms.send(ctx, conn, request_id, &user, &room, content),
                    Target::Everyone => rooms::broadcast(ctx, conn, request_id, &user, content),
                    Target::Shop(shop) => {
                        let (shop, index) = self.shops.load_with_index(ctx, &shop)?;
                        shop.send_from_customer(ctx, index, conn, request_id, &user, client_msg_id, content)
                    }
                    // Taken by `by_conversation` above.
                    Target::Support(_) => Err(unexpected(Request::Send { to, client_msg_id, transient, content })),
                }
            }
            Request::Ack { conversation: Conversation::Inbox, up_to } => {
                self.inboxes.session(ctx, &user, conn)?.ack(ctx, conn, request_id, up_to)?;
                waiting::after_ack(
                    ctx,
                    &mut self.readers(),
                    conn,
                    Waiting::Inbox(user.name.clone(), user.device.clone()),
                )
            }
            Request::Ack { conversation: Conversation::Group(id), up_to } => {
                self.groups.load(ctx, id)?.ack(ctx, conn, request_id, &user, up_to)?;
                let who = Waiting::Group(id, user.name.clone(), user.device.clone());
                waiting::after_ack(ctx, &mut self.readers(), conn, who)
            }
            Request::Resync { conversation: Conversation::Inbox, after } => {
                self.inboxes.session(ctx, &user, conn)?.resync(ctx, conn, request_id, after)
            }
            Request::Resync { conversation: Conversation::Group(id), after } => {
                self.groups.load(ctx, id)?.resync(ctx, conn, request_id, &user, after)
            }
            Request::Rename { display_name } => accounts::rename(ctx, conn, request_id, &user, display_name),
            Request::ListOnline { after, limit } => {
                accounts::list_online(ctx, conn, request_id, &after, limit);
                Ok(())
            }
            Request::Logout if user.service => {
                accounts::service_logout(ctx, conn, request_id, &user);
                self.closed(ctx, conn, &user, "logout");
                Ok(())
            }
            Request::Logout => {
                accounts::logout(ctx, &mut self.inboxes, conn, request_id, &user)?;
                self.closed(ctx, conn, &user, "logout");
                Ok(())
            }
            Request::LogoutEverywhere => {
                devices::logout_everywhere(ctx, &mut self.inboxes, conn, request_id, &user)?;
                self.closed(ctx, conn, &user, "logout");
                Ok(())
            }
            Request::ListDevices => devices::list(ctx, &mut self.inboxes, conn, request_id, &user),
            Request::RemoveDevice { device } => {
                devices::remove(ctx, &mut self.inboxes, conn, request_id, &user, &device)
            }
            Request::CreateGroup { name, open } => membership::create(ctx, conn, request_id, &user, name, open),
            Request::RenameGroup { group_id, name } => {
                let group = self.groups.load(ctx, group_id)?;
                membership::rename(ctx, group, conn, request_id, &user, name)
            }
            Request::AddMember { group_id, username } => {
                membership::add_member(ctx, &mut self.groups, group_id, conn, request_id, &user, &username)
            }
            Request::RemoveMember { group_id, username } => {
                let group = self.groups.load(ctx, group_id)?;
                membership::remove_member(ctx, group, conn, request_id, &user, &username)
            }
            Request::SetRole { group_id, username, role } => {
                let group = self.groups.load(ctx, group_id)?;
                membership::set_role(ctx, group, conn, request_id, &user, &username, role)
            }
            Request::JoinGroup { group_id } => {
                membership::join(ctx, &mut self.groups, group_id, conn, request_id, &user)
            }
            Request::LeaveGroup { group_id } => {
                let group = self.groups.load(ctx, group_id)?;
                membership::leave(ctx, group, conn, request_id, &user)
            }
            Request::DeleteGroup { group_id } => {
                membership::delete(ctx, &mut self.groups, group_id, conn, request_id, &user)
            }
            Request::ListGroups => membership::list_mine(ctx, conn, request_id, &user),
            Request::GroupMembers { group_id } => {
                let group = self.groups.load(ctx, group_id)?;
                membership::members(ctx, group, conn, request_id, &user)
            }
            Request::JoinRoom { room } => self.rooms.join(ctx, conn, request_id, &user, room),
            Request::LeaveRoom { room } => self.rooms.leave(ctx, conn, request_id, &user, &room),
            Request::ListRooms { after, limit } => {
                rooms::list(ctx, conn, request_id, &after, limit);
                Ok(())
            }
            Request::RoomMembers { room } => {
                self.rooms.members(ctx, conn, request_id, &room);
                Ok(())
            }
            Request::SubscribePresence { username } => {
                let online = self.inboxes.known(ctx, &username)?.devices.online();
                self.presence.subscribe(ctx, conn, request_id, &username, online)
            }
            Request::UnsubscribePresence { username } => self.presence.unsubscribe(ctx, conn, request_id, &username),
            Request::ServiceSend { to, client_msg_id, transient, content } => {
                let message = Outgoing { client_msg_id, transient, content };
                self.gathers.send(ctx, conn, request_id, &user, to, message)
            }
            Request::QueryOnline { users } => services::query_online(ctx, conn, request_id, users),
            Request::Disconnect { username, reason } => {
                services::disconnect_user(ctx, &mut self.inboxes, conn, request_id, &username, reason)
            }
            Request::WatchConnections => {
                services::watch_connections(ctx, conn, request_id, &user);
                Ok(())
            }
            Request::Stats => stats::stats(ctx, conn, request_id, &user),
            Request::ListOpenGroups { after, limit } => {
                membership::list_open(ctx, conn, request_id, &user, after, limit);
                Ok(())
            }
            Request::SetPushDevice { device, platform, token, previews } => {
                let request = DeviceRequest { device, platform, token, previews };
                settings::set_device(ctx, conn, request_id, &user, request)
            }
            Request::RemovePushDevice { device } => settings::remove_device(ctx, conn, request_id, &user, &device),
            Request::Mute { chat, until_ms } => settings::mute(ctx, conn, request_id, &user, chat, until_ms),
            Request::Unmute { chat } => settings::unmute(ctx, conn, request_id, &user, &chat),
            Request::PushSettings => {
                settings::list(ctx, conn, request_id, &user);
                Ok(())
            }
            Request::SubscribePush => self.push.subscribe(ctx, conn, request_id, &user),
            Request::AckPush { up_to } => self.push.ack(ctx, conn, request_id, up_to),
            Request::DropPushToken { username, token } => {
                settings::drop_token(ctx, conn, request_id, &user, &username, &token)
            }
            Request::ListSupport { shop, after, limit } if shop.is_empty() => {
                claims::list_own(ctx, conn, request_id, &user, after, limit)
            }
            Request::ListSupport { shop, after, limit } => {
                let shop = self.shops.load(ctx, &shop)?;
                claims::list_shop(ctx, shop, conn, request_id, &user, after, limit)
            }
            Request::AddStaff { shop, username } => {
                claims::add_staff(ctx, &mut self.shops, conn, request_id, &shop, &username)
            }
            Request::RemoveStaff { shop, username } => {
                claims::remove_staff(ctx, &mut self.shops, conn, request_id, &shop, &username)
            }
            Request::MarkRead { chat: Chat::Group(group_id), up_to } => {
                let group = self.groups.load(ctx, group_id)?;
                read_state::mark_group(ctx, group, conn, request_id, &user, up_to)
            }
            Request::MarkRead { chat, up_to } => read_state::mark(ctx, conn, request_id, &user, chat, up_to),
            Request::ReadState => {
                read_budget::charge(ctx, conn, &Request::ReadState)?;
                unread::read_state(ctx, conn, request_id, &user)
            }
            Request::SetReadReceipts { enabled } => read_state::set_receipts(ctx, conn, request_id, &user, enabled),
            Request::ReadPositions { group_id } => {
                let group = self.groups.load(ctx, group_id)?;
                read_state::positions(ctx, group, conn, request_id, &user)
            }
            request @ (Request::History { .. } | Request::DeleteMessage { .. } | Request::ClearHistory { .. }) => {
                read_budget::charge(ctx, conn, &request)?;
                let (inboxes, groups) = (&mut self.inboxes, &mut self.groups);
                self.history.request(ctx, inboxes, groups, conn, request_id, user, request)
            }
            other @ (Request::Ack { .. }
            | Request::Resync { .. }
            | Request::ClaimSupport { .. }
            | Request::HandOverSupport { .. }
            | Request::ReleaseSupport { .. }) => Err(unexpected(other)),
            other @ (Request::Hello { .. }
            | Request::HelloApp { .. }
            | Request::Ping
            | Request::Register { .. }
            | Request::Login { .. }
            | Request::Resume { .. }
            | Request::LoginDevice { .. }
            | Request::ResumeDevice { .. }
            | Request::ServiceLogin { .. }) => Err(unexpected(other)),
        }
    }

    /// What this worker holds for the connections of a cluster node that is down: they are
    /// gone, and no `Closed` will come for them (group sessions end through the bus).
    fn node_down(&mut self, ctx: &mut Ctx, node: u8) {
        let mut conns = self.rooms.conns_of_node(node);
        conns.extend(self.presence.conns_of_node(node));
        conns.sort();
        conns.dedup();
        for conn in conns {
            self.rooms.closed(ctx, conn);
            self.presence.closed(ctx, conn);
            ctx.shared.fanout.forget(conn);
            ctx.waiting.take(conn);
            self.history.closed(conn);
        }
        ctx.shared.connection_watchers.remove_node(node);
    }

    /// Everything this worker holds for a connection whose session ended.
    fn closed(&mut self, ctx: &mut Ctx, conn: ConnId, user: &SessionUser, reason: &str) {
        if !user.service && ctx.owns(Owner::User(&user.name)) && ctx.home_of(Owner::User(&user.name)).is_none() {
            accounts::end_session(ctx, &mut self.inboxes, &self.presence, conn, user, reason);
        }
        ctx.shared.connection_watchers.remove(conn);
        self.groups.closed(conn, &user.name);
        self.shops.closed(conn, &user.name);
        self.rooms.closed(ctx, conn);
        ctx.shared.fanout.forget(conn);
        ctx.waiting.take(conn);
        self.presence.closed(ctx, conn);
        self.push.closed(conn);
        self.history.closed(conn);
    }
}

fn not_transient() -> Refusal {
    Refusal::new(ErrorCode::BadRequest, "transient messages go to users or rooms")
}

/// The loop enforces which requests each connection state allows; reaching this means it
/// let through something it should not have.
fn unexpected(request: Request) -> Refusal {
    error!("worker got a request the loop should have refused: {request:?}");
    Refusal::new(ErrorCode::BadRequest, "request not allowed in this state")
}
