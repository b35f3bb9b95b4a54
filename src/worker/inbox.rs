//! Delivery cursors, and direct messages: a user's inbox as its worker sees it.
//!
//! A [`Cursor`] is one member's position in one conversation (an inbox, a group): what it
//! acknowledged, and while it is online how far its session has been sent. Delivery is that
//! single cursor, so catch-up after login and live messages are one stream: a new message
//! is pushed at once only if the session has been sent everything before it; otherwise it
//! waits its turn behind the backlog. At most `delivery_window` messages are outstanding
//! beyond the last ack.

use super::garbage::Log;
use super::handler::{Handled, Refusal, Worker};
use super::Shared;
use crate::metrics::Metrics;
use crate::protocol::{Content, Conversation, ErrorCode, Message, Push, Reply, SenderKind};
use crate::route::{ConnId, SessionUser};
use crate::store::{DedupEntry, LogId, StoredMessage};
use log::error;

use super::budget::SessionBudget;
use super::waiting::Waiting;
use crate::clock::now_ms;
use std::collections::VecDeque;
use std::sync::Arc;

/// Longest media URL and description accepted (protocol.md "Content").
const MAX_MEDIA_URL: usize = 2048;
const MAX_MEDIA_DESCRIPTION: usize = 1024;
/// Stored messages read from disk per step of a catch-up.
pub const READ_CHUNK: u64 = 256;

/// How much may be outstanding (pushed, not yet acknowledged) per session: a count of
/// messages, and bytes, so that a backlog of large messages cannot outgrow the
/// connection's output bound and get its owner cut off at every login.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub messages: u64,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct Session {
    pub conn: ConnId,
    /// What all of this connection's cursors may have outstanding together.
    pub budget: Arc<SessionBudget>,
    /// Everything up to here was pushed to this connection, or skipped (a member's own
    /// group messages).
    pub sent_upto: u64,
    /// The last sequence actually pushed: the next push's `prev_seq`.
    pub last_pushed: u64,
    /// Pushed and not yet acknowledged: (sequence, approximate size).
    in_flight: VecDeque<(u64, usize)>,
    in_flight_bytes: usize,
    /// The size of the last message pushed, to judge how many the next read should take.
    last_size: usize,
}

impl Session {
    /// A session whose delivery starts after `start` (the ack, or a resync point).
    pub fn new(conn: ConnId, start: u64, budget: Arc<SessionBudget>) -> Self {
        Session {
            conn,
            budget,
            sent_upto: start,
            last_pushed: start,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            last_size: 0,
        }
    }

    /// Whether another push fits in the conversation's byte window and the session's
    /// budget. One message always fits, so a single large message never stalls.
    pub fn has_room(&self, window: Window) -> bool {
        self.in_flight_bytes < window.bytes && self.budget.has_room()
    }

    /// Whether the conversation's own window has room (whatever the session's budget).
    pub fn window_open(&self, window: Window) -> bool {
        (self.in_flight.len() as u64) < window.messages && self.in_flight_bytes < window.bytes
    }

    /// How many stored messages to read for the next pushes, at most `limit`: about as
    /// many as the room left in the window and the budget holds, judged by the last
    /// message's size. Reading more would read large messages only to drop them and read
    /// them again at the next ack.
    pub fn read_hint(&self, window: Window, limit: u64) -> u64 {
        if self.last_size == 0 {
            return limit;
        }
        let room = window.bytes.saturating_sub(self.in_flight_bytes).min(self.budget.room());
        limit.min((room / self.last_size) as u64 + 1)
    }

    /// Marks `seq` (of about `bytes`) pushed; returns its `prev_seq`.
    pub fn pushed(&mut self, seq: u64, bytes: usize) -> u64 {
        self.last_size = bytes;
        self.sent_upto = seq;
        self.in_flight.push_back((seq, bytes));
        self.in_flight_bytes += bytes;
        self.budget.pushed(bytes);
        std::mem::replace(&mut self.last_pushed, seq)
    }

