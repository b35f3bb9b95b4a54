//! What a commit-log record says: the durable changes of one worker batch, and how each is
//! applied to sled when the log is replayed.
//!
//! A record's payload is the batch's changes, postcard-encoded one after another. Every
//! change is idempotent and safe to apply on top of any state sled recovered to (sled
//! keeps some prefix of its unflushed writes after a crash): a message is put only above
//! its log's floor, a floor or a member's ack only ever rises.

use crate::store::{DedupRecord, LogId, Store, StoreError, StoreResult, StoredMessage};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new message, `seq` of `owner`'s log.
    Message { log: LogId, owner: u64, seq: u64, message: StoredMessage },
    /// Everything up to `floor` of `owner`'s log is acknowledged (or trimmed).
    Floor { log: LogId, owner: u64, floor: u64 },
    /// A group member's acknowledged position.
    GroupAck { group: u64, username: String, acked: u64 },
    /// Sends remembered for idempotent retries.
    Dedup { written_ms: u64, records: Vec<DedupRecord> },
    /// A resume token (its digest) issued at a login.
    Token { uid: u64, digest: [u8; 32], expires_ms: u64 },
    /// Every token of the user revoked (logout). In the log with the tokens, so a replay
    /// never brings back a token revoked after it was issued.
    RevokeTokens { uid: u64 },
}

/// [`Change`] borrowing its large parts, for encoding without a copy. Same variants in the
/// same order with the same field types: postcard encodes both alike (tested below).
#[derive(Serialize)]
pub enum ChangeRef<'a> {
    Message { log: LogId, owner: u64, seq: u64, message: &'a StoredMessage },
    Floor { log: LogId, owner: u64, floor: u64 },
    GroupAck { group: u64, username: &'a str, acked: u64 },
    Dedup { written_ms: u64, records: &'a [DedupRecord] },
    Token { uid: u64, digest: [u8; 32], expires_ms: u64 },
    RevokeTokens { uid: u64 },
}

/// Appends a change to a batch's payload.
pub fn encode_into(change: &ChangeRef<'_>, payload: &mut Vec<u8>) {
    let buffer = std::mem::take(payload);
    *payload = postcard::to_extend(change, buffer).expect("postcard encoding of store records is infallible");
}

/// The changes of one record's payload.
pub fn decode(mut payload: &[u8]) -> StoreResult<Vec<Change>> {
    let mut changes = Vec::new();
    while !payload.is_empty() {
        let (change, rest) = postcard::take_from_bytes::<Change>(payload)
            .map_err(|e| StoreError::Corrupt { tree: "commit log", detail: e.to_string() })?;
        changes.push(change);
        payload = rest;
    }
    Ok(changes)
}

/// What replaying changes did, for the start-up log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub messages: u64,
    pub floors: u64,
    pub acks: u64,
    pub dedup: u64,
}

impl Store {
    /// Applies one replayed change to sled (no flush: the caller checkpoints after).
    pub fn apply(&self, change: Change, applied: &mut Applied) -> StoreResult<()> {
        match change {
            Change::Message { log, owner, seq, message } => {
                // A deleted group's history stays deleted.
                if log == LogId::Group && self.group(owner)?.is_none() {
                    return Ok(());
                }
                let log = self.log(log);
                if seq > log.floor(owner)? {
                    log.append(owner, seq, &message)?;
                    applied.messages += 1;
                }
            }
            Change::Floor { log, owner, floor } => {
                let log = self.log(log);
                if floor > log.floor(owner)? {
                    log.raise_floor(owner, floor)?;
                    applied.floors += 1;
                }
            }
            Change::GroupAck { group, username, acked } => {
                let member = self.group(group)?.is_some_and(|g| g.members.iter().any(|m| m.username == username));
                if member && acked > self.group_ack(group, &username)? {
                    self.put_group_ack(group, &username, acked)?;
                    applied.acks += 1;
                }
            }
            Change::Dedup { written_ms, records } => {
                self.put_dedup_batch(written_ms, &records)?;
                applied.dedup += records.len() as u64;
            }
            Change::Token { uid, digest, expires_ms } => self.put_token(uid, &digest, expires_ms)?,
            Change::RevokeTokens { uid } => self.revoke_tokens(uid)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Content, SenderKind};
    use crate::store::DedupEntry;

    fn message() -> StoredMessage {
        StoredMessage {
            message_id: 4,
            from: "alice".into(),
            sender: SenderKind::User,
            timestamp_ms: 5,
            content: Content::text("hi"),
            event: None,
            except: None,
        }
    }

    #[test]
    fn borrowed_changes_encode_like_owned_ones() {
        let m = message();
        let records = vec![(1, 2, DedupEntry { recipient: 3, message_id: 4, seq: 5, timestamp_ms: 6 })];
        let pairs = [
            (
                ChangeRef::Message { log: LogId::Group, owner: 7, seq: 8, message: &m },
                Change::Message { log: LogId::Group, owner: 7, seq: 8, message: m.clone() },
            ),
            (
                ChangeRef::Floor { log: LogId::Inbox, owner: 1, floor: 9 },
                Change::Floor { log: LogId::Inbox, owner: 1, floor: 9 },
            ),
            (
                ChangeRef::GroupAck { group: 3, username: "bob", acked: 2 },
                Change::GroupAck { group: 3, username: "bob".into(), acked: 2 },
            ),
            (
                ChangeRef::Dedup { written_ms: 11, records: &records },
                Change::Dedup { written_ms: 11, records: records.clone() },
            ),
            (
                ChangeRef::Token { uid: 5, digest: [7; 32], expires_ms: 99 },
                Change::Token { uid: 5, digest: [7; 32], expires_ms: 99 },
            ),
            (ChangeRef::RevokeTokens { uid: 5 }, Change::RevokeTokens { uid: 5 }),
        ];
        let mut payload = Vec::new();
        for (borrowed, owned) in &pairs {
            let mut one = Vec::new();
            encode_into(borrowed, &mut one);
            assert_eq!(one, postcard::to_allocvec(owned).unwrap());
            encode_into(borrowed, &mut payload);
        }
        let owned: Vec<Change> = pairs.into_iter().map(|(_, o)| o).collect();
        assert_eq!(decode(&payload).unwrap(), owned);
    }

    #[test]
    fn replay_is_idempotent_and_floors_only_rise() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut applied = Applied::default();
        let changes = vec![
            Change::Message { log: LogId::Inbox, owner: 1, seq: 1, message: message() },
            Change::Message { log: LogId::Inbox, owner: 1, seq: 2, message: message() },
            Change::Floor { log: LogId::Inbox, owner: 1, floor: 1 },
            // A group that does not exist (deleted): its messages stay gone.
            Change::Message { log: LogId::Group, owner: 9, seq: 1, message: message() },
        ];
        for _ in 0..2 {
            for change in changes.clone() {
                store.apply(change, &mut applied).unwrap();
            }
        }
        store.apply(Change::Floor { log: LogId::Inbox, owner: 1, floor: 0 }, &mut applied).unwrap();
        assert_eq!(store.inbox.floor(1).unwrap(), 1);
        assert_eq!(store.inbox.read(1, 0, 10).unwrap().len(), 1);
        assert_eq!(store.group_log.read(9, 0, 10).unwrap().len(), 0);
        assert_eq!(applied.floors, 1);
    }
}
