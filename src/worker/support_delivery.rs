//! Delivery of customer-support conversations (see `support` for what they are): a new
//! message stored and pushed to the active readers' devices that are caught up, backlogs
//! pumped a device at a time, and each device's acks and resyncs. Who is pushed what: the
//! customer and, while nobody claims the conversation, every staff member (then only the
//! agent); a device is not pushed its user's own message if it is a legacy one or sent it
//! while caught up, and a legacy device never gets what only named devices know.

use super::backlog;
use super::context::{Ctx, Waiting};
use super::cursor::Cursor;
use super::device_cursors::is_legacy;
use super::message::{self, wire, wire_size, Origin};
use super::push::notes::{self, Reader};
use super::refusal::{Handled, Refusal};
use super::support::{not_a_reader, ShopState};
use crate::apps::wire;
use crate::protocol::{Conversation, Message, Push, Reply, SenderKind, Seq, ServerFrame, SupportId};
use crate::route::{ConnId, SessionUser};
use crate::store::{LogId, StoredMessage};
use std::sync::Arc;

impl ShopState {
    /// Stores `stored` as the conversation's next message, counts it as read by the device
    /// that sent it when that device had read everything before it, and pushes it to the
    /// active readers' devices whose cursors are caught up.
    pub fn append(
        &mut self,
        ctx: &mut Ctx,
        id: SupportId,
        stored: StoredMessage,
        origin: Origin,
        sender: &SessionUser,
    ) -> Handled {
        let retention = ctx.config().group_retention.max(1);
        let conversation = self.conversation(id)?;
        let seq = conversation.last_seq.next();
        message::store(ctx, LogId::Support, id.into(), seq, &stored, origin)?;
        conversation.last_seq = seq;
        conversation.last_ms = stored.timestamp_ms;
        // The sender has its own message (it has the receipt): a device that had read
        // everything before it need not ack it to let it be deleted.
        let position = conversation.readers.get(&sender.name).and_then(|r| r.devices.get(&sender.device));
        if position.is_some_and(|c| c.acked.next() == seq) {
            conversation.advance(ctx, sender, seq)?;
        }
        self.deliver(ctx, id, seq, stored, origin.reply_to.map(|(conn, _)| conn))?;
        let conversation = self.conversation(id)?;
        if seq - conversation.floor > retention {
            conversation.raise_floor(ctx, seq - retention)?;
        }
        conversation.trim(ctx)
    }

