//! Persistent groups, owned by the worker of the group's id: their state, sends, delivery,
//! acks and trimming. Membership changes are in `membership`.
//!
//! A group message is stored once, in the group's own sequence; each member has a cursor
//! (its acknowledged position and, while online, how far it has been sent), so what a
//! member is owed is the range after its ack. Messages below every member's ack are
//! deleted once older than the history window (`retention`), and beyond `group_retention`
//! the oldest go regardless. Membership changes are
//! stored in the same sequence as events, so members who were away learn of them in order.

use super::backlog;
use super::context::{Ctx, Waiting};
use super::cursor::{Cursor, Session};
use super::message::{self, wire, wire_size, Origin, RetryKey};
use super::push::notes::{self, Reader};
use super::refusal::{Handled, Refusal};
use super::retention::{self, LogRef, Retention};
use crate::apps::app_of;
use crate::apps::wire;
use crate::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, GroupEvent, GroupId, Push, Reply, Role, SenderKind, Seq,
    ServerFrame, UserId,
};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, GroupRecord, LogId, MemberRecord, StoredMessage};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct Member {
    pub uid: UserId,
    pub role: Role,
    pub cursor: Cursor,
}

pub struct GroupState {
    pub id: GroupId,
    pub name: String,
    pub open: bool,
    pub created_ms: u64,
    /// Everything at or below is deleted.
    pub floor: Seq,
    pub last_seq: Seq,
    pub members: BTreeMap<Arc<str>, Member>,
    /// What history keeps below the members' positions (see `retention`).
    pub retention: Retention,
}

/// The groups of this worker's partition that were touched since start, and which of them
/// each connection has a member session in.
#[derive(Default)]
pub struct Groups {
    groups: HashMap<GroupId, GroupState>,
    by_conn: HashMap<ConnId, Vec<GroupId>>,
}

impl Groups {
    /// The group's state, loaded on first touch with its online members attached (and
    /// their backlogs pumped); `UnknownGroup` if there is no such group.
    pub fn load(&mut self, ctx: &mut Ctx, id: GroupId) -> Result<&mut GroupState, Refusal> {
        load(&mut self.groups, &mut self.by_conn, ctx, id)
    }

    /// The group a request of `user`'s names, if it is of `user`'s app: another app's group
    /// is no group at all to it (`UnknownGroup`, so not even its existence shows).
    pub fn visible_to(&mut self, ctx: &mut Ctx, id: GroupId, user: &SessionUser) -> Result<&mut GroupState, Refusal> {
        let group = self.load(ctx, id)?;
        match group.in_app(app_of(&user.name)) {
            true => Ok(group),
            false => Err(Refusal::new(ErrorCode::UnknownGroup, "no such group")),
        }
    }

    /// A loaded group (one that is not loaded has no sessions and no waiting cursor).
    pub fn get_mut(&mut self, id: GroupId) -> Option<&mut GroupState> {
        self.groups.get_mut(&id)
    }

