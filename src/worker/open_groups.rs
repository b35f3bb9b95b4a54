//! The directory of open groups (anyone may join them), shared by all workers so that any
//! worker answers `ListOpenGroups` for groups every worker owns.
//!
//! Loaded from the stored group records at start and kept current by each group's worker
//! whenever it saves the group's record (create, rename, membership changes) or deletes
//! it. A group's openness is fixed at creation. Listed per app: a client pages through
//! its own app's open groups only.

use crate::protocol::GroupId;
use crate::store::{Store, StoreResult};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenEntry {
    pub name: String,
    pub members: u32,
}

#[derive(Clone, Default)]
pub struct OpenGroups {
    // By app and id, so a page of an app "after this id" is a range scan.
    groups: Arc<RwLock<BTreeMap<(String, GroupId), OpenEntry>>>,
}

impl OpenGroups {
    pub fn load(store: &Store) -> StoreResult<OpenGroups> {
        let list = OpenGroups::default();
        for (group_id, record) in store.groups()? {
            if record.open {
                let app = record.app().to_string();
                list.set(&app, group_id, record.name, record.members.len() as u32);
            }
        }
        Ok(list)
    }

    pub fn set(&self, app: &str, group_id: GroupId, name: String, members: u32) {
        self.write().insert((app.to_string(), group_id), OpenEntry { name, members });
    }

    pub fn remove(&self, app: &str, group_id: GroupId) {
        self.write().remove(&(app.to_string(), group_id));
    }

    /// Up to `limit` groups of `app` with ids above `after`, and whether more follow.
    pub fn page(&self, app: &str, after: GroupId, limit: usize) -> (Vec<(GroupId, OpenEntry)>, bool) {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        let (from, to) = ((app.to_string(), after), (app.to_string(), GroupId(u64::MAX)));
        let mut range = groups.range((Bound::Excluded(from), Bound::Included(to)));
        let page = range.by_ref().take(limit).map(|((_, id), entry)| (*id, entry.clone())).collect();
        (page, range.next().is_some())
    }

    // Each write is one insert or remove, so a poisoned lock holds a whole map.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(String, GroupId), OpenEntry>> {
        self.groups.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_id_within_one_app() {
        let list = OpenGroups::default();
        for id in [7, 3, 12] {
            list.set("a", GroupId(id), format!("g{id}"), 1);
        }
        list.set("b", GroupId(5), "other app".into(), 1);
        list.set("a0", GroupId(1), "an app that sorts next".into(), 1);
        let (page, more) = list.page("a", GroupId(0), 2);
        assert_eq!(page.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(), [3, 7]);
        assert!(more);
        let (page, more) = list.page("a", GroupId(7), 2);
        assert_eq!(page, vec![(GroupId(12), OpenEntry { name: "g12".into(), members: 1 })]);
        assert!(!more, "the next app's groups are not this one's");
        list.remove("a", GroupId(12));
        assert_eq!(list.page("a", GroupId(7), 2), (vec![], false));
        assert_eq!(list.page("b", GroupId(0), 10).0.len(), 1);
    }
}
