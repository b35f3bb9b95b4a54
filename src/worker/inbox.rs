//! One user's inbox as its worker sees it: where the inbox stands on disk and, while the
//! user is online, how far the session has been sent.
//!
//! Delivery is a single cursor per session, so catch-up after login and live messages are
//! one stream: a new message is pushed at once only if the session has already been sent
//! everything before it; otherwise it waits its turn behind the backlog. At most
//! `window` messages are outstanding beyond the last ack.

use crate::net::ConnId;
use crate::store::InboxState;

#[derive(Debug)]
pub struct Session {
    pub conn: ConnId,
    /// The highest sequence pushed to this connection.
    pub sent_upto: u64,
}

#[derive(Debug)]
pub struct UserState {
    pub uid: u64,
    pub inbox: InboxState,
    pub session: Option<Session>,
}

impl UserState {
    /// How many more messages may be pushed now, and from which sequence on.
    pub fn deliverable(&self, window: u64) -> Option<(u64, u64)> {
        let session = self.session.as_ref()?;
        let outstanding = session.sent_upto.saturating_sub(self.inbox.acked);
        let room = window.saturating_sub(outstanding);
        let waiting = self.inbox.last_seq.saturating_sub(session.sent_upto);
        let count = room.min(waiting);
        (count > 0).then_some((session.sent_upto + 1, count))
    }

    /// Whether message `seq`, just stored, is next in line and fits in the window.
    pub fn can_push_now(&self, seq: u64, window: u64) -> bool {
        matches!(self.deliverable(window), Some((from, _)) if from == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(acked: u64, last_seq: u64, sent_upto: Option<u64>) -> UserState {
        UserState {
            uid: 1,
            inbox: InboxState { acked, last_seq },
            session: sent_upto.map(|sent_upto| Session {
                conn: ConnId(1),
                sent_upto,
            }),
        }
    }

    #[test]
    fn offline_users_get_nothing() {
        assert_eq!(user(0, 5, None).deliverable(10), None);
    }

    #[test]
    fn backlog_is_paced_by_the_window() {
        assert_eq!(user(0, 5000, Some(0)).deliverable(100), Some((1, 100)));
        assert_eq!(user(0, 5000, Some(100)).deliverable(100), None);
        assert_eq!(user(60, 5000, Some(100)).deliverable(100), Some((101, 60)));
    }

    #[test]
    fn live_message_waits_behind_backlog() {
        // Session sent up to 3 of 9 stored: message 10 must not overtake 4..=9.
        let u = user(0, 10, Some(3));
        assert!(!u.can_push_now(10, 100));
        let u = user(0, 10, Some(9));
        assert!(u.can_push_now(10, 100));
    }
}
