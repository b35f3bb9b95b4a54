//! Direct messages: each user's inbox as the user's worker holds it. An inbox is one log of
//! stored messages with a cursor per known device of its user (see `device_cursors`); this
//! file sends into it, pushes out of it, and takes its acks and resyncs. The log's floor is
//! at most the lowest position of the user's devices, lower while history keeps what they
//! read (see `retention`).
//!
//! A user's inbox also holds its sent copies (`Addressee::CopyTo`): what the user sent
//! others, stored after the recipient's worker stored the message, so that every device
//! shows both sides of a chat. Named devices are pushed them (`Push::SentCopy`), but the
//! device that sent the message when it is caught up; legacy devices never. A user known
//! only by its legacy device has none.

use super::backlog;
use super::commands::WorkerCmd;
use super::context::{Ctx, Waiting};
use super::cursor::Cursor;
use super::device_cursors::{is_legacy, DeviceCursors, LEGACY};
use super::devices;
use super::message::{self, wire, wire_size, Origin, RetryKey};
use super::push::notes::{self, Reader};
use super::quota;
use super::refusal::{Handled, Refusal};
use super::retention::{self, LogRef, Retention};
use super::Shared;
use crate::protocol::{ClientMsgId, Content, Conversation, ErrorCode, Push, Reply, Seq, UserId};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, DeviceChange, LogId, StoredMessage};
use log::{debug, error};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The users of this worker's partition that were touched since start.
#[derive(Default)]
pub struct Inboxes {
    users: HashMap<Arc<str>, UserState>,
}

#[derive(Debug)]
pub struct UserState {
    pub name: Arc<str>,
    pub uid: UserId,
    pub last_seq: Seq,
    /// Everything at or below is deleted.
    pub floor: Seq,
    /// What history keeps below the lowest position, and its bytes (see `retention`).
    pub retention: Retention,
    /// A cursor per known device of the user.
    pub devices: DeviceCursors,
    /// The inbox's bytes above the lowest position (unacknowledged by some device),
    /// against the quota (see `quota`).
    pub stored_bytes: u64,
}

impl Inboxes {
    /// The user's state, loaded from disk on first touch; None if there is no such account.
    /// Devices not seen for `--device-expiry` are forgotten as it loads.
    pub fn load(&mut self, ctx: &mut Ctx, name: &str) -> Result<Option<&mut UserState>, Refusal> {
        if !self.users.contains_key(name) {
            let Some(account) = ctx.shared.store.account(name)? else {
                return Ok(None);
            };
            let uid = account.user_id;
            let log = ctx.partition.state(LogId::Inbox, uid.into())?;
            let (known, expired) = devices::known(ctx, uid)?;
            // Without any device record, the legacy device as before devices; with records
            // that all expired, no device until the next login.
            let devices = match known.is_empty() && expired.is_empty() {
                true => {
                    // With history the legacy device's position is recorded apart from the floor.
                    let recorded = ctx.shared.store.device_ack(LogId::Inbox, uid.into(), uid, LEGACY)?;
                    DeviceCursors::implicit_legacy(
                        recorded.unwrap_or(log.floor).clamp(log.floor, log.last_seq.max(log.floor)),
                    )
                }
                false => {
                    let mut devices = DeviceCursors::default();
                    // The expired devices too, until they are forgotten below: what they
                    // read is what every device read, history once they go.
                    let expired_seen = expired.iter().map(|device| (device.clone(), 0));
                    let seen = known.into_iter().map(|(device, record)| (device, record.last_seen_ms));
                    for (device, last_seen_ms) in seen.chain(expired_seen) {
                        // Unrecorded, or recorded below the floor: at the floor (see store/devices.rs).
                        let recorded = ctx.shared.store.device_ack(LogId::Inbox, uid.into(), uid, &device)?;
                        let acked = recorded.unwrap_or(log.floor).clamp(log.floor, log.last_seq.max(log.floor));
                        devices.insert(device.into(), acked, last_seen_ms);
                    }
                    devices
                }
            };
            let name: Arc<str> = name.into();
            let mut state = UserState {
                name: name.clone(),
                uid,
                last_seq: log.last_seq,
                floor: log.floor,
                retention: Retention::default(),
                devices,
                stored_bytes: 0,
            };
            let lowest = state.lowest();
            state.stored_bytes = quota::backlog_bytes(ctx.partition, uid, lowest, state.last_seq)?;
            let kept = quota::backlog_bytes(ctx.partition, uid, state.floor, lowest)?;
            state.retention = Retention { settled: lowest, oldest_ms: None, bytes: kept };
            for device in expired {
                devices::forget(ctx, &mut state, &device)?;
            }
            // What expired while nobody looked (the server was down, the user away).
            if let Err(refusal) = state.settle(ctx) {
                debug!("history retention of {}: {}", state.name, refusal.message);
            }
            self.users.insert(name, state);
        }
        Ok(self.users.get_mut(name))
    }

