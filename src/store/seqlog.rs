//! A numbered message log per owner (a user's inbox, a group): contiguous sequences from 1,
//! and a floor below which everything has been deleted.
//!
//! Keys: `owner ++ 0x00` → floor (u64); `owner ++ 0x01 ++ seq` → [`StoredMessage`]. The
//! last sequence is derived (the highest key, or the floor when the log is empty), so a
//! crash can never leave a counter and the messages disagreeing.

use super::{decode, encode, read_u64, StoreResult, StoredMessage};

const FLOOR: u8 = 0x00;
const MESSAGE: u8 = 0x01;

/// Where a log stands: messages `floor+1..=last_seq` may be stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    pub floor: u64,
    pub last_seq: u64,
}

#[derive(Clone)]
pub struct SeqLog {
    tree: sled::Tree,
    name: &'static str,
}

impl SeqLog {
    pub fn new(tree: sled::Tree, name: &'static str) -> Self {
        SeqLog { tree, name }
    }

    pub fn state(&self, owner: u64) -> StoreResult<LogState> {
        let floor = match self.tree.get(floor_key(owner))? {
            Some(raw) => read_u64(self.name, &raw)?,
            None => 0,
        };
        let last_stored = match self.tree.scan_prefix(prefix(owner)).next_back() {
            Some(entry) => read_u64(self.name, &entry?.0[9..])?,
            None => 0,
        };
        Ok(LogState { floor, last_seq: floor.max(last_stored) })
    }

    pub fn append(&self, owner: u64, seq: u64, message: &StoredMessage) -> StoreResult<()> {
        self.tree.insert(message_key(owner, seq), encode(message))?;
        Ok(())
    }

    /// Up to `limit` messages with sequence above `after`, in order.
    pub fn read(&self, owner: u64, after: u64, limit: usize) -> StoreResult<Vec<(u64, StoredMessage)>> {
        let range = message_key(owner, after.saturating_add(1))..=message_key(owner, u64::MAX);
        let mut out = Vec::new();
        for entry in self.tree.range(range).take(limit) {
            let (key, raw) = entry?;
            out.push((read_u64(self.name, &key[9..])?, decode(self.name, &raw)?));
        }
        Ok(out)
    }

    /// Deletes everything up to `up_to` and raises the floor to it, atomically.
    pub fn trim(&self, owner: u64, up_to: u64) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        batch.insert(&floor_key(owner), &up_to.to_be_bytes());
        for entry in self.tree.range(message_key(owner, 0)..=message_key(owner, up_to)) {
            batch.remove(entry?.0);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Removes the owner's log entirely.
    pub fn remove_all(&self, owner: u64) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for entry in self.tree.scan_prefix(owner.to_be_bytes()) {
            batch.remove(entry?.0);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Stored messages in all logs (administration and tests; O(data)).
    pub fn count_messages(&self) -> StoreResult<u64> {
        let mut count = 0;
        for entry in self.tree.iter() {
            if entry?.0.get(8) == Some(&MESSAGE) {
                count += 1;
            }
        }
        Ok(count)
    }
}

fn floor_key(owner: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[..8].copy_from_slice(&owner.to_be_bytes());
    key[8] = FLOOR;
    key
}

fn prefix(owner: u64) -> [u8; 9] {
    let mut key = floor_key(owner);
    key[8] = MESSAGE;
    key
}

fn message_key(owner: u64, seq: u64) -> [u8; 17] {
    let mut key = [0; 17];
    key[..9].copy_from_slice(&prefix(owner));
    key[9..].copy_from_slice(&seq.to_be_bytes());
    key
}
