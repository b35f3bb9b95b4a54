//! Pushing a reader's backlog from a stored log: one loop for inboxes, groups and support
//! conversations. It reads what the reader's cursor may be sent (within its delivery window
//! and byte budget) a chunk at a time, passes over the messages the reader is not sent
//! (its own, and those its client cannot decode: `device_frames::sent_to`), and pushes the rest,
//! each after the previous one it was pushed.

use super::context::Ctx;
use super::cursor::{Cursor, READ_CHUNK};
use super::message::wire_size;
use super::refusal::Refusal;
use crate::metrics::Metrics;
use crate::protocol::{Message, Push, Seq};
use crate::store::{LogId, LogOwner, StoredMessage};

/// A stored log and its last sequence.
pub struct Log {
    pub id: LogId,
    pub owner: LogOwner,
    pub last_seq: Seq,
}

/// Pushes `cursor`'s backlog in `log` while its window and budget allow: `skip` says which
/// messages it is not sent, `to_wire` makes the pushed message (sequence, the previous one
/// pushed, the stored message). Returns whether the log ended before its last sequence (the
/// cursor then counts everything as sent, so a short log never makes it spin).
pub fn fill(
    ctx: &mut Ctx,
    log: &Log,
    cursor: &mut Cursor,
    skip: impl Fn(&StoredMessage) -> bool,
    to_wire: impl Fn(&Ctx, Seq, Seq, StoredMessage) -> Message,
) -> Result<bool, Refusal> {
    let window = ctx.window();
    loop {
        let Some((from, count)) = cursor.deliverable(log.last_seq, window) else { return Ok(false) };
        let Some(session) = cursor.session.as_mut() else { return Ok(false) };
        let take = session.read_hint(window, count.min(READ_CHUNK));
        let chunk = ctx.partition.read(log.id, log.owner, from - 1, take as usize)?;
        if chunk.is_empty() {
            session.sent_upto = log.last_seq;
            return Ok(true);
        }
        let conn = session.conn;
        for (seq, stored) in chunk {
            if skip(&stored) || !super::device_frames::sent_to(session, stored.device_only()) {
                session.sent_upto = seq;
                continue;
            }
            if !session.has_room(window) {
                return Ok(false);
            }
            let prev = session.pushed(seq, wire_size(&stored));
            let message = to_wire(ctx, seq, prev, stored);
            ctx.batch.push(conn, Push::Message(message), true);
            Metrics::add(&ctx.shared.metrics.delivered, 1);
        }
    }
}
