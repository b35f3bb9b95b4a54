//! Presence: online/offline pushes to the user's co-members in any group and to sessions
//! that subscribed to the user. The user's own worker computes the recipients at login and
//! at session end, from the user's groups and subscribers: the cost follows the user's
//! circle, never the number of users online.

use super::handler::{Handled, Refusal, Worker};
use crate::frame;
use crate::protocol::{ErrorCode, Push, Reply, ServerFrame};
use crate::route::{ConnId, SessionUser};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Subscriptions to users of this worker's partition.
#[derive(Default)]
pub struct Watchers {
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
    pub fn forget_conn(&mut self, conn: ConnId) -> usize {
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

impl Worker {
    pub fn subscribe(&mut self, conn: ConnId, request_id: u32, _user: &SessionUser, username: &str) -> Handled {
        let max = self.shared.config.max_subscriptions;
        let state = self.user_state(username)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))?;
        let online = state.cursor.session.is_some();
        // Counted across workers: subscriptions spread over them by username.
        if !self.watchers.contains(username, conn) {
            if !self.shared.subscription_seats.take(conn, max) {
                return Err(Refusal::new(ErrorCode::LimitReached, "too many presence subscriptions"));
            }
            self.watchers.add(username.into(), conn);
        }
        self.batch.reply(conn, request_id, Reply::Subscribed { username: username.to_string(), online }, false);
        Ok(())
    }

    pub fn unsubscribe(&mut self, conn: ConnId, request_id: u32, username: &str) -> Handled {
        if !self.watchers.remove(username, conn) {
            return Err(Refusal::new(ErrorCode::BadRequest, "not subscribed to this user"));
        }
        self.shared.subscription_seats.release(conn, 1);
        self.batch.reply(conn, request_id, Reply::Done, false);
        Ok(())
    }

    /// Tells the user's circle that it came online or went offline.
    pub fn announce(&mut self, username: &str, online: bool) -> Handled {
        let mut recipients: BTreeSet<ConnId> = self.watchers.of(username).iter().copied().collect();
        let store = &self.shared.store;
        for group_id in store.memberships(username)? {
            let Some(record) = store.group(group_id)? else {
                continue;
            };
            for member in record.members.iter().filter(|m| m.username != username) {
                if let Some(conn) = self.shared.directory.conn_of(&member.username) {
                    recipients.insert(conn);
                }
            }
        }
        if recipients.is_empty() {
            return Ok(());
        }
        let encoded: Arc<[u8]> =
            frame::encode(&ServerFrame::Push(Push::Presence { username: username.to_string(), online })).into();
        for conn in recipients {
            self.batch.frame_bytes(conn, &encoded, false);
        }
        Ok(())
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
