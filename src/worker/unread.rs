//! What is unread (protocol.md "Read state"): each of a user's chats with its last
//! sequence, the user's read mark and the count of messages from others after it, computed
//! from the stored logs on the user's worker. `ReadState` answers with [`chats`], and so
//! does the login of a named device.
//!
//! What counts: in a direct chat, the peer's messages in the user's inbox (not the user's
//! own sent copies); in a service's chat, the service's; in a group or a support
//! conversation, every message and event from someone else. Deletion notices are nothing to
//! read, and a service's message that leaves the user out is not the user's. The mark, not
//! the acknowledgement, decides: with history kept, an acknowledged message stays in the
//! log and is unread until marked. Nothing at or below the user's cleared mark
//! (`ClearHistory`) counts either, and each chat carries that mark.
//!
//! The work is bounded, so a login never reads a whole history: the newest
//! [`INBOX_SCAN`] messages of the inbox are looked at (direct chats are found there, or by
//! their marks), then in each group and support conversation the newest [`CHAT_SCAN`]
//! messages above the mark, all within [`SCAN_BUDGET`] messages per request. Beyond what
//! is looked at, a group's or conversation's messages above the mark count as unread
//! without a look, and a direct chat's are not seen; every count is at most [`MAX_UNREAD`].
//!
//! Groups' and support conversations' logs belong to other workers. They are read through
//! `Store::read_across`, which also sees what those workers have staged and not yet moved
//! into sled, without a race with that move (see `store/across.rs`); the user's own inbox
//! and the logs this worker owns are read through its partition.

use super::context::Ctx;
use super::read_state::is_staff;
use super::refusal::{Handled, Refusal};
use crate::protocol::{Chat, ChatState, GroupEvent, Reply, SenderKind, Seq, SupportId, UserId};
use crate::route::{ConnId, Owner, SessionUser};
use crate::store::{Addressee, LogId, LogOwner, LogState, StoredMessage};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The most a count says: a client shows "9999+" beyond.
pub const MAX_UNREAD: u64 = 9_999;
/// Messages one request reads, over all of its chats.
pub const SCAN_BUDGET: u64 = 20_000;
/// The newest messages of the inbox looked at for direct chats.
pub const INBOX_SCAN: u64 = 5_000;
/// The newest messages above the mark looked at in one group or support conversation.
pub const CHAT_SCAN: u64 = 1_000;
/// Messages read at a time.
const PAGE: u64 = 256;

/// `ReadState`: every chat's read state, and whether the caller sends receipts.
pub fn read_state(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    let chats = chats(ctx, &user.name, user.uid)?;
    let read_receipts = super::read_state::receipts_enabled(ctx, user.uid)?;
    ctx.batch.reply(conn, request_id, Reply::ReadState { chats, read_receipts }, false);
    Ok(())
}

/// The read state of every chat `name` has messages in or a mark for: direct and service
/// chats, groups it is a member of, support conversations it is the customer of (or marked
/// as staff). In the order of `Chat`. On the user's worker (its inbox is read there).
pub fn chats(ctx: &Ctx, name: &str, uid: UserId) -> Result<Vec<ChatState>, Refusal> {
    let store = &ctx.shared.store;
    let marks: HashMap<Chat, Seq> = store.read_marks(uid)?.into_iter().map(|(chat, mark)| (chat, mark.up_to)).collect();
    let cleared: HashMap<Chat, Seq> = store.cleared_marks(uid)?.into_iter().collect();
    let mut scan = Scan { ctx, name, budget: SCAN_BUDGET, chats: BTreeMap::new(), cleared };
    scan.inbox(uid, &marks)?;
    for id in store.memberships(name)? {
        let owner = LogOwner::from(id);
        scan.log(Chat::Group(id), LogId::Group, owner, ctx.owns(Owner::Group(id)), marks.get(&Chat::Group(id)))?;
    }
    let mut conversations: BTreeSet<SupportId> = store.customer_support(name)?.into_iter().collect();
    conversations.extend(marks.keys().filter_map(|chat| match chat {
        Chat::Support(id) => Some(*id),
        _ => None,
    }));
    for id in conversations {
        let Some(record) = store.support(id)? else { continue };
        // A staff member's mark of a shop it no longer serves is passed over.
        if record.customer != name && !is_staff(store, &record.shop, name)? {
            continue;
        }
        let chat = Chat::Support(id);
        let here = ctx.owns(Owner::Shop(&record.shop));
        scan.log(chat.clone(), LogId::Support, id.into(), here, marks.get(&chat))?;
    }
    Ok(scan.chats.into_values().collect())
}

