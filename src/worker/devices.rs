//! A user's devices (protocol.md "Devices"): the rule for device ids, which devices the
//! server knows (not expired, at most `MAX_KNOWN_DEVICES`), forgetting one, a reader's
//! cursors in a conversation, and the requests about devices: `ListDevices`,
//! `RemoveDevice`, `LogoutEverywhere`. A login from a device is in `accounts`, its cursors
//! in `device_cursors`.
//!
//! The user's worker owns the device records: it writes one at every login and session end
//! (through the commit log, with the tokens), and forgets a device (its record, token and
//! positions) when it is removed, expires or is the oldest beyond the bound; then it tells
//! every worker, so the groups and support conversations they hold drop its cursors. The
//! owners of conversations read the records when they load one, and expire devices by
//! themselves, from when they last saw each device.

use super::commands::WorkerCmd;
use super::context::Ctx;
use super::device_cursors::{expired, is_legacy, DeviceCursors, LEGACY};
use super::inbox::{Inboxes, UserState};
use super::presence::connection_event;
use super::push::settings;
use super::refusal::{Handled, Refusal};
use crate::clock::now_ms;
use crate::cluster::wire::RemoteCmd;
use crate::protocol::{ChatState, DeviceInfo, ErrorCode, Push, Reply, Seq, UserId};
use crate::route::{ConnId, LoopMsg, SessionUser};
use crate::store::{DeviceChange, DeviceRecord, LogId, LogOwner};
use std::collections::HashMap;
use std::sync::Arc;

/// Longest device id: a client's own name for the device (a UUID is 36).
pub const MAX_DEVICE_ID: usize = 64;

/// A device id (of a session or a push device): 1 to 64 printable ASCII characters, no
/// spaces, so it shows as it is in a listing and a log line.
pub fn check_device_id(device: &str) -> Handled {
    let ok = !device.is_empty() && device.len() <= MAX_DEVICE_ID && device.bytes().all(|b| b.is_ascii_graphic());
    match ok {
        true => Ok(()),
        false => Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("a device id is 1 to {MAX_DEVICE_ID} printable ASCII characters without spaces"),
        )),
    }
}

/// The state of each chat a device is told at login (`DeviceLoggedIn.chats`, what
/// `ReadState` answers) and whether the user sends read receipts. The login is already
/// made when this is read: a store failure here leaves the list empty (the client asks
/// `ReadState` again) rather than failing it.
pub fn login_chats(ctx: &mut Ctx, user: &SessionUser) -> (Vec<ChatState>, bool) {
    let chats = super::unread::chats(ctx, &user.name, user.uid).unwrap_or_else(|refusal| {
        log::warn!("read state of {} at login: {}", user.name, refusal.message);
        Vec::new()
    });
    let receipts = super::read_state::receipts_enabled(ctx, user.uid).unwrap_or_else(|refusal| {
        log::warn!("read receipts setting of {} at login: {}", user.name, refusal.message);
        true
    });
    (chats, receipts)
}

/// The user's device records: those the server still knows, and the ids of those not seen
/// for `--device-expiry` (to forget).
pub type Known = (Vec<(String, DeviceRecord)>, Vec<String>);

pub fn known(ctx: &Ctx, uid: UserId) -> Result<Known, Refusal> {
    let now = now_ms();
    let expiry = ctx.config().device_expiry;
    let (mut known, mut gone) = (Vec::new(), Vec::new());
    for (device, record) in ctx.shared.store.devices(uid)? {
        match expired(record.last_seen_ms, now, expiry) {
            true => gone.push(device),
            false => known.push((device, record)),
        }
    }
    Ok((known, gone))
}

