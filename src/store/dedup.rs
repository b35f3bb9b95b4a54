//! Durable dedup records, written once per worker batch rather than once per message: the
//! records of a batch are one value, keyed by time so expired ones are a prefix to delete.
//!
//! Key: `written_ms ++ id` (both u64 big-endian) → postcard `Vec<DedupRecord>`. The
//! server loads the unexpired ones into memory at start (the worker's `DedupIndex`);
//! lookups never touch disk.

use super::{decode, encode, DedupEntry, Store, StoreResult};
use crate::protocol::{ClientMsgId, UserId};
use serde::{Deserialize, Serialize};

/// One remembered send: who sent it, with which client id, and what it produced.
///
/// Stored as the `(sender, client_msg_id, entry)` tuple it was before it had names:
/// postcard writes a struct's fields in order with nothing between them, as it writes a
/// tuple's (tested below), so records written by either read as the other.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupRecord {
    /// The user or service that sent it.
    pub sender: UserId,
    pub client_msg_id: ClientMsgId,
    pub entry: DedupEntry,
}

impl Store {
    /// Writes one batch's records (part of that batch's group commit).
    pub fn put_dedup_batch(&self, written_ms: u64, records: &[DedupRecord]) -> StoreResult<()> {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&written_ms.to_be_bytes());
        key[8..].copy_from_slice(&self.next_id()?.to_be_bytes());
        self.dedup.insert(key, encode(&records))?;
        Ok(())
    }

    /// Every record written at or after `since_ms`, oldest first.
    pub fn dedup_since(&self, since_ms: u64) -> StoreResult<Vec<DedupRecord>> {
        let mut records = Vec::new();
        for entry in self.dedup.range(since_ms.to_be_bytes()..) {
            let (_, raw) = entry?;
            records.extend(decode::<Vec<DedupRecord>>("dedup", &raw)?);
        }
        Ok(records)
    }

    /// Deletes the records written before `before_ms`; returns how many batches went.
    pub fn prune_dedup(&self, before_ms: u64) -> StoreResult<usize> {
        let mut batch = sled::Batch::default();
        let mut pruned = 0;
        for entry in self.dedup.range(..before_ms.to_be_bytes()) {
            batch.remove(entry?.0);
            pruned += 1;
        }
        // An empty sled batch still writes a manifest to the log.
        if pruned > 0 {
            self.dedup.apply_batch(batch)?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::DedupRecord;
    use crate::protocol::{ClientMsgId, MessageId, Seq, UserId};
    use crate::store::{DedupEntry, LogOwner, Store};

    fn record(sender: u64, client_msg_id: u64, seq: u64) -> DedupRecord {
        let entry = DedupEntry { recipient: LogOwner(9), message_id: MessageId(seq), seq: Seq(seq), timestamp_ms: 0 };
        DedupRecord { sender: UserId(sender), client_msg_id: ClientMsgId(client_msg_id), entry }
    }

    #[test]
    fn batches_load_in_order_and_expire_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_dedup_batch(1_000, &[record(1, 1, 1), record(1, 2, 2)]).unwrap();
        store.put_dedup_batch(2_000, &[record(2, 7, 3)]).unwrap();
        assert_eq!(store.dedup_since(0).unwrap().len(), 3);
        assert_eq!(store.dedup_since(1_500).unwrap(), vec![record(2, 7, 3)]);
        assert_eq!(store.prune_dedup(1_500).unwrap(), 1);
        assert_eq!(store.dedup_since(0).unwrap().len(), 1);
    }

    #[test]
    fn records_encode_as_the_tuples_they_were() {
        let record = record(300, 70_000, 5);
        let tuple = (300u64, 70_000u64, (9u64, 5u64, 5u64, 0u64));
        assert_eq!(postcard::to_allocvec(&record).unwrap(), postcard::to_allocvec(&tuple).unwrap());
        let bytes = postcard::to_allocvec(&vec![tuple]).unwrap();
        assert_eq!(postcard::from_bytes::<Vec<DedupRecord>>(&bytes).unwrap(), vec![record]);
    }
}
