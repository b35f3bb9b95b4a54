//! Shops and their customer-support conversations: the shop records (with their staff),
//! each conversation's record, the indexes that find a user's shops and conversations, and
//! every reader's acknowledged position. The messages themselves live in
//! [`Store::support_log`], one [`super::SeqLog`] per conversation id.
//!
//! Trees and keys (ids big-endian; names as given, never parsed, joined by 0x00, which no
//! valid name holds, so "bob" never matches "bobby"):
//! - `shops`:         `shop name` → [`ShopRecord`] (id, staff, created)
//! - `staff_of`:      `username ++ 0x00 ++ shop name` → empty (a user's shops, for login)
//! - `support`:       `conversation id` → [`SupportRecord`] (shop, customer, claim)
//! - `support_of`:    `customer ++ 0x00 ++ shop name` → conversation id (one per pair)
//! - `shop_support`:  `shop name ++ 0x00 ++ conversation id` → empty (a shop's conversations)
//! - `support_acks`:  `conversation id ++ username` → the reader's acknowledged sequence

use super::{decode, encode, read_u64, ShopRecord, Store, StoreResult, SupportRecord};
use crate::protocol::{Seq, SupportId};
use std::collections::HashMap;

/// The support trees, opened with the store.
#[derive(Clone)]
pub struct SupportTrees {
    shops: sled::Tree,
    staff_of: sled::Tree,
    support: sled::Tree,
    support_of: sled::Tree,
    shop_support: sled::Tree,
    acks: sled::Tree,
}

impl SupportTrees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(SupportTrees {
            shops: db.open_tree("shops")?,
            staff_of: db.open_tree("staff_of")?,
            support: db.open_tree("support")?,
            support_of: db.open_tree("support_of")?,
            shop_support: db.open_tree("shop_support")?,
            acks: db.open_tree("support_acks")?,
        })
    }
}

impl Store {
    pub fn shop(&self, name: &str) -> StoreResult<Option<ShopRecord>> {
        match self.support.shops.get(name.as_bytes())? {
            Some(raw) => Ok(Some(decode("shops", &raw)?)),
            None => Ok(None),
        }
    }

    /// Writes the shop's record and keeps each staff member's list of shops in step with
    /// it (`before`: the staff the record had, to drop those who left).
    pub fn put_shop(&self, name: &str, record: &ShopRecord, before: &[String]) -> StoreResult<()> {
        for gone in before.iter().filter(|b| !record.staff.iter().any(|s| s.username == **b)) {
            self.support.staff_of.remove(pair_key(gone, name))?;
        }
        for staff in &record.staff {
            self.support.staff_of.insert(pair_key(&staff.username, name), &[])?;
        }
        self.support.shops.insert(name.as_bytes(), encode(record))?;
        Ok(())
    }

