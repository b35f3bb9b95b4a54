//! Ephemeral rooms and broadcast: live-only traffic, never stored.
//!
//! A room lives in memory on the worker that owns its name, exists while someone is in it,
//! and its messages reach the members present at that moment. A member is a username with
//! the connections (one per device) it joined from; a dropped connection leaves all its
//! rooms, and a user with no connection left in a room is no longer a member.

use super::context::Ctx;
use super::refusal::{Handled, Refusal};
use crate::apps::wire;
use crate::apps::{app_of, valid_room};
use crate::cluster::wire::RemoteCmd;
use crate::protocol::{Content, ErrorCode, OnlineUser, Push, Reply, RoomInfo, ServerFrame};
use crate::route::{ConnId, SessionUser};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When to try a fan-out again that the server's output bound refused.
const SERVER_BUSY_RETRY: Duration = Duration::from_secs(1);

/// Largest room listing page.
pub const MAX_ROOM_PAGE: u32 = 500;

#[derive(Default)]
struct Room {
    /// Each member's sessions in the room.
    members: BTreeMap<Arc<str>, Vec<ConnId>>,
}

/// The rooms of this worker's partition that have members, and which of them each
/// connection is in.
#[derive(Default)]
pub struct Rooms {
    rooms: HashMap<Arc<str>, Room>,
    by_conn: HashMap<ConnId, Vec<Arc<str>>>,
}

impl Rooms {
    pub fn join(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, room: String) -> Handled {
        if !valid_room(&room) {
            return Err(Refusal::new(ErrorCode::InvalidName, "room names are 1-64 characters of a-z 0-9 _ . -"));
        }
        let max = ctx.shared.config.max_room_members;
        let name: Arc<str> = room.into();
        let state = self.rooms.entry(name.clone()).or_default();
        if !state.members.contains_key(&user.name) && state.members.len() >= max {
            if state.members.is_empty() {
                self.rooms.remove(&name);
            }
            return Err(Refusal::new(ErrorCode::LimitReached, "the room is full"));
        }
        let joined = self.by_conn.entry(conn).or_default();
        if !joined.contains(&name) {
            if !ctx.shared.room_seats.take(conn, ctx.shared.config.max_rooms_per_conn) {
                if state.members.is_empty() {
                    self.rooms.remove(&name);
                }
                return Err(Refusal::new(ErrorCode::LimitReached, "in too many rooms"));
            }
            joined.push(name.clone());
        }
        let sessions = state.members.entry(user.name.clone()).or_default();
        if !sessions.contains(&conn) {
            sessions.push(conn);
        }
        let count = state.members.len() as u32;
        ctx.shared.rooms.set(&name, count);
        ctx.batch.reply(conn, request_id, Reply::Done, false);
        Ok(())
    }

    /// The session on `conn` leaves the room (the user's other devices stay in it).
    pub fn leave(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, room: &str) -> Handled {
        let left = self.rooms.get_mut(room).is_some_and(|r| leave_room(r, &user.name, conn));
        if !left {
            return Err(Refusal::new(ErrorCode::NotAMember, "not in this room"));
        }
        if let Some(rooms) = self.by_conn.get_mut(&conn) {
            let before = rooms.len();
            rooms.retain(|r| &**r != room);
            ctx.shared.room_seats.release(conn, before - rooms.len());
        }
        self.update_count(ctx, room);
        ctx.batch.reply(conn, request_id, Reply::Done, false);
        Ok(())
    }

    /// The connection closed: it leaves every room it was in here.
    /// The member connections held by cluster node `node`.
    pub fn conns_of_node(&self, node: u8) -> Vec<ConnId> {
        self.by_conn.keys().filter(|c| c.node() == node).copied().collect()
    }

    pub fn closed(&mut self, ctx: &Ctx, conn: ConnId) {
        let rooms = self.by_conn.remove(&conn).unwrap_or_default();
        ctx.shared.room_seats.release(conn, rooms.len());
        for room in rooms {
            if let Some(state) = self.rooms.get_mut(&room) {
                state.members.retain(|_, sessions| {
                    sessions.retain(|c| *c != conn);
                    !sessions.is_empty()
                });
            }
            self.update_count(ctx, &room);
        }
    }

    fn update_count(&mut self, ctx: &Ctx, room: &str) {
        let count = self.rooms.get(room).map_or(0, |r| r.members.len() as u32);
        if count == 0 {
            self.rooms.remove(room);
        }
        ctx.shared.rooms.set(room, count);
    }

    pub fn send(
        &self,
        ctx: &mut Ctx,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        room: &str,
        content: Content,
    ) -> Handled {
        let joined = |r: &&Room| r.members.get(&from.name).is_some_and(|sessions| sessions.contains(&conn));
        let Some(state) = self.rooms.get(room).filter(joined) else {
            return Err(Refusal::new(ErrorCode::NotAMember, "join the room first"));
        };
        let push = Push::RoomMessage { room: room.to_string(), from: from.name.to_string(), content };
        // Every other session in the room, the sender's other devices' included.
        let targets: Vec<ConnId> = state.members.values().flatten().copied().filter(|c| *c != conn).collect();
        fan_out(ctx, conn, request_id, from, push, targets)
    }

