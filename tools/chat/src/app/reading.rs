//! History, deletions and read state: `/history` paged back through the server and shown
//! oldest first, `/delete` and `/clear` with the message or position they need, read marks
//! (ours after a burst, the user's other devices'), read receipts, and the unread counts
//! of the login and of `/unread`.

use super::App;
use crate::chats::{Chats, Own};
use crate::connection::Origin;
use crate::render::{preview, Event, Output};
use confab_proto::protocol::{Chat, ChatState, Conversation, GroupEvent, Message, MessageId, Request, Seq};
use std::collections::HashSet;

/// Messages asked for per History request (the server may send fewer).
const HISTORY_PAGE: u32 = 50;

/// What a history fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Show it; `open`: the conversation was opened with `/to`.
    Show { open: bool },
    /// Learn the chat's newest sequence, then clear up to it.
    Clear,
}

/// A history request under way: the pages so far, oldest first.
#[derive(Debug)]
pub(super) struct Fetch {
    chat: Chat,
    wanted: usize,
    messages: Vec<Message>,
    purpose: Purpose,
}

impl<O: Output> App<O> {
    /// The logged-in user's chats.
    pub(super) fn chats_mut(&mut self) -> Option<&mut Chats> {
        let user = self.session.clone()?;
        Some(self.chats.entry(user).or_default())
    }

    pub(super) fn chats(&self) -> Option<&Chats> {
        self.chats.get(self.session.as_ref()?)
    }

    pub(super) fn fetch_history(&mut self, chat: Chat, count: u32, open: bool) {
        if open && self.session.is_none() {
            return;
        }
        let limit = count.min(HISTORY_PAGE);
        let purpose = Purpose::Show { open };
        let origin = if open { Origin::Auto } else { Origin::User };
        let request = Request::History { chat: chat.clone(), before: Seq::ZERO, limit };
        if let Some(id) = self.request(request, origin) {
            self.fetches.insert(id, Fetch { chat, wanted: count as usize, messages: Vec::new(), purpose });
        }
    }

    /// A page came: ask for the one before it, or finish.
    pub(super) fn history_page(&mut self, id: u32, chat: Chat, mut page: Vec<Message>, more: bool) {
        let Some(mut fetch) = self.fetches.remove(&id) else {
            return;
        };
        let oldest = page.first().map(|m| m.seq);
        let before = fetch.messages.first().map(|m| m.seq);
        page.append(&mut fetch.messages);
        fetch.messages = page;
        let left = fetch.wanted.saturating_sub(fetch.messages.len());
        // Each page must reach further back, or the server is not paging: stop there.
        let progress = oldest.is_some_and(|oldest| before.map_or(true, |before| oldest < before));
        if let (Purpose::Show { open }, true, true, Some(oldest)) = (fetch.purpose, left > 0 && more, progress, oldest)
        {
            let origin = if open { Origin::Auto } else { Origin::User };
            let limit = (left as u32).min(HISTORY_PAGE);
            let request = Request::History { chat: chat.clone(), before: oldest, limit };
            if let Some(id) = self.request(request, origin) {
                self.fetches.insert(id, fetch);
            }
            return;
        }
        match fetch.purpose {
            Purpose::Show { .. } => self.show_history(fetch, more),
            Purpose::Clear => self.clear_up_to_newest(fetch),
        }
    }