/// One request's reading: what is left of its budget, and the chats found so far.
struct Scan<'c, 'a> {
    ctx: &'c Ctx<'a>,
    name: &'c str,
    budget: u64,
    chats: BTreeMap<Chat, ChatState>,
    /// The user's cleared marks (`ClearHistory`): nothing at or below one counts as unread.
    cleared: HashMap<Chat, Seq>,
}

impl Scan<'_, '_> {
    /// Direct and service chats, from the newest messages of the inbox and from marks.
    fn inbox(&mut self, uid: UserId, marks: &HashMap<Chat, Seq>) -> Handled {
        let (owner, here) = (LogOwner::from(uid), self.ctx.owns(Owner::User(self.name)));
        let state = self.state(LogId::Inbox, owner, here)?;
        let look = INBOX_SCAN.min(self.budget);
        let mut after = Seq(state.last_seq.get().saturating_sub(look)).max(state.floor);
        let mut seen = 0;
        while seen < look {
            let page = self.read(LogId::Inbox, owner, here, after, PAGE.min(look - seen))?;
            let Some(&(last, _)) = page.last() else { break };
            (after, seen) = (last, seen + page.len() as u64);
            for (seq, message) in page {
                let Some((chat, own)) = direct_chat(message, self.name) else { continue };
                let chat = self.chats.entry(chat.clone()).or_insert_with(|| {
                    let read_up_to = marks.get(&chat).copied().unwrap_or_default().min(state.last_seq);
                    let cleared = self.cleared.get(&chat).copied().unwrap_or_default().min(state.last_seq);
                    blank(chat, read_up_to, cleared)
                });
                chat.last_seq = seq;
                if !own && seq > chat.read_up_to.max(chat.cleared_up_to) {
                    chat.unread = (chat.unread + 1).min(MAX_UNREAD);
                }
            }
        }
        self.budget -= seen;
        // Marked chats with nothing in what was looked at: read up to their mark, and as far
        // as the count knows, nothing after it.
        for (chat, mark) in marks.iter().filter(|(chat, _)| matches!(chat, Chat::User(_) | Chat::Service(_))) {
            let read_up_to = (*mark).min(state.last_seq);
            let cleared = self.cleared.get(chat).copied().unwrap_or_default().min(state.last_seq);
            self.chats
                .entry(chat.clone())
                .or_insert_with(|| ChatState { last_seq: read_up_to, ..blank(chat.clone(), read_up_to, cleared) });
        }
        Ok(())
    }

    /// A group or support conversation: its last sequence, and what is unread above the
    /// mark. Without a mark (a member from before read marks), from the log's floor.
    fn log(&mut self, chat: Chat, id: LogId, owner: LogOwner, here: bool, mark: Option<&Seq>) -> Handled {
        let state = self.state(id, owner, here)?;
        let cleared = self.cleared.get(&chat).copied().unwrap_or_default().min(state.last_seq);
        let from = mark.copied().unwrap_or(state.floor).max(state.floor).max(cleared);
        let unread = self.unread_above(id, owner, here, from, state.last_seq)?;
        let read_up_to = mark.copied().unwrap_or_default().min(state.last_seq);
        let read = blank(chat.clone(), read_up_to, cleared);
        self.chats.insert(chat, ChatState { last_seq: state.last_seq, unread, ..read });
        Ok(())
    }