    /// The user's state; `UnknownUser` if there is no such account.
    pub fn known(&mut self, ctx: &mut Ctx, name: &str) -> Result<&mut UserState, Refusal> {
        self.load(ctx, name)?.ok_or_else(Refusal::unknown_user)
    }

    /// The user's state if `conn` is one of its live sessions; `NotLoggedIn` for a
    /// connection whose session a newer login took over.
    pub fn session(&mut self, ctx: &mut Ctx, user: &SessionUser, conn: ConnId) -> Result<&mut UserState, Refusal> {
        match self.load(ctx, &user.name)? {
            Some(state) if state.devices.device_of(conn).is_some() => Ok(state),
            _ => Err(Refusal::new(ErrorCode::NotLoggedIn, "this session has ended")),
        }
    }

    /// A loaded user's state (one that is not loaded has no session and no waiting cursor).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut UserState> {
        self.users.get_mut(name)
    }

    /// The users of this partition online now (on any device).
    pub fn online(&self) -> Vec<Arc<str>> {
        self.users.values().filter(|state| state.devices.online()).map(|state| state.name.clone()).collect()
    }

    /// The users of this partition loaded now (for the retention pass).
    pub fn names(&self) -> Vec<Arc<str>> {
        self.users.keys().cloned().collect()
    }

    /// Forgets the devices of loaded users not seen for `--device-expiry`.
    pub fn expire_devices(&mut self, ctx: &mut Ctx, now_ms: u64) -> Handled {
        let expiry = ctx.config().device_expiry;
        for state in self.users.values_mut() {
            for device in state.devices.expired(now_ms, expiry) {
                devices::forget(ctx, state, &device)?;
            }
        }
        Ok(())
    }
}

impl UserState {
    /// A transient message: pushed to every session of the user, stored nowhere.
    pub fn send_transient(&self, ctx: &mut Ctx, conn: ConnId, request_id: u32, from: &SessionUser, content: Content) {
        let targets = self.devices.conns();
        ctx.received(from, 1);
        for target in &targets {
            ctx.batch.push(*target, Push::Transient { from: from.name.to_string(), content: content.clone() }, false);
        }
        ctx.delivered(targets.len() as u64);
        ctx.batch.reply(conn, request_id, Reply::TransientSent { delivered: !targets.is_empty() }, false);
    }

    /// A user's direct message: stored in this inbox (within its quota), the receipt
    /// released with the batch's commit, pushed to the user's sessions that are caught up;
    /// once it is durable, the sender's worker stores its sent copy.
    pub fn send_direct(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        client_msg_id: ClientMsgId,
        content: Content,
    ) -> Handled {
        let key = RetryKey { sender: from.uid, client_msg_id };
        if let Some(receipt) = message::earlier(ctx, key, self.uid.into())? {
            // The original may sit in this very batch, not yet flushed: same rule as a receipt.
            ctx.batch.reply(conn, request_id, receipt, true);
            return Ok(());
        }
        ctx.received(from, 1);
        let stored = message::compose(ctx.shared, from, content, Addressee::Readers)?;
        quota::check(ctx.config(), self.stored_bytes, wire_size(&stored))?;
        // A note to self is no chat with another: it needs no copy.
        let copy = (!from.service && *from.name != *self.name).then(|| stored.clone());
        self.append(ctx, stored, Origin { reply_to: Some((conn, request_id)), retry_key: Some(key) })?;
        if let Some(mut stored) = copy {
            stored.addressee = Addressee::CopyTo(self.name.to_string());
            let cmd = WorkerCmd::SentCopy { sender: from.name.clone(), device: from.device.clone(), conn, stored };
            ctx.tell(cmd, true);
        }
        Ok(())
    }

