//! Customer-support conversations, owned by the worker of their shop (`Owner::Shop`): the
//! shops' state, sends, delivery, acks, resyncs and trimming. Claims, hand-overs, listings
//! and staff changes are in `claims`.
//!
//! A conversation is one customer's with one shop, stored once in its own log (like a
//! group's history). Its readers are the customer and every staff member of the shop,
//! each with a [`Cursor`]. While nobody claims it every staff member is an *active*
//! reader; once an agent claims it, only the customer and that agent are: only they are
//! pushed its messages (live or as backlog at login). Every reader's position holds the
//! messages on disk (within retention), so the other staff, who are not pushed anything
//! while the claim lasts, get what they have not read when it comes back to them (a
//! hand-over or a release): a new agent sees the history.
//!
//! All of a shop's conversations live on one worker, so a claim and the staff list are
//! changed without any lock shared with another worker; one very busy shop is one
//! worker's load.

use super::backlog;
use super::context::{Ctx, Waiting};
use super::cursor::{Cursor, Session};
use super::message::{self, wire, wire_size, Origin, RetryKey};
use super::push::notes::{self, Reader};
use super::refusal::{Handled, Refusal};
use super::retention::{self, LogRef, Retention};
use crate::apps::{local, wire};
use crate::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, Message, Push, Reply, SenderKind, Seq, ServerFrame, SupportId,
    UserId,
};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, LogId, ShopRecord, StaffRecord, StoredMessage, SupportRecord};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One reader of a conversation: its customer or a staff member of the shop.
pub struct SupportReader {
    pub uid: UserId,
    pub cursor: Cursor,
}

pub struct SupportConversation {
    pub id: SupportId,
    pub customer: Arc<str>,
    pub customer_uid: UserId,
    /// The agent answering it; None while every staff member may.
    pub claimed_by: Option<Arc<str>>,
    pub created_ms: u64,
    /// When its last message was stored (for listings).
    pub last_ms: u64,
    /// Everything at or below is deleted.
    pub floor: Seq,
    pub last_seq: Seq,
    /// The customer's cursor and every staff member's, by username.
    pub readers: BTreeMap<Arc<str>, SupportReader>,
    /// What history keeps below the readers' positions (see `retention`).
    pub retention: Retention,
}

pub struct ShopState {
    pub name: Arc<str>,
    pub id: u64,
    pub created_ms: u64,
    pub staff: BTreeMap<Arc<str>, UserId>,
    pub conversations: BTreeMap<SupportId, SupportConversation>,
    /// Each customer's conversation with this shop.
    pub by_customer: HashMap<Arc<str>, SupportId>,
}

/// The shops of this worker's partition touched since start, and which of them each
/// connection has a reader session in.
#[derive(Default)]
pub struct Shops {
    shops: HashMap<Arc<str>, ShopState>,
    index: ShopsIndex,
}

/// What [`Shops`] knows beside the shops themselves, lent to a shop's methods that open
/// conversations or attach sessions.
#[derive(Default)]
pub struct ShopsIndex {
    /// The shop of every loaded conversation (to wake a cursor known by id).
    shop_of: HashMap<SupportId, Arc<str>>,
    /// The shops each connection has a reader session in.
    by_conn: HashMap<ConnId, Vec<Arc<str>>>,
}

impl ShopsIndex {
    /// Every online reader of the conversation, noted under its connection.
    fn note_conversation(&mut self, shop: &Arc<str>, conversation: &SupportConversation) {
        self.shop_of.insert(conversation.id, shop.clone());
        for conn in conversation.readers.values().filter_map(|r| r.cursor.conn()) {
            note_conn(&mut self.by_conn, conn, shop);
        }
    }

    pub fn attach(&mut self, conn: ConnId, shop: &Arc<str>) {
        note_conn(&mut self.by_conn, conn, shop);
    }
}