    /// Messages from others in `from+1..=last`, looking at the newest `CHAT_SCAN` at most
    /// (within the budget).
    fn unread_above(&mut self, id: LogId, owner: LogOwner, here: bool, from: Seq, last: Seq) -> Result<u64, Refusal> {
        let look = CHAT_SCAN.min(self.budget);
        let name = self.name;
        let (unread, seen) =
            count_above(from, last, look, name, |after, limit| self.read(id, owner, here, after, limit))?;
        self.budget -= seen;
        Ok(unread)
    }

    /// Where a log stands: through this worker's partition if it owns the log, else with
    /// every partition's staged messages.
    fn state(&self, id: LogId, owner: LogOwner, here: bool) -> Result<LogState, Refusal> {
        Ok(match here {
            true => self.ctx.partition.state(id, owner)?,
            false => self.ctx.shared.store.state_across(id, owner)?,
        })
    }

    fn read(
        &self,
        id: LogId,
        owner: LogOwner,
        here: bool,
        after: Seq,
        limit: u64,
    ) -> Result<Vec<(Seq, StoredMessage)>, Refusal> {
        let limit = limit as usize;
        Ok(match here {
            true => self.ctx.partition.read(id, owner, after, limit)?,
            false => self.ctx.shared.store.read_across(id, owner, after, limit)?,
        })
    }
}

/// What is unread for `name` in `from+1..=last` of a log read a page at a time by
/// `read_page(after, limit)`: the newest `look` messages are looked at, older ones count
/// without a look (beyond what a request may read, an estimate that errs towards unread).
/// Returns the count (at most `MAX_UNREAD`) and how many messages were read.
fn count_above(
    from: Seq,
    last: Seq,
    look: u64,
    name: &str,
    mut read_page: impl FnMut(Seq, u64) -> Result<Vec<(Seq, StoredMessage)>, Refusal>,
) -> Result<(u64, u64), Refusal> {
    if last <= from {
        return Ok((0, 0));
    }
    let look = look.min(last - from);
    let start = last - look;
    let mut unread = start - from;
    let (mut after, mut seen) = (start, 0);
    while seen < look {
        let page = read_page(after, PAGE.min(look - seen))?;
        let Some(&(last_read, _)) = page.last() else { break };
        (after, seen) = (last_read, seen + page.len() as u64);
        unread += page.iter().filter(|(_, message)| unread_for(message, name)).count() as u64;
    }
    Ok((unread.min(MAX_UNREAD), seen))
}

/// A chat's state before its messages are counted: its read mark and the user's cleared
/// mark (history cleared with `ClearHistory`: nothing at or below it counts as unread).
fn blank(chat: Chat, read_up_to: Seq, cleared_up_to: Seq) -> ChatState {
    ChatState { chat, last_seq: Seq::ZERO, read_up_to, unread: 0, cleared_up_to }
}

/// The direct or service chat an inbox message belongs to, and whether the user sent it;
/// None for an event (a deletion notice: nothing to read).
fn direct_chat(message: StoredMessage, name: &str) -> Option<(Chat, bool)> {
    if message.event.is_some() {
        return None;
    }
    Some(match (message.addressee, message.sender) {
        (Addressee::CopyTo(peer), _) => (Chat::User(peer), true),
        (_, SenderKind::Service) => (Chat::Service(message.from), false),
        // A note to oneself is one's own.
        (_, _) => {
            let own = message.from == name;
            (Chat::User(message.from), own)
        }
    })
}