    /// Pushes a just-stored message to every active reader device whose cursor is caught
    /// up, but those that pass over it (see [`passes_over`]; `sender`: the session that sent
    /// it); notes for active readers who are offline.
    fn deliver(
        &mut self,
        ctx: &mut Ctx,
        id: SupportId,
        seq: Seq,
        stored: StoredMessage,
        sender: Option<ConnId>,
    ) -> Handled {
        let window = ctx.window();
        let size = wire_size(&stored);
        let shop = self.name.clone();
        let conversation = self.conversation(id)?;
        if notes::worth_a_look(&ctx.shared.push, &stored) {
            let book = ctx.shared.push.read();
            let mut customer = None;
            let mut staff = Vec::new();
            for (name, reader) in &conversation.readers {
                let offline = !reader.devices.online() && conversation.active(name);
                if !offline || book.get(&reader.uid).is_none_or(|prefs| prefs.devices.is_empty()) {
                    continue;
                }
                let unread = seq - reader.devices.lowest_acked().unwrap_or(conversation.floor);
                let note = Reader { name: name.clone(), uid: reader.uid, unread };
                match **name == *conversation.customer {
                    true => customer = Some(note),
                    false => staff.push(note),
                }
            }
            drop(book);
            notes::support(ctx, id, &shop, customer, staff, &stored);
        }
        // Encoded once per audience (the customer sees a staff reply as the shop's) for
        // everyone whose previous push was seq - 1; anyone else gets its own copy.
        let customer_copy = support_wire(ctx, id, seq, seq - 1, stored.clone(), &shop, true);
        let staff_copy = support_wire(ctx, id, seq, seq - 1, stored.clone(), &shop, false);
        let encode = |m: &Message| -> Arc<[u8]> { wire::encode(ServerFrame::Push(Push::Message(m.clone()))).into() };
        let (customer_bytes, staff_bytes) = (encode(&customer_copy), encode(&staff_copy));
        let mut delivered = 0;
        let mut starved = Vec::new();
        let active: Vec<Arc<str>> =
            conversation.readers.keys().filter(|name| conversation.active(name)).cloned().collect();
        for name in active {
            let to_customer = *name == *conversation.customer;
            let Some(reader) = conversation.readers.get_mut(&name) else { continue };
            for (device, cursor) in reader.devices.iter_mut() {
                let sending = sender.is_some() && cursor.conn() == sender;
                if passes_over(&name, device, &stored, sending) {
                    if let Some(session) = cursor.session.as_mut() {
                        if session.sent_upto.next() == seq {
                            session.sent_upto = seq;
                        }
                    }
                    continue;
                }
                if let Some((conn, prev)) = cursor.take_live(seq, size, window) {
                    delivered += 1;
                    let (bytes, copy) = match to_customer {
                        true => (&customer_bytes, &customer_copy),
                        false => (&staff_bytes, &staff_copy),
                    };
                    if prev + 1 == seq {
                        ctx.batch.frame_bytes(conn, bytes, true);
                    } else {
                        let message = Message { prev_seq: prev, ..copy.clone() };
                        ctx.batch.push(conn, Push::Message(message), true);
                    }
                } else if cursor.stalled(seq, window).is_some() {
                    starved.push((name.clone(), device.clone()));
                }
            }
        }
        for (name, device) in starved {
            if let Some(cursor) = conversation.readers.get(&name).and_then(|r| r.devices.get(&device)) {
                ctx.wait_if_starved(cursor, seq, Waiting::Support(id, name, device));
            }
        }
        ctx.delivered(delivered);
        Ok(())
    }

