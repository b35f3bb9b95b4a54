//! Every tunable of the daemon, with its default and the reason for it, in one place.
//!
//! The binary fills a [`Config`] from flags, whose defaults (shown by `--help`) are read
//! from [`Config::default`], so each default is written once, here, with its reason; tests
//! build one with [`Config::for_tests`] and a temporary data directory. Nothing else in the
//! crate invents its own limits. The daemon's log file has its own [`LogFiles`], read only by
//! the binary, whose defaults live here too.

use crate::cluster::ClusterConfig;
use crate::store::{DurabilityHook, LogSettings, SyncPolicy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The port confabd listens on unless told otherwise (stated in the README).
pub const DEFAULT_PORT: u16 = 7420;

/// The smallest `max_frame_before_login`: a Register with the longest name and password
/// and a Hello with a long client name still fit.
pub const MIN_FRAME_BEFORE_LOGIN: u32 = 1024;

/// Devices the server keeps per user (their records and positions), online or not: a
/// login from a new device beyond this forgets the device seen least recently. Every known
/// device's position holds messages on disk, so without a bound one user could make the
/// server keep a position per made-up device id forever.
pub const MAX_KNOWN_DEVICES: usize = 20;

/// Argon2id cost. Production defaults follow the OWASP recommendation (19 MiB, 2 passes);
/// tests lower it because they hash hundreds of passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost { memory_kib: 19 * 1024, iterations: 2 }
    }
}

impl HashCost {
    /// The cheapest cost argon2 accepts; only for tests and benchmarks.
    pub const MINIMUM: HashCost = HashCost { memory_kib: 8, iterations: 1 };
}

/// When the log file is rotated by age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogAge {
    /// Never by age (only by size, or by an external tool such as logrotate).
    Never,
    /// When the local clock starts a new hour.
    Hour,
    /// When the local clock starts a new day.
    Day,
}

/// The daemon's log file (`--log-file`): when it is rotated and how many old files are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogFiles {
    /// Rotate once the file passes this many bytes; 0 for no size limit. 100 MiB: a day of
    /// info-level lines on a busy server fits, a debug flood cannot fill the disk, and an
    /// editor or grep still handles one file comfortably.
    pub max_bytes: u64,
    /// Rotate when the clock starts a new day: one file a day is what an operator searches by
    /// ("what happened on Tuesday").
    pub max_age: LogAge,
    /// Old files kept; older ones are deleted. A week of daily files, so a problem reported
    /// after a weekend can still be traced; at most 700 MiB (far less compressed).
    pub keep: usize,
    /// Gzip old files (on a background thread, never on the thread that logs): log text
    /// shrinks about tenfold, so keeping a week costs little disk.
    pub compress: bool,
}

