//! confab as a cluster (docs/CLUSTER.md): three real confabd nodes on a real nats-server,
//! all on 127.0.0.1, each node with a temporary data directory, spoken to over TCP. Every
//! user has a home node; the tests choose usernames by their home ([`homed_on`]) and
//! then play protocol scenarios across nodes: redirects at login, direct messages,
//! ordering and idempotency, sent copies, read receipts, deletions, presence, a node
//! killed or stopped, the bus killed, and the administration commands on a node's data
//! directory.
//!
//! Waiting is bounded everywhere: the client's read timeout for every frame, and
//! [`RECOVERY`] for what a cluster notices by itself (a node or the bus gone or back),
//! polled with a deadline and never assumed after a sleep. A test gets its cluster once
//! every node has reached every other over the bus ([`TestCluster::start`]).

mod admin_cli;
mod bus_down;
mod deletion;
mod direct;
mod groups;
mod listings;
mod node_down;
mod ordering;
mod presence;
mod push;
mod read_receipts;
mod redirect;
mod rooms;
mod sent_copies;
mod services;
mod stop;

use crate::common::{in_default, login_device, PASSWORD};
use confab::client::{Client, ClientError, ClientResult};
use confab::cluster::home_of;
use confab::protocol::{ClientMsgId, Content, ErrorCode, Message, Reply, Request, Seq};
use confab_testd::cluster::NODE_IDS;
use confab_testd::{Cluster, NatsServer};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a cluster may take to notice by itself that a node or the bus went away or came
/// back (its own timeouts and reconnection backoff), before a test calls it stuck.
/// Generous: only a failing test waits this long.
pub const RECOVERY: Duration = Duration::from_secs(60);

/// The longest a test waits between two attempts of a request refused with
/// `Unavailable`, whatever retry time the server named.
const RETRY_CAP: Duration = Duration::from_secs(1);

/// How long a node waits for another's answer (`--cluster-timeout-ms`): well below the
/// client's read timeout (10 s), so that a request to a node that does not answer gets
/// its `Unavailable` before the test's client gives up on the reply.
const CLUSTER_TIMEOUT_MS: &str = "2000";

/// A nats-server and three confabd nodes on it. Dropping it kills them all and removes
/// their data.
pub struct TestCluster {
    /// Declared first: the nodes go before the bus they use.
    pub nodes: Cluster,
    pub nats: NatsServer,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        TestCluster::with_flags(&[])
    }

    /// A cluster whose nodes get `flags` besides the tests' own.
    pub fn with_flags(flags: &[&str]) -> TestCluster {
        let nats = NatsServer::start();
        let confabd = Path::new(env!("CARGO_BIN_EXE_confabd"));
        let flags = [&["--cluster-timeout-ms", CLUSTER_TIMEOUT_MS], flags].concat();
        let nodes = Cluster::start(confabd, &nats.url(), &flags);
        let cluster = TestCluster { nodes, nats };
        cluster.wait_until_connected();
        cluster
    }

    /// Returns once every node reaches every other over the bus. A node listens before it
    /// has connected to nats-server, and until then refuses what needs another node with
    /// `Unavailable`, as it should; a test must not take that for the behaviour it tests.
    /// The proof is a receipted message from a user of each node to a user of each other
    /// node (users `probeN`, no test's), retried while `Unavailable`.
    fn wait_until_connected(&self) {
        let probes: Vec<String> = NODE_IDS.iter().map(|&node| homed_on(node, "probe")).collect();
        self.register(&probes.iter().map(String::as_str).collect::<Vec<_>>());
        for from in &probes {
            let mut client = self.login(from);
            for (to, cmid) in probes.iter().filter(|to| *to != from).zip(1..) {
                let what = format!("a first message from {from} to {to}");
                retry_while_unavailable(&what, || client.send_text(to, ClientMsgId(cmid), "probe"))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }

    pub fn addr(&self, node: u32) -> SocketAddr {
        self.nodes.addr(node)
    }

    /// A client of `node`, past the Hello handshake.
    pub fn client(&self, node: u32) -> Client {
        connect(self.addr(node))
    }

    /// Registers each of `names` on its home node.
    pub fn register(&self, names: &[&str]) {
        for name in names {
            let mut client = self.client(home(name));
            client.register(name, PASSWORD).unwrap_or_else(|e| panic!("registering {name} at its home: {e}"));
        }
    }

    /// A client logged in as `name` (registered before) on its home node.
    pub fn login(&self, name: &str) -> Client {
        let mut client = self.client(home(name));
        client.login(name, PASSWORD).unwrap_or_else(|e| panic!("{name} logging in at its home: {e}"));
        client
    }

    /// Registers `name` on its home node and returns its client, logged in there.
    pub fn user(&self, name: &str) -> Client {
        self.register(&[name]);
        self.login(name)
    }

    /// A client logged in as `name` (registered before) on its home node from the named
    /// `device` (`LoginDevice`), and the `DeviceLoggedIn` reply.
    pub fn device(&self, name: &str, device: &str) -> (Client, Reply) {
        let mut client = self.client(home(name));
        let reply = login_device(&mut client, name, device);
        (client, reply)
    }
}

/// A client of the node at `addr`, past the Hello handshake.
pub fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, "cluster-tests").unwrap_or_else(|e| panic!("connecting to {addr}: {e}")).0
}

