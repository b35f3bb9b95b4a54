//! A user's devices, for `confabd user devices` and `confabd user device-remove`: the same
//! records and the same forgetting the server does for `ListDevices` and `RemoveDevice`,
//! on a stopped daemon's data directory.

use super::{existing, AdminError, AdminResult};
use crate::apps::local;
use crate::store::Store;

/// A device as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Empty for the legacy device (a client that names none).
    pub device: String,
    /// When it last logged in or its session ended (ms since the epoch).
    pub last_seen_ms: u64,
}

/// The user's devices the server has records of, by id (expired ones too, until the server
/// forgets them).
pub fn list_devices(store: &Store, username: &str) -> AdminResult<Vec<DeviceSummary>> {
    let account = existing(store, username)?;
    let devices = store.devices(account.user_id)?;
    Ok(devices
        .into_iter()
        .map(|(device, record)| DeviceSummary { device, last_seen_ms: record.last_seen_ms })
        .collect())
}

/// Forgets one of the user's devices: its record, its resume tokens and its positions in
/// the user's inbox, groups and support conversations. What only it held is deleted when
/// the server next loads each of them.
pub fn remove_device(store: &Store, username: &str, device: &str) -> AdminResult<()> {
    let account = existing(store, username)?;
    if !store.devices(account.user_id)?.iter().any(|(known, _)| known == device) {
        return Err(AdminError::NoSuchDevice { user: local(username).to_string(), device: device.to_string() });
    }
    let (groups, conversations) = store.reader_logs(username)?;
    store.forget_device(account.user_id, device, &groups, &conversations)?;
    store.checkpoint()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashCost;
    use crate::store::DeviceRecord;

    #[test]
    fn devices_are_listed_and_removed_with_their_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let uid = super::super::add_user(&store, "default/alice", "password1", HashCost::MINIMUM).unwrap();
        store.put_device(uid, "laptop", &DeviceRecord { last_seen_ms: 5 }).unwrap();
        store.put_device(uid, "phone", &DeviceRecord { last_seen_ms: 7 }).unwrap();
        store.put_device_token(uid, &[1; 32], u64::MAX, "phone").unwrap();
        let listed = list_devices(&store, "default/alice").unwrap();
        assert_eq!(
            listed.iter().map(|d| (d.device.as_str(), d.last_seen_ms)).collect::<Vec<_>>(),
            [("laptop", 5), ("phone", 7)]
        );
        remove_device(&store, "default/alice", "phone").unwrap();
        assert_eq!(list_devices(&store, "default/alice").unwrap().len(), 1);
        assert_eq!(store.token_device(uid, &[1; 32], 0).unwrap(), None, "its token went with it");
        let again = remove_device(&store, "default/alice", "phone");
        assert!(matches!(again, Err(AdminError::NoSuchDevice { .. })), "{again:?}");
        assert!(matches!(list_devices(&store, "default/bob"), Err(AdminError::NoSuchUser(_))));
    }
}
