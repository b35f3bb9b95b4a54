//! Group membership: creating, renaming, adding, joining, removing, leaving, roles,
//! deleting, and the listings. Each change is stored and announced as an event in the
//! group's sequence (see `groups` for delivery).
//!
//! Permissions (protocol.md "Groups"): the owner may do anything but leave; admins rename,
//! add members and remove plain members; members send, read, and leave.

use super::commands::{NewGroup, WorkerCmd};
use super::context::Ctx;
use super::device_cursors::is_legacy;
use super::device_readers::DeviceReaders;
use super::groups::{GroupState, Groups, Member};
use super::message::system_content;
use super::read_state;
use super::refusal::{Handled, Refusal};
use super::remote_members::{self, Entry};
use super::seats::Seat;
use crate::apps::app_of;
use crate::apps::wire;
use crate::clock::now_ms;
use crate::names::normalize_name;
use crate::protocol::{
    Conversation, ErrorCode, GroupEvent, GroupId, GroupInfo, MemberInfo, Message, MessageId, OpenGroup, Push, Reply,
    Role, SenderKind, Seq, ServerFrame, UserId,
};
use crate::route::{ConnId, Owner, SessionUser};
use crate::store::{LogId, LogOwner, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Largest page of the open-group directory.
const MAX_OPEN_GROUP_PAGE: u32 = 500;

/// On the creator's worker: a seat in one more group and a fresh id; the worker that owns
/// the id makes the group ([`create_here`]).
pub fn create(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, name: String, open: bool) -> Handled {
    let name = normalize_name(&name).map_err(|r| Refusal::new(ErrorCode::InvalidName, r.explain()))?;
    let app = ctx.shared.apps.of(&user.name).cloned().ok_or_else(|| Refusal::new(ErrorCode::Internal, "no app"))?;
    // Taken here and given back if the group is not made (see the worker's CreateGroup).
    if !app.take_group() {
        return Err(Refusal::new(ErrorCode::LimitReached, "the app has as many groups as it may"));
    }
    let seat = match take_seat(ctx, &user.name) {
        Ok(Some(seat)) => seat,
        Ok(None) => {
            app.release_group();
            return Err(Refusal::new(ErrorCode::LimitReached, "too many groups"));
        }
        Err(refusal) => {
            app.release_group();
            return Err(refusal);
        }
    };
    let group_id = match ctx.shared.store.next_id() {
        Ok(id) => GroupId(id),
        Err(e) => {
            ctx.shared.seats.release(seat);
            app.release_group();
            return Err(e.into());
        }
    };
    let worker = ctx.worker_of(Owner::Group(group_id));
    let group = NewGroup { conn, request_id, creator: user.clone(), id: group_id, name, open };
    let cmd = WorkerCmd::CreateGroup { group, seat };
    ctx.batch.send_to_worker(worker, cmd);
    Ok(())
}

/// Creation proper, on the worker that owns the new id.
pub fn create_here(ctx: &mut Ctx, groups: &mut Groups, new: NewGroup) -> Handled {
    let NewGroup { conn, request_id, creator, id, name, open } = new;
    let group = GroupState {
        id,
        name,
        open,
        created_ms: now_ms(),
        floor: Seq::ZERO,
        last_seq: Seq::ZERO,
        members: BTreeMap::new(),
        retention: Default::default(),
    };
    let store = ctx.partition.sled();
    store.add_membership(&creator.name, id)?;
    store.put_group_ack(id, &creator.name, Seq::ZERO)?;
    let group = groups.insert(group, conn);
    seat_devices(ctx, group, &creator.name, creator.uid, Role::Owner)?;
    if open {
        ctx.shared.open_groups.set(app_of(&creator.name), id, group.name.clone(), 1);
    }
    let attached = group.sessions(None);
    for other in attached.into_iter().filter(|c| *c != conn) {
        groups.attach(other, id);
    }
    let group = groups.load(ctx, id)?;
    group.append_event(ctx, GroupEvent::Created { by: creator.name.to_string() }, &creator.name)?;
    ctx.batch.reply(conn, request_id, Reply::GroupCreated { group_id: id }, true);
    Ok(())
}

pub fn rename(
    ctx: &mut Ctx,
    group: &mut GroupState,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    name: String,
) -> Handled {
    let name = normalize_name(&name).map_err(|r| Refusal::new(ErrorCode::InvalidName, r.explain()))?;
    if group.role_of(&user.name)? == Role::Member {
        return Err(Refusal::new(ErrorCode::Forbidden, "only the owner and admins rename a group"));
    }
    group.name = name.clone();
    group.save(ctx)?;
    group.append_event(ctx, GroupEvent::Renamed { name, by: user.name.to_string() }, &user.name)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn add_member(
    ctx: &mut Ctx,
    groups: &mut Groups,
    id: GroupId,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    username: &str,
) -> Handled {
    if groups.load(ctx, id)?.role_of(&user.name)? == Role::Member {
        return Err(Refusal::new(ErrorCode::Forbidden, "only the owner and admins add members"));
    }
    // A user of another node: its home checks the account and records the membership first.
    if let Some(node) = ctx.home_of(Owner::User(username)) {
        return remote_members::ask(ctx, groups, id, node, conn, request_id, user, username, Entry::Added);
    }
    let account = ctx.shared.store.account(username)?.ok_or_else(Refusal::unknown_user)?;
    admit(ctx, groups, id, username, account.user_id)?;
    let event = GroupEvent::Added { username: username.to_string(), by: user.name.to_string() };
    groups.load(ctx, id)?.append_event(ctx, event, &user.name)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn join(
    ctx: &mut Ctx,
    groups: &mut Groups,
    id: GroupId,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
) -> Handled {
    // Another app's group was refused before (Groups::visible_to).
    let group = groups.load(ctx, id)?;
    if !group.open && !group.members.contains_key(&user.name) {
        return Err(Refusal::new(ErrorCode::Forbidden, "this group is not open; ask an admin to add you"));
    }
    if let Some(node) = ctx.home_of(Owner::User(&user.name)) {
        return remote_members::ask(ctx, groups, id, node, conn, request_id, user, &user.name, Entry::Joined);
    }
    admit(ctx, groups, id, &user.name, user.uid)?;
    let event = GroupEvent::Joined { username: user.name.to_string() };
    groups.load(ctx, id)?.append_event(ctx, event, &user.name)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// Whether group `id` can take `username` as a new member (not one already, not full);
/// returns the group's last sequence, where the new member starts.
pub(super) fn room_for(ctx: &mut Ctx, groups: &mut Groups, id: GroupId, username: &str) -> Result<Seq, Refusal> {
    let max_members = ctx.config().max_group_members;
    let group = groups.load(ctx, id)?;
    if group.members.contains_key(username) {
        return Err(Refusal::new(ErrorCode::AlreadyMember, "already a member"));
    }
    if group.members.len() >= max_members {
        return Err(Refusal::new(ErrorCode::LimitReached, "the group is full"));
    }
    Ok(group.last_seq)
}

/// Adds a member who starts after the current last message (history before joining is
/// not theirs), checking the limits; every device of it online now is attached.
fn admit(ctx: &mut Ctx, groups: &mut Groups, id: GroupId, username: &str, uid: UserId) -> Handled {
    let acked = room_for(ctx, groups, id, username)?;
    let seat = take_seat(ctx, username)?
        .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "the user is in too many groups"))?;
    let seated = seat_member(ctx, groups, id, username, uid, acked);
    ctx.shared.seats.release(seat);
    seated
}

/// Writes a new member's position (at `acked`), read mark and membership, gives it its
/// cursors, and writes the group's record. The membership of a user of another cluster node
/// is recorded at its home instead (see `remote_members`).
pub(super) fn seat_member(
    ctx: &mut Ctx,
    groups: &mut Groups,
    id: GroupId,
    username: &str,
    uid: UserId,
    acked: Seq,
) -> Handled {
    let homed_here = ctx.home_of(Owner::User(username)).is_none();
    let store = ctx.partition.sled();
    store.put_group_ack(id, username, acked)?;
    read_state::joined(store, uid, id, acked)?;
    if homed_here {
        store.add_membership(username, id)?;
    }
    let group = groups.load(ctx, id)?;
    seat_devices(ctx, group, username, uid, Role::Member)?;
    let online = group.members.get(username).map(|m| m.devices.conns()).unwrap_or_default();
    groups.load(ctx, id)?.save(ctx)?;
    for conn in online {
        groups.attach(conn, id);
    }
    Ok(())
}

/// A new member's cursors, one per device it has, all where its legacy position was just
/// written (the named ones recorded there), and every session it has now attached.
fn seat_devices(ctx: &mut Ctx, group: &mut GroupState, username: &str, uid: UserId, role: Role) -> Handled {
    let legacy = ctx.shared.store.group_ack(group.id, username)?;
    let last_seq = group.last_seq;
    let within = |seq: Seq| seq.min(last_seq);
    let (devices, unrecorded) = remote_members::member_cursors(ctx, username, uid, legacy, within, &HashMap::new())?;
    group.members.insert(username.into(), Member { uid, role, devices });
    // The record first: a device's position is kept only for a member of a group on disk.
    ctx.partition.sled().put_group(group.id, &group.record())?;
    let sessions = ctx.shared.directory.member_sessions(username);
    group.seat(ctx, username, unrecorded, &sessions)?;
    Ok(())
}

/// A seat for `username` in one more group, if `max_groups_per_user` leaves one (see
/// `seats`: atomic across workers and pipelined requests).
pub(super) fn take_seat(ctx: &Ctx, username: &str) -> Result<Option<Seat>, Refusal> {
    let store = &ctx.shared.store;
    let max = ctx.config().max_groups_per_user;
    Ok(ctx.shared.seats.take(username, max, || store.memberships(username).map(|m| m.len()))?)
}

pub fn remove_member(
    ctx: &mut Ctx,
    group: &mut GroupState,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    username: &str,
) -> Handled {
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
    group.append_event(ctx, event, &user.name)?;
    drop_member(ctx, group, username)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn leave(ctx: &mut Ctx, group: &mut GroupState, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    if group.role_of(&user.name)? == Role::Owner {
        return Err(Refusal::new(ErrorCode::Forbidden, "the owner hands the group over or deletes it"));
    }
    group.append_event(ctx, GroupEvent::Left { username: user.name.to_string() }, &user.name)?;
    drop_member(ctx, group, &user.name)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

fn drop_member(ctx: &mut Ctx, group: &mut GroupState, username: &str) -> Handled {
    let uid = group.members.remove(username).map(|m| m.uid);
    let store = ctx.partition.sled();
    store.remove_group_ack(group.id, username)?;
    if let Some(uid) = uid {
        store.remove_device_acks(LogId::Group, group.id.into(), Some(uid))?;
        read_state::left(store, uid, group.id)?;
    }
    store.remove_membership(username, group.id)?;
    ended_elsewhere(ctx, group.id, username);
    group.save(ctx)?;
    group.trim(ctx)
}

/// A membership of a user of another cluster node ended: its home hears of it once that is
/// durable here (see `remote_members`).
fn ended_elsewhere(ctx: &mut Ctx, group_id: GroupId, username: &str) {
    if ctx.home_of(Owner::User(username)).is_some() {
        ctx.tell(WorkerCmd::MembershipEnded { group_id, username: username.into() }, true);
    }
}

pub fn set_role(
    ctx: &mut Ctx,
    group: &mut GroupState,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    username: &str,
    role: Role,
) -> Handled {
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
    group.save(ctx)?;
    let event = GroupEvent::RoleChanged { username: username.to_string(), role, by: user.name.to_string() };
    group.append_event(ctx, event, &user.name)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn delete(
    ctx: &mut Ctx,
    groups: &mut Groups,
    id: GroupId,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
) -> Handled {
    let display_name = ctx.shared.directory.display_name(&user.name, &ctx.shared.store);
    let group = groups.load(ctx, id)?;
    if group.role_of(&user.name)? != Role::Owner {
        return Err(Refusal::new(ErrorCode::Forbidden, "only the owner deletes a group"));
    }
    // Live only: the history it would be stored in is being deleted.
    let notice = Message {
        conversation: Conversation::Group(id),
        seq: group.last_seq.next(),
        prev_seq: group.last_seq,
        message_id: MessageId::NONE,
        from: user.name.to_string(),
        sender: SenderKind::User,
        timestamp_ms: now_ms(),
        content: system_content(),
        event: Some(GroupEvent::Deleted { by: user.name.to_string() }),
        display_name,
    };
    let encoded: Arc<[u8]> = wire::encode(ServerFrame::Push(Push::Message(notice))).into();
    let record = group.record();
    // What was still owed to a member (history's acknowledged messages are not counted).
    let still_stored = group.last_seq - group.floor.max(group.retention.settled);
    let online = group.sessions(None);
    ctx.partition.sled().delete_group(id, &record)?;
    for member in &record.members {
        ended_elsewhere(ctx, id, &member.username);
    }
    ctx.partition.forget(LogId::Group, id.into());
    ctx.shared.open_groups.remove(app_of(&user.name), id);
    if let Some(app) = ctx.shared.apps.of(&user.name) {
        app.release_group();
    }
    ctx.shared.metrics.stored_delta(-(still_stored as i64));
    groups.remove(id);
    for target in online {
        ctx.batch.frame_bytes(target, &encoded, false);
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn members(ctx: &mut Ctx, group: &GroupState, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    group.role_of(&user.name)?;
    let (directory, store) = (&ctx.shared.directory, &ctx.shared.store);
    let members = group
        .members
        .iter()
        .map(|(username, m)| MemberInfo {
            online: directory.member_online(username),
            display_name: directory.display_name(username, store),
            username: username.to_string(),
            role: m.role,
        })
        .collect();
    ctx.batch.reply(conn, request_id, Reply::Members { group_id: group.id, members }, false);
    Ok(())
}

/// The position of the caller's device in a group, as stored: a named device's own, or
/// where the legacy device is (where a device new to the group starts).
fn device_position(store: &Store, id: GroupId, user: &SessionUser) -> Result<Seq, Refusal> {
    let legacy = store.group_ack(id, &user.name)?;
    if is_legacy(&user.device) {
        return Ok(legacy);
    }
    Ok(store.device_ack(LogId::Group, id.into(), user.uid, &user.device)?.unwrap_or(legacy))
}

/// One page of the open-group directory (any worker may answer: it is shared).
pub fn list_open(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, after: GroupId, limit: u32) {
    let limit = if limit == 0 { 100 } else { limit.min(MAX_OPEN_GROUP_PAGE) };
    let (page, more) = ctx.shared.open_groups.page(app_of(&user.name), after, limit as usize);
    let groups = page
        .into_iter()
        .map(|(group_id, entry)| OpenGroup { group_id, name: entry.name, members: entry.members })
        .collect();
    ctx.batch.reply(conn, request_id, Reply::OpenGroups { groups, more }, false);
}

/// The caller's groups, read from the store (any worker may answer).
pub fn list_mine(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    let store = &ctx.shared.store;
    let mut groups = Vec::new();
    for group_id in store.memberships(&user.name)? {
        groups.extend(group_info(store, group_id, user)?);
    }
    ctx.batch.reply(conn, request_id, Reply::Groups { groups }, false);
    Ok(())
}

/// What `ListGroups` tells `user` of group `group_id`, from the store of the group's node;
/// None when the group is gone or the user is not in it.
pub fn group_info(store: &Store, group_id: GroupId, user: &SessionUser) -> Result<Option<GroupInfo>, Refusal> {
    let Some(record) = store.group(group_id)? else {
        return Ok(None);
    };
    let Some(me) = record.members.iter().find(|m| *m.username == *user.name) else {
        return Ok(None);
    };
    // The group may be another worker's: its staged messages count too.
    let log = LogOwner::from(group_id);
    let last_seq = store.group_log.state(log)?.last_seq.max(store.staged_last(LogId::Group, log));
    Ok(Some(GroupInfo {
        group_id,
        name: record.name.clone(),
        open: record.open,
        role: me.role,
        members: record.members.len() as u32,
        // A position beyond the history's end is read as the end (see `Groups::load`).
        acked: device_position(store, group_id, user)?.min(last_seq),
        last_seq,
    }))
}
