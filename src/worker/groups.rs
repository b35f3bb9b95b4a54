//! Persistent groups, owned by the worker of the group's id.
//!
//! A group message is stored once, in the group's own sequence; each member has a cursor
//! (its acknowledged position and, while online, how far it has been sent), so what a
//! member is owed is the range after its ack. Messages below every member's ack are
//! deleted, and beyond `group_retention` the oldest go regardless. Membership changes are
//! stored in the same sequence as events, so members who were away learn of them in order.
//!
//! Membership changes are in `membership`.

use super::garbage::Log;
use super::handler::{Handled, Refusal, Worker};
use super::inbox::{beyond, resync, sender_display_name, wire, wire_size, Cursor, Session, READ_CHUNK};
use super::waiting::Waiting;
use crate::clock::now_ms;
use crate::frame;
use crate::metrics::Metrics;
use crate::protocol::{
    Content, Conversation, ErrorCode, GroupEvent, MediaKind, Push, Reply, Role, SenderKind, ServerFrame,
};
use crate::route::{ConnId, SessionUser};
use crate::store::{GroupRecord, LogId, MemberRecord, StoredMessage};
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
    pub(super) fn record(&self) -> GroupRecord {
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

    pub(super) fn role_of(&self, name: &str) -> Result<Role, Refusal> {
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

pub(super) fn system_content() -> Content {
    Content { kind: MediaKind::System, body: Vec::new(), media: None }
}

impl Worker {
    /// The group's state, loaded on first touch with its online members attached.
    pub(super) fn group(&mut self, id: u64) -> Result<&mut GroupState, Refusal> {
        if !self.groups.contains_key(&id) {
            self.load_group(id)?;
        }
        Ok(self.groups.get_mut(&id).expect("load_group inserted the group"))
    }

    pub(super) fn load_group(&mut self, id: u64) -> Handled {
        let log = self.partition.state(LogId::Group, id)?;
        let store = &self.shared.store;
        let record = store.group(id)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownGroup, "no such group"))?;
        let mut members = BTreeMap::new();
        let mut online = Vec::new();
        for m in record.members {
            // A member added while the newest messages were not yet durable was given
            // their sequence as its position; after a crash that lost them, the position
            // comes back to the history's end (so a resend under that sequence reaches it).
            let acked = store.group_ack(id, &m.username)?.min(log.last_seq);
            let name: Arc<str> = m.username.into();
            // Members already online get live messages from now on; their backlog is
            // pumped below, as MemberOnline would at login.
            let session =
                self.shared.directory.session_of(&name).map(|(conn, budget)| Session::new(conn, acked, budget));
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
        let stored = self.user_message(from, content)?;
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
    pub(super) fn append_event(&mut self, id: u64, event: GroupEvent, by: &str) -> Handled {
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
        let display_name = sender_display_name(&self.shared, &stored);
        let mut message = wire(Conversation::Group(id), seq, seq - 1, stored, display_name);
        let shared: Arc<[u8]> = frame::encode(&ServerFrame::Push(Push::Message(message.clone()))).into();
        let group = self.groups.get_mut(&id).expect("caller loaded the group");
        group.last_seq = seq;
        let mut delivered = 0;
        let mut starved = Vec::new();
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
            } else if member.cursor.stalled(seq, window).is_some() {
                starved.push(name.clone());
            }
        }
        if seq - group.floor > retention {
            let floor = seq - retention;
            self.shared.metrics.stored_delta(-((floor - group.floor) as i64));
            self.garbage.push(Log::Group, id, group.floor + 1, floor);
            group.floor = floor;
            self.partition.raise_floor(LogId::Group, id, floor)?;
        }
        for name in starved {
            self.wait_if_starved(Waiting::Group(id, name));
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

    /// Pushes a member's backlog while its window and budget allow, skipping its own
    /// messages; waits for the budget if that is what stops it.
    pub(super) fn pump_member(&mut self, id: u64, name: &str) -> Handled {
        self.fill_member(id, name)?;
        let member = self.groups.get(&id).and_then(|g| g.members.get_key_value(name));
        if let Some((name, _)) = member {
            self.wait_if_starved(Waiting::Group(id, name.clone()));
        }
        Ok(())
    }

    fn fill_member(&mut self, id: u64, name: &str) -> Handled {
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
            let session = member.cursor.session.as_ref().expect("deliverable implies a session");
            let take = session.read_hint(window, count.min(READ_CHUNK));
            let chunk = self.partition.read(LogId::Group, id, from - 1, take as usize)?;
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
                let display_name = sender_display_name(&self.shared, &stored);
                let message = wire(Conversation::Group(id), seq, prev, stored, display_name);
                self.batch.push(conn, Push::Message(message), true);
                Metrics::add(&self.shared.metrics.delivered, 1);
            }
        }
    }

    pub fn member_online(&mut self, id: u64, name: &str, conn: ConnId) -> Handled {
        // The budget of the session that logged in; a newer login has its own MemberOnline.
        let Some(budget) = self.shared.directory.session_of(name).filter(|(c, _)| *c == conn).map(|(_, b)| b) else {
            return Ok(());
        };
        let group = self.group(id)?;
        let Some(member) = group.members.get_mut(name) else {
            return Ok(());
        };
        if member.cursor.session.as_ref().is_some_and(|s| s.conn == conn) {
            return Ok(());
        }
        member.cursor.session = Some(Session::new(conn, member.cursor.acked, budget));
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

    /// The group's last sequence and a member's cursor.
    fn member_cursor(&mut self, id: u64, name: &str) -> Result<(u64, &mut Cursor), Refusal> {
        let group = self.group(id)?;
        let member = group
            .members
            .get_mut(name)
            .ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))?;
        Ok((group.last_seq, &mut member.cursor))
    }

    pub fn ack_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64, up_to: u64) -> Handled {
        let (last_seq, cursor) = self.member_cursor(id, &user.name)?;
        if up_to > last_seq {
            return Err(beyond("ack", up_to, last_seq));
        }
        // Recorded first: a refused ack (a full disk) leaves the cursor where it was.
        if up_to > cursor.acked {
            self.partition.group_ack(id, &user.name, up_to)?;
            self.member_cursor(id, &user.name)?.1.ack(up_to);
            self.trim_group(id)?;
        }
        let acked = self.group(id)?.members[&user.name].cursor.acked;
        self.batch.reply(conn, request_id, Reply::Acked { conversation: Conversation::Group(id), up_to: acked }, true);
        self.pump_after_ack(conn, Waiting::Group(id, user.name.clone()))
    }

    pub fn resync_group(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, id: u64, after: u64) -> Handled {
        let (last_seq, cursor) = self.member_cursor(id, &user.name)?;
        let after = resync(cursor, last_seq, after)?;
        self.batch.reply(
            conn,
            request_id,
            Reply::Resynced { conversation: Conversation::Group(id), after, last_seq },
            false,
        );
        self.pump_member(id, &user.name)
    }

    /// Deletes what every member has acknowledged.
    pub(super) fn trim_group(&mut self, id: u64) -> Handled {
        let group = self.group(id)?;
        let lowest = group.members.values().map(|m| m.cursor.acked).min().unwrap_or(group.last_seq);
        let floor = group.floor;
        if lowest > floor {
            group.floor = lowest;
            self.partition.raise_floor(LogId::Group, id, lowest)?;
            self.garbage.push(Log::Group, id, floor + 1, lowest);
            self.shared.metrics.stored_delta(-((lowest - floor) as i64));
        }
        Ok(())
    }

    /// Writes the group's record, and keeps the open-group directory in step with it.
    pub(super) fn save_group(&mut self, id: u64) -> Handled {
        let record = self.group(id)?.record();
        self.partition.sled().put_group(id, &record)?;
        if record.open {
            self.shared.open_groups.set(id, record.name, record.members.len() as u32);
        }
        Ok(())
    }
}
