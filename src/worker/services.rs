//! The service push API: back-end services log in with an operator-issued token and send
//! system messages to users, groups or everyone online, ask who is online, disconnect
//! users, and watch users connect and disconnect.
//!
//! A send to many users is scattered: the service's own worker (the coordinator) hands
//! each worker the recipients it owns, each stores, commits and pushes, then reports its
//! tally back; the coordinator answers once every part is in. Each part's report leaves
//! its worker only after that worker's commit, so the answer never precedes the sync.

use super::handler::{Handled, Refusal, Worker};
use super::inbox::{wire, wire_size};
use super::WorkerCmd;
use crate::auth::token_digest;
use crate::clock::now_ms;
use crate::frame;
use crate::protocol::{
    valid_username, Content, Conversation, ErrorCode, Push, Reply, SenderKind, ServerFrame, ServiceTarget,
};
use crate::route::Owner;
use crate::route::{ConnId, LoopMsg, SessionUser};
use crate::store::{DedupEntry, StoredMessage};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Names one service request may address at most.
const MAX_NAMES: usize = 10_000;

/// A service's message as it travels between workers.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub client_msg_id: u64,
    /// Live only: pushed to connected recipients, stored nowhere.
    pub transient: bool,
    pub content: Content,
}

/// What one part of a service send did.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub stored: u32,
    pub delivered: u32,
    pub unknown: Vec<String>,
}

/// A service send waiting for its parts.
pub struct Gather {
    conn: ConnId,
    request_id: u32,
    remaining: usize,
    tally: Tally,
    failure: Option<(ErrorCode, String)>,
}

impl Worker {
    pub fn service_login(
        &mut self,
        conn: ConnId,
        peer: IpAddr,
        request_id: u32,
        name: String,
        token: String,
    ) -> Handled {
        // Service names may equal usernames; their failures must not lock out the user.
        let throttle_key = format!("service:{name}");
        self.throttled(&throttle_key, peer)?;
        let record = self.shared.store.service(&name)?;
        let Some(record) = record.filter(|r| r.token_digest == token_digest(token.as_bytes())) else {
            self.login_failed(&throttle_key, peer);
            return Err(Refusal::new(ErrorCode::InvalidToken, "unknown service or wrong token"));
        };
        self.shared.throttle.succeeded(&throttle_key, peer);
        let user = SessionUser { name: name.as_str().into(), uid: record.uid, admin: false, service: true };
        self.batch.control(LoopMsg::Bind { conn, user });
        self.batch.reply(conn, request_id, Reply::ServiceLoggedIn { name }, false);
        Ok(())
    }

    pub fn service_send(
        &mut self,
        conn: ConnId,
        request_id: u32,
        service: &SessionUser,
        to: ServiceTarget,
        message: Outgoing,
    ) -> Handled {
        self.validate(&message.content)?;
        if !message.transient && message.client_msg_id == 0 {
            return Err(Refusal::new(ErrorCode::BadRequest, "client_msg_id must not be 0"));
        }
        self.next_gather += 1;
        let gather = self.next_gather;
        let coordinator = self.index;
        let service = service.clone();
        let mut parts: Vec<(usize, WorkerCmd)> = Vec::new();
        match to {
            ServiceTarget::Users(users) => {
                if users.is_empty() || users.len() > MAX_NAMES {
                    return Err(Refusal::new(ErrorCode::BadRequest, format!("name 1 to {MAX_NAMES} users")));
                }
                let mut by_worker: HashMap<usize, Vec<String>> = HashMap::new();
                let mut named = std::collections::HashSet::new();
                // A name given twice is one recipient.
                for user in users.into_iter().filter(|u| named.insert(u.clone())) {
                    by_worker.entry(self.worker_of(Owner::User(&user))).or_default().push(user);
                }
                for (worker, users) in by_worker {
                    let cmd = WorkerCmd::ServiceDeliver {
                        coordinator,
                        gather,
                        service: service.clone(),
                        users: Some(users),
                        message: message.clone(),
                    };
                    parts.push((worker, cmd));
                }
            }
            ServiceTarget::Group { group_id, except } => {
                let cmd = WorkerCmd::ServiceGroup { coordinator, gather, service, group_id, except, message };
                parts.push((self.worker_of(Owner::Group(group_id)), cmd));
            }
            ServiceTarget::Online => {
                for worker in 0..self.peers.len() {
                    let cmd = WorkerCmd::ServiceDeliver {
                        coordinator,
                        gather,
                        service: service.clone(),
                        users: None,
                        message: message.clone(),
                    };
                    parts.push((worker, cmd));
                }
            }
        }
        self.received(1);
        let remaining = parts.len();
        self.gathers.insert(gather, Gather { conn, request_id, remaining, tally: Tally::default(), failure: None });
        for (worker, cmd) in parts {
            self.batch.send_to_worker(worker, cmd);
        }
        Ok(())
    }

