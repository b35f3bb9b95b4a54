//! The service push API: back-end services log in with an operator-issued token and send
//! system messages to users, groups or everyone online, ask who is online, disconnect
//! users, and watch users connect and disconnect.
//!
//! A send to many users is scattered: the service's own worker (the coordinator) hands
//! each worker the recipients it owns, each stores, commits and pushes, then reports its
//! tally back; the coordinator answers once every part is in. Each part's report leaves
//! its worker only after that worker's commit, so the answer never precedes the sync.

use super::accounts::{login_failed, throttled};
use super::commands::{Outgoing, Part, Tally, WorkerCmd};
use super::context::Ctx;
use super::groups::Groups;
use super::inbox::Inboxes;
use super::message::{self, Origin, RetryKey};
use super::refusal::{Handled, Refusal};
use crate::apps::wire;
use crate::apps::{app_of, valid_user_name};
use crate::auth::token_digest;
use crate::cluster::wire::RemoteCmd;
use crate::protocol::{ErrorCode, GroupId, Push, Reply, ServerFrame, ServiceTarget};
use crate::route::Elsewhere;
use crate::route::{ConnId, LoopMsg, Owner, SessionUser};
use crate::store::Addressee;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Names one service request may address at most.
pub const MAX_NAMES: usize = 10_000;

/// The service sends this worker coordinates, waiting for their parts.
#[derive(Default)]
pub struct Gathers {
    pending: HashMap<u64, Gather>,
    next: u64,
}

/// A service send waiting for its parts.
struct Gather {
    conn: ConnId,
    request_id: u32,
    /// When its parts were sent, if some went to other cluster nodes (whose parts may
    /// never come: see [`Gathers::expire`]).
    remote_since: Option<std::time::Instant>,
    remaining: usize,
    tally: Tally,
    failure: Option<(ErrorCode, String)>,
}

pub fn service_login(
    ctx: &mut Ctx,
    conn: ConnId,
    peer: IpAddr,
    request_id: u32,
    name: String,
    token: String,
) -> Handled {
    // Service names may equal usernames; their failures must not lock out the user.
    let throttle_key = format!("service:{name}");
    throttled(ctx, &throttle_key, peer)?;
    let record = ctx.shared.store.service(&name)?;
    let Some(record) = record.filter(|r| r.token_digest == token_digest(token.as_bytes())) else {
        login_failed(ctx, &throttle_key, peer);
        return Err(Refusal::new(ErrorCode::InvalidToken, "unknown service or wrong token"));
    };
    ctx.shared.throttle.succeeded(&throttle_key, peer);
    let user =
        SessionUser { name: name.as_str().into(), uid: record.uid, admin: false, service: true, device: "".into() };
    ctx.batch.control(LoopMsg::Bind { conn, user });
    ctx.batch.reply(conn, request_id, Reply::ServiceLoggedIn { name }, false);
    Ok(())
}

