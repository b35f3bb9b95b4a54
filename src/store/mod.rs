//! Durable state: sled for accounts, groups, cursors, tokens and messages that wait long,
//! and a commit log per worker for what changes on the message path.
//!
//! A worker's writes go through its [`Partition`]: message-path changes (new messages,
//! acks, dedup records) are appended to the partition's commit log and made durable with
//! one `fdatasync` per batch (group commit); the rest (accounts, groups, tokens) are sled
//! writes made durable by a [`Store::checkpoint`]: sled's flush followed by a real fsync of
//! its files, since sled's own flush does not reach the disk's cache. Only then does a
//! batch release its receipts: "a receipt means the message survives a power cut".
//!
//! Trees and key layout (integers big-endian so byte order is numeric order):
//! - `accounts`:    `username` → [`Account`]
//! - `inbox`:       a [`SeqLog`] per user id; the floor is at most the lowest acknowledged
//!   sequence of the user's devices (`device_acks`), lower while history keeps
//!   acknowledged messages
//! - `group_log`:   a [`SeqLog`] per group id; the floor is at most the lowest ack of all
//!   members (history keeps what is younger than its window)
//! - `groups`:      `group id` → [`GroupRecord`] (name, flags, members and roles)
//! - `group_acks`:  `group id ++ username` → the member's acknowledged sequence (u64)
//! - `memberships`: `username ++ 0x00 ++ group id` → empty (a user's groups)
//! - `dedup`:       one value per worker batch of dedup records (see [`dedup`])
//! - `services`:    `service name` → [`ServiceRecord`]
//! - `tokens`:      `uid ++ BLAKE2s(token)` → expiry in ms since the epoch (u64)
//! - `journal`:     new messages, one value per worker batch, until migrated (see [`journal`])
//! - `push_prefs`, `push_gateways`, `push_queue`: push notifications (see [`push`])
//! - `apps`:        `app name` → [`AppRecord`] (see [`apps`])
//! - `meta`:        `checkpoint` → the checkpoint serial (see [`marker`]); `apps_format` →
//!   u64, 1 once every stored user and service name is qualified `app/name` (see
//!   [`apps_migration`]); absent in a directory of an earlier version
//!
//! - `support_log`: a [`SeqLog`] per support conversation id; the floor is the lowest ack
//!   of the readers who hold the conversation (see `worker/support.rs`)
//! - `shops`, `staff_of`, `support`, `support_of`, `shop_support`, `support_acks`:
//!   shops and their conversations (see [`support`])
//! - `devices`, `device_acks`: users' devices and devices' positions (see [`devices`]); a
//!   token of a named device has the device's id after its expiry
//! - `read_marks`, `read_prefs`, `read_receipts`: users' read state (see [`read_marks`])
//! - `cleared`: users' cleared marks (see [`history`])
//!
//! Every user, service and shop name in a key or a record (above, and inside messages,
//! group events, mutes and push events) is qualified with its app: `app/name` (see
//! [`crate::apps`]).

mod across;
mod apps;
mod apps_migration;
pub mod commitlog;
mod dedup;
mod devices;
mod garbage;
mod groups;
mod history;
mod hook;
mod journal;
mod marker;
mod node;
mod partition;
pub mod pidfile;
mod push;
mod read_marks;
mod records;
mod reserve;
mod seqlog;
mod staged;
mod support;
mod verify;

pub use apps::AppRecord;
pub use commitlog::{DeviceChange, SyncPolicy};
pub use dedup::DedupRecord;
pub use devices::DeviceRecord;
pub use hook::{DurabilityHook, Durable};
pub use journal::{JournalRecord, LogId};
pub use partition::{LogSettings, Partition};
pub use push::{Mute, PushDevice, PushMessage, PushPrefs, PushQueueState, PushRecord};
pub use read_marks::{Held, ReadEntry, ReadPrefs};
pub use records::{
    Account, Addressee, DedupEntry, GroupRecord, MemberRecord, ServiceRecord, ShopRecord, StaffRecord, StoredMessage,
    SupportRecord,
};
pub use seqlog::{LogOwner, LogState, SeqLog};
pub use staged::Staged;
pub use verify::Report;