/// A reader's cursors in a group or support conversation as it loads: one per known device
/// of the user, or the implicit legacy one for a user without device records (none for a
/// user whose every device expired: it holds nothing until it logs in again). The legacy
/// device is at `legacy` (its position in the conversation's own tree); a named device at
/// its recorded position, or (new here) where the user's furthest device here is (without
/// any, the legacy position), and then returned to be recorded there, as the others move.
/// `within` brings a position into the log's range.
pub fn reader_cursors(
    ctx: &Ctx,
    uid: UserId,
    legacy: Seq,
    within: impl Fn(Seq) -> Seq,
    recorded: &HashMap<(UserId, String), Seq>,
) -> Result<(DeviceCursors, Vec<Arc<str>>), Refusal> {
    let (known, expired) = known(ctx, uid)?;
    if known.is_empty() && expired.is_empty() {
        return Ok((DeviceCursors::implicit_legacy(within(legacy)), Vec::new()));
    }
    let mut cursors = DeviceCursors::default();
    let mut unrecorded = Vec::new();
    for (device, record) in known {
        let device: Arc<str> = device.into();
        let acked = match recorded.get(&(uid, device.to_string())) {
            _ if is_legacy(&device) => legacy,
            Some(acked) => *acked,
            None => {
                unrecorded.push((device, record.last_seen_ms));
                continue;
            }
        };
        cursors.insert(device, within(acked), record.last_seen_ms);
    }
    // As a device new to the user starts in the inbox: what another device read is history.
    let start = cursors.furthest_acked().unwrap_or_else(|| within(legacy));
    for (device, last_seen_ms) in &unrecorded {
        cursors.insert(device.clone(), start, *last_seen_ms);
    }
    Ok((cursors, unrecorded.into_iter().map(|(device, _)| device).collect()))
}

/// The named devices' recorded positions in a log, by user and device.
pub fn recorded(ctx: &Ctx, log: LogId, owner: LogOwner) -> Result<HashMap<(UserId, String), Seq>, Refusal> {
    let acks = ctx.shared.store.device_acks(log, owner)?;
    Ok(acks.into_iter().map(|(uid, device, acked)| ((uid, device), acked)).collect())
}

/// Forgets one of the user's devices: its record, token and positions go (durable with the
/// batch), its push device too, the inbox's floor rises to what the others hold, and every
/// worker drops its cursors.
pub fn forget(ctx: &mut Ctx, state: &mut UserState, device: &str) -> Handled {
    let (groups, conversations) = ctx.shared.store.reader_logs(&state.name)?;
    let uid = state.uid;
    ctx.partition.device(DeviceChange::Forget { uid, device: device.to_string(), groups, conversations })?;
    if !is_legacy(device) {
        settings::forget_devices(ctx, uid, |d| d == device)?;
    }
    state.devices.remove(device);
    state.settle(ctx)?;
    let lowest = state.lowest();
    if state.devices.iter().next().is_none() && lowest > state.floor {
        // With no device record left, the next load takes the user to have the implicit
        // legacy device at its recorded position (unrecorded: the floor, holding what was
        // read for ever). It is recorded where every device had read.
        let change =
            DeviceChange::Ack { log: LogId::Inbox, owner: uid.into(), uid, device: LEGACY.into(), acked: lowest };
        ctx.partition.device(change)?;
    }
    for worker in 0..ctx.workers {
        let cmd = WorkerCmd::ForgetDevice { username: state.name.clone(), device: device.into() };
        ctx.batch.send_to_worker(worker, cmd);
    }
    // In a cluster, the groups of other nodes hold the device's positions too.
    for node in ctx.shared.bus.iter().flat_map(|bus| bus.membership().others()) {
        let cmd = RemoteCmd::ForgetDevice { username: state.name.to_string(), device: device.to_string() };
        ctx.batch.send_to_node(node, cmd, None, true);
    }
    log::debug!("{} forgot the device {device:?}", state.name);
    Ok(())
}

/// Makes room for one more known device: beyond the bound, the offline device seen least
/// recently is forgotten. Refused if every known device is online.
pub fn make_room(ctx: &mut Ctx, state: &mut UserState, device: &str) -> Handled {
    let max = crate::config::MAX_KNOWN_DEVICES;
    if state.devices.is_implicit() || state.devices.get(device).is_some() || state.devices.len() < max {
        return Ok(());
    }
    let oldest = state
        .devices
        .entries()
        .filter(|(_, entry)| entry.cursor.session.is_none())
        .min_by_key(|(_, entry)| entry.last_seen_ms)
        .map(|(device, _)| device.clone());
    match oldest {
        Some(oldest) => forget(ctx, state, &oldest),
        None => Err(Refusal::new(ErrorCode::LimitReached, format!("at most {max} devices; remove one first"))),
    }
}

