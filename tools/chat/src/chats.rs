//! The client's picture of each chat of the logged-in user, for read state: the newest
//! sequence seen in it, how far it is read, how many messages from others are unread, and
//! the user's own recent messages there (to recognise a sent copy of a message this client
//! sent, to say which message a read receipt reaches, and to find the message `/delete`
//! means when no id is given).
//!
//! Sequences are the chat's own: a direct chat's are those of the user's inbox (messages
//! received and sent copies), a group's the group's. The server's count of unread messages
//! (at login, or `/unread`) covers the chat up to its `last_seq` then; messages from others
//! shown since are counted here one by one. Everything kept per chat is bounded.

use confab_proto::protocol::{Chat, ChatState, MessageId, Seq};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// Own messages remembered per chat (for receipts and `/delete` without an id).
const OWN_PER_CHAT: usize = 64;
/// Message ids of what this client sent, to recognise their sent copies.
const SENT_IDS: usize = 4096;
/// Unread messages from others counted one by one per chat; beyond, the count is kept
/// without their sequences.
const UNREAD_SEQS: usize = 4096;
/// Chats remembered; the least recently touched go first.
const MAX_CHATS: usize = 4096;

/// One of the user's own messages in a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Own {
    pub message_id: MessageId,
    /// Where the recipient has it (a direct message's receipt: a sequence of the
    /// recipient's inbox, the one read receipts name). None for a copy sent elsewhere.
    pub receipt_seq: Option<Seq>,
    /// The start of its text, for people.
    pub preview: String,
}

#[derive(Debug, Default, Clone)]
pub struct ChatView {
    /// The newest sequence seen in the chat.
    pub last_seq: Seq,
    pub read_up_to: Seq,
    /// Hidden from this user's devices up to here (`/clear`).
    pub cleared_up_to: Seq,
    /// The server's unread count, of messages at or below `counted_to`.
    counted: u64,
    counted_to: Seq,
    /// Messages from others shown above the read mark and above `counted_to`.
    unread_seqs: BTreeSet<Seq>,
    /// Unread beyond `UNREAD_SEQS`, not tracked one by one.
    unread_extra: u64,
    /// The last MarkRead sent for it, so a burst asks once.
    pub mark_sent: Seq,
    own: VecDeque<Own>,
    touched: u64,
}

impl ChatView {
    pub fn unread(&self) -> u64 {
        self.counted + self.unread_seqs.len() as u64 + self.unread_extra
    }

    /// The server's account of the chat (login, `/unread`).
    fn state(&mut self, state: &ChatState) {
        self.last_seq = self.last_seq.max(state.last_seq);
        self.read_up_to = state.read_up_to;
        self.cleared_up_to = self.cleared_up_to.max(state.cleared_up_to);
        self.counted = state.unread;
        self.counted_to = state.last_seq;
        self.unread_seqs = self.unread_seqs.split_off(&state.last_seq.next());
        self.unread_seqs = self.unread_seqs.split_off(&state.read_up_to.next());
        if self.unread_seqs.is_empty() {
            self.unread_extra = 0;
        }
    }

    /// Read up to `up_to` (here or on another device).
    pub fn read(&mut self, up_to: Seq) {
        self.read_up_to = self.read_up_to.max(up_to);
        self.unread_seqs = self.unread_seqs.split_off(&up_to.next());
        if up_to >= self.counted_to {
            self.counted = 0;
        }
        if up_to >= self.last_seq {
            self.unread_extra = 0;
        }
    }

    /// The newest of our own messages the recipient has at or below `up_to` (its inbox).
    pub fn own_read_by(&self, up_to: Seq) -> Option<&Own> {
        self.own.iter().filter(|own| own.receipt_seq.is_some_and(|seq| seq <= up_to)).max_by_key(|o| o.receipt_seq)
    }

    pub fn own(&self, message_id: MessageId) -> Option<&Own> {
        self.own.iter().find(|own| own.message_id == message_id)
    }

    pub fn last_own(&self) -> Option<&Own> {
        self.own.back()
    }
}

/// Every chat of one user, as far as this client knows.
#[derive(Debug, Default)]
pub struct Chats {
    chats: BTreeMap<Chat, ChatView>,
    sent_ids: HashSet<MessageId>,
    sent_order: VecDeque<MessageId>,
    clock: u64,
    pub read_receipts: bool,
}

impl Chats {
    pub fn get(&self, chat: &Chat) -> Option<&ChatView> {
        self.chats.get(chat)
    }

    pub fn view(&mut self, chat: &Chat) -> &mut ChatView {
        self.clock += 1;
        if !self.chats.contains_key(chat) && self.chats.len() >= MAX_CHATS {
            if let Some(oldest) = self.chats.iter().min_by_key(|(_, v)| v.touched).map(|(c, _)| c.clone()) {
                self.chats.remove(&oldest);
            }
        }
        let view = self.chats.entry(chat.clone()).or_default();
        view.touched = self.clock;
        view
    }

    /// The server's read state of every chat (login or `/unread`).
    pub fn states(&mut self, states: &[ChatState]) {
        for state in states {
            self.view(&state.chat).state(state);
        }
    }

    /// A message from someone else was shown.
    pub fn others_seq(&mut self, chat: &Chat, seq: Seq) {
        let view = self.view(chat);
        view.last_seq = view.last_seq.max(seq);
        if seq > view.read_up_to && seq > view.counted_to && !view.unread_seqs.contains(&seq) {
            if view.unread_seqs.len() < UNREAD_SEQS {
                view.unread_seqs.insert(seq);
            } else {
                view.unread_extra += 1;
            }
        }
    }