impl Gathers {
    /// A service's send, coordinated here: each worker that owns recipients gets its part.
    pub fn send(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        service: &SessionUser,
        to: ServiceTarget,
        message: Outgoing,
    ) -> Handled {
        message::validate(ctx.config(), &message.content, service)?;
        if !message.transient && message.client_msg_id.is_none() {
            return Err(Refusal::new(ErrorCode::BadRequest, "client_msg_id must not be 0"));
        }
        if self.next == 0 {
            // Anywhere: a late tally of the last run's send must not complete this run's.
            self.next = first_gather();
        }
        self.expire(ctx);
        self.next += 1;
        let gather = self.next;
        let me = ctx.shared.bus.as_ref().map_or(0, |bus| bus.membership().me);
        let part = Part { node: me, coordinator: ctx.index, gather, service: service.clone() };
        let mut parts: Vec<(usize, WorkerCmd)> = Vec::new();
        // In a cluster, the parts for what other nodes hold: one per node, which splits it
        // among its workers and says so.
        let mut remote: Vec<(u8, RemoteCmd)> = Vec::new();
        match to {
            ServiceTarget::Users(users) => {
                if users.is_empty() || users.len() > MAX_NAMES {
                    return Err(Refusal::new(ErrorCode::BadRequest, format!("name 1 to {MAX_NAMES} users")));
                }
                let mut by_worker: HashMap<usize, Vec<String>> = HashMap::new();
                let mut by_node: HashMap<u8, Vec<String>> = HashMap::new();
                let mut named = HashSet::new();
                // A name given twice is one recipient.
                for user in users.into_iter().filter(|u| named.insert(u.clone())) {
                    match ctx.home_of(Owner::User(&user)) {
                        Some(node) => by_node.entry(node).or_default().push(user),
                        None => by_worker.entry(ctx.worker_of(Owner::User(&user))).or_default().push(user),
                    }
                }
                for (worker, users) in by_worker {
                    let cmd =
                        WorkerCmd::ServiceDeliver { part: part.clone(), users: Some(users), message: message.clone() };
                    parts.push((worker, cmd));
                }
                for (node, users) in by_node {
                    let cmd =
                        RemoteCmd::ServiceDeliver { part: part.clone(), users: Some(users), message: message.clone() };
                    remote.push((node, cmd));
                }
            }
            ServiceTarget::Group { group_id, except } => match ctx.home_of(Owner::Group(group_id)) {
                Some(node) => remote.push((node, RemoteCmd::ServiceGroup { part, group_id, except, message })),
                None => {
                    let cmd = WorkerCmd::ServiceGroup { part, group_id, except, message };
                    parts.push((ctx.worker_of(Owner::Group(group_id)), cmd));
                }
            },
            ServiceTarget::Online => {
                for worker in 0..ctx.workers {
                    let cmd = WorkerCmd::ServiceDeliver { part: part.clone(), users: None, message: message.clone() };
                    parts.push((worker, cmd));
                }
                for node in ctx.shared.bus.iter().flat_map(|bus| bus.membership().others()) {
                    let cmd = RemoteCmd::ServiceDeliver { part: part.clone(), users: None, message: message.clone() };
                    remote.push((node, cmd));
                }
            }
        }
        // A node that cannot be reached would leave the send waiting for its part: refused
        // before anything is sent, so a retry (same client_msg_id) is never half-done.
        if let Some(bus) = &ctx.shared.bus {
            if let Some(why) = remote.iter().find_map(|(node, _)| bus.refusal(*node)) {
                return Err(Refusal::unavailable(why, std::time::Duration::from_secs(1)));
            }
        }
        ctx.received(service, 1);
        let remaining = parts.len() + remote.len();
        let remote_since = (!remote.is_empty()).then(std::time::Instant::now);
        let tally = Tally::default();
        self.pending.insert(gather, Gather { conn, request_id, remote_since, remaining, tally, failure: None });
        for (worker, cmd) in parts {
            ctx.batch.send_to_worker(worker, cmd);
        }
        for (node, cmd) in remote {
            ctx.batch.send_to_node(node, cmd, None, false);
        }
        Ok(())
    }

