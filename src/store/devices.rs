//! Users' devices: the record of each device a user logs in from (when it was last seen),
//! each named device's acknowledged positions, and which device a resume token belongs to.
//!
//! Trees and keys (ids big-endian; a device id is 1-64 printable ASCII, the legacy device,
//! a client that names none, is the empty id):
//! - `devices`:     `uid ++ device` → [`DeviceRecord`]
//! - `device_acks`: `kind ++ owner ++ uid ++ device` → the device's acknowledged sequence
//!   (u64) in that log; `kind` is 0 for an inbox, 1 for a group, 2 for a support
//!   conversation, `owner` the log's owner (the user, the group, the conversation)
//!
//! The legacy device keeps the keys it had before devices existed, so a data directory of
//! an earlier version needs no migration: its position in a group is in `group_acks`, in a
//! support conversation in `support_acks`, and in its inbox it is the inbox's floor unless
//! `device_acks` holds one (it does once another device of the user holds the floor lower).
//! A named device's position that is not recorded reads as the log's floor: the floor never
//! rises past a device that is known, so that is where it is.
//!
//! A resume token's value in `tokens` is its expiry (u64), followed by the device's id for a
//! token issued to a named device: a value of 8 bytes, as every token of an earlier version
//! is, belongs to the legacy device.

use super::{decode, encode, read_u64, LogId, LogOwner, Store, StoreError, StoreResult};
use crate::protocol::{GroupId, Seq, SupportId, UserId};
use serde::{Deserialize, Serialize};

/// A device the user logged in from.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRecord {
    /// When it last logged in or its session ended (ms since the epoch).
    pub last_seen_ms: u64,
}

/// The device trees, opened with the store.
#[derive(Clone)]
pub struct DeviceTrees {
    records: sled::Tree,
    acks: sled::Tree,
}

impl DeviceTrees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(DeviceTrees { records: db.open_tree("devices")?, acks: db.open_tree("device_acks")? })
    }
}

impl Store {
    /// Every device recorded for the user, by id.
    pub fn devices(&self, uid: UserId) -> StoreResult<Vec<(String, DeviceRecord)>> {
        let prefix = uid.get().to_be_bytes();
        let mut devices = Vec::new();
        for entry in self.devices.records.scan_prefix(prefix) {
            let (key, raw) = entry?;
            let device = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            devices.push((device, decode("devices", &raw)?));
        }
        Ok(devices)
    }

    pub fn put_device(&self, uid: UserId, device: &str, record: &DeviceRecord) -> StoreResult<()> {
        self.devices.records.insert(record_key(uid, device), encode(record))?;
        Ok(())
    }

    /// Forgets the device: its record, its token and every position it holds in the user's
    /// inbox, groups (`groups`) and support conversations (`conversations`).
    pub fn forget_device(
        &self,
        uid: UserId,
        device: &str,
        groups: &[GroupId],
        conversations: &[SupportId],
    ) -> StoreResult<()> {
        let mut acks = sled::Batch::default();
        acks.remove(ack_key(LogId::Inbox, uid.into(), uid, device));
        for group in groups {
            acks.remove(ack_key(LogId::Group, (*group).into(), uid, device));
        }
        for conversation in conversations {
            acks.remove(ack_key(LogId::Support, (*conversation).into(), uid, device));
        }
        self.devices.acks.apply_batch(acks)?;
        self.revoke_device_tokens(uid, device)?;
        self.devices.records.remove(record_key(uid, device))?;
        Ok(())
    }

    /// The groups and support conversations (as customer or staff) a user reads: where its
    /// devices may hold positions.
    pub fn reader_logs(&self, username: &str) -> StoreResult<(Vec<GroupId>, Vec<SupportId>)> {
        let groups = self.memberships(username)?;
        let mut conversations = self.customer_support(username)?;
        for shop in self.staff_shops(username)? {
            conversations.extend(self.shop_support(&shop)?);
        }
        Ok((groups, conversations))
    }

    /// Removes every device of the user with its inbox positions (the account is deleted;
    /// its group positions go with its memberships, see [`Store::remove_device_acks`]).
    pub fn remove_devices(&self, uid: UserId) -> StoreResult<()> {
        let mut records = sled::Batch::default();
        for entry in self.devices.records.scan_prefix(uid.get().to_be_bytes()) {
            records.remove(entry?.0);
        }
        self.devices.records.apply_batch(records)?;
        self.remove_device_acks(LogId::Inbox, uid.into(), Some(uid))
    }