    /// One of our own messages is at `seq` of the chat (a group receipt, a sent copy, a
    /// page of history).
    pub fn own_seq(&mut self, chat: &Chat, seq: Seq) {
        let view = self.view(chat);
        view.last_seq = view.last_seq.max(seq);
    }

    /// We sent `message_id` into `chat` (its receipt came, or a copy from another device).
    pub fn own_message(&mut self, chat: &Chat, own: Own) {
        let view = self.view(chat);
        if let Some(known) = view.own.iter_mut().find(|o| o.message_id == own.message_id) {
            known.receipt_seq = known.receipt_seq.or(own.receipt_seq);
            return;
        }
        if view.own.len() >= OWN_PER_CHAT {
            view.own.pop_front();
        }
        view.own.push_back(own);
    }

    /// This client sent `message_id` (its receipt came): its copy is not shown again.
    pub fn sent_here(&mut self, message_id: MessageId) {
        if self.sent_ids.insert(message_id) {
            self.sent_order.push_back(message_id);
            if self.sent_order.len() > SENT_IDS {
                if let Some(old) = self.sent_order.pop_front() {
                    self.sent_ids.remove(&old);
                }
            }
        }
    }

    pub fn was_sent_here(&self, message_id: MessageId) -> bool {
        self.sent_ids.contains(&message_id)
    }

    /// The chat in which we sent `message_id`, if we know it.
    pub fn chat_of_own(&self, message_id: MessageId) -> Option<&Chat> {
        self.chats.iter().find(|(_, view)| view.own(message_id).is_some()).map(|(chat, _)| chat)
    }

    /// Chats with messages shown above the last mark asked for: (chat, up to).
    pub fn marks_due(&self, wanted: &BTreeSet<Chat>) -> Vec<(Chat, Seq)> {
        wanted
            .iter()
            .filter_map(|chat| {
                let view = self.chats.get(chat)?;
                (view.last_seq > view.read_up_to.max(view.mark_sent)).then(|| (chat.clone(), view.last_seq))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::protocol::GroupId;

    fn bob() -> Chat {
        Chat::User("bob".into())
    }

    fn state(last: u64, read: u64, unread: u64) -> ChatState {
        ChatState { chat: bob(), last_seq: Seq(last), read_up_to: Seq(read), unread, cleared_up_to: Seq::ZERO }
    }

    #[test]
    fn the_servers_count_then_messages_shown_since() {
        let mut chats = Chats::default();
        chats.states(&[state(4, 2, 2)]);
        assert_eq!(chats.get(&bob()).map(ChatView::unread), Some(2));
        chats.others_seq(&bob(), Seq(5));
        chats.others_seq(&bob(), Seq(5));
        chats.own_seq(&bob(), Seq(6));
        chats.others_seq(&bob(), Seq(7));
        assert_eq!(chats.get(&bob()).map(ChatView::unread), Some(4));
        // Read up to 5 elsewhere: the server's two and 5 are read; 7 is not.
        chats.view(&bob()).read(Seq(5));
        assert_eq!(chats.get(&bob()).map(ChatView::unread), Some(1));
        chats.view(&bob()).read(Seq(7));
        assert_eq!(chats.get(&bob()).map(ChatView::unread), Some(0));
        // What was read is not unread again when the server repeats it.
        chats.others_seq(&bob(), Seq(7));
        assert_eq!(chats.get(&bob()).map(ChatView::unread), Some(0));
    }

    #[test]
    fn a_read_mark_below_the_servers_count_keeps_it() {
        let mut chats = Chats::default();
        chats.states(&[state(10, 0, 3)]);
        chats.view(&bob()).read(Seq(4));
        assert_eq!(chats.get(&bob()).map(ChatView::unread), Some(3), "which of the 3 are above 4 is unknown");
    }

    #[test]
    fn receipts_name_the_newest_own_message_they_reach() {
        let mut chats = Chats::default();
        let own =
            |id, seq: Option<u64>| Own { message_id: MessageId(id), receipt_seq: seq.map(Seq), preview: "hi".into() };
        chats.own_message(&bob(), own(70, Some(3)));
        chats.own_message(&bob(), own(71, None));
        chats.own_message(&bob(), own(72, Some(5)));
        let view = chats.get(&bob()).expect("known");
        assert_eq!(view.own_read_by(Seq(4)).map(|o| o.message_id), Some(MessageId(70)));
        assert_eq!(view.own_read_by(Seq(9)).map(|o| o.message_id), Some(MessageId(72)));
        assert_eq!(view.own_read_by(Seq(2)), None);
        assert_eq!(view.last_own().map(|o| o.message_id), Some(MessageId(72)));
        assert_eq!(chats.chat_of_own(MessageId(71)), Some(&bob()));
        assert_eq!(chats.chat_of_own(MessageId(99)), None);
    }

    #[test]
    fn marks_are_due_once_per_burst() {
        let mut chats = Chats::default();
        let group = Chat::Group(GroupId(9));
        chats.others_seq(&group, Seq(3));
        let wanted: BTreeSet<Chat> = [group.clone(), bob()].into();
        assert_eq!(chats.marks_due(&wanted), vec![(group.clone(), Seq(3))]);
        chats.view(&group).mark_sent = Seq(3);
        assert_eq!(chats.marks_due(&wanted), vec![]);
    }

    #[test]
    fn sent_ids_are_bounded() {
        let mut chats = Chats::default();
        for id in 0..(SENT_IDS as u64 + 10) {
            chats.sent_here(MessageId(id));
        }
        assert!(!chats.was_sent_here(MessageId(0)));
        assert!(chats.was_sent_here(MessageId(SENT_IDS as u64 + 9)));
    }
}