    /// The groups loaded now (for the retention pass).
    pub fn ids(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    /// A group made here, with its creator online at `conn`.
    pub fn insert(&mut self, group: GroupState, conn: ConnId) -> &mut GroupState {
        self.by_conn.entry(conn).or_default().push(group.id);
        self.groups.entry(group.id).insert_entry(group).into_mut()
    }

    pub fn remove(&mut self, id: GroupId) {
        self.groups.remove(&id);
    }

    /// `conn` holds a member session in the group.
    pub fn attach(&mut self, conn: ConnId, id: GroupId) {
        self.by_conn.entry(conn).or_default().push(id);
    }

    /// A member is online at `conn` (told by its worker after login): its cursor gets a
    /// session and its backlog is pushed.
    pub fn member_online(&mut self, ctx: &mut Ctx, id: GroupId, name: &str, conn: ConnId) -> Handled {
        // The budget of the session that logged in; a newer login has its own MemberOnline.
        let Some(budget) = ctx.shared.directory.session_of(name).filter(|(c, _)| *c == conn).map(|(_, b)| b) else {
            return Ok(());
        };
        let group = load(&mut self.groups, &mut self.by_conn, ctx, id)?;
        let Some(member) = group.members.get_mut(name) else {
            return Ok(());
        };
        if member.cursor.conn() == Some(conn) {
            return Ok(());
        }
        member.cursor.session = Some(Session::new(conn, member.cursor.acked, budget));
        self.by_conn.entry(conn).or_default().push(id);
        group.pump_member(ctx, name)
    }

    /// The connection's session ended: its member sessions here end with it.
    pub fn closed(&mut self, conn: ConnId, name: &str) {
        for id in self.by_conn.remove(&conn).unwrap_or_default() {
            if let Some(member) = self.groups.get_mut(&id).and_then(|g| g.members.get_mut(name)) {
                if member.cursor.conn() == Some(conn) {
                    member.cursor.session = None;
                }
            }
        }
    }
}

/// [`Groups::load`], on the two maps, so that a caller may hold the group and still note
/// connections.
fn load<'a>(
    groups: &'a mut HashMap<GroupId, GroupState>,
    by_conn: &mut HashMap<ConnId, Vec<GroupId>>,
    ctx: &mut Ctx,
    id: GroupId,
) -> Result<&'a mut GroupState, Refusal> {
    let entry = match groups.entry(id) {
        Entry::Occupied(entry) => return Ok(entry.into_mut()),
        Entry::Vacant(entry) => entry,
    };
    let log = ctx.partition.state(LogId::Group, id.into())?;
    let store = &ctx.shared.store;
    let record = store.group(id)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownGroup, "no such group"))?;
    let mut members = BTreeMap::new();
    for m in record.members {
        // A member added while the newest messages were not yet durable was given
        // their sequence as its position; after a crash that lost them, the
        // position comes back to the history's end (so a resend under that
        // sequence reaches it).
        let acked = store.group_ack(id, &m.username)?.min(log.last_seq);
        let name: Arc<str> = m.username.into();
        // Members already online get live messages from now on; their backlog is
        // pumped below, as MemberOnline would at login.
        let session = ctx.shared.directory.session_of(&name).map(|(conn, budget)| Session::new(conn, acked, budget));
        if let Some(session) = &session {
            by_conn.entry(session.conn).or_default().push(id);
        }
        members.insert(name, Member { uid: m.uid, role: m.role, cursor: Cursor { acked, session } });
    }
    let lowest = members.values().map(|m| m.cursor.acked).min().unwrap_or(log.last_seq);
    let mut group = GroupState {
        id,
        name: record.name,
        open: record.open,
        created_ms: record.created_ms,
        floor: log.floor,
        last_seq: log.last_seq,
        members,
        retention: Retention { settled: lowest.max(log.floor), ..Retention::default() },
    };
    // What expired while the group was not loaded.
    if let Err(refusal) = group.trim(ctx) {
        log::debug!("history retention of group {id}: {}", refusal.message);
    }
    let online: Vec<Arc<str>> =
        group.members.iter().filter(|(_, m)| m.cursor.session.is_some()).map(|(n, _)| n.clone()).collect();
    for name in online {
        group.pump_member(ctx, &name)?;
    }
    Ok(entry.insert(group))
}

