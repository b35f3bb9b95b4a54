//! What push notifications keep on disk: each user's push devices and mutes, which
//! services may be the push gateway, and the queue of events waiting for the gateway.
//!
//! Trees and keys (integers big-endian, so byte order is numeric order):
//! - `push_prefs`:    `uid` → [`PushPrefs`] (written with a checkpoint by the user's worker)
//! - `push_gateways`: `service name` → empty (the service may subscribe to the push feed)
//! - `push_queue`:    `seq` → [`PushRecord`], and [`FLOOR_KEY`] → the acknowledged seq;
//!   written through the push worker's commit log (see `commitlog::change`)

use super::{decode, encode, read_u64, Store, StoreResult};
use crate::protocol::{Chat, MediaKind, MessageId, PushPlatform, SenderKind, UserId};
use serde::{Deserialize, Serialize};

/// The queue's acknowledged position; sorts before every event key (they are 8 bytes).
const FLOOR_KEY: &[u8] = b"";

/// A user's push devices and mutes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct PushPrefs {
    pub devices: Vec<PushDevice>,
    pub mutes: Vec<Mute>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    pub device: String,
    pub platform: PushPlatform,
    pub token: String,
    pub previews: bool,
    pub registered_ms: u64,
}

/// No notifications for `chat` before `until_ms`; 0 = until unmuted.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub chat: Chat,
    pub until_ms: u64,
}

impl PushPrefs {
    /// Whether `chat` is muted at `now_ms`.
    pub fn muted(&self, chat: &Chat, now_ms: u64) -> bool {
        self.mutes.iter().any(|m| &m.chat == chat && (m.until_ms == 0 || m.until_ms > now_ms))
    }

    /// Whether any device may show a preview (if none may, the text is never kept).
    pub fn any_previews(&self) -> bool {
        self.devices.iter().any(|d| d.previews)
    }
}

/// One push event as the queue keeps it; its seq is the key. The devices are looked up
/// when it is sent, so a device removed meanwhile is not woken.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    pub recipient: String,
    pub recipient_uid: UserId,
    /// The latest message the event stands for.
    pub message: PushMessage,
    pub count: u32,
    /// The badge: the recipient's unread messages as of the latest message.
    pub unread: u64,
}

/// What a notification says of a message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// Its chat, and the name to show for it.
    pub chat: Chat,
    pub chat_name: String,
    pub sender: String,
    pub sender_name: String,
    pub sender_kind: SenderKind,
    pub message_id: MessageId,
    pub kind: MediaKind,
    /// None when no device of the recipient allows previews, or there is no text.
    pub preview: Option<String>,
    pub timestamp_ms: u64,
}

#[cfg(test)]
impl PushMessage {
    /// A text message from alice, for unit tests.
    pub fn example() -> Self {
        PushMessage {
            chat: Chat::User("alice".into()),
            chat_name: "Alice".into(),
            sender: "alice".into(),
            sender_name: "Alice".into(),
            sender_kind: SenderKind::User,
            message_id: MessageId(300),
            kind: MediaKind::Text,
            preview: Some("hi".into()),
            timestamp_ms: 5,
        }
    }
}

/// The push queue read at start.
#[derive(Debug, PartialEq, Eq)]
pub struct PushQueueState {
    /// Everything at or below is acknowledged.
    pub floor: u64,
    /// The highest seq in use.
    pub last_seq: u64,
    pub events: Vec<(u64, PushRecord)>,
    /// Records that did not decode.
    pub damaged: usize,
}

/// The push trees of the store.
#[derive(Clone)]
pub struct PushTrees {
    prefs: sled::Tree,
    gateways: sled::Tree,
    queue: sled::Tree,
}

impl PushTrees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(PushTrees {
            prefs: db.open_tree("push_prefs")?,
            gateways: db.open_tree("push_gateways")?,
            queue: db.open_tree("push_queue")?,
        })
    }
}

