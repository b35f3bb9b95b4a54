//! Persistent groups, owned by the worker of the group's id.
//!
//! A group message is stored once, in the group's own sequence; each member has a cursor
//! (its acknowledged position and, while online, how far it has been sent), so what a
//! member is owed is the range after its ack. Messages below every member's ack are
//! deleted, and beyond `group_retention` the oldest go regardless. Membership changes are
//! stored in the same sequence as events, so members who were away learn of them in order.
//!
//! Permissions (protocol.md "Groups"): the owner may do anything but leave; admins rename,
//! add members and remove plain members; members send, read, and leave.

use super::handler::{Handled, Refusal, Worker};
use super::inbox::{beyond, now_ms, resync, wire, wire_size, Cursor, Session, READ_CHUNK};
use super::{Owner, WorkerCmd};
use crate::frame;
use crate::metrics::Metrics;
use crate::net::{ConnId, SessionUser};
use crate::protocol::{
    valid_display_name, Content, Conversation, ErrorCode, GroupEvent, GroupInfo, MediaKind, MemberInfo, Message, Push,
    Reply, Role, SenderKind, ServerFrame,
};
use crate::store::{GroupRecord, MemberRecord, StoredMessage};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Member {
    pub uid: u64,
    pub role: Role,
    pub cursor: Cursor,
}

pub struct GroupState {
    pub name: String,
    pub open: bool,
    pub created_ms: u64,
    /// Everything at or below is deleted.
    pub floor: u64,
    pub last_seq: u64,
    pub members: BTreeMap<Arc<str>, Member>,
}

impl GroupState {
    fn record(&self) -> GroupRecord {
        GroupRecord {
            name: self.name.clone(),
            open: self.open,
            created_ms: self.created_ms,
            members: self
                .members
                .iter()
                .map(|(name, m)| MemberRecord { username: name.to_string(), uid: m.uid, role: m.role })
                .collect(),
        }
    }

    fn role_of(&self, name: &str) -> Result<Role, Refusal> {
        self.members
            .get(name)
            .map(|m| m.role)
            .ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))
    }
}

/// The member a stored group message is not pushed to: its user sender (who has the
/// receipt), or the member a service excluded. Events go to everyone.
fn skipped_member(stored: &StoredMessage) -> Option<&str> {
    match (&stored.except, stored.sender, &stored.event) {
        (Some(except), _, _) => Some(except),
        (None, SenderKind::User, None) => Some(&stored.from),
        _ => None,
    }
}

fn group_last_seq_minus_floor(group: &GroupState) -> u64 {
    group.last_seq - group.floor
}

fn system_content() -> Content {
    Content { kind: MediaKind::System, body: Vec::new(), media: None }
}

impl Worker {
    /// The group's state, loaded on first touch with its online members attached.
    fn group(&mut self, id: u64) -> Result<&mut GroupState, Refusal> {
        if !self.groups.contains_key(&id) {
            self.load_group(id)?;
        }
        Ok(self.groups.get_mut(&id).expect("load_group inserted the group"))
    }

