//! Which usernames look alike: every account's username by its [`skeleton`], shared by all
//! workers, so a display name that reads as someone else's username can be refused
//! without scanning the accounts. Per app: a name only impersonates the users of its own
//! app (the only ones its readers know), so the key is the app and the skeleton of the
//! name as its clients see it.
//!
//! Built from the accounts at start (O(accounts), keys only) and grown at registration.
//! Accounts are removed only by the operator on a stopped server, so nothing is ever taken
//! out while running.

use crate::apps::{app_of, local, qualify};
use crate::names::skeleton;
use crate::store::{Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Default)]
pub struct Lookalikes {
    /// Skeleton → the usernames that have it (nearly always one).
    usernames: Arc<RwLock<HashMap<String, Vec<Arc<str>>>>>,
}

impl Lookalikes {
    pub fn load(store: &Store) -> StoreResult<Lookalikes> {
        let lookalikes = Lookalikes::default();
        for username in store.usernames()? {
            lookalikes.add(&username);
        }
        Ok(lookalikes)
    }

    pub fn add(&self, username: &str) {
        let mut usernames = self.usernames.write().unwrap_or_else(|p| p.into_inner());
        let same = usernames.entry(key(username)).or_default();
        if !same.iter().any(|n| **n == *username) {
            same.push(username.into());
        }
    }

    /// Adds a new username unless it may be mistaken for one already there, which it
    /// returns: checked and added under one lock, so two look-alikes registering at once
    /// on two workers cannot both pass.
    pub fn claim(&self, username: &str) -> Option<Arc<str>> {
        let mut usernames = self.usernames.write().unwrap_or_else(|p| p.into_inner());
        let same = usernames.entry(key(username)).or_default();
        if let Some(other) = same.iter().find(|n| ***n != *username) {
            return Some(other.clone());
        }
        if same.is_empty() {
            same.push(username.into());
        }
        None
    }

    /// A username of `me`'s app other than `me` that `name` may be mistaken for.
    pub fn other_than(&self, name: &str, me: &str) -> Option<Arc<str>> {
        let usernames = self.usernames.read().unwrap_or_else(|p| p.into_inner());
        usernames.get(&qualify(app_of(me), &skeleton(name)))?.iter().find(|n| ***n != *me).cloned()
    }
}

/// Where a (qualified) username is filed: its app and the skeleton of its local part.
fn key(username: &str) -> String {
    qualify(app_of(username), &skeleton(local(username)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_other_user_only() {
        let lookalikes = Lookalikes::default();
        lookalikes.add("admin");
        lookalikes.add("bob");
        assert_eq!(lookalikes.other_than("Adm1n", "bob").as_deref(), Some("admin"));
        assert_eq!(lookalikes.other_than("\u{0430}dmin", "bob").as_deref(), Some("admin"));
        assert_eq!(lookalikes.other_than("Admin", "admin"), None, "one's own username");
        assert_eq!(lookalikes.other_than("Robert", "bob"), None);
        lookalikes.add("adm1n");
        assert_eq!(lookalikes.other_than("admin", "admin").as_deref(), Some("adm1n"));
    }

    #[test]
    fn look_alikes_are_looked_for_in_the_users_own_app_only() {
        let lookalikes = Lookalikes::default();
        assert_eq!(lookalikes.claim("default/admin"), None);
        assert_eq!(lookalikes.claim("acme/adm1n"), None, "another app's admin is nobody acme's users see");
        assert_eq!(lookalikes.claim("default/adm1n").as_deref(), Some("default/admin"));
        assert_eq!(lookalikes.other_than("Admin", "acme/bob").as_deref(), Some("acme/adm1n"));
        assert_eq!(lookalikes.other_than("Admin", "other/bob"), None);
    }

    #[test]
    fn a_new_username_that_looks_like_another_is_not_claimed() {
        let lookalikes = Lookalikes::default();
        assert_eq!(lookalikes.claim("admin"), None);
        assert_eq!(lookalikes.claim("adm1n").as_deref(), Some("admin"));
        assert_eq!(lookalikes.claim("rn0m").as_deref(), None);
        assert_eq!(lookalikes.claim("admin"), None, "the same name again (its account decides)");
        assert_eq!(lookalikes.other_than("adm1n", "x").as_deref(), Some("admin"), "adm1n was not added");
    }
}
