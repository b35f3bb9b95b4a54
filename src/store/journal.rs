//! The sled journal of earlier releases (before the commit log): new messages, one value
//! per worker batch. A data directory written by such a release may still hold values;
//! they are migrated into the per-owner logs when the store opens, before anything reads
//! them. Nothing writes the journal any more.
//!
//! Key: a fresh id (u64 big-endian) → postcard `Vec<JournalRecord>`.

use super::{decode, read_u64, LogOwner, Store, StoreResult, StoredMessage};
use crate::protocol::Seq;
use serde::{Deserialize, Serialize};

/// Which log a journal record belongs to.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogId {
    Inbox,
    Group,
    /// A customer-support conversation's history (appended: journal values of earlier
    /// releases hold only the two above).
    Support,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub log: LogId,
    pub owner: LogOwner,
    pub seq: Seq,
    pub message: StoredMessage,
}

impl Store {
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

    pub(crate) fn log(&self, log: LogId) -> &super::SeqLog {
        match log {
            LogId::Inbox => &self.inbox,
            LogId::Group => &self.group_log,
            LogId::Support => &self.support_log,
        }
    }
}
