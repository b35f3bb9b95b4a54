//! The apps (tenants) a server hosts, with their limits: tree `apps`, app name → [`AppRecord`].
//! Written by `confabd app` on a stopped daemon and read at start. The app `default` is
//! hosted whether or not it has a record (a record only gives it limits).

use super::{decode, encode, Store, StoreResult};
use crate::apps::{app_of, DEFAULT_APP};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An app's limits (0 = none) and when it was made.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppRecord {
    pub max_users: u64,
    /// Users logged in at once.
    pub max_connections: u64,
    pub max_groups: u64,
    pub created_ms: u64,
}

impl Store {
    /// Every hosted app by name, `default` included.
    pub fn apps(&self) -> StoreResult<BTreeMap<String, AppRecord>> {
        let mut apps = BTreeMap::from([(DEFAULT_APP.to_string(), AppRecord::default())]);
        for entry in self.apps.iter() {
            let (key, raw) = entry?;
            apps.insert(String::from_utf8_lossy(&key).into_owned(), decode("apps", &raw)?);
        }
        Ok(apps)
    }

    pub fn app(&self, name: &str) -> StoreResult<Option<AppRecord>> {
        match self.apps.get(name.as_bytes())? {
            Some(raw) => Ok(Some(decode("apps", &raw)?)),
            None if name == DEFAULT_APP => Ok(Some(AppRecord::default())),
            None => Ok(None),
        }
    }

    pub fn put_app(&self, name: &str, record: &AppRecord) -> StoreResult<()> {
        self.apps.insert(name.as_bytes(), encode(record))?;
        Ok(())
    }

    /// Returns whether there was such an app.
    pub fn remove_app(&self, name: &str) -> StoreResult<bool> {
        Ok(self.apps.remove(name.as_bytes())?.is_some())
    }

    /// Accounts per app (keys only, O(accounts)).
    pub fn accounts_per_app(&self) -> StoreResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for key in self.accounts.iter().keys() {
            let key = key?;
            *counts.entry(app_of(&String::from_utf8_lossy(&key)).to_string()).or_default() += 1;
        }
        Ok(counts)
    }

    /// Groups per app: a group is in its members' app (every member is of the same app,
    /// and a group always has its owner).
    pub fn groups_per_app(&self) -> StoreResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for (_, record) in self.groups()? {
            let app = record.members.first().map_or("", |m| app_of(&m.username));
            *counts.entry(app.to_string()).or_default() += 1;
        }
        Ok(counts)
    }

    /// Services per app.
    pub fn services_per_app(&self) -> StoreResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for name in self.service_names()? {
            *counts.entry(app_of(&name).to_string()).or_default() += 1;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_app_is_always_hosted_and_others_only_once_added() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.apps().unwrap().keys().collect::<Vec<_>>(), ["default"]);
        assert_eq!(store.app("acme").unwrap(), None);
        let limits = AppRecord { max_users: 10, max_connections: 5, max_groups: 2, created_ms: 1 };
        store.put_app("acme", &limits).unwrap();
        assert_eq!(store.app("acme").unwrap(), Some(limits));
        assert_eq!(store.apps().unwrap().len(), 2);
        assert!(store.remove_app("acme").unwrap());
        assert!(!store.remove_app("acme").unwrap());
        assert_eq!(store.app(DEFAULT_APP).unwrap(), Some(AppRecord::default()));
    }
}
