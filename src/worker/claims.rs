//! Who answers a support conversation, and who may: claims, hand-overs and releases, the
//! listings, and a shop's staff (added and removed by a service). The conversations
//! themselves (sends, delivery, acks) are in `support`.
//!
//! A claim is stored in the conversation's record (a sled write, checkpointed with the
//! batch) and announced to every online staff member of the shop with
//! `Push::SupportClaimed`, after the commit like the replies.

use super::context::Ctx;
use super::device_cursors::is_legacy;
use super::device_readers::DeviceReaders;
use super::devices;
use super::refusal::{Handled, Refusal};
use super::support::{not_a_reader, ShopState, Shops, SupportReader};
use crate::apps::local;
use crate::protocol::{ErrorCode, Push, Reply, SupportId, SupportInfo};
use crate::route::{ConnId, SessionUser};
use crate::store::{LogId, LogOwner, Store};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest page of `ListSupport`, and the page when the request says 0.
const MAX_SUPPORT_PAGE: u32 = 500;
const DEFAULT_SUPPORT_PAGE: u32 = 100;

/// Refuses anyone but the shop's staff: the conversation's customer with `Forbidden`
/// (it may read, not answer for the shop), anyone else as not a reader of it.
fn staff_only(shop: &mut ShopState, id: SupportId, user: &SessionUser) -> Handled {
    if shop.staff.contains_key(&*user.name) {
        return Ok(());
    }
    match *shop.conversation(id)?.customer == *user.name {
        true => Err(Refusal::new(ErrorCode::Forbidden, "only the shop's staff answer for it")),
        false => Err(not_a_reader()),
    }
}

/// `agent` takes conversation `id` (its first reply, or `ClaimSupport`).
pub fn claim_for(ctx: &mut Ctx, shop: &mut ShopState, id: SupportId, agent: &str) -> Handled {
    set_agent(ctx, shop, id, Some(agent.into()))
}

/// Stores and announces who answers conversation `id`, then pushes the backlog of whoever
/// is active now.
fn set_agent(ctx: &mut Ctx, shop: &mut ShopState, id: SupportId, agent: Option<Arc<str>>) -> Handled {
    let name = shop.name.clone();
    let conversation = shop.conversation(id)?;
    conversation.claimed_by = agent.clone();
    ctx.partition.sled().put_support(id, &conversation.record(&name))?;
    let announcement = Push::SupportClaimed {
        conversation: id,
        shop: name.to_string(),
        customer: conversation.customer.to_string(),
        agent: agent.as_deref().map(str::to_string),
    };
    for staff in shop.staff.keys() {
        for conn in ctx.shared.directory.conns_of(staff) {
            ctx.batch.push(conn, announcement.clone(), true);
        }
    }
    shop.pump_all(ctx, id)
}

