//! What all workers share: who is online (and on which connections: one session per
//! device), display names, and which rooms exist. In a cluster, also the sessions of group
//! members homed on other nodes, as far as this node's groups need them.
//!
//! Written at login, logout, rename and room joins and leaves, never per message, so a
//! lock each is cheap. Workers route nothing through these: they serve the listings,
//! presence (which needs a co-member's connection), broadcast, and the display names that
//! pushes and listings carry.

use super::budget::SessionBudget;
use crate::apps::{app_of, local, prefix, SEPARATOR};
use crate::route::ConnId;
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One session of an online user.
#[derive(Clone, Debug)]
pub struct SessionEntry {
    /// Its device ("" for the legacy device).
    pub device: Arc<str>,
    pub conn: ConnId,
    /// The session's delivery budget, for the workers that own its groups.
    pub budget: Arc<SessionBudget>,
}

#[derive(Clone, Debug)]
struct OnlineEntry {
    display_name: String,
    /// At least one while the user is in the directory; at most one per device.
    sessions: Vec<SessionEntry>,
}

/// Display names of offline users kept at most; beyond, the cache starts afresh.
const MAX_CACHED_NAMES: usize = 100_000;

/// Who is online.
#[derive(Default)]
struct Online {
    // Ordered so paging by "after this name" is a range scan, and an app's users (who
    // share the app's prefix) are one range.
    users: BTreeMap<Arc<str>, OnlineEntry>,
}

#[derive(Clone, Default)]
pub struct Directory {
    online: Arc<RwLock<Online>>,
    /// Display names read from the accounts, so a catch-up of many messages from one
    /// sender reads the account once. Every rename goes through [`Directory::rename`], so
    /// an entry is never stale.
    names: Arc<RwLock<HashMap<Arc<str>, String>>>,
    /// Sessions of users homed on other cluster nodes, in groups homed here (never part of
    /// who is online here: their node lists them).
    remote: Arc<RwLock<RemoteSessions>>,
}

/// Sessions held by other cluster nodes, of members of this node's groups: recorded when a
/// member's node says it is online in one of them (`MemberOnline`), dropped when that node
/// says the session ended. Each has a delivery budget of its own here, so this node's
/// groups push to it as to a session of this node (its acks come here too).
#[derive(Default)]
struct RemoteSessions {
    by_user: HashMap<Arc<str>, Vec<SessionEntry>>,
    by_conn: HashMap<ConnId, Arc<str>>,
}

impl RemoteSessions {
    fn remove(&mut self, conn: ConnId) {
        let Some(username) = self.by_conn.remove(&conn) else { return };
        if let Some(sessions) = self.by_user.get_mut(&username) {
            sessions.retain(|s| s.conn != conn);
            if sessions.is_empty() {
                self.by_user.remove(&username);
            }
        }
    }
}

impl Directory {
    /// The user's session on `device` is `conn` now (a session of that device before it is
    /// replaced).
    pub fn set(
        &self,
        username: Arc<str>,
        display_name: String,
        device: Arc<str>,
        conn: ConnId,
        budget: Arc<SessionBudget>,
    ) {
        let mut online = write(&self.online);
        let entry = online.users.entry(username).or_insert_with(|| OnlineEntry { display_name, sessions: Vec::new() });
        entry.sessions.retain(|s| s.device != device && s.conn != conn);
        entry.sessions.push(SessionEntry { device, conn, budget });
    }

    /// Removes the user's session on `conn` if it is still one (a newer session of the
    /// device stays); the user leaves the directory with its last session.
    pub fn remove(&self, username: &str, conn: ConnId) {
        let mut online = write(&self.online);
        let Some(entry) = online.users.get_mut(username) else { return };
        entry.sessions.retain(|s| s.conn != conn);
        if entry.sessions.is_empty() {
            online.users.remove(username);
        }
    }

    /// A user homed on another cluster node is called `display_name` (as that node said
    /// with its latest request): for what this node sends about it.
    pub fn remember(&self, username: &str, display_name: String) {
        let mut names = write(&self.names);
        if names.len() >= MAX_CACHED_NAMES {
            names.clear();
        }
        names.insert(username.into(), display_name);
    }

    pub fn rename(&self, username: &str, display_name: String) {
        // The cache first: a reader that missed both takes the account, which the rename
        // already wrote, and only fills an empty entry.
        write(&self.names).insert(username.into(), display_name.clone());
        if let Some(entry) = write(&self.online).users.get_mut(username) {
            entry.display_name = display_name;
        }
    }

