//! Conversation history (protocol.md "History"): pages of what a chat's log keeps, read
//! backwards, on the worker that owns the log: the caller's inbox for a direct chat (the
//! caller's worker), the group's log (the group's worker), the support conversation's log
//! (the shop's worker). Deleting and clearing are in `deletion`; what the logs keep, and
//! for how long, is `retention`'s.
//!
//! - A direct chat is the caller's inbox filtered to it: the messages from that user (or
//!   service), and the caller's sent copies to it (`Addressee::CopyTo`).
//! - A group member sees what was stored while it was a member: from the event of its
//!   latest joining (`Created`, `Joined`, `Added`), found by looking back through the log
//!   and remembered here (looked for again only in what came after).
//! - Nothing at or below the caller's cleared mark is shown.
//!
//! One page looks at [`SCAN_LIMIT`] messages at most, whatever the chat: a chat among many
//! in an inbox, or a member's joining far back in a busy group, cannot make a request
//! costly. A page that stops there says `more`; one that found nothing is remembered, so
//! that the same request again goes on below where it stopped (the client needs no other
//! position than the oldest message it has). It is remembered for the connection that
//! asked, not the user: two devices paging one chat would otherwise take each other's
//! stopping points, one skipping what the other's page looked at, the other starting over
//! for ever. It is forgotten when the connection closes.
//!
//! History is also where each worker's retention pass keeps its round ([`History::pass`]).

use super::context::Ctx;
use super::cursor::READ_CHUNK;
use super::deletion;
use super::groups::{GroupState, Groups};
use super::inbox::Inboxes;
use super::message::{wire, wire_size};
use super::refusal::{Handled, Refusal};
use super::retention::LogRef;
use super::support::{ShopState, Shops};
use super::support_delivery;
use crate::protocol::{
    Chat, Conversation, ErrorCode, GroupEvent, GroupId, Message, Reply, Request, SenderKind, Seq, SupportId,
};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, StoredMessage};
use log::debug;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Messages a page holds when the request says 0...
const DEFAULT_PAGE: u32 = 50;
/// ...and at most: a screenful or two, and a bounded reply.
const MAX_PAGE: u32 = 100;
/// Bytes of messages a page holds at most (a page always holds one if there is one): a
/// hundred of the largest messages would be a 3 MB frame.
const PAGE_BYTES: usize = 1024 * 1024;
/// Messages one request looks at, at most (see the module doc).
pub const SCAN_LIMIT: u64 = 4096;
/// Logs one retention pass settles at most (most cost nothing: see `retention`).
const PASS_LOGS: usize = 4096;
/// Connections whose empty pages are remembered (per worker) so their request can go on
/// where it stopped; beyond, the memory is cleared (a request then starts again from its
/// own `before`).
const MAX_RESUMES: usize = 4096;
/// Chats one connection's empty pages are remembered for: a client pages back through one
/// chat, or a few, at a time; beyond, that connection's are cleared.
const MAX_RESUMES_PER_CONN: usize = 8;

/// What a worker keeps for history: where members' views of its groups start, the empty
/// pages to go on from, and the retention pass's round.
#[derive(Default)]
pub struct History {
    joins: HashMap<(GroupId, Arc<str>), JoinSearch>,
    resumes: HashMap<ConnId, HashMap<Chat, Resume>>,
    /// The logs the retention pass has yet to settle in its current round.
    due: VecDeque<Due>,
}

/// A log the retention pass is to settle.
enum Due {
    Inbox(Arc<str>),
    Group(GroupId),
    Support(SupportId),
}

/// An empty page with `more`: asked again with the same `before`, the scan goes on below.
struct Resume {
    before: Seq,
    below: Seq,
}

/// The search for where a member's view of a group starts.
struct JoinSearch {
    /// Every sequence up to here has been looked at (or is being, going down).
    top: Seq,
    state: Search,
}

enum Search {
    /// Looking back from `top`; everything above `next` was looked at.
    Down { next: Seq },
    /// The latest event that made the member a member (None: none is kept, so it has been
    /// one since before everything kept).
    Done(Option<Seq>),
}

/// One page request, however its chat is stored.
struct PageRequest {
    conn: ConnId,
    chat: Chat,
    before: Seq,
    limit: u32,
}

