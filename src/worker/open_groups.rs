//! The directory of open groups (anyone may join them), shared by all workers so that any
//! worker answers `ListOpenGroups` for groups every worker owns.
//!
//! Loaded from the stored group records at start and kept current by each group's worker
//! whenever it saves the group's record (create, rename, membership changes) or deletes
//! it. A group's openness is fixed at creation.

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
    // By id, so a page "after this id" is a range scan.
    groups: Arc<RwLock<BTreeMap<GroupId, OpenEntry>>>,
}

impl OpenGroups {
    pub fn load(store: &Store) -> StoreResult<OpenGroups> {
        let list = OpenGroups::default();
        for (group_id, record) in store.groups()? {
            if record.open {
                list.set(group_id, record.name, record.members.len() as u32);
            }
        }
        Ok(list)
    }

    pub fn set(&self, group_id: GroupId, name: String, members: u32) {
        self.write().insert(group_id, OpenEntry { name, members });
    }

    pub fn remove(&self, group_id: GroupId) {
        self.write().remove(&group_id);
    }

    /// Up to `limit` groups with ids above `after`, and whether more follow.
    pub fn page(&self, after: GroupId, limit: usize) -> (Vec<(GroupId, OpenEntry)>, bool) {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        let mut range = groups.range((Bound::Excluded(after), Bound::Unbounded));
        let page = range.by_ref().take(limit).map(|(id, entry)| (*id, entry.clone())).collect();
        (page, range.next().is_some())
    }

    // Each write is one insert or remove, so a poisoned lock holds a whole map.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<GroupId, OpenEntry>> {
        self.groups.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_id() {
        let list = OpenGroups::default();
        for id in [7, 3, 12] {
            list.set(GroupId(id), format!("g{id}"), 1);
        }
        let (page, more) = list.page(GroupId(0), 2);
        assert_eq!(page.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(), [3, 7]);
        assert!(more);
        let (page, more) = list.page(GroupId(7), 2);
        assert_eq!(page, vec![(GroupId(12), OpenEntry { name: "g12".into(), members: 1 })]);
        assert!(!more);
        list.remove(GroupId(12));
        assert_eq!(list.page(GroupId(7), 2), (vec![], false));
    }
}