    /// Prints a fetched history, oldest first, and marks the chat read.
    fn show_history(&mut self, fetch: Fetch, more: bool) {
        let Fetch { chat, messages, .. } = fetch;
        let me = self.session.clone().unwrap_or_default();
        // A deleted message is kept in its place as a `MessageDeleted` event naming itself;
        // the event that announced the deletion (naming the message) follows it.
        let erased = |m: &Message| matches!(&m.event, Some(GroupEvent::MessageDeleted { message_id, .. }) if *message_id == m.message_id);
        let announced: HashSet<MessageId> = messages
            .iter()
            .filter_map(|m| match &m.event {
                Some(GroupEvent::MessageDeleted { message_id, .. }) if *message_id != m.message_id => Some(*message_id),
                _ => None,
            })
            .collect();
        let shown: Vec<(Message, bool)> = messages
            .into_iter()
            .filter(|m| erased(m) || !matches!(m.event, Some(GroupEvent::MessageDeleted { .. })))
            .map(|m| {
                let deleted = erased(&m) || (m.event.is_none() && announced.contains(&m.message_id));
                (m, deleted)
            })
            .collect();
        if let Some(chats) = self.chats_mut() {
            for (message, _) in shown.iter().filter(|(m, _)| m.event.is_none()) {
                if message.from == me {
                    chats.own_seq(&chat, message.seq);
                    let own =
                        Own { message_id: message.message_id, receipt_seq: None, preview: preview(&message.content) };
                    chats.own_message(&chat, own);
                } else {
                    chats.others_seq(&chat, message.seq);
                }
            }
        }
        self.out.emit(Event::History { chat: chat.clone(), count: shown.len(), more });
        for (message, deleted) in shown {
            self.out.emit(Event::HistoryMessage { message, deleted });
        }
        self.reading.insert(chat);
    }

    pub(super) fn clear(&mut self, chat: Chat) {
        // The newest message may be our own copy, whose sequence only the server knows.
        let request = Request::History { chat: chat.clone(), before: Seq::ZERO, limit: 1 };
        if let Some(id) = self.request(request, Origin::User) {
            self.fetches.insert(id, Fetch { chat, wanted: 1, messages: Vec::new(), purpose: Purpose::Clear });
        }
    }

    fn clear_up_to_newest(&mut self, fetch: Fetch) {
        let seen = self.chats().and_then(|chats| chats.get(&fetch.chat)).map_or(Seq::ZERO, |view| view.last_seq);
        let up_to = fetch.messages.last().map_or(seen, |m| m.seq.max(seen));
        if up_to == Seq::ZERO {
            self.out.emit(Event::error("Invalid", format!("nothing to clear in {}", chat_words(&fetch.chat))));
            return;
        }
        self.request(Request::ClearHistory { chat: fetch.chat, up_to }, Origin::User);
    }

    pub(super) fn delete(&mut self, chat: Chat, message_id: Option<MessageId>) {
        let known = self.chats().and_then(|chats| chats.get(&chat)).and_then(|view| view.last_own());
        let Some(message_id) = message_id.or(known.map(|own| own.message_id)) else {
            let why = format!(
                "no message of yours in {} known here; give its id (the id= of its sent line)",
                chat_words(&chat)
            );
            self.out.emit(Event::error("Invalid", why));
            return;
        };
        self.request(Request::DeleteMessage { chat, message_id }, Origin::User);
    }

    /// `/read`: up to the newest message seen in the chat.
    pub(super) fn mark_read(&mut self, chat: Chat) {
        let up_to = self.chats().and_then(|chats| chats.get(&chat)).map_or(Seq::ZERO, |view| view.last_seq);
        if up_to == Seq::ZERO {
            self.out.emit(Event::error("Invalid", format!("no messages seen in {} yet", chat_words(&chat))));
            return;
        }
        if let Some(chats) = self.chats_mut() {
            chats.view(&chat).mark_sent = up_to;
        }
        self.request(Request::MarkRead { chat, up_to }, Origin::User);
    }

    /// After a burst: marks read the chats shown since the last one.
    pub(super) fn marks_due(&mut self) {
        if self.reading.is_empty() || !self.conn.is_ready() {
            return;
        }
        let wanted = std::mem::take(&mut self.reading);
        let Some(chats) = self.chats_mut() else {
            return;
        };
        let due = chats.marks_due(&wanted);
        for (chat, up_to) in &due {
            chats.view(chat).mark_sent = *up_to;
        }
        for (chat, up_to) in due {
            self.request(Request::MarkRead { chat, up_to }, Origin::Auto);
        }
    }