    pub fn members(&self, ctx: &mut Ctx, conn: ConnId, request_id: u32, room: &str) {
        // A room exists only while occupied, so an unknown room truthfully has no members.
        let (directory, store) = (&ctx.shared.directory, &ctx.shared.store);
        let members = self
            .rooms
            .get(room)
            .map(|r| {
                r.members
                    .keys()
                    .map(|n| OnlineUser { username: n.to_string(), display_name: directory.display_name(n, store) })
                    .collect()
            })
            .unwrap_or_default();
        ctx.batch.reply(conn, request_id, Reply::RoomMembers { room: room.to_string(), members }, false);
    }
}

/// Takes `conn` out of `name`'s sessions in the room, and `name` out of the room with its
/// last; returns whether `conn` was in it.
fn leave_room(room: &mut Room, name: &str, conn: ConnId) -> bool {
    let Some(sessions) = room.members.get_mut(name) else { return false };
    let before = sessions.len();
    sessions.retain(|c| *c != conn);
    let left = sessions.len() != before;
    if sessions.is_empty() {
        room.members.remove(name);
    }
    left
}

pub fn list(ctx: &mut Ctx, conn: ConnId, request_id: u32, after: &str, limit: u32) {
    let limit = if limit == 0 { 100 } else { limit.min(MAX_ROOM_PAGE) };
    let (page, more) = ctx.shared.rooms.page(after, limit as usize);
    let rooms = page.into_iter().map(|(name, members)| RoomInfo { name, members }).collect();
    ctx.batch.reply(conn, request_id, Reply::Rooms { rooms, more }, false);
}

/// Every session of every online user but the sender's.
pub fn broadcast(ctx: &mut Ctx, conn: ConnId, request_id: u32, from: &SessionUser, content: Content) -> Handled {
    if !(ctx.shared.config.broadcast_by_anyone || from.admin) {
        return Err(Refusal::new(ErrorCode::Forbidden, "only administrators may broadcast"));
    }
    let push = Push::Broadcast { from: from.name.to_string(), content: content.clone() };
    let app = app_of(&from.name);
    let sender = ctx.shared.directory.conns_of(&from.name);
    let targets: Vec<ConnId> =
        ctx.shared.directory.all_conns(app).into_iter().filter(|t| *t != conn && !sender.contains(t)).collect();
    fan_out(ctx, conn, request_id, from, push, targets)?;
    // In a cluster every other node pushes it to its own users (the sender's node counted
    // only its own in `Delivered`: the others answer nobody).
    if let Some(bus) = &ctx.shared.bus {
        for node in bus.membership().others().collect::<Vec<_>>() {
            let cmd = RemoteCmd::Broadcast { from: from.name.to_string(), content: content.clone() };
            ctx.batch.send_to_node(node, cmd, None, false);
        }
    }
    Ok(())
}

/// A broadcast made on another cluster node: every session here of its app's users.
pub fn broadcast_here(ctx: &mut Ctx, from: String, content: Content) {
    let app = app_of(&from).to_string();
    let targets = ctx.shared.directory.all_conns(&app);
    let encoded: Arc<[u8]> = wire::encode(ServerFrame::Push(Push::Broadcast { from, content })).into();
    for target in &targets {
        ctx.batch.frame_bytes(*target, &encoded, false);
    }
    ctx.delivered(targets.len() as u64);
}

/// A live push to `targets`, encoded once and shared by their queues, paid for by the
/// sender's fan-out budget; the sender learns how many it reached.
fn fan_out(
    ctx: &mut Ctx,
    conn: ConnId,
    request_id: u32,
    from: &SessionUser,
    push: Push,
    targets: Vec<ConnId>,
) -> Handled {
    let encoded: Arc<[u8]> = wire::encode(ServerFrame::Push(push)).into();
    pay_for_fanout(ctx, conn, encoded.len(), targets.len())?;
    let recipients = targets.len() as u32;
    for target in targets {
        ctx.batch.frame_bytes(target, &encoded, false);
    }
    ctx.received(from, 1);
    ctx.delivered(u64::from(recipients));
    ctx.batch.reply(conn, request_id, Reply::Delivered { recipients }, false);
    Ok(())
}

/// Charges a live fan-out of `frame` bytes to `recipients` to the sender's budget,
/// unless the server's output is already at its global bound.
fn pay_for_fanout(ctx: &Ctx, conn: ConnId, frame: usize, recipients: usize) -> Handled {
    let cost = (frame as u64).saturating_mul(recipients as u64);
    let config = &ctx.shared.config;
    if ctx.shared.ledger.total().saturating_add(cost) > config.max_outbound_total as u64 {
        // The total drains as clients read (or are cut): a second is a fair guess.
        return Err(Refusal::rate_limited("the server's output is at its bound", SERVER_BUSY_RETRY));
    }
    if let Err(wait) = ctx.shared.fanout.take(conn, cost, Instant::now()) {
        return Err(Refusal::rate_limited("fan-out budget spent (size times recipients)", wait));
    }
    Ok(())
}