impl Shops {
    /// The shop's state, loaded on first touch with its online readers attached (and their
    /// backlogs pumped); `UnknownShop` if there is no such shop.
    pub fn load(&mut self, ctx: &mut Ctx, name: &str) -> Result<&mut ShopState, Refusal> {
        Ok(self.load_with_index(ctx, name)?.0)
    }

    /// [`Shops::load`], with the index beside it.
    pub fn load_with_index(&mut self, ctx: &mut Ctx, name: &str) -> Result<(&mut ShopState, &mut ShopsIndex), Refusal> {
        let name: Arc<str> = name.into();
        let entry = match self.shops.entry(name.clone()) {
            Entry::Occupied(entry) => return Ok((entry.into_mut(), &mut self.index)),
            Entry::Vacant(entry) => entry,
        };
        let store = &ctx.shared.store;
        let record = store.shop(&name)?.ok_or_else(unknown_shop)?;
        let staff: BTreeMap<Arc<str>, UserId> =
            record.staff.iter().map(|s| (Arc::<str>::from(s.username.as_str()), s.uid)).collect();
        let mut shop = ShopState {
            name: name.clone(),
            id: record.id,
            created_ms: record.created_ms,
            staff,
            conversations: BTreeMap::new(),
            by_customer: HashMap::new(),
        };
        for id in store.shop_support(&name)? {
            let Some(record) = store.support(id)? else { continue };
            let log = ctx.partition.state(LogId::Support, id.into())?;
            let last_ms = match log.last_seq > log.floor {
                true => ctx
                    .partition
                    .read(LogId::Support, id.into(), log.last_seq - 1, 1)?
                    .first()
                    .map_or(record.created_ms, |(_, m)| m.timestamp_ms),
                false => record.created_ms,
            };
            let customer: Arc<str> = record.customer.as_str().into();
            let mut conversation = SupportConversation {
                id,
                customer: customer.clone(),
                customer_uid: record.customer_uid,
                claimed_by: record.claimed_by.as_deref().map(Arc::from),
                created_ms: record.created_ms,
                last_ms,
                floor: log.floor,
                last_seq: log.last_seq,
                readers: BTreeMap::new(),
                retention: Retention::default(),
            };
            let readers = std::iter::once((customer.clone(), record.customer_uid))
                .chain(shop.staff.iter().map(|(n, uid)| (n.clone(), *uid)));
            let acks = store.support_acks(id)?;
            for (reader, uid) in readers {
                // A position below the floor reads as the floor (deleted by retention, or
                // never recorded), one beyond the end as the end (see `Groups::load`).
                let recorded = acks.get(&*reader).copied().unwrap_or(Seq::ZERO);
                let acked = recorded.max(log.floor).min(log.last_seq);
                let session =
                    ctx.shared.directory.session_of(&reader).map(|(conn, budget)| Session::new(conn, acked, budget));
                conversation.readers.insert(reader, SupportReader { uid, cursor: Cursor { acked, session } });
            }
            conversation.retention.settled = match shop.staff.is_empty() {
                true => log.floor,
                false => conversation.readers.values().map(|r| r.cursor.acked).min().unwrap_or(log.floor),
            };
            shop.by_customer.insert(customer, id);
            self.index.note_conversation(&name, &conversation);
            shop.conversations.insert(id, conversation);
        }
        let shop = entry.insert(shop);
        let ids: Vec<SupportId> = shop.conversations.keys().copied().collect();
        for id in ids {
            // What expired while the shop was not loaded.
            if let Err(refusal) = shop.conversation(id)?.trim(ctx) {
                log::debug!("history retention of support conversation {id}: {}", refusal.message);
            }
            shop.pump_all(ctx, id)?;
        }
        Ok((shop, &mut self.index))
    }

    /// The conversations loaded now (for the retention pass).
    pub fn conversation_ids(&self) -> Vec<SupportId> {
        self.index.shop_of.keys().copied().collect()
    }

