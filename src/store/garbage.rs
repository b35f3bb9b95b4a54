//! Deleting acknowledged messages after the fact. An ack only raises its log's floor; the
//! messages below it are queued here and deleted a bounded step at a time whenever the
//! partition's worker has nothing else to do, so deletion never competes with live
//! traffic. Deletions need no sync: if a crash loses some, the store collects them again
//! at start.

use super::{LogId, LogOwner, Store};
use crate::protocol::Seq;
use log::warn;
use std::collections::VecDeque;

/// Messages deleted per step.
const STEP: usize = 1024;

/// A range of one log's messages below its floor.
#[derive(Debug)]
struct Garbage {
    log: LogId,
    owner: LogOwner,
    from: Seq,
    to: Seq,
}

#[derive(Default)]
pub struct GarbageQueue {
    ranges: VecDeque<Garbage>,
}

impl GarbageQueue {
    /// Messages `from..=to` of the owner's log are below its floor.
    pub fn push(&mut self, log: LogId, owner: LogOwner, from: Seq, to: Seq) {
        if from <= to {
            self.ranges.push_back(Garbage { log, owner, from, to });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Deletes up to one step of garbage.
    pub fn collect_step(&mut self, store: &Store) {
        let Some(range) = self.ranges.pop_front() else { return };
        match store.log(range.log).collect(range.owner, range.from, range.to, STEP) {
            Ok(Some(next)) => self.ranges.push_front(Garbage { from: next, ..range }),
            Ok(None) => {}
            // Left for the collection at the next start.
            Err(e) => warn!("deleting acknowledged messages: {e}"),
        }
    }
}
