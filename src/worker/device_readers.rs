//! What a group and a support conversation do alike for their readers' devices (protocol.md
//! "Devices"): a device new to the log starts where its reader's furthest device is (its
//! legacy position without any), and a named one's start is recorded; a device online gets
//! its session; an acknowledgement is recorded before the cursor moves, the legacy
//! device's where it always was and a named device's beside it.
//!
//! A trait over the owner rather than a shared reader type: a group's members carry a role
//! and a support conversation's readers do not, and each owner keeps its own map. The owner
//! says where its log is and how it keeps the legacy position; the steps are here once.

use super::budget::SessionBudget;
use super::context::Ctx;
use super::cursor::{Cursor, Session};
use super::device_cursors::{is_legacy, DeviceCursors};
use super::directory::SessionEntry;
use super::refusal::{Handled, Refusal};
use super::retention::LogRef;
use crate::clock::now_ms;
use crate::protocol::{Seq, UserId};
use crate::route::ConnId;
use crate::store::DeviceChange;
use log::debug;
use std::sync::Arc;

/// A log whose readers each hold a cursor per device.
pub trait DeviceReaders {
    /// The log the readers' positions are in.
    fn reader_log(&self) -> LogRef;

    /// A reader's user id and cursors; None for anyone who is not one.
    fn reader_devices(&self, name: &str) -> Option<(UserId, &DeviceCursors)>;

    fn reader_devices_mut(&mut self, name: &str) -> Option<&mut DeviceCursors>;

    /// The reader's legacy position on disk (where it joined, or last acked), within the
    /// log's range.
    fn stored_legacy_position(&self, ctx: &Ctx, name: &str) -> Result<Seq, Refusal>;

    /// Records the legacy device's acknowledgement where it always was.
    fn record_legacy_ack(&self, ctx: &mut Ctx, name: &str, up_to: Seq) -> Handled;

    /// Where a device new here starts: where the reader's furthest device is (what another
    /// device read is history, `History` pages it; the legacy position of a reader who uses
    /// only named devices stays where it joined), or without any device its legacy position
    /// on disk (where it joined, or last acked).
    fn new_device_start(&self, ctx: &Ctx, name: &str) -> Result<Seq, Refusal> {
        match self.reader_devices(name).and_then(|(_, devices)| devices.furthest_acked()) {
            Some(furthest) => Ok(furthest),
            None => self.stored_legacy_position(ctx, name),
        }
    }

    /// Records where a named device new here starts (the legacy position it was given may
    /// move on). Best effort: unrecorded, it reads as the legacy position.
    fn record_start(&self, ctx: &mut Ctx, name: &str, device: &str) {
        let Some((uid, devices)) = self.reader_devices(name) else { return };
        let Some(acked) = devices.get(device).map(|c| c.acked) else { return };
        let log = self.reader_log();
        let change = DeviceChange::Ack { log: log.id, owner: log.owner, uid, device: device.to_string(), acked };
        if let Err(e) = ctx.partition.device(change) {
            debug!("{:?} log {}: where {name}'s device {device:?} starts: {e}", log.id, log.owner.get());
        }
    }

    /// Gives the reader's `device` its session on `conn` (a device new here gets a cursor
    /// where the legacy position is, recorded). Returns whether `name` is a reader.
    fn attach(
        &mut self,
        ctx: &mut Ctx,
        name: &str,
        device: &Arc<str>,
        conn: ConnId,
        budget: Arc<SessionBudget>,
    ) -> Result<bool, Refusal> {
        let start = self.new_device_start(ctx, name)?;
        let Some(devices) = self.reader_devices_mut(name) else { return Ok(false) };
        let created = devices.attach(device, now_ms(), || start, |acked| Session::new(conn, acked, budget));
        if created && !is_legacy(device) {
            self.record_start(ctx, name, device);
        }
        Ok(true)
    }

    /// A reader's cursors just put in place (see `devices::reader_cursors`): the starts of
    /// its `unrecorded` devices are recorded and each of its `sessions` now is attached.
    /// Returns the connections attached.
    fn seat(
        &mut self,
        ctx: &mut Ctx,
        name: &str,
        unrecorded: Vec<Arc<str>>,
        sessions: &[SessionEntry],
    ) -> Result<Vec<ConnId>, Refusal> {
        for device in unrecorded {
            self.record_start(ctx, name, &device);
        }
        let mut attached = Vec::new();
        for session in sessions {
            if self.attach(ctx, name, &session.device, session.conn, session.budget.clone())? {
                attached.push(session.conn);
            }
        }
        Ok(attached)
    }

    /// The cursor of the reader's `device`, made where the legacy position is (recorded,
    /// for a named device) for a device whose login this log has not heard of yet. None for
    /// anyone who is not a reader.
    fn device_cursor(&mut self, ctx: &mut Ctx, name: &str, device: &Arc<str>) -> Result<Option<&mut Cursor>, Refusal> {
        let start = self.new_device_start(ctx, name)?;
        let Some(devices) = self.reader_devices_mut(name) else { return Ok(None) };
        if devices.get(device).is_none() {
            devices.insert(device.clone(), start, now_ms());
            if !is_legacy(device) {
                self.record_start(ctx, name, device);
            }
        }
        Ok(self.reader_devices_mut(name).and_then(|devices| devices.get_mut(device)))
    }

    /// Moves the position of the reader's `device` (which has a cursor) up to `up_to`,
    /// recorded first: a refused write (a full disk) leaves the cursor where it was.
    /// Returns whether it moved.
    fn record_ack(&mut self, ctx: &mut Ctx, name: &str, device: &str, up_to: Seq) -> Result<bool, Refusal> {
        let Some((uid, devices)) = self.reader_devices(name) else { return Ok(false) };
        if devices.get(device).is_none_or(|cursor| up_to <= cursor.acked) {
            return Ok(false);
        }
        match is_legacy(device) {
            true => self.record_legacy_ack(ctx, name, up_to)?,
            false => {
                let log = self.reader_log();
                let device = device.to_string();
                ctx.partition.device(DeviceChange::Ack { log: log.id, owner: log.owner, uid, device, acked: up_to })?
            }
        }
        if let Some(cursor) = self.reader_devices_mut(name).and_then(|devices| devices.get_mut(device)) {
            cursor.ack(up_to);
        }
        Ok(true)
    }
}