    /// A user's display name, online or not; the username itself if the account is gone
    /// or unreadable (a display name is never worth failing a delivery for).
    pub fn display_name(&self, username: &str, store: &Store) -> String {
        if let Some(entry) = read(&self.online).users.get(username) {
            return entry.display_name.clone();
        }
        if let Some(name) = read(&self.names).get(username) {
            return name.clone();
        }
        let name = match store.account(username) {
            Ok(Some(account)) => account.display_name,
            _ => local(username).to_string(),
        };
        let mut names = write(&self.names);
        if names.len() >= MAX_CACHED_NAMES {
            names.clear();
        }
        names.entry(username.into()).or_insert(name).clone()
    }

    /// Every connection of the user's sessions, one per device (none if offline).
    pub fn conns_of(&self, username: &str) -> Vec<ConnId> {
        read(&self.online).users.get(username).map_or_else(Vec::new, |e| e.sessions.iter().map(|s| s.conn).collect())
    }

    /// Whether the user has a session on any device.
    pub fn is_online(&self, username: &str) -> bool {
        read(&self.online).users.contains_key(username)
    }

    /// The user's sessions (device, connection and delivery budget), none if offline.
    pub fn sessions_of(&self, username: &str) -> Vec<SessionEntry> {
        read(&self.online).users.get(username).map_or_else(Vec::new, |e| e.sessions.clone())
    }

    /// The user's session on `conn`, if that is still one of its sessions.
    pub fn session(&self, username: &str, conn: ConnId) -> Option<SessionEntry> {
        read(&self.online).users.get(username)?.sessions.iter().find(|s| s.conn == conn).cloned()
    }

    /// A member homed on another cluster node is online on `device` at `conn` (a connection
    /// of its node): recorded once per connection, with a delivery budget of `budget_bytes`.
    /// A device has one session: one it had before is dropped (its node may have gone down
    /// without saying that it ended).
    pub fn remote_online(&self, username: Arc<str>, device: Arc<str>, conn: ConnId, budget_bytes: usize) {
        let mut remote = write(&self.remote);
        if remote.by_conn.get(&conn).is_some_and(|known| *known == username) {
            return;
        }
        remote.remove(conn);
        let stale: Vec<ConnId> = remote
            .by_user
            .get(&username)
            .map(|sessions| sessions.iter().filter(|s| s.device == device).map(|s| s.conn).collect())
            .unwrap_or_default();
        for old in stale {
            remote.remove(old);
        }
        let budget = Arc::new(SessionBudget::new(budget_bytes));
        remote.by_conn.insert(conn, username.clone());
        remote.by_user.entry(username).or_default().push(SessionEntry { device, conn, budget });
    }

    /// The session of `conn`, held by another cluster node, ended.
    pub fn remote_ended(&self, conn: ConnId) {
        write(&self.remote).remove(conn);
    }

    /// The sessions recorded here of cluster node `node`'s connections: (connection,
    /// username, device).
    pub fn remote_sessions_on(&self, node: u8) -> Vec<(ConnId, Arc<str>, Arc<str>)> {
        let remote = read(&self.remote);
        let sessions = remote.by_user.iter().flat_map(|(name, sessions)| sessions.iter().map(move |s| (name, s)));
        sessions
            .filter(|(_, s)| s.conn.node() == node)
            .map(|(name, s)| (s.conn, name.clone(), s.device.clone()))
            .collect()
    }

    /// A group member's sessions: of this node, and of other nodes recorded here.
    pub fn member_sessions(&self, username: &str) -> Vec<SessionEntry> {
        let mut sessions = self.sessions_of(username);
        if let Some(remote) = read(&self.remote).by_user.get(username) {
            sessions.extend(remote.iter().cloned());
        }
        sessions
    }

    /// A group member's session on `conn`, of this node or another, if it still is one.
    pub fn member_session(&self, username: &str, conn: ConnId) -> Option<SessionEntry> {
        if let Some(session) = self.session(username, conn) {
            return Some(session);
        }
        read(&self.remote).by_user.get(username)?.iter().find(|s| s.conn == conn).cloned()
    }

    /// Whether a group member has a session here or one another node told of.
    pub fn member_online(&self, username: &str) -> bool {
        self.is_online(username) || read(&self.remote).by_user.contains_key(username)
    }

    /// Every user online with its display name and sessions.
    pub fn everyone(&self) -> Vec<(Arc<str>, String, Vec<SessionEntry>)> {
        read(&self.online).users.iter().map(|(n, e)| (n.clone(), e.display_name.clone(), e.sessions.clone())).collect()
    }

