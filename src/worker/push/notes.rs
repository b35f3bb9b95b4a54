//! Where push events come from: a stored message met a reader who is not connected. The
//! worker of the conversation (the recipient's for a direct message, the group's for a
//! group message) decides whether the reader is owed a notification and, if so, sends a
//! [`PushNote`] to the push queue's worker with the batch, after the message is durable
//! (all of a batch's notes in one command).
//!
//! In a cluster, a group's offline members homed on another node are told to their home,
//! which holds their devices: it makes their notes for its own push queue.
//!
//! No note for: group events (membership changes), a sender's own message, a service's
//! message unless `--push-system`, a reader without a push device, a muted chat.

use super::book::PushBook;
use crate::clock::now_ms;
use crate::cluster::wire::RemoteCmd;
use crate::metrics::Metrics;
use crate::protocol::{Chat, GroupId, MediaKind, SenderKind, SupportId, UserId};
use crate::route::Owner;
use crate::store::{PushMessage, StoredMessage};
use crate::worker::context::Ctx;
use crate::worker::message::sender_display_name;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A stored message for an offline reader, as the push queue needs it.
#[derive(Debug, Clone)]
pub struct PushNote {
    pub recipient: Arc<str>,
    pub uid: UserId,
    /// The preview in it only if some device of the reader shows previews. Shared by
    /// every reader of the message: a note to a thousand members is a thousand pointers.
    pub message: Arc<PushMessage>,
    /// The reader's unread messages in this chat, this one included.
    pub unread: u64,
}

/// An offline reader of a stored message: who, and how many messages of the chat it has
/// not read.
pub struct Reader {
    pub name: Arc<str>,
    pub uid: UserId,
    pub unread: u64,
}

/// A direct message (or a service's message) stored in an offline user's inbox.
pub fn direct(ctx: &mut Ctx, reader: Reader, stored: &StoredMessage) {
    if !notifies(ctx, stored) || *reader.name == *stored.from || !ctx.shared.push.has_devices(reader.uid) {
        return;
    }
    let chat = match stored.sender {
        // Staff write only in support conversations, never to an inbox.
        SenderKind::User | SenderKind::Staff => Chat::User(stored.from.clone()),
        SenderKind::Service => Chat::Service(stored.from.clone()),
    };
    let sender_name = sender_display_name(ctx.shared, stored);
    let chat_name = sender_name.clone();
    let notes = make(ctx, vec![reader], &chat, &chat_name, &sender_name, stored);
    send(ctx, notes);
}

/// A group message stored for these offline members. Members homed on other cluster nodes
/// have their push devices and mutes there: their home makes their notes
/// ([`from_elsewhere`]), once this message is durable.
pub fn group(ctx: &mut Ctx, id: GroupId, name: &str, readers: Vec<Reader>, stored: &StoredMessage) {
    let kind_notifies =
        stored.event.is_none() && (stored.sender != SenderKind::Service || ctx.config().push.system_messages);
    if readers.is_empty() || !kind_notifies {
        return;
    }
    let mut here = Vec::new();
    let mut elsewhere: BTreeMap<u8, Vec<(String, UserId, u64)>> = BTreeMap::new();
    for reader in readers.into_iter().filter(|r| *r.name != *stored.from) {
        match ctx.home_of(Owner::User(&reader.name)) {
            Some(node) => elsewhere.entry(node).or_default().push((reader.name.to_string(), reader.uid, reader.unread)),
            None => here.push(reader),
        }
    }
    let notifies_here = !here.is_empty() && notifies(ctx, stored);
    if elsewhere.is_empty() && !notifies_here {
        return;
    }
    let sender_name = sender_display_name(ctx.shared, stored);
    for (node, readers) in elsewhere {
        let message = message_of(ctx, &Chat::Group(id), name, &sender_name, stored, true);
        ctx.batch.send_to_node(node, RemoteCmd::PushNotes { message, readers }, None, true);
    }
    if notifies_here {
        let notes = make(ctx, here, &Chat::Group(id), name, &sender_name, stored);
        send(ctx, notes);
    }
}

/// Notes for this node's users of a message stored on another node (a group's): made with
/// their devices and mutes, as [`group`] makes them for the group's own node's users.
/// `message` has the other node's preview, dropped for a user none of whose devices shows
/// previews.
pub fn from_elsewhere(ctx: &mut Ctx, message: PushMessage, readers: Vec<(String, UserId, u64)>) {
    if !ctx.shared.push.anyone() {
        return;
    }
    let now = now_ms();
    let with_preview = Arc::new(message);
    let without_preview = Arc::new(PushMessage { preview: None, ..(*with_preview).clone() });
    let notes: Vec<PushNote> = {
        let book = ctx.shared.push.read();
        readers
            .into_iter()
            .filter_map(|(name, uid, unread)| {
                let prefs = book.get(&uid)?;
                if prefs.devices.is_empty() || prefs.muted(&with_preview.chat, now) {
                    return None;
                }
                let message = if prefs.any_previews() { with_preview.clone() } else { without_preview.clone() };
                Some(PushNote { recipient: name.into(), uid, message, unread })
            })
            .collect()
    };
    send(ctx, notes);
}

/// Whether anyone could be notified of this message at all (cheap; before any lookup).
pub fn worth_a_look(book: &PushBook, stored: &StoredMessage) -> bool {
    book.anyone() && stored.event.is_none()
}

