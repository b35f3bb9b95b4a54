//! Group members homed on other cluster nodes than their group (docs/CLUSTER.md, "Groups").
//!
//! A group lives on the node that made it (its creator's home, which its id names); each
//! member's account, sessions and list of groups (the `memberships` tree, read at login)
//! live on the member's home. What crosses between the two, as `RemoteCmd`s:
//!
//! - **Admission** (`AddMember` of a user of another node, or such a user's `JoinGroup`):
//!   the group's worker checks what it can (roles, openness, room in the group), then asks
//!   the user's home (`Admit`), which checks the account and the user's seats
//!   (`--max-groups-per-user` counts every group of the user, wherever it lives) and records
//!   the membership, and answers (`Admitted`) with the user's id and display name. Only then
//!   is the member written here, and the client answered once that is durable. No answer
//!   in time (the user's home is down): the client hears `Unavailable`, and an answer that
//!   comes later is undone. Nobody is ever a member here whose account was not found at its
//!   home.
//! - **The end of a membership** (leave, removal, deletion of the group) is told to the
//!   member's home (`MembershipEnded`) once it is durable here. A home that missed it
//!   (down at the time) learns at the member's next login: the group answers its
//!   `MemberOnline` so.
//! - **Logins**: the member's home tells the group's (`MemberOnline`, with the session's
//!   connection), which keeps the session with a delivery budget of its own
//!   (`Directory::remote_online`) and delivers to it as to a session of its own; the
//!   connection's node is told to report the session's end here (`LoopMsg::Reached`).
//!   Acks and resyncs of the group come here anyway (they are group requests). A node that
//!   restarted, or that this node could not reach for a while, is told again which sessions
//!   are online in its groups (`reannounce`).

use super::commands::WorkerCmd;
use super::context::Ctx;
use super::device_cursors::{DeviceCursors, LEGACY};
use super::devices;
use super::groups::Groups;
use super::membership;
use super::refusal::{Handled, Refusal};
use super::Shared;
use crate::cluster::wire::RemoteCmd;
use crate::cluster::DEFAULT_TIMEOUT;
use crate::protocol::{ErrorCode, GroupEvent, GroupId, Reply, Seq, UserId};
use crate::route::{ConnId, LoopMsg, Owner, SessionUser};
use log::debug;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a retry after `Unavailable` should wait.
const RETRY: Duration = Duration::from_secs(1);

/// Why a user is being made a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Added by a member with the role to.
    Added,
    /// Joining an open group.
    Joined,
}

/// A request to make a user of another node a member, waiting for its home's answer.
struct Pending {
    admission: u64,
    conn: ConnId,
    request_id: u32,
    /// Who asked (the member who adds, or the user who joins).
    by: Arc<str>,
    entry: Entry,
    since: Instant,
}

/// The admissions this worker's groups wait on, at most one per group and user.
#[derive(Default)]
pub struct Admissions {
    next: u64,
    pending: HashMap<(GroupId, Arc<str>), Pending>,
}

impl Admissions {
    fn is_pending(&self, id: GroupId, username: &str) -> bool {
        self.pending.contains_key(&(id, Arc::from(username)))
    }

    fn in_group(&self, id: GroupId) -> usize {
        self.pending.keys().filter(|(group, _)| *group == id).count()
    }

    /// The pending admission `admission` of the user to the group, if it is still that one.
    fn take(&mut self, id: GroupId, username: &Arc<str>, admission: u64) -> Option<Pending> {
        let key = (id, username.clone());
        match self.pending.get(&key) {
            Some(p) if p.admission == admission => self.pending.remove(&key),
            _ => None,
        }
    }
}

/// How long the group's node waits for a user's home to answer an `Admit`, before it tells
/// the client `Unavailable`: half the cluster's wait, so that its answer reaches a client of
/// another node before that node gives up on the request (forwarded a little earlier).
pub fn patience(shared: &Shared) -> Duration {
    shared.bus.as_ref().map_or(DEFAULT_TIMEOUT, |bus| bus.timeout()) / 2
}