    /// A sent copy of what this user sent from `device` on `conn`, stored after the message
    /// itself: counted in the user's quota, but dropped (never refused) when it does not
    /// fit. The sending session, if caught up, counts it as sent. A user with no named
    /// device gets none: its inbox stays exactly what it was before devices, as its
    /// clients, which never see copies, expect (its acks, its `last_seq`).
    pub fn append_copy(&mut self, ctx: &mut Ctx, device: &str, conn: ConnId, stored: StoredMessage) {
        if self.devices.iter().all(|(device, _)| is_legacy(device)) {
            return;
        }
        if let Err(refusal) = quota::check(ctx.config(), self.stored_bytes, wire_size(&stored)) {
            debug!(
                "sent copy of message {} dropped from {}'s inbox: {}",
                stored.message_id, self.name, refusal.message
            );
            return;
        }
        let sender = self.devices.get(device).filter(|c| c.conn() == Some(conn)).map(|_| conn);
        if let Err(refusal) = self.append_from(ctx, stored, Origin::default(), sender) {
            debug!("sent copy dropped from {}'s inbox: {}", self.name, refusal.message);
        }
    }

    /// Stores `stored` as the inbox's next message (its receipt queued first) and pushes it
    /// to every session that is caught up; returns whether some session got it now.
    pub fn append(&mut self, ctx: &mut Ctx, stored: StoredMessage, origin: Origin) -> Result<bool, Refusal> {
        self.append_from(ctx, stored, origin, None)
    }

    /// [`UserState::append`], where the session on `sender` (a sent copy's sending session)
    /// passes over the message if it is caught up, as a device is not sent what it sent.
    fn append_from(
        &mut self,
        ctx: &mut Ctx,
        stored: StoredMessage,
        origin: Origin,
        sender: Option<ConnId>,
    ) -> Result<bool, Refusal> {
        let seq = self.last_seq.next();
        let size = wire_size(&stored);
        // History makes way for it within the quota (only what every device read goes).
        retention::make_room(ctx, self.log(), &mut self.floor, &mut self.retention, self.stored_bytes, size as u64)?;
        message::store(ctx, LogId::Inbox, self.uid.into(), seq, &stored, origin)?;
        self.last_seq = seq;
        self.stored_bytes += size as u64;
        if !self.devices.online() {
            let unread = seq - self.devices.lowest_acked().unwrap_or(self.floor);
            notes::direct(ctx, Reader { name: self.name.clone(), uid: self.uid, unread }, &stored);
        }
        let window = ctx.window();
        let mut pushed = false;
        let mut passed = Vec::new();
        let mut waiting = Vec::new();
        for (device, cursor) in self.devices.iter_mut() {
            let own = sender.is_some() && cursor.conn() == sender;
            if own || skipped(device, &stored) {
                if let Some(session) = cursor.session.as_mut().filter(|s| s.sent_upto.next() == seq) {
                    session.sent_upto = seq;
                    passed.push(device.clone());
                }
                continue;
            }
            match cursor.take_live(seq, size, window) {
                Some((target, prev)) => {
                    ctx.batch.push(target, inbox_push(ctx.shared, seq, prev, stored.clone()), true);
                    ctx.delivered(1);
                    pushed = true;
                }
                None => waiting.push(device.clone()),
            }
        }
        for device in waiting {
            if let Some(cursor) = self.devices.get(&device) {
                ctx.wait_if_starved(cursor, seq, Waiting::Inbox(self.name.clone(), device));
            }
        }
        for device in passed {
            self.settle_passed(ctx, &device)?;
        }
        Ok(pushed)
    }