impl Store {
    pub fn push_prefs(&self, uid: UserId) -> StoreResult<Option<PushPrefs>> {
        match self.push.prefs.get(uid.get().to_be_bytes())? {
            Some(raw) => Ok(Some(decode("push_prefs", &raw)?)),
            None => Ok(None),
        }
    }

    /// Writes the user's push settings; empty ones are removed.
    pub fn put_push_prefs(&self, uid: UserId, prefs: &PushPrefs) -> StoreResult<()> {
        let key = uid.get().to_be_bytes();
        match prefs.devices.is_empty() && prefs.mutes.is_empty() {
            true => self.push.prefs.remove(key)?,
            false => self.push.prefs.insert(key, encode(prefs))?,
        };
        Ok(())
    }

    /// A line for each user's push settings that do not decode (for `storage --verify`).
    pub fn verify_push_prefs(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        for entry in self.push.prefs.iter() {
            let (key, raw) = entry?;
            if let Err(e) = decode::<PushPrefs>("push_prefs", &raw) {
                problems.push(format!("push settings of user id {}: {e}", read_u64("push_prefs", &key)?));
            }
        }
        Ok(problems)
    }

    /// Every user's push settings (read once at start). Settings that do not decode are
    /// left out: the check at start names them (and refuses to start without
    /// `--start-damaged`); the user's messages do not depend on them.
    pub fn all_push_prefs(&self) -> StoreResult<Vec<(UserId, PushPrefs)>> {
        let mut all = Vec::new();
        for entry in self.push.prefs.iter() {
            let (key, raw) = entry?;
            if let Ok(prefs) = decode("push_prefs", &raw) {
                all.push((UserId(read_u64("push_prefs", &key)?), prefs));
            }
        }
        Ok(all)
    }

    pub fn is_push_gateway(&self, service: &str) -> StoreResult<bool> {
        Ok(self.push.gateways.contains_key(service.as_bytes())?)
    }

    pub fn set_push_gateway(&self, service: &str, allowed: bool) -> StoreResult<()> {
        match allowed {
            true => self.push.gateways.insert(service.as_bytes(), &[])?,
            false => self.push.gateways.remove(service.as_bytes())?,
        };
        Ok(())
    }

