//! confabd: flags → Config → run until SIGINT or SIGTERM (SIGHUP reopens the log file,
//! see `logging`); or an administration subcommand (see `commands`).

#![forbid(unsafe_code)]

mod commands;
mod logging;

use clap::Parser;
use confab::cluster::{self, ClusterConfig, Membership};
use confab::config::{Config, HashCost, PushConfig};
use confab::store::SyncPolicy;
use confab::Server;
use log::{error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What the flags default to: [`Config::default`], where each default is written with its
/// reason. The flags only show it (in `--help`) in their own units.
fn defaults() -> Config {
    Config::default()
}

/// Flags given in MiB.
const MIB: u64 = 1024 * 1024;
/// Flags given in days, in seconds.
const DAY: u64 = 24 * 3600;

#[derive(Parser, Debug)]
#[command(name = "confabd", version, about = "confab instant-messaging server")]
struct Flags {
    /// Without a subcommand, confabd runs the daemon.
    #[command(subcommand)]
    command: Option<commands::Command>,
    /// Address to listen on.
    #[arg(long, default_value_t = defaults().listen)]
    listen: SocketAddr,
    /// Directory of the embedded database (created if missing).
    #[arg(long, default_value_os_t = defaults().data_dir, global = true)]
    data_dir: PathBuf,
    #[command(flatten)]
    log: logging::LogFlags,
    /// Largest frame a client may send, in bytes; bigger frames close the connection.
    #[arg(long, default_value_t = defaults().max_frame)]
    max_frame: u32,
    /// Largest message body, in bytes (must leave room for the envelope within max-frame).
    #[arg(long, default_value_t = defaults().max_body)]
    max_body: u32,
    /// Heartbeat interval announced to clients, in seconds.
    #[arg(long, default_value_t = defaults().heartbeat.as_secs())]
    heartbeat: u64,
    /// Close connections silent for this many seconds.
    #[arg(long, default_value_t = defaults().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Worker threads owning users and their messages.
    #[arg(long, default_value_t = defaults().workers)]
    workers: usize,
    /// Threads hashing passwords.
    #[arg(long, default_value_t = defaults().hash_threads)]
    hash_threads: usize,
    /// Argon2id memory cost in KiB (lower only for tests and benchmarks).
    #[arg(long, default_value_t = defaults().hash_cost.memory_kib, global = true)]
    hash_memory_kib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = defaults().hash_cost.iterations, global = true)]
    hash_iterations: u32,
    /// Most connections held at once.
    #[arg(long, default_value_t = defaults().max_connections)]
    max_connections: usize,
    /// Stored messages pushed beyond a user's last ack before waiting for an ack.
    #[arg(long, default_value_t = defaults().delivery_window)]
    delivery_window: u32,
    /// Bytes of stored messages pushed beyond a user's last ack before the server waits
    /// (at most half of max-outbound).
    #[arg(long, default_value_t = defaults().delivery_window_bytes)]
    delivery_window_bytes: usize,
    /// Output bytes owed to one connection before it is cut off as a slow consumer.
    #[arg(long, default_value_t = defaults().max_outbound)]
    max_outbound: usize,
    /// Output owed to all connections together, in MiB: beyond it room messages and
    /// broadcasts are refused and the connections owed the most are closed.
    #[arg(long, default_value_t = defaults().max_outbound_total / MIB as usize)]
    max_outbound_total_mib: usize,
    /// Live fan-out one connection may cause (message size times room members), in MiB a
    /// second; twice as much may be saved up.
    #[arg(long, default_value_t = defaults().fanout_rate / MIB)]
    fanout_rate_mib: u64,
    /// Rooms one connection may be in at once.
    #[arg(long, default_value_t = defaults().max_rooms_per_conn)]
    max_rooms_per_conn: usize,
    /// Stored, unacknowledged direct messages one inbox may hold, in MiB.
    #[arg(long, default_value_t = defaults().max_inbox_bytes / MIB)]
    max_inbox_mib: u64,
    /// Connections from one IP address at most.
    #[arg(long, default_value_t = defaults().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Requests per second one connection may sustain.
    #[arg(long, default_value_t = defaults().request_rate)]
    request_rate: u32,
    /// Requests one connection may send in a burst above the rate.
    #[arg(long, default_value_t = defaults().request_burst)]
    request_burst: u32,
    /// Failed logins for one account from one address before each further attempt waits.
    #[arg(long, default_value_t = defaults().login_free_attempts)]
    login_free_attempts: u32,
    /// Failed logins from one address (any accounts) before it waits.
    #[arg(long, default_value_t = defaults().login_address_free_attempts)]
    login_address_free_attempts: u32,
    /// Failed logins for one account (any addresses) beyond which addresses that failed
    /// themselves wait; an address without failures is never held back.
    #[arg(long, default_value_t = defaults().login_account_free_attempts)]
    login_account_free_attempts: u32,
    /// Registrations per hour from one address (an IPv6 /64).
    #[arg(long, default_value_t = defaults().register_per_address)]
    register_rate: u32,
    /// Registrations per minute from all addresses together.
    #[arg(long, default_value_t = defaults().register_total)]
    register_rate_total: u32,
    /// Registrations waiting for a hashing thread at most; beyond, RateLimited.
    #[arg(long, default_value_t = defaults().register_queue)]
    register_queue: usize,
    /// Logins waiting for a hashing thread at most (served before registrations).
    #[arg(long, default_value_t = defaults().login_queue)]
    login_queue: usize,
    /// Seconds a new connection has to send Hello.
    #[arg(long, default_value_t = defaults().hello_timeout.as_secs())]
    hello_timeout: u64,
    /// Seconds a connection has to log in, from connecting or logging out.
    #[arg(long, default_value_t = defaults().login_timeout.as_secs())]
    login_timeout: u64,
    /// Connections not logged in at most (at most max-connections).
    #[arg(long, default_value_t = defaults().max_unauthenticated)]
    max_unauthenticated: usize,
    /// Connections nobody has logged in on, per source address.
    #[arg(long, default_value_t = defaults().max_unauthenticated_per_ip)]
    max_unauthenticated_per_ip: usize,
    /// Largest frame a client may send before it logs in, in bytes (at least 1024).
    #[arg(long, default_value_t = defaults().max_frame_before_login)]
    max_frame_before_login: u32,
    /// Open-file descriptors kept for storage and logs; max-connections is lowered to the
    /// open-file limit minus this.
    #[arg(long, default_value_t = defaults().fd_reserve)]
    fd_reserve: usize,
    /// Sessions one user may have at once, one per device (1: one session, the newest
    /// login wins).
    #[arg(long, default_value_t = defaults().max_devices)]
    max_devices: usize,
    /// Forget a device not seen for this many days: its positions stop holding messages.
    #[arg(long, default_value_t = defaults().device_expiry.as_secs() / DAY)]
    device_expiry_days: u64,
    /// Members per group at most.
    #[arg(long, default_value_t = defaults().max_group_members)]
    max_group_members: usize,
    /// Groups one user may belong to at most.
    #[arg(long, default_value_t = defaults().max_groups_per_user)]
    max_groups_per_user: usize,
    /// Messages a group keeps at most; older ones go even if a member has not acked them.
    #[arg(long, default_value_t = defaults().group_retention)]
    group_retention: u64,
    /// Days a message is kept after every reader acknowledged it, for history; 0 deletes it
    /// at its last ack.
    #[arg(long, default_value_t = defaults().history.as_secs() / DAY)]
    history_days: u64,
    /// Minutes after sending it during which a user may delete a message for everyone.
    #[arg(long, default_value_t = defaults().delete_window.as_secs() / 60)]
    delete_window_mins: u64,
    /// Staff per shop at most.
    #[arg(long, default_value_t = defaults().max_staff_per_shop)]
    max_staff_per_shop: usize,
    /// Support conversations one user may open at most (one per shop).
    #[arg(long, default_value_t = defaults().max_support_per_user)]
    max_support_per_user: usize,
    /// Members per room at most.
    #[arg(long, default_value_t = defaults().max_room_members)]
    max_room_members: usize,
    /// Let every user broadcast (by default only administrators may).
    #[arg(long)]
    broadcast_by_anyone: bool,
    /// Seconds between statistics lines in the log; 0 turns them off.
    #[arg(long, default_value_t = defaults().stats_interval.as_secs())]
    stats_interval: u64,
    /// The storage engine's page cache, in MiB.
    #[arg(long, default_value_t = defaults().cache_bytes / MIB)]
    cache_mib: u64,
    /// When a sender's receipt is sent: `batch` after the batch's commit-log record is
    /// fdatasync'ed (nothing receipted is lost in a power cut), `none` after it is written
    /// to the OS (a crash of confabd loses nothing, a power cut the last seconds).
    #[arg(long, value_enum, default_value_t = Sync::from(defaults().sync))]
    sync: Sync,
    /// Size of each commit-log segment, in MiB (space reserved up front).
    #[arg(long, default_value_t = defaults().log_segment_bytes / MIB)]
    log_segment_mib: u64,
    /// Start even if the data directory is found damaged at start (each problem is
    /// logged); by default confabd refuses to start and says what is wrong.
    #[arg(long)]
    start_damaged: bool,
    /// Messages for one offline user within this many ms become one push event.
    #[arg(long, default_value_t = defaults().push.window.as_millis() as u64)]
    push_window_ms: u64,
    /// Push events waiting for the gateway at most; beyond, the oldest are dropped.
    #[arg(long, default_value_t = defaults().push.queue_max)]
    push_queue_max: usize,
    /// Services' system messages make push events too (off: only users' messages).
    #[arg(long)]
    push_system: bool,
    /// Characters of a text message in a push preview (0: never any text).
    #[arg(long, default_value_t = defaults().push.preview_chars)]
    push_preview_chars: usize,
    /// Run as a node of a cluster over these NATS servers (comma-separated URLs, e.g.
    /// nats://10.0.0.1:4222); needs --node-id and --nodes or --nodes-file.
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// This node's id in the cluster's node list (1-255).
    #[arg(long)]
    node_id: Option<u32>,
    /// The cluster's nodes as ID=ADDRESS,... (the address clients connect to); the same
    /// list on every node.
    #[arg(long)]
    nodes: Option<String>,
    /// The cluster's nodes from a file: one `ID ADDRESS` per line, `#` comments.
    #[arg(long, conflicts_with = "nodes")]
    nodes_file: Option<PathBuf>,
    /// The cluster's name: its NATS subjects start with it, so clusters can share a bus.
    #[arg(long, default_value = cluster::DEFAULT_NAME)]
    cluster_name: String,
    /// Milliseconds a node waits for another node's answer before its client is told
    /// Unavailable.
    #[arg(long, default_value_t = cluster::DEFAULT_TIMEOUT.as_millis() as u64)]
    cluster_timeout_ms: u64,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Sync {
    Batch,
    None,
}