    /// The session on `conn` acknowledges everything up to `up_to`: its device's position
    /// moves, and the floor with it if it held the floor. The caller then wakes what waits
    /// for the session's budget.
    pub fn ack(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, up_to: Seq) -> Handled {
        if up_to > self.last_seq {
            return Err(Refusal::beyond("ack", up_to, self.last_seq));
        }
        let device = self.devices.device_of(conn).ok_or_else(ended)?;
        self.advance(ctx, &device, up_to, Cursor::ack)?;
        let acked = self.devices.get(&device).map_or(up_to, |c| c.acked);
        let reply = Reply::Acked { conversation: Conversation::Inbox, up_to: acked };
        ctx.batch.reply(conn, request_id, reply, true);
        // What the session passed over after what it acknowledged (its sent copies, for a
        // legacy device) holds nothing either.
        self.settle_passed(ctx, &device)
    }

    /// Moves `device`'s position to `up_to` (with `moved`: a client's ack, or a pass over
    /// what it is not sent), recorded first (a refused change, a full disk, leaves the
    /// cursor where it was), and settles the floor with what the devices now hold.
    fn advance(&mut self, ctx: &mut Ctx, device: &str, up_to: Seq, moved: fn(&mut Cursor, Seq) -> bool) -> Handled {
        let Some(before) = self.devices.get(device).map(|c| c.acked) else { return Ok(()) };
        if up_to <= before {
            return Ok(());
        }
        let others = self.devices.iter().filter(|(d, _)| ***d != *device).map(|(_, c)| c.acked).min();
        let lowest = others.map_or(up_to, |o| o.min(up_to));
        // Without history a position the floor rises to needs no record: unrecorded reads
        // as the floor. With history the floor stays below what was read.
        if !ctx.config().history.is_zero() || lowest < up_to {
            let uid = self.uid;
            ctx.partition.device(DeviceChange::Ack {
                log: LogId::Inbox,
                owner: uid.into(),
                uid,
                device: device.to_string(),
                acked: up_to,
            })?;
            if let Some(cursor) = self.devices.get_mut(device) {
                moved(cursor, up_to);
            }
            // The position is recorded: a floor the disk refuses now rises at a later ack
            // or pass.
            if let Err(refusal) = self.settle(ctx) {
                debug!("history retention of {}: {}", self.name, refusal.message);
            }
            return Ok(());
        }
        // The floor is this device's record: it must rise before the cursor moves.
        self.settle_at(ctx, lowest)?;
        if let Some(cursor) = self.devices.get_mut(device) {
            moved(cursor, up_to);
        }
        Ok(())
    }

    /// The lowest position of the user's devices. Without any device (all forgotten), where
    /// every device had read: what they read stays read, and goes once older than the
    /// history window (the floor would never rise again).
    pub fn lowest(&self) -> Seq {
        let settled = self.floor.max(self.retention.settled);
        self.devices.lowest_acked().map_or(settled, |lowest| lowest.max(self.floor))
    }

    /// Settles the floor with the devices' lowest position (after an ack, a device
    /// forgotten, a login, and in the retention pass).
    pub fn settle(&mut self, ctx: &mut Ctx) -> Handled {
        let lowest = self.lowest();
        self.settle_at(ctx, lowest)
    }