    /// This worker's part of a service send to users.
    pub fn service_deliver(
        &mut self,
        coordinator: usize,
        gather: u64,
        service: &SessionUser,
        users: Option<Vec<String>>,
        message: &Outgoing,
    ) {
        let names: Vec<String> = match users {
            Some(users) => users,
            None => self
                .users
                .iter()
                .filter(|(_, state)| state.cursor.session.is_some())
                .map(|(name, _)| name.to_string())
                .collect(),
        };
        let mut tally = Tally::default();
        let mut failure = None;
        for name in names {
            match self.deliver_from_service(service, &name, message) {
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
        self.batch.send_to_worker(coordinator, WorkerCmd::Gathered { gather, outcome });
    }

    /// Stores (unless transient) and pushes one service message to one user; returns
    /// whether it was pushed now, or None for no such user.
    fn deliver_from_service(
        &mut self,
        service: &SessionUser,
        name: &str,
        message: &Outgoing,
    ) -> Result<Option<bool>, Refusal> {
        let Outgoing { client_msg_id, transient, content } = message;
        let (client_msg_id, transient) = (*client_msg_id, *transient);
        if !valid_username(name) {
            return Ok(None);
        }
        let Some(state) = self.user_state(name)? else { return Ok(None) };
        if transient {
            let Some(conn) = state.cursor.session.as_ref().map(|s| s.conn) else { return Ok(Some(false)) };
            let push = Push::ServiceNotice { service: service.name.to_string(), content: content.clone() };
            self.batch.push(conn, push, false);
            self.delivered(1);
            return Ok(Some(true));
        }
        let uid = state.uid;
        if self.dedup().get(service.uid, client_msg_id, uid).is_some() {
            return Ok(Some(false));
        }
        let stored = self.service_message(service, content.clone(), None)?;
        let seq = self.users[name].last_seq + 1;
        self.store_message(Conversation::Inbox, uid, seq, &stored, None)?;
        let entry =
            DedupEntry { recipient: uid, message_id: stored.message_id, seq, timestamp_ms: stored.timestamp_ms };
        self.remember(service.uid, client_msg_id, entry);
        let window = self.window();
        let state = self.users.get_mut(name).expect("user_state loaded the user");
        state.last_seq = seq;
        // Not refused by the quota (a service is the operator's own), but counted in it,
        // as the ack that frees it will be.
        state.stored_bytes += wire_size(&stored) as u64;
        let live = state.cursor.take_live(seq, wire_size(&stored), window);
        if let Some((conn, prev)) = live {
            // A service has no display name but its name.
            let display_name = stored.from.clone();
            self.batch.push(conn, Push::Message(wire(Conversation::Inbox, seq, prev, stored, display_name)), true);
            self.delivered(1);
        } else if let Some((name, _)) = self.users.get_key_value(name) {
            self.wait_if_starved(super::waiting::Waiting::Inbox(name.clone()));
        }
        Ok(Some(live.is_some()))
    }

    fn service_message(
        &self,
        service: &SessionUser,
        content: Content,
        except: Option<String>,
    ) -> Result<StoredMessage, Refusal> {
        Ok(StoredMessage {
            message_id: self.shared.store.next_id()?,
            from: service.name.to_string(),
            sender: SenderKind::Service,
            timestamp_ms: now_ms(),
            content,
            event: None,
            except,
        })
    }

    /// A service send to a group this worker owns.
    pub fn service_group(
        &mut self,
        coordinator: usize,
        gather: u64,
        service: &SessionUser,
        group_id: u64,
        except: Option<String>,
        message: Outgoing,
    ) {
        let outcome = self
            .service_group_send(service, group_id, except, message)
            .map_err(|refusal| (refusal.code, refusal.message));
        self.batch.send_to_worker(coordinator, WorkerCmd::Gathered { gather, outcome });
    }

    fn service_group_send(
        &mut self,
        service: &SessionUser,
        id: u64,
        except: Option<String>,
        message: Outgoing,
    ) -> Result<Tally, Refusal> {
        let Outgoing { client_msg_id, transient, content } = message;
        let online = self.group_sessions(id, except.as_deref())?;
        if transient {
            let push = ServerFrame::Push(Push::ServiceNotice { service: service.name.to_string(), content });
            let encoded: Arc<[u8]> = frame::encode(&push).into();
            for conn in &online {
                self.batch.frame_bytes(*conn, &encoded, false);
            }
            self.delivered(online.len() as u64);
            return Ok(Tally { stored: 0, delivered: online.len() as u32, unknown: Vec::new() });
        }
        if self.dedup().get(service.uid, client_msg_id, id).is_some() {
            return Ok(Tally { stored: 1, delivered: 0, unknown: Vec::new() });
        }
        let stored = self.service_message(service, content, except)?;
        let seq = self.group_last_seq(id)? + 1;
        self.store_message(Conversation::Group(id), id, seq, &stored, None)?;
        let entry = DedupEntry { recipient: id, message_id: stored.message_id, seq, timestamp_ms: stored.timestamp_ms };
        self.remember(service.uid, client_msg_id, entry);
        let delivered = self.deliver_group(id, seq, stored)?;
        Ok(Tally { stored: 1, delivered, unknown: Vec::new() })
    }

    /// A part of a service send came back; answer when the last one has.
    pub fn gathered(&mut self, gather: u64, outcome: Result<Tally, (ErrorCode, String)>) {
        let Some(pending) = self.gathers.get_mut(&gather) else { return };
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
        let done = self.gathers.remove(&gather).expect("looked up above");
        match done.failure {
            Some((code, message)) => self.batch.error(done.conn, done.request_id, code, &message),
            None => {
                let Tally { stored, delivered, mut unknown } = done.tally;
                unknown.sort();
                self.batch.reply(done.conn, done.request_id, Reply::ServiceSent { stored, delivered, unknown }, false);
            }
        }
    }

    pub fn query_online(&mut self, conn: ConnId, request_id: u32, users: Vec<String>) -> Handled {
        if users.len() > MAX_NAMES {
            return Err(Refusal::new(ErrorCode::BadRequest, format!("at most {MAX_NAMES} users")));
        }
        let online = users.iter().map(|u| self.shared.directory.conn_of(u).is_some()).collect();
        self.batch.reply(conn, request_id, Reply::OnlineStatus { online }, false);
        Ok(())
    }

    /// Ends a user's session on a service's word.
    pub fn disconnect_user(&mut self, conn: ConnId, request_id: u32, username: &str, reason: String) -> Handled {
        let state = self.user_state(username)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))?;
        let session = state.cursor.session.as_ref().map(|s| s.conn);
        if let Some(target) = session {
            self.batch.push(target, Push::Kicked { reason }, false);
            self.batch.control(LoopMsg::Close { conn: target, reason: "disconnected by a service" });
        }
        self.batch.reply(conn, request_id, Reply::Disconnected { was_online: session.is_some() }, false);
        Ok(())
    }

    pub fn watch_connections(&mut self, conn: ConnId, request_id: u32) {
        self.shared.connection_watchers.add(conn);
        self.batch.reply(conn, request_id, Reply::Done, false);
    }

    /// Tells watching services that a user connected or that its session ended.
    pub fn connection_event(&mut self, username: &Arc<str>, connected: bool, reason: &str) {
        let watchers = self.shared.connection_watchers.list();
        if watchers.is_empty() {
            return;
        }
        let push = Push::Connection { username: username.to_string(), connected, reason: reason.to_string() };
        let encoded: Arc<[u8]> = frame::encode(&ServerFrame::Push(push)).into();
        for conn in watchers {
            self.batch.frame_bytes(conn, &encoded, false);
        }
    }
}