    /// Sends with parts on other nodes still missing after twice the cluster timeout (a
    /// node died with them, or the bus lost them): answered `Unavailable` (a retry with the
    /// same client_msg_id stores nothing twice) and forgotten, so none waits for ever.
    pub fn expire(&mut self, ctx: &mut Ctx) {
        let Some(bus) = &ctx.shared.bus else { return };
        let patience = bus.timeout() * 2;
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, g)| g.remote_since.is_some_and(|since| since.elapsed() >= patience))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(g) = self.pending.remove(&id) {
                let refusal = Refusal::unavailable("another node did not report its part", Duration::from_secs(1));
                ctx.batch.refuse(g.conn, g.request_id, &refusal);
            }
        }
    }

    /// When the oldest send with parts on other nodes runs out of patience (`patience`:
    /// twice the cluster timeout).
    pub fn next_due(&self, patience: Duration) -> Option<std::time::Instant> {
        self.pending.values().filter_map(|g| g.remote_since).min().map(|since| since + patience)
    }

    /// Another node split its part of `gather` into `extra` more.
    pub fn more_parts(&mut self, gather: u64, extra: usize) {
        if let Some(pending) = self.pending.get_mut(&gather) {
            pending.remaining += extra;
        }
    }

    /// A part of a service send came back; answer when the last one has.
    pub fn gathered(&mut self, ctx: &mut Ctx, gather: u64, outcome: Result<Tally, (ErrorCode, String)>) {
        let Entry::Occupied(mut entry) = self.pending.entry(gather) else { return };
        let pending = entry.get_mut();
        match outcome {
            Ok(part) => {
                pending.tally.stored += part.stored;
                pending.tally.delivered += part.delivered;
                pending.tally.unknown.extend(part.unknown);
            }
            Err(failure) => pending.failure = Some(failure),
        }
        pending.remaining -= 1;
        if pending.remaining > 0 {
            return;
        }
        let done = entry.remove();
        match done.failure {
            Some((code, message)) => ctx.batch.error(done.conn, done.request_id, code, &message),
            None => {
                let Tally { stored, delivered, mut unknown } = done.tally;
                unknown.sort();
                ctx.batch.reply(done.conn, done.request_id, Reply::ServiceSent { stored, delivered, unknown }, false);
            }
        }
    }
}

/// Where a run's service sends are numbered from: random (see [`Gathers::send`]).
fn first_gather() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_or(1, |()| u64::from_le_bytes(bytes) >> 16).max(1)
}

/// This worker's part of a service send to users (every online user of this worker's
/// partition when `users` is None); reported back to the coordinator.
pub fn deliver_to_users(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    part: Part,
    users: Option<Vec<String>>,
    message: &Outgoing,
) {
    let service = &part.service;
    let names: Vec<String> = match users {
        Some(users) => users,
        // Everyone online in the service's own app.
        None => {
            let app = app_of(&service.name);
            inboxes.online().iter().filter(|name| app_of(name) == app).map(|name| name.to_string()).collect()
        }
    };
    let mut tally = Tally::default();
    let mut failure = None;
    for name in names {
        match deliver_to_user(ctx, inboxes, service, &name, message) {
            Ok(Some(delivered)) => {
                tally.stored += u32::from(!message.transient);
                tally.delivered += u32::from(delivered);
            }
            Ok(None) => tally.unknown.push(name),
            Err(refusal) => {
                failure = Some((refusal.code, refusal.message));
                break;
            }
        }
    }
    let outcome = failure.map_or(Ok(tally), Err);
    report(ctx, &part, outcome);
}

/// A part's tally, to its coordinator: a worker here, or on another node.
fn report(ctx: &mut Ctx, part: &Part, outcome: Result<Tally, (ErrorCode, String)>) {
    let me = ctx.shared.bus.as_ref().map_or(0, |bus| bus.membership().me);
    if part.node != me {
        let cmd = RemoteCmd::Gathered { coordinator: part.coordinator, gather: part.gather, outcome };
        ctx.batch.send_to_node(part.node, cmd, None, false);
        return;
    }
    ctx.batch.send_to_worker(part.coordinator, WorkerCmd::Gathered { gather: part.gather, outcome });
}

/// Stores (unless transient) and pushes one service message to one user; returns whether
/// it was pushed now, or None for no such user.
fn deliver_to_user(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    service: &SessionUser,
    name: &str,
    message: &Outgoing,
) -> Result<Option<bool>, Refusal> {
    let Outgoing { client_msg_id, transient, content } = message;
    if !valid_user_name(name) {
        return Ok(None);
    }
    let Some(inbox) = inboxes.load(ctx, name)? else { return Ok(None) };
    if *transient {
        let conns = inbox.devices.conns();
        for conn in &conns {
            let push = Push::ServiceNotice { service: service.name.to_string(), content: content.clone() };
            ctx.batch.push(*conn, push, false);
        }
        ctx.delivered(conns.len() as u64);
        return Ok(Some(!conns.is_empty()));
    }
    if ctx.dedup().get(service.uid, *client_msg_id, inbox.uid.into()).is_some() {
        return Ok(Some(false));
    }
    let stored = message::compose(ctx.shared, service, content.clone(), Addressee::Readers)?;
    // Not refused by the quota (a service is the operator's own), but counted in it, as
    // the ack that frees it will be.
    let key = RetryKey { sender: service.uid, client_msg_id: *client_msg_id };
    let pushed = inbox.append(ctx, stored, Origin { reply_to: None, retry_key: Some(key) })?;
    Ok(Some(pushed))
}