    fn acked(&mut self, up_to: u64) {
        while let Some(&(seq, bytes)) = self.in_flight.front() {
            if seq > up_to {
                break;
            }
            self.in_flight.pop_front();
            self.in_flight_bytes -= bytes;
            self.budget.released(bytes);
        }
        self.sent_upto = self.sent_upto.max(up_to);
        self.last_pushed = self.last_pushed.max(up_to);
    }
}

impl Drop for Session {
    /// A session that ends (closed, replaced, resynced, its member removed) gives back
    /// what it had outstanding.
    fn drop(&mut self) {
        self.budget.released(self.in_flight_bytes);
    }
}

#[derive(Debug, Default)]
pub struct Cursor {
    pub acked: u64,
    pub session: Option<Session>,
}

impl Cursor {
    /// How many messages may be pushed now, and from which sequence on (each push must
    /// still check [`Session::has_room`]).
    pub fn deliverable(&self, last_seq: u64, window: Window) -> Option<(u64, u64)> {
        let session = self.session.as_ref().filter(|s| s.has_room(window))?;
        // Only what was actually pushed counts: a member's own group messages, skipped,
        // must not hold its window shut.
        let outstanding = session.in_flight.len() as u64;
        let count = window.messages.saturating_sub(outstanding).min(last_seq.saturating_sub(session.sent_upto));
        (count > 0).then_some((session.sent_upto + 1, count))
    }

    /// If `seq`, just stored as the last message, is next in line and fits in the window,
    /// marks it pushed and returns the connection to push it to and its `prev_seq`.
    pub fn take_live(&mut self, seq: u64, bytes: usize, window: Window) -> Option<(ConnId, u64)> {
        match self.deliverable(seq, window) {
            Some((from, _)) if from == seq => {
                let session = self.session.as_mut()?;
                let prev = session.pushed(seq, bytes);
                Some((session.conn, prev))
            }
            _ => None,
        }
    }

    /// The bytes of the pushed, unacknowledged messages up to `up_to`.
    pub fn pushed_bytes_upto(&self, up_to: u64) -> usize {
        self.session
            .as_ref()
            .map_or(0, |s| s.in_flight.iter().take_while(|(seq, _)| *seq <= up_to).map(|(_, b)| b).sum())
    }

    /// Whether this cursor has messages to push and room in its own window, so that only
    /// the session's budget can be what holds them (or held them a moment ago: the caller
    /// must look again if the budget has room now).
    pub fn stalled(&self, last_seq: u64, window: Window) -> Option<(ConnId, &Arc<SessionBudget>)> {
        let session = self.session.as_ref()?;
        (session.sent_upto < last_seq && session.window_open(window)).then_some((session.conn, &session.budget))
    }

    /// Records a cumulative ack; returns whether it moved.
    pub fn ack(&mut self, up_to: u64) -> bool {
        if up_to <= self.acked {
            return false;
        }
        self.acked = up_to;
        if let Some(session) = self.session.as_mut() {
            session.acked(up_to);
        }
        true
    }
}

/// About what a stored message costs in a connection's output buffer.
pub fn wire_size(stored: &StoredMessage) -> usize {
    let media = stored.content.media.as_ref().map_or(0, |m| m.url.len() + m.description.len() + 10);
    48 + stored.from.len() + DISPLAY_NAME_ALLOWANCE + stored.content.body.len() + media
}

/// What the sender's display name adds to a pushed message: looked up at push time, so not
/// known here; most are short, and the estimate only paces delivery and counts quotas.
const DISPLAY_NAME_ALLOWANCE: usize = 32;

#[derive(Debug)]
pub struct UserState {
    pub uid: u64,
    pub last_seq: u64,
    pub cursor: Cursor,
    /// The inbox's stored, unacknowledged bytes, against the quota (see `quota`).
    pub stored_bytes: u64,
}

