//! Group records, members' acknowledged positions, and each user's list of groups. The
//! messages themselves live in [`Store::group_log`].

use super::{decode, encode, read_u64, GroupRecord, Store, StoreResult};
use crate::protocol::{Chat, GroupId, Seq};

impl Store {
    pub fn group(&self, group_id: GroupId) -> StoreResult<Option<GroupRecord>> {
        match self.groups.get(group_key(group_id))? {
            Some(raw) => Ok(Some(decode("groups", &raw)?)),
            None => Ok(None),
        }
    }

    /// Every group record, by id (read once at start).
    pub fn groups(&self) -> StoreResult<Vec<(GroupId, GroupRecord)>> {
        let mut groups = Vec::new();
        for entry in self.groups.iter() {
            let (key, raw) = entry?;
            groups.push((GroupId(read_u64("groups", &key)?), decode("groups", &raw)?));
        }
        Ok(groups)
    }

    pub fn put_group(&self, group_id: GroupId, record: &GroupRecord) -> StoreResult<()> {
        self.groups.insert(group_key(group_id), encode(record))?;
        Ok(())
    }

    /// Removes the group, its history, its members' positions (acks and read marks) and
    /// their memberships.
    pub fn delete_group(&self, group_id: GroupId, record: &GroupRecord) -> StoreResult<()> {
        for member in &record.members {
            self.remove_membership(&member.username, group_id)?;
            self.put_read_mark(member.uid, &Chat::Group(group_id), None)?;
        }
        let mut acks = sled::Batch::default();
        for entry in self.group_acks.scan_prefix(group_key(group_id)) {
            acks.remove(entry?.0);
        }
        self.group_acks.apply_batch(acks)?;
        self.remove_device_acks(super::LogId::Group, group_id.into(), None)?;
        self.group_log.remove_all(group_id.into())?;
        self.groups.remove(group_key(group_id))?;
        Ok(())
    }

    pub fn group_ack(&self, group_id: GroupId, username: &str) -> StoreResult<Seq> {
        match self.group_acks.get(member_key(group_id, username))? {
            Some(raw) => read_u64("group_acks", &raw).map(Seq),
            None => Ok(Seq::ZERO),
        }
    }

    pub fn put_group_ack(&self, group_id: GroupId, username: &str, acked: Seq) -> StoreResult<()> {
        self.group_acks.insert(member_key(group_id, username), &acked.get().to_be_bytes())?;
        Ok(())
    }

    pub fn remove_group_ack(&self, group_id: GroupId, username: &str) -> StoreResult<()> {
        self.group_acks.remove(member_key(group_id, username))?;
        Ok(())
    }

    pub fn add_membership(&self, username: &str, group_id: GroupId) -> StoreResult<()> {
        self.memberships.insert(membership_key(username, group_id), &[])?;
        Ok(())
    }

    pub fn remove_membership(&self, username: &str, group_id: GroupId) -> StoreResult<()> {
        self.memberships.remove(membership_key(username, group_id))?;
        Ok(())
    }

    /// The groups `username` belongs to, by id.
    pub fn memberships(&self, username: &str) -> StoreResult<Vec<GroupId>> {
        let mut prefix = username.as_bytes().to_vec();
        prefix.push(0);
        let mut ids = Vec::new();
        for entry in self.memberships.scan_prefix(&prefix) {
            let (key, _) = entry?;
            ids.push(GroupId(read_u64("memberships", &key[prefix.len()..])?));
        }
        Ok(ids)
    }
}

/// A group's key in `groups`, and the prefix of its members' positions in `group_acks`.
fn group_key(group_id: GroupId) -> [u8; 8] {
    group_id.get().to_be_bytes()
}

fn member_key(group_id: GroupId, username: &str) -> Vec<u8> {
    let mut key = group_key(group_id).to_vec();
    key.extend_from_slice(username.as_bytes());
    key
}

/// Usernames never contain 0x00, so the separator keeps "bob" from matching "bobby".
fn membership_key(username: &str, group_id: GroupId) -> Vec<u8> {
    let mut key = username.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&group_key(group_id));
    key
}

#[cfg(test)]
mod tests {
    use crate::protocol::{GroupId, MessageId, Role, Seq, UserId};
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
                MemberRecord { username: "bob".into(), uid: UserId(1), role: Role::Owner },
                MemberRecord { username: "bobby".into(), uid: UserId(2), role: Role::Member },
            ],
        };
        let (ten, eleven) = (GroupId(10), GroupId(11));
        store.put_group(ten, &record).unwrap();
        store.add_membership("bob", ten).unwrap();
        store.add_membership("bobby", ten).unwrap();
        store.add_membership("bobby", eleven).unwrap();
        assert_eq!(store.memberships("bob").unwrap(), vec![ten]);
        assert_eq!(store.memberships("bobby").unwrap(), vec![ten, eleven]);
        store.put_group_ack(ten, "bob", Seq(4)).unwrap();
        let message = StoredMessage {
            message_id: MessageId(1),
            from: "bob".into(),
            timestamp_ms: 0,
            content: crate::protocol::Content::text("x"),
            event: None,
            sender: crate::protocol::SenderKind::User,
            addressee: crate::store::Addressee::Readers,
        };
        store.group_log.append(ten.into(), Seq(1), &message).unwrap();

        store.delete_group(ten, &record).unwrap();
        assert_eq!(store.group(ten).unwrap(), None);
        assert_eq!(store.memberships("bobby").unwrap(), vec![eleven]);
        assert_eq!(store.group_ack(ten, "bob").unwrap(), Seq::ZERO);
        assert_eq!(store.stats().unwrap().stored_messages, 0);
    }
}
