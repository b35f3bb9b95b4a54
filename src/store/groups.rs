//! Group records, members' acknowledged positions, and each user's list of groups. The
//! messages themselves live in [`Store::group_log`].

use super::{decode, encode, read_u64, GroupRecord, Store, StoreResult};

impl Store {
    pub fn group(&self, group_id: u64) -> StoreResult<Option<GroupRecord>> {
        match self.groups.get(group_id.to_be_bytes())? {
            Some(raw) => Ok(Some(decode("groups", &raw)?)),
            None => Ok(None),
        }
    }

    /// Every group record, by id (read once at start).
    pub fn groups(&self) -> StoreResult<Vec<(u64, GroupRecord)>> {
        let mut groups = Vec::new();
        for entry in self.groups.iter() {
            let (key, raw) = entry?;
            groups.push((read_u64("groups", &key)?, decode("groups", &raw)?));
        }
        Ok(groups)
    }

    pub fn put_group(&self, group_id: u64, record: &GroupRecord) -> StoreResult<()> {
        self.groups.insert(group_id.to_be_bytes(), encode(record))?;
        Ok(())
    }

    /// Removes the group, its history, its members' positions and their memberships.
    pub fn delete_group(&self, group_id: u64, record: &GroupRecord) -> StoreResult<()> {
        for member in &record.members {
            self.remove_membership(&member.username, group_id)?;
        }
        let mut acks = sled::Batch::default();
        for entry in self.group_acks.scan_prefix(group_id.to_be_bytes()) {
            acks.remove(entry?.0);
        }
        self.group_acks.apply_batch(acks)?;
        self.group_log.remove_all(group_id)?;
        self.groups.remove(group_id.to_be_bytes())?;
        Ok(())
    }

    pub fn group_ack(&self, group_id: u64, username: &str) -> StoreResult<u64> {
        match self.group_acks.get(member_key(group_id, username))? {
            Some(raw) => read_u64("group_acks", &raw),
            None => Ok(0),
        }
    }

    pub fn put_group_ack(&self, group_id: u64, username: &str, acked: u64) -> StoreResult<()> {
        self.group_acks.insert(member_key(group_id, username), &acked.to_be_bytes())?;
        Ok(())
    }

    pub fn remove_group_ack(&self, group_id: u64, username: &str) -> StoreResult<()> {
        self.group_acks.remove(member_key(group_id, username))?;
        Ok(())
    }

    pub fn add_membership(&self, username: &str, group_id: u64) -> StoreResult<()> {
        self.memberships.insert(membership_key(username, group_id), &[])?;
        Ok(())
    }

    pub fn remove_membership(&self, username: &str, group_id: u64) -> StoreResult<()> {
        self.memberships.remove(membership_key(username, group_id))?;
        Ok(())
    }

    /// The groups `username` belongs to, by id.
    pub fn memberships(&self, username: &str) -> StoreResult<Vec<u64>> {
        let mut prefix = username.as_bytes().to_vec();
        prefix.push(0);
        let mut ids = Vec::new();
        for entry in self.memberships.scan_prefix(&prefix) {
            let (key, _) = entry?;
            ids.push(read_u64("memberships", &key[prefix.len()..])?);
        }
        Ok(ids)
    }
}

fn member_key(group_id: u64, username: &str) -> Vec<u8> {
    let mut key = group_id.to_be_bytes().to_vec();
    key.extend_from_slice(username.as_bytes());
    key
}

/// Usernames never contain 0x00, so the separator keeps "bob" from matching "bobby".
fn membership_key(username: &str, group_id: u64) -> Vec<u8> {
    let mut key = username.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&group_id.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use crate::protocol::Role;
    use crate::store::{GroupRecord, MemberRecord, Store, StoredMessage};

    #[test]
    fn memberships_do_not_match_name_prefixes_and_delete_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = GroupRecord {
            name: "g".into(),
            open: false,
            created_ms: 0,
            members: vec![
                MemberRecord { username: "bob".into(), uid: 1, role: Role::Owner },
                MemberRecord { username: "bobby".into(), uid: 2, role: Role::Member },
            ],
        };
        store.put_group(10, &record).unwrap();
        store.add_membership("bob", 10).unwrap();
        store.add_membership("bobby", 10).unwrap();
        store.add_membership("bobby", 11).unwrap();
        assert_eq!(store.memberships("bob").unwrap(), vec![10]);
        assert_eq!(store.memberships("bobby").unwrap(), vec![10, 11]);
        store.put_group_ack(10, "bob", 4).unwrap();
        let message = StoredMessage {
            message_id: 1,
            from: "bob".into(),
            timestamp_ms: 0,
            content: crate::protocol::Content::text("x"),
            event: None,
            sender: crate::protocol::SenderKind::User,
            except: None,
        };
        store.group_log.append(10, 1, &message).unwrap();

        store.delete_group(10, &record).unwrap();
        assert_eq!(store.group(10).unwrap(), None);
        assert_eq!(store.memberships("bobby").unwrap(), vec![11]);
        assert_eq!(store.group_ack(10, "bob").unwrap(), 0);
        assert_eq!(store.stats().unwrap().stored_messages, 0);
    }
}
