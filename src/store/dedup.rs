//! Durable dedup records, written once per worker batch rather than once per message: the
//! records of a batch are one value, keyed by time so expired ones are a prefix to delete.
//!
//! Key: `written_ms ++ id` (both u64 big-endian) → postcard `Vec<(sender, client_msg_id,
//! DedupEntry)>`. The server loads the unexpired ones into memory at start
//! (the worker's `DedupIndex`); lookups never touch disk.

use super::{decode, encode, DedupEntry, Store, StoreResult};

/// One remembered send: who sent it, with which client id, and what it produced.
pub type DedupRecord = (u64, u64, DedupEntry);

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
    use crate::store::{DedupEntry, Store};

    fn entry(seq: u64) -> DedupEntry {
        DedupEntry { recipient: 9, message_id: seq, seq, timestamp_ms: 0 }
    }

    #[test]
    fn batches_load_in_order_and_expire_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_dedup_batch(1_000, &[(1, 1, entry(1)), (1, 2, entry(2))]).unwrap();
        store.put_dedup_batch(2_000, &[(2, 7, entry(3))]).unwrap();
        assert_eq!(store.dedup_since(0).unwrap().len(), 3);
        assert_eq!(store.dedup_since(1_500).unwrap(), vec![(2, 7, entry(3))]);
        assert_eq!(store.prune_dedup(1_500).unwrap(), 1);
        assert_eq!(store.dedup_since(0).unwrap().len(), 1);
    }
}
