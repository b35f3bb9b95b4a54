//! Assembles a running server: store, hashing pool, workers and the event loop thread, and
//! takes them down again in the order that loses nothing (see [`Server::wait`]).

use crate::apps::Apps;
use crate::auth::Hasher;
use crate::cluster::bus::{Bus, Ends};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::{EventLoop, LoopHandle};
use crate::protocol::{GroupId, SupportId};
use crate::route::{Elsewhere, Outbox, OutputLedger, Owner};
use crate::signup::SignupLimit;
use crate::store::{pidfile, LogOwner, Store, StoreError};
use crate::throttle::{LoginThrottle, Policy};
use crate::worker::{
    tidy_stored_names, ConnSeats, ConnectionWatchers, DedupIndex, Directory, FanoutBudgets, GroupSeats, Lookalikes,
    OpenGroups, PushBook, RoomList, Shared,
};
use log::info;
use mio::net::TcpListener;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot open the data directory {dir}: {source}")]
    Store { dir: String, source: StoreError },
    /// Another daemon holds the directory; the error says which and what to do.
    #[error("{0}")]
    Locked(StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// A running server. Dropping it without [`Server::shutdown`] leaves it running.
pub struct Server {
    addr: SocketAddr,
    handle: LoopHandle,
    store: Store,
    rooms: RoomList,
    event_loop: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    hashers: Vec<JoinHandle<()>>,
    data_dir: std::path::PathBuf,
    /// The cluster bus thread (None on a single node).
    bus: Option<Bus>,
}

impl Server {
    pub fn start(config: Config) -> Result<Server, StartError> {
        let config = fit_to_open_file_limit(config).normalized();
        let dir = config.data_dir.display().to_string();
        let store_error = |source| match source {
            StoreError::Locked { .. } => StartError::Locked(source),
            source => StartError::Store { dir: dir.clone(), source },
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| store_error(StoreError::Sled(e.into())))?;
        let mut store = Store::open_with_cache(&config.data_dir, config.cache_bytes).map_err(store_error)?;
        store.set_durability_hook(config.durability_hook.clone());
        // Only read when an open fails on the lock, to say who holds it: not fatal.
        if let Err(e) = pidfile::write(&config.data_dir) {
            log::warn!("cannot write the pid file in {dir}: {e}");
        }
        let mut listener =
            listen(config.listen).map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let addr = listener.local_addr()?;
        let (poll, waker) = EventLoop::prepare(&mut listener)?;

        let config = Arc::new(config);
        let (hasher, hashers) =
            Hasher::start(config.hash_threads, config.hash_cost, config.login_queue, config.register_queue);
        let (to_loop, from_workers) = crossbeam_channel::unbounded();
        let loop_outbox = Outbox::new(to_loop, waker.clone());
        // In a cluster: the bus's handle now (the workers and the loop send through it),
        // its thread once the workers it feeds exist.
        let bus = config.cluster.as_ref().map(Bus::prepare);
        let elsewhere = bus.as_ref().map(|(handle, _)| Arc::new(handle.clone()) as Arc<dyn Elsewhere>);
        let outbox = match &elsewhere {
            Some(elsewhere) => loop_outbox.with_elsewhere(elsewhere.clone()),
            None => loop_outbox.clone(),
        };
        let node = config.cluster.as_ref().map_or(0, |c| c.membership.me);
        if let Some(cluster) = &config.cluster {
            store.claim_for_node(node, &cluster.membership).map_err(|e| store_error(StoreError::Damaged(e)))?;
        }
        let rooms = RoomList::default();
        // One slot per connection the loop may hold (it refuses beyond max_connections).
        let ledger = Arc::new(OutputLedger::new(config.max_connections + 1, config.max_outbound).on_node(node));
        // Opening the store replayed the commit log; now the acknowledged messages the
        // last run left behind, before anything reads the logs.
        check_integrity(&store, &config).map_err(store_error)?;
        let collected = store.inbox.collect_all().and_then(|a| Ok(a + store.group_log.collect_all()?));
        match collected.map_err(store_error)? {
            0 => {}
            n => info!("deleted {n} acknowledged messages left from the last run"),
        }
        let dedup = Arc::new(load_dedup(&store, &config).map_err(store_error)?);
        // Counted once at start (O(data)); kept current by the workers from then on.
        let stored = store.stats().map_err(store_error)?.stored_messages;
        let metrics = Arc::new(Metrics::new(stored, store.log_stats.clone()));
        let lookalikes = Lookalikes::load(&store).map_err(store_error)?;
        // Before anything serves a name: what an earlier version stored may break the policy.
        match tidy_stored_names(&store, &lookalikes).map_err(store_error)? {
            0 => {}
            n => info!("tidied {n} stored names to the names policy"),
        }
        let open_groups = OpenGroups::load(&store).map_err(store_error)?;
        let apps = Apps::load(&store).map_err(store_error)?;
        let shared = Shared {
            config: config.clone(),
            store: store.clone(),
            hasher,
            outbox,
            directory: Directory::default(),
            lookalikes,
            rooms: rooms.clone(),
            open_groups,
            throttle: LoginThrottle::new(Policy {
                pair_free: config.login_free_attempts,
                address_free: config.login_address_free_attempts,
                account_free: config.login_account_free_attempts,
                base: config.login_backoff,
                max: config.login_backoff_max,
            }),
            signups: SignupLimit::new(config.register_per_address, config.register_total, Instant::now()),
            metrics: metrics.clone(),
            connection_watchers: ConnectionWatchers::default(),
            seats: GroupSeats::default(),
            support_seats: GroupSeats::default(),
            room_seats: ConnSeats::default(),
            subscription_seats: ConnSeats::default(),
            fanout: FanoutBudgets::new(config.fanout_rate, config.fanout_burst),
            ledger: ledger.clone(),
            dedup,
            push: PushBook::load(&store).map_err(store_error)?,
            apps: apps.clone(),
            bus: bus.as_ref().map(|(handle, _)| handle.clone()),
        };
        let (router, workers, mailbox) = crate::worker::start(shared);
        let router = router.with_elsewhere(elsewhere);
        let bus = match (bus, &config.cluster) {
            (Some((handle, rx)), Some(cluster)) => {
                let ends = Ends { outbox: Some(loop_outbox), ledger: ledger.clone(), workers: mailbox };
                Some(Bus::start(cluster.clone(), handle, rx, ends)?)
            }
            _ => None,
        };
        let (event_loop, handle) =
            EventLoop::new(poll, listener, waker, router, from_workers, config.clone(), metrics, ledger, apps);
        let event_loop = std::thread::Builder::new().name("confab-loop".into()).spawn(move || event_loop.run())?;
        info!("confabd listening on {addr} (data in {}, {} workers)", config.data_dir.display(), config.workers);
        let data_dir = config.data_dir.clone();
        if let Some(cluster) = &config.cluster {
            info!(
                "cluster node {node} of {} (bus {}, name {})",
                cluster.membership.nodes.len(),
                cluster.urls.join(","),
                cluster.name
            );
        }
        Ok(Server { addr, handle, store, rooms, event_loop, workers, hashers, data_dir, bus })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops the server from another thread (a signal handler, a test).
    pub fn handle(&self) -> LoopHandle {
        self.handle.clone()
    }

    /// The store, for tests and tools that inspect what is on disk.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Number of rooms with members now.
    pub fn rooms(&self) -> usize {
        self.rooms.count()
    }

    /// Stops the server and waits until it has stopped.
    pub fn shutdown(self) -> Result<(), StoreError> {
        self.handle.stop();
        self.wait()
    }

    /// Waits until the server stops (after [`LoopHandle::stop`]). The loop stops accepting
    /// and reading, lets workers finish and commit their queues, writes their last replies
    /// and a ShuttingDown notice to every client, and exits; the workers, the hashing
    /// threads and the cluster's bus stop meanwhile, and the store is checkpointed one last
    /// time.
    pub fn wait(self) -> Result<(), StoreError> {
        // The workers exit once the loop has told them to stop; the hashing threads with them.
        for worker in self.workers {
            let _ = worker.join();
        }
        for hasher in self.hashers {
            let _ = hasher.join();
        }
        // The workers are done: nothing more is sent to other nodes. The bus is stopped
        // before the loop is waited for: it holds a sender of the loop's channel, and the
        // loop says goodbye to its clients only once every sender has gone.
        if let Some(mut bus) = self.bus {
            bus.stop();
        }
        let _ = self.event_loop.join();
        if self.store.has_room_for_checkpoint() {
            self.store.checkpoint()?;
        } else {
            log::warn!(
                "the disk is full: the commit log keeps what sled could not take; it is replayed at the next start"
            );
        }
        pidfile::remove(&self.data_dir);
        info!("confabd stopped");
        Ok(())
    }
}

/// Raises the open-file limit as far as allowed and lowers `max_connections` to what it
/// leaves after `fd_reserve`, saying so: a limit the descriptors cannot honour would leave
/// newcomers hanging at EMFILE instead of being refused.
fn fit_to_open_file_limit(mut config: Config) -> Config {
    let limit = match crate::fdlimit::raise_to_hard_limit() {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("cannot read or raise the open-file limit: {e}");
            return config;
        }
    };
    info!("open-file limit: {limit}");
    let allowed = crate::fdlimit::connections_allowed(limit, config.fd_reserve);
    if config.max_connections > allowed {
        log::warn!(
            "max-connections lowered from {} to {allowed}: the open-file limit is {limit} and {} descriptors are              kept for storage and logs (--fd-reserve); raise the limit (ulimit -n) for more",
            config.max_connections,
            config.fd_reserve
        );
        config.max_connections = allowed;
    }
    config
}

/// Refuses a damaged data directory (unless told to start anyway), before anything serves it.
fn check_integrity(store: &Store, config: &Config) -> Result<(), StoreError> {
    let report = store.verify()?;
    if report.problems.is_empty() {
        return Ok(());
    }
    for problem in &report.problems {
        log::error!("damaged data: {problem}");
    }
    // What the commit log cut is reported, but a torn tail is what a crash leaves: only
    // damage in sled's data stops the start.
    let damaged = report.problems.len() > store.log_cuts.len();
    if !damaged || config.start_damaged {
        return Ok(());
    }
    Err(StoreError::Damaged(format!(
        "{} problems in {} (the first: {}); restore it from a backup, or start with --start-damaged \
         to serve what is left",
        report.problems.len() - store.log_cuts.len(),
        config.data_dir.display(),
        report.problems[store.log_cuts.len()]
    )))
}

/// The dedup records still inside the window, newest last so the newest survive the
/// bound, each in the index of the worker that owns its destination (the one that stored
/// the message, and that is asked about a retry): one index per worker, so no lock is
/// shared between workers on the message path.
fn load_dedup(store: &Store, config: &Config) -> Result<Vec<DedupIndex>, StoreError> {
    let now = crate::clock::now_ms();
    let since = now.saturating_sub(config.dedup_window.as_millis() as u64);
    store.prune_dedup(since)?;
    let workers = config.workers.max(1);
    let window = config.dedup_window.as_millis() as u64;
    let indexes: Vec<DedupIndex> =
        (0..workers).map(|_| DedupIndex::new(config.dedup_capacity / workers, window)).collect();
    let records = store.dedup_since(since)?;
    if records.is_empty() {
        return Ok(indexes);
    }
    // A destination is a group, support conversation or user id (one id space); users are
    // owned by name, conversations by their shop's name.
    let mut owner_of_user = std::collections::HashMap::new();
    for name in store.usernames()? {
        if let Some(account) = store.account(&name)? {
            owner_of_user.insert(LogOwner::from(account.user_id), Owner::User(&name).partition(workers));
        }
    }
    for record in records {
        let destination = record.entry.recipient;
        let as_group = GroupId(destination.get());
        let worker = match store.group(as_group)? {
            Some(_) => Some(Owner::Group(as_group).partition(workers)),
            None => match store.support(SupportId(destination.get()))? {
                Some(conversation) => Some(Owner::Shop(&conversation.shop).partition(workers)),
                None => owner_of_user.get(&destination).copied(),
            },
        };
        // A destination that is gone (a deleted user or group) takes no more messages.
        if let Some(worker) = worker {
            indexes[worker].insert(record, now);
        }
    }
    Ok(indexes)
}

/// Connections the kernel queues for accept; beyond, clients wait a second to retry.
const ACCEPT_BACKLOG: i32 = 4096;

/// A non-blocking listener with a deep accept backlog.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // A restarted daemon rebinds its port at once, despite connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(ACCEPT_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}
