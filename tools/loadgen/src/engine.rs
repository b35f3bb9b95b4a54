//! The load generator's event loop: one mio `Poll` and the client connections it drives.
//!
//! The engine does everything that is the same in every scenario: non-blocking connects
//! from chosen source addresses, the Hello/Resume/Login/Register dance with its fallbacks,
//! framing, sequence tracking and acknowledgements of the inbox and of every group
//! conversation. A scenario sees only what it cares about through [`Handler`]: a connection
//! became ready, a message or a live push arrived, one of its own requests was answered, a
//! connection went down.
//!
//! Output is buffered per connection and written once per loop turn, so a turn that
//! answers several deliveries on one connection costs one `write`. Each read is
//! timestamped as soon as it returns, before any decoding, so decoding cost never counts
//! as server latency.

use crate::accounts::Accounts;
use crate::clock::now_ns;
use crate::error::Fault;
use confab::frame;
use confab::protocol::{
    ClientFrame, Conversation, ErrorCode, GroupEvent, Message, Push, Reply, Request, ServerFrame, PROTOCOL_VERSION,
};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

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
    pub id: u64,
    /// The highest sequence processed this session: received, or the member's own right
    /// after it. None until the session's first push of this group.
    pub position: Option<u64>,
    /// The member's own sequences beyond `position` (known from its receipts).
    own: BTreeSet<u64>,
    ack_sent: u64,
    pub ack_confirmed: u64,
    ack_in_flight: bool,
    /// The highest ack the server confirmed, over every session of the account.
    pub acked_ever: u64,
}

impl GroupCursor {
    fn new(id: u64) -> Self {
        GroupCursor {
            id,
            position: None,
            own: BTreeSet::new(),
            ack_sent: 0,
            ack_confirmed: 0,
            ack_in_flight: false,
            acked_ever: 0,
        }
    }

