//! Delivery cursors: one reader's position in one conversation (an inbox, a group).
//!
//! A [`Cursor`] holds what its reader acknowledged and, while the reader is online, its
//! [`Session`]: how far that connection has been sent and what it has outstanding.
//! Delivery is that single cursor, so catch-up after login and live messages are one
//! stream: a new message is pushed at once only if the session has been sent everything
//! before it; otherwise it waits its turn behind the backlog. At most a [`Window`] of
//! messages and bytes is outstanding beyond the last ack, and all of a connection's
//! cursors share its [`SessionBudget`].
//!
//! Pure state: no I/O, no locks beyond the shared budget's atomics.

use super::budget::SessionBudget;
use crate::protocol::Seq;
use crate::route::ConnId;
use std::collections::VecDeque;
use std::sync::Arc;

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
    pub sent_upto: Seq,
    /// The last sequence actually pushed: the next push's `prev_seq`.
    pub last_pushed: Seq,
    /// Pushed and not yet acknowledged: (sequence, approximate size).
    in_flight: VecDeque<(Seq, usize)>,
    in_flight_bytes: usize,
    /// The size of the last message pushed, to judge how many the next read should take.
    last_size: usize,
}

impl Session {
    /// A session whose delivery starts after `start` (the ack, or a resync point).
    pub fn new(conn: ConnId, start: Seq, budget: Arc<SessionBudget>) -> Self {
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
    pub fn pushed(&mut self, seq: Seq, bytes: usize) -> Seq {
        self.last_size = bytes;
        self.sent_upto = seq;
        self.in_flight.push_back((seq, bytes));
        self.in_flight_bytes += bytes;
        self.budget.pushed(bytes);
        std::mem::replace(&mut self.last_pushed, seq)
    }

    fn acked(&mut self, up_to: Seq) {
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
    pub acked: Seq,
    pub session: Option<Session>,
}

impl Cursor {
    /// How many messages may be pushed now, and from which sequence on (each push must
    /// still check [`Session::has_room`]).
    pub fn deliverable(&self, last_seq: Seq, window: Window) -> Option<(Seq, u64)> {
        let session = self.session.as_ref().filter(|s| s.has_room(window))?;
        // Only what was actually pushed counts: a member's own group messages, skipped,
        // must not hold its window shut.
        let outstanding = session.in_flight.len() as u64;
        let count = window.messages.saturating_sub(outstanding).min(last_seq.saturating_sub(session.sent_upto));
        (count > 0).then_some((session.sent_upto.next(), count))
    }

    /// If `seq`, just stored as the last message, is next in line and fits in the window,
    /// marks it pushed and returns the connection to push it to and its `prev_seq`.
    pub fn take_live(&mut self, seq: Seq, bytes: usize, window: Window) -> Option<(ConnId, Seq)> {
        match self.deliverable(seq, window) {
            Some((from, _)) if from == seq => {
                let session = self.session.as_mut()?;
                let prev = session.pushed(seq, bytes);
                Some((session.conn, prev))
            }
            _ => None,
        }
    }

    /// The pushed, unacknowledged messages after `after` up to `up_to`, with their sizes.
    pub fn pushed_within(&self, after: Seq, up_to: Seq) -> impl Iterator<Item = (Seq, usize)> + '_ {
        let in_flight = self.session.as_ref().map(|s| &s.in_flight).into_iter().flatten();
        in_flight.copied().filter(move |(seq, _)| *seq > after && *seq <= up_to)
    }

    /// Where the session has passed over everything after the ack without pushing any of
    /// it (messages it is not sent: a legacy device's sent copies, a device's own), with
    /// nothing outstanding: the reader is owed nothing up to there, as if it had acked.
    pub fn passed_over(&self) -> Option<Seq> {
        let session = self.session.as_ref()?;
        (session.in_flight.is_empty() && session.sent_upto > self.acked).then_some(session.sent_upto)
    }

    /// Whether this cursor has messages to push and room in its own window, so that only
    /// the session's budget can be what holds them (or held them a moment ago: the caller
    /// must look again if the budget has room now).
    pub fn stalled(&self, last_seq: Seq, window: Window) -> Option<(ConnId, &Arc<SessionBudget>)> {
        let session = self.session.as_ref()?;
        (session.sent_upto < last_seq && session.window_open(window)).then_some((session.conn, &session.budget))
    }

    /// Restarts delivery after `after` (a resync), but never before the ack: what was
    /// acknowledged may be gone. Returns where delivery restarts.
    pub fn resync(&mut self, after: Seq) -> Seq {
        let after = after.max(self.acked);
        if let Some(session) = self.session.as_mut() {
            *session = Session::new(session.conn, after, session.budget.clone());
        }
        after
    }

    /// The connection of the live session, if any.
    pub fn conn(&self) -> Option<ConnId> {
        self.session.as_ref().map(|s| s.conn)
    }

    /// Moves the position over what the session passed over with nothing outstanding (see
    /// [`Cursor::passed_over`]). Unlike a client's ack, the next push's `prev_seq` stays the
    /// last one pushed: the client was never sent these.
    pub fn ack_passed(&mut self, up_to: Seq) -> bool {
        if up_to <= self.acked || self.session.as_ref().is_some_and(|s| s.sent_upto < up_to) {
            return false;
        }
        self.acked = up_to;
        true
    }

    /// Records a cumulative ack; returns whether it moved.
    pub fn ack(&mut self, up_to: Seq) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(acked: u64, sent_upto: Option<u64>) -> Cursor {
        let budget = Arc::new(SessionBudget::new(1 << 30));
        let session = sent_upto.map(|sent_upto| Session::new(ConnId(1), Seq(sent_upto), budget));
        Cursor { acked: Seq(acked), session }
    }

    fn w(messages: u64) -> Window {
        Window { messages, bytes: 1 << 20 }
    }

    #[test]
    fn offline_users_get_nothing() {
        assert_eq!(cursor(0, None).deliverable(Seq(5), w(10)), None);
    }

    /// A session that has pushed `pushed` messages after `acked`.
    fn pushed(acked: u64, pushed: u64) -> Cursor {
        let mut c = cursor(acked, Some(acked));
        for seq in acked + 1..=acked + pushed {
            c.session.as_mut().unwrap().pushed(Seq(seq), 10);
        }
        c
    }

    #[test]
    fn backlog_is_paced_by_the_window() {
        assert_eq!(cursor(0, Some(0)).deliverable(Seq(5000), w(100)), Some((Seq(1), 100)));
        assert_eq!(pushed(0, 100).deliverable(Seq(5000), w(100)), None);
        let mut c = pushed(0, 100);
        assert!(c.ack(Seq(60)));
        assert_eq!(c.deliverable(Seq(5000), w(100)), Some((Seq(101), 60)));
    }

    #[test]
    fn large_messages_are_paced_by_bytes() {
        let window = Window { messages: 100, bytes: 1000 };
        let mut c = cursor(0, Some(0));
        assert!(c.take_live(Seq(1), 600, window).is_some());
        assert!(c.take_live(Seq(2), 600, window).is_some(), "room left before it: it may go");
        assert!(c.deliverable(Seq(3), window).is_none(), "1200 bytes in flight");
        assert!(c.ack(Seq(1)));
        assert_eq!(c.deliverable(Seq(3), window), Some((Seq(3), 1)));
    }

    #[test]
    fn skipped_messages_do_not_fill_the_window() {
        let mut c = cursor(0, Some(0));
        // Seqs 1..=10 are the member's own: skipped, never pushed.
        c.session.as_mut().unwrap().sent_upto = Seq(10);
        assert_eq!(c.deliverable(Seq(11), w(5)), Some((Seq(11), 1)));
        assert!(c.take_live(Seq(11), 10, w(5)).is_some());
    }

    #[test]
    fn live_message_waits_behind_backlog() {
        // Session sent up to 3 of 9 stored: message 10 must not overtake 4..=9.
        assert_eq!(cursor(0, Some(3)).take_live(Seq(10), 10, w(100)), None);
        let mut c = cursor(0, Some(9));
        assert_eq!(c.take_live(Seq(10), 10, w(100)), Some((ConnId(1), Seq(9))));
        assert_eq!(c.session.unwrap().sent_upto, Seq(10));
    }

    #[test]
    fn conversations_of_one_session_share_its_budget() {
        let budget = Arc::new(SessionBudget::new(1000));
        let window = Window { messages: 100, bytes: 1000 };
        let mut a = Cursor { acked: Seq::ZERO, session: Some(Session::new(ConnId(1), Seq::ZERO, budget.clone())) };
        let mut b = Cursor { acked: Seq::ZERO, session: Some(Session::new(ConnId(1), Seq::ZERO, budget.clone())) };
        assert!(a.take_live(Seq(1), 600, window).is_some());
        assert!(b.take_live(Seq(1), 600, window).is_some(), "room left in the budget before it");
        assert!(a.take_live(Seq(2), 10, window).is_none(), "1200 bytes outstanding across both");
        let (_, budget_of_a) = a.stalled(Seq(2), window).expect("its own window has room: it waits for the budget");
        assert!(!budget_of_a.has_room());
        assert!(b.ack(Seq(1)));
        assert!(a.stalled(Seq(2), window).is_some_and(|(_, budget)| budget.has_room()), "room again: go on");
        assert_eq!(a.deliverable(Seq(2), window), Some((Seq(2), 1)));
        drop(a);
        assert!(budget.has_room(), "an ended session gives its bytes back");
    }

    #[test]
    fn reads_take_about_what_the_room_left_holds() {
        let window = Window { messages: 1000, bytes: 100_000 };
        let mut c = cursor(0, Some(0));
        let session = c.session.as_mut().unwrap();
        assert_eq!(session.read_hint(window, 256), 256, "nothing pushed yet: no size to go by");
        session.pushed(Seq(1), 30_000);
        assert_eq!(session.read_hint(window, 256), 3, "70,000 left, 30,000 each: two fit, one may pass");
        session.pushed(Seq(2), 100);
        assert_eq!(session.read_hint(window, 256), 256, "small messages: the limit");
    }

    #[test]
    fn resync_goes_back_no_further_than_the_ack() {
        let mut c = pushed(5, 3);
        assert_eq!(c.resync(Seq(2)), Seq(5), "acknowledged messages may be gone");
        assert_eq!(c.deliverable(Seq(8), w(10)), Some((Seq(6), 3)), "the in-flight ones go again");
        assert_eq!(c.resync(Seq(7)), Seq(7));
        assert_eq!(c.deliverable(Seq(8), w(10)), Some((Seq(8), 1)));
    }

    #[test]
    fn a_session_that_passed_over_messages_with_nothing_outstanding_owes_nothing() {
        let mut c = cursor(3, Some(3));
        assert_eq!(c.passed_over(), None);
        c.session.as_mut().unwrap().sent_upto = Seq(4);
        assert_eq!(c.passed_over(), Some(Seq(4)));
        assert!(c.take_live(Seq(5), 10, w(10)).is_some());
        assert_eq!(c.passed_over(), None, "5 is outstanding");
        assert_eq!(c.pushed_within(Seq(3), Seq(9)).collect::<Vec<_>>(), [(Seq(5), 10)]);
        assert_eq!(c.pushed_within(Seq(5), Seq(9)).count(), 0);
        let mut c = cursor(3, Some(3));
        c.session.as_mut().unwrap().sent_upto = Seq(4);
        assert!(c.ack_passed(Seq(4)));
        assert_eq!(c.take_live(Seq(5), 10, w(10)), Some((ConnId(1), Seq(3))), "the client was last pushed 3");
    }

    #[test]
    fn acks_only_move_forward() {
        let mut c = cursor(5, Some(5));
        assert!(!c.ack(Seq(3)));
        assert!(c.ack(Seq(8)));
        assert_eq!((c.acked, c.session.unwrap().sent_upto), (Seq(8), Seq(8)));
    }
}
