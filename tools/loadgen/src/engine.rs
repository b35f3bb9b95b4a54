//! The load generator's event loop: one mio `Poll` and the client connections it drives.
//!
//! The engine does everything that is the same in every scenario: non-blocking connects
//! from chosen source addresses, the Hello/Resume/Login/Register dance with its fallbacks,
//! framing, sequence tracking and acknowledgements of the inbox and of every group
//! conversation. A scenario sees only what it cares about through [`Handler`]: a connection
//! became ready, a message or a live push arrived, one of its own requests was answered, a
//! connection went down.
//!
//! In a cluster (protocol.md "Cluster") the engine spreads new accounts over the addresses
//! it was given and follows a `Redirect` answer to a login or register by connecting again
//! at the user's home node, which it remembers for every later connection of that account
//! (`home.rs`); a scenario sees only the connection becoming ready there.
//!
//! Output is buffered per connection and written once per loop turn, so a turn that
//! answers several deliveries on one connection costs one `write`. Each read is
//! timestamped as soon as it returns, before any decoding, so decoding cost never counts
//! as server latency.

use crate::accounts::Accounts;
use crate::clock::now_ns;
use crate::error::Fault;
use confab_proto::frame;
use confab_proto::protocol::{
    ClientFrame, Conversation, ErrorCode, GroupId, Message, Push, Reply, Request, Seq, DEFAULT_APP, PROTOCOL_VERSION,
};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

mod home;
mod session;
mod socket;

use socket::open_socket;

/// Token of the cross-thread waker; connection tokens are their slot index.
pub const WAKE_TOKEN: Token = Token(usize::MAX);
/// Request ids with this bit are the engine's own (Hello, logins, acks, pings); the rest
/// belong to the scenario.
const CONTROL: u32 = 0x8000_0000;
/// Largest server frame accepted; the server's own limit on pushes is far below this.
const MAX_SERVER_FRAME: u32 = 16 * 1024 * 1024;
/// Bytes read from one connection per turn before the others get theirs.
const READ_BUDGET: usize = 256 * 1024;
/// Buffers above this are released when empty, so 19,000 idle connections stay small.
const KEEP_CAPACITY: usize = 16 * 1024;
/// Linux's EINPROGRESS: a non-blocking connect that has started.
const EINPROGRESS: i32 = 115;

/// How a connection logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Resume with a cached token; without one, register (an existing account answers
    /// NameTaken) and log in with the password. Registering first matters: the server
    /// throttles a source address after a few failed logins, and "no such user" is one.
    Auto,
    /// Password login only (the `login` scenario measures exactly that).
    Password,
    /// Token login only.
    Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle,
    Connecting,
    AwaitHello,
    Resuming,
    LoggingIn,
    Registering,
    Ready,
}

/// One group conversation of a connection, tracked as protocol.md's client algorithm does:
/// a member is not pushed its own messages, so continuity is judged by `prev_seq`, and the
/// member's own sequences (from its receipts) are passed over so that they get acked too.
#[derive(Debug)]
pub struct GroupCursor {
    pub id: GroupId,
    /// The highest sequence processed this session: received, or the member's own right
    /// after it. None until the session's first push of this group.
    pub position: Option<Seq>,
    /// The member's own sequences beyond `position` (known from its receipts).
    own: BTreeSet<Seq>,
    ack_sent: Seq,
    pub ack_confirmed: Seq,
    ack_in_flight: bool,
    /// The highest ack the server confirmed, over every session of the account.
    pub acked_ever: Seq,
}

impl GroupCursor {
    fn new(id: GroupId) -> Self {
        GroupCursor {
            id,
            position: None,
            own: BTreeSet::new(),
            ack_sent: Seq::ZERO,
            ack_confirmed: Seq::ZERO,
            ack_in_flight: false,
            acked_ever: Seq::ZERO,
        }
    }

    /// A new session starts from wherever the server's ack is; own sequences stay known.
    fn new_session(&mut self) {
        self.position = None;
        self.ack_sent = Seq::ZERO;
        self.ack_confirmed = Seq::ZERO;
        self.ack_in_flight = false;
    }