impl Worker {
    pub fn validate(&self, content: &Content) -> Handled {
        let max_body = self.shared.config.max_body as usize;
        if content.body.len() > max_body {
            return Err(Refusal::new(ErrorCode::InvalidContent, format!("body exceeds {max_body} bytes")));
        }
        match &content.media {
            None if content.body.is_empty() => Err(Refusal::new(ErrorCode::InvalidContent, "empty message")),
            Some(media) if media.url.len() > MAX_MEDIA_URL || media.description.len() > MAX_MEDIA_DESCRIPTION => {
                Err(Refusal::new(ErrorCode::InvalidContent, "media url or description too long"))
            }
            _ => Ok(()),
        }
    }

    /// The user's state, loaded from disk on first touch; None if there is no such account.
    pub fn user_state(&mut self, name: &str) -> Result<Option<&mut UserState>, Refusal> {
        if !self.users.contains_key(name) {
            let Some(account) = self.shared.store.account(name)? else {
                return Ok(None);
            };
            let log = self.partition.state(LogId::Inbox, account.user_id)?;
            let cursor = Cursor { acked: log.floor, session: None };
            let stored_bytes = self.backlog_bytes(account.user_id, log.floor, log.last_seq)?;
            let state = UserState { uid: account.user_id, last_seq: log.last_seq, cursor, stored_bytes };
            self.users.insert(name.into(), state);
        }
        Ok(self.users.get_mut(name))
    }

