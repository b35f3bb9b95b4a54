//! Read state on disk: how far each user has read each chat (its read marks), whether the
//! user sends read receipts, and the latest read receipt each sender holds from each reader.
//!
//! Trees and keys (ids big-endian; names as given, qualified with their app):
//! - `read_marks`:    `uid ++ chat key` → [`ReadEntry`]; a chat key is a tag byte and the
//!   chat's name or id: `1 ++ username`, `2 ++ service name`, `3 ++ group id`,
//!   `4 ++ support conversation id`
//! - `read_prefs`:    `uid` → [`ReadPrefs`] (absent: the defaults)
//! - `read_receipts`: `sender uid ++ reader name` → [`ReadEntry`] (the reader has read what
//!   the sender wrote it up to that sequence of the reader's inbox)
//!
//! Marks and receipts change on the message path (a client marks a chat whenever it shows
//! new messages), so they go through the commit log like acks (`Change::ReadMark`,
//! `Change::ReadReceipt`): written to sled at once, durable with the batch's one sync. The
//! setting changes rarely and is a plain sled write the batch checkpoints before its reply,
//! as push settings are.
//!
//! Who writes what (one writer per key, so a "never backwards" check is never raced): a
//! user's marks of direct, service and support chats are written by the user's worker, its
//! group marks by the group's worker; a sender's receipts by the sender's worker.

use super::{decode, encode, read_u64, Store, StoreError, StoreResult};
use crate::protocol::{Chat, GroupId, Seq, SupportId, UserId};
use serde::{Deserialize, Serialize};

const USER: u8 = 1;
const SERVICE: u8 = 2;
const GROUP: u8 = 3;
const SUPPORT: u8 = 4;

/// A read position and when it was set (what the bounds forget first).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadEntry {
    pub up_to: Seq,
    pub at_ms: u64,
}

impl ReadEntry {
    /// 16 bytes: the sequence, then the time.
    fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.up_to.get().to_be_bytes());
        bytes[8..].copy_from_slice(&self.at_ms.to_be_bytes());
        bytes
    }

    fn from_bytes(tree: &'static str, raw: &[u8]) -> StoreResult<ReadEntry> {
        if raw.len() != 16 {
            return Err(StoreError::Corrupt { tree, detail: format!("expected 16 bytes, found {}", raw.len()) });
        }
        Ok(ReadEntry { up_to: Seq(read_u64(tree, &raw[..8])?), at_ms: read_u64(tree, &raw[8..])? })
    }
}

/// A user's read-state settings.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReadPrefs {
    /// Whether senders learn what the user has read (protocol.md "Read state").
    pub receipts: bool,
}

impl Default for ReadPrefs {
    fn default() -> Self {
        ReadPrefs { receipts: true }
    }
}

/// How many entries an owner holds, and the one set longest ago (to forget at a bound).
#[derive(Debug, PartialEq, Eq)]
pub struct Held<K> {
    pub count: usize,
    pub oldest: Option<K>,
}

/// The read-state trees, opened with the store.
#[derive(Clone)]
pub struct ReadTrees {
    marks: sled::Tree,
    prefs: sled::Tree,
    receipts: sled::Tree,
}

impl ReadTrees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(ReadTrees {
            marks: db.open_tree("read_marks")?,
            prefs: db.open_tree("read_prefs")?,
            receipts: db.open_tree("read_receipts")?,
        })
    }
}

impl Store {
    pub fn read_mark(&self, uid: UserId, chat: &Chat) -> StoreResult<Option<ReadEntry>> {
        match self.read.marks.get(mark_key(uid, chat))? {
            Some(raw) => Ok(Some(ReadEntry::from_bytes("read_marks", &raw)?)),
            None => Ok(None),
        }
    }

    /// Every mark of the user, groups' included, in key order.
    pub fn read_marks(&self, uid: UserId) -> StoreResult<Vec<(Chat, ReadEntry)>> {
        let mut marks = Vec::new();
        for entry in self.read.marks.scan_prefix(uid.get().to_be_bytes()) {
            let (key, raw) = entry?;
            marks.push((chat_of(&key[8..])?, ReadEntry::from_bytes("read_marks", &raw)?));
        }
        Ok(marks)
    }