impl Default for LogFiles {
    fn default() -> Self {
        LogFiles { max_bytes: 100 * 1024 * 1024, max_age: LogAge::Day, keep: 7, compress: true }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen. Loopback by default: exposing a chat server is a deliberate act.
    pub listen: SocketAddr,
    /// The sled directory.
    pub data_dir: PathBuf,
    /// Largest frame body a client may send, in bytes. Bigger frames close the connection
    /// because the stream can no longer be trusted.
    pub max_frame: u32,
    /// Largest message body. Smaller than `max_frame` so a pushed message (body plus
    /// envelope) always fits in one frame.
    pub max_body: u32,
    /// How often clients should ping; announced in the Hello reply.
    pub heartbeat: Duration,
    /// A connection silent for this long is closed. Three heartbeats, so one lost ping is
    /// not fatal but a half-dead link is found within a couple of minutes.
    pub idle_timeout: Duration,
    /// Worker threads owning users and inboxes. Two by default: this is a 2-core target and
    /// the event loop needs a core too.
    pub workers: usize,
    /// Threads hashing passwords; hashing is slow by design and must not stall workers.
    pub hash_threads: usize,
    pub hash_cost: HashCost,
    /// Stored messages pushed to a session beyond its last ack before the server waits for
    /// an ack. Bounds memory per slow reader and paces catch-up after a long absence.
    pub delivery_window: u32,
    /// Bytes of stored messages pushed beyond a session's last ack before the server waits
    /// for an ack. Well below `max_outbound`, so catch-up of large messages never trips
    /// the slow-consumer bound.
    pub delivery_window_bytes: usize,
    /// Bytes owed to a connection (queued anywhere between a worker and its socket)
    /// before it is cut off as a slow consumer.
    pub max_outbound: usize,
    /// Bytes owed to all connections together. Beyond it, live fan-out (rooms, broadcast)
    /// is refused with `RateLimited`, and the connections owed the most are cut until the
    /// total is back under it: 19,000 connections times `max_outbound` would be 150 GiB.
    pub max_outbound_total: usize,
    /// Live fan-out bytes (frame size times recipients) a connection may cause per second
    /// through rooms and broadcast, so one request cannot buy unbounded work...
    pub fanout_rate: u64,
    /// ...and how many it may save up; a single send costing more waits for a full budget
    /// and leaves it in debt.
    pub fanout_burst: u64,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_conn: usize,
    /// Bytes of stored, unacknowledged direct messages one inbox may hold. Bounds what one
    /// sender can make the disk hold for a recipient who never reads (an account of its
    /// own); about 8,000 messages of the largest size, millions of ordinary ones.
    pub max_inbox_bytes: u64,
    /// Commands queued per worker before the loop stops reading from the sockets that
    /// feed it (backpressure instead of unbounded memory).
    pub worker_queue: usize,
    /// Commands a worker handles before it commits (one sync) and sends what they produced.
    pub max_batch: usize,
    /// Grace period at shutdown for flushing replies to clients.
    pub shutdown_grace: Duration,
    /// Connections accepted at most; the rest are refused until some close.
    pub max_connections: usize,
    /// How long a resume token stays valid.
    pub token_ttl: Duration,
    /// Sessions one user may have at once, one per device: a phone, a laptop, a tablet and a
    /// browser or two. Each costs a connection and a cursor in every conversation the user
    /// reads. A login from one more device is refused; 1 keeps one session per user, where
    /// the newest login wins.
    pub max_devices: usize,
    /// A device not seen (no login, no session ending) for this long is forgotten: its
    /// positions no longer hold messages on disk. 30 days: a laptop left at home over a
    /// holiday still catches up; a lost phone stops holding storage after a month.
    pub device_expiry: Duration,
    /// Members per group at most.
    pub max_group_members: usize,
    /// Groups a user may belong to at most.
    pub max_groups_per_user: usize,
    /// Messages a group keeps at most; older ones are dropped even if some member has not
    /// acknowledged them, so one member who never returns cannot make a group grow forever.
    pub group_retention: u64,
    /// How long a stored message is kept after every reader acknowledged it, so that a new
    /// device (or a reinstalled app) can page back through a conversation (`History`). 30
    /// days: the recent past a person scrolls back to on a new phone, at a disk cost bounded
    /// anyway per inbox by `max_inbox_bytes` (history is trimmed, oldest first, to make room)
    /// and per group by `group_retention`. Zero keeps nothing once acknowledged: a message is
    /// deleted at its last ack, as before history existed. Tests set it in milliseconds.
    pub history: Duration,
    /// How long after sending it a user may still delete a message for everyone. 48 hours:
    /// long enough to notice a message sent to the wrong chat, or regretted, after a night's
    /// sleep or a day away; short enough that the others can rely on what a conversation
    /// said before that. Beyond it the sender can still clear it from its own history.
    pub delete_window: Duration,
    /// Staff per shop at most: every message of an unclaimed conversation is pushed to each
    /// of them, and each holds a position in every conversation of the shop, so the staff
    /// list bounds a message's fan-out and a conversation's memory like a group's members.
    pub max_staff_per_shop: usize,
    /// Support conversations a user may open at most (one per shop): each costs a record,
    /// a log and positions for every staff member, so one account cannot make a shop's
    /// worker hold unbounded state by writing to every shop.
    pub max_support_per_user: usize,
    /// Members per room at most.
    pub max_room_members: usize,
    /// Whether every user may broadcast, or only administrators.
    pub broadcast_by_anyone: bool,
    /// Presence subscriptions per connection at most.
    pub max_subscriptions: usize,
    /// Connections from one IP address at most.
    pub max_connections_per_ip: usize,
    /// Requests per second a connection may sustain (token bucket rate)...
    pub request_rate: u32,
    /// ...and how many it may send in a burst. Beyond, requests get RateLimited; a client
    /// that keeps going past another burst's worth of refusals is disconnected.
    pub request_burst: u32,
    /// Failed logins for one account from one address before each further attempt of that
    /// pair must wait: a user who mistypes a few times is not slowed down.
    pub login_free_attempts: u32,
    /// Failed logins from one address, whatever the accounts, before that address waits.
    /// Higher than the per-pair count because several users may share an address (NAT).
    pub login_address_free_attempts: u32,
    /// Failed logins for one account, whatever the addresses, beyond which addresses that
    /// have failed themselves must wait (the brake on guessing one account from many
    /// addresses). An address without failures is never held back by it, so a guesser
    /// cannot lock the owner out (see `throttle`).
    pub login_account_free_attempts: u32,
    /// The first wait after the free attempts; it doubles with each further failure.
    pub login_backoff: Duration,
    /// The longest wait.
    pub login_backoff_max: Duration,
    /// Registrations from one address (an IPv6 /64) per hour: accounts are cheap to ask
    /// for and each costs a password hash and a database entry.
    pub register_per_address: u32,
    /// Registrations per minute from everyone together, so a flood from many addresses
    /// cannot keep the hashing threads from logins.
    pub register_total: u32,
    /// Registrations waiting for a hashing thread at most; beyond, `RateLimited`.
    pub register_queue: usize,
    /// Password checks (logins) waiting for a hashing thread at most; beyond,
    /// `RateLimited`. They go before any waiting registration.
    pub login_queue: usize,
    /// A connection must say Hello this soon after connecting or be closed: a socket that
    /// never speaks costs a descriptor and a slot.
    pub hello_timeout: Duration,
    /// ...and must log in (or register and log in) this soon after connecting or after
    /// logging out.
    pub login_timeout: Duration,
    /// Connections not logged in at most, below `max_connections`, so idle or half-open
    /// sockets cannot fill every slot before users log in.
    pub max_unauthenticated: usize,
    /// ...and from one address, so a few addresses cannot hold all of those places by
    /// reconnecting as each handshake deadline closes them. 256: many users behind one
    /// NAT reconnecting at once (after a restart) are still let in a few hundred at a
    /// time, while 16 addresses cannot fill the 4,096 places.
    pub max_unauthenticated_per_ip: usize,
    /// Largest frame accepted before login: Hello, Register, Login, Resume and
    /// ServiceLogin fit in far less, and a stranger's partial frame should cost little.
    pub max_frame_before_login: u32,
    /// Descriptors kept for everything but client connections (sled, the commit log's
    /// segments, the log file, the spare descriptor for refusals): `max_connections` is
    /// lowered at start to the open-file limit minus this.
    pub fd_reserve: usize,
    /// How often the statistics line is logged; zero turns it off.
    pub stats_interval: Duration,
    /// How long a client_msg_id is remembered for idempotent retries...
    pub dedup_window: Duration,
    /// ...at most, and for how many sends at most (memory bound; the window shrinks to
    /// this many sends under heavy traffic).
    pub dedup_capacity: usize,
    /// sled's page cache, in bytes: the main part of the server's memory besides
    /// connections (sled's own default is 1 GiB). 128 MiB, because above about that sled
    /// keeps large messages it wrote far beyond the setting: with 32 KB messages, 2 GB
    /// resident after 1.9 GB written at 192 or 256 MiB, 0.4 GB after 3.8 GB at 128 MiB
    /// (docs/BENCHMARKS.md, "Memory and disk under one writer").
    pub cache_bytes: u64,
    /// When a receipt is sent: after the batch's commit-log record is on disk (`Batch`,
    /// the promise that it survives a power cut), or after it is handed to the OS
    /// (`None`, for comparing with servers that do not sync).
    pub sync: SyncPolicy,
    /// Bytes reserved per commit-log segment. A segment is retired as a whole once sled
    /// holds its contents, after a sled checkpoint (a flush and fsyncs of a few ms): big
    /// enough that this happens about once a second at full load, small enough that the
    /// few segments a worker keeps cost little disk.
    pub log_segment_bytes: u64,
    /// Start even when the check at start finds the data directory damaged (each problem
    /// is logged as an error). Off: the server refuses to start and says why, rather than
    /// serve less than it promised.
    pub start_damaged: bool,
    /// Told of every durable step: only tests that model a power cut set it.
    pub durability_hook: Option<DurabilityHook>,
    /// Push notifications for users who are offline.
    pub push: PushConfig,
    /// This node's place in a cluster (`--cluster`); None: a single node, with no bus and
    /// no bus thread (see `cluster`).
    pub cluster: Option<ClusterConfig>,
}

/// How push events are made and queued for the push gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushConfig {
    /// Messages for the same offline user within this long after the first become one
    /// event with a count: a burst of ten messages wakes the phone once, and the first
    /// notification comes at most this late. One second: a conversation's burst, not a
    /// delay anyone notices on a phone that was asleep anyway.
    pub window: Duration,
    /// Events waiting for the gateway's ack at most; beyond, the oldest is dropped (a
    /// notification hours old is worth less than a new one). With no gateway connected
    /// events wait: this bounds their memory and disk (a few hundred bytes each).
    pub queue_max: usize,
    /// Whether services' system messages notify too. Off: services send notices in bulk
    /// (every user of a group, every user online), which would wake every phone at once.
    pub system_messages: bool,
    /// Characters of a text message shown in a notification's preview: what a lock
    /// screen shows of a message, and no more of it leaves the server.
    pub preview_chars: usize,
    /// Push devices one user may register: a phone, a tablet, a few browsers.
    pub max_devices: usize,
    /// Mutes one user may hold at once: kept in memory with the devices (a few dozen
    /// bytes each), so bounded well below what an account could otherwise cost.
    pub max_mutes: usize,
    /// Notes on their way from the workers to the push queue's worker, at most; beyond,
    /// new notes are dropped (counted in `push_dropped`, logged). A message to a group of
    /// a thousand offline members makes a thousand notes: without this bound a sender
    /// faster than the queue's worker would grow that worker's channel without limit. A
    /// few hundred bytes each: 100,000 is tens of MB, several seconds of a busy server.
    pub max_pending_notes: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            window: Duration::from_secs(1),
            queue_max: 100_000,
            system_messages: false,
            preview_chars: 100,
            max_devices: 10,
            max_mutes: 256,
            max_pending_notes: 100_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            data_dir: PathBuf::from("confab-data"),
            max_frame: 64 * 1024,
            max_body: 32 * 1024,
            heartbeat: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            workers: 2,
            hash_threads: 1,
            hash_cost: HashCost::default(),
            delivery_window: 1024,
            delivery_window_bytes: 2 * 1024 * 1024,
            max_outbound: 8 * 1024 * 1024,
            max_outbound_total: 1024 * 1024 * 1024,
            fanout_rate: 16 * 1024 * 1024,
            fanout_burst: 32 * 1024 * 1024,
            max_rooms_per_conn: 100,
            max_inbox_bytes: 256 * 1024 * 1024,
            worker_queue: 16 * 1024,
            max_batch: 4096,
            shutdown_grace: Duration::from_secs(2),
            max_connections: 19_000,
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            max_devices: 5,
            device_expiry: Duration::from_secs(30 * 24 * 3600),
            max_group_members: 1000,
            max_groups_per_user: 100,
            group_retention: 100_000,
            history: Duration::from_secs(30 * 24 * 3600),
            delete_window: Duration::from_secs(48 * 3600),
            max_staff_per_shop: 100,
            max_support_per_user: 100,
            max_room_members: 10_000,
            broadcast_by_anyone: false,
            max_subscriptions: 1000,
            max_connections_per_ip: 4096,
            request_rate: 2000,
            request_burst: 4000,
            login_free_attempts: 5,
            login_address_free_attempts: 20,
            login_account_free_attempts: 10,
            login_backoff: Duration::from_secs(1),
            login_backoff_max: Duration::from_secs(300),
            register_per_address: 20,
            register_total: 600,
            register_queue: 32,
            login_queue: 1024,
            hello_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(30),
            max_unauthenticated: 4096,
            max_unauthenticated_per_ip: 256,
            max_frame_before_login: 4096,
            fd_reserve: 128,
            stats_interval: Duration::from_secs(60),
            dedup_window: Duration::from_secs(24 * 3600),
            dedup_capacity: 1_000_000,
            cache_bytes: 128 * 1024 * 1024,
            sync: SyncPolicy::Batch,
            log_segment_bytes: 32 * 1024 * 1024,
            start_damaged: false,
            durability_hook: None,
            push: PushConfig::default(),
            cluster: None,
        }
    }
}

