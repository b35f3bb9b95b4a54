//! Cursors waiting for their session's delivery budget (see `budget`), and waking them.
//!
//! A cursor that has something to push and room in its own window, but finds its
//! session's budget spent, is queued here under its connection and marks its worker as
//! waiting on the budget. The ack that frees room wakes every waiting worker; each pumps
//! its queued cursors in the order they started waiting. A cursor whose own ack freed the
//! room queues behind the others when any wait, so one busy conversation cannot keep the
//! rest of the session's backlog waiting forever.

use super::handler::{Handled, Worker};
use super::inbox::Cursor;
use super::WorkerCmd;
use crate::route::ConnId;
use std::sync::Arc;

/// A cursor, by what owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    Inbox(Arc<str>),
    Group(u64, Arc<str>),
}

impl Worker {
    /// The cursor and the last sequence of its conversation, if it is loaded.
    fn cursor_of(&self, cursor: &Waiting) -> Option<(&Cursor, u64)> {
        match cursor {
            Waiting::Inbox(name) => self.users.get(name).map(|u| (&u.cursor, u.last_seq)),
            Waiting::Group(id, name) => {
                let group = self.groups.get(id)?;
                group.members.get(name).map(|m| (&m.cursor, group.last_seq))
            }
        }
    }

    /// Puts the cursor in `conn`'s queue (once).
    fn enqueue(&mut self, conn: ConnId, cursor: Waiting) {
        let queue = self.waiting.entry(conn).or_default();
        if !queue.contains(&cursor) {
            queue.push(cursor);
        }
    }

    fn pump(&mut self, cursor: Waiting) -> Handled {
        match cursor {
            Waiting::Inbox(name) => self.pump_inbox(&name),
            Waiting::Group(id, name) => self.pump_member(id, &name),
        }
    }

    /// Queues the cursor if it has something to push and room in its own window: then only
    /// its session's budget held it. If the budget has room after all (freed by another
    /// worker between the cursor's pump and this look), it is pumped again in the next
    /// batch, so no wake is ever lost.
    pub fn wait_if_starved(&mut self, cursor: Waiting) {
        let window = self.window();
        let stalled = self.cursor_of(&cursor).and_then(|(c, last_seq)| c.stalled(last_seq, window));
        let Some((conn, budget)) = stalled.map(|(conn, budget)| (conn, budget.clone())) else {
            return;
        };
        self.enqueue(conn, cursor);
        if budget.wait(self.index) {
            // Room was freed while it looked: try again in the next batch.
            self.batch.send_to_worker(self.index, WorkerCmd::Pump { conn: Some(conn) });
        }
    }

    /// Pumps the cursors waiting on `conn`'s budget, in order (each queues itself again
    /// if the budget runs out before it is done).
    pub fn pump_waiting(&mut self, conn: ConnId) -> Handled {
        for cursor in self.waiting.remove(&conn).unwrap_or_default() {
            self.pump(cursor)?;
        }
        Ok(())
    }

    /// Every waiting cursor: the fallback for room freed without an ack (a session that
    /// ended, a member removed with messages outstanding).
    pub fn pump_all_waiting(&mut self) -> Handled {
        let conns: Vec<ConnId> = self.waiting.keys().copied().collect();
        for conn in conns {
            self.pump_waiting(conn)?;
        }
        Ok(())
    }

    /// After an ack of `cursor` on `conn`: wakes the workers waiting on the session's
    /// budget, then pumps `cursor` itself (behind the others if any wait).
    pub fn pump_after_ack(&mut self, conn: ConnId, cursor: Waiting) -> Handled {
        let session = self.cursor_of(&cursor).and_then(|(c, _)| c.session.as_ref()).filter(|s| s.conn == conn);
        let Some(budget) = session.map(|s| s.budget.clone()) else {
            return Ok(());
        };
        let contended = budget.contended();
        if contended {
            self.enqueue(conn, cursor.clone());
            budget.wait(self.index);
        }
        for worker in budget.wake() {
            if worker == self.index {
                self.pump_waiting(conn)?;
            } else {
                self.batch.send_to_worker(worker, WorkerCmd::Pump { conn: Some(conn) });
            }
        }
        if !contended {
            self.pump(cursor)?;
        }
        Ok(())
    }
}
