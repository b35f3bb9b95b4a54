//! Persistent groups, owned by the worker of the group's id: their state, sends, delivery,
//! acks and trimming. Membership changes are in `membership`.
//!
//! A group message is stored once, in the group's own sequence; each member has a cursor
//! per device (its acknowledged position and, while online, how far it has been sent), so
//! what a device is owed is the range after its ack. Messages below every member device's
//! ack are deleted once older than the history window (`retention`), and beyond
//! `group_retention` the oldest go regardless. Membership changes are stored in the same
//! sequence as events, so members who were away learn of them in order.
//!
//! A member's own messages: a legacy device is never pushed them (it has the receipt); a
//! named device is, unless it is the one that sent it and was caught up (it counts it as
//! sent), so every device shows the whole conversation.

use super::backlog;
use super::context::{Ctx, Waiting};
use super::cursor::Cursor;
use super::device_cursors::{is_legacy, DeviceCursors};
use super::device_readers::DeviceReaders;
use super::devices;
use super::message::{self, wire, wire_size, Origin, RetryKey};
use super::push::notes::{self, Reader};
use super::refusal::{Handled, Refusal};
use super::remote_members::{self, Admissions};
use super::retention::{self, LogRef, Retention};
use crate::apps::app_of;
use crate::apps::wire;
use crate::clock::now_ms;
use crate::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, GroupEvent, GroupId, Push, Reply, Role, SenderKind, Seq,
    ServerFrame, UserId,
};
use crate::route::{ConnId, Owner, SessionUser};
use crate::store::{Addressee, GroupRecord, LogId, MemberRecord, StoredMessage};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct Member {
    pub uid: UserId,
    pub role: Role,
    /// A cursor per known device of the member.
    pub devices: DeviceCursors,
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
    /// Users of other cluster nodes being made members, waiting for their homes' answers.
    pub admissions: Admissions,
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

    /// A member is online on `device` at `conn` (told by its worker after login): that
    /// device's cursor gets a session (a cursor is made for a device new here) and its
    /// backlog is pushed.
    pub fn member_online(&mut self, ctx: &mut Ctx, id: GroupId, name: &str, device: &str, conn: ConnId) -> Handled {
        // The budget of the session that logged in; a newer login has its own MemberOnline.
        let Some(session) = ctx.shared.directory.member_session(name, conn).filter(|s| *s.device == *device) else {
            return Ok(());
        };
        let group = load(&mut self.groups, &mut self.by_conn, ctx, id)?;
        if group.members.get(name).and_then(|m| m.devices.get(device)).and_then(Cursor::conn) == Some(conn) {
            return Ok(());
        }
        if group.attach(ctx, name, &session.device, conn, session.budget)? {
            self.by_conn.entry(conn).or_default().push(id);
        }
        // The implicit legacy cursor a first named device replaced may have held the floor.
        group.trim(ctx)?;
        group.pump_device(ctx, name, device)
    }

    /// The connection's session ended: its member sessions here end with it.
    pub fn closed(&mut self, conn: ConnId, name: &str) {
        let now = now_ms();
        for id in self.by_conn.remove(&conn).unwrap_or_default() {
            if let Some(member) = self.groups.get_mut(&id).and_then(|g| g.members.get_mut(name)) {
                member.devices.detach(conn, now);
            }
        }
    }

    /// The user's device is forgotten: its cursors in the groups loaded here go, and what
    /// only they held is deleted.
    pub fn forget_device(&mut self, ctx: &mut Ctx, username: &str, device: &str) -> Handled {
        for id in ctx.shared.store.memberships(username)? {
            let Some(group) = self.groups.get_mut(&id) else { continue };
            if group.members.get_mut(username).is_some_and(|m| m.devices.remove(device)) {
                group.trim(ctx)?;
            }
        }
        Ok(())
    }

    /// Drops the cursors of member devices not seen for `--device-expiry`.
    pub fn expire_devices(&mut self, ctx: &mut Ctx, now_ms: u64) -> Handled {
        let expiry = ctx.config().device_expiry;
        for group in self.groups.values_mut() {
            let mut any = false;
            for member in group.members.values_mut() {
                any |= member.devices.drop_expired(now_ms, expiry);
            }
            if any {
                group.trim(ctx)?;
            }
        }
        Ok(())
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
    let record = ctx.shared.store.group(id)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownGroup, "no such group"))?;
    let recorded = devices::recorded(ctx, LogId::Group, id.into())?;
    let mut group = GroupState {
        id,
        name: record.name,
        open: record.open,
        created_ms: record.created_ms,
        floor: log.floor,
        last_seq: log.last_seq,
        members: BTreeMap::new(),
        retention: Retention::default(),
    };
    for m in record.members {
        // A member added while the newest messages were not yet durable was given
        // their sequence as its position; after a crash that lost them, the
        // position comes back to the history's end (so a resend under that
        // sequence reaches it).
        let within = |seq: Seq| seq.min(log.last_seq);
        let legacy = ctx.shared.store.group_ack(id, &m.username)?;
        let (devices, unrecorded) = remote_members::member_cursors(ctx, &m.username, m.uid, legacy, within, &recorded)?;
        let name: Arc<str> = m.username.into();
        group.members.insert(name.clone(), Member { uid: m.uid, role: m.role, devices });
        // Members already online get live messages from now on; their backlog is
        // pumped below, as MemberOnline would at login.
        let sessions = ctx.shared.directory.member_sessions(&name);
        for conn in group.seat(ctx, &name, unrecorded, &sessions)? {
            by_conn.entry(conn).or_default().push(id);
        }
    }
    group.retention.settled = group.lowest().max(log.floor);
    // What expired while the group was not loaded, and devices expired or forgotten
    // meanwhile that held the floor.
    if let Err(refusal) = group.trim(ctx) {
        log::debug!("history retention of group {id}: {}", refusal.message);
    }
    let online: Vec<Arc<str>> =
        group.members.iter().filter(|(_, m)| m.devices.online()).map(|(n, _)| n.clone()).collect();
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
    /// to every member device whose cursor is caught up; returns how many got it now.
    pub fn append(&mut self, ctx: &mut Ctx, stored: StoredMessage, origin: Origin) -> Result<u32, Refusal> {
        let seq = self.last_seq.next();
        message::store(ctx, LogId::Group, self.id.into(), seq, &stored, origin)?;
        self.deliver(ctx, seq, stored, origin.reply_to.map(|(conn, _)| conn))
    }

    /// Pushes a just-stored message to every member device whose cursor is caught up;
    /// returns how many got it. A device is not pushed what it passes over (see
    /// [`passes_over`]): the session on `sender` that sent it counts it as sent.
    fn deliver(
        &mut self,
        ctx: &mut Ctx,
        seq: Seq,
        stored: StoredMessage,
        sender: Option<ConnId>,
    ) -> Result<u32, Refusal> {
        let window = ctx.window();
        let keep_at_most = ctx.config().group_retention.max(1);
        let skipped = skipped_member(&stored).map(str::to_string);
        let size = wire_size(&stored);
        // Members without a session may be owed a push notification; looked for only when
        // some user has a push device at all, here or (in a cluster) at another node,
        // whose members' devices only their home knows.
        let elsewhere = |name: &str| ctx.home_of(Owner::User(name)).is_some();
        let cluster = ctx.shared.bus.is_some() && stored.event.is_none();
        if cluster || notes::worth_a_look(&ctx.shared.push, &stored) {
            let book = ctx.shared.push.read();
            let offline: Vec<Reader> = self
                .members
                .iter()
                .filter(|(name, member)| !member.devices.online() && skipped.as_deref() != Some(&***name))
                .filter(|(name, member)| {
                    elsewhere(name) || book.get(&member.uid).is_some_and(|prefs| !prefs.devices.is_empty())
                })
                .map(|(name, member)| {
                    let acked = member.devices.lowest_acked().unwrap_or(self.floor);
                    Reader { name: name.clone(), uid: member.uid, unread: seq - acked }
                })
                .collect();
            drop(book);
            notes::group(ctx, self.id, &self.name, offline, &stored);
        }
        // Encoded once for everyone whose previous push was seq - 1 (nearly always);
        // anyone else gets a copy with their own prev_seq.
        let passing = Passing::of(&stored);
        let mut message = wire(ctx.shared, Conversation::Group(self.id), seq, seq - 1, stored);
        let shared: Arc<[u8]> = wire::encode(ServerFrame::Push(Push::Message(message.clone()))).into();
        self.last_seq = seq;
        let mut delivered = 0;
        let mut starved = Vec::new();
        for (name, member) in self.members.iter_mut() {
            for (device, cursor) in member.devices.iter_mut() {
                let sending = sender.is_some() && cursor.conn() == sender;
                if passing.passes(name, device, sending) {
                    if let Some(session) = cursor.session.as_mut() {
                        if session.sent_upto + 1 == seq {
                            session.sent_upto = seq;
                        }
                    }
                } else if let Some((conn, prev)) = cursor.take_live(seq, size, window) {
                    delivered += 1;
                    if prev + 1 == seq {
                        ctx.batch.frame_bytes(conn, &shared, true);
                    } else {
                        message.prev_seq = prev;
                        ctx.batch.frame(conn, ServerFrame::Push(Push::Message(message.clone())), true);
                    }
                } else if cursor.stalled(seq, window).is_some() {
                    starved.push((name.clone(), device.clone()));
                }
            }
        }
        if seq - self.floor > keep_at_most {
            retention::drop_to(ctx, self.log(), &mut self.floor, &mut self.retention, seq - keep_at_most)?;
        }
        for (name, device) in starved {
            if let Some(cursor) = self.members.get(&name).and_then(|m| m.devices.get(&device)) {
                ctx.wait_if_starved(cursor, self.last_seq, Waiting::Group(self.id, name, device));
            }
        }
        ctx.delivered(u64::from(delivered));
        Ok(delivered)
    }

    /// The connections of the group's online members (every device), but `except`'s.
    pub fn sessions(&self, except: Option<&str>) -> Vec<ConnId> {
        self.members.iter().filter(|(name, _)| except != Some(&***name)).flat_map(|(_, m)| m.devices.conns()).collect()
    }

    /// Pushes the backlog of every online device of a member.
    pub fn pump_member(&mut self, ctx: &mut Ctx, name: &str) -> Handled {
        let online = self.members.get(name).map(|m| m.devices.online_devices()).unwrap_or_default();
        for device in online {
            self.pump_device(ctx, name, &device)?;
        }
        Ok(())
    }

    /// Pushes a member device's backlog while its window and budget allow, passing over
    /// what it is not sent; waits for the budget if that is what stops it.
    pub fn pump_device(&mut self, ctx: &mut Ctx, name: &str, device: &str) -> Handled {
        let (id, last_seq) = (self.id, self.last_seq);
        let Some((key, member)) = self.members.get_key_value(name) else {
            return Ok(());
        };
        let (key, device_key) = (key.clone(), member.devices.key(device));
        let Some(cursor) = self.members.get_mut(name).and_then(|m| m.devices.get_mut(device)) else {
            return Ok(());
        };
        fill_member(ctx, id, last_seq, name, device, cursor)?;
        if let Some(device_key) = device_key {
            ctx.wait_if_starved(cursor, last_seq, Waiting::Group(id, key, device_key));
        }
        Ok(())
    }

    /// The group's last sequence and the cursor of a member's device (made, where the
    /// legacy position is, for a device whose login this group has not heard of yet).
    fn member_cursor(&mut self, ctx: &mut Ctx, user: &SessionUser) -> Result<(Seq, &mut Cursor), Refusal> {
        let last_seq = self.last_seq;
        let cursor = self.device_cursor(ctx, &user.name, &user.device)?;
        Ok((last_seq, cursor.ok_or_else(|| Refusal::new(ErrorCode::NotAMember, "not a member of this group"))?))
    }

    /// A member's device acknowledges everything up to `up_to`; what every member device
    /// has is deleted. The caller then wakes what waits for the session's budget.
    pub fn ack(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, up_to: Seq) -> Handled {
        let id = self.id;
        let (last_seq, _) = self.member_cursor(ctx, user)?;
        if up_to > last_seq {
            return Err(Refusal::beyond("ack", up_to, last_seq));
        }
        if self.record_ack(ctx, &user.name, &user.device, up_to)? {
            self.trim(ctx)?;
        }
        let acked = self.member_cursor(ctx, user)?.1.acked;
        let reply = Reply::Acked { conversation: Conversation::Group(id), up_to: acked };
        ctx.batch.reply(conn, request_id, reply, true);
        Ok(())
    }

    pub fn resync(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, after: Seq) -> Handled {
        let id = self.id;
        let (last_seq, cursor) = self.member_cursor(ctx, user)?;
        if after > last_seq {
            return Err(Refusal::beyond("resync", after, last_seq));
        }
        let after = cursor.resync(after);
        let reply = Reply::Resynced { conversation: Conversation::Group(id), after, last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump_device(ctx, &user.name, &user.device)
    }

    /// Deletes what every member device has acknowledged, once history no longer keeps it.
    pub fn trim(&mut self, ctx: &mut Ctx) -> Handled {
        let lowest = self.lowest();
        let log = self.log();
        retention::settle(ctx, log, &mut self.floor, &mut self.retention, lowest)
    }

    /// The lowest position of any member's device (the last sequence without any).
    pub fn lowest(&self) -> Seq {
        self.members.values().filter_map(|m| m.devices.lowest_acked()).min().unwrap_or(self.last_seq)
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

impl DeviceReaders for GroupState {
    fn reader_log(&self) -> LogRef {
        self.log()
    }

    fn reader_devices(&self, name: &str) -> Option<(UserId, &DeviceCursors)> {
        self.members.get(name).map(|m| (m.uid, &m.devices))
    }

    fn reader_devices_mut(&mut self, name: &str) -> Option<&mut DeviceCursors> {
        self.members.get_mut(name).map(|m| &mut m.devices)
    }

    fn stored_legacy_position(&self, ctx: &Ctx, name: &str) -> Result<Seq, Refusal> {
        Ok(ctx.shared.store.group_ack(self.id, name)?.min(self.last_seq))
    }

    fn record_legacy_ack(&self, ctx: &mut Ctx, name: &str, up_to: Seq) -> Handled {
        ctx.partition.group_ack(self.id, name, up_to)?;
        Ok(())
    }
}

/// Pushes a member device's backlog while its window and budget allow, passing over what
/// it is not sent.
fn fill_member(ctx: &mut Ctx, id: GroupId, last_seq: Seq, name: &str, device: &str, cursor: &mut Cursor) -> Handled {
    let log = backlog::Log { id: LogId::Group, owner: id.into(), last_seq };
    let skip = |stored: &StoredMessage| Passing::of(stored).passes(name, device, false);
    let to_wire =
        |ctx: &Ctx, seq, prev, stored| Push::Message(wire(ctx.shared, Conversation::Group(id), seq, prev, stored));
    // A group's retention may have deleted the rest: nothing to report.
    backlog::fill(ctx, &log, cursor, skip, to_wire)?;
    Ok(())
}

/// Who passes over a stored group message: what a device is not pushed of it.
struct Passing {
    /// The member it is not for (a service's "everyone but"), or whose own it is.
    member: Option<String>,
    all_but: bool,
    device_only: bool,
}

impl Passing {
    fn of(stored: &StoredMessage) -> Self {
        Passing {
            member: skipped_member(stored).map(str::to_string),
            all_but: matches!(stored.addressee, Addressee::AllBut(_)),
            device_only: stored.device_only(),
        }
    }

    /// Whether member `name`'s `device` is not pushed it: what a service sent everyone but
    /// the member; its own message, to a legacy device (it has the receipt) or to the
    /// named device that sent it (`sending`: it counts it as sent); what only named devices
    /// know, to a legacy device.
    fn passes(&self, name: &str, device: &str, sending: bool) -> bool {
        match self.member.as_deref() == Some(name) {
            true => self.all_but || is_legacy(device) || sending,
            false => is_legacy(device) && self.device_only,
        }
    }
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