    /// Pushes every active reader's backlog (a shop just loaded, a claim released).
    pub fn pump_all(&mut self, ctx: &mut Ctx, id: SupportId) -> Handled {
        let Some(conversation) = self.conversations.get(&id) else { return Ok(()) };
        let online: Vec<Arc<str>> = conversation
            .readers
            .iter()
            .filter(|(name, r)| r.devices.online() && conversation.active(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in online {
            self.pump_reader(ctx, id, &name)?;
        }
        Ok(())
    }

    /// Pushes the backlog of every online device of a reader (if it is active).
    pub fn pump_reader(&mut self, ctx: &mut Ctx, id: SupportId, name: &str) -> Handled {
        let online = self
            .conversations
            .get(&id)
            .and_then(|c| c.readers.get(name))
            .map(|r| r.devices.online_devices())
            .unwrap_or_default();
        for device in online {
            self.pump_device(ctx, id, name, &device)?;
        }
        Ok(())
    }

    /// Pushes a reader device's backlog while its window and budget allow (if the reader
    /// is active); waits for the budget if that is what stops it.
    pub fn pump_device(&mut self, ctx: &mut Ctx, id: SupportId, name: &str, device: &str) -> Handled {
        let shop = self.name.clone();
        let Some(conversation) = self.conversations.get_mut(&id) else { return Ok(()) };
        if !conversation.active(name) {
            return Ok(());
        }
        let (last_seq, floor) = (conversation.last_seq, conversation.floor);
        let to_customer = *conversation.customer == *name;
        let Some((key, reader)) = conversation.readers.get_key_value(name) else { return Ok(()) };
        let (key, device_key) = (key.clone(), reader.devices.key(device));
        let Some(cursor) = conversation.readers.get_mut(name).and_then(|r| r.devices.get_mut(device)) else {
            return Ok(());
        };
        // Back in the conversation after a claim elsewhere: what retention deleted meanwhile
        // is passed over.
        if cursor.acked < floor {
            cursor.ack(floor);
        }
        fill(ctx, id, last_seq, (name, device), &shop, to_customer, cursor)?;
        if let Some(device_key) = device_key {
            ctx.wait_if_starved(cursor, last_seq, Waiting::Support(id, key, device_key));
        }
        Ok(())
    }

    /// A reader acknowledges everything up to `up_to`; what every reader has is deleted.
    /// The caller then wakes what waits for the session's budget.
    pub fn ack(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        id: SupportId,
        user: &SessionUser,
        up_to: Seq,
    ) -> Handled {
        let conversation = self.conversation(id)?;
        let last_seq = conversation.last_seq;
        conversation.reader(&user.name)?;
        if up_to > last_seq {
            return Err(Refusal::beyond("ack", up_to, last_seq));
        }
        // Recorded first: a refused ack (a full disk) leaves the cursor where it was.
        conversation.advance(ctx, user, up_to)?;
        conversation.trim(ctx)?;
        let acked = conversation.reader(&user.name)?.devices.get(&user.device).map_or(up_to, |c| c.acked);
        let reply = Reply::Acked { conversation: Conversation::Support(id), up_to: acked };
        ctx.batch.reply(conn, request_id, reply, true);
        Ok(())
    }

    pub fn resync(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        id: SupportId,
        user: &SessionUser,
        after: Seq,
    ) -> Handled {
        let conversation = self.conversation(id)?;
        let last_seq = conversation.last_seq;
        if after > last_seq {
            conversation.reader(&user.name)?;
            return Err(Refusal::beyond("resync", after, last_seq));
        }
        // A device this conversation has not seen log in yet gets its cursor first.
        conversation.advance(ctx, user, Seq::ZERO)?;
        let reader = conversation.reader(&user.name)?;
        let Some(cursor) = reader.devices.get_mut(&user.device) else { return Err(not_a_reader()) };
        let after = cursor.resync(after);
        let reply = Reply::Resynced { conversation: Conversation::Support(id), after, last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump_device(ctx, id, &user.name, &user.device)
    }
}

/// A stored support message as pushed to one audience: to the customer a staff member's
/// message is the shop's (`from` = the shop's name), its display name the agent's.
pub fn support_wire(
    ctx: &Ctx,
    id: SupportId,
    seq: Seq,
    prev: Seq,
    stored: StoredMessage,
    shop: &str,
    to_customer: bool,
) -> Message {
    let mut message = wire(ctx.shared, Conversation::Support(id), seq, prev, stored);
    if to_customer && message.sender == SenderKind::Staff {
        message.from = shop.to_string();
    }
    message
}

/// Whether reader `name`'s `device` is not pushed `stored`: its own message, to a legacy
/// device (it has the receipt) or to the named device that sent it (`sending`, pushed live:
/// it counts it as sent); what only named devices know, to a legacy device.
fn passes_over(name: &str, device: &str, stored: &StoredMessage, sending: bool) -> bool {
    match stored.from == name {
        true => is_legacy(device) || sending,
        false => is_legacy(device) && stored.device_only(),
    }
}

/// Pushes a reader device's backlog while its window and budget allow, passing over what it
/// is not sent.
fn fill(
    ctx: &mut Ctx,
    id: SupportId,
    last_seq: Seq,
    (name, device): (&str, &str),
    shop: &str,
    to_customer: bool,
    cursor: &mut Cursor,
) -> Handled {
    let log = backlog::Log { id: LogId::Support, owner: id.into(), last_seq };
    let skip = |stored: &StoredMessage| passes_over(name, device, stored, false);
    let to_wire =
        |ctx: &Ctx, seq, prev, stored| Push::Message(support_wire(ctx, id, seq, prev, stored, shop, to_customer));
    // The conversation's retention may have deleted what a reader left out of a claim did
    // not read: it is passed over.
    backlog::fill(ctx, &log, cursor, skip, to_wire)?;
    Ok(())
}