impl Admissions {
    /// When the oldest pending admission runs out of patience.
    pub fn next_due(&self, patience: Duration) -> Option<Instant> {
        self.pending.values().map(|p| p.since + patience).min()
    }
}

/// Admissions whose user's home did not answer in time: nothing was done, and the client
/// hears `Unavailable` (an answer that still comes is undone).
pub fn expire(ctx: &mut Ctx, groups: &mut Groups) {
    let patience = patience(ctx.shared);
    let now = Instant::now();
    let late: Vec<(GroupId, Arc<str>)> =
        groups.admissions.pending.iter().filter(|(_, p)| p.since + patience <= now).map(|(k, _)| k.clone()).collect();
    for key in late {
        if let Some(p) = groups.admissions.pending.remove(&key) {
            let why = format!("the home node of {} did not answer", crate::apps::local(&key.1));
            ctx.batch.refuse(p.conn, p.request_id, &Refusal::unavailable(why, RETRY));
        }
    }
}

/// On the group's worker: `username`, homed on `node`, is to be a member (the caller checked
/// the requester's right to it). Its home is asked; the client is answered when it has.
#[allow(clippy::too_many_arguments)]
pub fn ask(
    ctx: &mut Ctx,
    groups: &mut Groups,
    id: GroupId,
    node: u8,
    conn: ConnId,
    request_id: u32,
    by: &SessionUser,
    username: &str,
    entry: Entry,
) -> Handled {
    if let Some(why) = ctx.shared.bus.as_ref().and_then(|bus| crate::route::Elsewhere::refusal(bus, node)) {
        return Err(Refusal::unavailable(why, RETRY));
    }
    expire(ctx, groups);
    let max_members = ctx.config().max_group_members;
    let waiting = groups.admissions.in_group(id);
    let group = groups.load(ctx, id)?;
    if group.members.contains_key(username) {
        return Err(Refusal::new(ErrorCode::AlreadyMember, "already a member"));
    }
    if group.members.len() + waiting >= max_members {
        return Err(Refusal::new(ErrorCode::LimitReached, "the group is full"));
    }
    if groups.admissions.is_pending(id, username) {
        return Err(Refusal::unavailable("an earlier request to admit this user still waits for its node", RETRY));
    }
    let admissions = &mut groups.admissions;
    admissions.next += 1;
    let admission = admissions.next;
    let username: Arc<str> = username.into();
    let pending = Pending { admission, conn, request_id, by: by.name.clone(), entry, since: Instant::now() };
    admissions.pending.insert((id, username.clone()), pending);
    ctx.tell(WorkerCmd::Admit { group_id: id, username, admission }, false);
    Ok(())
}

/// On the user's worker, at its home: another node's group asks to make it a member.
/// The membership is recorded here; the answer goes once that is durable, followed by the
/// user's sessions now (so they get the group's messages from the start).
pub fn admit_here(ctx: &mut Ctx, group_id: GroupId, username: Arc<str>, admission: u64) {
    let recorded = record(ctx, group_id, &username);
    let outcome = match recorded {
        Ok((uid, admin, display_name)) => {
            let sessions = ctx.shared.directory.sessions_of(&username);
            let answer = WorkerCmd::Admitted {
                group_id,
                username: username.clone(),
                admission,
                outcome: Ok((uid, display_name.clone())),
            };
            ctx.tell(answer, true);
            for session in sessions {
                let user = SessionUser { name: username.clone(), uid, admin, service: false, device: session.device };
                online_elsewhere(ctx, group_id, &user, session.conn, &display_name);
            }
            return;
        }
        Err(refusal) => Err((refusal.code, refusal.message)),
    };
    ctx.tell(WorkerCmd::Admitted { group_id, username, admission, outcome }, false);
}