    /// A new session starts from wherever the server's ack is; own sequences stay known.
    fn new_session(&mut self) {
        self.position = None;
        self.ack_sent = 0;
        self.ack_confirmed = 0;
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
    /// The inbox sequence expected next.
    pub next_seq: u64,
    ack_sent: u64,
    pub ack_confirmed: u64,
    ack_in_flight: bool,
    /// The inbox's last sequence when the login answered: what is owed from before.
    pub login_last_seq: u64,
    pub login_acked: u64,
    /// The highest inbox ack the server confirmed, over every session of the account.
    pub inbox_acked_ever: u64,
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
            next_seq: 1,
            ack_sent: 0,
            ack_confirmed: 0,
            ack_in_flight: false,
            login_last_seq: 0,
            login_acked: 0,
            inbox_acked_ever: 0,
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

    pub fn group(&self, id: u64) -> Option<&GroupCursor> {
        self.groups.iter().find(|g| g.id == id)
    }

    fn group_mut(&mut self, id: u64) -> &mut GroupCursor {
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
    target: SocketAddr,
    sources: Vec<Ipv4Addr>,
    next_source: usize,
    accounts: Accounts,
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
}

impl Engine {
    pub fn new(target: SocketAddr, sources: Vec<Ipv4Addr>, accounts: Accounts) -> io::Result<Engine> {
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            ready_buf: Vec::new(),
            conns: Vec::new(),
            target,
            sources,
            next_source: 0,
            accounts,
            token_changes: Vec::new(),
            stale_tokens: 0,
            errors: BTreeMap::new(),
            flush_list: Vec::new(),
            again: Vec::new(),
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
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
    pub fn group_own(&mut self, c: usize, id: u64, seq: u64) {
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

    /// Starts connecting slot `c` as `account`; the handler hears `ready` or `down`.
    pub fn connect(&mut self, c: usize, account: usize, auth: Auth) -> Result<(), Fault> {
        self.ensure_slots(c + 1);
        self.close(c);
        let source = if self.sources.is_empty() {
            None
        } else {
            self.next_source = (self.next_source + 1) % self.sources.len();
            Some(self.sources[self.next_source])
        };
        let mut stream = open_socket(self.target, source).map_err(Fault::Connect)?;
        self.poll
            .registry()
            .register(&mut stream, Token(c), Interest::READABLE | Interest::WRITABLE)
            .map_err(Fault::Connect)?;
        let now = now_ns();
        let conn = &mut self.conns[c];
        if conn.account != account {
            conn.groups.clear();
            conn.inbox_acked_ever = 0;
        }
        for group in &mut conn.groups {
            group.new_session();
        }
        conn.acks_out.clear();
        conn.stream = Some(stream);
        conn.generation += 1;
        conn.account = account;
        conn.auth = auth;
        conn.state = State::Connecting;
        conn.setup_started_ns = now;
        conn.next_seq = 1;
        conn.ack_sent = 0;
        conn.ack_confirmed = 0;
        conn.ack_in_flight = false;
        let hello = Request::Hello { version: PROTOCOL_VERSION, client: "confab-loadgen".into() };
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

    /// One loop turn: wait for readiness (at most `timeout`), handle it, write out.
    pub fn turn<H: Handler>(&mut self, timeout: Option<Duration>, h: &mut H) -> io::Result<()> {
        let timeout = if self.again.is_empty() && self.flush_list.is_empty() { timeout } else { Some(Duration::ZERO) };
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let mut ready = std::mem::take(&mut self.ready_buf);
        ready.clear();
        for event in self.events.iter() {
            ready.push((
                event.token().0,
                event.is_readable() || event.is_read_closed() || event.is_error(),
                event.is_writable(),
            ));
        }
        for c in std::mem::take(&mut self.again) {
            ready.push((c, true, false));
        }
        let mut woken = false;
        for &(c, readable, writable) in &ready {
            if c == WAKE_TOKEN.0 {
                woken = true;
                continue;
            }
            if c >= self.conns.len() || self.conns[c].stream.is_none() {
                continue;
            }
            if writable {
                self.writable(c, h);
            }
            if readable {
                self.readable(c, h);
            }
        }
        self.ready_buf = ready;
        if woken {
            h.woken(self, now_ns());
        }
        self.flush(h);
        Ok(())
    }

    /// Writes every connection with queued output.
    pub fn flush<H: Handler>(&mut self, h: &mut H) {
        while !self.flush_list.is_empty() {
            for c in std::mem::take(&mut self.flush_list) {
                self.conns[c].queued = false;
                self.write_out(c, h);
            }
        }
    }

    /// For a connecting socket: Some(true) once connected, Some(false) while still
    /// connecting, None after reporting the failure.
    fn check_connected<H: Handler>(&mut self, c: usize, h: &mut H) -> Option<bool> {
        let conn = &mut self.conns[c];
        if conn.state != State::Connecting {
            return Some(true);
        }
        let stream = conn.stream.as_ref()?;
        let outcome = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(true) => {
                conn.state = State::AwaitHello;
                if !conn.queued {
                    conn.queued = true;
                    self.flush_list.push(c);
                }
                Some(true)
            }
            Ok(false) => Some(false),
            Err(e) => {
                self.fail(c, Fault::Connect(e), h);
                None
            }
        }
    }

    fn writable<H: Handler>(&mut self, c: usize, h: &mut H) {
        if self.check_connected(c, h) == Some(true) {
            self.write_out(c, h);
        }
    }

    fn write_out<H: Handler>(&mut self, c: usize, h: &mut H) {
        let conn = &mut self.conns[c];
        if conn.state == State::Connecting {
            return;
        }
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let mut failure = None;
        while conn.wpos < conn.wbuf.len() {
            match stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => {
                    failure = Some(Fault::Closed);
                    break;
                }
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(Fault::Io(e));
                    break;
                }
            }
        }
        conn.last_write_ns = now_ns();
        if conn.wpos == conn.wbuf.len() {
            conn.wbuf.clear();
            conn.wpos = 0;
            if conn.wbuf.capacity() > KEEP_CAPACITY {
                conn.wbuf = Vec::new();
            }
        } else if conn.wpos > conn.wbuf.len() / 2 {
            conn.wbuf.drain(..conn.wpos);
            conn.wpos = 0;
        }
        if let Some(fault) = failure {
            self.fail(c, fault, h);
        }
    }

    fn readable<H: Handler>(&mut self, c: usize, h: &mut H) {
        if self.check_connected(c, h) != Some(true) {
            return;
        }
        let generation = self.conns[c].generation;
        let mut total = 0;
        loop {
            let conn = &mut self.conns[c];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.fail(c, Fault::Closed, h);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let fault = if e.kind() == io::ErrorKind::ConnectionReset { Fault::Closed } else { Fault::Io(e) };
                    self.fail(c, fault, h);
                    return;
                }
            };
            // The arrival time of everything in this read, taken before decoding it.
            let now = now_ns();
            conn.rbuf.extend_from_slice(&self.scratch[..n]);
            if !self.decode(c, generation, now, h) {
                return;
            }
            total += n;
            if total >= READ_BUDGET {
                self.again.push(c);
                break;
            }
        }
        self.maybe_ack(c);
    }