impl Config {
    /// Brings dependent limits in line: a pushed message must fit in a frame, and stored
    /// deliveries must leave room in the output bound for everything else.
    pub fn normalized(mut self) -> Self {
        self.max_body = self.max_body.min(self.max_frame / 2);
        // The ledger counts a connection's bytes in 31 bits, the loop's own frames included.
        self.max_outbound = self.max_outbound.clamp(64 * 1024, 1 << 30);
        self.max_outbound_total = self.max_outbound_total.max(self.max_outbound);
        self.delivery_window_bytes = self.delivery_window_bytes.min(self.max_outbound / 2).max(1);
        self.delivery_window = self.delivery_window.max(1);
        self.workers = self.workers.max(1);
        self.hash_threads = self.hash_threads.max(1);
        self.request_rate = self.request_rate.max(1);
        self.request_burst = self.request_burst.max(1);
        self.group_retention = self.group_retention.max(1);
        self.register_per_address = self.register_per_address.max(1);
        self.register_total = self.register_total.max(1);
        self.register_queue = self.register_queue.max(1);
        self.login_queue = self.login_queue.max(1);
        self.max_frame_before_login =
            self.max_frame_before_login.clamp(MIN_FRAME_BEFORE_LOGIN, self.max_frame.max(MIN_FRAME_BEFORE_LOGIN));
        // A connection id holds its slot in 24 bits (see `route::ConnId`).
        self.max_connections = self.max_connections.min((1 << 24) - 2);
        self.max_unauthenticated = self.max_unauthenticated.min(self.max_connections);
        self.push.queue_max = self.push.queue_max.max(1);
        self.max_devices = self.max_devices.clamp(1, MAX_KNOWN_DEVICES);
        self
    }

    pub fn log_settings(&self) -> LogSettings {
        LogSettings { sync: self.sync, segment_bytes: self.log_segment_bytes }
    }

    /// A config for tests: port 0 on loopback, the cheapest hash, the given data dir,
    /// small log segments (so tests roll and retire them).
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            hash_cost: HashCost::MINIMUM,
            log_segment_bytes: 1024 * 1024,
            // Tests register hundreds of users from 127.0.0.1; the tests of these limits
            // set them.
            register_per_address: 1_000_000,
            register_total: 1_000_000,
            ..Config::default()
        }
    }
}
