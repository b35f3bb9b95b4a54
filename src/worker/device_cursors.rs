//! One reader's cursors in one conversation, one per device (protocol.md "Devices"): the
//! user's inbox, a group member's, a support conversation's customer's or staff member's.
//!
//! Each device acknowledges on its own and is sent its own stream; what the reader holds
//! on disk is its lowest position. A user without any device record (one that has not
//! logged in since devices exist, or a data directory of an earlier version) has one
//! implicit cursor, the legacy device's, which never expires; its first login from a named
//! device replaces it.
//!
//! Pure state, like `cursor`: the owners record positions and expire devices.

use super::cursor::{Cursor, Session};
use crate::protocol::Seq;
use crate::route::ConnId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The legacy device's id: a session that named no device.
pub const LEGACY: &str = "";

/// Whether `device` is the legacy device (an older client, which is never sent the frames
/// only named devices know).
pub fn is_legacy(device: &str) -> bool {
    device.is_empty()
}

#[derive(Debug)]
pub struct DeviceCursor {
    pub cursor: Cursor,
    /// When the device last logged in or its session here ended, as far as this owner
    /// knows (for expiry).
    pub last_seen_ms: u64,
}

#[derive(Debug, Default)]
pub struct DeviceCursors {
    devices: BTreeMap<Arc<str>, DeviceCursor>,
    /// The one cursor is the legacy device's, with no device record behind it.
    implicit: bool,
}

impl DeviceCursors {
    /// A reader without device records: the legacy device's cursor at `acked`.
    pub fn implicit_legacy(acked: Seq) -> Self {
        let mut devices = BTreeMap::new();
        devices.insert(Arc::from(LEGACY), DeviceCursor { cursor: Cursor { acked, session: None }, last_seen_ms: 0 });
        DeviceCursors { devices, implicit: true }
    }

    /// A known device's cursor at `acked`, offline.
    pub fn insert(&mut self, device: Arc<str>, acked: Seq, last_seen_ms: u64) {
        self.devices.insert(device, DeviceCursor { cursor: Cursor { acked, session: None }, last_seen_ms });
    }

    pub fn is_implicit(&self) -> bool {
        self.implicit
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn get(&self, device: &str) -> Option<&Cursor> {
        self.devices.get(device).map(|d| &d.cursor)
    }

    pub fn get_mut(&mut self, device: &str) -> Option<&mut Cursor> {
        self.devices.get_mut(device).map(|d| &mut d.cursor)
    }

    /// The device's id as held here (to name it in a wait).
    pub fn key(&self, device: &str) -> Option<Arc<str>> {
        self.devices.get_key_value(device).map(|(key, _)| key.clone())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Cursor)> {
        self.devices.iter().map(|(device, d)| (device, &d.cursor))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut Cursor)> {
        self.devices.iter_mut().map(|(device, d)| (device, &mut d.cursor))
    }

    /// Every device's entry, with when it was last seen.
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &DeviceCursor)> {
        self.devices.iter()
    }

    /// The device whose session is on `conn`.
    pub fn device_of(&self, conn: ConnId) -> Option<Arc<str>> {
        self.devices.iter().find(|(_, d)| d.cursor.conn() == Some(conn)).map(|(device, _)| device.clone())
    }

    /// What the reader holds on disk: its lowest position (None without any device).
    pub fn lowest_acked(&self) -> Option<Seq> {
        self.devices.values().map(|d| d.cursor.acked).min()
    }

    /// The furthest position of the reader's devices (None without any device): where a
    /// device new here starts, as a new device starts in the inbox.
    pub fn furthest_acked(&self) -> Option<Seq> {
        self.devices.values().map(|d| d.cursor.acked).max()
    }

    /// Whether some device has a session here.
    pub fn online(&self) -> bool {
        self.devices.values().any(|d| d.cursor.session.is_some())
    }

    /// The connections of the devices with a session here.
    pub fn conns(&self) -> Vec<ConnId> {
        self.devices.values().filter_map(|d| d.cursor.conn()).collect()
    }

    /// The devices with a session here.
    pub fn online_devices(&self) -> Vec<Arc<str>> {
        self.devices.iter().filter(|(_, d)| d.cursor.session.is_some()).map(|(device, _)| device.clone()).collect()
    }