    /// A loaded shop by the id of one of its conversations.
    pub fn by_conversation(&mut self, id: SupportId) -> Option<&mut ShopState> {
        let shop = self.index.shop_of.get(&id)?;
        self.shops.get_mut(shop)
    }

    /// A reader (customer or staff) is online at `conn` (told by its worker after login):
    /// its cursors in the shop get the session, and the active ones push their backlogs.
    pub fn reader_online(&mut self, ctx: &mut Ctx, shop: &str, name: &str, conn: ConnId) -> Handled {
        let Some(budget) = ctx.shared.directory.session_of(name).filter(|(c, _)| *c == conn).map(|(_, b)| b) else {
            return Ok(());
        };
        let (shop, index) = self.load_with_index(ctx, shop)?;
        let shop_name = shop.name.clone();
        let mut attached = Vec::new();
        for (id, conversation) in shop.conversations.iter_mut() {
            let Some(reader) = conversation.readers.get_mut(name) else { continue };
            if reader.cursor.conn() == Some(conn) {
                continue;
            }
            reader.cursor.session = Some(Session::new(conn, reader.cursor.acked, budget.clone()));
            attached.push(*id);
        }
        for id in &attached {
            shop.pump_reader(ctx, *id, name)?;
        }
        if !attached.is_empty() {
            index.attach(conn, &shop_name);
        }
        Ok(())
    }

    /// The connection's session ended: its reader sessions here end with it.
    pub fn closed(&mut self, conn: ConnId, name: &str) {
        for shop in self.index.by_conn.remove(&conn).unwrap_or_default() {
            let Some(shop) = self.shops.get_mut(&shop) else { continue };
            for conversation in shop.conversations.values_mut() {
                if let Some(reader) = conversation.readers.get_mut(name) {
                    if reader.cursor.conn() == Some(conn) {
                        reader.cursor.session = None;
                    }
                }
            }
        }
    }
}

fn note_conn(by_conn: &mut HashMap<ConnId, Vec<Arc<str>>>, conn: ConnId, shop: &Arc<str>) {
    let shops = by_conn.entry(conn).or_default();
    if !shops.contains(shop) {
        shops.push(shop.clone());
    }
}

pub fn unknown_shop() -> Refusal {
    Refusal::new(ErrorCode::UnknownShop, "no such shop")
}

pub fn not_a_reader() -> Refusal {
    Refusal::new(ErrorCode::NotAMember, "not this conversation's customer or staff")
}

impl SupportConversation {
    /// Whether `name` is pushed this conversation's messages: the customer always, staff
    /// while nobody claims it, then only the claiming agent. (Every reader's position holds
    /// them on disk: see `trim`.)
    pub fn active(&self, name: &str) -> bool {
        *self.customer == *name || self.claimed_by.as_deref().is_none_or(|agent| agent == name)
    }

    pub fn record(&self, shop: &str) -> SupportRecord {
        SupportRecord {
            shop: shop.to_string(),
            customer: self.customer.to_string(),
            customer_uid: self.customer_uid,
            claimed_by: self.claimed_by.as_deref().map(str::to_string),
            created_ms: self.created_ms,
        }
    }

    /// Deletes what the customer and every staff member have acknowledged, active or not:
    /// a conversation handed over (or released) shows its new agent the history it has not
    /// read, however far the customer and the previous agent got. Retention bounds what
    /// staff left out of a claim keep. A shop without staff keeps everything (within
    /// retention): the messages are for whoever it takes on.
    pub fn trim(&mut self, ctx: &mut Ctx) -> Handled {
        if !self.readers.keys().any(|name| **name != *self.customer) {
            return Ok(());
        }
        let lowest = self.readers.values().map(|r| r.cursor.acked).min().unwrap_or(self.last_seq);
        let log = self.log();
        retention::settle(ctx, log, &mut self.floor, &mut self.retention, lowest)
    }

