//! Flags. One subcommand per scenario; the flags every scenario shares are global, so they
//! may come before or after the scenario name.

use crate::error::Error;
use clap::{Args, Parser, Subcommand};
use confab_proto::protocol::DEFAULT_APP;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
Load generator for confabd. One run = one scenario, bounded in time, talking only to --addr
and, in a cluster, to the nodes its answers redirect to.

Scenarios:
  direct       N clients send 1:1 messages to random other clients: closed loop (--window
               messages outstanding per sender until delivered) or open loop (--rate msg/s
               in total). Reports delivered/s, send-to-delivery and send-to-receipt latency,
               and checks that every receipted message was delivered exactly once.
               --devices D: every client is a user on D connections (devices d0..):
               each message must reach every device of its recipient exactly once (a
               delivery counts per device), and every other device of its sender
               exactly once as a sent copy.
  connections  opens and logs in C idle connections; setup rate, and server RSS per
               connection with --server-pid.
  offline      fills the inboxes of offline users, then logs them in and measures how fast
               the stored messages drain to them. --push-devices: each of them has a
               push device, so every stored message also goes to the server's push queue.
  login        rate of password logins and of token (resume) logins.
  group        G groups of M members (default 100 x 50; clients = G x M), every member
               sending stored messages to its group: closed loop (--window sends
               outstanding per sender until delivered to every other member) or open
               loop (--rate sends/s in total). Reports deliveries/s (each recipient
               counts), send-to-delivery and send-to-receipt latency, and checks that
               every receipted message reached each of the other M-1 members exactly once.
  room         the same shape with ephemeral rooms (live-only, nothing stored): checks
               that every room message reached each other member exactly once and that
               the server's Delivered count matched.
  soak         mixed traffic for --duration (default 600 s): direct and group messages
               at a fixed rate while clients disconnect and come back (resume tokens) at
               random; after a drain, every receipted message must have been delivered
               exactly once (redeliveries of unacknowledged messages after a reconnect
               are counted apart). With --server-pid, server RSS every second.
               --push-devices: every client registers a push device once, so what is
               stored for it while it is away also goes to the server's push queue.

Accounts ({prefix}0, {prefix}1, ...) are registered on first use; their resume tokens are
cached in --accounts-file so later runs log in without password hashing.

Cluster (protocol.md \"Cluster\"): --addr A,B,C (or --addr repeated) spreads the clients over
the nodes (client i starts at address i mod n); a login or register a node answers with
Redirect is made again at the user's home node, and the client stays there (at most 3
redirects in a row, then the connection fails as unexpected:redirect loop). When the
clients ended on more than one node, direct and soak also report the delivery latency
of messages whose sender and recipient are on the same node (same-node) and on
different ones (cross-node), and the details say how many clients each node has. Sends
and logins refused with Unavailable (the node holding the recipient or user is out of
reach) are made again after the server's retry_after_ms, sends with the same
client_msg_id, and are counted apart (send:Unavailable(retried),
retried:login:Unavailable).

CPU: every scenario runs one mio event loop on one thread (more with --threads), and
each loop can use up to one core. Measured on the 2-core benchmark machine: about 1% of a
core per 1,000 messages/s (each message is a send, a receipt, a delivery and its share of
an ack), e.g. 10-18% of a core at 13,000 delivered/s with 20,000/s offered; about 5% of a
core per 1,000 new connections/s (connection setup, login churn). By extrapolation one
thread would reach roughly 100,000 messages/s (unverified: the server tops out far below
that); beyond, use --threads 2.

The load generator shares the machine with the server, so every report states both
processes' CPU (the server's needs --server-pid): a load generator near 100% of a core
means it, not the server, was the limit.

Group and room runs cost the load generator mostly per delivery: one send to a group of 50
is 49 deliveries to read, decode and (for groups) acknowledge. Rough figures from single
3 s runs of 100 x 50 (release build, busy 2-core machine): 19,600 deliveries/s (--rate 400)
took 31% of a core for groups, 17% for rooms; closed loop, 500,000 group deliveries/s took
38% and 800,000 room deliveries/s 52%. --threads splits the groups (rooms) between event
loops, each group on one.