/// Whether a group or support message above the mark is unread for `name`: anything from
/// someone else, but a deletion notice or a service's message that leaves `name` out.
fn unread_for(message: &StoredMessage, name: &str) -> bool {
    message.from != name
        && !matches!(message.event, Some(GroupEvent::MessageDeleted { .. }))
        && !matches!(&message.addressee, Addressee::AllBut(left_out) if left_out == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Content, MessageId};

    fn message(from: &str, sender: SenderKind, addressee: Addressee) -> StoredMessage {
        StoredMessage {
            message_id: MessageId(1),
            from: from.into(),
            sender,
            timestamp_ms: 0,
            content: Content::text("hi"),
            event: None,
            addressee,
        }
    }

    #[test]
    fn inbox_messages_belong_to_the_peer_or_the_service() {
        let user = |from| message(from, SenderKind::User, Addressee::Readers);
        assert_eq!(direct_chat(user("bob"), "alice"), Some((Chat::User("bob".into()), false)));
        assert_eq!(direct_chat(user("alice"), "alice"), Some((Chat::User("alice".into()), true)), "a note to self");
        let copy = message("alice", SenderKind::User, Addressee::CopyTo("bob".into()));
        assert_eq!(direct_chat(copy, "alice"), Some((Chat::User("bob".into()), true)), "a sent copy is one's own");
        let news = message("news", SenderKind::Service, Addressee::Readers);
        assert_eq!(direct_chat(news, "alice"), Some((Chat::Service("news".into()), false)));
        let deleted = StoredMessage {
            event: Some(GroupEvent::MessageDeleted { message_id: MessageId(1), by: "bob".into() }),
            ..user("bob")
        };
        assert_eq!(direct_chat(deleted, "alice"), None);
    }

    /// A log of `len` messages, `own_every`-th one from alice, the rest from bob, read as
    /// the store would (and counting the messages read).
    fn log_of(len: u64, own_every: u64) -> impl FnMut(Seq, u64) -> Result<Vec<(Seq, StoredMessage)>, Refusal> {
        move |after: Seq, limit: u64| {
            Ok((after.get() + 1..=len)
                .take(limit as usize)
                .map(|seq| {
                    let from = if seq % own_every == 0 { "alice" } else { "bob" };
                    (Seq(seq), message(from, SenderKind::User, Addressee::Readers))
                })
                .collect())
        }
    }

    #[test]
    fn counts_look_at_the_newest_messages_and_count_older_ones_without_a_look() {
        // Every tenth message is alice's own.
        assert_eq!(count_above(Seq(0), Seq(100), 1000, "alice", log_of(100, 10)).ok(), Some((90, 100)));
        assert_eq!(count_above(Seq(50), Seq(100), 1000, "alice", log_of(100, 10)).ok(), Some((45, 50)));
        assert_eq!(count_above(Seq(100), Seq(100), 1000, "alice", log_of(100, 10)).ok(), Some((0, 0)));
        // Looking at the newest 30 of 60 unread: 27 of them are bob's, the 30 older count.
        assert_eq!(count_above(Seq(40), Seq(100), 30, "alice", log_of(100, 10)).ok(), Some((57, 30)));
        // Nothing left to read: everything above the mark counts, up to the most a count says.
        assert_eq!(count_above(Seq(40), Seq(100), 0, "alice", log_of(100, 10)).ok(), Some((60, 0)));
        let big = 3 * MAX_UNREAD;
        assert_eq!(count_above(Seq(0), Seq(big), 0, "alice", log_of(big, 10)).ok(), Some((MAX_UNREAD, 0)));
        // Pages end early where messages are gone (a log shorter than its last sequence).
        assert_eq!(count_above(Seq(0), Seq(100), 1000, "alice", log_of(80, 10)).ok(), Some((72, 80)));
    }

    #[test]
    fn in_a_group_what_others_send_is_unread() {
        assert!(unread_for(&message("bob", SenderKind::User, Addressee::Readers), "alice"));
        assert!(!unread_for(&message("alice", SenderKind::User, Addressee::Readers), "alice"));
        let left_out = message("news", SenderKind::Service, Addressee::AllBut("alice".into()));
        assert!(!unread_for(&left_out, "alice"));
        assert!(unread_for(&left_out, "carol"));
        let event = StoredMessage {
            event: Some(GroupEvent::Added { username: "alice".into(), by: "bob".into() }),
            ..message("bob", SenderKind::User, Addressee::Readers)
        };
        assert!(unread_for(&event, "alice"), "an event by someone else is news");
    }
}
