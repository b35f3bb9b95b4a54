//! The commit log: how a worker batch's changes become durable with one `fdatasync`.
//!
//! Each worker partition appends to its own segments in `DATA_DIR/commitlog/` (nothing is
//! shared between workers on the message path). A batch's changes ([`Change`]) are one
//! record, written with one `write` and made durable with one `fdatasync` before any
//! receipt or push of the batch leaves the worker (group commit), or, with
//! [`SyncPolicy::None`], left to the OS to write back.
//!
//! The log only has to hold a change until sled's copy of it is durable: a segment is
//! retired (deleted) once every message in it has been migrated into sled or acknowledged
//! and sled has then been checkpointed with a real fsync of its files
//! ([`crate::store::Store::checkpoint`]); the partition decides when ([`crate::store::Partition`]).
//!
//! At start, before anything reads the store, [`recover`] replays every segment into sled,
//! checkpoints it, and deletes the segments. A record cut short or damaged ends its
//! segment: everything before it is kept, and what was cut is logged. Since a batch is one
//! record with one checksum, a batch is replayed whole or not at all.

pub mod change;
pub mod record;
pub mod segment;

pub use change::{Applied, Change, ChangeRef, DeviceChange};
pub use record::SegmentId;

use super::{DurabilityHook, Durable};
use crate::metrics::LogStats;
use log::{info, warn};
use segment::Segment;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Store, StoreError, StoreResult};

/// The directory under the data directory that holds the segments.
pub const DIR: &str = "commitlog";

/// When a batch counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After `fdatasync` of the batch's record returns: a receipt survives a power cut.
    Batch,
    /// After the `write`: survives a crash of the process, not of the machine; the OS
    /// writes the data back within its own interval (about 30 s on Linux by default).
    None,
}

/// One partition's log writer.
pub struct CommitLog {
    dir: PathBuf,
    run: u64,
    partition: u32,
    segment_bytes: u64,
    sync: SyncPolicy,
    active: Option<Segment>,
    /// Full (or abandoned) segments not yet retired, oldest first.
    sealed: VecDeque<(SegmentId, PathBuf, u64)>,
    next_number: u64,
    /// This batch's changes, encoded.
    payload: Vec<u8>,
    changes: u64,
    /// Payloads of batches whose commit failed, written again (first) by the next commit:
    /// after a failed write or sync nothing is known about what reached the disk, so
    /// nothing is assumed (the next sync is of a new segment).
    failed: Vec<(Vec<u8>, u64)>,
    stats: Arc<LogStats>,
    /// When set, every sync fails (after the write): the failed-sync path, for tests.
    fail_syncs: Arc<AtomicBool>,
    hook: Option<DurabilityHook>,
    /// The next segment's space, reserved ahead.
    spare: Option<PathBuf>,
    /// No spare could be reserved: the disk is full (see [`CommitLog::refill_spare`]).
    disk_full: bool,
}

impl CommitLog {
    pub fn new(
        dir: PathBuf,
        run: u64,
        partition: u32,
        segment_bytes: u64,
        sync: SyncPolicy,
        stats: Arc<LogStats>,
        fail_syncs: Arc<AtomicBool>,
    ) -> Self {
        CommitLog {
            dir,
            run,
            partition,
            segment_bytes: segment_bytes.max(64 * 1024),
            sync,
            active: None,
            sealed: VecDeque::new(),
            next_number: 1,
            payload: Vec::new(),
            changes: 0,
            failed: Vec::new(),
            stats,
            fail_syncs,
            hook: None,
            spare: None,
            disk_full: false,
        }
    }

    /// Reserves the next segment's space if it is not reserved yet; on a full disk the
    /// log is marked full (still writable up to the end of its current segment, and
    /// into a spare made earlier). Returns whether a spare is ready.
    pub fn refill_spare(&mut self) -> bool {
        if self.spare.is_some() {
            return true;
        }
        let made = std::fs::create_dir_all(&self.dir)
            .and_then(|()| segment::create_spare(&self.dir, self.partition, self.segment_bytes));
        match made {
            Ok(path) => {
                self.stats.bytes_on_disk.fetch_add(self.segment_bytes as i64, Ordering::Relaxed);
                self.spare = Some(path);
            }
            Err(e) => {
                if !self.disk_full {
                    warn!(
                        "commit log {}: cannot reserve the next segment ({e}); refusing new messages",
                        self.partition
                    );
                }
                self.disk_full = true;
            }
        }
        self.spare.is_some()
    }