/// Where a page may look: below `top` (exclusive) and above `bottom` (the floor, the
/// caller's cleared mark, where its membership starts).
struct Bounds {
    log: LogRef,
    top: Seq,
    bottom: Seq,
}

impl Bounds {
    /// All a log keeps (above `floor`, up to `last_seq`) but what the caller cleared of
    /// `chat`.
    fn uncleared(
        ctx: &Ctx,
        user: &SessionUser,
        chat: &Chat,
        log: LogRef,
        floor: Seq,
        last_seq: Seq,
    ) -> Result<Self, Refusal> {
        let cleared = ctx.shared.store.cleared_up_to(user.uid, chat)?;
        Ok(Bounds { log, top: last_seq.next(), bottom: floor.max(cleared) })
    }
}

impl History {
    /// `History`, `DeleteMessage` or `ClearHistory` of a direct chat or a group, on the
    /// worker it was routed to: the caller's, or the group's.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        ctx: &mut Ctx,
        inboxes: &mut Inboxes,
        groups: &mut Groups,
        conn: ConnId,
        request_id: u32,
        user: SessionUser,
        request: Request,
    ) -> Handled {
        match request {
            Request::History { chat: Chat::Group(id), before, limit } => {
                let group = groups.load(ctx, id)?;
                self.group(ctx, group, conn, request_id, &user, before, limit)
            }
            Request::History { chat, before, limit } => {
                self.direct(ctx, inboxes, conn, request_id, &user, chat, before, limit)
            }
            Request::DeleteMessage { chat: Chat::Group(id), message_id } => {
                let group = groups.load(ctx, id)?;
                deletion::group(ctx, group, conn, request_id, &user, message_id)
            }
            Request::DeleteMessage { chat: Chat::User(peer), message_id } => {
                deletion::asked(ctx, inboxes, conn, request_id, user, peer, message_id)
            }
            Request::DeleteMessage { .. } => {
                Err(Refusal::new(ErrorCode::BadRequest, "a service's messages are not deleted by their readers"))
            }
            Request::ClearHistory { chat: Chat::Group(id), up_to } => {
                let group = groups.load(ctx, id)?;
                group.role_of(&user.name)?;
                let last_seq = group.last_seq;
                deletion::clear(ctx, conn, request_id, &user, Chat::Group(id), up_to, last_seq)
            }
            Request::ClearHistory { chat, up_to } => {
                deletion::clear_direct(ctx, inboxes, conn, request_id, &user, chat, up_to)
            }
            _ => Err(Refusal::new(ErrorCode::BadRequest, "not a history request")),
        }
    }

    /// `History`, `DeleteMessage` or `ClearHistory` of support conversation `id`, on its
    /// shop's worker.
    #[allow(clippy::too_many_arguments)]
    pub fn support_request(
        &mut self,
        ctx: &mut Ctx,
        shop: &mut ShopState,
        id: SupportId,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        request: Request,
    ) -> Handled {
        match request {
            Request::History { before, limit, .. } => {
                self.support(ctx, shop, id, conn, request_id, user, before, limit)
            }
            Request::DeleteMessage { message_id, .. } => {
                deletion::support(ctx, shop, id, conn, request_id, user, message_id)
            }
            Request::ClearHistory { up_to, .. } => {
                let last_seq = shop.conversation_of_reader(id, &user.name)?.last_seq;
                deletion::clear(ctx, conn, request_id, user, Chat::Support(id), up_to, last_seq)
            }
            _ => Err(Refusal::new(ErrorCode::BadRequest, "not a history request")),
        }
    }

    /// Settles up to `PASS_LOGS` loaded logs (`retention::settle`, through each owner's own
    /// call of it), going on where the last pass stopped; a new round lists the logs loaded
    /// by then.
    pub fn pass(&mut self, ctx: &mut Ctx, inboxes: &mut Inboxes, groups: &mut Groups, shops: &mut Shops) {
        if self.due.is_empty() {
            self.due.extend(inboxes.names().into_iter().map(Due::Inbox));
            self.due.extend(groups.ids().into_iter().map(Due::Group));
            self.due.extend(shops.conversation_ids().into_iter().map(Due::Support));
        }
        for _ in 0..PASS_LOGS {
            let Some(due) = self.due.pop_front() else { break };
            let settled = match &due {
                Due::Inbox(name) => inboxes.get_mut(name).map_or(Ok(()), |inbox| inbox.settle(ctx)),
                Due::Group(id) => groups.get_mut(*id).map_or(Ok(()), |group| group.trim(ctx)),
                Due::Support(id) => match shops.by_conversation(*id) {
                    Some(shop) => shop.conversation(*id).and_then(|conversation| conversation.trim(ctx)),
                    None => Ok(()),
                },
            };
            if let Err(refusal) = settled {
                // Tried again at the next round.
                debug!("history retention: {}", refusal.message);
            }
        }
    }

    /// A page of a direct chat (`User` or `Service`), from the caller's inbox.
    #[allow(clippy::too_many_arguments)]
    pub fn direct(
        &mut self,
        ctx: &mut Ctx,
        inboxes: &mut Inboxes,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        chat: Chat,
        before: Seq,
        limit: u32,
    ) -> Handled {
        let keep: Box<dyn Fn(&StoredMessage) -> bool> = match chat.clone() {
            Chat::User(peer) => Box::new(move |m: &StoredMessage| in_direct_chat(m, &peer)),
            Chat::Service(name) => Box::new(move |m: &StoredMessage| m.sender == SenderKind::Service && m.from == name),
            _ => return Err(Refusal::new(ErrorCode::BadRequest, "not a direct chat")),
        };
        let inbox = inboxes.known(ctx, &user.name)?;
        let bounds = Bounds::uncleared(ctx, user, &chat, inbox.log(), inbox.floor, inbox.last_seq)?;
        let request = PageRequest { conn, chat, before, limit };
        let to_wire = |ctx: &Ctx, seq, stored| wire(ctx.shared, Conversation::Inbox, seq, Seq::ZERO, stored);
        let page = self.page(ctx, request, &bounds, SCAN_LIMIT, keep, to_wire)?;
        ctx.batch.reply(conn, request_id, page, false);
        Ok(())
    }

    /// A page of a group, for a member: what was stored since it last became one.
    #[allow(clippy::too_many_arguments)]
    pub fn group(
        &mut self,
        ctx: &mut Ctx,
        group: &GroupState,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        before: Seq,
        limit: u32,
    ) -> Handled {
        if group.role_of(&user.name).is_err() {
            self.joins.remove(&(group.id, user.name.clone()));
            return Err(Refusal::new(ErrorCode::NotAMember, "not a member of this group"));
        }
        let chat = Chat::Group(group.id);
        let mut bounds = Bounds::uncleared(ctx, user, &chat, group.log(), group.floor, group.last_seq)?;
        let mut budget = SCAN_LIMIT;
        let request = PageRequest { conn, chat, before, limit };
        let Some(joined) = self.joined(ctx, group, &user.name, &mut budget)? else {
            // Still looking for where the member's view starts: the same request goes on.
            let page = Reply::HistoryPage { chat: request.chat, messages: Vec::new(), more: true };
            ctx.batch.reply(conn, request_id, page, false);
            return Ok(());
        };
        bounds.bottom = bounds.bottom.max(just_before(joined));
        let id = group.id;
        let to_wire = |ctx: &Ctx, seq, stored| wire(ctx.shared, Conversation::Group(id), seq, Seq::ZERO, stored);
        let page = self.page(ctx, request, &bounds, budget, |_| true, to_wire)?;
        ctx.batch.reply(conn, request_id, page, false);
        Ok(())
    }

    /// A page of a support conversation, for its customer or a staff member of its shop.
    #[allow(clippy::too_many_arguments)]
    pub fn support(
        &mut self,
        ctx: &mut Ctx,
        shop: &mut ShopState,
        id: SupportId,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        before: Seq,
        limit: u32,
    ) -> Handled {
        let shop_name = shop.name.clone();
        let conversation = shop.conversation_of_reader(id, &user.name)?;
        let to_customer = *conversation.customer == *user.name;
        let chat = Chat::Support(id);
        let (log, floor, last_seq) = (conversation.log(), conversation.floor, conversation.last_seq);
        let bounds = Bounds::uncleared(ctx, user, &chat, log, floor, last_seq)?;
        let request = PageRequest { conn, chat, before, limit };
        let to_wire = |ctx: &Ctx, seq, stored| {
            support_delivery::support_wire(ctx, id, seq, Seq::ZERO, stored, &shop_name, to_customer)
        };
        let page = self.page(ctx, request, &bounds, SCAN_LIMIT, |_| true, to_wire)?;
        ctx.batch.reply(conn, request_id, page, false);
        Ok(())
    }

    /// Reads one page back from `before` (or from an empty page's stopping point), keeping
    /// the messages `keep` says belong to the chat, oldest first in the reply.
    fn page(
        &mut self,
        ctx: &mut Ctx,
        request: PageRequest,
        bounds: &Bounds,
        budget: u64,
        keep: impl Fn(&StoredMessage) -> bool,
        to_wire: impl Fn(&Ctx, Seq, StoredMessage) -> Message,
    ) -> Result<Reply, Refusal> {
        let PageRequest { conn, chat, before, limit } = request;
        let limit = match limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        } as usize;
        let mut below = match before {
            Seq::ZERO => bounds.top,
            before => before.min(bounds.top),
        };
        if let Some(resume) = self.resumes.get_mut(&conn).and_then(|of_conn| of_conn.remove(&chat)) {
            if resume.before == before {
                below = below.min(resume.below);
            }
        }
        let scanned = scan_back(ctx, bounds, below, limit, budget, keep)?;
        if scanned.found.is_empty() && scanned.more {
            if self.resumes.len() >= MAX_RESUMES && !self.resumes.contains_key(&conn) {
                self.resumes.clear();
            }
            let of_conn = self.resumes.entry(conn).or_default();
            if of_conn.len() >= MAX_RESUMES_PER_CONN {
                of_conn.clear();
            }
            of_conn.insert(chat.clone(), Resume { before, below: scanned.lowest });
        }
        let messages = scanned.found.into_iter().rev().map(|(seq, stored)| to_wire(ctx, seq, stored)).collect();
        Ok(Reply::HistoryPage { chat, messages, more: scanned.more })
    }

    /// The connection closed: its empty pages are not asked again.
    pub fn closed(&mut self, conn: ConnId) {
        self.resumes.remove(&conn);
    }

    /// The first sequence of `name`'s view of the group (the event that last made it a
    /// member, or the first kept message), or None while the search goes on (it spends at
    /// most `budget` messages per request).
    fn joined(
        &mut self,
        ctx: &mut Ctx,
        group: &GroupState,
        name: &Arc<str>,
        budget: &mut u64,
    ) -> Result<Option<Seq>, Refusal> {
        let search = self
            .joins
            .entry((group.id, name.clone()))
            .or_insert(JoinSearch { top: group.last_seq, state: Search::Down { next: group.last_seq } });
        let log = group.log();
        while *budget > 0 {
            match search.state {
                Search::Down { next } => {
                    if next <= group.floor {
                        search.state = Search::Done(None);
                        continue;
                    }
                    let take = (next - group.floor).min(READ_CHUNK).min(*budget) as usize;
                    let chunk = ctx.partition.read_back(log.id, log.owner, next.next(), take)?;
                    let Some(&(lowest, _)) = chunk.last() else {
                        search.state = Search::Done(None);
                        continue;
                    };
                    search.state = Search::Down { next: just_before(lowest) };
                    for (seq, stored) in chunk {
                        *budget -= 1;
                        if makes_member(&stored, name) {
                            search.state = Search::Done(Some(seq));
                            break;
                        }
                    }
                }
                Search::Done(found) if search.top >= group.last_seq => {
                    // Nothing kept from before the floor: the view starts above it.
                    return Ok(Some(found.unwrap_or(Seq::ZERO).max(group.floor.next())));
                }
                Search::Done(mut found) => {
                    // Messages since the last look: a later joining (after leaving) moves it.
                    let take = (group.last_seq - search.top).min(READ_CHUNK).min(*budget) as usize;
                    let chunk = ctx.partition.read(log.id, log.owner, search.top, take)?;
                    let Some(&(highest, _)) = chunk.last() else {
                        search.top = group.last_seq;
                        continue;
                    };
                    for (seq, stored) in chunk {
                        *budget -= 1;
                        if makes_member(&stored, name) {
                            found = Some(seq);
                        }
                    }
                    search.top = highest;
                    search.state = Search::Done(found);
                }
            }
        }
        Ok(None)
    }
}

