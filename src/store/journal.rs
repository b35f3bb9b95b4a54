//! The message journal: a write-ahead log that makes a batch of new messages durable with
//! one sled write, where inserting each into its owner's log would cost one write apiece
//! (a sled write is about 13 us here and does not scale across threads).
//!
//! A worker stages each new message in its log's in-memory table (readable at once) and
//! encodes it into the batch's journal value; the value is written in the batch's group
//! commit, before any receipt. Later the worker migrates each journal value into the
//! per-owner logs: only the messages not yet acknowledged by then, so a message its
//! recipient acknowledged quickly is never written twice, nor deleted. At start, every
//! journal value left over is migrated the same way before anything reads the logs.
//!
//! Key: a fresh id (u64 big-endian) → postcard `Vec<JournalRecord>`.

use super::{decode, read_u64, Store, StoreResult, StoredMessage};
use serde::{Deserialize, Serialize};

/// Which log a journal record belongs to.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogId {
    Inbox,
    Group,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub log: LogId,
    pub owner: u64,
    pub seq: u64,
    pub message: StoredMessage,
}

/// The same record, borrowing its message, for encoding without a copy.
#[derive(Serialize)]
struct JournalRecordRef<'a> {
    log: LogId,
    owner: u64,
    seq: u64,
    message: &'a StoredMessage,
}

/// One batch's journal value under construction: records encoded as they come, so the
/// commit writes them without re-encoding.
#[derive(Default)]
pub struct JournalBuffer {
    encoded: Vec<u8>,
    /// (log, owner, seq) of each record, for the migration.
    pub records: Vec<(LogId, u64, u64)>,
}

impl JournalBuffer {
    pub fn add(&mut self, log: LogId, owner: u64, seq: u64, message: &StoredMessage) {
        let record = JournalRecordRef { log, owner, seq, message };
        let buffer = std::mem::take(&mut self.encoded);
        self.encoded = postcard::to_extend(&record, buffer).expect("postcard encoding of store records is infallible");
        self.records.push((log, owner, seq));
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The value: a postcard sequence (varint count, then the records).
    fn value(&self) -> Vec<u8> {
        let mut value = postcard::to_allocvec(&(self.records.len() as u64)).expect("encoding a u64");
        value.extend_from_slice(&self.encoded);
        value
    }
}

impl Store {
    /// Writes a batch's journal value (part of its group commit); returns its key.
    pub fn journal_write(&self, buffer: &JournalBuffer) -> StoreResult<u64> {
        let key = self.next_id()?;
        self.journal.insert(key.to_be_bytes(), buffer.value())?;
        Ok(key)
    }

    /// Moves a journal value's still-unacknowledged messages from the in-memory tables
    /// into their owners' logs, then drops the value. Only the worker that wrote the value
    /// may migrate it: its own reads must never see a message in neither place.
    pub fn journal_migrate(&self, key: Option<u64>, records: &[(LogId, u64, u64)]) -> StoreResult<()> {
        for &(log, owner, seq) in records {
            let log = self.log(log);
            if let Some(message) = log.unstage(owner, seq) {
                if seq > log.floor(owner)? {
                    log.append(owner, seq, &message)?;
                }
            }
        }
        if let Some(key) = key {
            self.journal.remove(key.to_be_bytes())?;
        }
        Ok(())
    }

    /// Migrates every journal value left by the last run (call before anything reads the
    /// logs); returns how many messages went into the logs.
    pub fn journal_recover(&self) -> StoreResult<u64> {
        let mut migrated = 0;
        for entry in self.journal.iter() {
            let (key, raw) = entry?;
            read_u64("journal", &key)?;
            for record in decode::<Vec<JournalRecord>>("journal", &raw)? {
                let log = self.log(record.log);
                if record.seq > log.floor(record.owner)? {
                    log.append(record.owner, record.seq, &record.message)?;
                    migrated += 1;
                }
            }
            self.journal.remove(key)?;
        }
        Ok(migrated)
    }

    fn log(&self, log: LogId) -> &super::SeqLog {
        match log {
            LogId::Inbox => &self.inbox,
            LogId::Group => &self.group_log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Content, SenderKind};

    fn message(text: &str) -> StoredMessage {
        StoredMessage {
            message_id: 1,
            from: "alice".into(),
            sender: SenderKind::User,
            timestamp_ms: 5,
            content: Content::text(text),
            event: None,
            except: None,
        }
    }

    #[test]
    fn staged_messages_read_like_stored_ones_and_migrate_unless_acked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.inbox.append(7, 1, &message("m1")).unwrap();
        let mut buffer = JournalBuffer::default();
        for seq in 2..=4 {
            store.inbox.stage(7, seq, message(&format!("m{seq}")));
            buffer.add(LogId::Inbox, 7, seq, &message(&format!("m{seq}")));
        }
        let key = store.journal_write(&buffer).unwrap();
        let seqs = |s: &Store| s.inbox.read(7, 0, 10).unwrap().iter().map(|(q, _)| *q).collect::<Vec<_>>();
        assert_eq!(seqs(&store), vec![1, 2, 3, 4], "the log first, then the staged");
        assert_eq!(store.inbox.state(7).unwrap().last_seq, 4);
        assert_eq!(store.inbox.read(7, 2, 1).unwrap()[0].0, 3);

        store.inbox.raise_floor(7, 2).unwrap();
        store.journal_migrate(Some(key), &buffer.records).unwrap();
        assert_eq!(seqs(&store), vec![3, 4]);
        assert_eq!(store.stats().unwrap().stored_messages, 2);
    }

    #[test]
    fn recovery_migrates_what_a_crash_left_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut buffer = JournalBuffer::default();
            for seq in 1..=3 {
                store.inbox.stage(9, seq, message("x"));
                buffer.add(LogId::Inbox, 9, seq, &message("x"));
            }
            store.group_log.stage(40, 1, message("to the group"));
            buffer.add(LogId::Group, 40, 1, &message("to the group"));
            store.journal_write(&buffer).unwrap();
            store.inbox.raise_floor(9, 1).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.journal_recover().unwrap(), 3, "the acked one stays gone");
        assert_eq!(store.inbox.read(9, 0, 10).unwrap().iter().map(|(q, _)| *q).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(store.group_log.read(40, 0, 10).unwrap()[0].1, message("to the group"));

        assert_eq!(store.journal_recover().unwrap(), 0);
    }
}