impl From<SyncPolicy> for Sync {
    fn from(policy: SyncPolicy) -> Self {
        match policy {
            SyncPolicy::Batch => Sync::Batch,
            SyncPolicy::None => Sync::None,
        }
    }
}

impl From<Sync> for SyncPolicy {
    fn from(sync: Sync) -> Self {
        match sync {
            Sync::Batch => SyncPolicy::Batch,
            Sync::None => SyncPolicy::None,
        }
    }
}

impl Flags {
    /// The cluster flags as a [`ClusterConfig`]: None without `--cluster`.
    fn cluster(&self) -> Result<Option<ClusterConfig>, String> {
        if self.cluster.is_empty() {
            if self.node_id.is_some() || self.nodes.is_some() || self.nodes_file.is_some() {
                return Err("--node-id and --nodes need --cluster (the NATS servers to use)".into());
            }
            return Ok(None);
        }
        let me = self.node_id.ok_or("--cluster needs --node-id")?;
        // Subjects are `NAME.node.N.in`: a name of its own tokens only.
        let name_ok = !self.cluster_name.is_empty()
            && self.cluster_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err("--cluster-name must be letters, digits, - and _".into());
        }
        let membership = match (&self.nodes, &self.nodes_file) {
            (Some(list), _) => Membership::parse(me, list),
            (None, Some(path)) => Membership::read_file(me, path),
            (None, None) => return Err("--cluster needs --nodes or --nodes-file".into()),
        }
        .map_err(|e| e.to_string())?;
        Ok(Some(ClusterConfig {
            urls: self.cluster.clone(),
            name: self.cluster_name.clone(),
            membership,
            timeout: Duration::from_millis(self.cluster_timeout_ms.max(1)),
        }))
    }

    fn config(&self) -> Config {
        Config {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            max_frame: self.max_frame,
            max_body: self.max_body,
            heartbeat: Duration::from_secs(self.heartbeat.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            workers: self.workers,
            hash_threads: self.hash_threads,
            hash_cost: HashCost { memory_kib: self.hash_memory_kib, iterations: self.hash_iterations },
            max_connections: self.max_connections,
            delivery_window: self.delivery_window,
            delivery_window_bytes: self.delivery_window_bytes,
            max_outbound: self.max_outbound,
            max_outbound_total: self.max_outbound_total_mib.max(1) * MIB as usize,
            fanout_rate: self.fanout_rate_mib.max(1) * MIB,
            fanout_burst: self.fanout_rate_mib.max(1) * 2 * MIB,
            max_rooms_per_conn: self.max_rooms_per_conn,
            max_inbox_bytes: self.max_inbox_mib.max(1) * MIB,
            max_connections_per_ip: self.max_connections_per_ip,
            request_rate: self.request_rate,
            request_burst: self.request_burst,
            login_free_attempts: self.login_free_attempts,
            login_address_free_attempts: self.login_address_free_attempts,
            login_account_free_attempts: self.login_account_free_attempts,
            register_per_address: self.register_rate,
            register_total: self.register_rate_total,
            register_queue: self.register_queue,
            login_queue: self.login_queue,
            hello_timeout: Duration::from_secs(self.hello_timeout.max(1)),
            login_timeout: Duration::from_secs(self.login_timeout.max(1)),
            max_unauthenticated: self.max_unauthenticated,
            max_unauthenticated_per_ip: self.max_unauthenticated_per_ip,
            max_frame_before_login: self.max_frame_before_login,
            fd_reserve: self.fd_reserve,
            max_devices: self.max_devices,
            device_expiry: Duration::from_secs(self.device_expiry_days.max(1) * DAY),
            max_group_members: self.max_group_members,
            max_groups_per_user: self.max_groups_per_user,
            group_retention: self.group_retention,
            history: Duration::from_secs(self.history_days.saturating_mul(DAY)),
            delete_window: Duration::from_secs(self.delete_window_mins.saturating_mul(60)),
            max_staff_per_shop: self.max_staff_per_shop,
            max_support_per_user: self.max_support_per_user,
            max_room_members: self.max_room_members,
            broadcast_by_anyone: self.broadcast_by_anyone,
            stats_interval: Duration::from_secs(self.stats_interval),
            cache_bytes: self.cache_mib.max(1) * MIB,
            sync: self.sync.into(),
            log_segment_bytes: self.log_segment_mib.max(1) * MIB,
            start_damaged: self.start_damaged,
            push: PushConfig {
                window: Duration::from_millis(self.push_window_ms),
                queue_max: self.push_queue_max,
                system_messages: self.push_system,
                preview_chars: self.push_preview_chars,
                ..PushConfig::default()
            },
            ..Config::default()
        }
    }
}