    /// Moves the position over the member's own messages right after it.
    fn advance_own(&mut self) {
        let Some(mut pos) = self.position else {
            return;
        };
        while let Some(&first) = self.own.first() {
            if first > pos + 1 {
                break;
            }
            pos = pos.max(first);
            self.own.pop_first();
        }
        self.position = Some(pos);
    }

    fn settled(&self) -> bool {
        self.position.is_none_or(|pos| pos <= self.ack_confirmed)
    }
}

pub struct Conn {
    stream: Option<TcpStream>,
    /// Bumped whenever the socket changes, so a handler that closed or reconnected this
    /// slot mid-dispatch is noticed and stale input is not processed.
    generation: u64,
    pub account: usize,
    pub state: State,
    auth: Auth,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Already in the engine's flush list this turn.
    queued: bool,
    /// The server address of the current socket (a cluster's node).
    pub addr: SocketAddr,
    /// Redirects followed by the login under way (see `home.rs`).
    hops: u8,
    /// The inbox sequence expected next.
    pub next_seq: Seq,
    ack_sent: Seq,
    pub ack_confirmed: Seq,
    ack_in_flight: bool,
    /// The inbox's last sequence when the login answered: what is owed from before.
    pub login_last_seq: Seq,
    pub login_acked: Seq,
    /// The highest inbox ack the server confirmed, over every session of the account.
    pub inbox_acked_ever: Seq,
    /// The group conversations this account has received pushes of.
    pub groups: Vec<GroupCursor>,
    /// Acks in flight (control request id, conversation), to route a refusal.
    acks_out: Vec<(u32, Conversation)>,
    pub setup_started_ns: u64,
    pub auth_sent_ns: u64,
    pub last_write_ns: u64,
}

impl Conn {
    fn new() -> Self {
        Conn {
            stream: None,
            generation: 0,
            account: 0,
            state: State::Idle,
            auth: Auth::Auto,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            queued: false,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            hops: 0,
            next_seq: Seq(1),
            ack_sent: Seq::ZERO,
            ack_confirmed: Seq::ZERO,
            ack_in_flight: false,
            login_last_seq: Seq::ZERO,
            login_acked: Seq::ZERO,
            inbox_acked_ever: Seq::ZERO,
            groups: Vec::new(),
            acks_out: Vec::new(),
            setup_started_ns: 0,
            auth_sent_ns: 0,
            last_write_ns: 0,
        }
    }

    /// Logged in, and everything the inbox held at login has been received and acked.
    pub fn inbox_settled(&self) -> bool {
        self.state == State::Ready && self.ack_confirmed >= self.login_last_seq
    }

    pub fn group(&self, id: GroupId) -> Option<&GroupCursor> {
        self.groups.iter().find(|g| g.id == id)
    }

    fn group_mut(&mut self, id: GroupId) -> &mut GroupCursor {
        let i = match self.groups.iter().position(|g| g.id == id) {
            Some(i) => i,
            None => {
                self.groups.push(GroupCursor::new(id));
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }
}

/// What a scenario hears from the engine. Every callback may use the engine freely,
/// including closing or reconnecting the connection it is told about.
pub trait Handler {
    /// The connection logged in.
    fn ready(&mut self, eng: &mut Engine, c: usize, now: u64);
    /// A stored message (or group event) arrived, after the engine's sequence bookkeeping;
    /// the engine acknowledges it.
    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64);
    /// A copy of a message the user sent to `to` from another device (or from this one
    /// while it was behind), after the engine's inbox bookkeeping; the engine acknowledges
    /// it. Only connections of named devices get them.
    fn sent_copy(&mut self, _eng: &mut Engine, _c: usize, _to: String, _msg: Message, _now: u64) {}
    /// A live-only push arrived (room, transient, broadcast, presence, service notice).
    fn push(&mut self, _eng: &mut Engine, _c: usize, _push: Push, _now: u64) {}
    /// The answer to one of the scenario's own requests.
    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64);
    /// The connection failed to set up or dropped; its slot is idle now.
    fn down(&mut self, eng: &mut Engine, c: usize, was_ready: bool, fault: Fault, now: u64);
    /// An acknowledgement (of the inbox or a group) was confirmed.
    fn acked(&mut self, _eng: &mut Engine, _c: usize) {}
    /// Another thread woke this engine.
    fn woken(&mut self, _eng: &mut Engine, _now: u64) {}
}

