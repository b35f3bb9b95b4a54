//! Pushes: stored messages judged against the conversation's cursor (shown once, in order,
//! gaps resynced), group events, live traffic, and the acks that follow what was shown.
//!
//! A group's cursor is dropped when the group is gone for us: deleted (a live-only event
//! numbered past the group's end, neither acked nor resynced), or we left or were removed
//! (acking after that would be refused).

use super::App;
use crate::connection::Origin;
use crate::inbox::{InboxCursor, Verdict};
use crate::render::{Event, Output};
use confab_proto::protocol::{Conversation, GroupEvent, Message, Push, Request, SenderKind};

impl<O: Output> App<O> {
    pub(super) fn push(&mut self, push: Push) {
        match push {
            Push::Message(message) => self.stored_message(message),
            Push::Transient { from, content } => self.out.emit(Event::Transient { from, content }),
            Push::Kicked { reason } => {
                // Logging in again would kick the newer session in turn.
                self.conn.set_reconnect(false);
                self.session = None;
                self.resume = None;
                self.forget_live_state();
                self.out.emit(Event::Kicked { reason });
            }
            Push::ShuttingDown => self.out.emit(Event::ShuttingDown),
            Push::RoomMessage { room, from, content } => self.out.emit(Event::RoomMessage { room, from, content }),
            Push::Broadcast { from, content } => self.out.emit(Event::Broadcast { from, content }),
            Push::Presence { username, online } => self.out.emit(Event::Presence { username, online }),
            Push::ServiceNotice { service, content } => self.out.emit(Event::ServiceNotice { service, content }),
            Push::SupportClaimed { conversation, shop, customer, agent } => {
                self.out.emit(Event::Claimed { conversation, shop, customer, agent })
            }
            // Pushes meant for other kinds of client (services), or newer than this one:
            // shown raw rather than dropped, and the build stays green while the protocol grows.
            other => self.out.emit(Event::Unhandled { what: format!("{other:?}") }),
        }
    }

    fn stored_message(&mut self, message: Message) {
        let conversation = message.conversation;
        if let (Conversation::Group(group_id), Some(event @ GroupEvent::Deleted { .. })) =
            (conversation, &message.event)
        {
            self.forget(conversation);
            let event = event.clone();
            self.out.emit(Event::GroupChange { group_id, seq: message.seq, timestamp_ms: message.timestamp_ms, event });
            return;
        }
        let verdict = match self.cursor(conversation) {
            Some(cursor) => cursor.receive(message.seq, message.prev_seq),
            None => Verdict::Show,
        };
        match verdict {
            Verdict::Show => {
                if self.show(message) {
                    self.forget(conversation);
                    return;
                }
                // A long backlog arrives as one burst: ack halfway through the server's
                // window so it never stops to wait for us.
                let half_window = u64::from(self.conn.delivery_window() / 2).max(1);
                if self.cursor(conversation).is_some_and(|c| c.unacked() >= half_window) {
                    self.ack(conversation);
                }
            }
            Verdict::Duplicate | Verdict::AwaitResync => {}
            Verdict::Resync { after } => self.request(Request::Resync { conversation, after }, Origin::Auto),
        }
    }

    /// Shows a new stored message; true if it ends our membership of its group.
    fn show(&mut self, message: Message) -> bool {
        let Message { conversation, seq, from, sender, timestamp_ms, content, event, display_name, .. } = message;
        match (conversation, event) {
            (Conversation::Group(group_id), Some(event)) => {
                let me = self.session.as_deref();
                let gone = match &event {
                    GroupEvent::Left { username } | GroupEvent::Removed { username, .. } => Some(&**username) == me,
                    _ => false,
                };
                self.out.emit(Event::GroupChange { group_id, seq, timestamp_ms, event });
                gone
            }
            _ => {
                let (service, staff) = (sender == SenderKind::Service, sender == SenderKind::Staff);
                let message =
                    Event::Message { conversation, seq, from, display_name, service, staff, timestamp_ms, content };
                self.out.emit(message);
                false
            }
        }
    }

    /// Called when no network event is waiting: the burst is over, ack what it showed.
    pub fn idle(&mut self) {
        let Some(user) = self.session.clone() else {
            return;
        };
        let due: Vec<Conversation> =
            self.cursors.keys().filter(|(owner, _)| *owner == user).map(|(_, conversation)| *conversation).collect();
        for conversation in due {
            self.ack(conversation);
        }
    }

    /// Acks what was shown in `conversation`, if anything new was.
    pub(super) fn ack(&mut self, conversation: Conversation) {
        if !self.conn.is_ready() {
            return;
        }
        if let Some(up_to) = self.cursor(conversation).and_then(InboxCursor::ack_due) {
            self.request(Request::Ack { conversation, up_to }, Origin::Auto);
        }
    }

    /// The cursor of a conversation of the logged-in user. The inbox's starts at login;
    /// another conversation's starts at the first message seen in it.
    pub(super) fn cursor(&mut self, conversation: Conversation) -> Option<&mut InboxCursor> {
        let user = self.session.clone()?;
        Some(self.cursors.entry((user, conversation)).or_insert_with(|| InboxCursor::unknown(conversation)))
    }

    /// The conversation is no longer ours: nothing more to show, ack or resync in it.
    pub(super) fn forget(&mut self, conversation: Conversation) {
        if let Some(user) = self.session.clone() {
            self.cursors.remove(&(user, conversation));
        }
    }
}