    /// The user's marks other than groups' (those the user's worker writes and bounds).
    pub fn own_read_marks(&self, uid: UserId) -> StoreResult<Held<Chat>> {
        let mut held = Held { count: 0, oldest: None };
        let mut oldest_ms = u64::MAX;
        for (chat, entry) in self.read_marks(uid)? {
            if matches!(chat, Chat::Group(_)) {
                continue;
            }
            held.count += 1;
            if entry.at_ms < oldest_ms {
                oldest_ms = entry.at_ms;
                held.oldest = Some(chat);
            }
        }
        Ok(held)
    }

    /// Sets (or with None removes) a mark as it is: the caller has checked that it rises.
    pub fn put_read_mark(&self, uid: UserId, chat: &Chat, mark: Option<ReadEntry>) -> StoreResult<()> {
        let key = mark_key(uid, chat);
        match mark {
            Some(entry) => self.read.marks.insert(key, &entry.to_bytes())?,
            None => self.read.marks.remove(key)?,
        };
        Ok(())
    }

    pub fn read_prefs(&self, uid: UserId) -> StoreResult<ReadPrefs> {
        match self.read.prefs.get(uid.get().to_be_bytes())? {
            Some(raw) => decode("read_prefs", &raw),
            None => Ok(ReadPrefs::default()),
        }
    }

    /// Writes the user's settings; the defaults are stored as nothing.
    pub fn put_read_prefs(&self, uid: UserId, prefs: &ReadPrefs) -> StoreResult<()> {
        let key = uid.get().to_be_bytes();
        match *prefs == ReadPrefs::default() {
            true => self.read.prefs.remove(key)?,
            false => self.read.prefs.insert(key, encode(prefs))?,
        };
        Ok(())
    }

    pub fn read_receipt(&self, sender: UserId, reader: &str) -> StoreResult<Option<ReadEntry>> {
        match self.read.receipts.get(receipt_key(sender, reader))? {
            Some(raw) => Ok(Some(ReadEntry::from_bytes("read_receipts", &raw)?)),
            None => Ok(None),
        }
    }

    /// Every receipt the sender holds, by reader.
    pub fn read_receipts(&self, sender: UserId) -> StoreResult<Vec<(String, ReadEntry)>> {
        let mut receipts = Vec::new();
        for entry in self.read.receipts.scan_prefix(sender.get().to_be_bytes()) {
            let (key, raw) = entry?;
            let reader = String::from_utf8_lossy(&key[8..]).into_owned();
            receipts.push((reader, ReadEntry::from_bytes("read_receipts", &raw)?));
        }
        Ok(receipts)
    }

    /// How many receipts the sender holds, and the reader of the one recorded longest ago.
    pub fn receipts_held(&self, sender: UserId) -> StoreResult<Held<String>> {
        let receipts = self.read_receipts(sender)?;
        let oldest = receipts.iter().min_by_key(|(_, entry)| entry.at_ms).map(|(reader, _)| reader.clone());
        Ok(Held { count: receipts.len(), oldest })
    }

    /// Sets (or with None removes) a receipt as it is: the caller has checked that it rises.
    pub fn put_read_receipt(&self, sender: UserId, reader: &str, receipt: Option<ReadEntry>) -> StoreResult<()> {
        let key = receipt_key(sender, reader);
        match receipt {
            Some(entry) => self.read.receipts.insert(key, &entry.to_bytes())?,
            None => self.read.receipts.remove(key)?,
        };
        Ok(())
    }

    /// Everything of the user's read state (a deleted account): its marks, its setting and
    /// the receipts it holds as a sender.
    pub fn forget_read_state(&self, uid: UserId) -> StoreResult<()> {
        let prefix = uid.get().to_be_bytes();
        for tree in [&self.read.marks, &self.read.receipts] {
            let mut batch = sled::Batch::default();
            for entry in tree.scan_prefix(prefix) {
                batch.remove(entry?.0);
            }
            tree.apply_batch(batch)?;
        }
        self.read.prefs.remove(prefix)?;
        Ok(())
    }