/// Records the user's membership, if it has an account and a seat left: its id, whether it
/// is an administrator, its display name.
fn record(ctx: &mut Ctx, group_id: GroupId, username: &str) -> Result<(UserId, bool, String), Refusal> {
    let account = ctx.shared.store.account(username)?.ok_or_else(Refusal::unknown_user)?;
    // Recorded already by an admission whose answer came too late: not a second seat.
    if !ctx.shared.store.memberships(username)?.contains(&group_id) {
        let seat = membership::take_seat(ctx, username)?
            .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "the user is in too many groups"))?;
        let written = ctx.partition.sled().add_membership(username, group_id);
        ctx.shared.seats.release(seat);
        written?;
    }
    Ok((account.user_id, account.admin, account.display_name))
}

/// On the group's worker: the user's home answered an `Admit`.
pub fn admitted(
    ctx: &mut Ctx,
    groups: &mut Groups,
    id: GroupId,
    username: Arc<str>,
    admission: u64,
    outcome: Result<(UserId, String), (ErrorCode, String)>,
) {
    let patience = patience(ctx.shared);
    let pending = groups.admissions.take(id, &username, admission);
    // Too late (its timer has not gone off yet): as if it had.
    let late = pending.as_ref().is_some_and(|p| p.since.elapsed() >= patience);
    if let (true, Some(p)) = (late, &pending) {
        let why = format!("the home node of {} did not answer in time", crate::apps::local(&username));
        ctx.batch.refuse(p.conn, p.request_id, &Refusal::unavailable(why, RETRY));
    }
    let Some(pending) = pending.filter(|_| !late) else {
        // Nobody waits for this answer any more: its client was told `Unavailable`.
        if outcome.is_ok() {
            end_unless_member(ctx, groups, id, &username);
        }
        return;
    };
    let (uid, display_name) = match outcome {
        Ok(admitted) => admitted,
        Err((code, message)) => {
            return ctx.batch.refuse(pending.conn, pending.request_id, &Refusal::new(code, message))
        }
    };
    ctx.shared.directory.remember(&username, display_name);
    match seat(ctx, groups, id, &username, uid, &pending) {
        Ok(()) => ctx.batch.reply(pending.conn, pending.request_id, Reply::Done, true),
        Err(refusal) => {
            ctx.batch.refuse(pending.conn, pending.request_id, &refusal);
            end_unless_member(ctx, groups, id, &username);
        }
    }
}

/// Makes the admitted user a member, as `membership::admit` does for a user of this node
/// (checked again: the group may have filled meanwhile), and announces it.
fn seat(ctx: &mut Ctx, groups: &mut Groups, id: GroupId, username: &str, uid: UserId, pending: &Pending) -> Handled {
    let acked = membership::room_for(ctx, groups, id, username)?;
    membership::seat_member(ctx, groups, id, username, uid, acked)?;
    let event = match pending.entry {
        Entry::Added => GroupEvent::Added { username: username.to_string(), by: pending.by.to_string() },
        Entry::Joined => GroupEvent::Joined { username: username.to_string() },
    };
    groups.load(ctx, id)?.append_event(ctx, event, &pending.by)
}

/// Tells the user's home that it is not a member of the group after all, unless it is one
/// or another admission of it is on its way (whose answer will decide).
fn end_unless_member(ctx: &mut Ctx, groups: &mut Groups, id: GroupId, username: &Arc<str>) {
    let member = groups.load(ctx, id).is_ok_and(|group| group.members.contains_key(&**username));
    if !member && !groups.admissions.is_pending(id, username) {
        ctx.tell(WorkerCmd::MembershipEnded { group_id: id, username: username.clone() }, false);
    }
}