use crate::metrics::LogStats;
use crate::protocol::{Seq, UserId};
use log::info;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    #[error("flush failed: {0}")]
    Flush(String),
    #[error("{0}")]
    Io(String),
    /// The disk has no room for a write that needs it.
    #[error("the disk is full")]
    Full,
    /// The data directory is damaged in a way the store can tell; the text says what to do.
    #[error("{0}")]
    Damaged(String),
    /// The disk has no room for a step that must not be skipped (a one-time migration);
    /// the text says what to do.
    #[error("{0}")]
    NoRoom(String),
    /// Another process (a running daemon) holds the directory's lock.
    #[error("confabd is already running on {dir}{}; stop it first", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: String, pid: Option<u32> },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Counts for operators (administration commands, statistics, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub accounts: u64,
    pub groups: u64,
    /// Messages some reader has not acknowledged: those history keeps after every reader
    /// acknowledged them are not counted.
    pub stored_messages: u64,
    pub size_on_disk: u64,
}

/// A handle on the data directory; cheap to clone (sled trees are reference counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    accounts: sled::Tree,
    dedup: sled::Tree,
    tokens: sled::Tree,
    groups: sled::Tree,
    group_acks: sled::Tree,
    memberships: sled::Tree,
    services: sled::Tree,
    apps: sled::Tree,
    journal: sled::Tree,
    push: push::PushTrees,
    support: support::SupportTrees,
    devices: devices::DeviceTrees,
    read: read_marks::ReadTrees,
    history: history::HistoryTrees,
    /// The checkpoint serial (see [`marker`]) and the format of names (see [`apps_migration`]).
    meta: sled::Tree,
    checkpoints: Arc<Mutex<Checkpoints>>,
    /// Every partition's staged messages, for statistics.
    staged: Arc<Mutex<Vec<Staged>>>,
    /// What replaying the commit log cut at open (reported by `storage --verify`).
    pub log_cuts: Vec<String>,
    /// Users' inboxes.
    pub inbox: SeqLog,
    /// Groups' shared histories.
    pub group_log: SeqLog,
    /// Support conversations' histories.
    pub support_log: SeqLog,
    /// When set, every checkpoint and commit fails: the storage-error path, testable
    /// without filling a disk.
    pub(crate) fail_flushes: Arc<AtomicBool>,
    /// The cluster node every new id carries (0: not a cluster node; see `node`).
    id_node: Arc<std::sync::atomic::AtomicU8>,
    dir: PathBuf,
    /// This run's number for commit-log segments (one more than any found at start).
    log_run: u64,
    /// Every partition's commit-log counters.
    pub log_stats: Arc<LogStats>,
    /// Told of every durable step (tests of power cuts).
    hook: Option<DurabilityHook>,
}

impl Store {
    /// Opens (or creates) the store with sled's default cache. Fails if another process
    /// holds the directory.
    pub fn open(dir: &Path) -> StoreResult<Store> {
        Store::open_with_cache(dir, 1024 * 1024 * 1024)
    }

