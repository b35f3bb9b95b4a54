//! Waking cursors that wait for their session's delivery budget (see `budget`).
//!
//! A cursor that has something to push and room in its own window, but finds its
//! session's budget spent, is queued under its connection ([`super::context::WaitQueue`])
//! and marks its worker as waiting on the budget. The ack that frees room wakes every
//! waiting worker; each pumps its queued cursors in the order they started waiting. A
//! cursor whose own ack freed the room queues behind the others when any wait, so one busy
//! conversation cannot keep the rest of the session's backlog waiting forever.
//!
//! Cursors live in inboxes, groups and support conversations alike, so this is where
//! they meet.

use super::commands::WorkerCmd;
use super::context::{Ctx, Waiting};
use super::cursor::Cursor;
use super::groups::Groups;
use super::inbox::Inboxes;
use super::refusal::Handled;
use super::support::Shops;
use crate::route::ConnId;

/// Pushes what a cursor may push now (it queues itself again if the budget runs out).
fn pump(ctx: &mut Ctx, owners: &mut Readers, who: Waiting) -> Handled {
    match who {
        Waiting::Inbox(name, device) => {
            owners.inboxes.get_mut(&name).map_or(Ok(()), |inbox| inbox.pump_device(ctx, &device))
        }
        Waiting::Group(id, name, device) => {
            owners.groups.get_mut(id).map_or(Ok(()), |group| group.pump_device(ctx, &name, &device))
        }
        Waiting::Support(id, name, device) => {
            owners.shops.by_conversation(id).map_or(Ok(()), |shop| shop.pump_device(ctx, id, &name, &device))
        }
    }
}

/// The owners of cursors, lent together.
pub struct Readers<'a> {
    pub inboxes: &'a mut Inboxes,
    pub groups: &'a mut Groups,
    pub shops: &'a mut Shops,
}

/// Pumps the cursors waiting on `conn`'s budget, in order.
pub fn pump_waiting(ctx: &mut Ctx, owners: &mut Readers, conn: ConnId) -> Handled {
    for who in ctx.waiting.take(conn) {
        pump(ctx, owners, who)?;
    }
    Ok(())
}

/// Every waiting cursor: the fallback for room freed without an ack (a session that
/// ended, a member removed with messages outstanding).
pub fn pump_all_waiting(ctx: &mut Ctx, owners: &mut Readers) -> Handled {
    for conn in ctx.waiting.conns() {
        pump_waiting(ctx, owners, conn)?;
    }
    Ok(())
}

/// After an ack of `who` on `conn`: wakes the workers waiting on the session's budget,
/// then pumps `who` itself (behind the others if any wait).
pub fn after_ack(ctx: &mut Ctx, owners: &mut Readers, conn: ConnId, who: Waiting) -> Handled {
    let cursor: Option<&Cursor> = match &who {
        Waiting::Inbox(name, device) => owners.inboxes.get_mut(name).and_then(|inbox| inbox.devices.get(device)),
        Waiting::Group(id, name, device) => {
            owners.groups.get_mut(*id).and_then(|g| g.members.get(name)).and_then(|m| m.devices.get(device))
        }
        Waiting::Support(id, name, device) => owners
            .shops
            .by_conversation(*id)
            .and_then(|shop| shop.conversations.get(id))
            .and_then(|c| c.readers.get(name))
            .and_then(|r| r.devices.get(device)),
    };
    let session = cursor.and_then(|c| c.session.as_ref()).filter(|s| s.conn == conn);
    let Some(budget) = session.map(|s| s.budget.clone()) else {
        return Ok(());
    };
    let contended = budget.contended();
    if contended {
        ctx.waiting.enqueue(conn, who.clone());
        budget.wait(ctx.index);
    }
    for worker in budget.wake() {
        if worker == ctx.index {
            pump_waiting(ctx, owners, conn)?;
        } else {
            ctx.batch.send_to_worker(worker, WorkerCmd::Pump { conn: Some(conn) });
        }
    }
    if !contended {
        pump(ctx, owners, who)?;
    }
    Ok(())
}
