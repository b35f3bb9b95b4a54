//! Direct messages: each user's inbox as the user's worker holds it. An inbox is one log of
//! stored messages with one cursor (see `cursor`); this file sends into it, pushes out of
//! it, and takes its acks and resyncs.

use super::backlog;
use super::context::{Ctx, Waiting};
use super::cursor::Cursor;
use super::message::{self, wire, wire_size, Origin, RetryKey};
use super::push::notes::{self, Reader};
use super::quota;
use super::refusal::{Handled, Refusal};
use super::retention::{self, LogRef, Retention};
use crate::protocol::{ClientMsgId, Content, Conversation, ErrorCode, Push, Reply, Seq, UserId};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, LogId, StoredMessage};
use log::error;
use std::collections::HashMap;
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
    pub cursor: Cursor,
    /// The inbox's stored, unacknowledged bytes, against the quota (see `quota`).
    pub stored_bytes: u64,
    /// Everything at or below is deleted; up to the ack, history keeps the rest.
    pub floor: Seq,
    /// What history keeps below the ack, and its bytes (see `retention`).
    pub retention: Retention,
}

impl Inboxes {
    /// The user's state, loaded from disk on first touch; None if there is no such account.
    pub fn load(&mut self, ctx: &mut Ctx, name: &str) -> Result<Option<&mut UserState>, Refusal> {
        if !self.users.contains_key(name) {
            let Some(account) = ctx.shared.store.account(name)? else {
                return Ok(None);
            };
            let uid = account.user_id;
            let log = ctx.partition.state(LogId::Inbox, uid.into())?;
            // Recorded apart from the floor since history keeps what was read (before, the
            // floor was the ack); beyond the end after a crash that lost the newest messages.
            let acked = ctx.shared.store.inbox_ack(uid, "")?.max(log.floor).min(log.last_seq);
            let cursor = Cursor { acked, session: None };
            let stored_bytes = quota::backlog_bytes(ctx.partition, uid, acked, log.last_seq)?;
            let kept = quota::backlog_bytes(ctx.partition, uid, log.floor, acked)?;
            let retention = Retention { settled: acked, oldest_ms: None, bytes: kept };
            let name: Arc<str> = name.into();
            let state = UserState {
                name: name.clone(),
                uid,
                last_seq: log.last_seq,
                cursor,
                stored_bytes,
                floor: log.floor,
                retention,
            };
            let state = self.users.entry(name).or_insert(state);
            // What expired while nobody looked (the server was down, the user away).
            if let Err(refusal) = state.settle(ctx) {
                log::debug!("history retention of {}: {}", state.name, refusal.message);
            }
        }
        Ok(self.users.get_mut(name))
    }

    /// The user's state; `UnknownUser` if there is no such account.
    pub fn known(&mut self, ctx: &mut Ctx, name: &str) -> Result<&mut UserState, Refusal> {
        self.load(ctx, name)?.ok_or_else(Refusal::unknown_user)
    }

    /// The user's state if its live session is `conn`; `NotLoggedIn` for a connection
    /// whose session a newer login took over.
    pub fn session(&mut self, ctx: &mut Ctx, user: &SessionUser, conn: ConnId) -> Result<&mut UserState, Refusal> {
        match self.load(ctx, &user.name)? {
            Some(state) if state.cursor.conn() == Some(conn) => Ok(state),
            _ => Err(Refusal::new(ErrorCode::NotLoggedIn, "this session has ended")),
        }
    }

    /// A loaded user's state (one that is not loaded has no session and no waiting cursor).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut UserState> {
        self.users.get_mut(name)
    }

    /// The users of this partition loaded now (for the retention pass).
    pub fn names(&self) -> Vec<Arc<str>> {
        self.users.keys().cloned().collect()
    }

    /// The users of this partition online now.
    pub fn online(&self) -> Vec<Arc<str>> {
        self.users.values().filter(|state| state.cursor.session.is_some()).map(|state| state.name.clone()).collect()
    }
}

impl UserState {
    /// A transient message: pushed if the user is online, stored nowhere.
    pub fn send_transient(&self, ctx: &mut Ctx, conn: ConnId, request_id: u32, from: &SessionUser, content: Content) {
        let target = self.cursor.conn();
        ctx.received(from, 1);
        if let Some(target) = target {
            ctx.batch.push(target, Push::Transient { from: from.name.to_string(), content }, false);
            ctx.delivered(1);
        }
        ctx.batch.reply(conn, request_id, Reply::TransientSent { delivered: target.is_some() }, false);
    }

