//! A worker's share of the store: every durable change a worker makes goes through its
//! partition, which knows what the current batch changed and makes it durable in one
//! [`Partition::commit`].
//!
//! - Message-path changes (a new message, an ack floor, a member's ack, a dedup record, a
//!   login's resume token and a logout's revocation, a read mark or receipt) are applied
//!   to memory or sled at once (readable immediately) and appended to the partition's
//!   commit log; the commit makes them durable with one `fdatasync`.
//! - Other writes (accounts, groups, memberships) go to sled through [`Partition::sled`],
//!   which marks that the commit must checkpoint sled as well.
//! - When the disk has no room for another segment, or the log keeps failing, new
//!   messages are refused ([`Partition::is_full`]) while acks and logins go on in the
//!   space already reserved; nothing is moved into sled or retired until there is room.
//!
//! New messages are staged in memory and migrated into sled later (after [`AGE`]), and
//! then only if still unacknowledged: a message acknowledged quickly is never written to
//! sled at all. Between commits, [`Partition::upkeep`] migrates what is due and retires
//! commit-log segments whose every message is in sled, after a sled checkpoint.

use super::commitlog::{segment, Applied, ChangeRef, CommitLog, DeviceChange, SyncPolicy, DIR};
use super::garbage::GarbageQueue;
use super::{
    DedupRecord, LogId, LogOwner, LogState, PushRecord, ReadEntry, Staged, Store, StoreError, StoreResult,
    StoredMessage,
};
use crate::protocol::{Chat, GroupId, Seq, SupportId, UserId};
use log::{error, warn};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a partition whose last commit failed tries again (the disk may have space
/// again, or work again): batches in between keep their changes queued rather than write
/// everything queued into yet another segment each time. It accepts new messages only once
/// a commit works.
const RETRY: Duration = Duration::from_secs(1);
/// Changes kept in memory for a log that keeps failing, beyond which even acks and
/// logins are refused: the memory bound while the disk refuses writes.
const FAILED_CAP: usize = 16 * 1024 * 1024;
/// How long a staged message waits before migration into sled: what is acknowledged
/// within this time never reaches sled.
const AGE: Duration = Duration::from_secs(2);
/// Staged messages (both logs) beyond which a partition migrates batches regardless of
/// age: the memory bound when recipients do not acknowledge.
const STAGED_CAP: usize = 100_000;
/// Batches migrated after each commit under load, so migration keeps pace.
const PER_COMMIT: usize = 2;
/// Full segments that may wait for retirement before the partition migrates their
/// messages early and checkpoints, whatever their age: the bound on the log's disk use.
const MAX_SEALED: usize = 2;

/// How the commit logs are written.
#[derive(Clone, Copy, Debug)]
pub struct LogSettings {
    pub sync: SyncPolicy,
    /// Bytes reserved per segment.
    pub segment_bytes: u64,
}

/// One committed batch's staged messages, awaiting migration.
struct StagedBatch {
    at: Instant,
    /// The segment holding them; None until a commit has written them (a failed commit).
    segment: Option<u64>,
    records: Vec<(LogId, LogOwner, Seq)>,
}

pub struct Partition {
    store: Store,
    log: CommitLog,
    /// A sled write this batch must checkpoint.
    sled_dirty: bool,
    /// This batch's new messages and dedup records.
    messages: Vec<(LogId, LogOwner, Seq)>,
    dedup: Vec<DedupRecord>,
    /// Committed batches' staged messages, oldest first.
    batches: VecDeque<StagedBatch>,
    /// The staged messages themselves, readable until migrated.
    table: Staged,
    /// When the disk's room was last looked at again while it was full.
    last_retry: Option<Instant>,
    /// When the last commit-log write or sync failed (None once one works again).
    failed_at: Option<Instant>,
    /// Acknowledged messages still to delete from sled.
    garbage: GarbageQueue,
}

impl Partition {
    pub fn new(store: Store, index: usize, settings: LogSettings) -> Self {
        let mut log = CommitLog::new(
            store.dir().join(DIR),
            store.log_run(),
            index as u32,
            settings.segment_bytes,
            settings.sync,
            store.log_stats.clone(),
            store.fail_flushes.clone(),
        )
        .with_hook(store.durability_hook());
        // The first segment's space now, not in the first batch.
        log.refill_spare();
        log.check_space();
        let table = store.register_staged();
        Partition {
            store,
            log,
            sled_dirty: false,
            messages: Vec::new(),
            dedup: Vec::new(),
            batches: VecDeque::new(),
            table,
            last_retry: None,
            failed_at: None,
            garbage: GarbageQueue::default(),
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store for a sled write outside the commit log; the commit will checkpoint.
    pub fn sled(&mut self) -> &Store {
        self.sled_dirty = true;
        &self.store
    }

    /// Whether new messages must be refused: the last commit failed and its changes
    /// still wait for the disk, or the disk has no room for another segment. Acks and
    /// logins still go through (into the space already reserved).
    pub fn is_full(&self) -> bool {
        self.log.is_failing() || self.log.is_disk_full()
    }

    /// Whether a sled checkpoint may run: enough free space that sled cannot fail.
    fn sled_has_room(&self) -> bool {
        !self.log.is_disk_full() && self.store.has_room_for_checkpoint()
    }

    /// A new message, readable at once, durable with this batch.
    pub fn stage(&mut self, log: LogId, owner: LogOwner, seq: Seq, message: &StoredMessage) {
        self.table.lock().insert(log, owner, seq, message.clone());
        self.log.add(&ChangeRef::Message { log, owner, seq, message });
        self.messages.push((log, owner, seq));
    }

    /// Messages `from..=floor` of the owner's log are acknowledged: its floor rises to
    /// `floor` (one change, however many messages it covers), and they are deleted later,
    /// when the worker is idle.
    pub fn raise_floor(&mut self, log: LogId, owner: LogOwner, from: Seq, floor: Seq) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.log(log).raise_floor(owner, floor)?;
        self.log.add(&ChangeRef::Floor { log, owner, floor });
        self.garbage.push(log, owner, from, floor);
        Ok(())
    }

    /// Message `seq` of the owner's log, rewritten (a deletion erases its content): in the
    /// staged table while it is still there, else in sled; and into the commit log, so the
    /// rewrite is durable with this batch and replayed after a crash (a replayed message
    /// overwrites what sled holds). The message must be above the log's floor.
    pub fn rewrite(&mut self, log: LogId, owner: LogOwner, seq: Seq, message: &StoredMessage) -> StoreResult<()> {
        self.room_for_change()?;
        // A staged message is never in sled as well (migration moves it in one step), so
        // one of the two holds it.
        if !self.table.lock().replace(log, owner, seq, message) {
            self.store.log(log).append(owner, seq, message)?;
        }
        self.log.add(&ChangeRef::Message { log, owner, seq, message });
        Ok(())
    }

    /// A group member's acknowledged position.
    pub fn group_ack(&mut self, group: GroupId, username: &str, acked: Seq) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.put_group_ack(group, username, acked)?;
        self.log.add(&ChangeRef::GroupAck { group, username, acked });
        Ok(())
    }

    /// A reader's acknowledged position in a support conversation.
    pub fn support_ack(&mut self, support: SupportId, username: &str, acked: Seq) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.put_support_ack(support, username, acked)?;
        self.log.add(&ChangeRef::SupportAck { support, username, acked });
        Ok(())
    }

    /// A user's read mark in a chat, set (the caller checked that it rises) or forgotten,
    /// durable with this batch.
    pub fn read_mark(&mut self, uid: UserId, chat: &Chat, mark: Option<ReadEntry>) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.put_read_mark(uid, chat, mark)?;
        self.log.add(&ChangeRef::ReadMark { uid, chat, mark });
        Ok(())
    }

    /// The latest receipt a sender holds from a reader, set or forgotten, durable with
    /// this batch.
    pub fn read_receipt(&mut self, sender: UserId, reader: &str, receipt: Option<ReadEntry>) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.put_read_receipt(sender, reader, receipt)?;
        self.log.add(&ChangeRef::ReadReceipt { sender, reader, receipt });
        Ok(())
    }

    /// A resume token issued at a login, durable with this batch (no sled flush).
    pub fn put_token(&mut self, uid: UserId, digest: &[u8; 32], expires_ms: u64) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.put_token(uid, digest, expires_ms)?;
        self.log.add(&ChangeRef::Token { uid, digest: *digest, expires_ms });
        Ok(())
    }

    /// Every token of the user revoked (logout), durable with this batch.
    pub fn revoke_tokens(&mut self, uid: UserId) -> StoreResult<()> {
        self.store.revoke_tokens(uid)?;
        self.log.add(&ChangeRef::RevokeTokens { uid });
        Ok(())
    }

    /// A change of a user's devices (a login or session end, a named device's ack or
    /// token, a logout or removal), applied now and durable with this batch.
    pub fn device(&mut self, change: DeviceChange) -> StoreResult<()> {
        // What only takes away (revocations, forgetting) goes in even past the bound, as a
        // logout's revocation does.
        if matches!(change, DeviceChange::Seen { .. } | DeviceChange::Ack { .. } | DeviceChange::Token { .. }) {
            self.room_for_change()?;
        }
        self.store.apply_device(change.clone(), &mut Applied::default())?;
        self.log.add(&ChangeRef::Device(&change));
        Ok(())
    }

    /// A push event, new or coalesced, durable with this batch (the push queue's worker).
    pub fn push_event(&mut self, seq: u64, event: &PushRecord) -> StoreResult<()> {
        self.room_for_change()?;
        self.store.put_push_event(seq, event)?;
        self.log.add(&ChangeRef::PushEvent { seq, event });
        Ok(())
    }

    /// Push events up to `floor` acknowledged or dropped, durable with this batch.
    pub fn push_floor(&mut self, floor: u64) -> StoreResult<()> {
        self.store.raise_push_floor(floor)?;
        self.log.add(&ChangeRef::PushFloor { floor });
        Ok(())
    }

    /// Refuses a change while failed commits hold more than `FAILED_CAP` in memory.
    fn room_for_change(&self) -> StoreResult<()> {
        match self.log.pending_bytes() > FAILED_CAP {
            true => Err(StoreError::Full),
            false => Ok(()),
        }
    }

    /// A send remembered for idempotent retries, durable with this batch.
    pub fn remember(&mut self, record: DedupRecord) {
        self.dedup.push(record);
    }

    /// Makes every change of this batch durable: one commit-log write and sync (per the
    /// sync policy), and a sled checkpoint if the batch wrote to sled directly. Nothing
    /// the batch promised may be released unless this returns Ok.
    pub fn commit(&mut self, now_ms: u64) -> StoreResult<()> {
        if !self.dedup.is_empty() {
            let records = std::mem::take(&mut self.dedup);
            self.log.add(&ChangeRef::Dedup { written_ms: now_ms, records: &records });
            // sled's copy, so the records outlive the log (no flush: the log has them).
            if let Err(e) = self.store.put_dedup_batch(now_ms, &records) {
                warn!("dedup records: {e}");
            }
        }
        if !self.messages.is_empty() {
            let records = std::mem::take(&mut self.messages);
            self.batches.push_back(StagedBatch { at: Instant::now(), segment: None, records });
        }
        if !self.log.is_dirty() && !self.sled_dirty {
            return Ok(());
        }
        // After a failure, one attempt per RETRY; the changes stay queued meanwhile.
        if self.failed_at.is_some_and(|at| at.elapsed() < RETRY) {
            return Err(StoreError::Io("the commit log is failing; retrying shortly".into()));
        }
        // On an error the changes stay in the log's queue and go out with a later commit.
        let segment = match self.log.commit() {
            Ok(segment) => segment,
            Err(e) => {
                self.failed_at = Some(Instant::now());
                return Err(match segment::is_full(&e) {
                    true => StoreError::Full,
                    false => StoreError::Io(format!("commit log in {}: {e}", self.store.dir().display())),
                });
            }
        };
        self.failed_at = None;
        if let Some(number) = segment {
            for staged in self.batches.iter_mut().rev() {
                if staged.segment.is_some() {
                    break;
                }
                staged.segment = Some(number);
            }
        }
        if self.sled_dirty {
            if !self.sled_has_room() {
                // Stays dirty: checkpointed once there is room again.
                return Err(StoreError::Full);
            }
            self.store.checkpoint()?;
            self.sled_dirty = false;
        }
        Ok(())
    }

    /// Between batches: migrates what is due (up to `PER_COMMIT` batches unless `idle`),
    /// retires segments whose every message is in sled, and when idle with nothing else
    /// to do deletes a step of acknowledged messages. Returns whether it did work.
    pub fn upkeep(&mut self, idle: bool) -> bool {
        let now = Instant::now();
        let retry_due = self.last_retry.is_none_or(|at| now.duration_since(at) >= RETRY);
        if self.log.is_failing() || self.log.is_disk_full() {
            if idle && retry_due {
                self.last_retry = Some(now);
                self.log.refill_spare();
                self.log.check_space();
            }
            let commit_due = self.failed_at.is_none_or(|at| now.duration_since(at) >= RETRY);
            if idle && self.log.is_failing() && commit_due {
                if let Err(e) = self.commit(crate::clock::now_ms()) {
                    warn!("the commit log still fails: {e}");
                }
            }
            // Nothing moves into sled nor is retired while the disk refuses writes.
            return false;
        }
        // The next segment's space, reserved off the path of the batch that will need it.
        self.log.refill_spare();
        self.log.check_space();
        let mut worked = false;
        let mut migrated = 0;
        // Segments at or below this must be emptied early: too many wait.
        let pressed = if self.log.sealed_count() > MAX_SEALED { self.log.oldest_sealed() } else { None };
        while let Some(front) = self.batches.front() {
            let due = now.duration_since(front.at) >= AGE && (idle || migrated < PER_COMMIT);
            let pressed = matches!((pressed, front.segment), (Some(p), Some(s)) if s <= p);
            if !(due || pressed || self.staged_over_cap()) {
                break;
            }
            let staged = self.batches.pop_front().expect("front exists");
            if let Err(e) = self.migrate(&staged.records) {
                // What stays staged is still in the log; sled gets it at the next start.
                error!("migrating staged messages: {e}");
            }
            migrated += 1;
            worked = true;
            if !idle && !pressed && migrated >= PER_COMMIT {
                break;
            }
        }
        // The oldest segment still holding a staged message (or, with none committed,
        // everything sealed so far) bounds what may go.
        let keep_from = self.batches.iter().find_map(|s| s.segment).unwrap_or(u64::MAX);
        let retirable = self.log.oldest_sealed().is_some_and(|oldest| oldest < keep_from);
        if retirable && (idle || pressed.is_some()) && self.sled_has_room() {
            worked = true;
            let retired = self
                .store
                .checkpoint()
                .and_then(|()| self.log.retire_before(keep_from).map_err(|e| StoreError::Io(e.to_string())));
            if let Err(e) = retired {
                error!("retiring commit-log segments: {e}");
            }
        }
        // Deleting acknowledged messages comes last: it is the least urgent.
        if idle && !worked && !self.garbage.is_empty() {
            self.garbage.collect_step(&self.store);
            worked = true;
        }
        worked
    }

    /// How long until the oldest staged batch is due (or a failed commit is retried).
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        if self.is_full() {
            return Some(RETRY);
        }
        self.batches.front().map(|s| (s.at + AGE).saturating_duration_since(now))
    }

    /// At a clean stop: everything into sled, checkpointed, and the log retired. On a
    /// full disk the log stays as it is, and the next start replays it.
    pub fn finish(&mut self) -> StoreResult<()> {
        if !self.sled_has_room() {
            return Err(StoreError::Full);
        }
        while let Some(staged) = self.batches.pop_front() {
            self.migrate(&staged.records)?;
        }
        self.store.checkpoint()?;
        self.log.retire_all().map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Moves staged messages into their owners' sled logs, unless acknowledged meanwhile.
    fn migrate(&self, records: &[(LogId, LogOwner, Seq)]) -> StoreResult<()> {
        for &(id, owner, seq) in records {
            let log = self.store.log(id);
            // Appended before it leaves the table: a reader never finds it in neither.
            let message = self.table.lock().get(id, owner, seq);
            if let Some(message) = message {
                if seq > log.floor(owner)? {
                    log.append(owner, seq, &message)?;
                }
                self.table.lock().remove(id, owner, seq);
            }
        }
        Ok(())
    }

    fn staged_over_cap(&self) -> bool {
        self.table.lock().len() > STAGED_CAP
    }

    /// Up to `limit` messages of the owner's log above `after` (and above its floor), in
    /// order: those in sled, then those staged here.
    pub fn read(&self, id: LogId, owner: LogOwner, after: Seq, limit: usize) -> StoreResult<Vec<(Seq, StoredMessage)>> {
        let log = self.store.log(id);
        let after = after.max(log.floor(owner)?);
        let mut out = log.read(owner, after, limit)?;
        if out.len() < limit {
            let from = out.last().map_or(after, |(seq, _)| *seq).next();
            out.extend(self.table.lock().read(id, owner, from, limit - out.len()));
        }
        Ok(out)
    }

    /// Up to `limit` messages of the owner's log below `below` (and above its floor), newest
    /// first: those staged here and those in sled, merged by sequence (history pages read
    /// backwards, and the newest messages are usually the staged ones).
    pub fn read_back(
        &self,
        id: LogId,
        owner: LogOwner,
        below: Seq,
        limit: usize,
    ) -> StoreResult<Vec<(Seq, StoredMessage)>> {
        let log = self.store.log(id);
        let floor = log.floor(owner)?;
        let mut staged = self.table.lock().read_back(id, owner, below, limit);
        staged.retain(|(seq, _)| *seq > floor);
        let mut staged = staged.into_iter().peekable();
        let mut in_sled = log.read_back(owner, below, limit)?.into_iter().peekable();
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let next = match (staged.peek(), in_sled.peek()) {
                (Some((a, _)), Some((b, _))) if a < b => in_sled.next(),
                (Some((a, _)), Some((b, _))) if a == b => {
                    in_sled.next();
                    staged.next()
                }
                (Some(_), _) => staged.next(),
                (None, _) => in_sled.next(),
            };
            let Some(message) = next else { break };
            out.push(message);
        }
        Ok(out)
    }

    /// Where the owner's log stands, staged messages included.
    pub fn state(&self, id: LogId, owner: LogOwner) -> StoreResult<LogState> {
        let mut state = self.store.log(id).state(owner)?;
        state.last_seq = state.last_seq.max(self.table.lock().last(id, owner));
        Ok(state)
    }

    /// Drops what is staged for a log that is gone (a deleted group).
    pub fn forget(&mut self, id: LogId, owner: LogOwner) {
        self.table.lock().forget(id, owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(dir: &std::path::Path) -> (Store, Partition) {
        let store = Store::open(dir).unwrap();
        let settings = LogSettings { sync: SyncPolicy::Batch, segment_bytes: 1 << 20 };
        (store.clone(), Partition::new(store, 0, settings))
    }

    /// The sequences of a page of messages.
    fn seqs(page: Vec<(Seq, StoredMessage)>) -> Vec<u64> {
        page.into_iter().map(|(seq, _)| seq.get()).collect()
    }

    #[test]
    fn staged_messages_read_after_those_in_sled_and_migrate_unless_acked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut partition) = partition(dir.path());
        let alice = LogOwner::from(UserId(7));
        store.inbox.append(alice, Seq(1), &StoredMessage::example("m1")).unwrap();
        for seq in 2..=4 {
            partition.stage(LogId::Inbox, alice, Seq(seq), &StoredMessage::example(&format!("m{seq}")));
        }
        partition.commit(0).unwrap();
        assert_eq!(seqs(partition.read(LogId::Inbox, alice, Seq::ZERO, 10).unwrap()), [1, 2, 3, 4]);
        assert_eq!(partition.state(LogId::Inbox, alice).unwrap().last_seq, Seq(4));
        assert_eq!(store.stats().unwrap().stored_messages, 4, "staged messages count");

        partition.raise_floor(LogId::Inbox, alice, Seq(1), Seq(2)).unwrap();
        partition.commit(0).unwrap();
        partition.finish().unwrap();
        assert_eq!(seqs(store.inbox.read(alice, Seq::ZERO, 10).unwrap()), [3, 4]);
        assert_eq!(store.staged_len(), 0);
    }

    #[test]
    fn reading_back_merges_sled_and_staged_newest_first_above_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut partition) = partition(dir.path());
        let alice = LogOwner::from(UserId(7));
        for seq in 1..=3 {
            store.inbox.append(alice, Seq(seq), &StoredMessage::example(&format!("m{seq}"))).unwrap();
        }
        for seq in 4..=6 {
            partition.stage(LogId::Inbox, alice, Seq(seq), &StoredMessage::example(&format!("m{seq}")));
        }
        partition.commit(0).unwrap();
        assert_eq!(seqs(partition.read_back(LogId::Inbox, alice, Seq(7), 10).unwrap()), [6, 5, 4, 3, 2, 1]);
        assert_eq!(seqs(partition.read_back(LogId::Inbox, alice, Seq(5), 3).unwrap()), [4, 3, 2]);
        assert_eq!(seqs(partition.read_back(LogId::Inbox, alice, Seq(1), 3).unwrap()), Vec::<u64>::new());
        partition.raise_floor(LogId::Inbox, alice, Seq(1), Seq(2)).unwrap();
        assert_eq!(seqs(partition.read_back(LogId::Inbox, alice, Seq(7), 10).unwrap()), [6, 5, 4, 3]);
    }

    #[test]
    fn a_rewrite_replaces_the_message_where_it_is_and_survives_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let alice = LogOwner::from(UserId(7));
        {
            let (store, mut partition) = partition(dir.path());
            store.inbox.append(alice, Seq(1), &StoredMessage::example("in sled")).unwrap();
            partition.stage(LogId::Inbox, alice, Seq(2), &StoredMessage::example("staged"));
            partition.commit(0).unwrap();
            partition.rewrite(LogId::Inbox, alice, Seq(1), &StoredMessage::example("gone 1")).unwrap();
            partition.rewrite(LogId::Inbox, alice, Seq(2), &StoredMessage::example("gone 2")).unwrap();
            partition.commit(0).unwrap();
            let texts: Vec<_> = partition
                .read(LogId::Inbox, alice, Seq::ZERO, 10)
                .unwrap()
                .into_iter()
                .map(|(_, m)| String::from_utf8(m.content.body).unwrap())
                .collect();
            assert_eq!(texts, ["gone 1", "gone 2"]);
            // No clean stop: the next open replays the commit log over what sled holds.
        }
        let store = Store::open(dir.path()).unwrap();
        let texts: Vec<_> = store
            .inbox
            .read(alice, Seq::ZERO, 10)
            .unwrap()
            .into_iter()
            .map(|(_, m)| String::from_utf8(m.content.body).unwrap())
            .collect();
        assert_eq!(texts, ["gone 1", "gone 2"]);
    }

    #[test]
    fn acknowledged_messages_in_sled_are_deleted_when_the_worker_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut partition) = partition(dir.path());
        let alice = LogOwner::from(UserId(7));
        for seq in 1..=3 {
            store.inbox.append(alice, Seq(seq), &StoredMessage::example(&format!("m{seq}"))).unwrap();
        }
        partition.raise_floor(LogId::Inbox, alice, Seq(1), Seq(2)).unwrap();
        partition.commit(0).unwrap();
        assert!(!partition.upkeep(false), "deletion waits for an idle worker");
        let mut steps = 0;
        while partition.upkeep(true) {
            steps += 1;
            assert!(steps < 100, "upkeep keeps finding work");
        }
        assert!(steps > 0, "the idle worker deleted something");
        assert_eq!(store.inbox.collect_all().unwrap(), 0, "nothing below the floor is left in sled");
        assert_eq!(seqs(store.inbox.read(alice, Seq::ZERO, 10).unwrap()), [3]);
    }

    #[test]
    fn a_log_that_keeps_failing_refuses_new_messages_then_acks_beyond_its_memory_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut partition) = partition(dir.path());
        store.inject_flush_failures(true);
        let big = StoredMessage::example(&"x".repeat(32 * 1024));
        let bob = UserId(1);
        let inbox = LogOwner::from(bob);
        partition.stage(LogId::Inbox, inbox, Seq(1), &big);
        assert!(partition.commit(0).is_err());
        assert!(partition.is_full(), "new messages are refused once a commit failed");
        // Acks still go in, until what waits to be written again passes the bound.
        partition.raise_floor(LogId::Inbox, inbox, Seq(1), Seq(1)).unwrap();
        for seq in 2..=FAILED_CAP as u64 / (32 * 1024) + 2 {
            partition.stage(LogId::Inbox, inbox, Seq(seq), &big);
            assert!(partition.commit(0).is_err());
        }
        assert!(matches!(partition.raise_floor(LogId::Inbox, inbox, Seq(2), Seq(2)), Err(StoreError::Full)));
        assert!(matches!(partition.put_token(bob, &[0; 32], 1), Err(StoreError::Full)));
        // Tried again only once a second, not at every batch.
        store.inject_flush_failures(false);
        assert!(partition.commit(0).is_err());
        // The disk takes writes again: everything kept goes out in one commit.
        std::thread::sleep(RETRY);
        partition.commit(0).unwrap();
        assert!(!partition.is_full());
        partition.raise_floor(LogId::Inbox, inbox, Seq(2), Seq(2)).unwrap();
    }
}