impl GroupState {
    pub fn record(&self) -> GroupRecord {
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

    /// Whether the group is of `app` (its members are).
    pub fn in_app(&self, app: &str) -> bool {
        self.members.keys().next().is_some_and(|name| app_of(name) == app)
    }

    pub fn role_of(&self, name: &str) -> Result<Role, Refusal> {
        self.members
            .get(name)
            .map(|m| m.role)
            .ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))
    }

    /// A member's message to the group.
    pub fn send(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        client_msg_id: ClientMsgId,
        content: Content,
    ) -> Handled {
        self.role_of(&from.name)?;
        let key = RetryKey { sender: from.uid, client_msg_id };
        if let Some(receipt) = message::earlier(ctx, key, self.id.into())? {
            ctx.batch.reply(conn, request_id, receipt, true);
            return Ok(());
        }
        ctx.received(from, 1);
        let stored = message::compose(ctx.shared, from, content, Addressee::Readers)?;
        self.append(ctx, stored, Origin { reply_to: Some((conn, request_id)), retry_key: Some(key) })?;
        Ok(())
    }

    /// Stores a group event as the next message and delivers it to every member online.
    pub fn append_event(&mut self, ctx: &mut Ctx, event: GroupEvent, by: &str) -> Handled {
        let stored = message::event(ctx.shared, event, by)?;
        self.append(ctx, stored, Origin::default())?;
        Ok(())
    }

    /// Stores `stored` as the group's next message (its receipt queued first) and pushes it
    /// to every member whose cursor is caught up; returns how many got it now.
    pub fn append(&mut self, ctx: &mut Ctx, stored: StoredMessage, origin: Origin) -> Result<u32, Refusal> {
        let seq = self.last_seq.next();
        message::store(ctx, LogId::Group, self.id.into(), seq, &stored, origin)?;
        self.deliver(ctx, seq, stored)
    }

    /// Pushes a just-stored message to every member whose cursor is caught up; returns how
    /// many got it. A member gets no push of its own message (it has the receipt), nor of
    /// one addressed to everyone but it; events go to everyone.
    fn deliver(&mut self, ctx: &mut Ctx, seq: Seq, stored: StoredMessage) -> Result<u32, Refusal> {
        let window = ctx.window();
        let keep_at_most = ctx.config().group_retention.max(1);
        let skipped = skipped_member(&stored).map(str::to_string);
        let device_only = stored.device_only();
        let size = wire_size(&stored);
        // Members without a session may be owed a push notification; looked for only when
        // some user has a push device at all.
        if notes::worth_a_look(&ctx.shared.push, &stored) {
            let book = ctx.shared.push.read();
            let offline: Vec<Reader> = self
                .members
                .iter()
                .filter(|(name, member)| member.cursor.session.is_none() && skipped.as_deref() != Some(&***name))
                .filter(|(_, member)| book.get(&member.uid).is_some_and(|prefs| !prefs.devices.is_empty()))
                .map(|(name, member)| Reader { name: name.clone(), uid: member.uid, unread: seq - member.cursor.acked })
                .collect();
            drop(book);
            notes::group(ctx, self.id, &self.name, offline, &stored);
        }
        // Encoded once for everyone whose previous push was seq - 1 (nearly always);
        // anyone else gets a copy with their own prev_seq.
        let mut message = wire(ctx.shared, Conversation::Group(self.id), seq, seq - 1, stored);
        let shared: Arc<[u8]> = wire::encode(ServerFrame::Push(Push::Message(message.clone()))).into();
        self.last_seq = seq;
        let mut delivered = 0;
        let mut starved = Vec::new();
        for (name, member) in self.members.iter_mut() {
            if skipped.as_deref() == Some(&**name) || super::device_frames::withheld(&member.cursor, device_only) {
                super::device_frames::pass_over(&mut member.cursor, seq);
            } else if let Some((conn, prev)) = member.cursor.take_live(seq, size, window) {
                delivered += 1;
                if prev + 1 == seq {
                    ctx.batch.frame_bytes(conn, &shared, true);
                } else {
                    message.prev_seq = prev;
                    ctx.batch.frame(conn, ServerFrame::Push(Push::Message(message.clone())), true);
                }
            } else if member.cursor.stalled(seq, window).is_some() {
                starved.push(name.clone());
            }
        }
        if seq - self.floor > keep_at_most {
            retention::drop_to(ctx, self.log(), &mut self.floor, &mut self.retention, seq - keep_at_most)?;
        }
        for name in starved {
            if let Some(member) = self.members.get(&name) {
                ctx.wait_if_starved(&member.cursor, self.last_seq, Waiting::Group(self.id, name));
            }
        }
        ctx.delivered(u64::from(delivered));
        Ok(delivered)
    }

    /// The connections of the group's online members, but `except`.
    pub fn sessions(&self, except: Option<&str>) -> Vec<ConnId> {
        self.members.iter().filter(|(name, _)| except != Some(&***name)).filter_map(|(_, m)| m.cursor.conn()).collect()
    }

    /// Pushes a member's backlog while its window and budget allow, skipping its own
    /// messages; waits for the budget if that is what stops it.
    pub fn pump_member(&mut self, ctx: &mut Ctx, name: &str) -> Handled {
        let (id, last_seq) = (self.id, self.last_seq);
        let Some(member) = self.members.get_mut(name) else {
            return Ok(());
        };
        fill_member(ctx, id, last_seq, name, &mut member.cursor)?;
        if let Some((key, member)) = self.members.get_key_value(name) {
            ctx.wait_if_starved(&member.cursor, last_seq, Waiting::Group(id, key.clone()));
        }
        Ok(())
    }

    /// The group's last sequence and a member's cursor.
    fn member_cursor(&mut self, name: &str) -> Result<(Seq, &mut Cursor), Refusal> {
        let member = self
            .members
            .get_mut(name)
            .ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))?;
        Ok((self.last_seq, &mut member.cursor))
    }

    /// A member acknowledges everything up to `up_to`; what every member has is deleted.
    /// The caller then wakes what waits for the session's budget.
    pub fn ack(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, up_to: Seq) -> Handled {
        let id = self.id;
        let (last_seq, cursor) = self.member_cursor(&user.name)?;
        if up_to > last_seq {
            return Err(Refusal::beyond("ack", up_to, last_seq));
        }
        // Recorded first: a refused ack (a full disk) leaves the cursor where it was.
        if up_to > cursor.acked {
            ctx.partition.group_ack(id, &user.name, up_to)?;
            cursor.ack(up_to);
            self.trim(ctx)?;
        }
        let acked = self.members[&user.name].cursor.acked;
        let reply = Reply::Acked { conversation: Conversation::Group(id), up_to: acked };
        ctx.batch.reply(conn, request_id, reply, true);
        Ok(())
    }

    pub fn resync(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, after: Seq) -> Handled {
        let id = self.id;
        let (last_seq, cursor) = self.member_cursor(&user.name)?;
        if after > last_seq {
            return Err(Refusal::beyond("resync", after, last_seq));
        }
        let after = cursor.resync(after);
        let reply = Reply::Resynced { conversation: Conversation::Group(id), after, last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump_member(ctx, &user.name)
    }

    /// Deletes what every member has acknowledged, once history no longer keeps it.
    pub fn trim(&mut self, ctx: &mut Ctx) -> Handled {
        let lowest = self.members.values().map(|m| m.cursor.acked).min().unwrap_or(self.last_seq);
        let log = self.log();
        retention::settle(ctx, log, &mut self.floor, &mut self.retention, lowest)
    }

    /// The group's log.
    pub fn log(&self) -> LogRef {
        LogRef { id: LogId::Group, owner: self.id.into() }
    }

    /// Writes the group's record, and keeps the open-group directory in step with it.
    pub fn save(&self, ctx: &mut Ctx) -> Handled {
        let record = self.record();
        ctx.partition.sled().put_group(self.id, &record)?;
        if record.open {
            let app = record.app().to_string();
            ctx.shared.open_groups.set(&app, self.id, record.name, record.members.len() as u32);
        }
        Ok(())
    }
}

/// Pushes a member's backlog while its window and budget allow, skipping its own messages.
fn fill_member(ctx: &mut Ctx, id: GroupId, last_seq: Seq, name: &str, cursor: &mut Cursor) -> Handled {
    let log = backlog::Log { id: LogId::Group, owner: id.into(), last_seq };
    let skip = |stored: &StoredMessage| skipped_member(stored) == Some(name);
    let to_wire = |ctx: &Ctx, seq, prev, stored| wire(ctx.shared, Conversation::Group(id), seq, prev, stored);
    // A group's retention may have deleted the rest: nothing to report.
    backlog::fill(ctx, &log, cursor, skip, to_wire)?;
    Ok(())
}

/// The member a stored group message is not pushed to: its user sender (who has the
/// receipt), or the member a service excluded. Events go to everyone.
fn skipped_member(stored: &StoredMessage) -> Option<&str> {
    match (&stored.addressee, stored.sender, &stored.event) {
        (Addressee::AllBut(except), _, _) => Some(except),
        (_, SenderKind::User, None) => Some(&stored.from),
        _ => None,
    }
}
