//! Deleting a message for everyone, and clearing a chat's history for oneself (protocol.md
//! "History").
//!
//! A deletion erases the message where it is stored: its record is rewritten
//! (`Partition::rewrite`: through the commit log, so it is durable with the batch and
//! replayed after a crash) as an event, with empty `System` content and
//! `event: MessageDeleted { message_id: its own id, by }`, keeping its sequence, id, sender
//! and time. Then a `MessageDeleted { message_id, by }` event is appended to the
//! conversation, so every reader, online or not, learns it in order.
//!
//! A direct message lives in its recipient's inbox. The request comes to the caller's
//! worker first: if the caller's own inbox holds the message as one it received, it is
//! not the caller's to delete (`Forbidden`); otherwise the request goes on to the
//! recipient's worker, which erases it, appends the event, replies, and then has the
//! sender's worker erase the sender's copy and append the event to the sender's inbox too
//! (for the sender's other devices). A crash between the two loses that last part only:
//! the deletion itself, which the reply confirmed, stands.
//!
//! Clearing is the caller's alone: one mark per user and chat (`Store::put_cleared`), written
//! to sled and checkpointed before the reply, which never moves back. History pages show
//! nothing at or below it, and the user's other connections are told.

use super::commands::WorkerCmd;
use super::context::Ctx;
use super::cursor::READ_CHUNK;
use super::device_cursors::is_legacy;
use super::groups::GroupState;
use super::inbox::{Inboxes, UserState};
use super::message::{self, system_content, wire_size, Origin};
use super::refusal::{Handled, Refusal};
use super::retention::LogRef;
use super::support::ShopState;
use crate::clock::now_ms;
use crate::protocol::{Chat, ErrorCode, GroupEvent, MessageId, Push, Reply, SenderKind, Seq, SupportId};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, LogId, StoredMessage};

/// Messages looked at, at most, to find the one to delete (newest first): a deletion is of
/// something recent, and the search is bounded by time as well (see [`find`]).
pub const FIND_LIMIT: u64 = 16_384;

/// `DeleteMessage` of a direct message in the chat with `peer`, on the caller's worker: a
/// message the caller received is refused here; the rest is the recipient's worker's.
#[allow(clippy::too_many_arguments)]
pub fn asked(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    conn: ConnId,
    request_id: u32,
    user: SessionUser,
    peer: String,
    message_id: MessageId,
) -> Handled {
    if *user.name == *peer {
        // A note to self: the caller's own inbox holds it.
        return direct(ctx, inboxes, conn, request_id, &user, &peer, message_id);
    }
    let inbox = inboxes.known(ctx, &user.name)?;
    let received = |m: &StoredMessage| m.from == peer && !matches!(m.addressee, Addressee::CopyTo(_));
    if find(ctx, inbox.log(), inbox.floor, inbox.last_seq, message_id, received).is_ok() {
        return Err(not_the_sender());
    }
    ctx.tell(WorkerCmd::DeleteDirect { conn, request_id, user, peer, message_id }, false);
    Ok(())
}

