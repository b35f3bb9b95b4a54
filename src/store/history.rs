//! What history needs on disk besides the logs: each user's cleared marks (`ClearHistory`),
//! and where each log is acknowledged by every reader, which is what the statistics count
//! as stored ("owed to someone") now that acknowledged messages stay. Inbox readers'
//! positions, apart from the floor that history holds back, are the devices' (see
//! `devices`).
//!
//! Trees and keys (ids big-endian):
//! - `cleared`:    `uid ++ postcard(Chat)` → the user's cleared mark in that chat (u64):
//!   history up to and including it is hidden from the user

use super::{decode, read_u64, LogId, LogOwner, Store, StoreResult};
use crate::protocol::{Chat, GroupId, Seq, SupportId, UserId};

/// The history trees, opened with the store.
#[derive(Clone)]
pub struct HistoryTrees {
    cleared: sled::Tree,
}

impl HistoryTrees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(HistoryTrees { cleared: db.open_tree("cleared")? })
    }
}

impl Store {
    /// The user's cleared mark in `chat` (0: nothing cleared).
    pub fn cleared_up_to(&self, uid: UserId, chat: &Chat) -> StoreResult<Seq> {
        match self.history.cleared.get(chat_key(uid, chat))? {
            Some(raw) => read_u64("cleared", &raw).map(Seq),
            None => Ok(Seq::ZERO),
        }
    }

    /// Every cleared mark of the user, by chat (names qualified with their app).
    pub fn cleared_marks(&self, uid: UserId) -> StoreResult<Vec<(Chat, Seq)>> {
        let prefix = uid.get().to_be_bytes();
        let mut marks = Vec::new();
        for entry in self.history.cleared.scan_prefix(prefix) {
            let (key, raw) = entry?;
            let chat: Chat = decode("cleared", &key[prefix.len()..])?;
            marks.push((chat, Seq(read_u64("cleared", &raw)?)));
        }
        Ok(marks)
    }

    /// Sets the user's cleared mark in `chat` (the caller keeps it from moving back). A
    /// plain sled write: the batch that makes it checkpoints (see `Partition::sled`).
    pub fn put_cleared(&self, uid: UserId, chat: &Chat, up_to: Seq) -> StoreResult<()> {
        self.history.cleared.insert(chat_key(uid, chat), &up_to.get().to_be_bytes())?;
        Ok(())
    }

