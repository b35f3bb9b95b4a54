//! Presence: online/offline pushes to the user's co-members in any group and to sessions
//! that subscribed to the user. The user's own worker computes the recipients at login and
//! at session end, from the user's groups and subscribers: the cost follows the user's
//! circle, never the number of users online. In a cluster, the co-members in groups homed
//! on other nodes are told by those nodes, which know their sessions.
//!
//! Services that watch connections hear of every login and session end, of every device
//! ([`connection_event`]). A user is online while any of its devices is: it is announced
//! online at its first session and offline when its last ends.

use super::context::Ctx;
use super::refusal::{Handled, Refusal};
use crate::apps::app_of;
use crate::apps::wire;
use crate::cluster::wire::RemoteCmd;
use crate::protocol::{ErrorCode, GroupId, Push, Reply, ServerFrame};
use crate::route::{ConnId, Owner};
use log::debug;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Subscriptions to users of this worker's partition.
#[derive(Default)]
pub struct Presence {
    watchers: Watchers,
}

#[derive(Default)]
struct Watchers {
    by_target: HashMap<Arc<str>, Vec<ConnId>>,
    by_conn: HashMap<ConnId, Vec<Arc<str>>>,
}

impl Watchers {
    fn add(&mut self, target: Arc<str>, conn: ConnId) {
        let conns = self.by_target.entry(target.clone()).or_default();
        if !conns.contains(&conn) {
            conns.push(conn);
            self.by_conn.entry(conn).or_default().push(target);
        }
    }

    fn remove(&mut self, target: &str, conn: ConnId) -> bool {
        let Some(conns) = self.by_target.get_mut(target) else {
            return false;
        };
        let before = conns.len();
        conns.retain(|c| *c != conn);
        let removed = conns.len() != before;
        if conns.is_empty() {
            self.by_target.remove(target);
        }
        if let Some(targets) = self.by_conn.get_mut(&conn) {
            targets.retain(|t| &**t != target);
        }
        removed
    }

    fn contains(&self, target: &str, conn: ConnId) -> bool {
        self.by_target.get(target).is_some_and(|conns| conns.contains(&conn))
    }

    fn of(&self, target: &str) -> &[ConnId] {
        self.by_target.get(target).map_or(&[], Vec::as_slice)
    }

    /// Forgets the connection's subscriptions here; returns how many there were.
    fn forget_conn(&mut self, conn: ConnId) -> usize {
        let targets = self.by_conn.remove(&conn).unwrap_or_default();
        let count = targets.len();
        for target in targets {
            if let Some(conns) = self.by_target.get_mut(&target) {
                conns.retain(|c| *c != conn);
                if conns.is_empty() {
                    self.by_target.remove(&target);
                }
            }
        }
        count
    }
}

impl Presence {
    /// `conn` subscribes to `username`, who is `online` now.
    pub fn subscribe(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, username: &str, online: bool) -> Handled {
        let max = ctx.config().max_subscriptions;
        // Counted across workers: subscriptions spread over them by username.
        if !self.watchers.contains(username, conn) {
            if !ctx.shared.subscription_seats.take(conn, max) {
                return Err(Refusal::new(ErrorCode::LimitReached, "too many presence subscriptions"));
            }
            self.watchers.add(username.into(), conn);
        }
        ctx.batch.reply(conn, request_id, Reply::Subscribed { username: username.to_string(), online }, false);
        Ok(())
    }

    pub fn unsubscribe(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, username: &str) -> Handled {
        if !self.watchers.remove(username, conn) {
            return Err(Refusal::new(ErrorCode::BadRequest, "not subscribed to this user"));
        }
        ctx.shared.subscription_seats.release(conn, 1);
        ctx.batch.reply(conn, request_id, Reply::Done, false);
        Ok(())
    }

    /// The connection closed: its subscriptions here end, and their seats are given back.
    /// The subscribing connections held by cluster node `node`.
    pub fn conns_of_node(&self, node: u8) -> Vec<ConnId> {
        self.watchers.by_conn.keys().filter(|c| c.node() == node).copied().collect()
    }

    pub fn closed(&mut self, ctx: &Ctx, conn: ConnId) {
        let subscriptions = self.watchers.forget_conn(conn);
        ctx.shared.subscription_seats.release(conn, subscriptions);
    }