    /// Handles every whole frame buffered; false if the connection changed under us.
    fn decode<H: Handler>(&mut self, c: usize, generation: u64, now: u64, h: &mut H) -> bool {
        let mut pos = 0;
        loop {
            let conn = &self.conns[c];
            let (decoded, used) = match frame::split(&conn.rbuf[pos..], MAX_SERVER_FRAME) {
                Ok(None) => break,
                Ok(Some((body, used))) => (frame::decode_body::<ServerFrame>(body), used),
                Err(e) => {
                    self.fail(c, Fault::Frame(e), h);
                    return false;
                }
            };
            pos += used;
            match decoded {
                Ok(server_frame) => self.dispatch(c, server_frame, now, h),
                Err(e) => {
                    self.fail(c, Fault::Frame(e), h);
                    return false;
                }
            }
            if self.conns[c].generation != generation {
                return false;
            }
        }
        let conn = &mut self.conns[c];
        if pos == conn.rbuf.len() {
            conn.rbuf.clear();
            if conn.rbuf.capacity() > KEEP_CAPACITY {
                conn.rbuf = Vec::new();
            }
        } else {
            conn.rbuf.drain(..pos);
        }
        true
    }

    fn dispatch<H: Handler>(&mut self, c: usize, server_frame: ServerFrame, now: u64, h: &mut H) {
        match server_frame {
            ServerFrame::Push(Push::Message(msg)) => {
                let kind = match msg.conversation {
                    Conversation::Inbox => {
                        let conn = &mut self.conns[c];
                        if msg.seq == conn.next_seq {
                            conn.next_seq += 1;
                            None
                        } else if msg.seq > conn.next_seq {
                            conn.next_seq = msg.seq + 1;
                            Some("inbox_seq_gap")
                        } else {
                            Some("inbox_seq_repeat")
                        }
                    }
                    Conversation::Group(id) => self.group_push(c, id, &msg),
                };
                if let Some(kind) = kind {
                    self.count(kind);
                }
                h.message(self, c, msg, now);
            }
            ServerFrame::Push(Push::Kicked { .. }) => self.count("kicked"),
            ServerFrame::Push(Push::ShuttingDown) => self.count("server_shutting_down"),
            ServerFrame::Push(push) => h.push(self, c, push, now),
            ServerFrame::Reply { request_id, reply } if request_id & CONTROL != 0 => {
                self.control_reply(c, request_id, Ok(reply), now, h)
            }
            ServerFrame::Error { request_id, code, .. } if request_id & CONTROL != 0 => {
                self.control_reply(c, request_id, Err(code), now, h)
            }
            ServerFrame::Error { request_id: 0, code, .. } => {
                if self.conns[c].state == State::Ready {
                    // The server closes after these; the close is reported then.
                    self.count(&format!("server:{code:?}"));
                } else {
                    self.fail(c, Fault::Server(code), h);
                }
            }
            ServerFrame::Reply { request_id, reply } => h.reply(self, c, request_id, Ok(reply), now),
            ServerFrame::Error { request_id, code, .. } => h.reply(self, c, request_id, Err(code), now),
        }
    }

