//! Read state (protocol.md "Read state"): read marks, the receipts setting, read receipts
//! and groups' read positions. The counts of what is unread are in `unread`.
//!
//! Where each request is handled, so that every key has one writer:
//! - a mark of a direct, service or support chat on the caller's worker (the owner of its
//!   inbox, whose last sequence bounds a direct chat's mark);
//! - a group's mark and `ReadPositions` on the group's worker (`Request::group` routes them
//!   there), which knows the members and the group's last sequence;
//! - a read receipt on the sender's worker: the reader's worker hands it on after the
//!   mark's commit (`WorkerCmd::ReadReceipt`); the sender's worker keeps the latest from
//!   each reader and pushes it to every session of the sender's named devices, and a
//!   named device's login is pushed what is kept ([`push_held_receipts`]).
//!
//! `ReadMark` and `ReadReceipt` are frames only named devices know (protocol.md
//! "Devices"): a session that names no device is an older client, which is never sent them.
//!
//! A mark is written through the commit log (see `store::read_marks`): a client marks a
//! chat whenever it shows new messages, so a mark costs what an ack costs, a share of the
//! batch's one sync, not a sled checkpoint. The setting is checkpointed like push settings.

use super::commands::WorkerCmd;
use super::context::Ctx;
use super::device_cursors::is_legacy;
use super::devices;
use super::groups::GroupState;
use super::refusal::{Handled, Refusal};
use super::support::not_a_reader;
use crate::apps::valid_user_name;
use crate::clock::now_ms;
use crate::protocol::{Chat, ErrorCode, GroupId, Push, ReadPosition, Reply, Seq, SupportId, UserId};
use crate::route::{ConnId, Owner, SessionUser};
use crate::store::{LogId, ReadEntry, Store};
use std::sync::Arc;

/// Marks of direct, service and support chats a user keeps; a mark of one more chat forgets
/// the one set longest ago. Refusing it instead would leave the new chat's count stuck
/// where the user is reading now; forgetting costs only a chat nobody has opened for that
/// long, whose count comes back from what the logs still hold of it (once its messages are
/// older than the history kept, nothing).
/// Groups' marks are bounded by the groups a user may be in (`--max-groups-per-user`).
pub const MAX_MARKS: usize = 2000;

/// Readers whose latest receipt a sender keeps; one more forgets the oldest receipt.
pub const MAX_RECEIPTS: usize = 1000;

/// `MarkRead` of a direct, service or support chat, on the caller's worker.
pub fn mark(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, chat: Chat, up_to: Seq) -> Handled {
    let last_seq = match &chat {
        Chat::User(name) | Chat::Service(name) => {
            if !valid_user_name(name) {
                return Err(Refusal::new(ErrorCode::InvalidName, "not a valid user or service name"));
            }
            // A direct chat's sequence is the caller's inbox's (this worker owns it).
            ctx.partition.state(LogId::Inbox, user.uid.into())?.last_seq
        }
        Chat::Support(id) => support_last_seq(&ctx.shared.store, &user.name, *id)?,
        // `Request::group` sends these to the group's worker: `mark_group`.
        Chat::Group(_) => return Err(Refusal::new(ErrorCode::BadRequest, "a group's mark goes to the group")),
    };
    if up_to > last_seq {
        return Err(Refusal::beyond("mark", up_to, last_seq));
    }
    let rose = raise(ctx, user.uid, &chat, up_to)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    if rose {
        tell_other_sessions(ctx, user, conn, &chat, up_to);
        if let Chat::User(sender) = &chat {
            hand_on_receipt(ctx, user, sender, up_to)?;
        }
    }
    Ok(())
}