/// A member's cursors as its group loads (see `devices::reader_cursors`). A member homed on
/// another node has its device records there: its devices here are the named ones with a
/// position recorded here (each records one when it first comes online here), and the
/// legacy device at its position; without any named one, the implicit legacy cursor. The
/// legacy cursor of a member who uses only named devices then holds its position, so
/// history keeps what lies above it (at most `--group-retention`, as for anyone).
pub fn member_cursors(
    ctx: &Ctx,
    username: &str,
    uid: UserId,
    legacy: Seq,
    within: impl Fn(Seq) -> Seq,
    recorded: &HashMap<(UserId, String), Seq>,
) -> Result<(DeviceCursors, Vec<Arc<str>>), Refusal> {
    if ctx.home_of(Owner::User(username)).is_none() {
        return devices::reader_cursors(ctx, uid, legacy, within, recorded);
    }
    let mut named = recorded.iter().filter(|((member, _), _)| *member == uid).peekable();
    if named.peek().is_none() {
        return Ok((DeviceCursors::implicit_legacy(within(legacy)), Vec::new()));
    }
    let now = crate::clock::now_ms();
    let mut cursors = DeviceCursors::default();
    for ((_, device), acked) in named {
        cursors.insert(device.as_str().into(), within(*acked), now);
    }
    cursors.insert(LEGACY.into(), within(legacy), now);
    Ok((cursors, Vec::new()))
}

/// On the user's worker, at its home: a group of another node says the user is not a
/// member (any more).
pub fn ended_here(ctx: &mut Ctx, group_id: GroupId, username: &str) {
    if let Err(e) = ctx.partition.sled().remove_membership(username, group_id) {
        debug!("{username}'s membership of group {group_id}: {e}");
    }
}

/// On the group's worker: a member is online on `device` at `conn` (see
/// `Groups::member_online`). A user of another node that is not a member (its home missed
/// the end of its membership) is told so.
pub fn member_online(ctx: &mut Ctx, groups: &mut Groups, id: GroupId, username: &str, device: &str, conn: ConnId) {
    if let Err(refusal) = groups.member_online(ctx, id, username, device, conn) {
        debug!("group {id} catch-up for {username}: {}", refusal.message);
    }
    if ctx.home_of(Owner::User(username)).is_some() {
        end_unless_member(ctx, groups, id, &Arc::from(username));
    }
}

/// On the member's worker, at its home: the member's session on `conn` is online in a group
/// homed on another node; that node keeps the session (and hears when it ends).
pub fn online_elsewhere(ctx: &mut Ctx, group_id: GroupId, user: &SessionUser, conn: ConnId, display_name: &str) {
    let Some(node) = ctx.home_of(Owner::Group(group_id)) else { return };
    let cmd = RemoteCmd::MemberOnline {
        group_id,
        username: user.name.to_string(),
        device: user.device.to_string(),
        conn,
        display_name: display_name.to_string(),
    };
    ctx.batch.send_to_node(node, cmd, None, false);
    ctx.batch.control(LoopMsg::Reached { conn, node, user: user.clone() });
}

/// Tells `node` (every other node when None) again which sessions of this node's users are
/// online in its groups: it restarted, or this node's bus connection was down, and what it
/// held for them may be lost.
pub fn reannounce(ctx: &mut Ctx, node: Option<u8>) {
    let store = ctx.shared.store.clone();
    for (username, display_name, sessions) in ctx.shared.directory.everyone() {
        let groups: Vec<GroupId> = match store.memberships(&username) {
            Ok(groups) => groups,
            Err(e) => {
                debug!("{username}'s groups: {e}");
                continue;
            }
        };
        let elsewhere = |id: &GroupId| ctx.home_of(Owner::Group(*id)).is_some_and(|n| node.is_none_or(|m| m == n));
        let groups: Vec<GroupId> = groups.into_iter().filter(elsewhere).collect();
        if groups.is_empty() {
            continue;
        }
        let Ok(Some(account)) = store.account(&username) else { continue };
        for session in sessions {
            let user = SessionUser {
                name: username.clone(),
                uid: account.user_id,
                admin: account.admin,
                service: false,
                device: session.device.clone(),
            };
            for &group_id in &groups {
                online_elsewhere(ctx, group_id, &user, session.conn, &display_name);
            }
        }
    }
}