    /// A named device's recorded position in a log (None if it has none); the legacy
    /// device's in an inbox (its group and support positions are in their own trees).
    pub fn device_ack(&self, log: LogId, owner: LogOwner, uid: UserId, device: &str) -> StoreResult<Option<Seq>> {
        match self.devices.acks.get(ack_key(log, owner, uid, device))? {
            Some(raw) => Ok(Some(Seq(read_u64("device_acks", &raw)?))),
            None => Ok(None),
        }
    }

    /// Every device position recorded in a log, as (user id, device, position): one scan,
    /// for loading a group or a conversation.
    pub fn device_acks(&self, log: LogId, owner: LogOwner) -> StoreResult<Vec<(UserId, String, Seq)>> {
        let prefix = log_prefix(log, owner);
        let mut acks = Vec::new();
        for entry in self.devices.acks.scan_prefix(prefix) {
            let (key, raw) = entry?;
            let rest = &key[prefix.len()..];
            let uid = read_u64("device_acks", rest.get(..8).unwrap_or_default())?;
            let device = String::from_utf8_lossy(&rest[8..]).into_owned();
            acks.push((UserId(uid), device, Seq(read_u64("device_acks", &raw)?)));
        }
        Ok(acks)
    }

    pub fn put_device_ack(
        &self,
        log: LogId,
        owner: LogOwner,
        uid: UserId,
        device: &str,
        acked: Seq,
    ) -> StoreResult<()> {
        self.devices.acks.insert(ack_key(log, owner, uid, device), &acked.get().to_be_bytes())?;
        Ok(())
    }

    /// Removes the positions recorded in a log: every device's, or one user's devices' (a
    /// member leaving, a staff member removed).
    pub fn remove_device_acks(&self, log: LogId, owner: LogOwner, uid: Option<UserId>) -> StoreResult<()> {
        let mut prefix = log_prefix(log, owner).to_vec();
        if let Some(uid) = uid {
            prefix.extend_from_slice(&uid.get().to_be_bytes());
        }
        let mut batch = sled::Batch::default();
        for entry in self.devices.acks.scan_prefix(&prefix) {
            batch.remove(entry?.0);
        }
        self.devices.acks.apply_batch(batch)?;
        Ok(())
    }

    /// Remembers a resume token (by its digest) of `device` until `expires_ms`.
    pub fn put_device_token(&self, uid: UserId, digest: &[u8; 32], expires_ms: u64, device: &str) -> StoreResult<()> {
        let mut value = expires_ms.to_be_bytes().to_vec();
        value.extend_from_slice(device.as_bytes());
        self.tokens.insert(super::token_key(uid, digest), value)?;
        Ok(())
    }

    /// The device of a known, unexpired token (the empty id for the legacy device); an
    /// expired one is removed.
    pub fn token_device(&self, uid: UserId, digest: &[u8; 32], now_ms: u64) -> StoreResult<Option<String>> {
        let key = super::token_key(uid, digest);
        let Some(raw) = self.tokens.get(key)? else { return Ok(None) };
        let (expires, device) = token_value(&raw)?;
        if expires > now_ms {
            return Ok(Some(device));
        }
        self.tokens.remove(key)?;
        Ok(None)
    }