/// `MarkRead` of a group, on the group's worker.
pub fn mark_group(
    ctx: &mut Ctx,
    group: &GroupState,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    up_to: Seq,
) -> Handled {
    group.role_of(&user.name)?;
    if up_to > group.last_seq {
        return Err(Refusal::beyond("mark", up_to, group.last_seq));
    }
    let chat = Chat::Group(group.id);
    let rose = raise(ctx, user.uid, &chat, up_to)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    if rose {
        tell_other_sessions(ctx, user, conn, &chat, up_to);
    }
    Ok(())
}

/// A new member's mark, where it joined (written with its membership, so what was sent
/// before it joined is never unread to it).
pub fn joined(store: &Store, uid: UserId, group: GroupId, at: Seq) -> Handled {
    store.put_read_mark(uid, &Chat::Group(group), Some(ReadEntry { up_to: at, at_ms: now_ms() }))?;
    Ok(())
}

/// A member's mark goes with its membership.
pub fn left(store: &Store, uid: UserId, group: GroupId) -> Handled {
    store.put_read_mark(uid, &Chat::Group(group), None)?;
    Ok(())
}

/// Raises the user's mark in `chat` to `up_to`; false if it was there already (a mark never
/// goes back: a late mark from a slow device changes nothing).
fn raise(ctx: &mut Ctx, uid: UserId, chat: &Chat, up_to: Seq) -> Result<bool, Refusal> {
    let store = &ctx.shared.store;
    let held = store.read_mark(uid, chat)?;
    if held.map_or(Seq::ZERO, |mark| mark.up_to) >= up_to {
        return Ok(false);
    }
    if held.is_none() && !matches!(chat, Chat::Group(_)) {
        let own = store.own_read_marks(uid)?;
        if let Some(oldest) = own.oldest.filter(|_| own.count >= MAX_MARKS) {
            ctx.partition.read_mark(uid, &oldest, None)?;
        }
    }
    ctx.partition.read_mark(uid, chat, Some(ReadEntry { up_to, at_ms: now_ms() }))?;
    Ok(true)
}

/// The user's other named devices clear their unread count too. After the commit, as the
/// reply: a mark lost in a crash is never announced.
fn tell_other_sessions(ctx: &mut Ctx, user: &SessionUser, conn: ConnId, chat: &Chat, up_to: Seq) {
    for other in devices::other_named_sessions(ctx, user, conn) {
        ctx.batch.push(other, Push::ReadMark { chat: chat.clone(), up_to }, true);
    }
}

/// The last sequence of a support conversation `name` reads (its customer or a staff member
/// of its shop), read from another worker than the shop's: its staged messages count.
fn support_last_seq(store: &Store, name: &str, id: SupportId) -> Result<Seq, Refusal> {
    let record = store.support(id)?.ok_or_else(not_a_reader)?;
    if record.customer != name && !is_staff(store, &record.shop, name)? {
        return Err(not_a_reader());
    }
    Ok(store.state_across(LogId::Support, id.into())?.last_seq)
}

pub fn is_staff(store: &Store, shop: &str, name: &str) -> Result<bool, Refusal> {
    Ok(store.shop(shop)?.is_some_and(|record| record.staff.iter().any(|s| s.username == name)))
}

/// A reader with receipts on marked its direct chat with `sender`: the sender's worker keeps
/// and pushes it. Sent with the batch's other commands, after its commit. A commit that
/// fails keeps the mark queued for the next one; only a crash before that loses a mark a
/// receipt already told of (the reader marks again when it reads on).
fn hand_on_receipt(ctx: &mut Ctx, reader: &SessionUser, sender: &str, up_to: Seq) -> Handled {
    let store = &ctx.shared.store;
    if sender == &*reader.name || !store.read_prefs(reader.uid)?.receipts {
        return Ok(());
    }
    // A sender homed on another node: its home reads its account.
    if ctx.home_of(Owner::User(sender)).is_some() {
        let cmd =
            WorkerCmd::ReadReceipt { sender: sender.into(), sender_uid: UserId(0), reader: reader.name.clone(), up_to };
        ctx.tell(cmd, false);
        return Ok(());
    }
    // A chat with an account that is gone (its messages may still be kept) has nobody to tell.
    let Some(account) = store.account(sender)? else {
        return Ok(());
    };
    let cmd = WorkerCmd::ReadReceipt {
        sender: sender.into(),
        sender_uid: account.user_id,
        reader: reader.name.clone(),
        up_to,
    };
    ctx.tell(cmd, false);
    Ok(())
}