    /// The server confirmed a read mark of ours.
    pub(super) fn marked_read(&mut self, chat: Chat, up_to: Seq, asked: bool) {
        let unread = self.chats_mut().map_or(0, |chats| {
            let view = chats.view(&chat);
            view.read(up_to);
            view.unread()
        });
        self.out.emit(Event::Read { chat, up_to, unread, asked });
    }

    /// The user read `chat` on another device.
    pub(super) fn read_mark(&mut self, chat: Chat, up_to: Seq) {
        let unread = self.chats_mut().map_or(0, |chats| {
            let view = chats.view(&chat);
            view.read(up_to);
            view.unread()
        });
        self.out.emit(Event::ReadMark { chat, up_to, unread });
    }

    pub(super) fn read_receipt(&mut self, reader: String, up_to: Seq) {
        let chat = Chat::User(reader.clone());
        let own = self.chats().and_then(|chats| chats.get(&chat)).and_then(|view| view.own_read_by(up_to)).cloned();
        self.out.emit(Event::ReadReceipt { reader, up_to, own });
    }

    pub(super) fn history_cleared(&mut self, chat: Chat, up_to: Seq) {
        if let Some(chats) = self.chats_mut() {
            let view = chats.view(&chat);
            view.cleared_up_to = view.cleared_up_to.max(up_to);
        }
        self.out.emit(Event::HistoryCleared { chat, up_to });
    }

    /// The read state of every chat: at login only those with unread messages are shown;
    /// for `/unread`, a header and every chat.
    pub(super) fn read_state(&mut self, states: Vec<ChatState>, read_receipts: bool, at_login: bool) {
        if let Some(chats) = self.chats_mut() {
            chats.states(&states);
            chats.read_receipts = read_receipts;
        }
        if !at_login {
            self.out.emit(Event::ReadStateCount { chats: states.len(), read_receipts });
        }
        for state in states {
            if at_login && state.unread == 0 {
                continue;
            }
            let ChatState { chat, last_seq, read_up_to, unread, .. } = state;
            self.out.emit(Event::Unread { chat, unread, read_up_to, last_seq });
        }
    }

    /// A message was deleted by its sender (an event in our inbox, in `chat` when the
    /// server said so): which chat, and which text, if this client knows the message.
    pub(super) fn message_deleted(&mut self, seq: Seq, message_id: MessageId, by: String, chat: Option<Chat>) {
        let me = self.session.clone().unwrap_or_default();
        let known = self.chats().and_then(|chats| chats.chat_of_own(message_id)).cloned();
        let chat = match chat.or(known) {
            Some(chat) => Some(chat),
            None if by != me => Some(Chat::User(by.clone())),
            None => None,
        };
        let preview =
            chat.as_ref().and_then(|chat| self.chats()?.get(chat)?.own(message_id).map(|own| own.preview.clone()));
        self.out.emit(Event::MessageDeleted { seq, message_id, by, chat, preview });
    }

    /// The chat a shown stored message belongs to.
    pub(super) fn chat_of(message: &Message) -> Chat {
        use confab_proto::protocol::SenderKind;
        match message.conversation {
            Conversation::Group(id) => Chat::Group(id),
            Conversation::Support(id) => Chat::Support(id),
            Conversation::Inbox if message.sender == SenderKind::Service => Chat::Service(message.from.clone()),
            Conversation::Inbox => Chat::User(message.from.clone()),
        }
    }
}

/// A chat in words, for error messages.
fn chat_words(chat: &Chat) -> String {
    match chat {
        Chat::User(name) => format!("the chat with {name}"),
        Chat::Group(id) => format!("group {id}"),
        Chat::Service(name) => format!("the messages of {name}"),
        Chat::Support(id) => format!("support conversation {id}"),
    }
}