/// `DeleteMessage` of a direct message, on the worker of its recipient `peer`.
#[allow(clippy::too_many_arguments)]
pub fn direct(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    peer: &str,
    message_id: MessageId,
) -> Handled {
    let inbox = inboxes.known(ctx, peer)?;
    let not_a_copy = |m: &StoredMessage| !matches!(m.addressee, Addressee::CopyTo(_));
    let (seq, stored) = find(ctx, inbox.log(), inbox.floor, inbox.last_seq, message_id, not_a_copy)?;
    if deletable(ctx, &stored, &user.name)? {
        erase_in_inbox(ctx, inbox, seq, &stored, &user.name)?;
        let event = message::event(ctx.shared, deleted(message_id, &user.name), &user.name)?;
        inbox.append(ctx, event, Origin::default())?;
        if *user.name != *peer {
            let cmd = WorkerCmd::SenderDeleted { sender: user.name.clone(), peer: peer.into(), message_id };
            ctx.tell(cmd, false);
        }
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// The sender's side of a direct deletion, on the sender's worker: its copy erased (if it
/// has one) and the event appended to its own inbox, in the chat with `peer`.
pub fn sender_side(ctx: &mut Ctx, inboxes: &mut Inboxes, sender: &str, peer: &str, message_id: MessageId) -> Handled {
    let Some(inbox) = inboxes.load(ctx, sender)? else { return Ok(()) };
    // A sender with no named device keeps no copies, and is told of nothing its clients
    // could not decode: its inbox stays what it was before devices (see `append_copy`).
    if inbox.devices.iter().all(|(device, _)| is_legacy(device)) {
        return Ok(());
    }
    let copy = |m: &StoredMessage| matches!(&m.addressee, Addressee::CopyTo(to) if to == peer);
    match find(ctx, inbox.log(), inbox.floor, inbox.last_seq, message_id, copy) {
        Ok((seq, stored)) if stored.event.is_none() => erase_in_inbox(ctx, inbox, seq, &stored, sender)?,
        // Erased already, or no copy kept (sent from a session that names no device).
        Ok(_) | Err(_) => {}
    }
    let mut event = message::event(ctx.shared, deleted(message_id, sender), sender)?;
    event.addressee = Addressee::CopyTo(peer.to_string());
    inbox.append(ctx, event, Origin::default())?;
    Ok(())
}

/// `DeleteMessage` in a group, on the group's worker.
pub fn group(
    ctx: &mut Ctx,
    group: &mut GroupState,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    message_id: MessageId,
) -> Handled {
    group.role_of(&user.name)?;
    let (seq, stored) = find(ctx, group.log(), group.floor, group.last_seq, message_id, |_| true)?;
    if deletable(ctx, &stored, &user.name)? {
        ctx.partition.rewrite(LogId::Group, group.id.into(), seq, &erased(&stored, &user.name))?;
        group.append_event(ctx, deleted(message_id, &user.name), &user.name)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// `DeleteMessage` in a support conversation, on its shop's worker: the customer deletes
/// its own messages, a staff member its own.
#[allow(clippy::too_many_arguments)]
pub fn support(
    ctx: &mut Ctx,
    shop: &mut ShopState,
    id: SupportId,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    message_id: MessageId,
) -> Handled {
    let staff = shop.staff.contains_key(&*user.name);
    let conversation = shop.conversation_of_reader(id, &user.name)?;
    let (seq, stored) = find(ctx, conversation.log(), conversation.floor, conversation.last_seq, message_id, |_| true)?;
    if deletable(ctx, &stored, &user.name)? {
        ctx.partition.rewrite(LogId::Support, id.into(), seq, &erased(&stored, &user.name))?;
        let mut event = message::event(ctx.shared, deleted(message_id, &user.name), &user.name)?;
        if staff {
            // Shown to the customer as the shop's, like the staff member's messages.
            event.sender = SenderKind::Staff;
        }
        shop.append(ctx, id, event, Origin::default(), user)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// Finds message `message_id` in a log, looking back from the newest: at most
/// `FIND_LIMIT` messages, and no further back than twice the deletion window (anything
/// older is far too old to delete). `BadRequest` when it is not found.
fn find(
    ctx: &Ctx,
    log: LogRef,
    floor: Seq,
    last_seq: Seq,
    message_id: MessageId,
    is_it: impl Fn(&StoredMessage) -> bool,
) -> Result<(Seq, StoredMessage), Refusal> {
    let window_ms = ctx.config().delete_window.as_millis() as u64;
    let oldest_ms = now_ms().saturating_sub(window_ms.saturating_mul(2));
    let (mut below, mut looked) = (last_seq.next(), 0);
    while looked < FIND_LIMIT && below > floor.next() {
        let take = (below - floor - 1).min(READ_CHUNK).min(FIND_LIMIT - looked);
        let chunk = ctx.partition.read_back(log.id, log.owner, below, take as usize)?;
        let Some(&(lowest, _)) = chunk.last() else { break };
        looked += chunk.len() as u64;
        for (seq, stored) in chunk {
            if stored.message_id == message_id && is_it(&stored) {
                return Ok((seq, stored));
            }
            if stored.timestamp_ms < oldest_ms {
                return Err(no_such_message());
            }
        }
        below = lowest;
    }
    Err(no_such_message())
}

fn no_such_message() -> Refusal {
    Refusal::new(ErrorCode::BadRequest, "no such message in this chat (or far too old to delete)")
}

/// Whether `caller` may delete `stored` now: false when it is deleted already (a retry);
/// `Forbidden` for someone else's message, an event, or a message past the window.
fn deletable(ctx: &Ctx, stored: &StoredMessage, caller: &str) -> Result<bool, Refusal> {
    match &stored.event {
        Some(GroupEvent::MessageDeleted { message_id, .. }) if *message_id == stored.message_id => return Ok(false),
        Some(_) => return Err(Refusal::new(ErrorCode::Forbidden, "events are not deleted")),
        None => {}
    }
    if stored.from != caller || stored.sender == SenderKind::Service {
        return Err(not_the_sender());
    }
    let window = ctx.config().delete_window;
    if now_ms() > stored.timestamp_ms.saturating_add(window.as_millis() as u64) {
        let minutes = window.as_secs() / 60;
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("sent more than {minutes} minutes ago: too late to delete it for everyone"),
        ));
    }
    // Checked before anything is rewritten: the erasure and its event go together.
    if ctx.partition.is_full() {
        return Err(Refusal::storage_full());
    }
    Ok(true)
}

fn not_the_sender() -> Refusal {
    Refusal::new(ErrorCode::Forbidden, "only its sender may delete a message")
}

/// The event that says `by` deleted `message_id`.
fn deleted(message_id: MessageId, by: &str) -> GroupEvent {
    GroupEvent::MessageDeleted { message_id, by: by.to_string() }
}

/// What a deleted message is stored as: an event in its place, its content gone.
pub fn erased(stored: &StoredMessage, by: &str) -> StoredMessage {
    StoredMessage { content: system_content(), event: Some(deleted(stored.message_id, by)), ..stored.clone() }
}

/// Erases inbox message `seq`, and counts it smaller against the quota. A message pushed
/// and not yet acknowledged is left counted at its pushed size: the ack frees that size
/// (then counted as history, larger than what is stored, which only trims history a little
/// early and is set right once history is trimmed up to the ack).
fn erase_in_inbox(ctx: &mut Ctx, inbox: &mut UserState, seq: Seq, stored: &StoredMessage, by: &str) -> Handled {
    let erased = erased(stored, by);
    ctx.partition.rewrite(LogId::Inbox, inbox.uid.into(), seq, &erased)?;
    let smaller = wire_size(stored).saturating_sub(wire_size(&erased)) as u64;
    if seq <= inbox.retention.settled {
        inbox.retention.bytes = inbox.retention.bytes.saturating_sub(smaller);
    } else if !in_flight(inbox, seq) {
        inbox.stored_bytes = inbox.stored_bytes.saturating_sub(smaller);
    }
    Ok(())
}

/// Whether `seq` was pushed to a session of the user and not yet acknowledged.
fn in_flight(inbox: &UserState, seq: Seq) -> bool {
    let before = Seq(seq.get().saturating_sub(1));
    inbox.devices.iter().any(|(_, cursor)| cursor.pushed_within(before, seq).next().is_some())
}

/// `ClearHistory`: the caller's mark in `chat` rises to `up_to` (never back), durable before
/// the reply; its other connections are told.
pub fn clear(
    ctx: &mut Ctx,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    chat: Chat,
    up_to: Seq,
    last_seq: Seq,
) -> Handled {
    if up_to > last_seq {
        return Err(Refusal::beyond("clearing up to", up_to, last_seq));
    }
    if up_to > ctx.shared.store.cleared_up_to(user.uid, &chat)? {
        ctx.partition.sled().put_cleared(user.uid, &chat, up_to)?;
        for other in super::devices::other_named_sessions(ctx, user, conn) {
            ctx.batch.push(other, Push::HistoryCleared { chat: chat.clone(), up_to }, true);
        }
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// `ClearHistory` of a direct chat, on the caller's worker: the chat is a user's or a
/// service's (one per account or service, so the marks stay bounded).
pub fn clear_direct(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    chat: Chat,
    up_to: Seq,
) -> Handled {
    let store = &ctx.shared.store;
    let exists = match &chat {
        Chat::User(peer) => store.account(peer)?.is_some(),
        Chat::Service(name) => store.service(name)?.is_some(),
        _ => return Err(Refusal::new(ErrorCode::BadRequest, "not a direct chat")),
    };
    if !exists {
        return Err(Refusal::unknown_user());
    }
    let last_seq = inboxes.known(ctx, &user.name)?.last_seq;
    clear(ctx, conn, request_id, user, chat, up_to, last_seq)
}