fn main() -> ExitCode {
    let mut flags = Flags::parse();
    if let Some(command) = flags.command.take() {
        let cost = HashCost { memory_kib: flags.hash_memory_kib, iterations: flags.hash_iterations };
        return match commands::run(command, &flags.data_dir, cost, flags.max_staff_per_shop) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("confabd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let log = match logging::start(&flags.log) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("confabd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Installed before the server starts: a SIGTERM that comes the moment it listens must
    // stop it cleanly (final checkpoint, pid file removed), not kill it, and a SIGHUP from
    // logrotate must not kill it either (its default action).
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = flags.config();
    config.cluster = match flags.cluster() {
        Ok(cluster) => cluster,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = server.handle();
    let reopener = log.clone();
    // The thread keeps its signals until the process ends: a SIGHUP during shutdown still
    // only reopens the log, and a second SIGTERM only asks again.
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                reopener.reopen();
            } else {
                info!("signal {signal} received; shutting down");
                handle.stop();
            }
        }
    });
    let code = match server.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("final checkpoint failed: {e}");
            ExitCode::FAILURE
        }
    };
    log.shutdown();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Compares the listed fields of the config that no flags give with
    /// `Config::default()`. The exhaustive pattern makes a new field of `Config` a compile
    /// error here until it is listed, so no default can slip past the flags unnoticed.
    macro_rules! assert_fields_default {
        ($parsed:expr; $($field:ident),* $(,)?) => {{
            let parsed = $parsed;
            let Config { $($field,)* durability_hook } = Config::default();
            $(assert_eq!(parsed.$field, $field, concat!(stringify!($field), " from no flags is not Config::default()'s"));)*
            assert!(durability_hook.is_none() && parsed.durability_hook.is_none());
        }};
    }

    #[test]
    fn no_flags_give_the_default_config() {
        let flags = Flags::try_parse_from(["confabd"]).expect("no flags is a valid command line");
        assert_fields_default!(flags.config();
            listen, data_dir, max_frame, max_body, heartbeat, idle_timeout, workers, hash_threads,
            hash_cost, delivery_window, delivery_window_bytes, max_outbound, max_outbound_total,
            fanout_rate, fanout_burst, max_rooms_per_conn, max_inbox_bytes, worker_queue, max_batch,
            shutdown_grace, max_connections, token_ttl, max_devices, device_expiry, max_group_members,
            max_groups_per_user, group_retention, history, delete_window, max_staff_per_shop,
            max_support_per_user, max_room_members, broadcast_by_anyone, max_subscriptions,
            max_connections_per_ip, request_rate, request_burst, login_free_attempts,
            login_address_free_attempts, login_account_free_attempts, login_backoff,
            login_backoff_max, register_per_address, register_total, register_queue, login_queue,
            hello_timeout, login_timeout, max_unauthenticated, max_unauthenticated_per_ip,
            max_frame_before_login, fd_reserve, stats_interval, dedup_window, dedup_capacity,
            cache_bytes, sync, log_segment_bytes, start_damaged, push, cluster,
        );
    }

    #[test]
    fn flags_in_seconds_and_mib_convert() {
        let flags = Flags::try_parse_from([
            "confabd",
            "--heartbeat",
            "7",
            "--stats-interval",
            "0",
            "--cache-mib",
            "3",
            "--fanout-rate-mib",
            "5",
            "--sync",
            "none",
            "--history-days",
            "2",
            "--delete-window-mins",
            "15",
        ])
        .expect("valid flags");
        let config = flags.config();
        assert_eq!(config.history, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(config.delete_window, Duration::from_secs(15 * 60));
        assert_eq!(config.heartbeat, Duration::from_secs(7));
        assert_eq!(config.stats_interval, Duration::ZERO, "zero turns the statistics line off");
        assert_eq!(config.cache_bytes, 3 * 1024 * 1024);
        assert_eq!((config.fanout_rate, config.fanout_burst), (5 * 1024 * 1024, 10 * 1024 * 1024));
        assert_eq!(config.sync, SyncPolicy::None);
    }

    #[test]
    fn cluster_flags_make_a_cluster_config() {
        let parse =
            |args: &[&str]| Flags::try_parse_from([&["confabd"], args].concat()).expect("valid flags").cluster();
        assert!(parse(&[]).expect("no cluster").is_none());
        let config =
            parse(&["--cluster", "nats://a:4222,nats://b:4222", "--node-id", "2", "--nodes", "1=a:7420,2=b:7420"])
                .expect("valid")
                .expect("a cluster");
        assert_eq!(config.urls, vec!["nats://a:4222", "nats://b:4222"]);
        assert_eq!((config.membership.me, config.name.as_str()), (2, "confab"));
        assert!(parse(&["--cluster", "nats://a:4222", "--nodes", "1=a:7420"]).is_err(), "no --node-id");
        assert!(parse(&["--cluster", "nats://a:4222", "--node-id", "1"]).is_err(), "no node list");
        assert!(parse(&["--node-id", "1", "--nodes", "1=a:7420"]).is_err(), "no --cluster");
        let named = |name: &str| {
            parse(&["--cluster", "nats://a:4222", "--node-id", "1", "--nodes", "1=a:7420", "--cluster-name", name])
        };
        assert!(named("chat-eu_1").is_ok());
        assert!(named("a.b").is_err() && named("a*").is_err() && named("").is_err(), "not a subject token");
    }

    #[test]
    fn help_shows_the_defaults_in_the_flags_units() {
        let help = Flags::command().render_long_help().to_string();
        for shown in [
            "[default: 127.0.0.1:7420]",
            "[default: confab-data]",
            "[default: 60]",
            "[default: 128]",
            "[default: batch]",
        ] {
            assert!(help.contains(shown), "--help lacks {shown}:\n{help}");
        }
    }
}