fn notifies(ctx: &Ctx, stored: &StoredMessage) -> bool {
    worth_a_look(&ctx.shared.push, stored)
        && (stored.sender != SenderKind::Service || ctx.config().push.system_messages)
}

/// A support message stored for these offline active readers: the customer (to whom a
/// staff reply comes from the shop, naming the agent) and staff. The chat is
/// `Support(id)` and its name the shop's.
pub fn support(
    ctx: &mut Ctx,
    id: SupportId,
    shop: &str,
    customer: Option<Reader>,
    staff: Vec<Reader>,
    stored: &StoredMessage,
) {
    if !notifies(ctx, stored) {
        return;
    }
    let chat = Chat::Support(id);
    // The shop's name to show: as its app's clients know it.
    let shop_name = crate::apps::local(shop);
    let sender_name = sender_display_name(ctx.shared, stored);
    let mut notes = Vec::new();
    if let Some(customer) = customer.filter(|c| *c.name != *stored.from) {
        let as_shop = match stored.sender {
            SenderKind::Staff => StoredMessage { from: shop.to_string(), ..stored.clone() },
            _ => stored.clone(),
        };
        notes.extend(make(ctx, vec![customer], &chat, shop_name, &sender_name, &as_shop));
    }
    let staff = staff.into_iter().filter(|r| *r.name != *stored.from).collect();
    notes.extend(make(ctx, staff, &chat, shop_name, &sender_name, stored));
    send(ctx, notes);
}

fn make(
    ctx: &Ctx,
    readers: Vec<Reader>,
    chat: &Chat,
    chat_name: &str,
    sender_name: &str,
    stored: &StoredMessage,
) -> Vec<PushNote> {
    let now = now_ms();
    let without_preview = Arc::new(message_of(ctx, chat, chat_name, sender_name, stored, false));
    let preview = preview(stored, ctx.config().push.preview_chars);
    let with_preview = preview.map(|text| Arc::new(PushMessage { preview: Some(text), ..(*without_preview).clone() }));
    let book = ctx.shared.push.read();
    readers
        .into_iter()
        .filter_map(|reader| {
            let prefs = book.get(&reader.uid)?;
            if prefs.devices.is_empty() || prefs.muted(chat, now) {
                return None;
            }
            let message = match &with_preview {
                Some(with) if prefs.any_previews() => with.clone(),
                _ => without_preview.clone(),
            };
            Some(PushNote { recipient: reader.name, uid: reader.uid, message, unread: reader.unread })
        })
        .collect()
}

/// What a notification says of `stored`, with its preview if `with_preview` (and it has
/// one).
fn message_of(
    ctx: &Ctx,
    chat: &Chat,
    chat_name: &str,
    sender_name: &str,
    stored: &StoredMessage,
    with_preview: bool,
) -> PushMessage {
    PushMessage {
        chat: chat.clone(),
        chat_name: chat_name.to_string(),
        sender: stored.from.clone(),
        sender_name: sender_name.to_string(),
        sender_kind: stored.sender,
        message_id: stored.message_id,
        kind: stored.content.kind,
        preview: with_preview.then(|| preview(stored, ctx.config().push.preview_chars)).flatten(),
        timestamp_ms: stored.timestamp_ms,
    }
}

/// Counted against the bound on notes not yet taken by the push queue's worker when they
/// are made, not when the batch sends them: a batch of thousands of group messages would
/// otherwise hold millions of notes before its commit.
fn send(ctx: &mut Ctx, notes: Vec<PushNote>) {
    if notes.is_empty() {
        return;
    }
    let n = notes.len();
    if !ctx.shared.push.reserve_notes(n, ctx.config().push.max_pending_notes, now_ms()) {
        Metrics::add(&ctx.shared.metrics.push_dropped, n as u64);
        return;
    }
    let worker = ctx.worker_of(Owner::PushQueue);
    ctx.batch.push_notes(worker, notes);
}

/// The first `chars` characters of a text message; None for other kinds, text that is not
/// UTF-8, or previews of 0 characters.
pub fn preview(stored: &StoredMessage, chars: usize) -> Option<String> {
    if stored.content.kind != MediaKind::Text || chars == 0 {
        return None;
    }
    let text = std::str::from_utf8(&stored.content.body).ok()?;
    match text.char_indices().nth(chars) {
        Some((cut, _)) => Some(format!("{}…", &text[..cut])),
        None => Some(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Content;

    #[test]
    fn a_preview_is_the_first_characters_of_text_only() {
        let text = |body: &str| StoredMessage { content: Content::text(body), ..StoredMessage::example("") };
        assert_eq!(preview(&text("hello"), 5).as_deref(), Some("hello"));
        assert_eq!(preview(&text("hello world"), 5).as_deref(), Some("hello…"));
        assert_eq!(preview(&text("héllo wörld"), 4).as_deref(), Some("héll…"), "characters, not bytes");
        assert_eq!(preview(&text("hello"), 0), None);
        let mut image = text("caption");
        image.content.kind = MediaKind::Image;
        assert_eq!(preview(&image, 100), None);
        let mut binary = text("");
        binary.content.body = vec![0xff, 0xfe];
        assert_eq!(preview(&binary, 100), None);
    }
}