The exit status is non-zero when a receipted message was lost (with --devices: missed by
any device of its recipient, or its sent copy by any other device of its sender), when a
message was delivered twice without a reconnect to explain it, or when the run could not
start.";

#[derive(Parser, Debug)]
#[command(name = "confab-loadgen", version, about = "Load generator for confabd", long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// The server to load; in a cluster, its nodes: "A,B,C" or the flag repeated. Clients
    /// are spread over them and follow the redirects to their home nodes.
    #[arg(long = "addr", value_name = "ADDR", global = true, value_delimiter = ',', default_value = "127.0.0.1:7420")]
    pub addrs: Vec<SocketAddr>,
    /// Loopback source addresses for client sockets: "auto", a list
    /// ("127.0.0.1,127.0.0.2") or a range ("127.0.0.1-127.0.0.4"). One address has about
    /// 28,000 ports and confabd admits 4,096 connections per address by default; auto
    /// uses 127.0.0.1 and one more address per 4,000 connections.
    #[arg(long, global = true, default_value = "auto")]
    pub source_addrs: String,
    /// Resume tokens of the load generator's accounts, per server address.
    #[arg(long, global = true, default_value = "loadgen-accounts.json")]
    pub accounts_file: PathBuf,
    /// The app (tenant) the load generator's users are in: a `HelloApp` naming it, or a
    /// plain `Hello` for `default`. The server must host it (`confabd app add`).
    #[arg(long, global = true, default_value = DEFAULT_APP)]
    pub app: String,
    /// Account names are this prefix plus a number.
    #[arg(long, global = true, default_value = "lg-")]
    pub prefix: String,
    /// Write machine-readable results here.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Draw latency, throughput and CPU per second into this SVG file.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,
    /// The server's process id: its CPU and RSS are sampled from /proc.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Connection setups (connect + login) in flight at once.
    #[arg(long, global = true, default_value_t = 500)]
    pub setup_concurrency: usize,
    /// Seconds allowed for preparing accounts and opening connections.
    #[arg(long, global = true, default_value_t = 180.0)]
    pub setup_timeout: f64,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// 1:1 messages between N clients (closed loop, or open loop with --rate).
    Direct(DirectArgs),
    /// Hold C idle logged-in connections: setup rate and server RSS per connection.
    Connections(ConnectionsArgs),
    /// Fill offline users' inboxes, then measure how fast they drain at login.
    Offline(OfflineArgs),
    /// Password logins per second, then token logins per second.
    Login(LoginArgs),
    /// Stored group messages: G groups of M members, each member sending to its group.
    Group(GroupArgs),
    /// Live-only room messages: R rooms of M members, each member sending to its room.
    Room(RoomArgs),
    /// Mixed traffic with disconnects and reconnects for a long time; exactly-once check
    /// and server memory over the run.
    Soak(SoakArgs),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Direct(_) => "direct",
            Scenario::Connections(_) => "connections",
            Scenario::Offline(_) => "offline",
            Scenario::Login(_) => "login",
            Scenario::Group(_) => "group",
            Scenario::Room(_) => "room",
            Scenario::Soak(_) => "soak",
        }
    }
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct DirectArgs {
    /// Clients, each with its own connection and inbox.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Message body size in bytes (at least 28: the stamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Closed loop: messages each sender keeps outstanding until delivered.
    #[arg(long, default_value_t = 1)]
    pub window: u32,
    /// Open loop instead: this many messages per second in total, spread evenly.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at most to wait after sending stops for receipted messages to arrive.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Event-loop threads (each can use a core; the clients are split between them).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Connections per client, each a named device of its user (d0, d1, ...): every
    /// message must reach each device of its recipient once, and each other device of
    /// its sender once as a sent copy. 1: one connection that names no device.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ConnectionsArgs {
    /// Connections to open and log in.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Seconds to hold them idle before the final RSS reading.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct OfflineArgs {
    /// Offline users whose inboxes are filled.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Messages stored per offline user.
    #[arg(long, default_value_t = 2500)]
    pub messages: usize,
    /// Online senders filling the inboxes.
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Sends each sender keeps outstanding until receipted while filling.
    #[arg(long, default_value_t = 16)]
    pub window: u32,
    /// Message body size in bytes (at least 28).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds allowed for each of the fill and the drain.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Every recipient registers a push device (SetPushDevice, Fcm) before it goes
    /// offline, so that the fill also loads the server's push queue.
    #[arg(long)]
    pub push_devices: bool,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct LoginArgs {
    /// Accounts the logins rotate over (at least --parallel, so no login kicks another).
    #[arg(long, default_value_t = 200)]
    pub accounts: usize,
    /// Logins in flight at once, each on a fresh connection.
    #[arg(long, default_value_t = 32)]
    pub parallel: usize,
    /// Seconds of each kind of login before its measured part begins.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds measured for each kind of login.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct GroupArgs {
    /// Groups (clients = groups × members, one group per client).
    #[arg(long, default_value_t = 100)]
    pub groups: usize,
    /// Members per group, each a client with its own connection (the server allows 1000).
    #[arg(long, default_value_t = 50)]
    pub members: usize,
    /// Message body size in bytes (at least 28: the stamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Closed loop: messages each sender keeps outstanding until every other member has it.
    #[arg(long, default_value_t = 1)]
    pub window: u32,
    /// Open loop instead: this many sends per second in total (each is members-1 deliveries).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at most to wait after sending stops for receipted messages to arrive.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Event-loop threads (the groups are split between them, each group on one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct RoomArgs {
    /// Rooms (clients = rooms × members, one room per client).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Members per room, each a client with its own connection.
    #[arg(long, default_value_t = 50)]
    pub members: usize,
    /// Message body size in bytes (at least 28: the stamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Closed loop: messages each sender keeps outstanding until every other member has it.
    #[arg(long, default_value_t = 1)]
    pub window: u32,
    /// Open loop instead: this many sends per second in total (each is members-1 deliveries).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at most to wait after sending stops for the last messages to arrive.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Event-loop threads (the rooms are split between them, each room on one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct SoakArgs {
    /// Clients, each with one connection (while connected) and its inbox.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Direct messages per second in total (stored), from random connected clients to
    /// random other clients, connected or not.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Group messages per second in total, from random connected members.
    #[arg(long, default_value_t = 20)]
    pub group_rate: u64,
    /// Groups, made of the first groups × group-members clients (0: no group traffic).
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// Members per group.
    #[arg(long, default_value_t = 20)]
    pub group_members: usize,
    /// Disconnects per second: a random connected client drops its connection.
    #[arg(long, default_value_t = 5.0)]
    pub churn: f64,
    /// A disconnected client reconnects (token login) after a random time up to this many
    /// seconds.
    #[arg(long, default_value_t = 5.0)]
    pub away: f64,
    /// Seconds of traffic (any length; a long run keeps one summary per second).
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Seconds at most, after the traffic stops and everyone is back, for every receipted
    /// message to arrive.
    #[arg(long, default_value_t = 30.0)]
    pub drain: f64,
    /// Message body size in bytes (at least 28).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Every client registers a push device (SetPushDevice, Fcm) once, after its first
    /// login, so that messages stored for it while it is away also load the push queue.
    #[arg(long)]
    pub push_devices: bool,
}

impl Common {
    /// `--addr` without repeats, in the order given (a repeat would only skew the spread).
    pub fn targets(&self) -> Vec<SocketAddr> {
        let mut targets: Vec<SocketAddr> = Vec::with_capacity(self.addrs.len());
        for addr in &self.addrs {
            if !targets.contains(addr) {
                targets.push(*addr);
            }
        }
        targets
    }
}

/// The source addresses to bind client sockets to, for a run of `connections` sockets.
pub fn source_addrs(spec: &str, connections: usize) -> Result<Vec<Ipv4Addr>, Error> {
    let bad = |reason| Error::SourceAddrs { spec: spec.to_string(), reason };
    let addrs: Vec<Ipv4Addr> = if spec == "auto" {
        let n = connections.div_ceil(4_000).clamp(1, 250) as u8;
        (1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
    } else if let Some((from, to)) = spec.split_once('-') {
        let from: Ipv4Addr = from.trim().parse().map_err(|_| bad("not an IPv4 address"))?;
        let to: Ipv4Addr = to.trim().parse().map_err(|_| bad("not an IPv4 address"))?;
        let (a, b) = (u32::from(from), u32::from(to));
        if b < a || b - a > 65_535 {
            return Err(bad("the range is empty or too large"));
        }
        (a..=b).map(Ipv4Addr::from).collect()
    } else {
        spec.split(',').map(|s| s.trim().parse().map_err(|_| bad("not an IPv4 address"))).collect::<Result<_, _>>()?
    };
    if addrs.is_empty() {
        return Err(bad("no address"));
    }
    if !addrs.iter().all(Ipv4Addr::is_loopback) {
        return Err(bad("source addresses must be loopback (127.0.0.0/8)"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs() {
        assert_eq!(source_addrs("auto", 1000).unwrap().len(), 1);
        assert_eq!(source_addrs("auto", 19_000).unwrap().len(), 5);
        let range = source_addrs("127.0.0.1-127.0.0.4", 1).unwrap();
        assert_eq!(range.len(), 4);
        assert_eq!(range[3], Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(source_addrs("127.0.0.9, 127.1.0.1", 1).unwrap().len(), 2);
        assert!(source_addrs("10.0.0.1", 1).is_err());
        assert!(source_addrs("127.0.0.5-127.0.0.1", 1).is_err());
        assert!(source_addrs("nonsense", 1).is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["confab-loadgen", "direct", "--clients", "20", "--json", "out.json"]).unwrap();
        assert_eq!(cli.scenario.name(), "direct");
        assert_eq!(cli.common.json, Some(PathBuf::from("out.json")));
        let cli = Cli::try_parse_from(["confab-loadgen", "group", "--groups", "3", "--members", "4"]).unwrap();
        assert_eq!(cli.scenario.name(), "group");
        let cli = Cli::try_parse_from(["confab-loadgen", "soak", "--duration", "7200"]).unwrap();
        assert_eq!(cli.scenario.name(), "soak");
        assert!(matches!(cli.scenario, Scenario::Soak(SoakArgs { push_devices: false, .. })));
        let cli = Cli::try_parse_from(["confab-loadgen", "soak", "--push-devices"]).unwrap();
        assert!(matches!(cli.scenario, Scenario::Soak(SoakArgs { push_devices: true, .. })));
        let cli = Cli::try_parse_from(["confab-loadgen", "offline"]).unwrap();
        assert!(matches!(cli.scenario, Scenario::Offline(OfflineArgs { push_devices: false, .. })));
        let cli = Cli::try_parse_from(["confab-loadgen", "offline", "--push-devices"]).unwrap();
        assert!(matches!(cli.scenario, Scenario::Offline(OfflineArgs { push_devices: true, .. })));
    }

    #[test]
    fn one_address_or_several() {
        let addrs = |args: &[&str]| {
            let cli = Cli::try_parse_from(["confab-loadgen"].iter().chain(args).chain(&["direct"])).unwrap();
            cli.common.targets().iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(addrs(&[]), ["127.0.0.1:7420"]);
        assert_eq!(addrs(&["--addr", "127.0.0.1:1"]), ["127.0.0.1:1"]);
        assert_eq!(addrs(&["--addr", "127.0.0.1:1,127.0.0.1:2"]), ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(
            addrs(&["--addr", "127.0.0.1:1", "--addr", "127.0.0.1:2,127.0.0.1:3", "--addr", "127.0.0.1:1"]),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
        assert!(Cli::try_parse_from(["confab-loadgen", "--addr", "127.0.0.1:1,nonsense", "direct"]).is_err());
    }
}