/// On the sender's worker: the reader's latest receipt, kept (within `MAX_RECEIPTS`
/// readers) and pushed to every session of the sender's named devices. An older one than
/// kept changes nothing.
pub fn receipt(ctx: &mut Ctx, sender: &str, sender_uid: UserId, reader: &Arc<str>, up_to: Seq) -> Handled {
    let store = &ctx.shared.store;
    let held = store.read_receipt(sender_uid, reader)?;
    if held.is_some_and(|kept| kept.up_to >= up_to) {
        return Ok(());
    }
    if held.is_none() {
        let kept = store.receipts_held(sender_uid)?;
        if let Some(oldest) = kept.oldest.filter(|_| kept.count >= MAX_RECEIPTS) {
            ctx.partition.read_receipt(sender_uid, &oldest, None)?;
        }
    }
    ctx.partition.read_receipt(sender_uid, reader, Some(ReadEntry { up_to, at_ms: now_ms() }))?;
    for session in ctx.shared.directory.sessions_of(sender).into_iter().filter(|s| !is_legacy(&s.device)) {
        ctx.batch.push(session.conn, Push::ReadReceipt { reader: reader.to_string(), up_to }, true);
    }
    Ok(())
}

/// At a named device's login, after its reply: the receipts the user holds that were
/// recorded at or after `since_ms` (0: all of them; a device that was online until some
/// time has the earlier ones). Held as durable output, like the reply they follow. The
/// legacy device's login (`LoggedIn`) is pushed none.
pub fn push_held_receipts(ctx: &mut Ctx, uid: UserId, device: &str, conn: ConnId, since_ms: u64) -> Handled {
    if is_legacy(device) {
        return Ok(());
    }
    for (reader, kept) in ctx.shared.store.read_receipts(uid)? {
        if kept.at_ms >= since_ms {
            ctx.batch.push(conn, Push::ReadReceipt { reader, up_to: kept.up_to }, true);
        }
    }
    Ok(())
}

/// Whether the user sends read receipts.
pub fn receipts_enabled(ctx: &Ctx, uid: UserId) -> Result<bool, Refusal> {
    Ok(ctx.shared.store.read_prefs(uid)?.receipts)
}

/// `SetReadReceipts`: a sled write the batch checkpoints before the reply (it changes
/// rarely). Receipts already sent stay with their senders.
pub fn set_receipts(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, enabled: bool) -> Handled {
    let mut prefs = ctx.shared.store.read_prefs(user.uid)?;
    if prefs.receipts != enabled {
        prefs.receipts = enabled;
        ctx.partition.sled().put_read_prefs(user.uid, &prefs)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// `ReadPositions`: how far each member has read, for members only. A member with receipts
/// off is left out (its reading is its own business); one without a mark (a member from
/// before read marks) is at 0.
pub fn positions(ctx: &mut Ctx, group: &GroupState, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    group.role_of(&user.name)?;
    let store = &ctx.shared.store;
    let chat = Chat::Group(group.id);
    let mut readers = Vec::new();
    for (name, member) in &group.members {
        if !store.read_prefs(member.uid)?.receipts {
            continue;
        }
        let mark = store.read_mark(member.uid, &chat)?.map_or(Seq::ZERO, |mark| mark.up_to);
        // A mark beyond a history a crash cut short reads as its end.
        readers.push(ReadPosition { username: name.to_string(), read_up_to: mark.min(group.last_seq) });
    }
    ctx.batch.reply(conn, request_id, Reply::ReadPositions { group_id: group.id, readers }, false);
    Ok(())
}