    /// Opens (or creates) the store with a page cache of at most `cache_bytes`, and
    /// replays what the commit log holds from the last run (see [`commitlog::recover`]).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> StoreResult<Store> {
        // No background flushing: every durable write is flushed by the batch that made it
        // (group commit), and a background flush only competes with those for the disk.
        // What is written without a flush (migrations, deletions) is redone at start.
        reserve::release_if_full(dir, SLED_MARGIN);
        let config = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None);
        // sled panics on some kinds of damage; an operator needs an error that names the
        // directory, not a backtrace.
        let db = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_when_unlocked(&config)))
            .map_err(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                StoreError::Damaged(format!(
                    "the database in {} is damaged (the storage engine stopped with: {what}); restore the \
                 directory from a backup",
                    dir.display()
                ))
            })?
            .map_err(|e| match e {
                sled::Error::Io(io) if is_lock_error(&io) => {
                    StoreError::Locked { dir: dir.display().to_string(), pid: pidfile::read(dir) }
                }
                e => StoreError::Sled(e),
            })?;
        let meta = db.open_tree("meta")?;
        let serial = check_marker(dir, &meta)?;

        let mut store = Store {
            accounts: db.open_tree("accounts")?,
            dedup: db.open_tree("dedup_batches")?,
            tokens: db.open_tree("tokens")?,
            groups: db.open_tree("groups")?,
            group_acks: db.open_tree("group_acks")?,
            memberships: db.open_tree("memberships")?,
            services: db.open_tree("services")?,
            apps: db.open_tree("apps")?,
            journal: db.open_tree("journal")?,
            push: push::PushTrees::open(&db)?,
            support: support::SupportTrees::open(&db)?,
            devices: devices::DeviceTrees::open(&db)?,
            read: read_marks::ReadTrees::open(&db)?,
            history: history::HistoryTrees::open(&db)?,
            meta,
            checkpoints: Arc::new(Mutex::new(Checkpoints { serial, file: None })),
            log_cuts: Vec::new(),
            staged: Arc::default(),
            inbox: SeqLog::new(db.open_tree("inbox")?, "inbox"),
            group_log: SeqLog::new(db.open_tree("group_log")?, "group_log"),
            support_log: SeqLog::new(db.open_tree("support_log")?, "support_log"),
            fail_flushes: Arc::default(),
            id_node: Arc::default(),
            dir: dir.to_path_buf(),
            log_run: 0,
            log_stats: Arc::default(),
            hook: None,
            db,
        };
        // A cluster node's directory is that node's for good (see `node`): whatever opens
        // it, the daemon or an administration command while it is stopped, makes ids that
        // carry the node, never bare counters that could equal another node's ids.
        if let Some(node) = store.cluster_node()? {
            store.id_node.store(node, std::sync::atomic::Ordering::Relaxed);
        }
        // Journal values of releases before the commit log, then the commit log itself:
        // both before anything reads the logs.
        match store.journal_recover()? {
            0 => {}
            n => info!("recovered {n} journaled messages"),
        }
        let recovered = commitlog::recover(&store, dir)?;
        store.log_run = recovered.run;
        store.log_cuts = recovered.cuts;
        // After the replay (the commit log of an earlier version holds its names too),
        // before anything reads a name.
        apps_migration::migrate_if_needed(&store, recovered.kept)?;
        reserve::restore(dir, SLED_MARGIN);
        Ok(store)
    }

    /// Makes every sled write so far durable: sled's flush writes its buffers (with
    /// `sync_file_range`, which makes neither the drive's cache nor the file's size
    /// durable), then an fsync of each of its files and of the directory does.
    pub fn checkpoint(&self) -> StoreResult<()> {
        self.check_failure()?;
        // One at a time: the serial in sled and in the marker file must rise together.
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
        let serial = checkpoints.serial + 1;
        self.meta.insert(marker::KEY, &serial.to_be_bytes())?;
        self.db.flush()?;
        let flush_error = |e: std::io::Error| StoreError::Flush(format!("fsync of {}: {e}", self.dir.display()));
        fsync_tree(&self.dir).map_err(flush_error)?;
        let file = match checkpoints.file.take() {
            Some(file) => file,
            None => marker::open(&self.dir).map_err(flush_error)?,
        };
        marker::write(&file, serial).map_err(flush_error)?;
        checkpoints.file = Some(file);
        checkpoints.serial = serial;
        DurabilityHook::report(&self.hook, Durable::Checkpointed { dir: &self.dir });
        Ok(())
    }

    /// Whether there is enough free space for a checkpoint: sled writes up to its I/O
    /// buffer at a flush, and a write that fails for want of space leaves it failing every
    /// later write until a restart, so a checkpoint waits rather than risk it.
    pub fn has_room_for_checkpoint(&self) -> bool {
        commitlog::segment::free_space(&self.dir).map_or(true, |free| free >= SLED_MARGIN)
    }

    /// Reports every durable step from now on to `hook` (set before the store is shared).
    pub fn set_durability_hook(&mut self, hook: Option<DurabilityHook>) {
        self.hook = hook;
    }

    pub fn durability_hook(&self) -> Option<DurabilityHook> {
        self.hook.clone()
    }

    /// The failure injected for tests, if any.
    fn check_failure(&self) -> StoreResult<()> {
        if self.fail_flushes.load(Ordering::Relaxed) {
            return Err(StoreError::Flush("failure injected".into()));
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run number for this start's commit-log segments.
    pub fn log_run(&self) -> u64 {
        self.log_run
    }

    /// Makes every flush fail until turned off again (fault-injection for tests of what
    /// the server does when the disk fails or fills).
    pub fn inject_flush_failures(&self, on: bool) {
        self.fail_flushes.store(on, Ordering::Relaxed);
    }

    /// A fresh id, unique across restarts (sled persists the counter). One counter for
    /// user, service, group and message ids alike (so a user id and a group id never
    /// collide: see [`LogOwner`]); the caller says which it is making.
    pub fn next_id(&self) -> StoreResult<u64> {
        // generate_id starts at 0; 0 is reserved on the wire for "none".
        let counter = self.db.generate_id()? + 1;
        Ok(match self.id_node.load(Ordering::Relaxed) {
            0 => counter,
            node => crate::cluster::node_id(counter, node),
        })
    }

    pub fn account(&self, username: &str) -> StoreResult<Option<Account>> {
        match self.accounts.get(username.as_bytes())? {
            Some(raw) => Ok(Some(decode("accounts", &raw)?)),
            None => Ok(None),
        }
    }

    /// Inserts the account unless the name is taken; returns whether it was created.
    pub fn create_account(&self, username: &str, account: &Account) -> StoreResult<bool> {
        let value = encode(account);
        let created = self.accounts.compare_and_swap(username.as_bytes(), None as Option<&[u8]>, Some(value))?.is_ok();
        Ok(created)
    }

    pub fn put_account(&self, username: &str, account: &Account) -> StoreResult<()> {
        self.accounts.insert(username.as_bytes(), encode(account))?;
        Ok(())
    }

    /// Every account name, in order (for administration).
    pub fn usernames(&self) -> StoreResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.accounts.iter() {
            let (key, _) = entry?;
            names.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(names)
    }

    pub fn service(&self, name: &str) -> StoreResult<Option<ServiceRecord>> {
        match self.services.get(name.as_bytes())? {
            Some(raw) => Ok(Some(decode("services", &raw)?)),
            None => Ok(None),
        }
    }

    pub fn put_service(&self, name: &str, record: &ServiceRecord) -> StoreResult<()> {
        self.services.insert(name.as_bytes(), encode(record))?;
        Ok(())
    }

    /// Returns whether there was such a service.
    pub fn remove_service(&self, name: &str) -> StoreResult<bool> {
        self.set_push_gateway(name, false)?;
        Ok(self.services.remove(name.as_bytes())?.is_some())
    }

    pub fn service_names(&self) -> StoreResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.services.iter() {
            names.push(String::from_utf8_lossy(&entry?.0).into_owned());
        }
        Ok(names)
    }

    /// Removes the account and everything only it owned: inbox, tokens, devices, push
    /// devices, read state. Group memberships are the caller's to settle first (they involve other
    /// members).
    pub fn delete_account(&self, username: &str, uid: UserId) -> StoreResult<()> {
        self.inbox.remove_all(uid.into())?;
        self.remove_history_of(uid)?;
        self.revoke_tokens(uid)?;
        self.remove_devices(uid)?;
        self.put_push_prefs(uid, &PushPrefs::default())?;
        self.forget_read_state(uid)?;
        self.accounts.remove(username.as_bytes())?;
        Ok(())
    }

    /// Remembers a resume token (by its digest) until `expires_ms`.
    pub fn put_token(&self, uid: UserId, digest: &[u8; 32], expires_ms: u64) -> StoreResult<()> {
        self.tokens.insert(token_key(uid, digest), &expires_ms.to_be_bytes())?;
        Ok(())
    }

    /// Whether the token is known and unexpired, whatever its device; an expired one is
    /// removed (see [`Store::token_device`]).
    pub fn token_valid(&self, uid: UserId, digest: &[u8; 32], now_ms: u64) -> StoreResult<bool> {
        Ok(self.token_device(uid, digest, now_ms)?.is_some())
    }

    /// Revokes every token of the user (logout, password change).
    pub fn revoke_tokens(&self, uid: UserId) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for entry in self.tokens.scan_prefix(uid.get().to_be_bytes()) {
            batch.remove(entry?.0);
            any = true;
        }
        // One batch, so a crash never leaves some tokens revoked and others not; none at
        // all when there is nothing to revoke (an empty batch still writes to the log).
        if any {
            self.tokens.apply_batch(batch)?;
        }
        Ok(())
    }

    pub fn group_count(&self) -> u64 {
        self.groups.len() as u64
    }

    /// sled's files and the commit logs' segments.
    pub fn size_on_disk(&self) -> StoreResult<u64> {
        Ok(self.db.size_on_disk()? + self.log_stats.bytes_on_disk())
    }

    /// A new partition's table of staged messages (counted by [`Store::stats`]).
    pub fn register_staged(&self) -> Staged {
        let staged = Staged::default();
        self.staged.lock().unwrap_or_else(|p| p.into_inner()).push(staged.clone());
        staged
    }

    /// Messages staged in every partition, not yet in sled.
    pub fn staged_len(&self) -> usize {
        self.staged.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|s| s.lock().len()).sum()
    }

    /// The owner's last staged sequence in any partition (0 if none): for the rare reader
    /// on another worker than the owner's.
    pub fn staged_last(&self, log: LogId, owner: LogOwner) -> Seq {
        let tables = self.staged.lock().unwrap_or_else(|p| p.into_inner()).clone();
        tables.iter().map(|t| t.lock().last(log, owner)).max().unwrap_or(Seq::ZERO)
    }

    /// Staged messages some reader has not acknowledged (see [`Store::stats`]).
    fn staged_unacked(&self) -> StoreResult<u64> {
        let tables = self.staged.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut count = 0;
        for table in tables {
            let keys = table.lock().keys();
            for (log, owner, seq) in keys {
                if seq > self.settled(log, owner, self.log(log).floor(owner)?)? {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Counts every record; O(data), for administration and tests, not the message path.
    pub fn stats(&self) -> StoreResult<StoreStats> {
        Ok(StoreStats {
            accounts: self.accounts.len() as u64,
            groups: self.groups.len() as u64,
            stored_messages: self.unacknowledged_messages()? + self.staged_unacked()?,
            size_on_disk: self.size_on_disk()?,
        })
    }
}

/// How long an open waits for the directory's lock to be released.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens sled, waiting a moment while another handle on the directory is still letting go
/// of its lock: sled's I/O threads hold it briefly after the last handle is dropped, so a
/// server restarted in the same process (or a daemon restarted the moment the old one
/// exits) would otherwise fail. A daemon that keeps running still gets the lock error.
fn open_when_unlocked(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if is_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// sled's error when another process holds the directory's lock (its only mention of
/// the lock is in the text).
fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

/// fsync of every file sled keeps in `dir` (its blobs too) and of the directories.
fn fsync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_file() {
            fsync_listed(&entry.path())?;
        } else if kind.is_dir() && entry.file_name() == "blobs" {
            fsync_tree(&entry.path())?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// fsync of a file a directory listing named. One removed since the listing (sled's own
/// snapshot files come and go while it runs) needs nothing: the directory's sync makes
/// the removal durable. Failing the checkpoint for it would fail a clean shutdown.
fn fsync_listed(path: &Path) -> std::io::Result<()> {
    match std::fs::File::open(path).and_then(|file| file.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Free space below which sled is not flushed (see [`Store::has_room_for_checkpoint`]).
const SLED_MARGIN: u64 = 16 * 1024 * 1024;

/// The checkpoint serial and its marker file, shared by every clone of the store.
struct Checkpoints {
    serial: u64,
    file: Option<std::fs::File>,
}

/// Refuses a store whose sled lost writes a completed checkpoint had made durable;
/// returns the serial to continue from.
fn check_marker(dir: &Path, meta: &sled::Tree) -> StoreResult<u64> {
    let recorded = marker::read(dir).map_err(|e| {
        StoreError::Damaged(format!(
            "{e}: the data directory's checkpoint record cannot be trusted; restore from a backup"
        ))
    })?;
    let in_sled = match meta.get(marker::KEY)? {
        Some(raw) => marker::decode_serial(&raw).ok_or_else(|| StoreError::Corrupt {
            tree: "meta",
            detail: "checkpoint serial of the wrong size".into(),
        })?,
        None => 0,
    };
    match recorded {
        Some(recorded) if recorded > in_sled => Err(StoreError::Damaged(format!(
            "the database in {} has lost writes it had made durable: its last checkpoint was number \
             {recorded} ({}), the database holds number {in_sled}{}. Its files are damaged or were \
             truncated; restore the directory from a backup (`confabd storage --verify` shows what is there)",
            dir.display(),
            marker::path(dir).display(),
            if in_sled == 0 { ", i.e. it is empty" } else { "" },
        ))),
        recorded => Ok(recorded.unwrap_or(0).max(in_sled)),
    }
}

fn token_key(uid: UserId, digest: &[u8; 32]) -> [u8; 40] {
    let mut key = [0; 40];
    key[..8].copy_from_slice(&uid.get().to_be_bytes());
    key[8..].copy_from_slice(digest);
    key
}

fn read_u64(tree: &'static str, raw: &[u8]) -> StoreResult<u64> {
    let bytes: [u8; 8] = raw
        .try_into()
        .map_err(|_| StoreError::Corrupt { tree, detail: format!("expected 8 bytes, found {}", raw.len()) })?;
    Ok(u64::from_be_bytes(bytes))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encoding of store records is infallible")
}

fn decode<T: serde::de::DeserializeOwned>(tree: &'static str, raw: &[u8]) -> StoreResult<T> {
    postcard::from_bytes(raw).map_err(|e| StoreError::Corrupt { tree, detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_gone_since_the_listing_needs_no_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.0000");
        std::fs::write(&path, b"x").unwrap();
        assert!(fsync_listed(&path).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(fsync_listed(&path).is_ok(), "removed between the listing and the sync");
    }

    use super::*;

    fn message(text: &str) -> StoredMessage {
        StoredMessage::example(text)
    }

    #[test]
    fn a_log_keeps_its_sequence_after_everything_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = &store.inbox;
        let (seven, eight) = (LogOwner(7), LogOwner(8));
        let seqs = |page: Vec<(Seq, StoredMessage)>| page.into_iter().map(|(s, _)| s.get()).collect::<Vec<_>>();
        assert_eq!(log.state(seven).unwrap(), LogState::default());
        for seq in 1..=3 {
            log.append(seven, Seq(seq), &message(&format!("m{seq}"))).unwrap();
        }
        // Another owner's messages must not bleed into owner 7's range.
        log.append(eight, Seq(1), &message("other")).unwrap();
        assert_eq!(log.state(seven).unwrap(), LogState { floor: Seq::ZERO, last_seq: Seq(3) });
        assert_eq!(seqs(log.read(seven, Seq(1), 10).unwrap()), vec![2, 3]);

        log.raise_floor(seven, Seq(2)).unwrap();
        // Below the floor is invisible at once, deleted or not.
        assert_eq!(seqs(log.read(seven, Seq::ZERO, 10).unwrap()), vec![3]);
        assert_eq!(store.stats().unwrap().stored_messages, 2);
        assert_eq!(log.collect(seven, Seq(1), Seq(2), 1).unwrap(), Some(Seq(2)), "one step of one, then more to do");
        assert_eq!(log.collect(seven, Seq(2), Seq(2), 1).unwrap(), None);
        log.raise_floor(seven, Seq(3)).unwrap();
        assert_eq!(log.collect_all().unwrap(), 1);
        assert!(log.read(seven, Seq::ZERO, 10).unwrap().is_empty());
        assert_eq!(log.state(seven).unwrap(), LogState { floor: Seq(3), last_seq: Seq(3) });
        assert_eq!(log.state(eight).unwrap(), LogState { floor: Seq::ZERO, last_seq: Seq(1) });
        assert_eq!(store.stats().unwrap().stored_messages, 1);
        log.remove_all(eight).unwrap();
        assert_eq!(log.state(eight).unwrap(), LogState::default());
    }

    #[test]
    fn tokens_expire_and_are_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (five, six) = (UserId(5), UserId(6));
        store.put_token(five, &a, 1_000).unwrap();
        store.put_token(five, &b, 5_000).unwrap();
        store.put_token(six, &a, 5_000).unwrap();
        assert!(store.token_valid(five, &a, 999).unwrap());
        assert!(!store.token_valid(five, &a, 1_000).unwrap());
        assert!(!store.token_valid(five, &a, 0).unwrap(), "an expired token is gone for good");
        store.revoke_tokens(five).unwrap();
        assert!(!store.token_valid(five, &b, 0).unwrap());
        assert!(store.token_valid(six, &a, 0).unwrap(), "another user's token is untouched");
    }

    #[test]
    fn accounts_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let account = Account {
            user_id: UserId(1),
            display_name: "bob".into(),
            password_hash: "x".into(),
            admin: false,
            created_ms: 0,
        };
        assert!(store.create_account("bob", &account).unwrap());
        assert!(!store.create_account("bob", &account).unwrap());
        assert_eq!(store.account("bob").unwrap(), Some(account));
        assert_eq!(store.usernames().unwrap(), vec!["bob".to_string()]);
    }
}