    /// A user's direct message: stored in this inbox (within its quota), the receipt
    /// released with the batch's commit, pushed if the user's session is caught up.
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
        self.append(ctx, stored, Origin { reply_to: Some((conn, request_id)), retry_key: Some(key) })?;
        Ok(())
    }

    /// Stores `stored` as the inbox's next message (its receipt queued first) and pushes it
    /// if the session is caught up; returns whether it was pushed now.
    pub fn append(&mut self, ctx: &mut Ctx, stored: StoredMessage, origin: Origin) -> Result<bool, Refusal> {
        let seq = self.last_seq.next();
        let size = wire_size(&stored);
        // History makes way for it within the quota (only what was read goes).
        retention::make_room(ctx, self.log(), &mut self.floor, &mut self.retention, self.stored_bytes, size as u64)?;
        message::store(ctx, LogId::Inbox, self.uid.into(), seq, &stored, origin)?;
        self.last_seq = seq;
        self.stored_bytes += size as u64;
        if super::device_frames::withheld(&self.cursor, stored.device_only()) {
            super::device_frames::pass_over(&mut self.cursor, seq);
            return Ok(false);
        }
        let Some((target, prev)) = self.cursor.take_live(seq, size, ctx.window()) else {
            if self.cursor.session.is_none() {
                let reader = Reader { name: self.name.clone(), uid: self.uid, unread: seq - self.cursor.acked };
                notes::direct(ctx, reader, &stored);
            }
            ctx.wait_if_starved(&self.cursor, self.last_seq, Waiting::Inbox(self.name.clone()));
            return Ok(false);
        };
        let message = wire(ctx.shared, Conversation::Inbox, seq, prev, stored);
        ctx.batch.push(target, Push::Message(message), true);
        ctx.delivered(1);
        Ok(true)
    }

    /// The session acknowledges everything up to `up_to`: the quota frees what it held
    /// (history keeps it, within the quota), and the floor rises as far as retention lets
    /// it. The caller then wakes what waits for the session's budget.
    pub fn ack(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, up_to: Seq) -> Handled {
        if up_to > self.last_seq {
            return Err(Refusal::beyond("ack", up_to, self.last_seq));
        }
        let before = self.cursor.acked;
        // Recorded first: a refused ack (a full disk) leaves the cursor where it was.
        if up_to > before {
            let sent_upto = self.cursor.session.as_ref().map_or(before, |s| s.sent_upto);
            // Counted before the floor rises: beyond it nothing can be read.
            let pushed = self.cursor.pushed_bytes_upto(up_to);
            let freed = match up_to == self.last_seq {
                // Acknowledged to its end, the inbox holds nothing unacknowledged: exact,
                // whatever the estimates missed (a message passed over unpushed, one
                // erased while in flight).
                true => self.stored_bytes,
                false => quota::acked_bytes(ctx.partition, self.uid, before, up_to, sent_upto, pushed),
            };
            let history = !ctx.config().history.is_zero();
            match history {
                // The floor stays below while history keeps what was read: the position
                // needs a record of its own.
                true => ctx.partition.inbox_ack(self.uid, "", up_to)?,
                // The floor is the record, as before history existed.
                false => retention::settle(ctx, self.log(), &mut self.floor, &mut self.retention, up_to)?,
            }
            self.stored_bytes = self.stored_bytes.saturating_sub(freed);
            self.cursor.ack(up_to);
            if history {
                self.retention.bytes += freed;
                // The ack is recorded: a floor the disk refuses now rises at a later ack or
                // pass.
                if let Err(refusal) = self.settle(ctx) {
                    log::debug!("history retention of {}: {}", self.name, refusal.message);
                }
            }
        }
        let reply = Reply::Acked { conversation: Conversation::Inbox, up_to: self.cursor.acked };
        ctx.batch.reply(conn, request_id, reply, true);
        Ok(())
    }

    /// Raises the floor as far as retention lets it: to what every reader acknowledged,
    /// within the history window.
    pub fn settle(&mut self, ctx: &mut Ctx) -> Handled {
        let log = self.log();
        retention::settle(ctx, log, &mut self.floor, &mut self.retention, self.cursor.acked)
    }

    /// This inbox's log.
    pub fn log(&self) -> LogRef {
        LogRef { id: LogId::Inbox, owner: self.uid.into() }
    }

    pub fn resync(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, after: Seq) -> Handled {
        if after > self.last_seq {
            return Err(Refusal::beyond("resync", after, self.last_seq));
        }
        let after = self.cursor.resync(after);
        let reply = Reply::Resynced { conversation: Conversation::Inbox, after, last_seq: self.last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump(ctx)
    }

    /// Pushes stored messages to the user's session while its window and budget allow;
    /// waits for the budget if that is what stops it.
    pub fn pump(&mut self, ctx: &mut Ctx) -> Handled {
        self.fill(ctx)?;
        ctx.wait_if_starved(&self.cursor, self.last_seq, Waiting::Inbox(self.name.clone()));
        Ok(())
    }

    fn fill(&mut self, ctx: &mut Ctx) -> Handled {
        let log = backlog::Log { id: LogId::Inbox, owner: self.uid.into(), last_seq: self.last_seq };
        let to_wire = |ctx: &Ctx, seq, prev, stored| wire(ctx.shared, Conversation::Inbox, seq, prev, stored);
        if backlog::fill(ctx, &log, &mut self.cursor, |_| false, to_wire)? {
            // Every inbox message is kept until acknowledged (history trims only what was
            // read): the log claims more than the disk holds.
            error!("inbox of {} ends before its last sequence {}", self.name, self.last_seq);
        }
        Ok(())
    }
}