/// `ListDevices`: the caller's devices, online or not, by id.
pub fn list(ctx: &mut Ctx, inboxes: &mut Inboxes, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    let state = inboxes.session(ctx, user, conn)?;
    let devices = state
        .devices
        .entries()
        .map(|(device, entry)| DeviceInfo {
            device: device.to_string(),
            online: entry.cursor.session.is_some(),
            last_seen_ms: entry.last_seen_ms,
            this: **device == *user.device,
        })
        .collect();
    ctx.batch.reply(conn, request_id, Reply::Devices { devices }, false);
    Ok(())
}

/// `RemoveDevice`: another device of the caller's (a lost phone) is forgotten; its session,
/// if it has one, is told and closed.
pub fn remove(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    device: &str,
) -> Handled {
    let state = inboxes.session(ctx, user, conn)?;
    if *device == *user.device {
        return Err(Refusal::new(ErrorCode::BadRequest, "that is the device asking; log it out instead"));
    }
    let Some(cursor) = state.devices.get(device) else {
        return Err(Refusal::new(ErrorCode::UnknownDevice, format!("no device named {device}")));
    };
    if let Some(target) = cursor.conn() {
        let reason = "this device was removed";
        ctx.batch.push(target, Push::Kicked { reason: reason.into() }, false);
        ctx.batch.control(LoopMsg::Close { conn: target, reason: "device removed" });
        state.devices.detach(target, now_ms());
        ctx.shared.directory.remove(&state.name, target);
        connection_event(ctx, &state.name, device, false, "device removed");
    }
    forget(ctx, state, device)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// `LogoutEverywhere`: every token of the user is revoked and every push device forgotten;
/// every other session is told and closed. The caller's own ends as a logout's does: the
/// other workers are told to forget it, and the caller ends it here.
pub fn logout_everywhere(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
) -> Handled {
    let state = inboxes.session(ctx, user, conn)?;
    ctx.partition.revoke_tokens(user.uid)?;
    let others: Vec<ConnId> = state.devices.conns().into_iter().filter(|c| *c != conn).collect();
    settings::remove_all_devices(ctx, user)?;
    let reason = "logged out everywhere";
    for other in others {
        ctx.batch.push(other, Push::Kicked { reason: reason.into() }, false);
        ctx.batch.control(LoopMsg::Close { conn: other, reason });
    }
    for worker in (0..ctx.workers).filter(|w| *w != ctx.index) {
        ctx.batch.send_to_worker(worker, WorkerCmd::LoggedOut { conn, user: user.clone() });
    }
    ctx.batch.control(LoopMsg::Unbind { conn });
    ctx.batch.reply(conn, request_id, Reply::LoggedOut, true);
    Ok(())
}

/// The push devices a logout of `device` forgets: its own; for the legacy device (a client
/// that knows nothing of devices, as before them) every one not named like another device
/// of the user that the server knows.
pub fn push_devices_of(state: &UserState, device: &str) -> impl Fn(&str) -> bool {
    let device = device.to_string();
    let others: Vec<String> = match is_legacy(&device) {
        true => state.devices.iter().map(|(d, _)| d.to_string()).filter(|d| !is_legacy(d)).collect(),
        false => Vec::new(),
    };
    move |push_device: &str| match is_legacy(&device) {
        true => !others.iter().any(|o| o == push_device),
        false => push_device == device,
    }
}

/// The legacy device's id as a shared string.
pub fn legacy() -> Arc<str> {
    Arc::from(LEGACY)
}

/// The user's sessions but `except` that are told of changes to the user's own view
/// (`Push::HistoryCleared`, a frame only named devices decode): its other named devices'.
pub fn other_named_sessions(ctx: &Ctx, user: &SessionUser, except: ConnId) -> Vec<ConnId> {
    let sessions = ctx.shared.directory.sessions_of(&user.name).into_iter();
    sessions.filter(|s| s.conn != except && !is_legacy(&s.device)).map(|s| s.conn).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_short_printable_ascii() {
        assert!(check_device_id("phone-1").is_ok());
        assert!(check_device_id(&"x".repeat(MAX_DEVICE_ID)).is_ok());
        for bad in ["", "my phone", "tél", "a\nb", &"x".repeat(MAX_DEVICE_ID + 1)] {
            assert!(check_device_id(bad).is_err(), "{bad:?}");
        }
    }
}
