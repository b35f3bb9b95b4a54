//! Reading a log from a worker that does not own it (a user's worker counting what is
//! unread in the user's groups and support conversations). The owner reads through its
//! [`super::Partition`]: sled, then its own table of staged messages, on one thread. A
//! reader on another thread must also see what the owner has staged and not yet moved into
//! sled, and must not miss a message the owner moves while it reads.
//!
//! The owner moves a staged message by appending it to sled first and only then removing it
//! from its table (`Partition::migrate`). So a reader that copies the staged tables first
//! and reads sled second finds every message in one or the other: one that left the table
//! before the copy was already in sled, and sled is read after. Read the other way round (as
//! the owner does), a message moved between the two reads would be in neither.

use super::{LogId, LogOwner, LogState, Store, StoreResult, StoredMessage};
use crate::protocol::Seq;
use std::collections::BTreeMap;

impl Store {
    /// Where the owner's log stands, counting what any partition has staged for it.
    pub fn state_across(&self, log: LogId, owner: LogOwner) -> StoreResult<LogState> {
        let staged = self.staged_last(log, owner);
        let mut state = self.log(log).state(owner)?;
        state.last_seq = state.last_seq.max(staged);
        Ok(state)
    }

    /// Up to `limit` messages of the owner's log above `after` (and above its floor), in
    /// order, from any thread: the staged tables are copied first, then sled is read (see
    /// the module's comment for why in this order).
    pub fn read_across(
        &self,
        log: LogId,
        owner: LogOwner,
        after: Seq,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, StoredMessage)>> {
        // Nothing at or below the floor is read; floors only rise.
        let after = after.max(self.log(log).floor(owner)?);
        let tables = self.staged.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut found: BTreeMap<Seq, StoredMessage> = BTreeMap::new();
        for table in tables {
            found.extend(table.lock().read(log, owner, after.next(), limit));
        }
        // A staged copy may have been acknowledged meanwhile: the floor, read again after
        // it, leaves it out as it would in sled (so a page may come out short; an empty one
        // is the end).
        let floor = self.log(log).floor(owner)?;
        found.retain(|seq, _| *seq > floor);
        for (seq, message) in self.log(log).read(owner, after, limit)? {
            found.entry(seq).or_insert(message);
        }
        Ok(found.into_iter().take(limit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::GroupId;
    use crate::store::{LogSettings, Partition, SyncPolicy};

    #[test]
    fn another_thread_reads_sled_and_every_partitions_staged_messages_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let settings = LogSettings { sync: SyncPolicy::Batch, segment_bytes: 1 << 20 };
        let mut owner = Partition::new(store.clone(), 0, settings);
        let _other = Partition::new(store.clone(), 1, settings);
        let group = LogOwner::from(GroupId(5));
        store.group_log.append(group, Seq(1), &StoredMessage::example("m1")).unwrap();
        for seq in 2..=4 {
            owner.stage(LogId::Group, group, Seq(seq), &StoredMessage::example(&format!("m{seq}")));
        }
        owner.commit(0).unwrap();
        let seqs = |page: Vec<(Seq, StoredMessage)>| page.into_iter().map(|(s, _)| s.get()).collect::<Vec<_>>();
        assert_eq!(seqs(store.read_across(LogId::Group, group, Seq::ZERO, 10).unwrap()), [1, 2, 3, 4]);
        assert_eq!(seqs(store.read_across(LogId::Group, group, Seq(1), 2).unwrap()), [2, 3]);
        assert_eq!(store.state_across(LogId::Group, group).unwrap(), LogState { floor: Seq::ZERO, last_seq: Seq(4) });

        owner.raise_floor(LogId::Group, group, Seq(1), Seq(2)).unwrap();
        owner.commit(0).unwrap();
        assert_eq!(seqs(store.read_across(LogId::Group, group, Seq::ZERO, 10).unwrap()), [3, 4]);
        // Moved into sled (a clean stop): the same messages, from sled alone.
        owner.finish().unwrap();
        assert_eq!(store.staged_len(), 0);
        assert_eq!(seqs(store.read_across(LogId::Group, group, Seq::ZERO, 10).unwrap()), [3, 4]);
    }
}
