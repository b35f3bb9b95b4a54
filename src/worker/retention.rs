//! How far a stored log's deletion floor may rise, for inboxes, groups and support
//! conversations alike (protocol.md "History").
//!
//! A message is deleted once every reader has acknowledged it *and* it is older than the
//! history window (`--history-days`): [`settle`] raises the floor to the lowest reader's
//! acknowledged position, but not over a message younger than the window. With a window of
//! zero that is the lowest ack itself, as before history existed (and nothing is read to
//! find it). Deleting stays what it was: a floor change through the commit log, the messages
//! below it collected when the worker is idle (`store/garbage.rs`).
//!
//! Time moves floors too: a message acknowledged today may go in thirty days without any
//! reader doing anything. So each worker passes over the logs it has loaded now and then
//! (`History::pass`, a bounded number per pass, every [`pass_every`]), and each log is
//! settled when it is loaded. To make
//! that cheap, a log remembers the timestamp of its oldest kept message: until the window
//! has passed since, nothing can go and nothing is read.
//!
//! Two other things move a floor regardless of the window: a group's (or support
//! conversation's) count bound, `--group-retention` ([`drop_to`]), and an inbox's quota,
//! whose history is trimmed oldest first to let new messages in ([`make_room`]). The
//! statistics' stored count stays "owed to someone": what is above the lowest ack.

use super::context::Ctx;
use super::cursor::READ_CHUNK;
use super::message::wire_size;
use super::refusal::{Handled, Refusal};
use crate::clock::now_ms;
use crate::protocol::Seq;
use crate::store::{LogId, LogOwner};
use std::time::Duration;

/// Messages looked at, at most, by one settling of one log: the rest waits for the next
/// ack or pass, so settling never holds the worker long whatever expired at once.
const SCAN_STEP: u64 = 4096;

/// How often a worker passes over its loaded logs (more often under a window shorter
/// than four times this: tests); the pass itself is `History::pass`'s.
const PASS_EVERY: Duration = Duration::from_secs(10);

/// What a log keeps below its readers' positions, beside its floor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Every reader has acknowledged up to here (as far as this log has been told): what
    /// is above is counted as stored in the statistics.
    pub settled: Seq,
    /// The timestamp of the message just above the floor, when known: nothing can expire
    /// before the window has passed since it.
    pub oldest_ms: Option<u64>,
    /// The bytes (as `wire_size` counts them) of the kept, acknowledged messages from the
    /// floor up to `settled`: an inbox's history, which the quota may trim (inboxes only).
    pub bytes: u64,
}

/// A stored log, by kind and owner.
#[derive(Clone, Copy, Debug)]
pub struct LogRef {
    pub id: LogId,
    pub owner: LogOwner,
}

/// How far the floor may rise and what rising that far frees.
struct Expired {
    upto: Seq,
    bytes: u64,
    /// The timestamp of the message that would then be the oldest kept, if it was read.
    next_oldest: Option<u64>,
}

/// The one rule: every reader has acknowledged up to `lowest_ack`, so the floor rises to
/// it, but not over a message younger than the history window. Called after every ack
/// (inbox, group, support), by the periodic pass and when a log is loaded. The readers'
/// position is a plain sequence: who the readers are (devices, members, staff) is the
/// caller's.
pub fn settle(ctx: &mut Ctx, log: LogRef, floor: &mut Seq, retention: &mut Retention, lowest_ack: Seq) -> Handled {
    // What the readers acknowledged is so whether or not the floor can follow now.
    let counted_from = (*floor).max(retention.settled);
    retention.settled = retention.settled.max(lowest_ack);
    uncount(ctx, counted_from, (*floor).max(retention.settled));
    let expired = expired(ctx, log, *floor, retention, lowest_ack)?;
    raise(ctx, log, floor, retention, expired)
}

/// Drops everything up to `to` whether read or not: a count bound (`--group-retention`).
pub fn drop_to(ctx: &mut Ctx, log: LogRef, floor: &mut Seq, retention: &mut Retention, to: Seq) -> Handled {
    let counted_from = (*floor).max(retention.settled);
    raise(ctx, log, floor, retention, Expired { upto: to, bytes: 0, next_oldest: None })?;
    uncount(ctx, counted_from, (*floor).max(retention.settled));
    Ok(())
}