    /// Drops everything up to `floor`, read or not (the count bound).
    fn raise_floor(&mut self, ctx: &mut Ctx, floor: Seq) -> Handled {
        let log = self.log();
        retention::drop_to(ctx, log, &mut self.floor, &mut self.retention, floor)
    }

    /// The conversation's log.
    pub fn log(&self) -> LogRef {
        LogRef { id: LogId::Support, owner: self.id.into() }
    }

    /// A reader's cursor; `NotAMember` for anyone else.
    pub fn reader(&mut self, name: &str) -> Result<&mut SupportReader, Refusal> {
        self.readers.get_mut(name).ok_or_else(not_a_reader)
    }
}

impl ShopState {
    pub fn record(&self) -> ShopRecord {
        ShopRecord {
            id: self.id,
            staff: self.staff.iter().map(|(n, uid)| StaffRecord { username: n.to_string(), uid: *uid }).collect(),
            created_ms: self.created_ms,
        }
    }

    pub fn conversation(&mut self, id: SupportId) -> Result<&mut SupportConversation, Refusal> {
        self.conversations.get_mut(&id).ok_or_else(not_a_reader)
    }

    /// A customer's message to the shop (`Send` to `Shop(name)`): into its conversation
    /// with the shop, made by the first message.
    #[allow(clippy::too_many_arguments)]
    pub fn send_from_customer(
        &mut self,
        ctx: &mut Ctx,
        index: &mut ShopsIndex,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        client_msg_id: ClientMsgId,
        content: Content,
    ) -> Handled {
        if self.staff.contains_key(&*from.name) {
            return Err(Refusal::new(ErrorCode::Forbidden, "staff answer their shop's conversations by id"));
        }
        let id = match self.by_customer.get(&*from.name) {
            Some(id) => *id,
            None => {
                if client_msg_id.is_none() {
                    return Err(Refusal::new(ErrorCode::BadRequest, "client_msg_id must not be 0"));
                }
                self.open(ctx, index, conn, from)?
            }
        };
        self.send(ctx, conn, request_id, id, from, client_msg_id, content)
    }