    /// Forgets the user's cleared marks (the account is deleted).
    pub(super) fn remove_history_of(&self, uid: UserId) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for entry in self.history.cleared.scan_prefix(uid.get().to_be_bytes()) {
            batch.remove(entry?.0);
        }
        self.history.cleared.apply_batch(batch)?;
        Ok(())
    }

    /// Problems in the history trees: positions and marks that do not decode.
    pub(super) fn verify_history(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        for entry in self.history.cleared.iter() {
            let (key, raw) = entry?;
            let chat = key.get(8..).map(|chat| decode::<Chat>("cleared", chat));
            if !matches!(chat, Some(Ok(_))) || read_u64("cleared", &raw).is_err() {
                problems.push(format!("a cleared mark that does not decode: {key:?}"));
            }
        }
        Ok(problems)
    }

    /// Where `owner`'s log is acknowledged by every reader, never below its `floor`: the
    /// statistics count what is above as stored (owed to someone), whatever history keeps
    /// below. The rules are the workers' (`worker/retention.rs`): an inbox's lowest reader,
    /// a group's lowest member, a support conversation's lowest reader once its shop has
    /// staff (without staff it is owed to whoever the shop takes on).
    pub(super) fn settled(&self, log: LogId, owner: LogOwner, floor: Seq) -> StoreResult<Seq> {
        let lowest = match log {
            LogId::Inbox => self.inbox_settled(UserId(owner.get()))?,
            LogId::Group => {
                let id = GroupId(owner.get());
                let mut lowest: Option<Seq> = None;
                for member in self.group(id)?.map(|g| g.members).unwrap_or_default() {
                    let legacy = self.group_ack(id, &member.username)?;
                    let acked = self.reader_lowest(log, owner, member.uid, legacy)?;
                    lowest = Some(lowest.map_or(acked, |l| l.min(acked)));
                }
                lowest
            }
            LogId::Support => {
                let id = SupportId(owner.get());
                let record = self.support(id)?;
                let shop = match &record {
                    Some(record) => self.shop(&record.shop)?,
                    None => None,
                };
                match (record, shop) {
                    (Some(record), Some(shop)) if !shop.staff.is_empty() => {
                        let acks = self.support_acks(id)?;
                        let legacy = |name: &str| acks.get(name).copied().unwrap_or(Seq::ZERO);
                        let readers = shop.staff.iter().map(|s| (s.uid, legacy(&s.username)));
                        let mut lowest: Option<Seq> = None;
                        for (uid, legacy) in readers.chain([(record.customer_uid, legacy(&record.customer))]) {
                            let acked = self.reader_lowest(log, owner, uid, legacy)?;
                            lowest = Some(lowest.map_or(acked, |l| l.min(acked)));
                        }
                        lowest
                    }
                    _ => None,
                }
            }
        };
        Ok(lowest.map_or(floor, |lowest| lowest.max(floor)))
    }

    /// The lowest position of a reader's known devices in a group or support log: the
    /// legacy device's is `legacy` (its old key), a named device's its own record, or
    /// unrecorded `legacy` too (where such a device starts). A reader who uses only named
    /// devices is not held by its legacy position, which stays where it joined.
    fn reader_lowest(&self, log: LogId, owner: LogOwner, uid: UserId, legacy: Seq) -> StoreResult<Seq> {
        let known = self.devices(uid)?;
        if known.is_empty() {
            return Ok(legacy);
        }
        let mut lowest: Option<Seq> = None;
        for (device, _) in known {
            let acked = match device.is_empty() {
                true => legacy,
                false => self.device_ack(log, owner, uid, &device)?.unwrap_or(legacy),
            };
            lowest = Some(lowest.map_or(acked, |l| l.min(acked)));
        }
        Ok(lowest.unwrap_or(legacy))
    }

    /// The lowest position of the user's devices in its inbox, if every device has one
    /// recorded (an unrecorded one is at the floor, see `devices`); without device records,
    /// the legacy device's.
    fn inbox_settled(&self, uid: UserId) -> StoreResult<Option<Seq>> {
        let recorded = self.device_acks(LogId::Inbox, uid.into())?;
        let position = |device: &str| recorded.iter().find(|(u, d, _)| *u == uid && d == device).map(|(_, _, s)| *s);
        let known = self.devices(uid)?;
        if known.is_empty() {
            return Ok(position(""));
        }
        let mut lowest: Option<Seq> = None;
        for (device, _) in known {
            let Some(acked) = position(&device) else { return Ok(None) };
            lowest = Some(lowest.map_or(acked, |l| l.min(acked)));
        }
        Ok(lowest)
    }

    /// Messages not yet acknowledged by every reader, in all logs (administration, tests
    /// and the count at start; O(data)).
    pub(super) fn unacknowledged_messages(&self) -> StoreResult<u64> {
        let mut count = 0;
        for id in [LogId::Inbox, LogId::Group, LogId::Support] {
            count += self.log(id).count_messages_above(|owner, floor| self.settled(id, owner, floor))?;
        }
        Ok(count)
    }
}

