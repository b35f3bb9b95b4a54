//! Deleting acknowledged messages after the fact. An ack only raises its log's floor; the
//! messages below it are queued here and deleted a bounded step at a time whenever the
//! worker has nothing else to do, so deletion never competes with live traffic. Deletions
//! need no sync: if a crash loses some, the server collects them again at start.

use super::handler::Worker;
use log::warn;
use std::collections::VecDeque;

/// Messages deleted per step.
const STEP: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    Inbox,
    Group,
}

/// A range of one log's messages below its floor.
#[derive(Debug)]
pub struct Garbage {
    pub log: Log,
    pub owner: u64,
    pub from: u64,
    pub to: u64,
}

#[derive(Default)]
pub struct GarbageQueue {
    ranges: VecDeque<Garbage>,
}

impl GarbageQueue {
    pub fn push(&mut self, log: Log, owner: u64, from: u64, to: u64) {
        if from <= to {
            self.ranges.push_back(Garbage { log, owner, from, to });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl Worker {
    /// Deletes up to one step of garbage.
    pub fn collect_garbage(&mut self) {
        let Some(range) = self.garbage.ranges.pop_front() else { return };
        let log = match range.log {
            Log::Inbox => &self.shared.store.inbox,
            Log::Group => &self.shared.store.group_log,
        };
        match log.collect(range.owner, range.from, range.to, STEP) {
            Ok(Some(next)) => self.garbage.ranges.push_front(Garbage { from: next, ..range }),
            Ok(None) => {}
            // Left for the collection at the next start.
            Err(e) => warn!("deleting acknowledged messages: {e}"),
        }
    }
}