    /// Every service that may be the push gateway, by name (one-time migrations).
    pub(super) fn push_gateway_names(&self) -> StoreResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.push.gateways.iter() {
            names.push(String::from_utf8_lossy(&entry?.0).into_owned());
        }
        Ok(names)
    }

    /// The queue as the last run left it. A record that does not decode is left out (and
    /// counted) but its seq still counts as used, so no later event takes its number.
    pub fn push_queue(&self) -> StoreResult<PushQueueState> {
        let floor = self.push_floor()?;
        let mut state = PushQueueState { floor, last_seq: floor, events: Vec::new(), damaged: 0 };
        for entry in self.push.queue.range((floor + 1).to_be_bytes()..) {
            let (key, raw) = entry?;
            let seq = read_u64("push_queue", &key)?;
            state.last_seq = seq;
            match decode("push_queue", &raw) {
                Ok(record) => state.events.push((seq, record)),
                Err(_) => state.damaged += 1,
            }
        }
        Ok(state)
    }

    fn push_floor(&self) -> StoreResult<u64> {
        match self.push.queue.get(FLOOR_KEY)? {
            Some(raw) => read_u64("push_queue", &raw),
            None => Ok(0),
        }
    }

    /// Puts (or replaces) event `seq`, unless it is at or below the floor (a replay of
    /// an event acknowledged since).
    pub fn put_push_event(&self, seq: u64, record: &PushRecord) -> StoreResult<bool> {
        if seq <= self.push_floor()? {
            return Ok(false);
        }
        self.push.queue.insert(seq.to_be_bytes(), encode(record))?;
        Ok(true)
    }

    /// Raises the acknowledged position to `floor` (never lowers it) and deletes the
    /// events at or below it.
    pub fn raise_push_floor(&self, floor: u64) -> StoreResult<bool> {
        let before = self.push_floor()?;
        if floor <= before {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.insert(FLOOR_KEY, &floor.to_be_bytes());
        for entry in self.push.queue.range(1u64.to_be_bytes()..=floor.to_be_bytes()) {
            batch.remove(entry?.0);
        }
        self.push.queue.apply_batch(batch)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(count: u32) -> PushRecord {
        PushRecord {
            recipient: "bob".into(),
            recipient_uid: UserId(2),
            message: PushMessage::example(),
            count,
            unread: 1,
        }
    }

    #[test]
    fn the_queue_keeps_events_above_its_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let state = |floor, last_seq, events, damaged| PushQueueState { floor, last_seq, events, damaged };
        assert_eq!(store.push_queue().unwrap(), state(0, 0, vec![], 0));
        for seq in 1..=3 {
            assert!(store.put_push_event(seq, &record(1)).unwrap());
        }
        assert!(store.put_push_event(2, &record(4)).unwrap(), "a coalesced event replaces itself");
        assert!(store.raise_push_floor(1).unwrap());
        assert!(!store.raise_push_floor(1).unwrap(), "a floor never moves down or stays");
        assert!(!store.put_push_event(1, &record(1)).unwrap(), "a replayed acknowledged event stays gone");
        assert_eq!(store.push_queue().unwrap(), state(1, 3, vec![(2, record(4)), (3, record(1))], 0));
        // A damaged record is left out, and its number stays taken.
        store.push.queue.insert(4u64.to_be_bytes(), &[0xff][..]).unwrap();
        assert_eq!(store.push_queue().unwrap(), state(1, 4, vec![(2, record(4)), (3, record(1))], 1));
        store.raise_push_floor(4).unwrap();
        assert_eq!(store.push_queue().unwrap(), state(4, 4, vec![], 0));
        assert_eq!(store.push.queue.len(), 1, "only the floor is left");
    }

    #[test]
    fn prefs_gateways_and_mutes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let device = PushDevice {
            device: "phone".into(),
            platform: PushPlatform::Apns,
            token: "t".into(),
            previews: false,
            registered_ms: 1,
        };
        let mute = Mute { chat: Chat::Group(crate::protocol::GroupId(7)), until_ms: 100 };
        let prefs = PushPrefs { devices: vec![device], mutes: vec![mute] };
        store.put_push_prefs(UserId(9), &prefs).unwrap();
        assert_eq!(store.push_prefs(UserId(9)).unwrap(), Some(prefs.clone()));
        assert_eq!(store.all_push_prefs().unwrap(), vec![(UserId(9), prefs.clone())]);
        assert!(prefs.muted(&Chat::Group(crate::protocol::GroupId(7)), 99));
        assert!(!prefs.muted(&Chat::Group(crate::protocol::GroupId(7)), 100), "the mute ran out");
        assert!(!prefs.any_previews());
        store.put_push_prefs(UserId(9), &PushPrefs::default()).unwrap();
        assert_eq!(store.push_prefs(UserId(9)).unwrap(), None, "empty settings are not kept");
        // Damaged settings are named by the check and left out of the start.
        store.put_push_prefs(UserId(9), &prefs).unwrap();
        store.push.prefs.insert(10u64.to_be_bytes(), &[0xff][..]).unwrap();
        assert_eq!(store.all_push_prefs().unwrap(), vec![(UserId(9), prefs)]);
        let problems = store.verify().unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("push settings of user id 10: "), "{problems:?}");

        assert!(!store.is_push_gateway("relay").unwrap());
        store.set_push_gateway("relay", true).unwrap();
        assert!(store.is_push_gateway("relay").unwrap());
        store.set_push_gateway("relay", false).unwrap();
        assert!(!store.is_push_gateway("relay").unwrap());
    }
}
