//! Customer-support conversations, owned by the worker of their shop (`Owner::Shop`): the
//! shops' state, sends and trimming. Delivery, acks and resyncs are in `support_delivery`;
//! claims, hand-overs, listings and staff changes in `claims`.
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
//! Each reader has a cursor per device, as in groups: a named device is pushed its user's
//! own messages too, but the device that sent one while caught up.
//!
//! All of a shop's conversations live on one worker, so a claim and the staff list are
//! changed without any lock shared with another worker; one very busy shop is one
//! worker's load.

use super::context::Ctx;
use super::cursor::Cursor;
use super::device_cursors::DeviceCursors;
use super::device_readers::DeviceReaders;
use super::devices;
use super::message::{self, Origin, RetryKey};
use super::refusal::{Handled, Refusal};
use super::retention::{self, LogRef, Retention};
use crate::apps::local;
use crate::clock::now_ms;
use crate::protocol::{ClientMsgId, Content, ErrorCode, SenderKind, Seq, SupportId, UserId};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, LogId, ShopRecord, StaffRecord, SupportRecord};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One reader of a conversation: its customer or a staff member of the shop.
pub struct SupportReader {
    pub uid: UserId,
    /// A cursor per known device of the reader.
    pub devices: DeviceCursors,
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
    /// Every online reader device of the conversation, noted under its connection.
    fn note_conversation(&mut self, shop: &Arc<str>, conversation: &SupportConversation) {
        self.shop_of.insert(conversation.id, shop.clone());
        for conn in conversation.readers.values().flat_map(|r| r.devices.conns()) {
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
            let readers: Vec<(Arc<str>, UserId)> = std::iter::once((customer.clone(), record.customer_uid))
                .chain(shop.staff.iter().map(|(n, uid)| (n.clone(), *uid)))
                .collect();
            let acks = store.support_acks(id)?;
            let recorded = devices::recorded(ctx, LogId::Support, id.into())?;
            // A position below the floor reads as the floor (deleted by retention, or never
            // recorded), one beyond the end as the end (see `Groups::load`).
            let within = |seq: Seq| seq.max(log.floor).min(log.last_seq);
            for (reader, uid) in readers {
                let legacy = acks.get(&*reader).copied().unwrap_or(Seq::ZERO);
                let (devices, unrecorded) = devices::reader_cursors(ctx, uid, legacy, within, &recorded)?;
                conversation.readers.insert(reader.clone(), SupportReader { uid, devices });
                let sessions = ctx.shared.directory.sessions_of(&reader);
                conversation.seat(ctx, &reader, unrecorded, &sessions)?;
            }
            conversation.retention.settled = match shop.staff.is_empty() {
                true => log.floor,
                false => conversation.lowest().unwrap_or(log.floor),
            };
            shop.by_customer.insert(customer, id);
            self.index.note_conversation(&name, &conversation);
            shop.conversations.insert(id, conversation);
        }
        let shop = entry.insert(shop);
        let ids: Vec<SupportId> = shop.conversations.keys().copied().collect();
        for id in ids {
            // What expired while the shop was not loaded, and devices expired or forgotten
            // meanwhile that held the floor.
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

    /// A reader (customer or staff) is online on `device` at `conn` (told by its worker
    /// after login): that device's cursors in the shop get the session (made for a device
    /// new here), and the active ones push their backlogs.
    pub fn reader_online(&mut self, ctx: &mut Ctx, shop: &str, name: &str, device: &str, conn: ConnId) -> Handled {
        let Some(session) = ctx.shared.directory.session(name, conn).filter(|s| *s.device == *device) else {
            return Ok(());
        };
        let (shop, index) = self.load_with_index(ctx, shop)?;
        let shop_name = shop.name.clone();
        let mut attached = Vec::new();
        for (id, conversation) in shop.conversations.iter_mut() {
            let Some(reader) = conversation.readers.get(name) else { continue };
            if reader.devices.get(device).and_then(Cursor::conn) == Some(conn) {
                continue;
            }
            conversation.attach(ctx, name, &session.device, conn, session.budget.clone())?;
            // The implicit legacy cursor a first named device replaced may have held the floor.
            conversation.trim(ctx)?;
            attached.push(*id);
        }
        for id in &attached {
            shop.pump_device(ctx, *id, name, device)?;
        }
        if !attached.is_empty() {
            index.attach(conn, &shop_name);
        }
        Ok(())
    }

    /// The connection's session ended: its reader sessions here end with it.
    pub fn closed(&mut self, conn: ConnId, name: &str) {
        let now = now_ms();
        for shop in self.index.by_conn.remove(&conn).unwrap_or_default() {
            let Some(shop) = self.shops.get_mut(&shop) else { continue };
            for conversation in shop.conversations.values_mut() {
                if let Some(reader) = conversation.readers.get_mut(name) {
                    reader.devices.detach(conn, now);
                }
            }
        }
    }

    /// The user's device is forgotten: its cursors in the conversations loaded here go,
    /// and what only they held is deleted.
    pub fn forget_device(&mut self, ctx: &mut Ctx, username: &str, device: &str) -> Handled {
        for shop in self.shops.values_mut() {
            for conversation in shop.conversations.values_mut() {
                if conversation.readers.get_mut(username).is_some_and(|r| r.devices.remove(device)) {
                    conversation.trim(ctx)?;
                }
            }
        }
        Ok(())
    }

    /// Drops the cursors of reader devices not seen for `--device-expiry`.
    pub fn expire_devices(&mut self, ctx: &mut Ctx, now_ms: u64) -> Handled {
        let expiry = ctx.config().device_expiry;
        for shop in self.shops.values_mut() {
            for conversation in shop.conversations.values_mut() {
                let mut any = false;
                for reader in conversation.readers.values_mut() {
                    any |= reader.devices.drop_expired(now_ms, expiry);
                }
                if any {
                    conversation.trim(ctx)?;
                }
            }
        }
        Ok(())
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
    ///
    /// History: this is where the conversation's floor would be capped by the retention
    /// window; today it is the lowest position of any reader's device.
    pub fn trim(&mut self, ctx: &mut Ctx) -> Handled {
        if !self.readers.keys().any(|name| **name != *self.customer) {
            return Ok(());
        }
        let lowest = self.lowest().unwrap_or(self.last_seq);
        let log = self.log();
        retention::settle(ctx, log, &mut self.floor, &mut self.retention, lowest)
    }

    /// The lowest position of any reader's device.
    pub fn lowest(&self) -> Option<Seq> {
        self.readers.values().filter_map(|r| r.devices.lowest_acked()).min()
    }

    /// Moves the position of `user`'s device (a cursor is made for a device this
    /// conversation has not seen log in yet), recorded first: the legacy device's where it
    /// always was, a named device's beside it.
    pub(super) fn advance(&mut self, ctx: &mut Ctx, user: &SessionUser, up_to: Seq) -> Handled {
        self.reader(&user.name)?;
        self.device_cursor(ctx, &user.name, &user.device)?;
        self.record_ack(ctx, &user.name, &user.device, up_to)?;
        Ok(())
    }

    /// Drops everything up to `floor`, read or not (the count bound).
    pub(super) fn raise_floor(&mut self, ctx: &mut Ctx, floor: Seq) -> Handled {
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

impl DeviceReaders for SupportConversation {
    fn reader_log(&self) -> LogRef {
        self.log()
    }

    fn reader_devices(&self, name: &str) -> Option<(UserId, &DeviceCursors)> {
        self.readers.get(name).map(|r| (r.uid, &r.devices))
    }

    fn reader_devices_mut(&mut self, name: &str) -> Option<&mut DeviceCursors> {
        self.readers.get_mut(name).map(|r| &mut r.devices)
    }

    fn stored_legacy_position(&self, ctx: &Ctx, name: &str) -> Result<Seq, Refusal> {
        Ok(ctx.shared.store.support_ack(self.id, name)?.max(self.floor).min(self.last_seq))
    }

    fn record_legacy_ack(&self, ctx: &mut Ctx, name: &str, up_to: Seq) -> Handled {
        ctx.partition.support_ack(self.id, name, up_to)?;
        Ok(())
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

    /// Conversation `id` as one of its readers asks for it: `NotAMember` for anyone else.
    pub fn conversation_of_reader(&mut self, id: SupportId, name: &str) -> Result<&mut SupportConversation, Refusal> {
        let conversation = self.conversation(id)?;
        conversation.reader(name)?;
        Ok(conversation)
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
                self.open(ctx, index, from)?
            }
        };
        self.send(ctx, conn, request_id, id, from, client_msg_id, content)
    }

    /// A new conversation of `from` with this shop, within `max_support_per_user` (held
    /// across workers by the seats, as group memberships are).
    fn open(&mut self, ctx: &mut Ctx, index: &mut ShopsIndex, from: &SessionUser) -> Result<SupportId, Refusal> {
        let store = &ctx.shared.store;
        let max = ctx.config().max_support_per_user;
        let seat = ctx
            .shared
            .support_seats
            .take(&from.name, max, || store.customer_support(&from.name).map(|c| c.len()))?
            .ok_or_else(|| Refusal::new(ErrorCode::LimitReached, "too many support conversations"))?;
        let opened = self.open_seated(ctx, from);
        ctx.shared.support_seats.release(seat);
        let id = opened?;
        index.note_conversation(&self.name, &self.conversations[&id]);
        Ok(id)
    }

    /// A new conversation: every device of the customer and of each staff member starts at
    /// its beginning, and every session they have now is attached.
    fn open_seated(&mut self, ctx: &mut Ctx, from: &SessionUser) -> Result<SupportId, Refusal> {
        let id = SupportId(ctx.shared.store.next_id()?);
        let customer: Arc<str> = from.name.clone();
        let mut conversation = SupportConversation {
            id,
            customer: customer.clone(),
            customer_uid: from.uid,
            claimed_by: None,
            created_ms: crate::clock::now_ms(),
            last_ms: 0,
            floor: Seq::ZERO,
            last_seq: Seq::ZERO,
            readers: BTreeMap::new(),
            retention: Retention::default(),
        };
        // The record first: a device's position is kept only for a conversation on disk.
        ctx.partition.sled().put_support(id, &conversation.record(&self.name))?;
        let readers_now =
            std::iter::once((customer.clone(), from.uid)).chain(self.staff.iter().map(|(n, u)| (n.clone(), *u)));
        for (name, uid) in readers_now {
            let (devices, unrecorded) = devices::reader_cursors(ctx, uid, Seq::ZERO, |seq| seq, &HashMap::new())?;
            conversation.readers.insert(name.clone(), SupportReader { uid, devices });
            let sessions = ctx.shared.directory.sessions_of(&name);
            conversation.seat(ctx, &name, unrecorded, &sessions)?;
        }
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
        self.append(ctx, id, stored, origin, from)
    }
}