/// What one backward scan found: the chat's messages newest first, whether older ones may
/// be kept, and the lowest sequence looked at.
struct Scanned {
    found: Vec<(Seq, StoredMessage)>,
    more: bool,
    lowest: Seq,
}

/// Looks back from `below` towards `bounds.bottom` for up to `limit` messages `keep` takes,
/// looking at `budget` messages at most.
fn scan_back(
    ctx: &Ctx,
    bounds: &Bounds,
    below: Seq,
    limit: usize,
    mut budget: u64,
    keep: impl Fn(&StoredMessage) -> bool,
) -> Result<Scanned, Refusal> {
    let (mut found, mut bytes, mut next) = (Vec::new(), 0, below);
    loop {
        // Nothing is left between the bottom and `next`.
        if next <= bounds.bottom.next() {
            return Ok(Scanned { found, more: false, lowest: next });
        }
        if budget == 0 {
            return Ok(Scanned { found, more: true, lowest: next });
        }
        let take = (next - bounds.bottom - 1).min(READ_CHUNK).min(budget) as usize;
        let chunk = ctx.partition.read_back(bounds.log.id, bounds.log.owner, next, take)?;
        if chunk.is_empty() {
            // Below the log's floor: nothing older is kept.
            return Ok(Scanned { found, more: false, lowest: next });
        }
        for (seq, stored) in chunk {
            if seq <= bounds.bottom {
                return Ok(Scanned { found, more: false, lowest: next });
            }
            budget -= 1;
            next = seq;
            if keep(&stored) {
                bytes += wire_size(&stored);
                found.push((seq, stored));
                if found.len() >= limit || bytes >= PAGE_BYTES {
                    return Ok(Scanned { found, more: seq > bounds.bottom.next(), lowest: seq });
                }
            }
        }
    }
}

