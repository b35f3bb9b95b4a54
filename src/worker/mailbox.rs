//! The workers as the cluster bus sees them: requests and closes from other nodes go on
//! the workers' inbound queues (held by the bus while one is full), commands from other
//! nodes' workers on the internal queues, converted to [`WorkerCmd`]s here, where their
//! meaning is known.

use super::accounts::MAX_ONLINE_PAGE;
use super::commands::WorkerCmd;
use super::rooms::MAX_ROOM_PAGE;
use super::services::MAX_NAMES;
use super::{membership, stats, Shared};
use crate::apps::app_of;
use crate::cluster::bus::Workers;
use crate::cluster::wire::{Entry, Page, Query, RemoteCmd};
use crate::protocol::{ErrorCode, Request, UserId};
use crate::route::{ConnId, Inbound, Owner, SessionUser};
use crate::store::Store;
use crossbeam_channel::{Sender, TrySendError};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Mailbox {
    /// Worker threads still running.
    pub(super) running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub(super) inbound: Vec<Sender<Inbound>>,
    pub(super) internal: Vec<Sender<WorkerCmd>>,
    /// The tables every worker shares: the directory, rooms, watchers, the store.
    pub(super) shared: Shared,
}

impl Workers for Mailbox {
    fn count(&self) -> usize {
        self.inbound.len()
    }

