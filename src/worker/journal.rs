//! The worker's side of the message journal (see `store::journal`): the values it wrote,
//! oldest first, each migrated into the per-owner logs once it is `AGE` old, so that what
//! recipients acknowledge within that time is never written to the logs at all. Each
//! worker migrates only its own values: a message is then always either staged or in its
//! log when that worker reads it.

use super::batch::Journaled;
use super::handler::Worker;
use log::error;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a journal value waits before migration.
const AGE: Duration = Duration::from_secs(2);
/// Staged messages (both logs, all workers) beyond which values migrate regardless of
/// age: the memory bound when recipients do not acknowledge.
const STAGED_CAP: usize = 200_000;
/// Values migrated after a commit, so migration keeps pace under load.
const PER_COMMIT: usize = 2;

#[derive(Default)]
pub struct JournalQueue {
    values: VecDeque<Journaled>,
}

impl Worker {
    pub fn journaled(&mut self, value: Option<Journaled>) {
        if let Some(value) = value {
            self.journal.values.push_back(value);
        }
        self.migrate(PER_COMMIT, false);
    }

    /// Whether the oldest value is due now.
    pub fn journal_due(&self, now: Instant) -> bool {
        self.journal.values.front().is_some_and(|v| now.duration_since(v.at) >= AGE) || self.staged_over_cap()
    }

    /// How long until the oldest value is due, if there is one.
    pub fn journal_wait(&self, now: Instant) -> Option<Duration> {
        self.journal.values.front().map(|v| (v.at + AGE).saturating_duration_since(now))
    }

    /// Migrates up to `max` due values (every value when `all`), and more while the staged
    /// messages exceed the cap.
    pub fn migrate(&mut self, max: usize, all: bool) {
        let mut migrated = 0;
        while let Some(front) = self.journal.values.front() {
            let due = all || Instant::now().duration_since(front.at) >= AGE;
            if !(due && migrated < max || all || self.staged_over_cap()) {
                break;
            }
            let value = self.journal.values.pop_front().expect("front exists");
            if let Err(e) = self.shared.store.journal_migrate(value.key, &value.records) {
                // The value stays on disk and is migrated at the next start.
                error!("migrating journal value: {e}");
            }
            migrated += 1;
        }
    }

    fn staged_over_cap(&self) -> bool {
        let store = &self.shared.store;
        store.inbox.staged_len() + store.group_log.staged_len() > STAGED_CAP
    }
}