    fn load_group(&mut self, id: u64) -> Handled {
        let store = &self.shared.store;
        let record = store.group(id)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownGroup, "no such group"))?;
        let log = store.group_log.state(id)?;
        let mut members = BTreeMap::new();
        let mut online = Vec::new();
        for m in record.members {
            let acked = store.group_ack(id, &m.username)?;
            let name: Arc<str> = m.username.into();
            // Members already online get live messages from now on; their backlog is
            // pumped below, as MemberOnline would at login.
            let session = self.shared.directory.conn_of(&name).map(|conn| Session::new(conn, acked));
            if let Some(session) = &session {
                online.push((name.clone(), session.conn));
            }
            members.insert(name, Member { uid: m.uid, role: m.role, cursor: Cursor { acked, session } });
        }
        let state = GroupState {
            name: record.name,
            open: record.open,
            created_ms: record.created_ms,
            floor: log.floor,
            last_seq: log.last_seq,
            members,
        };
        self.groups.insert(id, state);
        for (name, conn) in online {
            self.conn_groups.entry(conn).or_default().push(id);
            self.pump_member(id, &name)?;
        }
        Ok(())
    }

    pub fn create_group(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        name: String,
        open: bool,
    ) -> Handled {
        if !valid_display_name(&name) {
            return Err(Refusal::new(ErrorCode::InvalidName, "group names are 1-64 printable characters"));
        }
        if self.shared.store.memberships(&user.name)?.len() >= self.shared.config.max_groups_per_user {
            return Err(Refusal::new(ErrorCode::LimitReached, "too many groups"));
        }
        let group_id = self.shared.store.next_id()?;
        let worker = self.worker_of(Owner::Group(group_id));
        let cmd = WorkerCmd::CreateGroup { conn, request_id, creator: user.clone(), group_id, name, open };
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
        let cursor = Cursor { acked: 0, session: Some(Session::new(conn, 0)) };
        let mut members = BTreeMap::new();
        members.insert(creator.name.clone(), Member { uid: creator.uid, role: Role::Owner, cursor });
        let state = GroupState { name, open, created_ms: now_ms(), floor: 0, last_seq: 0, members };
        let store = &self.shared.store;
        store.put_group(id, &state.record())?;
        store.add_membership(&creator.name, id)?;
        store.put_group_ack(id, &creator.name, 0)?;
        self.groups.insert(id, state);
        self.conn_groups.entry(conn).or_default().push(id);
        self.append_event(id, GroupEvent::Created { by: creator.name.to_string() }, &creator.name)?;
        self.batch.reply(conn, request_id, Reply::GroupCreated { group_id: id }, true);
        Ok(())
    }

    pub fn send_group(
        &mut self,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        id: u64,
        client_msg_id: u64,
        content: Content,
    ) -> Handled {
        self.group(id)?.role_of(&from.name)?;
        if self.earlier_send(conn, request_id, from, client_msg_id, id)? {
            return Ok(());
        }
        self.received(1);
        let message_id = self.shared.store.next_id()?;
        let stored = StoredMessage {
            message_id,
            from: from.name.to_string(),
            sender: SenderKind::User,
            timestamp_ms: now_ms(),
            content,
            event: None,
            except: None,
        };
        let seq = self.group(id)?.last_seq + 1;
        self.store_message(
            Conversation::Group(id),
            id,
            seq,
            &stored,
            Some((conn, request_id, from.uid, client_msg_id)),
        )?;
        self.deliver_group(id, seq, stored)?;
        Ok(())
    }

    /// Stores a group event as the next message and delivers it to every member online.
    fn append_event(&mut self, id: u64, event: GroupEvent, by: &str) -> Handled {
        let message_id = self.shared.store.next_id()?;
        let stored = StoredMessage {
            message_id,
            from: by.to_string(),
            sender: SenderKind::User,
            timestamp_ms: now_ms(),
            content: system_content(),
            event: Some(event),
            except: None,
        };
        let seq = self.group(id)?.last_seq + 1;
        self.store_message(Conversation::Group(id), id, seq, &stored, None)?;
        self.deliver_group(id, seq, stored)?;
        Ok(())
    }

    /// Pushes a just-stored message to every member whose cursor is caught up; returns how
    /// many got it. A member gets no push of its own message (it has the receipt), nor of
    /// one addressed to everyone but it; events go to everyone.
    pub fn deliver_group(&mut self, id: u64, seq: u64, stored: StoredMessage) -> Result<u32, Refusal> {
        let window = self.window();
        let retention = self.shared.config.group_retention.max(1);
        let skipped = skipped_member(&stored).map(str::to_string);
        let size = wire_size(&stored);
        // Encoded once for everyone whose previous push was seq - 1 (nearly always);
        // anyone else gets a copy with their own prev_seq.
        let mut message = wire(Conversation::Group(id), seq, seq - 1, stored);
        let shared = frame::encode(&ServerFrame::Push(Push::Message(message.clone())));
        let group = self.groups.get_mut(&id).expect("caller loaded the group");
        group.last_seq = seq;
        let mut delivered = 0;
        for (name, member) in group.members.iter_mut() {
            if skipped.as_deref() == Some(&**name) {
                if let Some(session) = member.cursor.session.as_mut() {
                    if session.sent_upto + 1 == seq {
                        session.sent_upto = seq;
                    }
                }
            } else if let Some((conn, prev)) = member.cursor.take_live(seq, size, window) {
                delivered += 1;
                if prev + 1 == seq {
                    self.batch.frame_bytes(conn, &shared, true);
                } else {
                    message.prev_seq = prev;
                    self.batch.frame(conn, &ServerFrame::Push(Push::Message(message.clone())), true);
                }
            }
        }
        if seq - group.floor > retention {
            let floor = seq - retention;
            self.shared.metrics.stored_delta(-((floor - group.floor) as i64));
            group.floor = floor;
            self.shared.store.group_log.trim(id, floor)?;
        }
        self.delivered(u64::from(delivered));
        Ok(delivered)
    }

    /// The connections of the group's online members, but `except`.
    pub fn group_sessions(&mut self, id: u64, except: Option<&str>) -> Result<Vec<ConnId>, Refusal> {
        let group = self.group(id)?;
        Ok(group
            .members
            .iter()
            .filter(|(name, _)| except != Some(&***name))
            .filter_map(|(_, m)| m.cursor.session.as_ref().map(|s| s.conn))
            .collect())
    }

    pub fn group_last_seq(&mut self, id: u64) -> Result<u64, Refusal> {
        Ok(self.group(id)?.last_seq)
    }

    /// Pushes a member's backlog while its window allows, skipping its own messages.
    fn pump_member(&mut self, id: u64, name: &str) -> Handled {
        let window = self.window();
        loop {
            let Some(group) = self.groups.get_mut(&id) else {
                return Ok(());
            };
            let last_seq = group.last_seq;
            let Some(member) = group.members.get_mut(name) else {
                return Ok(());
            };
            let Some((from, count)) = member.cursor.deliverable(last_seq, window) else {
                return Ok(());
            };
            let chunk = self.shared.store.group_log.read(id, from - 1, count.min(READ_CHUNK) as usize)?;
            let session = member.cursor.session.as_mut().expect("deliverable implies a session");
            if chunk.is_empty() {
                session.sent_upto = last_seq;
                return Ok(());
            }
            let conn = session.conn;
            for (seq, stored) in chunk {
                if skipped_member(&stored) == Some(name) {
                    session.sent_upto = seq;
                    continue;
                }
                if !session.has_room(window) {
                    return Ok(());
                }
                let prev = session.pushed(seq, wire_size(&stored));
                self.batch.push(conn, Push::Message(wire(Conversation::Group(id), seq, prev, stored)), true);
                Metrics::add(&self.shared.metrics.delivered, 1);
            }
        }
    }

    pub fn member_online(&mut self, id: u64, name: &str, conn: ConnId) -> Handled {
        let group = self.group(id)?;
        let Some(member) = group.members.get_mut(name) else {
            return Ok(());
        };
        if member.cursor.session.as_ref().is_some_and(|s| s.conn == conn) {
            return Ok(());
        }
        member.cursor.session = Some(Session::new(conn, member.cursor.acked));
        self.conn_groups.entry(conn).or_default().push(id);
        self.pump_member(id, name)
    }

    pub fn detach_member(&mut self, id: u64, name: &str, conn: ConnId) {
        if let Some(member) = self.groups.get_mut(&id).and_then(|g| g.members.get_mut(name)) {
            if member.cursor.session.as_ref().is_some_and(|s| s.conn == conn) {
                member.cursor.session = None;
            }
        }
    }

    pub fn ack_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64, up_to: u64) -> Handled {
        let group = self.group(id)?;
        let last_seq = group.last_seq;
        let member = group
            .members
            .get_mut(&user.name)
            .ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))?;
        if up_to > last_seq {
            return Err(beyond("ack", up_to, last_seq));
        }
        if member.cursor.ack(up_to) {
            self.shared.store.put_group_ack(id, &user.name, up_to)?;
            self.batch.dirty = true;
            self.trim_group(id)?;
        }
        let acked = self.group(id)?.members[&user.name].cursor.acked;
        self.batch.reply(conn, request_id, Reply::Acked { conversation: Conversation::Group(id), up_to: acked }, true);
        self.pump_member(id, &user.name)
    }

    pub fn resync_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64, after: u64) -> Handled {
        let group = self.group(id)?;
        let last_seq = group.last_seq;
        let member = group
            .members
            .get_mut(&user.name)
            .ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))?;
        let after = resync(&mut member.cursor, last_seq, after)?;
        self.batch.reply(
            conn,
            request_id,
            Reply::Resynced { conversation: Conversation::Group(id), after, last_seq },
            false,
        );
        self.pump_member(id, &user.name)
    }

    /// Deletes what every member has acknowledged.
    fn trim_group(&mut self, id: u64) -> Handled {
        let group = self.group(id)?;
        let lowest = group.members.values().map(|m| m.cursor.acked).min().unwrap_or(group.last_seq);
        let floor = group.floor;
        if lowest > floor {
            group.floor = lowest;
            self.shared.store.group_log.trim(id, lowest)?;
            self.shared.metrics.stored_delta(-((lowest - floor) as i64));
            self.batch.dirty = true;
        }
        Ok(())
    }

    fn save_group(&mut self, id: u64) -> Handled {
        let record = self.group(id)?.record();
        self.shared.store.put_group(id, &record)?;
        self.batch.dirty = true;
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
        if !valid_display_name(&name) {
            return Err(Refusal::new(ErrorCode::InvalidName, "group names are 1-64 printable characters"));
        }
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
        let max_groups = self.shared.config.max_groups_per_user;
        let group = self.group(id)?;
        if group.members.contains_key(username) {
            return Err(Refusal::new(ErrorCode::AlreadyMember, "already a member"));
        }
        if group.members.len() >= max_members {
            return Err(Refusal::new(ErrorCode::LimitReached, "the group is full"));
        }
        let acked = group.last_seq;
        if self.shared.store.memberships(username)?.len() >= max_groups {
            return Err(Refusal::new(ErrorCode::LimitReached, "the user is in too many groups"));
        }
        let session = online.map(|conn| Session::new(conn, acked));
        let group = self.group(id)?;
        group.members.insert(username.into(), Member { uid, role: Role::Member, cursor: Cursor { acked, session } });
        if let Some(conn) = online {
            self.conn_groups.entry(conn).or_default().push(id);
        }
        self.shared.store.put_group_ack(id, username, acked)?;
        self.shared.store.add_membership(username, id)?;
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
        self.shared.store.remove_group_ack(id, username)?;
        self.shared.store.remove_membership(username, id)?;
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
        };
        let encoded = frame::encode(&ServerFrame::Push(Push::Message(notice)));
        let record = group.record();
        let online: Vec<ConnId> =
            group.members.values().filter_map(|m| m.cursor.session.as_ref().map(|s| s.conn)).collect();
        self.shared.store.delete_group(id, &record)?;
        self.shared.metrics.stored_delta(-((group_last_seq_minus_floor(&self.groups[&id])) as i64));
        self.batch.dirty = true;
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
        let directory = &self.shared.directory;
        let members = roles
            .into_iter()
            .map(|(username, role)| MemberInfo { online: directory.conn_of(&username).is_some(), username, role })
            .collect();
        self.batch.reply(conn, request_id, Reply::Members { group_id: id, members }, false);
        Ok(())
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
            groups.push(GroupInfo {
                group_id,
                name: record.name.clone(),
                open: record.open,
                role: me.role,
                members: record.members.len() as u32,
                acked: store.group_ack(group_id, &user.name)?,
                last_seq: store.group_log.state(group_id)?.last_seq,
            });
        }
        self.batch.reply(conn, request_id, Reply::Groups { groups }, false);
        Ok(())
    }
}
