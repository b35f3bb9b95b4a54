//! The workers as the cluster bus sees them: requests and closes from other nodes go on
//! the workers' inbound queues (held by the bus while one is full), commands from other
//! nodes' workers on the internal queues, converted to [`WorkerCmd`]s here, where their
//! meaning is known.

use super::commands::WorkerCmd;
use super::Directory;
use crate::cluster::bus::Workers;
use crate::cluster::wire::RemoteCmd;
use crate::protocol::UserId;
use crate::route::{ConnId, Inbound, Owner, SessionUser};
use crate::store::Store;
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;

pub struct Mailbox {
    pub(super) inbound: Vec<Sender<Inbound>>,
    pub(super) internal: Vec<Sender<WorkerCmd>>,
    pub(super) directory: Directory,
    pub(super) store: Store,
    /// The delivery budget of a member's session on another node, in bytes
    /// (`--delivery-window-bytes`, as for a session of this node).
    pub(super) budget_bytes: usize,
}

impl Workers for Mailbox {
    fn count(&self) -> usize {
        self.inbound.len()
    }

    fn try_send(&self, index: usize, inbound: Inbound) -> Result<(), Inbound> {
        let Some(queue) = self.inbound.get(index) else { return Ok(()) };
        match queue.try_send(inbound) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(inbound) | TrySendError::Disconnected(inbound)) => Err(inbound),
        }
    }

    fn command(&self, cmd: RemoteCmd) {
        let index = cmd.owner().partition(self.internal.len());
        let Some(cmd) = self.local(cmd) else { return };
        // Unbounded: never blocks; an error means the worker has stopped (shutdown).
        let _ = self.internal[index].send(cmd);
    }

    fn display_name(&self, username: &str) -> String {
        self.directory.display_name(username, &self.store)
    }

    fn remember_name(&self, username: &str, display_name: String) {
        self.directory.remember(username, display_name);
    }

    fn session_ended(&self, conn: ConnId) {
        self.directory.remote_ended(conn);
    }

    fn sessions_on(&self, node: u8) -> Vec<(ConnId, SessionUser)> {
        let sessions = self.directory.remote_sessions_on(node).into_iter();
        // Who the session's user is beyond its name and device is its node's to know; the
        // workers end a session by connection and name.
        let user = |name, device| SessionUser { name, uid: UserId(0), admin: false, service: false, device };
        sessions.map(|(conn, name, device)| (conn, user(name, device))).collect()
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
            self.directory.remember(&username, display_name);
            self.directory.remote_online(username.clone(), device.clone(), conn, self.budget_bytes);
            return Some(WorkerCmd::MemberOnline { group_id, username, device, conn });
        }
        local(cmd, &self.store)
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