/// An inbox about to take `wanted` more bytes beside `unacked` bytes not yet acknowledged:
/// if that and its history pass the quota, the history is trimmed, oldest first, to a
/// sixteenth below the quota (so that a full inbox is not trimmed again at every message).
/// Only acknowledged messages go: the quota's refusal is for what is unacknowledged (see
/// `quota::check`), never for history.
pub fn make_room(
    ctx: &mut Ctx,
    log: LogRef,
    floor: &mut Seq,
    retention: &mut Retention,
    unacked: u64,
    wanted: u64,
) -> Handled {
    let max = ctx.config().max_inbox_bytes;
    let total = unacked.saturating_add(retention.bytes).saturating_add(wanted);
    if total <= max || retention.settled <= *floor {
        return Ok(());
    }
    let to_free = total - (max - max / 16).min(total);
    let (mut freed, mut upto, mut next_oldest, mut after) = (0u64, *floor, None, *floor);
    'scan: while freed < to_free && after < retention.settled {
        let chunk =
            ctx.partition.read(log.id, log.owner, after, (retention.settled - after).min(READ_CHUNK) as usize)?;
        let Some(&(last, _)) = chunk.last() else { break };
        for (seq, stored) in chunk {
            if seq > retention.settled || freed >= to_free {
                next_oldest = Some(stored.timestamp_ms);
                break 'scan;
            }
            freed += wire_size(&stored) as u64;
            upto = seq;
        }
        after = last;
    }
    raise(ctx, log, floor, retention, Expired { upto, bytes: freed, next_oldest })
}

/// How far the window lets the floor rise towards `limit`.
fn expired(ctx: &mut Ctx, log: LogRef, floor: Seq, retention: &mut Retention, limit: Seq) -> Result<Expired, Refusal> {
    let unchanged = Expired { upto: floor, bytes: 0, next_oldest: retention.oldest_ms };
    if limit <= floor {
        return Ok(unchanged);
    }
    let window = ctx.config().history;
    if window.is_zero() {
        // Nothing is kept: no need to look at what goes.
        return Ok(Expired { upto: limit, bytes: 0, next_oldest: None });
    }
    let cutoff = now_ms().saturating_sub(window.as_millis() as u64);
    if retention.oldest_ms.is_some_and(|oldest| oldest > cutoff) {
        return Ok(unchanged);
    }
    let mut found = Expired { upto: floor, bytes: 0, next_oldest: None };
    let (mut after, mut looked) = (floor, 0);
    'scan: while looked < SCAN_STEP {
        let take = (limit.saturating_sub(after) + 1).min(READ_CHUNK).min(SCAN_STEP - looked);
        let chunk = ctx.partition.read(log.id, log.owner, after, take as usize)?;
        let Some(&(last, _)) = chunk.last() else { break };
        looked += chunk.len() as u64;
        for (seq, stored) in chunk {
            // Timestamps only roughly follow sequences (a service's message is stamped on
            // another worker): the first young one stops the floor, which only keeps more.
            if seq > limit || stored.timestamp_ms > cutoff {
                found.next_oldest = Some(stored.timestamp_ms);
                break 'scan;
            }
            found.bytes += wire_size(&stored) as u64;
            found.upto = seq;
        }
        after = last;
    }
    Ok(found)
}

/// Raises the floor to `expired.upto` (if above it): one change into the commit log.
fn raise(ctx: &mut Ctx, log: LogRef, floor: &mut Seq, retention: &mut Retention, expired: Expired) -> Handled {
    if expired.upto <= *floor {
        retention.oldest_ms = expired.next_oldest.or(retention.oldest_ms);
        return Ok(());
    }
    ctx.partition.raise_floor(log.id, log.owner, floor.next(), expired.upto)?;
    *floor = expired.upto;
    retention.oldest_ms = expired.next_oldest;
    retention.bytes = match *floor >= retention.settled {
        // Nothing acknowledged is kept any more: exactly none (whatever estimates drifted).
        true => 0,
        false => retention.bytes.saturating_sub(expired.bytes),
    };
    Ok(())
}

/// Messages from `before` up to `after` are no longer owed to anyone.
fn uncount(ctx: &Ctx, before: Seq, after: Seq) {
    if after > before {
        ctx.shared.metrics.stored_delta(-((after - before) as i64));
    }
}

/// How often a worker passes over its loaded logs; None with no history window (floors
/// then follow the acks alone).
pub fn pass_every(history: Duration) -> Option<Duration> {
    (!history.is_zero()).then(|| PASS_EVERY.min(history / 4).max(Duration::from_millis(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_runs_only_with_a_window_and_often_enough_for_it() {
        assert_eq!(pass_every(Duration::ZERO), None);
        assert_eq!(pass_every(Duration::from_secs(30 * 24 * 3600)), Some(PASS_EVERY));
        assert_eq!(pass_every(Duration::from_millis(400)), Some(Duration::from_millis(100)));
        assert_eq!(pass_every(Duration::from_millis(1)), Some(Duration::from_millis(10)));
    }
}