    /// Every shop's name, in order (administration).
    pub fn shop_names(&self) -> StoreResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.support.shops.iter() {
            names.push(String::from_utf8_lossy(&entry?.0).into_owned());
        }
        Ok(names)
    }

    /// The shops `username` is staff of.
    pub fn staff_shops(&self, username: &str) -> StoreResult<Vec<String>> {
        let prefix = name_prefix(username);
        let mut shops = Vec::new();
        for entry in self.support.staff_of.scan_prefix(&prefix) {
            shops.push(String::from_utf8_lossy(&entry?.0[prefix.len()..]).into_owned());
        }
        Ok(shops)
    }

    pub fn support(&self, id: SupportId) -> StoreResult<Option<SupportRecord>> {
        match self.support.support.get(id.get().to_be_bytes())? {
            Some(raw) => Ok(Some(decode("support", &raw)?)),
            None => Ok(None),
        }
    }

    /// Writes a conversation's record (a new one, or its claim changed); a new one is
    /// entered in its customer's and its shop's indexes.
    pub fn put_support(&self, id: SupportId, record: &SupportRecord) -> StoreResult<()> {
        self.support.support_of.insert(pair_key(&record.customer, &record.shop), &id.get().to_be_bytes())?;
        self.support.shop_support.insert(id_key(&record.shop, id), &[])?;
        self.support.support.insert(id.get().to_be_bytes(), encode(record))?;
        Ok(())
    }

    /// The conversation of `customer` with `shop`, if there is one.
    pub fn support_between(&self, customer: &str, shop: &str) -> StoreResult<Option<SupportId>> {
        match self.support.support_of.get(pair_key(customer, shop))? {
            Some(raw) => Ok(Some(SupportId(read_u64("support_of", &raw)?))),
            None => Ok(None),
        }
    }

    /// The conversations `customer` opened, by shop name.
    pub fn customer_support(&self, customer: &str) -> StoreResult<Vec<SupportId>> {
        let mut ids = Vec::new();
        for entry in self.support.support_of.scan_prefix(name_prefix(customer)) {
            ids.push(SupportId(read_u64("support_of", &entry?.1)?));
        }
        Ok(ids)
    }

    /// A shop's conversations, by id.
    pub fn shop_support(&self, shop: &str) -> StoreResult<Vec<SupportId>> {
        let prefix = name_prefix(shop);
        let mut ids = Vec::new();
        for entry in self.support.shop_support.scan_prefix(&prefix) {
            ids.push(SupportId(read_u64("shop_support", &entry?.0[prefix.len()..])?));
        }
        Ok(ids)
    }

    /// A reader's acknowledged position in a conversation (0 if it never acknowledged).
    pub fn support_ack(&self, id: SupportId, username: &str) -> StoreResult<Seq> {
        match self.support.acks.get(reader_key(id, username))? {
            Some(raw) => read_u64("support_acks", &raw).map(Seq),
            None => Ok(Seq::ZERO),
        }
    }

    /// Every recorded position in a conversation, by reader: one scan, for loading a shop
    /// (a point read per reader would cost conversations times staff).
    pub fn support_acks(&self, id: SupportId) -> StoreResult<HashMap<String, Seq>> {
        let prefix = id.get().to_be_bytes();
        let mut acks = HashMap::new();
        for entry in self.support.acks.scan_prefix(prefix) {
            let (key, raw) = entry?;
            let reader = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            acks.insert(reader, Seq(read_u64("support_acks", &raw)?));
        }
        Ok(acks)
    }

    pub fn put_support_ack(&self, id: SupportId, username: &str, acked: Seq) -> StoreResult<()> {
        self.support.acks.insert(reader_key(id, username), &acked.get().to_be_bytes())?;
        Ok(())
    }

    pub fn remove_support_ack(&self, id: SupportId, username: &str) -> StoreResult<()> {
        self.support.acks.remove(reader_key(id, username))?;
        Ok(())
    }

    /// Removes a shop with every conversation of it: records, indexes, positions, logs.
    pub fn remove_shop(&self, name: &str) -> StoreResult<bool> {
        let Some(record) = self.shop(name)? else {
            return Ok(false);
        };
        for id in self.shop_support(name)? {
            if let Some(conversation) = self.support(id)? {
                self.support.support_of.remove(pair_key(&conversation.customer, name))?;
            }
            let mut acks = sled::Batch::default();
            for entry in self.support.acks.scan_prefix(id.get().to_be_bytes()) {
                acks.remove(entry?.0);
            }
            self.support.acks.apply_batch(acks)?;
            self.remove_device_acks(super::LogId::Support, id.into(), None)?;
            self.support_log.remove_all(id.into())?;
            self.support.shop_support.remove(id_key(name, id))?;
            self.support.support.remove(id.get().to_be_bytes())?;
        }
        let staff: Vec<String> = record.staff.iter().map(|s| s.username.clone()).collect();
        for username in &staff {
            self.support.staff_of.remove(pair_key(username, name))?;
        }
        self.support.shops.remove(name.as_bytes())?;
        Ok(true)
    }

    /// Conversations, for statistics and verification.
    pub fn support_count(&self) -> u64 {
        self.support.support.len() as u64
    }

    /// Problems in the support trees: records that do not decode, indexes that name
    /// conversations or shops that are not there.
    pub(super) fn verify_support(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        for entry in self.support.shops.iter() {
            let (key, raw) = entry?;
            if let Err(e) = decode::<ShopRecord>("shops", &raw) {
                problems.push(format!("shop {}: {e}", String::from_utf8_lossy(&key)));
            }
        }
        for entry in self.support.support.iter() {
            let (key, raw) = entry?;
            let id = read_u64("support", &key)?;
            match decode::<SupportRecord>("support", &raw) {
                Ok(record) if self.shop(&record.shop)?.is_none() => {
                    problems.push(format!("support conversation {id} belongs to shop {}, which is gone", record.shop))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("support conversation {id}: {e}")),
            }
        }
        for entry in self.support.support_of.iter() {
            let (key, raw) = entry?;
            let id = SupportId(read_u64("support_of", &raw)?);
            if self.support(id)?.is_none() {
                problems
                    .push(format!("{} names support conversation {id}, which is gone", String::from_utf8_lossy(&key)));
            }
        }
        Ok(problems)
    }
}

