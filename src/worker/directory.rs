//! Who is online, shared by all workers for the who-is-online listing.
//!
//! Written at login, logout and rename only, never on the message path, so one lock is
//! cheap; workers keep their own session state and never consult this to route messages.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Default)]
pub struct Directory {
    // username → display name, ordered so paging by "after this name" is a range scan.
    online: Arc<RwLock<BTreeMap<Arc<str>, String>>>,
}

impl Directory {
    pub fn set(&self, username: Arc<str>, display_name: String) {
        self.write().insert(username, display_name);
    }

    pub fn remove(&self, username: &str) {
        self.write().remove(username);
    }

    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// Up to `limit` users after `after`, and whether more follow.
    pub fn page(&self, after: &str, limit: usize) -> (Vec<(String, String)>, bool) {
        use std::ops::Bound;
        let online = self.read();
        let mut range = online.range::<str, _>((Bound::Excluded(after), Bound::Unbounded));
        let page: Vec<_> = range
            .by_ref()
            .take(limit)
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect();
        let more = range.next().is_some();
        (page, more)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Arc<str>, String>> {
        // A panic while holding the lock cannot leave the map half-updated (single
        // insert/remove calls), so a poisoned lock is still safe to use.
        self.online.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Arc<str>, String>> {
        self.online.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_in_name_order() {
        let d = Directory::default();
        for n in ["carol", "alice", "bob", "dave"] {
            d.set(n.into(), n.to_uppercase());
        }
        let (page, more) = d.page("", 2);
        assert_eq!(
            page,
            vec![
                ("alice".into(), "ALICE".into()),
                ("bob".into(), "BOB".into())
            ]
        );
        assert!(more);
        let (page, more) = d.page("bob", 2);
        assert_eq!(page.len(), 2);
        assert!(!more);
        d.remove("alice");
        assert_eq!(d.count(), 3);
    }
}