    /// Marks the log full while the disk has no room for a segment beyond the spare, so
    /// that new messages stop while the current segment and the spare are still free for
    /// acks and logins, and a restart on the full disk finds the spare to write into.
    pub fn check_space(&mut self) {
        let Ok(free) = segment::free_space(&self.dir) else { return };
        let full = free < self.segment_bytes || self.spare.is_none();
        if full && !self.disk_full {
            warn!("commit log {}: {free} bytes free, less than a segment; refusing new messages", self.partition);
        } else if !full && self.disk_full {
            info!("commit log {}: room for segments again", self.partition);
        }
        self.disk_full = full;
    }

    /// Whether the disk had no room for the next segment: new messages are refused until
    /// it has (acknowledgements and logins still fit in what is reserved).
    pub fn is_disk_full(&self) -> bool {
        self.disk_full
    }

    /// Reports every sync and retirement to `hook`.
    pub fn with_hook(mut self, hook: Option<DurabilityHook>) -> Self {
        self.hook = hook;
        self
    }

    /// Adds a change to the batch being built.
    pub fn add(&mut self, change: &ChangeRef<'_>) {
        change::encode_into(change, &mut self.payload);
        self.changes += 1;
    }

    /// Whether anything waits to be committed.
    pub fn is_dirty(&self) -> bool {
        !self.payload.is_empty() || !self.failed.is_empty()
    }

    /// Bytes of changes waiting to be written: this batch's, and those of failed commits.
    pub fn pending_bytes(&self) -> usize {
        self.payload.len() + self.failed.iter().map(|(p, _)| p.len()).sum::<usize>()
    }