    fn stopped(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    fn try_send(&self, index: usize, inbound: Inbound) -> Result<(), Inbound> {
        let Some(queue) = self.inbound.get(index) else { return Ok(()) };
        match queue.try_send(inbound) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(inbound) | TrySendError::Disconnected(inbound)) => Err(inbound),
        }
    }

    fn command(&self, cmd: RemoteCmd) -> Vec<(u8, RemoteCmd)> {
        let workers = self.internal.len();
        // Unbounded queues: never block; an error means the worker has stopped (shutdown).
        let send = |index: usize, cmd: WorkerCmd| {
            if let Some(queue) = self.internal.get(index) {
                let _ = queue.send(cmd);
            }
        };
        match cmd {
            RemoteCmd::ServiceDeliver { part, users, message } => {
                // One part per worker here that owns recipients; the coordinator learns
                // how many first (the bus sends that before any part can report).
                let parts: Vec<(usize, Option<Vec<String>>)> = match users {
                    Some(users) => {
                        let mut by_worker: HashMap<usize, Vec<String>> = HashMap::new();
                        for user in users {
                            by_worker.entry(Owner::User(&user).partition(workers)).or_default().push(user);
                        }
                        by_worker.into_iter().map(|(worker, users)| (worker, Some(users))).collect()
                    }
                    None => (0..workers).map(|worker| (worker, None)).collect(),
                };
                let mut back = Vec::new();
                if parts.len() > 1 {
                    let more = RemoteCmd::MoreParts {
                        coordinator: part.coordinator,
                        gather: part.gather,
                        extra: parts.len() - 1,
                    };
                    back.push((part.node, more));
                }
                for (worker, users) in parts {
                    send(worker, WorkerCmd::ServiceDeliver { part: part.clone(), users, message: message.clone() });
                }
                back
            }
            RemoteCmd::ServiceGroup { part, group_id, except, message } => {
                send(
                    Owner::Group(group_id).partition(workers),
                    WorkerCmd::ServiceGroup { part, group_id, except, message },
                );
                Vec::new()
            }
            RemoteCmd::Gathered { coordinator, gather, outcome } => {
                send(coordinator, WorkerCmd::Gathered { gather, outcome });
                Vec::new()
            }
            RemoteCmd::MoreParts { coordinator, gather, extra } => {
                send(coordinator, WorkerCmd::MoreParts { gather, extra });
                Vec::new()
            }
            RemoteCmd::ForgetDevice { username, device } => {
                let (username, device): (Arc<str>, Arc<str>) = (username.into(), device.into());
                for index in 0..workers {
                    send(index, WorkerCmd::ForgetDevice { username: username.clone(), device: device.clone() });
                }
                Vec::new()
            }
            RemoteCmd::Watch { conn, app } => {
                self.shared.connection_watchers.add(conn, &app);
                Vec::new()
            }
            cmd => {
                let index = cmd.owner().partition(workers);
                if let Some(cmd) = self.local(cmd) {
                    send(index, cmd);
                }
                Vec::new()
            }
        }
    }

    fn display_name(&self, username: &str) -> String {
        self.shared.directory.display_name(username, &self.shared.store)
    }

    fn remember_name(&self, username: &str, display_name: String) {
        self.shared.directory.remember(username, display_name);
    }

    fn query_of(&self, request: &Request, user: Option<&SessionUser>) -> Result<Query, (ErrorCode, String)> {
        if let (Request::ListGroups, Some(user)) = (request, user) {
            let ids = self.shared.store.memberships(&user.name).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
            return Ok(Query::Groups { user: user.clone(), ids });
        }
        if let Request::Stats = request {
            return match user {
                Some(user) if user.admin || user.service => Ok(Query::Stats { app: app_of(&user.name).to_string() }),
                _ => Err((ErrorCode::Forbidden, "statistics are for administrators and services".into())),
            };
        }
        Query::of(request, MAX_ONLINE_PAGE, MAX_ROOM_PAGE, MAX_NAMES)
            .ok_or_else(|| (ErrorCode::BadRequest, format!("at most {MAX_NAMES} names in one query")))
    }

    fn page(&self, query: &Query) -> Page {
        let (entries, more) = match query {
            Query::Online { after, limit } => {
                let (page, more) = self.shared.directory.page(after, *limit as usize);
                (page.into_iter().map(|(name, display)| (name, Entry::DisplayName(display))).collect(), more)
            }
            Query::Rooms { after, limit } => {
                let (page, more) = self.shared.rooms.page(after, *limit as usize);
                (page.into_iter().map(|(name, members)| (name, Entry::Members(members))).collect(), more)
            }
            Query::Status { users } => {
                let online = users.iter().filter(|u| self.shared.directory.is_online(u));
                (online.map(|u| (u.clone(), Entry::Online)).collect(), false)
            }
            Query::Groups { user, ids } => {
                // Only the groups homed here have their record here.
                let infos =
                    ids.iter().filter_map(|id| membership::group_info(&self.shared.store, *id, user).ok().flatten());
                (infos.map(|info| (info.group_id.to_string(), Entry::Group(info))).collect(), false)
            }
            Query::Stats { app } => {
                (stats::page(&self.shared, app).into_iter().map(|e| (String::new(), e)).collect(), false)
            }
        };
        Page { entries, more }
    }

    fn session_ended(&self, conn: ConnId) {
        self.shared.directory.remote_ended(conn);
    }

    fn sessions_on(&self, node: u8) -> Vec<(ConnId, SessionUser)> {
        let sessions = self.shared.directory.remote_sessions_on(node).into_iter();
        // Who the session's user is beyond its name and device is its node's to know; the
        // workers end a session by connection and name.
        let user = |name, device| SessionUser { name, uid: UserId(0), admin: false, service: false, device };
        sessions.map(|(conn, name, device)| (conn, user(name, device))).collect()
    }

    fn node_down(&self, node: u8) {
        for worker in &self.internal {
            let _ = worker.send(WorkerCmd::NodeDown { node });
        }
    }

    fn reannounce(&self, node: Option<u8>) {
        // One worker reads the directory for everyone; it is a rare event.
        if let Some(worker) = self.internal.first() {
            let _ = worker.send(WorkerCmd::Reannounce { node });
        }
    }
}

impl Mailbox {
    /// [`local`], and a member's session on another node recorded: here, on the bus thread,
    /// in the order its node's envelopes came, so the `Closed` that ends it (which that node
    /// sends only after the `MemberOnline`) always finds it.
    fn local(&self, cmd: RemoteCmd) -> Option<WorkerCmd> {
        if let RemoteCmd::MemberOnline { group_id, username, device, conn, display_name } = cmd {
            let (username, device): (Arc<str>, Arc<str>) = (username.into(), device.into());
            self.shared.directory.remember(&username, display_name);
            self.shared.directory.remote_online(
                username.clone(),
                device.clone(),
                conn,
                self.shared.config.delivery_window_bytes,
            );
            return Some(WorkerCmd::MemberOnline { group_id, username, device, conn });
        }
        local(cmd, &self.shared.store)
    }
}