    /// Every device has read up to `lowest`: what it passed is no longer unacknowledged
    /// (the quota frees it; history keeps it), and the floor rises as far as retention
    /// lets it (to `lowest` itself without history).
    fn settle_at(&mut self, ctx: &mut Ctx, lowest: Seq) -> Handled {
        let before = self.floor.max(self.retention.settled);
        if lowest > before {
            let moved = match lowest >= self.last_seq {
                // Acknowledged to its end, the inbox holds nothing unacknowledged: exact,
                // whatever the estimates missed (a message passed over unpushed, one
                // erased while in flight).
                true => self.stored_bytes,
                false => {
                    let mut pushed = BTreeMap::new();
                    for (_, cursor) in self.devices.iter() {
                        pushed.extend(cursor.pushed_within(before, lowest));
                    }
                    // Counted before the floor rises: beyond it nothing can be read.
                    quota::floor_bytes(ctx.partition, self.uid, before, lowest, &pushed)
                }
            };
            self.stored_bytes = self.stored_bytes.saturating_sub(moved);
            self.retention.bytes += moved;
        }
        retention::settle(ctx, self.log(), &mut self.floor, &mut self.retention, lowest)
    }

    /// This inbox's log.
    pub fn log(&self) -> LogRef {
        LogRef { id: LogId::Inbox, owner: self.uid.into() }
    }

    /// A device whose session passed over what it is not sent, with nothing outstanding, is
    /// owed nothing up to there: its position moves over it, so that what it is never sent
    /// does not hold the floor.
    fn settle_passed(&mut self, ctx: &mut Ctx, device: &str) -> Handled {
        match self.devices.get(device).and_then(|c| c.passed_over()) {
            Some(up_to) => self.advance(ctx, device, up_to, Cursor::ack_passed),
            None => Ok(()),
        }
    }

    pub fn resync(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, after: Seq) -> Handled {
        if after > self.last_seq {
            return Err(Refusal::beyond("resync", after, self.last_seq));
        }
        let device = self.devices.device_of(conn).ok_or_else(ended)?;
        let Some(cursor) = self.devices.get_mut(&device) else { return Err(ended()) };
        let after = cursor.resync(after);
        let reply = Reply::Resynced { conversation: Conversation::Inbox, after, last_seq: self.last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump_device(ctx, &device)
    }

    /// Pushes stored messages to the device's session while its window and budget allow;
    /// waits for the budget if that is what stops it.
    pub fn pump_device(&mut self, ctx: &mut Ctx, device: &str) -> Handled {
        self.fill(ctx, device)?;
        self.settle_passed(ctx, device)?;
        if let (Some(cursor), Some(key)) = (self.devices.get(device), self.devices.key(device)) {
            ctx.wait_if_starved(cursor, self.last_seq, Waiting::Inbox(self.name.clone(), key));
        }
        Ok(())
    }

    fn fill(&mut self, ctx: &mut Ctx, device: &str) -> Handled {
        let log = backlog::Log { id: LogId::Inbox, owner: self.uid.into(), last_seq: self.last_seq };
        let Some(cursor) = self.devices.get_mut(device) else { return Ok(()) };
        let skip = |stored: &StoredMessage| skipped(device, stored);
        let to_wire = |ctx: &Ctx, seq, prev, stored| inbox_push(ctx.shared, seq, prev, stored);
        if backlog::fill(ctx, &log, cursor, skip, to_wire)? {
            // Every inbox message is kept until acknowledged (history trims only what was
            // read): the log claims more than the disk holds.
            error!("inbox of {} ends before its last sequence {}", self.name, self.last_seq);
        }
        Ok(())
    }
}

/// Whether `device` is never sent `stored`: a legacy device the frames only named devices
/// know (sent copies, deletions), live or from the backlog.
fn skipped(device: &str, stored: &StoredMessage) -> bool {
    is_legacy(device) && stored.device_only()
}

/// An inbox message as pushed: a sent copy as `SentCopy` (to whom it was sent), anything
/// else as a message.
fn inbox_push(shared: &Shared, seq: Seq, prev: Seq, stored: StoredMessage) -> Push {
    let to = match &stored.addressee {
        Addressee::CopyTo(to) => Some(to.clone()),
        Addressee::Readers | Addressee::AllBut(_) => None,
    };
    let message = wire(shared, Conversation::Inbox, seq, prev, stored);
    match to {
        Some(to) => Push::SentCopy { to, message },
        None => Push::Message(message),
    }
}

fn ended() -> Refusal {
    Refusal::new(ErrorCode::NotLoggedIn, "this session has ended")
}