/// Whether an inbox message belongs to the direct chat with `peer`: received from it, or
/// the caller's copy of what it sent it.
pub fn in_direct_chat(stored: &StoredMessage, peer: &str) -> bool {
    match &stored.addressee {
        Addressee::CopyTo(to) => to == peer,
        _ => stored.from == peer && stored.sender != SenderKind::Service,
    }
}

/// The sequence before `seq` (0 before the first).
fn just_before(seq: Seq) -> Seq {
    Seq(seq.get().saturating_sub(1))
}

/// Whether a group message is the event that made `name` a member.
fn makes_member(stored: &StoredMessage, name: &str) -> bool {
    match &stored.event {
        Some(GroupEvent::Created { by }) => by == name,
        Some(GroupEvent::Joined { username } | GroupEvent::Added { username, .. }) => username == name,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Content;

    fn from(name: &str, addressee: Addressee) -> StoredMessage {
        StoredMessage { from: name.into(), addressee, ..StoredMessage::example("hi") }
    }

    #[test]
    fn a_direct_chat_is_what_the_peer_sent_and_the_copies_of_what_was_sent_it() {
        assert!(in_direct_chat(&from("bob", Addressee::Readers), "bob"));
        assert!(!in_direct_chat(&from("carol", Addressee::Readers), "bob"));
        assert!(in_direct_chat(&from("alice", Addressee::CopyTo("bob".into())), "bob"));
        assert!(!in_direct_chat(&from("alice", Addressee::CopyTo("carol".into())), "bob"));
        let service = StoredMessage { sender: SenderKind::Service, ..from("bob", Addressee::Readers) };
        assert!(!in_direct_chat(&service, "bob"), "a service named like a user is another chat");
    }

    #[test]
    fn a_member_is_made_by_creating_joining_or_being_added() {
        let event =
            |event| StoredMessage { event: Some(event), content: Content::text(""), ..StoredMessage::example("") };
        assert!(makes_member(&event(GroupEvent::Created { by: "bob".into() }), "bob"));
        assert!(makes_member(&event(GroupEvent::Joined { username: "bob".into() }), "bob"));
        assert!(makes_member(&event(GroupEvent::Added { username: "bob".into(), by: "al".into() }), "bob"));
        assert!(!makes_member(&event(GroupEvent::Added { username: "al".into(), by: "bob".into() }), "bob"));
        assert!(!makes_member(&event(GroupEvent::Left { username: "bob".into() }), "bob"));
        assert!(!makes_member(&StoredMessage::example("Joined bob"), "bob"));
    }
}