    /// Users online (each once, however many devices).
    pub fn count(&self) -> usize {
        read(&self.online).users.len()
    }

    /// Every online connection of `app`, every session of every user (broadcast).
    pub fn all_conns(&self, app: &str) -> Vec<ConnId> {
        let (from, to) = app_bounds(app);
        let range = (Bound::Included(from.as_str()), Bound::Excluded(to.as_str()));
        read(&self.online).users.range::<str, _>(range).flat_map(|(_, e)| e.sessions.iter().map(|s| s.conn)).collect()
    }

    /// Up to `limit` users of `after`'s app after `after` (qualified; the app's bare prefix
    /// for the start) with their display names, and whether more follow.
    pub fn page(&self, after: &str, limit: usize) -> (Vec<(String, String)>, bool) {
        let online = read(&self.online);
        let app = prefix(app_of(after));
        let mut range = online
            .users
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(&app));
        let page = range.by_ref().take(limit).map(|(n, e)| (n.to_string(), e.display_name.clone())).collect();
        (page, range.next().is_some())
    }
}

/// The names of one app, as a range of a map ordered by name: from the app's prefix
/// (`app/`) up to but excluding `app0` (`0` is the character after `/`).
fn app_bounds(app: &str) -> (String, String) {
    (prefix(app), format!("{app}{}", char::from(SEPARATOR as u8 + 1)))
}

/// Rooms with their member counts, for the room listing.
#[derive(Clone, Default)]
pub struct RoomList {
    rooms: Arc<RwLock<BTreeMap<String, u32>>>,
}

impl RoomList {
    /// Records the room's member count; zero removes it.
    pub fn set(&self, room: &str, members: u32) {
        let mut rooms = write(&self.rooms);
        if members == 0 {
            rooms.remove(room);
        } else {
            rooms.insert(room.to_string(), members);
        }
    }

    pub fn count(&self) -> usize {
        read(&self.rooms).len()
    }

    /// Rooms of `app`.
    pub fn count_in(&self, app: &str) -> usize {
        let (from, to) = app_bounds(app);
        read(&self.rooms).range::<str, _>((Bound::Included(from.as_str()), Bound::Excluded(to.as_str()))).count()
    }

    /// Up to `limit` rooms of `after`'s app after `after` (qualified, as for users).
    pub fn page(&self, after: &str, limit: usize) -> (Vec<(String, u32)>, bool) {
        let rooms = read(&self.rooms);
        let app = prefix(app_of(after));
        let mut range = rooms
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(&app));
        let page = range.by_ref().take(limit).map(|(n, c)| (n.clone(), *c)).collect();
        (page, range.next().is_some())
    }
}

/// How many of something (rooms joined, presence subscriptions) each connection holds
/// across the workers that own them, so a per-connection limit holds however the names
/// spread over workers.
#[derive(Clone, Default)]
pub struct ConnSeats {
    counts: Arc<RwLock<HashMap<ConnId, usize>>>,
}

impl ConnSeats {
    /// Counts one more room for `conn` unless it is in `max` already.
    pub fn take(&self, conn: ConnId, max: usize) -> bool {
        let mut counts = write(&self.counts);
        let count = counts.entry(conn).or_default();
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    pub fn release(&self, conn: ConnId, rooms: usize) {
        let mut counts = write(&self.counts);
        if let Some(count) = counts.get_mut(&conn) {
            *count = count.saturating_sub(rooms);
            if *count == 0 {
                counts.remove(&conn);
            }
        }
    }
}

/// Service connections that watch users of their app connecting and disconnecting.
#[derive(Clone, Default)]
pub struct ConnectionWatchers {
    conns: Arc<RwLock<Vec<Watcher>>>,
}

/// A watching service's connection and its app.
type Watcher = (ConnId, Arc<str>);

impl ConnectionWatchers {
    pub fn add(&self, conn: ConnId, app: &str) {
        let mut conns = write(&self.conns);
        if !conns.iter().any(|(c, _)| *c == conn) {
            conns.push((conn, app.into()));
        }
    }

    pub fn remove(&self, conn: ConnId) {
        write(&self.conns).retain(|(c, _)| *c != conn);
    }

    /// Forgets every watcher held by cluster node `node` (it is down: its connections are gone).
    pub fn remove_node(&self, node: u8) {
        write(&self.conns).retain(|(c, _)| c.node() != node);
    }

