//! A numbered message log per owner (a user's inbox, a group): contiguous sequences from 1,
//! and a floor at and below which messages are gone.
//!
//! Keys: `owner ++ 0x00` → floor (u64); `owner ++ 0x01 ++ seq` → [`StoredMessage`]. The
//! last sequence is derived (the highest key, or the floor when the log is empty), so a
//! crash can never leave a counter and the messages disagreeing.
//!
//! Raising the floor (an ack) is one write, however many messages it covers; the messages
//! below it are garbage, invisible to reads, and are deleted later in bounded steps
//! ([`SeqLog::collect`]) or at start ([`SeqLog::collect_all`]). A sled write costs about as
//! much as the rest of a message's handling, so deleting at ack time would halve the rate
//! at which a backlog can drain.

use super::{decode, encode, read_u64, StoreResult, StoredMessage};
use crate::protocol::{GroupId, Seq, SupportId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

const FLOOR: u8 = 0x00;
const MESSAGE: u8 = 0x01;

/// Whose log: a user's (an inbox) or a group's (its history); which of the two is the
/// log's kind ([`super::LogId`], or which [`SeqLog`]). User and group ids come from one
/// counter, so an owner is never both. Stored as the bare u64 it holds, in keys
/// (big-endian) and in records (postcard), exactly as before the type existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogOwner(pub u64);

impl LogOwner {
    /// The number, for keys.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<UserId> for LogOwner {
    fn from(user: UserId) -> Self {
        LogOwner(user.get())
    }
}

impl From<GroupId> for LogOwner {
    fn from(group: GroupId) -> Self {
        LogOwner(group.get())
    }
}

impl From<SupportId> for LogOwner {
    fn from(conversation: SupportId) -> Self {
        LogOwner(conversation.get())
    }
}

impl fmt::Display for LogOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a log stands: messages `floor+1..=last_seq` may be stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    pub floor: Seq,
    pub last_seq: Seq,
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

    /// The floor and the last sequence in the tree (a partition adds what it has staged).
    pub fn state(&self, owner: LogOwner) -> StoreResult<LogState> {
        let floor = self.floor(owner)?;
        let last_stored = match self.tree.scan_prefix(prefix(owner)).next_back() {
            Some(entry) => read_seq(self.name, &entry?.0[9..])?,
            None => Seq::ZERO,
        };
        Ok(LogState { floor, last_seq: floor.max(last_stored) })
    }

    pub fn append(&self, owner: LogOwner, seq: Seq, message: &StoredMessage) -> StoreResult<()> {
        self.tree.insert(message_key(owner, seq), encode(message))?;
        Ok(())
    }

    /// Up to `limit` messages in the tree with sequence above `after` (and above the
    /// floor), in order. Messages staged by a worker and not yet migrated are its
    /// partition's to add (see `Partition::read`).
    pub fn read(&self, owner: LogOwner, after: Seq, limit: usize) -> StoreResult<Vec<(Seq, StoredMessage)>> {
        let after = after.max(self.floor(owner)?);
        let range = message_key(owner, after.next())..=message_key(owner, Seq::MAX);
        let mut out = Vec::new();
        for entry in self.tree.range(range).take(limit) {
            let (key, raw) = entry?;
            out.push((read_seq(self.name, &key[9..])?, decode(self.name, &raw)?));
        }
        Ok(out)
    }

    /// Up to `limit` messages in the tree below `below` and above the floor, newest first
    /// (history pages read backwards). Messages staged by a worker are its partition's to
    /// add (see `Partition::read_back`).
    pub fn read_back(&self, owner: LogOwner, below: Seq, limit: usize) -> StoreResult<Vec<(Seq, StoredMessage)>> {
        let floor = self.floor(owner)?;
        if below <= floor.next() {
            return Ok(Vec::new());
        }
        let range = message_key(owner, floor.next())..message_key(owner, below);
        let mut out = Vec::new();
        for entry in self.tree.range(range).rev().take(limit) {
            let (key, raw) = entry?;
            out.push((read_seq(self.name, &key[9..])?, decode(self.name, &raw)?));
        }
        Ok(out)
    }

    pub fn floor(&self, owner: LogOwner) -> StoreResult<Seq> {
        match self.tree.get(floor_key(owner))? {
            Some(raw) => read_seq(self.name, &raw),
            None => Ok(Seq::ZERO),
        }
    }

    /// Everything up to `up_to` is gone from now on (one write); the messages become
    /// garbage for [`SeqLog::collect`].
    pub fn raise_floor(&self, owner: LogOwner, up_to: Seq) -> StoreResult<()> {
        self.tree.insert(floor_key(owner), &up_to.get().to_be_bytes())?;
        Ok(())
    }

    /// Deletes at most `max` garbage messages of `owner` in `from..=to`; returns the next
    /// sequence still to delete, or None when the range is done.
    pub fn collect(&self, owner: LogOwner, from: Seq, to: Seq, max: usize) -> StoreResult<Option<Seq>> {
        let mut garbage = Vec::new();
        let mut next = None;
        for (taken, entry) in self.tree.range(message_key(owner, from)..=message_key(owner, to)).enumerate() {
            let (key, _) = entry?;
            if taken == max {
                next = Some(read_seq(self.name, &key[9..])?);
                break;
            }
            garbage.push(key);
        }
        // Plain removes, not a sled batch: garbage needs no atomicity, and a batch writes
        // a manifest to sled's log even when empty, which most ranges are (messages acked
        // before migration never reach the tree).
        for key in garbage {
            self.tree.remove(key)?;
        }
        Ok(next)
    }

    /// Deletes every message at or below its owner's floor (garbage a crash left behind);
    /// returns how many.
    pub fn collect_all(&self) -> StoreResult<u64> {
        let mut floors = std::collections::HashMap::new();
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            let owner = read_owner(self.name, &key[..8])?;
            match key.get(8) {
                Some(&FLOOR) => {
                    floors.insert(owner, read_seq(self.name, &raw)?);
                }
                _ if read_seq(self.name, &key[9..])? <= floors.get(&owner).copied().unwrap_or(Seq::ZERO) => {
                    batch.remove(key);
                    removed += 1;
                }
                _ => {}
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(removed)
    }

    /// Calls `each(owner, floor, [(seq, decodes)])` for every owner with a floor or
    /// messages in the tree, in owner order (verification; O(data)).
    pub fn for_each_owner(&self, mut each: impl FnMut(LogOwner, Seq, &[(Seq, bool)])) -> StoreResult<()> {
        // (owner, floor, its messages) of the owner being read.
        let mut current: Option<OwnerScan> = None;
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            let owner = read_owner(self.name, key.get(..8).unwrap_or(&[]))?;
            if current.as_ref().is_some_and(|c| c.0 != owner) {
                let (o, f, seqs) = current.take().expect("checked");
                each(o, f, &seqs);
            }
            let (_, floor, seqs) = current.get_or_insert_with(|| (owner, Seq::ZERO, Vec::new()));
            match key.get(8) {
                Some(&FLOOR) => *floor = read_seq(self.name, &raw)?,
                _ => {
                    let seq = read_seq(self.name, key.get(9..).unwrap_or(&[]))?;
                    seqs.push((seq, decode::<StoredMessage>(self.name, &raw).is_ok()));
                }
            }
        }
        if let Some((o, f, seqs)) = current {
            each(o, f, &seqs);
        }
        Ok(())
    }

    /// Rewrites in place every stored message (floors are not messages) for which
    /// `rewrite` returns true; returns how many. A message that does not decode is left
    /// as it is, for verification to name. O(data), for one-time migrations.
    pub(super) fn rewrite_messages(&self, mut rewrite: impl FnMut(&mut StoredMessage) -> bool) -> StoreResult<u64> {
        let mut rewritten = 0;
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            if key.len() != 17 || key[8] != MESSAGE {
                continue;
            }
            let Ok(mut message) = decode::<StoredMessage>(self.name, &raw) else { continue };
            if rewrite(&mut message) {
                self.tree.insert(key, encode(&message))?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Removes the owner's log entirely.
    pub fn remove_all(&self, owner: LogOwner) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for entry in self.tree.scan_prefix(owner.get().to_be_bytes()) {
            batch.remove(entry?.0);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Stored messages above `settled(owner, floor)` in all logs: those some reader has not
    /// acknowledged, when `settled` says where each log is acknowledged by every reader
    /// (administration and tests; O(data)).
    pub fn count_messages_above(&self, mut settled: impl FnMut(LogOwner, Seq) -> StoreResult<Seq>) -> StoreResult<u64> {
        // (owner, floor, where it is settled once looked up) of the owner being read.
        let (mut count, mut current): (u64, Option<(LogOwner, Seq, Option<Seq>)>) = (0, None);
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            let this = read_owner(self.name, &key[..8])?;
            if current.is_none_or(|(owner, _, _)| owner != this) {
                current = Some((this, Seq::ZERO, None));
            }
            let Some((owner, floor, above)) = current.as_mut() else { continue };
            match key.get(8) {
                // The floor key sorts before the owner's messages.
                Some(&FLOOR) => *floor = read_seq(self.name, &raw)?,
                _ => {
                    let above = match above {
                        Some(above) => *above,
                        None => *above.insert(settled(*owner, *floor)?),
                    };
                    if read_seq(self.name, &key[9..])? > above {
                        count += 1;
                    }
                }
            }
        }
        Ok(count)
    }

    /// Stored messages above their floors in all logs (administration and tests; O(data)).
    pub fn count_messages(&self) -> StoreResult<u64> {
        let (mut count, mut owner, mut floor) = (0, None, Seq::ZERO);
        for entry in self.tree.iter() {
            let (key, raw) = entry?;
            let this = read_owner(self.name, &key[..8])?;
            if owner != Some(this) {
                (owner, floor) = (Some(this), Seq::ZERO);
            }
            match key.get(8) {
                // The floor key sorts before the owner's messages.
                Some(&FLOOR) => floor = read_seq(self.name, &raw)?,
                _ if read_seq(self.name, &key[9..])? > floor => count += 1,
                _ => {}
            }
        }
        Ok(count)
    }
}

/// An owner, its floor and (sequence, decodes) of each message, as verification reads them.
type OwnerScan = (LogOwner, Seq, Vec<(Seq, bool)>);

fn floor_key(owner: LogOwner) -> [u8; 9] {
    let mut key = [0; 9];
    key[..8].copy_from_slice(&owner.get().to_be_bytes());
    key[8] = FLOOR;
    key
}

fn prefix(owner: LogOwner) -> [u8; 9] {
    let mut key = floor_key(owner);
    key[8] = MESSAGE;
    key
}

fn message_key(owner: LogOwner, seq: Seq) -> [u8; 17] {
    let mut key = [0; 17];
    key[..9].copy_from_slice(&prefix(owner));
    key[9..].copy_from_slice(&seq.get().to_be_bytes());
    key
}

/// A big-endian sequence (a key's tail, a floor's value).
fn read_seq(tree: &'static str, raw: &[u8]) -> StoreResult<Seq> {
    read_u64(tree, raw).map(Seq)
}

/// A key's big-endian owner.
fn read_owner(tree: &'static str, raw: &[u8]) -> StoreResult<LogOwner> {
    read_u64(tree, raw).map(LogOwner)
}