    /// The bookkeeping of one group push; what is odd about it, if anything.
    fn group_push(&mut self, c: usize, id: u64, msg: &Message) -> Option<&'static str> {
        let conn = &mut self.conns[c];
        if matches!(msg.event, Some(GroupEvent::Deleted { .. })) {
            // Live only, beyond the last sequence: never acked (protocol.md "Groups").
            conn.groups.retain(|g| g.id != id);
            return None;
        }
        let cursor = conn.group_mut(id);
        let kind = match cursor.position {
            None => {
                cursor.position = Some(msg.seq);
                // The first push starts at the server's ack: below an ack it confirmed
                // earlier means the server forgot that ack.
                (msg.prev_seq < cursor.acked_ever).then_some("group_ack_regressed")
            }
            Some(pos) if msg.seq <= pos => Some("group_seq_repeat"),
            Some(pos) => {
                cursor.position = Some(msg.seq);
                (msg.prev_seq > pos).then_some("group_seq_gap")
            }
        };
        cursor.advance_own();
        kind
    }

    fn control_reply<H: Handler>(
        &mut self,
        c: usize,
        request_id: u32,
        reply: Result<Reply, ErrorCode>,
        now: u64,
        h: &mut H,
    ) {
        let (state, auth) = (self.conns[c].state, self.conns[c].auth);
        let ack_of = match self.conns[c].acks_out.iter().position(|(id, _)| *id == request_id) {
            Some(i) => Some(self.conns[c].acks_out.swap_remove(i).1),
            None => None,
        };
        match (state, reply) {
            (State::AwaitHello, Ok(Reply::Hello { .. })) => self.authenticate(c, now, h),
            (State::Resuming | State::LoggingIn, Ok(Reply::LoggedIn { acked, last_seq, resume_token, .. })) => {
                if acked < self.conns[c].inbox_acked_ever {
                    self.count("inbox_ack_regressed");
                }
                let conn = &mut self.conns[c];
                conn.state = State::Ready;
                conn.next_seq = acked + 1;
                conn.ack_sent = acked;
                conn.ack_confirmed = acked;
                conn.login_acked = acked;
                conn.login_last_seq = last_seq;
                let account = conn.account;
                if state == State::LoggingIn && !resume_token.is_empty() {
                    self.accounts.set_token(account, resume_token);
                    self.token_changes.push(account);
                }
                h.ready(self, c, now);
            }
            (State::Registering, Ok(Reply::Registered { .. })) => self.login(c, now),
            (State::Ready, Ok(Reply::Acked { conversation: Conversation::Inbox, up_to })) => {
                let conn = &mut self.conns[c];
                conn.ack_confirmed = conn.ack_confirmed.max(up_to);
                conn.inbox_acked_ever = conn.inbox_acked_ever.max(up_to);
                conn.ack_in_flight = false;
                h.acked(self, c);
                self.maybe_ack(c);
            }
            (State::Ready, Ok(Reply::Acked { conversation: Conversation::Group(id), up_to })) => {
                // None if the group was deleted meanwhile.
                if let Some(cursor) = self.conns[c].groups.iter_mut().find(|g| g.id == id) {
                    cursor.ack_confirmed = cursor.ack_confirmed.max(up_to);
                    cursor.acked_ever = cursor.acked_ever.max(up_to);
                    cursor.ack_in_flight = false;
                }
                h.acked(self, c);
                self.maybe_ack(c);
            }
            (_, Ok(Reply::Pong)) => {}
            (State::Resuming, Err(ErrorCode::InvalidToken)) if auth == Auth::Auto => {
                let account = self.conns[c].account;
                self.accounts.forget_token(account);
                self.token_changes.push(account);
                self.stale_tokens += 1;
                self.login(c, now);
            }
            (State::Resuming, Err(ErrorCode::UnknownUser)) if auth == Auth::Auto => {
                let account = self.conns[c].account;
                self.accounts.forget_token(account);
                self.token_changes.push(account);
                self.stale_tokens += 1;
                self.register(c, now)
            }
            (State::LoggingIn, Err(ErrorCode::UnknownUser)) if auth == Auth::Auto => self.register(c, now),
            (State::Registering, Err(ErrorCode::NameTaken)) if auth == Auth::Auto => self.login(c, now),
            (State::Ready, Err(code)) => {
                let conn = &mut self.conns[c];
                match ack_of {
                    Some(Conversation::Inbox) => conn.ack_in_flight = false,
                    // Deleted (its Deleted event came first) while the ack was on its way.
                    Some(Conversation::Group(id)) if conn.group(id).is_none() => return,
                    // The group is gone or we are no longer in it: stop acking it.
                    Some(Conversation::Group(id))
                        if matches!(code, ErrorCode::UnknownGroup | ErrorCode::NotAMember) =>
                    {
                        conn.groups.retain(|g| g.id != id)
                    }
                    Some(Conversation::Group(id)) => conn.group_mut(id).ack_in_flight = false,
                    None => {
                        self.count(&format!("control:{code:?}"));
                        return;
                    }
                }
                self.count(&format!("ack:{code:?}"));
            }
            (_, Err(code)) => self.fail(c, Fault::Auth(code), h),
            (_, Ok(_)) => self.fail(c, Fault::Unexpected("reply out of place"), h),
        }
    }

    fn authenticate<H: Handler>(&mut self, c: usize, now: u64, h: &mut H) {
        let account = self.conns[c].account;
        let token = self.accounts.token(account).map(<[u8]>::to_vec);
        match (self.conns[c].auth, token) {
            (Auth::Password, _) => self.login(c, now),
            (Auth::Auto, None) => self.register(c, now),
            (Auth::Auto | Auth::Token, Some(token)) => {
                self.conns[c].state = State::Resuming;
                self.conns[c].auth_sent_ns = now;
                let username = self.accounts.name(account).to_string();
                self.control(c, Request::Resume { username, token });
            }
            (Auth::Token, None) => self.fail(c, Fault::Unexpected("no cached token"), h),
        }
    }

    fn login(&mut self, c: usize, now: u64) {
        let account = self.conns[c].account;
        self.conns[c].state = State::LoggingIn;
        self.conns[c].auth_sent_ns = now;
        let request = Request::Login {
            username: self.accounts.name(account).to_string(),
            password: self.accounts.password(account),
        };
        self.control(c, request);
    }

    fn register(&mut self, c: usize, now: u64) {
        let account = self.conns[c].account;
        self.conns[c].state = State::Registering;
        self.conns[c].auth_sent_ns = now;
        let request = Request::Register {
            username: self.accounts.name(account).to_string(),
            password: self.accounts.password(account),
        };
        self.control(c, request);
    }

    /// Acknowledges what arrived, with at most one ack in flight per conversation (the
    /// delivery window is per conversation): under load the acks coalesce by themselves,
    /// when idle every message is acked at once.
    fn maybe_ack(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        if conn.state != State::Ready {
            return;
        }
        if !conn.ack_in_flight && conn.next_seq - 1 > conn.ack_sent {
            let up_to = conn.next_seq - 1;
            conn.ack_sent = up_to;
            conn.ack_in_flight = true;
            self.ack(c, Conversation::Inbox, up_to);
        }
        for i in 0..self.conns[c].groups.len() {
            let group = &mut self.conns[c].groups[i];
            match group.position {
                Some(pos) if !group.ack_in_flight && pos > group.ack_sent => {
                    group.ack_sent = pos;
                    group.ack_in_flight = true;
                    let id = group.id;
                    self.ack(c, Conversation::Group(id), pos);
                }
                _ => {}
            }
        }
    }

    fn ack(&mut self, c: usize, conversation: Conversation, up_to: u64) {
        let id = self.control(c, Request::Ack { conversation, up_to });
        self.conns[c].acks_out.push((id, conversation));
    }

    fn fail<H: Handler>(&mut self, c: usize, fault: Fault, h: &mut H) {
        let was_ready = self.conns[c].state == State::Ready;
        self.close(c);
        h.down(self, c, was_ready, fault, now_ns());
    }
}

fn open_socket(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    // Close with an RST: thousands of client sockets in TIME_WAIT would exhaust the
    // ports of a source address between runs.
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::from((source, 0)).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