    /// The watchers of `app`.
    pub fn list(&self, app: &str) -> Vec<ConnId> {
        read(&self.conns).iter().filter(|(_, a)| **a == *app).map(|(c, _)| *c).collect()
    }
}

// A panic while holding one of these locks cannot leave a map half-updated (each write is
// one insert or remove), so a poisoned lock is still safe to use.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Arc<SessionBudget> {
        Arc::new(SessionBudget::new(1))
    }

    #[test]
    fn pages_in_name_order_within_one_app() {
        let d = Directory::default();
        for (i, n) in ["a/carol", "a/alice", "b/aaron", "a/bob", "a/dave", "a0/zed", "0/x"].iter().enumerate() {
            d.set((*n).into(), n.to_uppercase(), "".into(), ConnId(i as u64), budget());
        }
        let (page, more) = d.page("a/", 2);
        assert_eq!(page, vec![("a/alice".into(), "A/ALICE".into()), ("a/bob".into(), "A/BOB".into())]);
        assert!(more);
        let (page, more) = d.page("a/bob", 2);
        assert_eq!(page.len(), 2);
        assert!(!more, "the next app's users are not this one's");
        assert_eq!(d.all_conns("a").len(), 4);
        assert_eq!(d.all_conns("b"), [ConnId(2)]);
    }

    #[test]
    fn a_newer_session_is_not_removed_by_the_old_ones_close() {
        let d = Directory::default();
        d.set("alice".into(), "A".into(), "".into(), ConnId(1), budget());
        d.set("alice".into(), "A".into(), "".into(), ConnId(2), budget());
        d.remove("alice", ConnId(1));
        assert_eq!(d.conns_of("alice"), [ConnId(2)]);
        d.remove("alice", ConnId(2));
        assert_eq!(d.count(), 0);
    }

    #[test]
    fn a_user_is_online_while_any_device_is_and_listed_once() {
        let d = Directory::default();
        d.set("a/alice".into(), "A".into(), "laptop".into(), ConnId(1), budget());
        d.set("a/alice".into(), "A".into(), "phone".into(), ConnId(2), budget());
        d.set("a/alice".into(), "A".into(), "phone".into(), ConnId(3), budget());
        assert_eq!(d.conns_of("a/alice"), [ConnId(1), ConnId(3)], "a device has one session, the newest");
        assert_eq!((d.count(), d.page("a/", 10).0.len(), d.all_conns("a").len()), (1, 1, 2));
        assert_eq!(d.session("a/alice", ConnId(3)).map(|s| s.device), Some("phone".into()));
        d.remove("a/alice", ConnId(1));
        assert!(d.is_online("a/alice"));
        d.remove("a/alice", ConnId(3));
        assert!(!d.is_online("a/alice"));
    }

    #[test]
    fn a_remote_session_lasts_until_its_node_says_it_ended_or_its_device_logs_in_again() {
        let d = Directory::default();
        let (first, second, other) = (ConnId::on_node(2, 1, 1), ConnId::on_node(2, 2, 1), ConnId::on_node(3, 1, 1));
        d.remote_online("a/bob".into(), "phone".into(), first, 10);
        d.remote_online("a/bob".into(), "phone".into(), first, 10);
        d.remote_online("a/bob".into(), "laptop".into(), other, 10);
        assert_eq!(d.member_sessions("a/bob").len(), 2);
        assert!(d.member_online("a/bob") && !d.is_online("a/bob"), "never online here");
        d.remote_online("a/bob".into(), "phone".into(), second, 10);
        assert!(d.member_session("a/bob", first).is_none(), "the device's newer session replaced it");
        assert_eq!(d.remote_sessions_on(3), vec![(other, "a/bob".into(), "laptop".into())]);
        assert!(d.member_session("a/bob", second).is_some());
        d.remote_ended(second);
        d.remote_ended(other);
        assert!(!d.member_online("a/bob"));
        assert!(d.member_sessions("a/bob").is_empty());
    }

    #[test]
    fn rooms_disappear_at_zero() {
        let rooms = RoomList::default();
        rooms.set("a/lobby", 2);
        rooms.set("a/games", 1);
        rooms.set("b/games", 1);
        assert_eq!(rooms.page("a/", 10).0, vec![("a/games".to_string(), 1), ("a/lobby".to_string(), 2)]);
        rooms.set("a/lobby", 0);
        assert_eq!(rooms.count(), 2);
        assert_eq!(rooms.count_in("a"), 1);
    }
}
