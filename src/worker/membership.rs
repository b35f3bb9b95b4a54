//! Group membership: creating, renaming, adding, joining, removing, leaving, roles,
//! deleting, and the listings. Each change is stored and announced as an event in the
//! group's sequence (see `groups` for delivery).
//!
//! Permissions (protocol.md "Groups"): the owner may do anything but leave; admins rename,
//! add members and remove plain members; members send, read, and leave.

use super::budget::SessionBudget;
use super::groups::{system_content, GroupState, Member};
use super::handler::{Handled, Refusal, Worker};
use super::inbox::{Cursor, Session};
use super::WorkerCmd;
use crate::clock::now_ms;
use crate::frame;
use crate::names::normalize_name;
use crate::protocol::{
    Conversation, ErrorCode, GroupEvent, GroupInfo, MemberInfo, Message, OpenGroup, Push, Reply, Role, SenderKind,
    ServerFrame,
};
use crate::route::Owner;
use crate::route::{ConnId, SessionUser};
use crate::store::LogId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest page of the open-group directory.
const MAX_OPEN_GROUP_PAGE: u32 = 500;

impl Worker {
    pub fn create_group(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        name: String,
        open: bool,
    ) -> Handled {
        let name = normalize_name(&name).map_err(|r| Refusal::new(ErrorCode::InvalidName, r.explain()))?;
        let seat =
            self.take_seat(&user.name)?.ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "too many groups"))?;
        let group_id = match self.shared.store.next_id() {
            Ok(id) => id,
            Err(e) => {
                self.shared.seats.release(seat);
                return Err(e.into());
            }
        };
        let worker = self.worker_of(Owner::Group(group_id));
        let cmd = WorkerCmd::CreateGroup { conn, request_id, creator: user.clone(), group_id, name, open, seat };
        self.batch.send_to_worker(worker, cmd);
        Ok(())
    }

    /// Creation proper, on the worker that owns the new id.
    pub fn create_group_here(
        &mut self,
        conn: ConnId,
        request_id: u32,
        creator: &SessionUser,
        id: u64,
        name: String,
        open: bool,
    ) -> Handled {
        let session = self.session_budget(&creator.name, conn).map(|budget| Session::new(conn, 0, budget));
        let cursor = Cursor { acked: 0, session };
        let mut members = BTreeMap::new();
        members.insert(creator.name.clone(), Member { uid: creator.uid, role: Role::Owner, cursor });
        let state = GroupState { name, open, created_ms: now_ms(), floor: 0, last_seq: 0, members };
        let store = self.partition.sled();
        store.put_group(id, &state.record())?;
        store.add_membership(&creator.name, id)?;
        store.put_group_ack(id, &creator.name, 0)?;
        if open {
            self.shared.open_groups.set(id, state.name.clone(), 1);
        }
        self.groups.insert(id, state);
        self.conn_groups.entry(conn).or_default().push(id);
        self.append_event(id, GroupEvent::Created { by: creator.name.to_string() }, &creator.name)?;
        self.batch.reply(conn, request_id, Reply::GroupCreated { group_id: id }, true);
        Ok(())
    }

    pub fn rename_group(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        id: u64,
        name: String,
    ) -> Handled {
        let name = normalize_name(&name).map_err(|r| Refusal::new(ErrorCode::InvalidName, r.explain()))?;
        let group = self.group(id)?;
        if group.role_of(&user.name)? == Role::Member {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the owner and admins rename a group"));
        }
        group.name = name.clone();
        self.save_group(id)?;
        self.append_event(id, GroupEvent::Renamed { name, by: user.name.to_string() }, &user.name)?;
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    pub fn add_member(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        id: u64,
        username: &str,
    ) -> Handled {
        if self.group(id)?.role_of(&user.name)? == Role::Member {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the owner and admins add members"));
        }
        let account =
            self.shared.store.account(username)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))?;
        let online = self.shared.directory.conn_of(username);
        self.admit_member(id, username, account.user_id, online)?;
        let event = GroupEvent::Added { username: username.to_string(), by: user.name.to_string() };
        self.append_event(id, event, &user.name)?;
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    pub fn join_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64) -> Handled {
        let group = self.group(id)?;
        if !group.open && !group.members.contains_key(&user.name) {
            return Err(Refusal::new(ErrorCode::Forbidden, "this group is not open; ask an admin to add you"));
        }
        self.admit_member(id, &user.name, user.uid, Some(conn))?;
        self.append_event(id, GroupEvent::Joined { username: user.name.to_string() }, &user.name)?;
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    /// Adds a member who starts after the current last message (history before joining is
    /// not theirs), checking the limits.
    fn admit_member(&mut self, id: u64, username: &str, uid: u64, online: Option<ConnId>) -> Handled {
        let max_members = self.shared.config.max_group_members;
        let group = self.group(id)?;
        if group.members.contains_key(username) {
            return Err(Refusal::new(ErrorCode::AlreadyMember, "already a member"));
        }
        if group.members.len() >= max_members {
            return Err(Refusal::new(ErrorCode::LimitReached, "the group is full"));
        }
        let acked = group.last_seq;
        let seat = self
            .take_seat(username)?
            .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "the user is in too many groups"))?;
        let admitted = self.seat_member(id, username, uid, online, acked);
        self.shared.seats.release(seat);
        admitted
    }

    /// The delivery budget of `username`'s session on `conn`, if that is its live session.
    fn session_budget(&self, username: &str, conn: ConnId) -> Option<Arc<SessionBudget>> {
        self.shared.directory.session_of(username).filter(|(c, _)| *c == conn).map(|(_, budget)| budget)
    }

    /// A seat for `username` in one more group, if `max_groups_per_user` leaves one
    /// (see `seats`: atomic across workers and pipelined requests).
    fn take_seat(&self, username: &str) -> Result<Option<super::seats::Seat>, Refusal> {
        let store = &self.shared.store;
        let max = self.shared.config.max_groups_per_user;
        Ok(self.shared.seats.take(username, max, || store.memberships(username).map(|m| m.len()))?)
    }

    fn seat_member(&mut self, id: u64, username: &str, uid: u64, online: Option<ConnId>, acked: u64) -> Handled {
        let session =
            online.and_then(|conn| self.session_budget(username, conn).map(|budget| Session::new(conn, acked, budget)));
        let group = self.group(id)?;
        group.members.insert(username.into(), Member { uid, role: Role::Member, cursor: Cursor { acked, session } });
        if let Some(conn) = online {
            self.conn_groups.entry(conn).or_default().push(id);
        }
        let store = self.partition.sled();
        store.put_group_ack(id, username, acked)?;
        store.add_membership(username, id)?;
        self.save_group(id)
    }

    pub fn remove_member(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        id: u64,
        username: &str,
    ) -> Handled {
        let group = self.group(id)?;
        let actor = group.role_of(&user.name)?;
        let target = group.role_of(username)?;
        if *user.name == *username {
            return Err(Refusal::new(ErrorCode::BadRequest, "use LeaveGroup to leave"));
        }
        let allowed = actor == Role::Owner || (actor == Role::Admin && target == Role::Member);
        if !allowed {
            return Err(Refusal::new(ErrorCode::Forbidden, "your role may not remove this member"));
        }
        // The event goes out first, so the removed member hears of it too.
        let event = GroupEvent::Removed { username: username.to_string(), by: user.name.to_string() };
        self.append_event(id, event, &user.name)?;
        self.drop_member(id, username)?;
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    pub fn leave_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64) -> Handled {
        if self.group(id)?.role_of(&user.name)? == Role::Owner {
            return Err(Refusal::new(ErrorCode::Forbidden, "the owner hands the group over or deletes it"));
        }
        self.append_event(id, GroupEvent::Left { username: user.name.to_string() }, &user.name)?;
        self.drop_member(id, &user.name)?;
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    fn drop_member(&mut self, id: u64, username: &str) -> Handled {
        self.group(id)?.members.remove(username);
        let store = self.partition.sled();
        store.remove_group_ack(id, username)?;
        store.remove_membership(username, id)?;
        self.save_group(id)?;
        self.trim_group(id)
    }

    pub fn set_role(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        id: u64,
        username: &str,
        role: Role,
    ) -> Handled {
        let group = self.group(id)?;
        if group.role_of(&user.name)? != Role::Owner {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the owner changes roles"));
        }
        group.role_of(username)?;
        if *user.name == *username {
            return Err(Refusal::new(ErrorCode::BadRequest, "hand ownership to another member instead"));
        }
        if let Some(member) = group.members.get_mut(username) {
            member.role = role;
        }
        if role == Role::Owner {
            if let Some(owner) = group.members.get_mut(&user.name) {
                owner.role = Role::Admin;
            }
        }
        self.save_group(id)?;
        let event = GroupEvent::RoleChanged { username: username.to_string(), role, by: user.name.to_string() };
        self.append_event(id, event, &user.name)?;
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    pub fn delete_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64) -> Handled {
        let display_name = self.shared.directory.display_name(&user.name, &self.shared.store);
        let group = self.group(id)?;
        if group.role_of(&user.name)? != Role::Owner {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the owner deletes a group"));
        }
        // Live only: the history it would be stored in is being deleted.
        let notice = Message {
            conversation: Conversation::Group(id),
            seq: group.last_seq + 1,
            prev_seq: group.last_seq,
            message_id: 0,
            from: user.name.to_string(),
            sender: SenderKind::User,
            timestamp_ms: now_ms(),

            content: system_content(),
            event: Some(GroupEvent::Deleted { by: user.name.to_string() }),
            display_name,
        };
        let encoded: Arc<[u8]> = frame::encode(&ServerFrame::Push(Push::Message(notice))).into();
        let record = group.record();
        let still_stored = group.last_seq - group.floor;
        let online: Vec<ConnId> =
            group.members.values().filter_map(|m| m.cursor.session.as_ref().map(|s| s.conn)).collect();
        self.partition.sled().delete_group(id, &record)?;
        self.partition.forget(LogId::Group, id);
        self.shared.open_groups.remove(id);
        self.shared.metrics.stored_delta(-(still_stored as i64));
        self.groups.remove(&id);
        for target in online {
            self.batch.frame_bytes(target, &encoded, false);
        }
        self.batch.reply(conn, request_id, Reply::Done, true);
        Ok(())
    }

    pub fn group_members(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64) -> Handled {
        let group = self.group(id)?;
        group.role_of(&user.name)?;
        let roles: Vec<(String, Role)> = group.members.iter().map(|(n, m)| (n.to_string(), m.role)).collect();
        let (directory, store) = (&self.shared.directory, &self.shared.store);
        let members = roles
            .into_iter()
            .map(|(username, role)| MemberInfo {
                online: directory.conn_of(&username).is_some(),
                display_name: directory.display_name(&username, store),
                username,
                role,
            })
            .collect();
        self.batch.reply(conn, request_id, Reply::Members { group_id: id, members }, false);
        Ok(())
    }

    /// One page of the open-group directory (any worker may answer: it is shared).
    pub fn list_open_groups(&mut self, conn: ConnId, request_id: u32, after: u64, limit: u32) {
        let limit = if limit == 0 { 100 } else { limit.min(MAX_OPEN_GROUP_PAGE) };
        let (page, more) = self.shared.open_groups.page(after, limit as usize);
        let groups = page
            .into_iter()
            .map(|(group_id, entry)| OpenGroup { group_id, name: entry.name, members: entry.members })
            .collect();
        self.batch.reply(conn, request_id, Reply::OpenGroups { groups, more }, false);
    }

    /// The caller's groups, read from the store (any worker may answer).
    pub fn list_groups(&mut self, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
        let store = &self.shared.store;
        let mut groups = Vec::new();
        for group_id in store.memberships(&user.name)? {
            let Some(record) = store.group(group_id)? else {
                continue;
            };
            let Some(me) = record.members.iter().find(|m| *m.username == *user.name) else {
                continue;
            };
            // The group may be another worker's: its staged messages count too.
            let last_seq = store.group_log.state(group_id)?.last_seq.max(store.staged_last(LogId::Group, group_id));
            groups.push(GroupInfo {
                group_id,
                name: record.name.clone(),
                open: record.open,
                role: me.role,
                members: record.members.len() as u32,
                // A position beyond the history's end is read as the end (see `load_group`).
                acked: store.group_ack(group_id, &user.name)?.min(last_seq),
                last_seq,
            });
        }
        self.batch.reply(conn, request_id, Reply::Groups { groups }, false);
        Ok(())
    }
}