    pub fn send_transient(
        &mut self,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        to: &str,
        content: Content,
    ) -> Handled {
        let state = self.user_state(to)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))?;
        let target = state.cursor.session.as_ref().map(|s| s.conn);
        self.received(1);
        if let Some(target) = target {
            self.batch.push(target, Push::Transient { from: from.name.to_string(), content }, false);
            self.delivered(1);
        }
        self.batch.reply(conn, request_id, Reply::TransientSent { delivered: target.is_some() }, false);
        Ok(())
    }

    /// The original receipt of a retried send, if `client_msg_id` was used before.
    pub fn earlier_send(
        &mut self,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        client_msg_id: u64,
        destination: u64,
    ) -> Result<bool, Refusal> {
        if client_msg_id == 0 {
            return Err(Refusal::new(ErrorCode::BadRequest, "client_msg_id must not be 0"));
        }
        let Some(earlier) = self.dedup().get(from.uid, client_msg_id, destination) else {
            return Ok(false);
        };
        let reply = Reply::Sent {
            message_id: earlier.message_id,
            seq: earlier.seq,
            timestamp_ms: earlier.timestamp_ms,
            duplicate: true,
        };
        // The original may sit in this very batch, not yet flushed: same rule as a receipt.
        self.batch.reply(conn, request_id, reply, true);
        Ok(true)
    }

    /// Stores a message as `seq` of a log and records its receipt; the caller delivers it.
    pub fn store_message(
        &mut self,
        conversation: Conversation,
        owner: u64,
        seq: u64,
        message: &StoredMessage,
        receipt: Option<(ConnId, u32, u64, u64)>,
    ) -> Handled {
        if self.partition.is_full() {
            // The disk is full or refused the last commit: take nothing new until it
            // accepts again (acks and logins still do: they free space or need little).
            return Err(Refusal::new(ErrorCode::StorageFull, "the server's disk is full; retry later"));
        }
        let log = match conversation {
            Conversation::Inbox => LogId::Inbox,
            Conversation::Group(_) => LogId::Group,
        };
        // Durable through this batch's commit-log record; in its owner's log after migration.
        self.partition.stage(log, owner, seq, message);
        self.shared.metrics.stored_delta(1);
        if let Some((conn, request_id, sender_uid, client_msg_id)) = receipt {
            let entry = DedupEntry {
                recipient: owner,
                message_id: message.message_id,
                seq,
                timestamp_ms: message.timestamp_ms,
            };
            self.remember(sender_uid, client_msg_id, entry);
            let reply = Reply::Sent {
                message_id: message.message_id,
                seq,
                timestamp_ms: message.timestamp_ms,
                duplicate: false,
            };
            self.batch.reply(conn, request_id, reply, true);
        }
        Ok(())
    }

    pub fn send_direct(
        &mut self,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        to: &str,
        client_msg_id: u64,
        content: Content,
    ) -> Handled {
        let uid = self.user_state(to)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))?.uid;
        if self.earlier_send(conn, request_id, from, client_msg_id, uid)? {
            return Ok(());
        }
        let stored = self.user_message(from, content)?;
        let size = wire_size(&stored);
        self.check_quota(to, size)?;
        let state = self.users.get(to).expect("user_state loaded the user");
        let (uid, seq) = (state.uid, state.last_seq + 1);
        self.store_message(Conversation::Inbox, uid, seq, &stored, Some((conn, request_id, from.uid, client_msg_id)))?;

        let window = self.window();
        let state = self.users.get_mut(to).expect("user_state loaded the user");
        state.last_seq = seq;
        state.stored_bytes += size as u64;
        if let Some((target, prev)) = state.cursor.take_live(seq, wire_size(&stored), window) {
            let display_name = sender_display_name(&self.shared, &stored);
            self.batch.push(target, Push::Message(wire(Conversation::Inbox, seq, prev, stored, display_name)), true);
            self.delivered(1);
        } else if let Some((name, _)) = self.users.get_key_value(to) {
            self.wait_if_starved(Waiting::Inbox(name.clone()));
        }
        Ok(())
    }

    pub fn ack_inbox(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, up_to: u64) -> Handled {
        self.own_session(conn, user)?;
        let state = self.users.get_mut(&user.name).expect("own_session loaded the user");
        if up_to > state.last_seq {
            return Err(beyond("ack", up_to, state.last_seq));
        }
        let (uid, before) = (state.uid, state.cursor.acked);
        // Recorded first: a refused ack (a full disk) leaves the cursor where it was.
        if up_to > before {
            let sent_upto = state.cursor.session.as_ref().map_or(before, |s| s.sent_upto);
            // Counted before the floor rises: beyond it nothing can be read.
            let pushed = state.cursor.pushed_bytes_upto(up_to);
            let freed = self.acked_bytes(uid, before, up_to, sent_upto, pushed);
            self.partition.raise_floor(LogId::Inbox, uid, up_to)?;
            let state = self.users.get_mut(&user.name).expect("own_session loaded the user");
            state.stored_bytes = state.stored_bytes.saturating_sub(freed);
            state.cursor.ack(up_to);
            self.garbage.push(Log::Inbox, uid, before + 1, up_to);
            self.shared.metrics.stored_delta(-((up_to - before) as i64));
        }
        let acked = self.users.get(&user.name).map_or(up_to, |s| s.cursor.acked);
        let reply = Reply::Acked { conversation: Conversation::Inbox, up_to: acked };
        self.batch.reply(conn, request_id, reply, true);
        self.pump_after_ack(conn, Waiting::Inbox(user.name.clone()))
    }

    pub fn resync_inbox(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, after: u64) -> Handled {
        self.own_session(conn, user)?;
        let state = self.users.get_mut(&user.name).expect("own_session loaded the user");
        let after = resync(&mut state.cursor, state.last_seq, after)?;
        let reply = Reply::Resynced { conversation: Conversation::Inbox, after, last_seq: state.last_seq };
        self.batch.reply(conn, request_id, reply, false);
        self.pump_inbox(&user.name)
    }

    /// Pushes stored messages to the user's session while its window and budget allow;
    /// waits for the budget if that is what stops it.
    pub fn pump_inbox(&mut self, name: &str) -> Handled {
        self.fill_inbox(name)?;
        if let Some((name, _)) = self.users.get_key_value(name) {
            self.wait_if_starved(Waiting::Inbox(name.clone()));
        }
        Ok(())
    }

    fn fill_inbox(&mut self, name: &str) -> Handled {
        let window = self.window();
        loop {
            let Some(state) = self.users.get_mut(name) else { return Ok(()) };
            let Some((from, count)) = state.cursor.deliverable(state.last_seq, window) else { return Ok(()) };
            let session = state.cursor.session.as_ref().expect("deliverable implies a session");
            let take = session.read_hint(window, count.min(READ_CHUNK));
            let chunk = self.partition.read(LogId::Inbox, state.uid, from - 1, take as usize)?;
            let session = state.cursor.session.as_mut().expect("deliverable implies a session");
            if chunk.is_empty() {
                // The log claims more than disk holds; never spin on it.
                error!("inbox of {name} ends before its last sequence {}", state.last_seq);
                session.sent_upto = state.last_seq;
                return Ok(());
            }
            let target = session.conn;
            for (seq, stored) in chunk {
                if !session.has_room(window) {
                    return Ok(());
                }
                let prev = session.pushed(seq, wire_size(&stored));
                let display_name = sender_display_name(&self.shared, &stored);
                self.batch.push(
                    target,
                    Push::Message(wire(Conversation::Inbox, seq, prev, stored, display_name)),
                    true,
                );
                Metrics::add(&self.shared.metrics.delivered, 1);
            }
        }
    }

    /// Records a stored send for idempotent retries (durable with this batch's commit).
    pub fn remember(&mut self, sender: u64, client_msg_id: u64, entry: DedupEntry) {
        let record = (sender, client_msg_id, entry);
        self.dedup().insert(record, entry.timestamp_ms);
        self.partition.remember(record);
    }

    /// A new message from a user, counted as received.
    pub fn user_message(&self, from: &SessionUser, content: Content) -> Result<StoredMessage, Refusal> {
        self.received(1);
        Ok(StoredMessage {
            message_id: self.shared.store.next_id()?,
            from: from.name.to_string(),
            sender: SenderKind::User,
            timestamp_ms: now_ms(),
            content,
            event: None,
            except: None,
        })
    }

    pub fn received(&self, n: u64) {
        Metrics::add(&self.shared.metrics.received, n);
    }

    pub fn delivered(&self, n: u64) {
        Metrics::add(&self.shared.metrics.delivered, n);
    }

    pub fn window(&self) -> Window {
        let config = &self.shared.config;
        Window { messages: u64::from(config.delivery_window), bytes: config.delivery_window_bytes }
    }
}