    /// Tells the user's circle that it came online or went offline. In a cluster, the nodes
    /// of its groups homed elsewhere tell its co-members there ([`to_group_peers`]); a
    /// co-member in groups on several nodes may hear it from each.
    pub fn announce(&self, ctx: &mut Ctx, username: &str, online: bool) -> Handled {
        let mut recipients: BTreeSet<ConnId> = self.watchers.of(username).iter().copied().collect();
        let mut elsewhere: BTreeMap<u8, Vec<GroupId>> = BTreeMap::new();
        let mut here = Vec::new();
        for group_id in ctx.shared.store.memberships(username)? {
            match ctx.home_of(Owner::Group(group_id)) {
                Some(node) => elsewhere.entry(node).or_default().push(group_id),
                None => here.push(group_id),
            }
        }
        recipients.extend(group_peers(ctx, username, &here)?);
        for (node, groups) in elsewhere {
            let cmd = RemoteCmd::GroupPresence { username: username.to_string(), online, groups };
            ctx.batch.send_to_node(node, cmd, None, false);
        }
        push_presence(ctx, username, online, recipients);
        Ok(())
    }
}

/// A user of another cluster node came online or went offline: its co-members in `groups`
/// (homed here) hear of it.
pub fn to_group_peers(ctx: &mut Ctx, username: &str, online: bool, groups: &[GroupId]) {
    match group_peers(ctx, username, groups) {
        Ok(recipients) => push_presence(ctx, username, online, recipients),
        Err(refusal) => debug!("presence of {username}: {}", refusal.message),
    }
}

/// The sessions of the user's co-members in `groups` (homed here), wherever they are.
fn group_peers(ctx: &Ctx, username: &str, groups: &[GroupId]) -> Result<BTreeSet<ConnId>, Refusal> {
    let store = &ctx.shared.store;
    let mut recipients = BTreeSet::new();
    for &group_id in groups {
        let Some(record) = store.group(group_id)? else {
            continue;
        };
        for member in record.members.iter().filter(|m| m.username != username) {
            recipients.extend(ctx.shared.directory.member_sessions(&member.username).into_iter().map(|s| s.conn));
        }
    }
    Ok(recipients)
}

fn push_presence(ctx: &mut Ctx, username: &str, online: bool, recipients: BTreeSet<ConnId>) {
    if recipients.is_empty() {
        return;
    }
    let encoded: Arc<[u8]> =
        wire::encode(ServerFrame::Push(Push::Presence { username: username.to_string(), online })).into();
    for conn in recipients {
        ctx.batch.frame_bytes(conn, &encoded, false);
    }
}

/// Tells watching services that a user connected on `device` or that its session there
/// ended: `DeviceConnection` for a named device, `Connection` (as before devices) for the
/// legacy one.
pub fn connection_event(ctx: &mut Ctx, username: &str, device: &str, connected: bool, reason: &str) {
    let watchers = ctx.shared.connection_watchers.list(app_of(username));
    if watchers.is_empty() {
        return;
    }
    let (username, reason) = (username.to_string(), reason.to_string());
    let push = match device.is_empty() {
        true => Push::Connection { username, connected, reason },
        false => Push::DeviceConnection { username, device: device.to_string(), connected, reason },
    };
    let encoded: Arc<[u8]> = wire::encode(ServerFrame::Push(push)).into();
    for conn in watchers {
        ctx.batch.frame_bytes(conn, &encoded, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_connection_drops_all_its_subscriptions() {
        let mut w = Watchers::default();
        w.add("alice".into(), ConnId(1));
        w.add("bob".into(), ConnId(1));
        w.add("alice".into(), ConnId(2));
        w.add("alice".into(), ConnId(2));
        assert_eq!(w.of("alice"), &[ConnId(1), ConnId(2)]);
        assert!(w.contains("bob", ConnId(1)) && !w.contains("bob", ConnId(2)));
        assert_eq!(w.forget_conn(ConnId(1)), 2, "it had two");
        assert_eq!(w.of("alice"), &[ConnId(2)]);
        assert!(w.of("bob").is_empty());
        assert!(w.remove("alice", ConnId(2)));
        assert!(!w.remove("alice", ConnId(2)));
    }
}