fn chat_key(uid: UserId, chat: &Chat) -> Vec<u8> {
    let key = uid.get().to_be_bytes().to_vec();
    postcard::to_extend(chat, key).expect("postcard encoding of a chat is infallible")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleared_marks_are_per_user_and_chat() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (alice, bob) = (UserId(1), UserId(2));
        let with_bob = Chat::User("default/bob".into());
        store.put_cleared(alice, &with_bob, Seq(3)).unwrap();
        store.put_cleared(alice, &Chat::Group(GroupId(9)), Seq(5)).unwrap();
        store.put_cleared(bob, &Chat::User("default/alice".into()), Seq(7)).unwrap();
        assert_eq!(store.cleared_up_to(alice, &with_bob).unwrap(), Seq(3));
        assert_eq!(store.cleared_up_to(alice, &Chat::User("default/bo".into())).unwrap(), Seq::ZERO);
        let mut marks = store.cleared_marks(alice).unwrap();
        marks.sort();
        assert_eq!(marks, [(with_bob, Seq(3)), (Chat::Group(GroupId(9)), Seq(5))]);
        store.remove_history_of(alice).unwrap();
        assert!(store.cleared_marks(alice).unwrap().is_empty());
        assert_eq!(store.cleared_marks(bob).unwrap().len(), 1, "another user's marks stay");
    }

    #[test]
    fn an_inbox_is_settled_at_its_lowest_device_never_below_its_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let alice = UserId(1);
        let inbox = LogOwner::from(alice);
        assert_eq!(store.settled(LogId::Inbox, inbox, Seq(2)).unwrap(), Seq(2), "no reader recorded");
        store.put_device_ack(LogId::Inbox, inbox, alice, "", Seq(9)).unwrap();
        assert_eq!(store.settled(LogId::Inbox, inbox, Seq(2)).unwrap(), Seq(9), "the legacy device alone");
        let seen = crate::store::DeviceRecord { last_seen_ms: 1 };
        store.put_device(alice, "", &seen).unwrap();
        store.put_device(alice, "phone", &seen).unwrap();
        assert_eq!(store.settled(LogId::Inbox, inbox, Seq(2)).unwrap(), Seq(2), "the phone is at the floor");
        store.put_device_ack(LogId::Inbox, inbox, alice, "phone", Seq(6)).unwrap();
        assert_eq!(store.settled(LogId::Inbox, inbox, Seq(2)).unwrap(), Seq(6));
        assert_eq!(store.settled(LogId::Inbox, inbox, Seq(8)).unwrap(), Seq(8));
    }

    #[test]
    fn a_group_is_settled_at_its_members_known_devices_not_a_legacy_position_left_behind() {
        use crate::protocol::Role;
        use crate::store::{DeviceRecord, GroupRecord, MemberRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (alice, bob, group) = (UserId(1), UserId(2), GroupId(9));
        let member = |username: &str, uid| MemberRecord { username: username.into(), uid, role: Role::Member };
        let record = GroupRecord {
            name: "club".into(),
            open: false,
            created_ms: 0,
            members: vec![member("default/alice", alice), member("default/bob", bob)],
        };
        store.put_group(group, &record).unwrap();
        let log = LogOwner::from(group);
        // Both joined at 0; bob reads with a legacy client up to 8, alice only on her phone.
        store.put_group_ack(group, "default/alice", Seq(0)).unwrap();
        store.put_group_ack(group, "default/bob", Seq(8)).unwrap();
        assert_eq!(store.settled(LogId::Group, log, Seq(0)).unwrap(), Seq(0), "no devices: the legacy positions");
        let seen = DeviceRecord { last_seen_ms: 1 };
        store.put_device(alice, "phone", &seen).unwrap();
        store.put_device_ack(LogId::Group, log, alice, "phone", Seq(6)).unwrap();
        assert_eq!(store.settled(LogId::Group, log, Seq(0)).unwrap(), Seq(6), "alice's join point holds nothing");
        store.put_device(bob, "", &seen).unwrap();
        store.put_device(bob, "tablet", &seen).unwrap();
        assert_eq!(store.settled(LogId::Group, log, Seq(0)).unwrap(), Seq(6), "bob's unrecorded tablet is at 8");
    }
}
