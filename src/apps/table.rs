//! The apps this server hosts, shared by the event loop (which checks a `HelloApp`) and the
//! workers (which enforce each app's limits and count its figures).
//!
//! Apps are added and removed by `confabd app` on a stopped daemon, so the set is fixed for
//! a run: no lock, only counters. A count is taken before what it counts is made (and given
//! back if the making fails), so two workers registering at once cannot both pass a limit.

use crate::store::{AppRecord, Store, StoreResult};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One hosted app: its limits and what it holds now.
#[derive(Debug, Default)]
pub struct AppEntry {
    pub name: String,
    pub limits: AppRecord,
    users: AtomicU64,
    groups: AtomicU64,
    messages: AtomicU64,
    sessions: AtomicU64,
}

impl AppEntry {
    /// Counts one more account unless the app has `max_users`.
    pub fn take_user(&self) -> bool {
        take(&self.users, self.limits.max_users)
    }

    /// Gives back a count taken for an account that was not made (or was deleted).
    pub fn release_user(&self) {
        release(&self.users);
    }

    /// Counts one more group unless the app has `max_groups`.
    pub fn take_group(&self) -> bool {
        take(&self.groups, self.limits.max_groups)
    }

    pub fn release_group(&self) {
        release(&self.groups);
    }

    /// Counts one more user logged in unless the app has `max_connections`. Taken by the
    /// user's own worker when the user goes from no session to one, given back when the
    /// session ends, so each user counts once however often it logs in again.
    pub fn take_session(&self) -> bool {
        take(&self.sessions, self.limits.max_connections)
    }

    pub fn release_session(&self) {
        release(&self.sessions);
    }

    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Messages accepted from the app's clients.
    pub fn count_message(&self, n: u64) {
        self.messages.fetch_add(n, Ordering::Relaxed);
    }

    pub fn users(&self) -> u64 {
        self.users.load(Ordering::Relaxed)
    }

    pub fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

fn take(counter: &AtomicU64, max: u64) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (max == 0 || n < max).then_some(n + 1)).is_ok()
}

fn release(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// Every hosted app by name (`default` always among them).
#[derive(Clone, Debug, Default)]
pub struct Apps {
    apps: Arc<BTreeMap<String, Arc<AppEntry>>>,
}

impl Apps {
    /// The apps in the store, with their accounts and groups counted (O(accounts + groups),
    /// once at start).
    pub fn load(store: &Store) -> StoreResult<Apps> {
        let users = store.accounts_per_app()?;
        let groups = store.groups_per_app()?;
        let count = |counts: &BTreeMap<String, u64>, app: &str| AtomicU64::new(counts.get(app).copied().unwrap_or(0));
        let apps = store
            .apps()?
            .into_iter()
            .map(|(name, limits)| {
                let entry = AppEntry {
                    users: count(&users, &name),
                    groups: count(&groups, &name),
                    messages: AtomicU64::new(0),
                    sessions: AtomicU64::new(0),
                    name: name.clone(),
                    limits,
                };
                (name, Arc::new(entry))
            })
            .collect();
        Ok(Apps { apps: Arc::new(apps) })
    }

    /// Apps with these names and limits, and nothing counted.
    #[cfg(test)]
    pub fn with(apps: impl IntoIterator<Item = (&'static str, AppRecord)>) -> Apps {
        let apps = apps
            .into_iter()
            .map(|(name, limits)| {
                (name.to_string(), Arc::new(AppEntry { name: name.into(), limits, ..AppEntry::default() }))
            })
            .collect();
        Apps { apps: Arc::new(apps) }
    }

    pub fn get(&self, app: &str) -> Option<&Arc<AppEntry>> {
        self.apps.get(app)
    }

    /// The app of a qualified name.
    pub fn of(&self, qualified: &str) -> Option<&Arc<AppEntry>> {
        self.get(super::app_of(qualified))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<AppEntry>> {
        self.apps.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_and_a_release_makes_room() {
        let apps = Apps::with([("acme", AppRecord { max_users: 2, max_groups: 0, ..AppRecord::default() })]);
        let acme = apps.get("acme").unwrap();
        assert!(acme.take_user() && acme.take_user());
        assert!(!acme.take_user(), "the third user is beyond the limit");
        acme.release_user();
        assert!(acme.take_user());
        assert_eq!(acme.users(), 2);
        for _ in 0..1000 {
            assert!(acme.take_group(), "0 means no limit");
        }
        assert!(apps.of("acme/alice").is_some());
        assert!(apps.of("other/alice").is_none());
    }

    #[test]
    fn release_never_goes_below_zero() {
        let apps = Apps::with([("a", AppRecord::default())]);
        apps.get("a").unwrap().release_group();
        assert_eq!(apps.get("a").unwrap().groups(), 0);
    }
}
