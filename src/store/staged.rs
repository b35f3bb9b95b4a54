//! Messages a partition has made durable in its commit log but not yet moved into sled:
//! readable at once, by owner and sequence, for each kind of log. Each
//! partition owns its own table (only its worker writes it, so its lock is never
//! contended on the message path); the store keeps a handle on each only to count them
//! for statistics.

use super::{LogId, LogOwner, StoredMessage};
use crate::protocol::Seq;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

type Table = BTreeMap<(LogOwner, Seq), StoredMessage>;

#[derive(Default)]
pub struct StagedLogs {
    inbox: Table,
    group: Table,
    support: Table,
}

/// One partition's table, shared with the store's statistics.
#[derive(Clone, Default)]
pub struct Staged(Arc<Mutex<StagedLogs>>);

impl Staged {
    pub fn lock(&self) -> MutexGuard<'_, StagedLogs> {
        // Single inserts and removes: a panic elsewhere cannot leave the table inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StagedLogs {
    fn table(&mut self, log: LogId) -> &mut Table {
        match log {
            LogId::Inbox => &mut self.inbox,
            LogId::Group => &mut self.group,
            LogId::Support => &mut self.support,
        }
    }

    fn table_ref(&self, log: LogId) -> &Table {
        match log {
            LogId::Inbox => &self.inbox,
            LogId::Group => &self.group,
            LogId::Support => &self.support,
        }
    }

    pub fn insert(&mut self, log: LogId, owner: LogOwner, seq: Seq, message: StoredMessage) {
        self.table(log).insert((owner, seq), message);
    }

    pub fn remove(&mut self, log: LogId, owner: LogOwner, seq: Seq) -> Option<StoredMessage> {
        self.table(log).remove(&(owner, seq))
    }

    pub fn len(&self) -> usize {
        self.inbox.len() + self.group.len() + self.support.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The owner's last staged sequence (0 if none).
    pub fn last(&self, log: LogId, owner: LogOwner) -> Seq {
        self.table_ref(log).range((owner, Seq::ZERO)..=(owner, Seq::MAX)).next_back().map_or(Seq::ZERO, |(k, _)| k.1)
    }

    /// A copy of one staged message.
    pub fn get(&self, log: LogId, owner: LogOwner, seq: Seq) -> Option<StoredMessage> {
        self.table_ref(log).get(&(owner, seq)).cloned()
    }

    /// Up to `limit` of the owner's staged messages from sequence `from` on.
    pub fn read(&self, log: LogId, owner: LogOwner, from: Seq, limit: usize) -> Vec<(Seq, StoredMessage)> {
        let range = self.table_ref(log).range((owner, from)..=(owner, Seq::MAX)).take(limit);
        range.map(|(k, m)| (k.1, m.clone())).collect()
    }

    /// Up to `limit` of the owner's staged messages below `below`, newest first.
    pub fn read_back(&self, log: LogId, owner: LogOwner, below: Seq, limit: usize) -> Vec<(Seq, StoredMessage)> {
        let range = self.table_ref(log).range((owner, Seq::ZERO)..(owner, below)).rev().take(limit);
        range.map(|(k, m)| (k.1, m.clone())).collect()
    }

    /// Replaces a staged message in place; returns whether it was staged.
    pub fn replace(&mut self, log: LogId, owner: LogOwner, seq: Seq, message: &StoredMessage) -> bool {
        match self.table(log).get_mut(&(owner, seq)) {
            Some(staged) => {
                *staged = message.clone();
                true
            }
            None => false,
        }
    }

    /// Drops everything staged for the owner (a deleted group).
    pub fn forget(&mut self, log: LogId, owner: LogOwner) {
        self.table(log).retain(|(o, _), _| *o != owner);
    }

    /// (log, owner, sequence) of everything staged.
    pub fn keys(&self) -> Vec<(LogId, LogOwner, Seq)> {
        let inbox = self.inbox.keys().map(|&(o, s)| (LogId::Inbox, o, s));
        let group = self.group.keys().map(|&(o, s)| (LogId::Group, o, s));
        inbox.chain(group).chain(self.support.keys().map(|&(o, s)| (LogId::Support, o, s))).collect()
    }
}