/// The home node of `name` (a user of the app `default`, as every client here says plain
/// Hello) in the three-node cluster.
pub fn home(name: &str) -> u32 {
    home_of(&in_default(name), &NODE_IDS).expect("the node list is not empty")
}

/// The first of `prefix0`, `prefix1`, ... whose home is `node`: a username for a test that
/// needs a user on that node. `prefix` tells the test's users apart.
pub fn homed_on(node: u32, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|name| home(name) == node)
        .unwrap_or_else(|| panic!("no name {prefix}N is homed on node {node}"))
}

/// Asserts that `result` is an `Unavailable` refusal with a retry time, and returns it.
pub fn unavailable<T: Debug>(result: ClientResult<T>) -> Duration {
    match result {
        Err(ClientError::Server { code: ErrorCode::Unavailable, retry_after_ms, message }) => {
            assert!(retry_after_ms > 0, "Unavailable without a retry time ({message})");
            Duration::from_millis(u64::from(retry_after_ms))
        }
        other => panic!("expected Unavailable with a retry time, got {other:?}"),
    }
}

/// Tries `attempt` again while it is refused with `Unavailable`, waiting the retry time
/// the server named (at most [`RETRY_CAP`]), for at most [`RECOVERY`]; returns the first
/// other outcome. For what must work again once the cluster has recovered by itself.
pub fn retry_while_unavailable<T>(what: &str, mut attempt: impl FnMut() -> ClientResult<T>) -> ClientResult<T> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        match attempt() {
            Err(ClientError::Server { code: ErrorCode::Unavailable, retry_after_ms, .. }) => {
                assert!(Instant::now() < deadline, "{what}: still Unavailable after {RECOVERY:?}");
                let wait = Duration::from_millis(u64::from(retry_after_ms)).min(RETRY_CAP);
                std::thread::sleep(wait);
            }
            outcome => return outcome,
        }
    }
}

pub fn text_of(content: &Content) -> String {
    String::from_utf8(content.body.clone()).expect("utf-8 body")
}

/// The next `count` stored messages pushed to `client`.
pub fn receive(client: &mut Client, count: usize) -> Vec<Message> {
    (0..count).map(|i| client.next_message().unwrap_or_else(|e| panic!("message {} of {count}: {e}", i + 1))).collect()
}

/// (seq, prev_seq, sender, text) of each message, to compare with what was sent.
pub fn summary(messages: &[Message]) -> Vec<(Seq, Seq, String, String)> {
    messages.iter().map(|m| (m.seq, m.prev_seq, m.from.clone(), text_of(&m.content))).collect()
}

/// What `Register` or a login request got on a node that is not the user's home:
/// `(node, address)` of its Redirect.
pub fn redirect_of(reply: ClientResult<Reply>) -> (u32, String) {
    match reply {
        Ok(Reply::Redirect { node, address }) => (node, address),
        other => panic!("expected a Redirect, got {other:?}"),
    }
}

/// A login request for `name` with [`PASSWORD`].
pub fn login_request(name: &str) -> Request {
    Request::Login { username: name.into(), password: PASSWORD.into() }
}
