//! Every user's push settings in memory, shared by all workers: the worker of a message's
//! conversation asks it whether an offline reader has a device and has not muted the chat,
//! without a disk read per message. Loaded once at start; each user's own worker is the
//! only writer of that user's entry (and writes sled first).

use crate::protocol::UserId;
use crate::store::{PushPrefs, Store, StoreResult};
use log::warn;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// How often at most lost notes are logged.
const LOST_LOG_EVERY_MS: u64 = 10_000;

#[derive(Clone, Default)]
pub struct PushBook {
    users: Arc<RwLock<HashMap<UserId, Arc<PushPrefs>>>>,
    /// Users with at least one device: when 0, no message needs a look at all.
    with_devices: Arc<AtomicUsize>,
    /// Notes sent to the push queue's worker and not yet taken by it, and notes dropped
    /// because there were too many (see `PushConfig::max_pending_notes`).
    pending_notes: Arc<AtomicUsize>,
    lost_unlogged: Arc<AtomicU64>,
    /// When lost notes were last logged (ms since the epoch), by whichever worker.
    lost_logged_ms: Arc<AtomicU64>,
}

impl PushBook {
    pub fn load(store: &Store) -> StoreResult<Self> {
        let book = PushBook::default();
        for (uid, prefs) in store.all_push_prefs()? {
            book.set(uid, prefs);
        }
        Ok(book)
    }

    /// The user's settings; None when there are none (no device, no mute).
    pub fn get(&self, uid: UserId) -> Option<Arc<PushPrefs>> {
        self.read().get(&uid).cloned()
    }

    /// Replaces the user's settings; empty ones are forgotten.
    pub fn set(&self, uid: UserId, prefs: PushPrefs) {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let had = users.get(&uid).is_some_and(|p| !p.devices.is_empty());
        let has = !prefs.devices.is_empty();
        if prefs.devices.is_empty() && prefs.mutes.is_empty() {
            users.remove(&uid);
        } else {
            users.insert(uid, Arc::new(prefs));
        }
        match (had, has) {
            (false, true) => self.with_devices.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.with_devices.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Whether this user has a push device (before anything is built for a note).
    pub fn has_devices(&self, uid: UserId) -> bool {
        self.read().get(&uid).is_some_and(|prefs| !prefs.devices.is_empty())
    }

    /// Whether any user has a push device (if not, no message makes an event).
    pub fn anyone(&self) -> bool {
        self.with_devices.load(Ordering::Relaxed) > 0
    }

    /// Counts `n` notes as made and not yet taken by the push queue's worker, if that
    /// stays within `max`; otherwise they are lost (logged at most every 10 s) and this
    /// returns false.
    pub fn reserve_notes(&self, n: usize, max: usize, now_ms: u64) -> bool {
        let before = self.pending_notes.fetch_add(n, Ordering::Relaxed);
        if before + n <= max {
            return true;
        }
        self.pending_notes.fetch_sub(n, Ordering::Relaxed);
        self.lost_unlogged.fetch_add(n as u64, Ordering::Relaxed);
        let last = self.lost_logged_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= LOST_LOG_EVERY_MS;
        if due && self.lost_logged_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let lost = self.lost_unlogged.swap(0, Ordering::Relaxed);
            warn!("{lost} push notifications dropped: messages made notes faster than the push queue took them");
        }
        false
    }

    /// `n` notes are taken by the push queue's worker (or will never be sent).
    pub fn notes_taken(&self, n: usize) {
        self.pending_notes.fetch_sub(n, Ordering::Relaxed);
    }

    /// For looking up many users under one lock (a group's offline members).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<UserId, Arc<PushPrefs>>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Chat, PushPlatform};
    use crate::store::{Mute, PushDevice};

    #[test]
    fn only_users_with_settings_are_kept_and_devices_are_counted() {
        let book = PushBook::default();
        let device = PushDevice {
            device: "phone".into(),
            platform: PushPlatform::Fcm,
            token: "t".into(),
            previews: true,
            registered_ms: 0,
        };
        assert!(!book.anyone());
        book.set(UserId(1), PushPrefs { devices: vec![device.clone()], mutes: vec![] });
        book.set(UserId(1), PushPrefs { devices: vec![device], mutes: vec![] });
        assert!(book.anyone());
        let mute = Mute { chat: Chat::User("bob".into()), until_ms: 0 };
        book.set(UserId(1), PushPrefs { devices: vec![], mutes: vec![mute] });
        assert!(!book.anyone(), "a mute alone is not a device");
        assert!(book.get(UserId(1)).is_some());
        book.set(UserId(1), PushPrefs::default());
        assert!(book.get(UserId(1)).is_none());
    }

    #[test]
    fn notes_beyond_the_bound_are_lost_and_counted() {
        let book = PushBook::default();
        assert!(book.reserve_notes(3, 5, 1));
        assert!(!book.reserve_notes(3, 5, 1), "3 + 3 is beyond 5");
        assert_eq!(book.lost_unlogged.load(Ordering::Relaxed), 0, "logged at once, the first time");
        assert!(!book.reserve_notes(4, 5, 2));
        assert_eq!(book.lost_unlogged.load(Ordering::Relaxed), 4, "then not again within 10 s");
        assert!(book.reserve_notes(2, 5, 3));
        book.notes_taken(5);
        assert!(book.reserve_notes(5, 5, 4));
    }
}
