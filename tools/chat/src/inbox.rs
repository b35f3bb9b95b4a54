//! Where the client stands in one conversation (the user's inbox, or a group): what it has
//! shown, what it has acked, and whether a pushed message is new, a redelivery, or evidence
//! of a gap.
//!
//! The server redelivers everything not acked at each login, and an ack can be lost with
//! the connection that carried it, so the same sequence number may arrive twice. Showing
//! it twice would look like a second message; a cursor that survives reconnects (kept per
//! username for the life of the process) prevents that.
//!
//! In a group the member's own messages are never pushed back, so its sequence numbers
//! skip them; the server's `prev_seq` says what it pushed last, so such a skip is not a
//! gap. The receipts of our own messages tell where they sit, and the cursor steps over
//! them so they are acked too (they count towards the server's delivery window, and
//! towards the unread count of `/groups`, until acked).

use confab_proto::protocol::{Conversation, Seq};
use std::collections::BTreeSet;

/// What to do with a pushed stored message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Show,
    /// Already shown in this process: drop it (the next ack covers it anyway).
    Duplicate,
    /// Something before it is missing: drop it and ask for everything after `after`.
    Resync {
        after: Seq,
    },
    /// Missing messages were already asked for; this one will come again.
    AwaitResync,
}

#[derive(Debug, Default, Clone)]
pub struct InboxCursor {
    /// Highest sequence shown.
    shown: Seq,
    /// Highest sequence acked (sent, not necessarily confirmed yet).
    acked: Seq,
    resync_pending: bool,
    /// Accept whatever sequence comes first as the start (no login told us the position).
    first_sets_position: bool,
    /// Sequences of our own group messages above `shown`, not yet stepped over.
    own: BTreeSet<Seq>,
}

impl InboxCursor {
    /// A conversation whose position no login reported: the first message seen sets it.
    pub fn unknown(conversation: Conversation) -> Self {
        InboxCursor { first_sets_position: conversation != Conversation::Inbox, ..InboxCursor::default() }
    }

    /// A login told us where the server stands.
    pub fn logged_in(&mut self, acked: Seq, last_seq: Seq) {
        if last_seq < self.shown {
            // The inbox holds fewer messages than we have shown: a different server or a
            // wiped one. Our numbers mean nothing there.
            self.shown = acked;
        }
        self.shown = self.shown.max(acked);
        self.acked = acked;
        self.resync_pending = false;
        self.first_sets_position = false;
    }

    /// Judges a pushed message by its `seq` and the server's `prev_seq` (the sequence
    /// pushed before it, or where delivery started): anything between what we showed and
    /// `prev_seq` never reached us.
    pub fn receive(&mut self, seq: Seq, prev_seq: Seq) -> Verdict {
        if std::mem::take(&mut self.first_sets_position) {
            self.shown = prev_seq.min(Seq(seq.get().saturating_sub(1)));
            self.acked = self.shown;
        }
        if seq <= self.shown {
            Verdict::Duplicate
        } else if prev_seq <= self.shown {
            self.shown = seq;
            self.step_over_own();
            Verdict::Show
        } else if self.resync_pending {
            Verdict::AwaitResync
        } else {
            self.resync_pending = true;
            Verdict::Resync { after: self.shown }
        }
    }

    /// The receipt of our own message `seq` in this (group) conversation: counts as shown
    /// once everything before it has been.
    pub fn own(&mut self, seq: Seq) {
        if seq > self.shown {
            self.own.insert(seq);
            if !self.first_sets_position {
                self.step_over_own();
            }
        }
    }

    fn step_over_own(&mut self) {
        self.own = self.own.split_off(&self.shown.next());
        while self.own.first() == Some(&self.shown.next()) {
            self.own.pop_first();
            self.shown = self.shown.next();
        }
    }

    /// The highest sequence shown (where a manual resync starts).
    pub fn shown(&self) -> Seq {
        self.shown
    }

    /// Shown but not yet acked.
    pub fn unacked(&self) -> u64 {
        self.shown.saturating_sub(self.acked)
    }

    /// The resync was answered: the missing messages follow, starting after `after`. The
    /// server goes back no further than its ack position, so anything at or below `after`
    /// is settled (acked, perhaps by another client of ours) and will not come.
    pub fn resynced(&mut self, after: Seq) {
        self.resync_pending = false;
        self.first_sets_position = false;
        if after > self.shown {
            self.shown = after;
            self.step_over_own();
        }
        self.acked = self.acked.max(after);
    }

    /// The resync was refused: a later gap may ask again.
    pub fn resync_failed(&mut self) {
        self.resync_pending = false;
    }