/// A command from another node as this node's worker command; None when it no longer
/// applies here (a receipt for a user whose account is gone).
fn local(cmd: RemoteCmd, store: &Store) -> Option<WorkerCmd> {
    Some(match cmd {
        RemoteCmd::SentCopy { sender, device, conn, stored } => {
            WorkerCmd::SentCopy { sender: sender.into(), device: device.into(), conn, stored }
        }
        RemoteCmd::ReadReceipt { sender, reader, up_to } => {
            let account = store.account(&sender).ok().flatten()?;
            WorkerCmd::ReadReceipt { sender: sender.into(), sender_uid: account.user_id, reader: reader.into(), up_to }
        }
        RemoteCmd::DeleteDirect { conn, request_id, user, peer, message_id } => {
            WorkerCmd::DeleteDirect { conn, request_id, user, peer, message_id }
        }
        RemoteCmd::SenderDeleted { sender, peer, message_id } => {
            WorkerCmd::SenderDeleted { sender: sender.into(), peer, message_id }
        }
        RemoteCmd::Broadcast { from, content } => WorkerCmd::Broadcast { from, content },
        // Taken apart by `Mailbox::command`.
        RemoteCmd::ServiceDeliver { .. }
        | RemoteCmd::ServiceGroup { .. }
        | RemoteCmd::Gathered { .. }
        | RemoteCmd::MoreParts { .. }
        | RemoteCmd::Watch { .. }
        | RemoteCmd::ForgetDevice { .. } => return None,
        // `Mailbox::local` records the session first.
        RemoteCmd::MemberOnline { group_id, username, device, conn, .. } => {
            WorkerCmd::MemberOnline { group_id, username: username.into(), device: device.into(), conn }
        }
        RemoteCmd::Admit { group_id, username, admission } => {
            WorkerCmd::Admit { group_id, username: username.into(), admission }
        }
        RemoteCmd::Admitted { group_id, username, admission, outcome } => {
            WorkerCmd::Admitted { group_id, username: username.into(), admission, outcome }
        }
        RemoteCmd::MembershipEnded { group_id, username } => {
            WorkerCmd::MembershipEnded { group_id, username: username.into() }
        }
        RemoteCmd::GroupPresence { username, online, groups } => WorkerCmd::GroupPresence { username, online, groups },
        RemoteCmd::PushNotes { message, readers } => WorkerCmd::RemoteNotes { message, readers },
    })
}

/// A worker command for an owner on another node, as it travels; None for a command that
/// never crosses nodes. The first `Owner` is the one it is for.
pub(super) fn remote(cmd: &WorkerCmd) -> Option<RemoteCmd> {
    Some(match cmd {
        WorkerCmd::SentCopy { sender, device, conn, stored } => RemoteCmd::SentCopy {
            sender: sender.to_string(),
            device: device.to_string(),
            conn: *conn,
            stored: stored.clone(),
        },
        WorkerCmd::ReadReceipt { sender, reader, up_to, .. } => {
            RemoteCmd::ReadReceipt { sender: sender.to_string(), reader: reader.to_string(), up_to: *up_to }
        }
        WorkerCmd::DeleteDirect { conn, request_id, user, peer, message_id } => RemoteCmd::DeleteDirect {
            conn: *conn,
            request_id: *request_id,
            user: user.clone(),
            peer: peer.clone(),
            message_id: *message_id,
        },
        WorkerCmd::SenderDeleted { sender, peer, message_id } => {
            RemoteCmd::SenderDeleted { sender: sender.to_string(), peer: peer.clone(), message_id: *message_id }
        }
        WorkerCmd::Admit { group_id, username, admission } => {
            RemoteCmd::Admit { group_id: *group_id, username: username.to_string(), admission: *admission }
        }
        WorkerCmd::Admitted { group_id, username, admission, outcome } => RemoteCmd::Admitted {
            group_id: *group_id,
            username: username.to_string(),
            admission: *admission,
            outcome: outcome.clone(),
        },
        WorkerCmd::MembershipEnded { group_id, username } => {
            RemoteCmd::MembershipEnded { group_id: *group_id, username: username.to_string() }
        }
        _ => return None,
    })
}

/// The owner a command is for, when it is one that may cross nodes.
pub(super) fn owner_of(cmd: &WorkerCmd) -> Option<Owner<'_>> {
    match cmd {
        WorkerCmd::SentCopy { sender, .. }
        | WorkerCmd::ReadReceipt { sender, .. }
        | WorkerCmd::SenderDeleted { sender, .. } => Some(Owner::User(sender)),
        WorkerCmd::DeleteDirect { peer, .. } => Some(Owner::User(peer)),
        WorkerCmd::Admit { username, .. } | WorkerCmd::MembershipEnded { username, .. } => Some(Owner::User(username)),
        WorkerCmd::Admitted { group_id, .. } => Some(Owner::Group(*group_id)),
        _ => None,
    }
}