    /// `device` is online at a session made by `session` from the position: a device new
    /// here gets a cursor at `start()` first. A named device replaces the implicit legacy
    /// cursor (the user has device records now); the legacy device makes it a known one. Returns whether the cursor is new, so the
    /// owner records where it starts.
    pub fn attach(
        &mut self,
        device: &Arc<str>,
        now_ms: u64,
        start: impl FnOnce() -> Seq,
        session: impl FnOnce(Seq) -> Session,
    ) -> bool {
        // A login writes the device's record: the legacy device logging in is known from now
        // on, and a named device's first login leaves the user no implicit legacy device.
        if self.implicit && !is_legacy(device) {
            self.devices.clear();
        }
        self.implicit = false;
        let created = !self.devices.contains_key(device);
        let entry = self
            .devices
            .entry(device.clone())
            .or_insert_with(|| DeviceCursor { cursor: Cursor { acked: start(), session: None }, last_seen_ms: now_ms });
        entry.last_seen_ms = now_ms;
        entry.cursor.session = Some(session(entry.cursor.acked));
        created
    }

    /// The session on `conn` ended; returns its device.
    pub fn detach(&mut self, conn: ConnId, now_ms: u64) -> Option<Arc<str>> {
        let (device, entry) = self.devices.iter_mut().find(|(_, d)| d.cursor.conn() == Some(conn))?;
        entry.cursor.session = None;
        entry.last_seen_ms = now_ms;
        Some(device.clone())
    }

    /// Offline devices not seen for `expiry` (never the implicit legacy cursor).
    pub fn expired(&self, now_ms: u64, expiry: Duration) -> Vec<Arc<str>> {
        if self.implicit {
            return Vec::new();
        }
        let expiry = expiry.as_millis() as u64;
        self.devices
            .iter()
            .filter(|(_, d)| d.cursor.session.is_none() && d.last_seen_ms.saturating_add(expiry) <= now_ms)
            .map(|(device, _)| device.clone())
            .collect()
    }

    /// Forgets the cursors of offline devices not seen for `expiry`; returns whether any
    /// went.
    pub fn drop_expired(&mut self, now_ms: u64, expiry: Duration) -> bool {
        let mut any = false;
        for device in self.expired(now_ms, expiry) {
            any |= self.remove(&device);
        }
        any
    }

    /// Forgets a device's cursor; returns whether there was one.
    pub fn remove(&mut self, device: &str) -> bool {
        self.devices.remove(device).is_some()
    }
}

/// Whether an expiry of `expiry` has passed for something last seen at `last_seen_ms`.
pub fn expired(last_seen_ms: u64, now_ms: u64, expiry: Duration) -> bool {
    last_seen_ms.saturating_add(expiry.as_millis() as u64) <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::budget::SessionBudget;

    fn session(conn: u64) -> impl FnOnce(Seq) -> Session {
        move |at| Session::new(ConnId(conn), at, Arc::new(SessionBudget::new(1 << 20)))
    }

    #[test]
    fn a_named_device_replaces_the_implicit_legacy_cursor() {
        let mut cursors = DeviceCursors::implicit_legacy(Seq(4));
        assert!(cursors.is_implicit());
        assert!(cursors.attach(&"phone".into(), 2, || Seq(4), session(2)));
        assert!(!cursors.is_implicit());
        assert_eq!(cursors.len(), 1, "the legacy device without a record is gone");
        assert_eq!(cursors.device_of(ConnId(2)).as_deref(), Some("phone"));
    }

    #[test]
    fn a_legacy_login_makes_the_legacy_device_a_known_one() {
        let mut cursors = DeviceCursors::implicit_legacy(Seq(4));
        assert!(!cursors.attach(&"".into(), 1, || Seq(0), session(1)), "the legacy device was there");
        assert!(!cursors.is_implicit());
        assert!(cursors.attach(&"phone".into(), 2, || Seq(4), session(2)));
        assert_eq!(cursors.conns(), [ConnId(1), ConnId(2)], "the legacy session stays");
    }

    #[test]
    fn each_device_holds_its_own_position_and_offline_ones_expire() {
        let mut cursors = DeviceCursors::default();
        cursors.attach(&"laptop".into(), 10, || Seq(2), session(1));
        cursors.attach(&"phone".into(), 10, || Seq(5), session(2));
        assert_eq!(cursors.lowest_acked(), Some(Seq(2)));
        assert!(cursors.get_mut("laptop").unwrap().ack(Seq(9)));
        assert_eq!(cursors.lowest_acked(), Some(Seq(5)));
        assert_eq!(cursors.detach(ConnId(2), 20).as_deref(), Some("phone"));
        assert!(cursors.online());
        let day = Duration::from_secs(24 * 3600);
        assert!(cursors.expired(20 + 1000, day).is_empty());
        assert_eq!(cursors.expired(20 + day.as_millis() as u64, day), vec![Arc::<str>::from("phone")]);
        assert!(cursors.remove("phone"));
        assert_eq!(cursors.lowest_acked(), Some(Seq(9)));
    }
}