    /// Whether an earlier commit failed and its changes still wait to be written.
    pub fn is_failing(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Makes the batch durable (per the sync policy); returns the number of the segment
    /// that holds it. On an error nothing of the batch may be acknowledged; its changes
    /// are kept and written again by the next commit, into a new segment.
    pub fn commit(&mut self) -> io::Result<Option<u64>> {
        if !self.payload.is_empty() {
            let payload = std::mem::take(&mut self.payload);
            self.failed.push((payload, std::mem::take(&mut self.changes)));
        }
        if self.failed.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let result = self.write_pending();
        match result {
            Ok(number) => {
                let changes: u64 = self.failed.drain(..).map(|(_, n)| n).sum();
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats.changes.fetch_add(changes, Ordering::Relaxed);
                self.stats.commit_latency.record(started.elapsed());
                Ok(Some(number))
            }
            Err(e) => {
                // The segment's state on disk is unknown now: never write to it again.
                self.seal_active();
                Err(e)
            }
        }
    }

    fn write_pending(&mut self) -> io::Result<u64> {
        let needed: u64 = self.failed.iter().map(|(p, _)| record::framed_len(p.len()) as u64).sum();
        if self.active.as_ref().is_none_or(|s| s.room() < needed) {
            self.seal_active();
            self.open_segment(needed)?;
        }
        let segment = self.active.as_mut().expect("a segment was just opened");
        let mut bytes = Vec::with_capacity(needed as usize);
        for (payload, _) in &self.failed {
            record::encode_into(segment.id, payload, &mut bytes);
        }
        segment.append(&bytes)?;
        if self.fail_syncs.load(Ordering::Relaxed) {
            return Err(io::Error::other("sync failure injected"));
        }
        if self.sync == SyncPolicy::Batch {
            segment.sync()?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            DurabilityHook::report(&self.hook, Durable::LogSynced { path: &segment.path, upto: segment.offset });
        }
        Ok(segment.id.number)
    }

    fn open_segment(&mut self, needed: u64) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let id = SegmentId { run: self.run, partition: self.partition, number: self.next_number };
        let capacity = self.segment_bytes.max(needed + record::HEADER_LEN as u64);
        let segment = match self.spare.take() {
            Some(spare) if capacity == self.segment_bytes => {
                match Segment::from_spare(&self.dir, &spare, id, capacity) {
                    Ok(segment) => segment,
                    Err(e) => {
                        self.stats.bytes_on_disk.fetch_sub(self.segment_bytes as i64, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            spare => {
                self.spare = spare;
                let segment = Segment::create(&self.dir, id, capacity)?;
                self.stats.bytes_on_disk.fetch_add(capacity as i64, Ordering::Relaxed);
                segment
            }
        };
        self.next_number += 1;
        self.active = Some(segment);
        Ok(())
    }

    fn seal_active(&mut self) {
        if let Some(segment) = self.active.take() {
            self.sealed.push_back((segment.id, segment.path, segment.capacity));
        }
    }

    /// The number of the oldest full segment not yet retired.
    pub fn oldest_sealed(&self) -> Option<u64> {
        self.sealed.front().map(|(id, _, _)| id.number)
    }

    /// How many full segments wait for retirement.
    pub fn sealed_count(&self) -> usize {
        self.sealed.len()
    }

    /// Deletes the sealed segments numbered below `before`: the caller has made sure
    /// sled holds everything in them durably.
    pub fn retire_before(&mut self, before: u64) -> io::Result<()> {
        let mut removed = Vec::new();
        while let Some((id, path, capacity)) = self.sealed.front() {
            if id.number >= before {
                break;
            }
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.stats.bytes_on_disk.fetch_sub(*capacity as i64, Ordering::Relaxed);
            removed.push(path.clone());
            self.sealed.pop_front();
        }
        if !removed.is_empty() {
            segment::sync_dir(&self.dir)?;
        }
        for path in &removed {
            DurabilityHook::report(&self.hook, Durable::LogRemoved { path });
        }
        Ok(())
    }
}

impl CommitLog {
    /// Retires every segment, the active one too (a clean stop, after a checkpoint).
    pub fn retire_all(&mut self) -> io::Result<()> {
        self.seal_active();
        self.retire_before(u64::MAX)
    }
}

/// What recovery found and did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The run number for this start (one more than any found).
    pub run: u64,
    pub segments: usize,
    pub records: u64,
    pub applied: Applied,
    /// One line per segment that ended in a cut record or could not be read.
    pub cuts: Vec<String>,
    /// The segments were replayed but kept (no room for the checkpoint that would let
    /// them go): they are replayed again at the next start.
    pub kept: bool,
}

/// Replays every segment into sled (oldest first), checkpoints sled, deletes the segments.
pub fn recover(store: &Store, data_dir: &Path) -> StoreResult<Recovered> {
    let dir = data_dir.join(DIR);
    let io_error = |what: &str, e: io::Error| StoreError::Io(format!("{what} {}: {e}", dir.display()));
    let segments = segment::list(&dir).map_err(|e| io_error("listing", e))?;
    let mut recovered = Recovered { segments: segments.len(), ..Recovered::default() };
    for (id, path) in &segments {
        recovered.run = recovered.run.max(id.run);
        let bytes = std::fs::read(path).map_err(|e| io_error("reading a segment in", e))?;
        replay_segment(store, *id, path, &bytes, &mut recovered)?;
    }
    recovered.run += 1;
    if !segments.is_empty() {
        // On a full disk the segments stay (sled must not be flushed without room): they
        // are replayed again at the next start, and this run writes segments of its own.
        let checkpointed = match store.has_room_for_checkpoint() {
            true => store.checkpoint(),
            false => Err(StoreError::Full),
        };
        if let Err(e) = checkpointed {
            warn!("commit log: replayed, but kept for the next start ({e})");
            recovered.kept = true;
            return Ok(recovered);
        }
        for (_, path) in &segments {
            std::fs::remove_file(path).map_err(|e| io_error("removing a replayed segment from", e))?;
        }
        segment::sync_dir(&dir).map_err(|e| io_error("syncing", e))?;
        info!(
            "commit log: replayed {} records from {} segments ({} messages, {} floors, {} group acks, {} dedup records, \
             {} read marks and receipts)",
            recovered.records,
            recovered.segments,
            recovered.applied.messages,
            recovered.applied.floors,
            recovered.applied.acks,
            recovered.applied.dedup,
            recovered.applied.read
        );
    }
    Ok(recovered)
}

fn replay_segment(store: &Store, id: SegmentId, path: &Path, bytes: &[u8], out: &mut Recovered) -> StoreResult<()> {
    let name = path.display();
    match record::read_header(bytes) {
        Some(header) if header == id => {}
        // Created, but its header never reached the disk: nothing in it was acknowledged.
        _ if bytes.iter().all(|b| *b == 0) => return Ok(()),
        _ => {
            let cut = format!("{name}: header damaged or not this segment's; its {} bytes were skipped", bytes.len());
            warn!("commit log: {cut}");
            out.cuts.push(cut);
            return Ok(());
        }
    }
    let body = &bytes[record::HEADER_LEN..];
    let mut scan = record::Scan::new(id, body);
    for payload in scan.by_ref() {
        for change in change::decode(payload)? {
            store.apply(change, &mut out.applied)?;
        }
        out.records += 1;
    }
    let end = scan.end().unwrap_or(record::End::Clean);
    if end != record::End::Clean {
        let offset = record::HEADER_LEN + scan.offset();
        let what = if scan.data_after() { "data follows it, which was not replayed" } else { "only zeroes follow" };
        let cut = format!("{name}: stopped at byte {offset} ({end:?}); {what}");
        warn!("commit log: {cut}");
        out.cuts.push(cut);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Seq;
    use crate::store::{LogId, LogOwner, LogState, StoredMessage};

    /// The inbox of the user these tests write for.
    const ALICE: LogOwner = LogOwner(7);

    fn message(text: &str) -> StoredMessage {
        StoredMessage::example(text)
    }

    fn log(dir: &Path, run: u64, segment_bytes: u64) -> CommitLog {
        CommitLog::new(dir.join(DIR), run, 0, segment_bytes, SyncPolicy::Batch, Arc::default(), Arc::default())
    }

    #[test]
    fn committed_batches_replay_into_sled_and_the_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        {
            let _store = Store::open(dir.path()).unwrap();
            // Small segments: the batches spread over several.
            let mut log = log(dir.path(), 1, 64 * 1024);
            for seq in 1..=300 {
                let m = message(&"x".repeat(500));
                log.add(&ChangeRef::Message { log: LogId::Inbox, owner: ALICE, seq: Seq(seq), message: &m });
                if seq % 3 == 0 {
                    log.commit().unwrap();
                }
            }
            log.add(&ChangeRef::Floor { log: LogId::Inbox, owner: ALICE, floor: Seq(100) });
            log.commit().unwrap();
            assert!(log.sealed_count() >= 2);
            // The store is dropped without a flush: sled has none of it.
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.inbox.state(ALICE).unwrap(), LogState { floor: Seq(100), last_seq: Seq(300) });
        assert_eq!(store.inbox.read(ALICE, Seq::ZERO, 1000).unwrap().len(), 200);
        assert!(segment::list(&dir.path().join(DIR)).unwrap().is_empty(), "replayed segments are deleted");
    }

    #[test]
    fn a_failed_sync_is_never_taken_for_success_and_its_batch_goes_out_again_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        {
            let _store = Store::open(dir.path()).unwrap();
            let mut log =
                CommitLog::new(dir.path().join(DIR), 1, 0, 1 << 20, SyncPolicy::Batch, Arc::default(), fail.clone());
            let m = message("m");
            log.add(&ChangeRef::Message { log: LogId::Inbox, owner: ALICE, seq: Seq(1), message: &m });
            assert_eq!(log.commit().unwrap(), Some(1));
            fail.store(true, Ordering::Relaxed);
            log.add(&ChangeRef::Message { log: LogId::Inbox, owner: ALICE, seq: Seq(2), message: &m });
            assert!(log.commit().is_err());
            assert!(log.is_failing());
            // Still failing: the batch stays queued, a new one joins it.
            log.add(&ChangeRef::Message { log: LogId::Inbox, owner: ALICE, seq: Seq(3), message: &m });
            assert!(log.commit().is_err());
            fail.store(false, Ordering::Relaxed);
            // Each failure abandoned its segment; the retry writes both batches anew.
            assert_eq!(log.commit().unwrap(), Some(3));
            assert!(!log.is_failing());
            assert_eq!(log.sealed_count(), 2);
        }
        let store = Store::open(dir.path()).unwrap();
        let seqs: Vec<u64> = store.inbox.read(ALICE, Seq::ZERO, 10).unwrap().iter().map(|(s, _)| s.get()).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }

    #[test]
    fn an_uncommitted_batch_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let _store = Store::open(dir.path()).unwrap();
            let mut log = log(dir.path(), 1, 1 << 20);
            let m = message("kept");
            log.add(&ChangeRef::Message { log: LogId::Inbox, owner: ALICE, seq: Seq(1), message: &m });
            log.commit().unwrap();
            log.add(&ChangeRef::Message { log: LogId::Inbox, owner: ALICE, seq: Seq(2), message: &m });
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.inbox.state(ALICE).unwrap().last_seq, Seq(1));
    }
}