/// Moves a cursor back (or forward) for a resync; returns where delivery restarts.
pub fn resync(cursor: &mut Cursor, last_seq: u64, after: u64) -> Result<u64, Refusal> {
    if after > last_seq {
        return Err(beyond("resync", after, last_seq));
    }
    // Acknowledged messages may be gone; resync can only go back to the ack.
    let after = after.max(cursor.acked);
    if let Some(session) = cursor.session.as_mut() {
        *session = Session::new(session.conn, after, session.budget.clone());
    }
    Ok(after)
}

pub fn beyond(what: &str, seq: u64, last_seq: u64) -> Refusal {
    Refusal::new(ErrorCode::BadRequest, format!("{what} {seq} is beyond the last sequence {last_seq}"))
}

/// The display name a pushed message carries: the user sender's current one, or the
/// service's name (services have no other).
pub fn sender_display_name(shared: &Shared, stored: &StoredMessage) -> String {
    match stored.sender {
        SenderKind::Service => stored.from.clone(),
        SenderKind::User => shared.directory.display_name(&stored.from, &shared.store),
    }
}

pub fn wire(
    conversation: Conversation,
    seq: u64,
    prev_seq: u64,
    stored: StoredMessage,
    display_name: String,
) -> Message {
    Message {
        conversation,
        seq,
        prev_seq,
        message_id: stored.message_id,
        from: stored.from,
        sender: stored.sender,
        timestamp_ms: stored.timestamp_ms,
        content: stored.content,
        event: stored.event,
        display_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(acked: u64, sent_upto: Option<u64>) -> Cursor {
        let budget = Arc::new(SessionBudget::new(1 << 30));
        Cursor { acked, session: sent_upto.map(|sent_upto| Session::new(ConnId(1), sent_upto, budget)) }
    }

    fn w(messages: u64) -> Window {
        Window { messages, bytes: 1 << 20 }
    }

    #[test]
    fn offline_users_get_nothing() {
        assert_eq!(cursor(0, None).deliverable(5, w(10)), None);
    }

    /// A session that has pushed `pushed` messages after `acked`.
    fn pushed(acked: u64, pushed: u64) -> Cursor {
        let mut c = cursor(acked, Some(acked));
        for seq in acked + 1..=acked + pushed {
            c.session.as_mut().unwrap().pushed(seq, 10);
        }
        c
    }

    #[test]
    fn backlog_is_paced_by_the_window() {
        assert_eq!(cursor(0, Some(0)).deliverable(5000, w(100)), Some((1, 100)));
        assert_eq!(pushed(0, 100).deliverable(5000, w(100)), None);
        let mut c = pushed(0, 100);
        assert!(c.ack(60));
        assert_eq!(c.deliverable(5000, w(100)), Some((101, 60)));
    }

    #[test]
    fn large_messages_are_paced_by_bytes() {
        let window = Window { messages: 100, bytes: 1000 };
        let mut c = cursor(0, Some(0));
        assert!(c.take_live(1, 600, window).is_some());
        assert!(c.take_live(2, 600, window).is_some(), "room left before it: it may go");
        assert!(c.deliverable(3, window).is_none(), "1200 bytes in flight");
        assert!(c.ack(1));
        assert_eq!(c.deliverable(3, window), Some((3, 1)));
    }

    #[test]
    fn skipped_messages_do_not_fill_the_window() {
        let mut c = cursor(0, Some(0));
        // Seqs 1..=10 are the member's own: skipped, never pushed.
        c.session.as_mut().unwrap().sent_upto = 10;
        assert_eq!(c.deliverable(11, w(5)), Some((11, 1)));
        assert!(c.take_live(11, 10, w(5)).is_some());
    }

    #[test]
    fn live_message_waits_behind_backlog() {
        // Session sent up to 3 of 9 stored: message 10 must not overtake 4..=9.
        assert_eq!(cursor(0, Some(3)).take_live(10, 10, w(100)), None);
        let mut c = cursor(0, Some(9));
        assert_eq!(c.take_live(10, 10, w(100)), Some((ConnId(1), 9)));
        assert_eq!(c.session.unwrap().sent_upto, 10);
    }

    #[test]
    fn conversations_of_one_session_share_its_budget() {
        let budget = Arc::new(SessionBudget::new(1000));
        let window = Window { messages: 100, bytes: 1000 };
        let mut a = Cursor { acked: 0, session: Some(Session::new(ConnId(1), 0, budget.clone())) };
        let mut b = Cursor { acked: 0, session: Some(Session::new(ConnId(1), 0, budget.clone())) };
        assert!(a.take_live(1, 600, window).is_some());
        assert!(b.take_live(1, 600, window).is_some(), "room left in the budget before it");
        assert!(a.take_live(2, 10, window).is_none(), "1200 bytes outstanding across both");
        let (_, budget_of_a) = a.stalled(2, window).expect("its own window has room: it waits for the budget");
        assert!(!budget_of_a.has_room());
        assert!(b.ack(1));
        assert!(a.stalled(2, window).is_some_and(|(_, budget)| budget.has_room()), "room again: go on");
        assert_eq!(a.deliverable(2, window), Some((2, 1)));
        drop(a);
        assert!(budget.has_room(), "an ended session gives its bytes back");
    }

    #[test]
    fn reads_take_about_what_the_room_left_holds() {
        let window = Window { messages: 1000, bytes: 100_000 };
        let mut c = cursor(0, Some(0));
        let session = c.session.as_mut().unwrap();
        assert_eq!(session.read_hint(window, 256), 256, "nothing pushed yet: no size to go by");
        session.pushed(1, 30_000);
        assert_eq!(session.read_hint(window, 256), 3, "70,000 left, 30,000 each: two fit, one may pass");
        session.pushed(2, 100);
        assert_eq!(session.read_hint(window, 256), 256, "small messages: the limit");
    }

    #[test]
    fn acks_only_move_forward() {
        let mut c = cursor(5, Some(5));
        assert!(!c.ack(3));
        assert!(c.ack(8));
        assert_eq!((c.acked, c.session.unwrap().sent_upto), (8, 8));
    }
}