    /// A new conversation of `from` with this shop, within `max_support_per_user` (held
    /// across workers by the seats, as group memberships are).
    fn open(
        &mut self,
        ctx: &mut Ctx,
        index: &mut ShopsIndex,
        conn: ConnId,
        from: &SessionUser,
    ) -> Result<SupportId, Refusal> {
        let store = &ctx.shared.store;
        let max = ctx.config().max_support_per_user;
        let seat = ctx
            .shared
            .support_seats
            .take(&from.name, max, || store.customer_support(&from.name).map(|c| c.len()))?
            .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "too many support conversations"))?;
        let opened = self.open_seated(ctx, from, conn);
        ctx.shared.support_seats.release(seat);
        let id = opened?;
        index.note_conversation(&self.name, &self.conversations[&id]);
        Ok(id)
    }

    fn open_seated(&mut self, ctx: &mut Ctx, from: &SessionUser, conn: ConnId) -> Result<SupportId, Refusal> {
        let id = SupportId(ctx.shared.store.next_id()?);
        let customer: Arc<str> = from.name.clone();
        let mut readers = BTreeMap::new();
        let readers_now =
            std::iter::once((customer.clone(), from.uid)).chain(self.staff.iter().map(|(n, u)| (n.clone(), *u)));
        for (name, uid) in readers_now {
            let online = match *name == *from.name {
                true => ctx.shared.directory.session_of(&name).filter(|(c, _)| *c == conn),
                false => ctx.shared.directory.session_of(&name),
            };
            let session = online.map(|(c, budget)| Session::new(c, Seq::ZERO, budget));
            readers.insert(name, SupportReader { uid, cursor: Cursor { acked: Seq::ZERO, session } });
        }
        let conversation = SupportConversation {
            id,
            customer: customer.clone(),
            customer_uid: from.uid,
            claimed_by: None,
            created_ms: crate::clock::now_ms(),
            last_ms: 0,
            floor: Seq::ZERO,
            last_seq: Seq::ZERO,
            readers,
            retention: Retention::default(),
        };
        ctx.partition.sled().put_support(id, &conversation.record(&self.name))?;
        self.by_customer.insert(customer, id);
        self.conversations.insert(id, conversation);
        Ok(id)
    }

    /// A message to conversation `id` from its customer or a staff member (a staff
    /// member's reply to an unclaimed conversation claims it: see `claims`).
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        id: SupportId,
        from: &SessionUser,
        client_msg_id: ClientMsgId,
        content: Content,
    ) -> Handled {
        let staff = self.staff.contains_key(&*from.name);
        let conversation = self.conversation(id)?;
        if !staff && *conversation.customer != *from.name {
            return Err(not_a_reader());
        }
        let key = RetryKey { sender: from.uid, client_msg_id };
        if let Some(receipt) = message::earlier(ctx, key, id.into())? {
            ctx.batch.reply(conn, request_id, receipt, true);
            return Ok(());
        }
        let mut claims = false;
        if staff {
            match conversation.claimed_by.as_deref() {
                Some(agent) if agent != &*from.name => {
                    return Err(Refusal::new(
                        ErrorCode::Forbidden,
                        format!("{} answers this conversation; ask for a hand-over", local(agent)),
                    ))
                }
                Some(_) => {}
                None => claims = true,
            }
        }
        let mut stored = message::compose(ctx.shared, from, content, Addressee::Readers)?;
        if staff {
            stored.sender = SenderKind::Staff;
        }
        if claims {
            // The reply claims the conversation only if it is stored: what can refuse it
            // (a full disk) is checked before the claim, which cannot be taken back (the
            // claim deletes what only the staff it leaves out still held).
            if ctx.partition.is_full() {
                return Err(Refusal::storage_full());
            }
            super::claims::claim_for(ctx, self, id, &from.name)?;
        }
        ctx.received(from, 1);
        let origin = Origin { reply_to: Some((conn, request_id)), retry_key: Some(key) };
        self.append(ctx, id, stored, origin, &from.name)
    }

    /// Stores `stored` as the conversation's next message, counts it as read by its sender
    /// when the sender had read everything before it, and pushes it to the active readers
    /// whose cursors are caught up.
    pub fn append(
        &mut self,
        ctx: &mut Ctx,
        id: SupportId,
        stored: StoredMessage,
        origin: Origin,
        sender: &str,
    ) -> Handled {
        let retention = ctx.config().group_retention.max(1);
        let conversation = self.conversation(id)?;
        let seq = conversation.last_seq.next();
        message::store(ctx, LogId::Support, id.into(), seq, &stored, origin)?;
        conversation.last_seq = seq;
        conversation.last_ms = stored.timestamp_ms;
        // The sender has its own message (it has the receipt): a sender that had read
        // everything before it need not ack it to let it be deleted.
        if let Some(reader) = conversation.readers.get_mut(sender) {
            if reader.cursor.acked.next() == seq {
                ctx.partition.support_ack(id, sender, seq)?;
                reader.cursor.ack(seq);
            }
        }
        self.deliver(ctx, id, seq, stored)?;
        let conversation = self.conversation(id)?;
        if seq - conversation.floor > retention {
            conversation.raise_floor(ctx, seq - retention)?;
        }
        conversation.trim(ctx)
    }

    /// Pushes a just-stored message to every active reader whose cursor is caught up, but
    /// its sender; notes for active readers who are offline.
    fn deliver(&mut self, ctx: &mut Ctx, id: SupportId, seq: Seq, stored: StoredMessage) -> Handled {
        let window = ctx.window();
        let size = wire_size(&stored);
        let device_only = stored.device_only();
        let shop = self.name.clone();
        let conversation = self.conversation(id)?;
        if notes::worth_a_look(&ctx.shared.push, &stored) {
            let book = ctx.shared.push.read();
            let mut customer = None;
            let mut staff = Vec::new();
            for (name, reader) in &conversation.readers {
                let offline = reader.cursor.session.is_none() && conversation.active(name);
                if !offline || book.get(&reader.uid).is_none_or(|prefs| prefs.devices.is_empty()) {
                    continue;
                }
                let note = Reader { name: name.clone(), uid: reader.uid, unread: seq - reader.cursor.acked };
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
            // Its own message is passed over, not pushed (it has the receipt); so is what
            // the reader's client could not decode.
            if *name == *stored.from || super::device_frames::withheld(&reader.cursor, device_only) {
                super::device_frames::pass_over(&mut reader.cursor, seq);
                continue;
            }
            if let Some((conn, prev)) = reader.cursor.take_live(seq, size, window) {
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
            } else if reader.cursor.stalled(seq, window).is_some() {
                starved.push(name);
            }
        }
        for name in starved {
            if let Some(reader) = conversation.readers.get(&name) {
                ctx.wait_if_starved(&reader.cursor, seq, Waiting::Support(id, name));
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
            .filter(|(name, r)| r.cursor.session.is_some() && conversation.active(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in online {
            self.pump_reader(ctx, id, &name)?;
        }
        Ok(())
    }

    /// Pushes a reader's backlog while its window and budget allow (if it is active);
    /// waits for the budget if that is what stops it.
    pub fn pump_reader(&mut self, ctx: &mut Ctx, id: SupportId, name: &str) -> Handled {
        let shop = self.name.clone();
        let Some(conversation) = self.conversations.get_mut(&id) else { return Ok(()) };
        if !conversation.active(name) {
            return Ok(());
        }
        let (last_seq, floor) = (conversation.last_seq, conversation.floor);
        let to_customer = *conversation.customer == *name;
        let Some(key) = conversation.readers.get_key_value(name).map(|(key, _)| key.clone()) else { return Ok(()) };
        let Some(reader) = conversation.readers.get_mut(name) else { return Ok(()) };
        // Back in the conversation after a claim elsewhere: what retention deleted meanwhile
        // is passed over.
        if reader.cursor.acked < floor {
            reader.cursor.ack(floor);
        }
        fill(ctx, id, last_seq, name, &shop, to_customer, &mut reader.cursor)?;
        ctx.wait_if_starved(&reader.cursor, last_seq, Waiting::Support(id, key));
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
        let reader = conversation.reader(&user.name)?;
        if up_to > last_seq {
            return Err(Refusal::beyond("ack", up_to, last_seq));
        }
        // Recorded first: a refused ack (a full disk) leaves the cursor where it was.
        if up_to > reader.cursor.acked {
            ctx.partition.support_ack(id, &user.name, up_to)?;
            reader.cursor.ack(up_to);
            conversation.trim(ctx)?;
        }
        let acked = conversation.reader(&user.name)?.cursor.acked;
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
        let reader = conversation.reader(&user.name)?;
        if after > last_seq {
            return Err(Refusal::beyond("resync", after, last_seq));
        }
        let after = reader.cursor.resync(after);
        let reply = Reply::Resynced { conversation: Conversation::Support(id), after, last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump_reader(ctx, id, &user.name)
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

/// Pushes a reader's backlog while its window and budget allow, skipping its own messages.
fn fill(
    ctx: &mut Ctx,
    id: SupportId,
    last_seq: Seq,
    name: &str,
    shop: &str,
    to_customer: bool,
    cursor: &mut Cursor,
) -> Handled {
    let log = backlog::Log { id: LogId::Support, owner: id.into(), last_seq };
    let skip = |stored: &StoredMessage| stored.from == name;
    let to_wire = |ctx: &Ctx, seq, prev, stored| support_wire(ctx, id, seq, prev, stored, shop, to_customer);
    // The conversation's retention may have deleted what a reader left out of a claim did
    // not read: it is passed over.
    backlog::fill(ctx, &log, cursor, skip, to_wire)?;
    Ok(())
}