pub struct Engine {
    poll: Poll,
    events: Events,
    ready_buf: Vec<(usize, bool, bool)>,
    pub conns: Vec<Conn>,
    /// The addresses given (`--addr`): an account's first connection goes to one of them.
    targets: Vec<SocketAddr>,
    /// Per account: the home node a redirect named, where its connections go from then on.
    homes: HashMap<usize, SocketAddr>,
    /// Redirects followed.
    pub redirects: u64,
    sources: Vec<Ipv4Addr>,
    next_source: usize,
    accounts: Accounts,
    /// The app every connection's Hello names.
    app: String,
    /// Accounts whose token changed this run (a new one, or a refused one forgotten).
    pub token_changes: Vec<usize>,
    /// Resumes refused (unknown, expired or revoked token, or an unknown user).
    pub stale_tokens: u64,
    /// Faults and oddities, by kind.
    pub errors: BTreeMap<String, u64>,
    flush_list: Vec<usize>,
    again: Vec<usize>,
    scratch: Box<[u8]>,
    control_ids: u32,
    /// The wait the server asked for with the error being handed to a handler, in ns
    /// (its retry_after_ms; 0 when it gave none): a handler that retries honours it.
    pub retry_after_ns: u64,
}

impl Engine {
    /// `targets`: the server's addresses (at least one), over which accounts are spread.
    pub fn new(targets: Vec<SocketAddr>, app: &str, sources: Vec<Ipv4Addr>, accounts: Accounts) -> io::Result<Engine> {
        if targets.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no server address"));
        }
        Ok(Engine {
            app: app.to_string(),
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            ready_buf: Vec::new(),
            conns: Vec::new(),
            targets,
            homes: HashMap::new(),
            redirects: 0,
            sources,
            next_source: 0,
            accounts,
            token_changes: Vec::new(),
            stale_tokens: 0,
            errors: BTreeMap::new(),
            flush_list: Vec::new(),
            again: Vec::new(),
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            retry_after_ns: 0,
            control_ids: 0,
        })
    }

    /// A waker other threads use to interrupt this engine's poll.
    pub fn waker(&self) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(self.poll.registry(), WAKE_TOKEN)?))
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Drops every cached token: after one was refused, the rest are most likely from an
    /// earlier server instance too, and each refusal counts as a failed login.
    pub fn forget_all_tokens(&mut self, accounts: &[usize]) {
        for &i in accounts {
            if self.accounts.token(i).is_some() {
                self.accounts.forget_token(i);
                self.token_changes.push(i);
            }
        }
    }

    pub fn has_token(&self, account: usize) -> bool {
        self.accounts.token(account).is_some()
    }

    pub fn count(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// Makes sure slots `0..n` exist.
    pub fn ensure_slots(&mut self, n: usize) {
        while self.conns.len() < n {
            self.conns.push(Conn::new());
        }
    }

    /// Every logged-in connection has had all it received acknowledged.
    pub fn acks_settled(&self) -> bool {
        self.conns.iter().all(|c| {
            c.state != State::Ready || (c.ack_confirmed + 1 >= c.next_seq && c.groups.iter().all(GroupCursor::settled))
        })
    }

    /// The member on `c` sent `seq` of group `id` (its receipt came): it is never pushed
    /// back, so the position passes over it once everything before it is in.
    pub fn group_own(&mut self, c: usize, id: GroupId, seq: Seq) {
        let cursor = self.conns[c].group_mut(id);
        if cursor.position.is_none_or(|pos| seq > pos) {
            cursor.own.insert(seq);
            cursor.advance_own();
        }
        self.maybe_ack(c);
    }

    pub fn is_ready(&self, c: usize) -> bool {
        self.conns[c].state == State::Ready
    }

    /// Starts connecting slot `c` as `account` (an identity of [`Accounts`]), at its home
    /// node if a redirect named one; the handler hears `ready` or `down`.
    pub fn connect(&mut self, c: usize, account: usize, auth: Auth) -> Result<(), Fault> {
        self.ensure_slots(c + 1);
        self.close(c);
        let target = self.home(self.accounts.account_of(account));
        let source = if self.sources.is_empty() {
            None
        } else {
            self.next_source = (self.next_source + 1) % self.sources.len();
            Some(self.sources[self.next_source])
        };
        let mut stream = open_socket(target, source).map_err(Fault::Connect)?;
        self.poll
            .registry()
            .register(&mut stream, Token(c), Interest::READABLE | Interest::WRITABLE)
            .map_err(Fault::Connect)?;
        let now = now_ns();
        let conn = &mut self.conns[c];
        if conn.account != account {
            conn.groups.clear();
            conn.inbox_acked_ever = Seq::ZERO;
        }
        for group in &mut conn.groups {
            group.new_session();
        }
        conn.acks_out.clear();
        conn.stream = Some(stream);
        conn.generation += 1;
        conn.addr = target;
        conn.hops = 0;
        conn.account = account;
        conn.auth = auth;
        conn.state = State::Connecting;
        conn.setup_started_ns = now;
        conn.next_seq = Seq(1);
        conn.ack_sent = Seq::ZERO;
        conn.ack_confirmed = Seq::ZERO;
        conn.ack_in_flight = false;
        let client = "confab-loadgen".to_string();
        let hello = match self.app.as_str() {
            DEFAULT_APP => Request::Hello { version: PROTOCOL_VERSION, client },
            app => Request::HelloApp { version: PROTOCOL_VERSION, client, app: app.to_string() },
        };
        self.control(c, hello);
        Ok(())
    }

    /// Closes the connection at once (an RST: no TIME_WAIT left behind on either side).
    pub fn close(&mut self, c: usize) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        if conn.stream.take().is_some() {
            conn.generation += 1;
        }
        conn.state = State::Idle;
        conn.rbuf.clear();
        conn.wbuf.clear();
        conn.wpos = 0;
        conn.ack_in_flight = false;
        if conn.rbuf.capacity() > KEEP_CAPACITY {
            conn.rbuf = Vec::new();
        }
        if conn.wbuf.capacity() > KEEP_CAPACITY {
            conn.wbuf = Vec::new();
        }
    }

    /// Queues one of the scenario's requests (`request_id` below 2^31).
    pub fn send(&mut self, c: usize, request_id: u32, request: Request) {
        debug_assert!(request_id & CONTROL == 0);
        self.queue(c, request_id, request);
    }

    /// Pings ready connections that have sent nothing for `idle_ns`, so a long hold does
    /// not hit the server's idle timeout.
    pub fn ping_idle(&mut self, idle_ns: u64, now: u64) {
        for c in 0..self.conns.len() {
            let conn = &self.conns[c];
            if conn.state == State::Ready && now.saturating_sub(conn.last_write_ns) > idle_ns {
                self.control(c, Request::Ping);
            }
        }
    }

    fn control(&mut self, c: usize, request: Request) -> u32 {
        self.control_ids = self.control_ids.wrapping_add(1);
        let id = CONTROL | (self.control_ids & !CONTROL);
        self.queue(c, id, request);
        id
    }

    fn queue(&mut self, c: usize, request_id: u32, request: Request) {
        let conn = &mut self.conns[c];
        frame::encode_into(&ClientFrame { request_id, request }, &mut conn.wbuf);
        if !conn.queued && conn.state != State::Connecting {
            conn.queued = true;
            self.flush_list.push(c);
        }
    }

    fn fail<H: Handler>(&mut self, c: usize, fault: Fault, h: &mut H) {
        let was_ready = self.conns[c].state == State::Ready;
        self.close(c);
        h.down(self, c, was_ready, fault, now_ns());
    }
}