fn name_prefix(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key
}

fn pair_key(first: &str, second: &str) -> Vec<u8> {
    let mut key = name_prefix(first);
    key.extend_from_slice(second.as_bytes());
    key
}

fn id_key(name: &str, id: SupportId) -> Vec<u8> {
    let mut key = name_prefix(name);
    key.extend_from_slice(&id.get().to_be_bytes());
    key
}

fn reader_key(id: SupportId, username: &str) -> Vec<u8> {
    let mut key = id.get().to_be_bytes().to_vec();
    key.extend_from_slice(username.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use crate::protocol::{Seq, SupportId, UserId};
    use crate::store::{ShopRecord, StaffRecord, Store, StoredMessage, SupportRecord};

    fn staff(name: &str, uid: u64) -> StaffRecord {
        StaffRecord { username: name.into(), uid: UserId(uid) }
    }

    #[test]
    fn indexes_follow_the_records_and_removal_takes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shop = ShopRecord { id: 1, staff: vec![staff("bob", 2), staff("bobby", 3)], created_ms: 0 };
        store.put_shop("acme", &shop, &[]).unwrap();
        assert_eq!(store.staff_shops("bob").unwrap(), vec!["acme".to_string()]);
        let fewer = ShopRecord { staff: vec![staff("bobby", 3)], ..shop.clone() };
        store.put_shop("acme", &fewer, &["bob".into(), "bobby".into()]).unwrap();
        assert!(store.staff_shops("bob").unwrap().is_empty(), "bob left; bobby's entry is not his");
        let record = SupportRecord {
            shop: "acme".into(),
            customer: "alice".into(),
            customer_uid: UserId(4),
            claimed_by: None,
            created_ms: 0,
        };
        store.put_support(SupportId(9), &record).unwrap();
        store.support_log.append(SupportId(9).into(), Seq(1), &StoredMessage::example("hi")).unwrap();
        store.put_support_ack(SupportId(9), "alice", Seq(1)).unwrap();
        store.put_support_ack(SupportId(9), "bobby", Seq(0)).unwrap();
        // Another conversation whose id shares no prefix with 9's is not read with it.
        store.put_support_ack(SupportId(10), "alice", Seq(5)).unwrap();
        let acks = store.support_acks(SupportId(9)).unwrap();
        assert_eq!(acks.len(), 2);
        assert_eq!((acks["alice"], acks["bobby"]), (Seq(1), Seq(0)));
        assert_eq!(store.support_between("alice", "acme").unwrap(), Some(SupportId(9)));
        assert_eq!(store.customer_support("alice").unwrap(), vec![SupportId(9)]);
        assert_eq!(store.shop_support("acme").unwrap(), vec![SupportId(9)]);
        assert!(store.verify_support().unwrap().is_empty());
        assert!(store.remove_shop("acme").unwrap());
        assert_eq!(store.support(SupportId(9)).unwrap(), None);
        assert_eq!(store.support_between("alice", "acme").unwrap(), None);
        assert_eq!(store.support_ack(SupportId(9), "alice").unwrap(), Seq::ZERO);
        assert!(store.support_log.read(SupportId(9).into(), Seq::ZERO, 10).unwrap().is_empty());
        assert!(store.staff_shops("bobby").unwrap().is_empty());
        assert!(!store.remove_shop("acme").unwrap());
    }
}