    /// The cumulative ack to send now, if what was shown has moved past the last ack.
    pub fn ack_due(&mut self) -> Option<Seq> {
        (self.shown > self.acked).then(|| {
            self.acked = self.shown;
            self.shown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::protocol::GroupId;

    #[test]
    fn shows_in_order_and_acks_cumulatively() {
        let mut cursor = InboxCursor::default();
        cursor.logged_in(Seq::ZERO, Seq(3));
        assert_eq!(cursor.ack_due(), None);
        assert_eq!(cursor.receive(Seq(1), Seq::ZERO), Verdict::Show);
        assert_eq!(cursor.receive(Seq(2), Seq(1)), Verdict::Show);
        assert_eq!(cursor.unacked(), 2);
        assert_eq!(cursor.ack_due(), Some(Seq(2)));
        assert_eq!(cursor.unacked(), 0);
        assert_eq!(cursor.ack_due(), None);
        assert_eq!(cursor.receive(Seq(3), Seq(2)), Verdict::Show);
        assert_eq!(cursor.ack_due(), Some(Seq(3)));
    }

    #[test]
    fn redelivery_after_a_lost_ack_is_not_shown_twice_but_acked() {
        let mut cursor = InboxCursor::default();
        cursor.logged_in(Seq::ZERO, Seq(2));
        assert_eq!(cursor.receive(Seq(1), Seq::ZERO), Verdict::Show);
        assert_eq!(cursor.receive(Seq(2), Seq(1)), Verdict::Show);
        // The connection dropped before the ack reached the server.
        cursor.logged_in(Seq::ZERO, Seq(2));
        assert_eq!(cursor.receive(Seq(1), Seq::ZERO), Verdict::Duplicate);
        assert_eq!(cursor.receive(Seq(2), Seq(1)), Verdict::Duplicate);
        assert_eq!(cursor.ack_due(), Some(Seq(2)));
    }

    #[test]
    fn a_gap_asks_for_one_resync() {
        let mut cursor = InboxCursor::default();
        cursor.logged_in(Seq::ZERO, Seq(5));
        assert_eq!(cursor.receive(Seq(1), Seq::ZERO), Verdict::Show);
        assert_eq!(cursor.receive(Seq(3), Seq(2)), Verdict::Resync { after: Seq(1) });
        assert_eq!(cursor.receive(Seq(4), Seq(3)), Verdict::AwaitResync);
        cursor.resynced(Seq(1));
        assert_eq!(cursor.receive(Seq(2), Seq(1)), Verdict::Show);
        assert_eq!(cursor.receive(Seq(3), Seq(2)), Verdict::Show);
    }

    #[test]
    fn a_resync_answered_from_further_on_moves_the_position() {
        // Another client of ours acked up to 8: the server cannot go back before that, and
        // asking again from 4 would loop for ever.
        let mut cursor = InboxCursor::unknown(Conversation::Group(GroupId(2)));
        assert_eq!(cursor.receive(Seq(4), Seq(3)), Verdict::Show);
        assert_eq!(cursor.receive(Seq(9), Seq(8)), Verdict::Resync { after: Seq(4) });
        cursor.resynced(Seq(8));
        assert_eq!(cursor.receive(Seq(9), Seq(8)), Verdict::Show);
        assert_eq!(cursor.ack_due(), Some(Seq(9)));
    }

    #[test]
    fn own_group_messages_are_stepped_over_and_acked() {
        let mut cursor = InboxCursor::unknown(Conversation::Group(GroupId(4)));
        assert_eq!(cursor.receive(Seq(1), Seq::ZERO), Verdict::Show);
        cursor.own(Seq(2));
        assert_eq!(cursor.shown(), Seq(2));
        assert_eq!(cursor.ack_due(), Some(Seq(2)));
        // Our receipt for 4 came before the push of 3 (held back by the window).
        cursor.own(Seq(4));
        assert_eq!(cursor.shown(), Seq(2));
        assert_eq!(cursor.receive(Seq(3), Seq(2)), Verdict::Show);
        assert_eq!(cursor.shown(), Seq(4));
        // The server's next push names 3 as its previous one: no gap.
        assert_eq!(cursor.receive(Seq(5), Seq(3)), Verdict::Show);
        assert_eq!(cursor.ack_due(), Some(Seq(5)));
        // A late duplicate receipt changes nothing.
        cursor.own(Seq(2));
        assert_eq!(cursor.shown(), Seq(5));
    }

    #[test]
    fn own_messages_wait_for_the_first_push_to_place_them() {
        let mut cursor = InboxCursor::unknown(Conversation::Group(GroupId(4)));
        cursor.own(Seq(7));
        assert_eq!(cursor.ack_due(), None);
        assert_eq!(cursor.receive(Seq(6), Seq(5)), Verdict::Show);
        assert_eq!(cursor.ack_due(), Some(Seq(7)));
    }

    #[test]
    fn starts_after_what_the_server_has_acked() {
        let mut cursor = InboxCursor::default();
        cursor.logged_in(Seq(7), Seq(9));
        assert_eq!(cursor.receive(Seq(8), Seq(7)), Verdict::Show);
        assert_eq!(cursor.ack_due(), Some(Seq(8)));
    }

    #[test]
    fn a_conversation_without_a_login_position_starts_at_its_first_message() {
        let mut cursor = InboxCursor::unknown(Conversation::Group(GroupId(4)));
        assert_eq!(cursor.receive(Seq(10), Seq(9)), Verdict::Show);
        assert_eq!(cursor.receive(Seq(10), Seq(9)), Verdict::Duplicate);
        assert_eq!(cursor.ack_due(), Some(Seq(10)));
        assert_eq!(cursor.receive(Seq(12), Seq(11)), Verdict::Resync { after: Seq(10) });
    }

    #[test]
    fn sequences_may_skip_when_the_server_says_nothing_was_missed() {
        // A group's sequence also numbers messages this member was never meant to get.
        let mut cursor = InboxCursor::unknown(Conversation::Group(GroupId(4)));
        assert_eq!(cursor.receive(Seq(10), Seq(7)), Verdict::Show);
        assert_eq!(cursor.receive(Seq(15), Seq(10)), Verdict::Show);
        assert_eq!(cursor.receive(Seq(17), Seq(16)), Verdict::Resync { after: Seq(15) });
        assert_eq!(cursor.ack_due(), Some(Seq(15)));
    }

    #[test]
    fn a_smaller_inbox_resets_the_cursor() {
        let mut cursor = InboxCursor::default();
        cursor.logged_in(Seq::ZERO, Seq(5));
        for seq in (1..=5).map(Seq) {
            cursor.receive(seq, seq - 1);
        }
        cursor.logged_in(Seq::ZERO, Seq(1));
        assert_eq!(cursor.receive(Seq(1), Seq::ZERO), Verdict::Show);
    }
}
