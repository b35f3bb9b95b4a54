//! The dedup index: which (sender, client_msg_id, destination) were stored, and what they
//! produced, so a retried send gets its original receipt. In memory, one per worker (the
//! destination's owner stores the message and answers the retry), so its locks are never
//! contended; bounded by age and by count: the window is `dedup_window`, or each worker's
//! share of the last `dedup_capacity` sends if those come sooner. Durable through the
//! commit log and [`crate::store::Store::put_dedup_batch`], reloaded at start.

use crate::protocol::{ClientMsgId, UserId};
use crate::store::{DedupEntry, DedupRecord, LogOwner};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// One send, as a retry names it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    sender: UserId,
    client_msg_id: ClientMsgId,
    /// The log it went to: a user's inbox or a group.
    destination: LogOwner,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Key, DedupEntry>,
    /// Insertion order, for eviction.
    order: VecDeque<Key>,
}

pub struct DedupIndex {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    window_ms: u64,
}

impl DedupIndex {
    pub fn new(capacity: usize, window_ms: u64) -> Self {
        DedupIndex {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: (capacity / SHARDS).max(1),
            window_ms,
        }
    }

    pub fn get(&self, sender: UserId, client_msg_id: ClientMsgId, destination: LogOwner) -> Option<DedupEntry> {
        let key = Key { sender, client_msg_id, destination };
        self.shard(&key).entries.get(&key).copied()
    }

    /// Remembers a send, forgetting the oldest beyond the bounds; `now_ms` ages them.
    pub fn insert(&self, record: DedupRecord, now_ms: u64) {
        let DedupRecord { sender, client_msg_id, entry } = record;
        let key = Key { sender, client_msg_id, destination: entry.recipient };
        let mut shard = self.shard(&key);
        if shard.entries.insert(key, entry).is_none() {
            shard.order.push_back(key);
        }
        let horizon = now_ms.saturating_sub(self.window_ms);
        while let Some(oldest) = shard.order.front().copied() {
            let expired = shard.entries.get(&oldest).is_none_or(|e| e.timestamp_ms < horizon);
            if shard.order.len() <= self.per_shard && !expired {
                break;
            }
            shard.order.pop_front();
            shard.entries.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        // Mix the fields so sequential ids spread over the shards.
        let hash = key.sender.get().wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ key.client_msg_id.get().rotate_left(17)
            ^ key.destination.get().rotate_left(41);
        lock(&self.shards[(hash % SHARDS as u64) as usize])
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Each operation leaves the map and the order consistent before it can panic.
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MessageId, Seq};

    /// A send to destination 5.
    fn record(sender: u64, id: u64, ts: u64) -> DedupRecord {
        let entry = DedupEntry { recipient: LogOwner(5), message_id: MessageId(id), seq: Seq(id), timestamp_ms: ts };
        DedupRecord { sender: UserId(sender), client_msg_id: ClientMsgId(id), entry }
    }

    #[test]
    fn remembers_by_sender_id_and_destination() {
        let index = DedupIndex::new(1000, 60_000);
        index.insert(record(1, 42, 0), 0);
        let (one, two, id) = (UserId(1), UserId(2), ClientMsgId(42));
        assert_eq!(index.get(one, id, LogOwner(5)).map(|e| e.seq), Some(Seq(42)));
        assert_eq!(index.get(one, id, LogOwner(6)), None, "another destination is another message");
        assert_eq!(index.get(two, id, LogOwner(5)), None, "another sender too");
    }

    #[test]
    fn forgets_the_oldest_beyond_count_and_age() {
        let index = DedupIndex::new(SHARDS * 2, 1_000);
        for id in 0..200 {
            index.insert(record(1, id, 10_000), 10_000);
        }
        assert!(index.len() <= SHARDS * 2);
        assert!(index.get(UserId(1), ClientMsgId(199), LogOwner(5)).is_some(), "the newest stays");
        index.insert(record(2, 1, 20_000), 20_000);
        // Inserting into a shard ages out what is older than the window there.
        assert!(index.len() < SHARDS * 2 + 1);
    }
}
