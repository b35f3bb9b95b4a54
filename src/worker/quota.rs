//! The per-user storage quota: the bytes of an inbox's stored, unacknowledged messages.
//!
//! Without it one account could fill the disk by sending to an offline account of its own
//! (measured at 80-100 MB/s with 32 KB messages). Each inbox counts what it holds, as the
//! same size estimate the delivery window uses: loaded once when the user is first touched
//! (one read of the backlog, which the quota itself bounds), raised by each stored message,
//! lowered as the inbox's floor rises (to the lowest of its devices' positions). A direct
//! send that would pass `--max-inbox-mib` gets `QuotaExceeded`; the recipient frees room by
//! reading and acknowledging. A sent copy counts in its sender's own inbox, but one that
//! does not fit is dropped, never the message it copies.

use super::cursor::READ_CHUNK;
use super::message::wire_size;
use super::refusal::{Handled, Refusal};
use crate::config::Config;
use crate::protocol::{ErrorCode, Seq, UserId};
use crate::store::{LogId, Partition, StoreError};
use std::collections::BTreeMap;

/// Refuses a message of `bytes` that would take an inbox holding `stored` bytes past the
/// quota.
pub fn check(config: &Config, stored: u64, bytes: usize) -> Handled {
    if stored.saturating_add(bytes as u64) > config.max_inbox_bytes {
        return Err(Refusal::new(
            ErrorCode::QuotaExceeded,
            "the recipient's stored messages reached the per-user quota; retry once they have read them",
        ));
    }
    Ok(())
}

/// The bytes a floor rising from `before` to `floor` frees. Messages some device's session
/// has outstanding are known by their size (`pushed`); the rest (passed over, acknowledged
/// ahead of being pushed, or acknowledged by every device but the one that held the floor)
/// are read, a run at a time.
pub fn floor_bytes(partition: &Partition, uid: UserId, before: Seq, floor: Seq, pushed: &BTreeMap<Seq, usize>) -> u64 {
    let read = |after: Seq, up_to: Seq| {
        backlog_bytes(partition, uid, after, up_to).unwrap_or_else(|e| {
            log::warn!("reading an acknowledged backlog to count it: {e}");
            0
        })
    };
    let mut total = 0u64;
    let mut after = before;
    for (&seq, &size) in pushed.range(before.next()..=floor) {
        if seq > after.next() {
            total += read(after, seq - 1);
        }
        total += size as u64;
        after = seq;
    }
    if after < floor {
        total += read(after, floor);
    }
    total
}

/// The bytes of the inbox's messages after `after` up to `up_to`.
pub fn backlog_bytes(partition: &Partition, uid: UserId, mut after: Seq, up_to: Seq) -> Result<u64, StoreError> {
    let mut total = 0u64;
    while after < up_to {
        let chunk = partition.read(LogId::Inbox, uid.into(), after, (up_to - after).min(READ_CHUNK) as usize)?;
        let Some(&(last, _)) = chunk.last() else { break };
        total += chunk.iter().filter(|(seq, _)| *seq <= up_to).map(|(_, m)| wire_size(m) as u64).sum::<u64>();
        after = last;
    }
    Ok(total)
}