    /// A replayed mark: set if it rises (a group's only while the user is a member, so a
    /// mark logged before the user left does not come back), removed if forgotten.
    /// Returns whether it changed anything.
    pub(super) fn apply_read_mark(&self, uid: UserId, chat: &Chat, mark: Option<ReadEntry>) -> StoreResult<bool> {
        let Some(entry) = mark else {
            self.put_read_mark(uid, chat, None)?;
            return Ok(true);
        };
        if let Chat::Group(id) = chat {
            if !self.group(*id)?.is_some_and(|g| g.members.iter().any(|m| m.uid == uid)) {
                return Ok(false);
            }
        }
        if self.read_mark(uid, chat)?.is_some_and(|held| held.up_to >= entry.up_to) {
            return Ok(false);
        }
        self.put_read_mark(uid, chat, Some(entry))?;
        Ok(true)
    }

    /// A replayed receipt: set if it rises, removed if forgotten.
    pub(super) fn apply_read_receipt(
        &self,
        sender: UserId,
        reader: &str,
        receipt: Option<ReadEntry>,
    ) -> StoreResult<bool> {
        if let Some(entry) = receipt {
            if self.read_receipt(sender, reader)?.is_some_and(|held| held.up_to >= entry.up_to) {
                return Ok(false);
            }
        }
        self.put_read_receipt(sender, reader, receipt)?;
        Ok(true)
    }

    /// A line for each read-state record that does not decode (for `storage --verify`).
    pub fn verify_read_state(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        for entry in self.read.marks.iter() {
            let (key, raw) = entry?;
            let chat = key.get(8..).map(chat_of);
            if key.len() < 9 || !matches!(chat, Some(Ok(_))) || ReadEntry::from_bytes("read_marks", &raw).is_err() {
                problems.push(format!("a read mark that does not decode: {key:?}"));
            }
        }
        for entry in self.read.receipts.iter() {
            let (key, raw) = entry?;
            if key.len() < 9 || ReadEntry::from_bytes("read_receipts", &raw).is_err() {
                problems.push(format!("a read receipt that does not decode: {key:?}"));
            }
        }
        for entry in self.read.prefs.iter() {
            let (key, raw) = entry?;
            if decode::<ReadPrefs>("read_prefs", &raw).is_err() {
                problems.push(format!("read settings that do not decode: {key:?}"));
            }
        }
        Ok(problems)
    }
}

fn mark_key(uid: UserId, chat: &Chat) -> Vec<u8> {
    let mut key = uid.get().to_be_bytes().to_vec();
    match chat {
        Chat::User(name) => {
            key.push(USER);
            key.extend_from_slice(name.as_bytes());
        }
        Chat::Service(name) => {
            key.push(SERVICE);
            key.extend_from_slice(name.as_bytes());
        }
        Chat::Group(id) => {
            key.push(GROUP);
            key.extend_from_slice(&id.get().to_be_bytes());
        }
        Chat::Support(id) => {
            key.push(SUPPORT);
            key.extend_from_slice(&id.get().to_be_bytes());
        }
    }
    key
}

/// The chat of a mark's key, after the user id.
fn chat_of(key: &[u8]) -> StoreResult<Chat> {
    let corrupt = || StoreError::Corrupt { tree: "read_marks", detail: format!("a chat key of {key:?}") };
    let (&tag, rest) = key.split_first().ok_or_else(corrupt)?;
    let name = || String::from_utf8(rest.to_vec()).map_err(|_| corrupt());
    match tag {
        USER => Ok(Chat::User(name()?)),
        SERVICE => Ok(Chat::Service(name()?)),
        GROUP => Ok(Chat::Group(GroupId(read_u64("read_marks", rest)?))),
        SUPPORT => Ok(Chat::Support(SupportId(read_u64("read_marks", rest)?))),
        _ => Err(corrupt()),
    }
}