/// A service's send to a group this worker owns; reported back to the coordinator.
pub fn deliver_to_group(
    ctx: &mut Ctx,
    groups: &mut Groups,
    part: Part,
    group_id: GroupId,
    except: Option<String>,
    message: Outgoing,
) {
    let outcome = send_to_group(ctx, groups, &part.service, group_id, except, message)
        .map_err(|refusal| (refusal.code, refusal.message));
    report(ctx, &part, outcome);
}

fn send_to_group(
    ctx: &mut Ctx,
    groups: &mut Groups,
    service: &SessionUser,
    id: GroupId,
    except: Option<String>,
    message: Outgoing,
) -> Result<Tally, Refusal> {
    let Outgoing { client_msg_id, transient, content } = message;
    let group = groups.load(ctx, id)?;
    // Another app's group is no group at all to this service.
    if !group.in_app(app_of(&service.name)) {
        return Err(Refusal::new(ErrorCode::UnknownGroup, "no such group"));
    }
    if transient {
        let online = group.sessions(except.as_deref());
        let push = ServerFrame::Push(Push::ServiceNotice { service: service.name.to_string(), content });
        let encoded: Arc<[u8]> = wire::encode(push).into();
        for conn in &online {
            ctx.batch.frame_bytes(*conn, &encoded, false);
        }
        ctx.delivered(online.len() as u64);
        return Ok(Tally { stored: 0, delivered: online.len() as u32, unknown: Vec::new() });
    }
    if ctx.dedup().get(service.uid, client_msg_id, id.into()).is_some() {
        return Ok(Tally { stored: 1, delivered: 0, unknown: Vec::new() });
    }
    let stored = message::compose(ctx.shared, service, content, except.map_or(Addressee::Readers, Addressee::AllBut))?;
    let key = RetryKey { sender: service.uid, client_msg_id };
    let delivered = group.append(ctx, stored, Origin { reply_to: None, retry_key: Some(key) })?;
    Ok(Tally { stored: 1, delivered, unknown: Vec::new() })
}

pub fn query_online(ctx: &mut Ctx, conn: ConnId, request_id: u32, users: Vec<String>) -> Handled {
    if users.len() > MAX_NAMES {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("at most {MAX_NAMES} users")));
    }
    let online = users.iter().map(|u| ctx.shared.directory.is_online(u)).collect();
    ctx.batch.reply(conn, request_id, Reply::OnlineStatus { online }, false);
    Ok(())
}

/// Ends every session of a user, on every device, on a service's word.
pub fn disconnect_user(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    conn: ConnId,
    request_id: u32,
    username: &str,
    reason: String,
) -> Handled {
    let sessions = inboxes.known(ctx, username)?.devices.conns();
    for target in &sessions {
        ctx.batch.push(*target, Push::Kicked { reason: reason.clone() }, false);
        ctx.batch.control(LoopMsg::Close { conn: *target, reason: "disconnected by a service" });
    }
    ctx.batch.reply(conn, request_id, Reply::Disconnected { was_online: !sessions.is_empty() }, false);
    Ok(())
}

pub fn watch_connections(ctx: &mut Ctx, conn: ConnId, request_id: u32, service: &SessionUser) {
    ctx.shared.connection_watchers.add(conn, app_of(&service.name));
    // In a cluster every node's users connect somewhere: each node watches for it (the
    // loop tells them all when the service's session ends).
    for node in ctx.shared.bus.iter().flat_map(|bus| bus.membership().others()) {
        let cmd = RemoteCmd::Watch { conn, app: app_of(&service.name).to_string() };
        ctx.batch.send_to_node(node, cmd, None, false);
    }
    ctx.batch.reply(conn, request_id, Reply::Done, false);
}