    /// Revokes every token of one device of the user (its logout, its removal).
    pub fn revoke_device_tokens(&self, uid: UserId, device: &str) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for entry in self.tokens.scan_prefix(uid.get().to_be_bytes()) {
            let (key, raw) = entry?;
            if token_value(&raw)?.1 == device {
                batch.remove(key);
                any = true;
            }
        }
        if any {
            self.tokens.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Problems in the device trees: records that do not decode.
    pub(super) fn verify_devices(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        for entry in self.devices.records.iter() {
            let (key, raw) = entry?;
            if let Err(e) = decode::<DeviceRecord>("devices", &raw) {
                problems.push(format!("device {}: {e}", String::from_utf8_lossy(&key)));
            }
        }
        for entry in self.devices.acks.iter() {
            let (key, raw) = entry?;
            if key.len() < 17 || raw.len() != 8 {
                problems.push(format!("device position {key:?}: {} bytes where 8 were expected", raw.len()));
            }
        }
        Ok(problems)
    }
}

/// A token's expiry and device.
fn token_value(raw: &[u8]) -> StoreResult<(u64, String)> {
    if raw.len() < 8 {
        return Err(StoreError::Corrupt { tree: "tokens", detail: format!("{} bytes, expected 8 or more", raw.len()) });
    }
    let expires = read_u64("tokens", &raw[..8])?;
    Ok((expires, String::from_utf8_lossy(&raw[8..]).into_owned()))
}

fn record_key(uid: UserId, device: &str) -> Vec<u8> {
    let mut key = uid.get().to_be_bytes().to_vec();
    key.extend_from_slice(device.as_bytes());
    key
}

fn kind(log: LogId) -> u8 {
    match log {
        LogId::Inbox => 0,
        LogId::Group => 1,
        LogId::Support => 2,
    }
}

fn log_prefix(log: LogId, owner: LogOwner) -> [u8; 9] {
    let mut prefix = [0; 9];
    prefix[0] = kind(log);
    prefix[1..].copy_from_slice(&owner.get().to_be_bytes());
    prefix
}

/// Fixed-width ids before the device, so a prefix scan of a log, or of one user in it, never
/// matches another's.
fn ack_key(log: LogId, owner: LogOwner, uid: UserId, device: &str) -> Vec<u8> {
    let mut key = log_prefix(log, owner).to_vec();
    key.extend_from_slice(&uid.get().to_be_bytes());
    key.extend_from_slice(device.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_belong_to_their_device_and_old_ones_to_the_legacy_device() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (old, laptop, phone) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let alice = UserId(5);
        store.put_token(alice, &old, 1_000).unwrap();
        store.put_device_token(alice, &laptop, 1_000, "laptop").unwrap();
        store.put_device_token(alice, &phone, 1_000, "phone").unwrap();
        assert_eq!(store.token_device(alice, &old, 0).unwrap().as_deref(), Some(""));
        assert_eq!(store.token_device(alice, &laptop, 0).unwrap().as_deref(), Some("laptop"));
        assert!(store.token_valid(alice, &old, 0).unwrap(), "a token of before devices still reads");
        store.revoke_device_tokens(alice, "laptop").unwrap();
        assert_eq!(store.token_device(alice, &laptop, 0).unwrap(), None);
        assert_eq!(store.token_device(alice, &phone, 0).unwrap().as_deref(), Some("phone"));
        assert_eq!(store.token_device(alice, &old, 0).unwrap().as_deref(), Some(""));
        assert_eq!(store.token_device(alice, &phone, 1_000).unwrap(), None, "expired");
    }

    #[test]
    fn positions_are_per_log_user_and_device() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (alice, bob) = (UserId(5), UserId(6));
        let group = LogOwner::from(GroupId(9));
        store.put_device_ack(LogId::Group, group, alice, "laptop", Seq(3)).unwrap();
        store.put_device_ack(LogId::Group, group, alice, "phone", Seq(4)).unwrap();
        store.put_device_ack(LogId::Group, group, bob, "phone", Seq(5)).unwrap();
        store.put_device_ack(LogId::Support, group, alice, "phone", Seq(6)).unwrap();
        store.put_device_ack(LogId::Inbox, alice.into(), alice, "phone", Seq(7)).unwrap();
        assert_eq!(store.device_ack(LogId::Group, group, alice, "phone").unwrap(), Some(Seq(4)));
        assert_eq!(store.device_acks(LogId::Group, group).unwrap().len(), 3);
        store.remove_device_acks(LogId::Group, group, Some(alice)).unwrap();
        assert_eq!(store.device_acks(LogId::Group, group).unwrap(), vec![(bob, "phone".to_string(), Seq(5))]);
        store.put_device(alice, "phone", &DeviceRecord { last_seen_ms: 1 }).unwrap();
        store.put_device(alice, "laptop", &DeviceRecord { last_seen_ms: 2 }).unwrap();
        store.put_device(bob, "tablet", &DeviceRecord { last_seen_ms: 3 }).unwrap();
        store.forget_device(alice, "phone", &[], &[SupportId(group.get())]).unwrap();
        assert_eq!(store.devices(alice).unwrap(), vec![("laptop".to_string(), DeviceRecord { last_seen_ms: 2 })]);
        assert_eq!(store.device_ack(LogId::Support, group, alice, "phone").unwrap(), None);
        assert_eq!(store.device_ack(LogId::Inbox, alice.into(), alice, "phone").unwrap(), None);
        store.remove_devices(alice).unwrap();
        assert!(store.devices(alice).unwrap().is_empty());
        assert_eq!(store.devices(bob).unwrap().len(), 1);
    }
}