pub fn claim(
    ctx: &mut Ctx,
    shop: &mut ShopState,
    conn: ConnId,
    request_id: u32,
    id: SupportId,
    user: &SessionUser,
) -> Handled {
    staff_only(shop, id, user)?;
    if holder_other_than_caller(shop, id, user, "answers this conversation")?.is_none() {
        claim_for(ctx, shop, id, &user.name)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn hand_over(
    ctx: &mut Ctx,
    shop: &mut ShopState,
    conn: ConnId,
    request_id: u32,
    id: SupportId,
    user: &SessionUser,
    to: &str,
) -> Handled {
    staff_only(shop, id, user)?;
    holder_other_than_caller(shop, id, user, "answers it and hands it over")?;
    let Some((to, _)) = shop.staff.get_key_value(to) else {
        return Err(Refusal::new(ErrorCode::NotAMember, format!("{} is not staff of this shop", local(to))));
    };
    let to = to.clone();
    set_agent(ctx, shop, id, Some(to))?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn release(
    ctx: &mut Ctx,
    shop: &mut ShopState,
    conn: ConnId,
    request_id: u32,
    id: SupportId,
    user: &SessionUser,
) -> Handled {
    staff_only(shop, id, user)?;
    // Nobody holds it: already what a release makes it.
    if holder_other_than_caller(shop, id, user, "answers it and releases it")?.is_some() {
        set_agent(ctx, shop, id, None)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// Who holds the conversation: `Forbidden` ("AGENT `what`") when it is another staff member
/// than the caller, else the caller (or None while nobody holds it).
fn holder_other_than_caller(
    shop: &mut ShopState,
    id: SupportId,
    user: &SessionUser,
    what: &str,
) -> Result<Option<Arc<str>>, Refusal> {
    match shop.conversation(id)?.claimed_by.clone() {
        Some(agent) if *agent != *user.name => {
            Err(Refusal::new(ErrorCode::Forbidden, format!("{} {what}", local(&agent))))
        }
        holder => Ok(holder),
    }
}

fn page_size(limit: u32) -> usize {
    (if limit == 0 { DEFAULT_SUPPORT_PAGE } else { limit.min(MAX_SUPPORT_PAGE) }) as usize
}

/// One page of a shop's conversations, for its staff.
#[allow(clippy::too_many_arguments)]
pub fn list_shop(
    ctx: &mut Ctx,
    shop: &ShopState,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    after: SupportId,
    limit: u32,
) -> Handled {
    if !shop.staff.contains_key(&*user.name) {
        return Err(Refusal::new(ErrorCode::Forbidden, "only the shop's staff list its conversations"));
    }
    let limit = page_size(limit);
    let mut page = shop.conversations.range(SupportId(after.get().saturating_add(1))..);
    let conversations: Vec<SupportInfo> = page
        .by_ref()
        .take(limit)
        .map(|(id, c)| SupportInfo {
            conversation: *id,
            shop: shop.name.to_string(),
            customer: c.customer.to_string(),
            claimed_by: c.claimed_by.as_deref().map(str::to_string),
            last_seq: c.last_seq,
            acked: c.readers.get(&*user.name).and_then(|r| r.devices.get(&user.device)).map_or(c.floor, |r| r.acked),
            last_ms: c.last_ms,
        })
        .collect();
    let more = page.next().is_some();
    ctx.batch.reply(conn, request_id, Reply::SupportList { conversations, more }, false);
    Ok(())
}

/// One page of the caller's own conversations as a customer, read from the store on the
/// caller's worker (its conversations' shops may be anywhere). A message another worker
/// has not yet moved into the database counts in `last_seq`; its time shows a moment
/// later.
pub fn list_own(
    ctx: &mut Ctx,
    conn: ConnId,
    request_id: u32,
    user: &SessionUser,
    after: SupportId,
    limit: u32,
) -> Handled {
    let store = &ctx.shared.store;
    let mut ids = store.customer_support(&user.name)?;
    ids.sort();
    ids.retain(|id| *id > after);
    let limit = page_size(limit);
    let more = ids.len() > limit;
    ids.truncate(limit);
    let mut conversations = Vec::new();
    for id in ids {
        let Some(record) = store.support(id)? else { continue };
        let owner = LogOwner::from(id);
        let state = store.support_log.state(owner)?;
        let last_seq = state.last_seq.max(store.staged_last(LogId::Support, owner));
        let last_ms = match state.last_seq > state.floor {
            true => store.support_log.read(owner, state.last_seq - 1, 1)?.first().map(|(_, m)| m.timestamp_ms),
            false => None,
        };
        conversations.push(SupportInfo {
            conversation: id,
            shop: record.shop,
            customer: record.customer,
            claimed_by: record.claimed_by,
            last_seq,
            acked: device_position(store, id, user)?.max(state.floor).min(last_seq),
            last_ms: last_ms.unwrap_or(record.created_ms),
        });
    }
    ctx.batch.reply(conn, request_id, Reply::SupportList { conversations, more }, false);
    Ok(())
}

/// The position of the caller's device in a conversation, as stored: a named device's own,
/// or where the legacy device is (where a device new to it starts).
fn device_position(store: &Store, id: SupportId, user: &SessionUser) -> Result<crate::protocol::Seq, Refusal> {
    let legacy = store.support_ack(id, &user.name)?;
    if is_legacy(&user.device) {
        return Ok(legacy);
    }
    Ok(store.device_ack(LogId::Support, id.into(), user.uid, &user.device)?.unwrap_or(legacy))
}

/// A service makes `username` staff of the shop: from now on it reads every conversation
/// of the shop nobody claims, from what is still stored.
pub fn add_staff(
    ctx: &mut Ctx,
    shops: &mut Shops,
    conn: ConnId,
    request_id: u32,
    shop: &str,
    username: &str,
) -> Handled {
    let max = ctx.config().max_staff_per_shop;
    let (shop, index) = shops.load_with_index(ctx, shop)?;
    let account = ctx.shared.store.account(username)?.ok_or_else(Refusal::unknown_user)?;
    if shop.staff.contains_key(username) {
        return Err(Refusal::new(ErrorCode::AlreadyMember, "already staff of this shop"));
    }
    if shop.staff.len() >= max {
        return Err(Refusal::new(ErrorCode::LimitReached, format!("a shop has at most {max} staff")));
    }
    let before: Vec<String> = shop.staff.keys().map(|n| n.to_string()).collect();
    let name: Arc<str> = username.into();
    shop.staff.insert(name.clone(), account.user_id);
    ctx.partition.sled().put_shop(&shop.name, &shop.record(), &before)?;
    let sessions = ctx.shared.directory.sessions_of(username);
    let ids: Vec<SupportId> = shop.conversations.keys().copied().collect();
    for id in &ids {
        let conversation = shop.conversation(*id)?;
        if conversation.readers.contains_key(&name) {
            continue;
        }
        // What every reader has read is history (`History` shows it), not a backlog to push.
        let start = conversation.floor.max(conversation.retention.settled);
        // Written, as a new group member's position is: nothing recorded reads as the
        // floor after a restart, and what was read would come back as a backlog.
        ctx.partition.support_ack(*id, &name, start)?;
        let (devices, unrecorded) =
            devices::reader_cursors(ctx, account.user_id, start, |seq| seq.max(start), &HashMap::new())?;
        conversation.readers.insert(name.clone(), SupportReader { uid: account.user_id, devices });
        conversation.seat(ctx, &name, unrecorded, &sessions)?;
    }
    for session in &sessions {
        index.attach(session.conn, &shop.name);
    }
    for id in ids {
        shop.pump_reader(ctx, id, username)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// A service ends `username`'s work for the shop: its positions go, it is pushed nothing
/// more, and a conversation it held is released to the other staff (who are told).
pub fn remove_staff(
    ctx: &mut Ctx,
    shops: &mut Shops,
    conn: ConnId,
    request_id: u32,
    shop: &str,
    username: &str,
) -> Handled {
    let shop = shops.load(ctx, shop)?;
    if !shop.staff.contains_key(username) {
        return Err(Refusal::new(ErrorCode::NotAMember, "not staff of this shop"));
    }
    let before: Vec<String> = shop.staff.keys().map(|n| n.to_string()).collect();
    shop.staff.remove(username);
    ctx.partition.sled().put_shop(&shop.name, &shop.record(), &before)?;
    let ids: Vec<SupportId> = shop.conversations.keys().copied().collect();
    for id in ids {
        let conversation = shop.conversation(id)?;
        if *conversation.customer != *username {
            let uid = conversation.readers.remove(username).map(|r| r.uid);
            let store = ctx.partition.sled();
            store.remove_support_ack(id, username)?;
            if let Some(uid) = uid {
                store.remove_device_acks(LogId::Support, id.into(), Some(uid))?;
            }
        }
        if conversation.claimed_by.as_deref() == Some(username) {
            set_agent(ctx, shop, id, None)?;
        }
        // Its position held messages the others have read.
        shop.conversation(id)?.trim(ctx)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}
