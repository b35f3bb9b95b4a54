//! Pushes: stored messages and sent copies judged against the conversation's cursor (shown
//! once, in order, gaps resynced), group events, live traffic, read marks and receipts,
//! and the acks and read marks that follow what was shown.
//!
//! A group's cursor is dropped when the group is gone for us: deleted (a live-only event
//! numbered past the group's end, neither acked nor resynced), or we left or were removed
//! (acking after that would be refused).

use super::App;
use crate::chats::Own;
use crate::connection::Origin;
use crate::inbox::{InboxCursor, Verdict};
use crate::render::{preview, Event, Output};
use confab_proto::protocol::{Chat, Conversation, GroupEvent, Message, Push, Request, SenderKind, Seq};

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
            Push::SentCopy { to, message } => self.sent_copy(to, message),
            Push::ReadMark { chat, up_to } => self.read_mark(chat, up_to),
            Push::ReadReceipt { reader, up_to } => self.read_receipt(reader, up_to),
            Push::HistoryCleared { chat, up_to } => self.history_cleared(chat, up_to),
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
        if !self.admit(conversation, message.seq, message.prev_seq) {
            return;
        }
        if self.show(message) {
            self.forget(conversation);
            return;
        }
        self.ack_early(conversation);
    }

    /// A message the user sent from another device, in the inbox's sequence: judged and
    /// acked like any inbox message, shown unless this client sent it itself.
    fn sent_copy(&mut self, to: String, message: Message) {
        if !self.admit(Conversation::Inbox, message.seq, message.prev_seq) {
            return;
        }
        let chat = Chat::User(to.clone());
        // A deletion of ours (from any device) comes to our inbox as an event in that chat.
        if let Some(GroupEvent::MessageDeleted { message_id, by }) = message.event {
            self.message_deleted(message.seq, message_id, by, Some(chat));
            self.ack_early(Conversation::Inbox);
            return;
        }
        let mine = self.chats_mut().is_some_and(|chats| {
            chats.own_seq(&chat, message.seq);
            let own = Own { message_id: message.message_id, receipt_seq: None, preview: preview(&message.content) };
            chats.own_message(&chat, own);
            chats.was_sent_here(message.message_id)
        });
        if self.peer.as_deref() == Some(to.as_str()) {
            self.reading.insert(chat);
        }
        if !mine {
            let Message { seq, message_id, timestamp_ms, content, .. } = message;
            self.out.emit(Event::SentCopy { to, seq, message_id, timestamp_ms, content });
        }
        self.ack_early(Conversation::Inbox);
    }

    /// Judges a pushed message by the conversation's cursor: true if it is new and next;
    /// a gap asks for a resync.
    fn admit(&mut self, conversation: Conversation, seq: Seq, prev_seq: Seq) -> bool {
        let verdict = match self.cursor(conversation) {
            Some(cursor) => cursor.receive(seq, prev_seq),
            None => Verdict::Show,
        };
        match verdict {
            Verdict::Show => true,
            Verdict::Duplicate | Verdict::AwaitResync => false,
            Verdict::Resync { after } => {
                self.request(Request::Resync { conversation, after }, Origin::Auto);
                false
            }
        }
    }

    /// A long backlog arrives as one burst: ack halfway through the server's window so it
    /// never stops to wait for us.
    fn ack_early(&mut self, conversation: Conversation) {
        let half_window = u64::from(self.conn.delivery_window() / 2).max(1);
        if self.cursor(conversation).is_some_and(|c| c.unacked() >= half_window) {
            self.ack(conversation);
        }
    }

    /// Shows a new stored message; true if it ends our membership of its group.
    fn show(&mut self, message: Message) -> bool {
        if let Some(GroupEvent::MessageDeleted { message_id, by }) = &message.event {
            if message.conversation == Conversation::Inbox {
                self.message_deleted(message.seq, *message_id, by.clone(), None);
                return false;
            }
        }
        let chat = Self::chat_of(&message);
        let me = self.session.clone();
        if message.event.is_none() {
            let own = me.as_deref() == Some(message.from.as_str());
            if let Some(chats) = self.chats_mut() {
                match own {
                    true => chats.own_seq(&chat, message.seq),
                    false => chats.others_seq(&chat, message.seq),
                }
            }
            // The open conversation is read as it is shown.
            if matches!(&chat, Chat::User(name) if self.peer.as_ref() == Some(name)) {
                self.reading.insert(chat);
            }
        }
        let Message { conversation, seq, message_id, from, sender, timestamp_ms, content, event, display_name, .. } =
            message;
        match (conversation, event) {
            (Conversation::Group(group_id), Some(event)) => {
                let gone = match &event {
                    GroupEvent::Left { username } | GroupEvent::Removed { username, .. } => {
                        Some(username) == me.as_ref()
                    }
                    _ => false,
                };
                self.out.emit(Event::GroupChange { group_id, seq, timestamp_ms, event });
                gone
            }
            _ => {
                let (service, staff) = (sender == SenderKind::Service, sender == SenderKind::Staff);
                let message = Event::Message {
                    conversation,
                    seq,
                    message_id,
                    from,
                    display_name,
                    service,
                    staff,
                    timestamp_ms,
                    content,
                };
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
        self.marks_due();
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