fn receipt_key(sender: UserId, reader: &str) -> Vec<u8> {
    let mut key = sender.get().to_be_bytes().to_vec();
    key.extend_from_slice(reader.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(up_to: u64, at_ms: u64) -> ReadEntry {
        ReadEntry { up_to: Seq(up_to), at_ms }
    }

    #[test]
    fn marks_are_per_user_and_chat_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (alice, bob) = (UserId(7), UserId(8));
        let chats = [
            Chat::User("default/bob".into()),
            Chat::Service("default/news".into()),
            Chat::Group(GroupId(300)),
            Chat::Support(SupportId(301)),
        ];
        for (n, chat) in chats.iter().enumerate() {
            store.put_read_mark(alice, chat, Some(at(n as u64 + 1, 10 - n as u64))).unwrap();
        }
        store.put_read_mark(bob, &chats[0], Some(at(9, 1))).unwrap();
        let marks = store.read_marks(alice).unwrap();
        assert_eq!(marks.len(), 4, "bob's mark is not alice's");
        for (n, chat) in chats.iter().enumerate() {
            assert!(marks.contains(&(chat.clone(), at(n as u64 + 1, 10 - n as u64))));
        }
        assert_eq!(store.read_mark(alice, &chats[2]).unwrap(), Some(at(3, 8)));
        // Groups' marks are the groups' workers' to bound: not counted.
        let held = store.own_read_marks(alice).unwrap();
        assert_eq!(held, Held { count: 3, oldest: Some(chats[3].clone()) });
        assert!(store.verify_read_state().unwrap().is_empty());

        store.forget_read_state(alice).unwrap();
        assert!(store.read_marks(alice).unwrap().is_empty());
        assert_eq!(store.read_marks(bob).unwrap().len(), 1);
    }

    #[test]
    fn receipts_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bob = UserId(8);
        assert!(store.read_prefs(bob).unwrap().receipts, "on unless turned off");
        store.put_read_prefs(bob, &ReadPrefs { receipts: false }).unwrap();
        assert!(!store.read_prefs(bob).unwrap().receipts);
        store.put_read_prefs(bob, &ReadPrefs::default()).unwrap();
        assert!(store.read_prefs(bob).unwrap().receipts);

        store.put_read_receipt(bob, "default/alice", Some(at(4, 20))).unwrap();
        store.put_read_receipt(bob, "default/carol", Some(at(2, 10))).unwrap();
        assert_eq!(store.receipts_held(bob).unwrap(), Held { count: 2, oldest: Some("default/carol".into()) });
        // Replay: a receipt only rises; a forgotten one goes.
        assert!(!store.apply_read_receipt(bob, "default/alice", Some(at(3, 30))).unwrap());
        assert!(store.apply_read_receipt(bob, "default/alice", Some(at(5, 30))).unwrap());
        assert!(store.apply_read_receipt(bob, "default/carol", None).unwrap());
        assert_eq!(store.read_receipts(bob).unwrap(), vec![("default/alice".to_string(), at(5, 30))]);
    }

    #[test]
    fn a_replayed_group_mark_needs_the_membership_and_only_rises() {
        use crate::protocol::Role;
        use crate::store::{GroupRecord, MemberRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (alice, group) = (UserId(7), Chat::Group(GroupId(9)));
        assert!(!store.apply_read_mark(alice, &group, Some(at(3, 1))).unwrap(), "no such group");
        let member = MemberRecord { username: "default/alice".into(), uid: alice, role: Role::Owner };
        let record = GroupRecord { name: "g".into(), open: false, created_ms: 0, members: vec![member] };
        store.put_group(GroupId(9), &record).unwrap();
        assert!(store.apply_read_mark(alice, &group, Some(at(3, 1))).unwrap());
        assert!(!store.apply_read_mark(alice, &group, Some(at(2, 2))).unwrap(), "never backwards");
        assert_eq!(store.read_mark(alice, &group).unwrap(), Some(at(3, 1)));
        assert!(store.apply_read_mark(alice, &group, None).unwrap());
        assert_eq!(store.read_mark(alice, &group).unwrap(), None);
    }
}
