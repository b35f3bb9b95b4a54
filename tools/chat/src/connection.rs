//! The protocol-facing side of the client: one link at a time (see [`crate::link`] for
//! the socket, its reader thread and the [`NetEvent`]s it sends), the Hello handshake,
//! request ids matched to their replies, heartbeat pings, a server that stopped answering,
//! and reconnecting with backoff after a drop.
//!
//! It knows nothing about users or rendering: it reports what happened as [`ConnEvent`]s
//! and the application decides what they mean (for example, to log in again by token once
//! a new link is [`ConnEvent::Up`]). Every thread it starts tags its events with the link's
//! generation, so events of a link already replaced are recognised and dropped.

use crate::backoff::Backoff;
pub use crate::link::NetEvent;
use crate::link::{self, Link};
use confab_proto::protocol::{
    ClientFrame, ErrorCode, Push, Reply, Request, ServerFrame, DEFAULT_APP, PROTOCOL_VERSION,
};
use crossbeam_channel::Sender;
use std::collections::BTreeMap;
use std::fmt;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long the Hello may take before the link is given up.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Until the server's Hello says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const DEFAULT_DELIVERY_WINDOW: u32 = 1024;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Who asked for a request: the person at the keyboard, or the client itself (Hello, pings,
/// acks, logging in again after a drop). Renderers may stay quiet about the latter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    User,
    Auto,
}

/// A request on the wire, kept until its reply comes so the reply can be understood.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: u32,
    pub request: Request,
    pub origin: Origin,
    sent_at: Instant,
}

/// What the application hears from the connection.
#[derive(Debug)]
pub enum ConnEvent {
    /// The server accepted our Hello; requests may flow.
    Up {
        addr: String,
    },
    Reply {
        pending: Pending,
        reply: Reply,
    },
    /// An error frame: for a request of ours, or (`pending` None) for none in particular.
    Failed {
        pending: Option<Pending>,
        code: ErrorCode,
        message: String,
    },
    Push(Push),
    /// The link is gone. `unanswered` are the requests that never got a reply (they may
    /// or may not have been carried out); `retry` is the reconnect attempt planned, if any.
    Down {
        reason: String,
        unanswered: Vec<Pending>,
        retry: Option<(u32, Duration)>,
    },
    /// Connecting failed before any link existed.
    DialFailed {
        reason: String,
        retry: Option<(u32, Duration)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No link, or one still saying Hello.
    NotConnected,
    /// The write failed; the link is being torn down and a Down event will follow.
    Io(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConnected => write!(f, "not connected"),
            SendError::Io(e) => write!(f, "write failed: {e}"),
        }
    }
}

enum State {
    /// No link and none planned.
    Down,
    /// A reconnect is planned for `at`.
    Waiting {
        at: Instant,
    },
    /// A dialling thread is running.
    Dialling,
    /// TCP is up and Hello sent; only the Hello's own reply is awaited.
    Handshake {
        link: Link,
        since: Instant,
    },
    Ready {
        link: Link,
    },
}

pub struct Connection {
    events: Sender<NetEvent>,
    addr: String,
    /// The app its Hello names (`default`: a plain Hello).
    app: String,
    generation: u64,
    state: State,
    next_id: u32,
    pending: BTreeMap<u32, Pending>,
    heartbeat: Duration,
    idle_timeout: Duration,
    last_write: Instant,
    backoff: Backoff,
    reconnect: bool,
    /// Why we are closing the link ourselves, reported instead of the reader's "closed".
    closing_reason: Option<String>,
    /// Pushes the server sends per conversation before it waits for an ack.
    delivery_window: u32,
}

impl Connection {
    /// `events` is where this connection's threads report; hand every [`NetEvent`] read
    /// from it back to [`Connection::handle`].
    pub fn new(events: Sender<NetEvent>, seed: u64) -> Self {
        Connection {
            events,
            addr: String::new(),
            app: DEFAULT_APP.to_string(),
            generation: 0,
            state: State::Down,
            next_id: 1,
            pending: BTreeMap::new(),
            heartbeat: DEFAULT_HEARTBEAT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            last_write: Instant::now(),
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_MAX, seed),
            reconnect: true,
            closing_reason: None,
            delivery_window: DEFAULT_DELIVERY_WINDOW,
        }
    }

    /// Drops any current link (its unanswered requests are forgotten) and dials `addr`.
    /// Reconnecting after a later drop is switched on again.
    /// Says Hello in `app` from the next connect on (the app `default` by default).
    pub fn set_app(&mut self, app: &str) {
        self.app = app.to_string();
    }

    pub fn connect(&mut self, addr: &str) {
        self.addr = addr.to_string();
        self.reconnect = true;
        self.backoff.reset();
        self.pending.clear();
        self.dial();
    }

    /// Whether a drop is followed by reconnecting. Off after a Kicked push: coming back
    /// would take the session from the login that kicked us, and so on forever.
    pub fn set_reconnect(&mut self, on: bool) {
        self.reconnect = on;
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's delivery window (from its Hello): acks must come well before this
    /// many pushes are outstanding in a conversation, or delivery stalls.
    pub fn delivery_window(&self) -> u32 {
        self.delivery_window
    }

    /// Requests may be sent now.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// A link is being established or will be soon: commands are better held back than
    /// refused.
    pub fn is_coming_up(&self) -> bool {
        matches!(self.state, State::Waiting { .. } | State::Dialling | State::Handshake { .. })
    }

    /// Requests awaiting a reply, not counting heartbeats.
    pub fn awaiting(&self) -> usize {
        self.pending
            .values()
            .filter(|p| !matches!(p.request, Request::Ping | Request::Hello { .. } | Request::HelloApp { .. }))
            .count()
    }

    /// The requests still waiting for a reply, oldest first.
    pub fn unanswered(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }

    /// Sends a request on the ready link; returns its id.
    pub fn send(&mut self, request: Request, origin: Origin) -> Result<u32, SendError> {
        if !self.is_ready() {
            return Err(SendError::NotConnected);
        }
        self.transmit(request, origin)
    }

    /// Writes a request on whatever link there is (during the handshake: the Hello).
    fn transmit(&mut self, request: Request, origin: Origin) -> Result<u32, SendError> {
        let (State::Ready { link } | State::Handshake { link, .. }) = &mut self.state else {
            return Err(SendError::NotConnected);
        };
        let id = self.next_id;
        // Id 0 means "no request" in error frames; never use it.
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let frame = ClientFrame { request_id: id, request };
        if let Err(e) = link.write(&frame) {
            self.close(format!("write failed: {e}"));
            return Err(SendError::Io(e.to_string()));
        }
        let now = Instant::now();
        self.last_write = now;
        self.pending.insert(id, Pending { id, request: frame.request, origin, sent_at: now });
        Ok(id)
    }

    /// Interprets one event from the channel given to [`Connection::new`].
    pub fn handle(&mut self, event: NetEvent) -> Vec<ConnEvent> {
        match event {
            NetEvent::Dialled { generation, stream } if generation == self.generation => self.dialled(stream),
            NetEvent::DialFailed { generation, reason } if generation == self.generation => {
                let retry = self.plan_retry();
                vec![ConnEvent::DialFailed { reason, retry }]
            }
            NetEvent::Frame { generation, frame } if generation == self.generation => self.frame(*frame),
            NetEvent::Closed { generation, reason } if generation == self.generation => self.lost(reason),
            // A link we already replaced; its socket was shut down when it was.
            _ => Vec::new(),
        }
    }

    /// Timers: heartbeat pings, a server that stopped answering, a planned reconnect.
    pub fn tick(&mut self, now: Instant) {
        match &self.state {
            State::Waiting { at } if now >= *at => self.dial(),
            State::Handshake { since, .. } if now.duration_since(*since) > HELLO_TIMEOUT => {
                self.close("no answer to Hello".into())
            }
            State::Ready { .. } => {
                let stalled = self.pending.values().any(|p| now.duration_since(p.sent_at) > self.idle_timeout);
                if stalled {
                    self.close("the server stopped answering".into());
                } else if now.duration_since(self.last_write) >= self.heartbeat {
                    // A failed ping closes the link; the Down event follows from the reader.
                    let _ = self.send(Request::Ping, Origin::Auto);
                }
            }
            _ => {}
        }
    }

    /// How long the caller may sleep before [`Connection::tick`] has something to do.
    pub fn next_wakeup(&self, now: Instant) -> Duration {
        let at = match &self.state {
            State::Waiting { at } => *at,
            State::Handshake { since, .. } => *since + HELLO_TIMEOUT,
            State::Ready { .. } => {
                let ping = self.last_write + self.heartbeat;
                let stall = self.pending.values().map(|p| p.sent_at + self.idle_timeout).min();
                stall.map_or(ping, |s| s.min(ping))
            }
            State::Down | State::Dialling => now + Duration::from_secs(60),
        };
        at.saturating_duration_since(now).max(Duration::from_millis(5))
    }

    fn dial(&mut self) {
        self.generation += 1;
        self.state = State::Dialling;
        link::spawn_dial(self.generation, self.addr.clone(), self.events.clone());
    }

    fn dialled(&mut self, stream: TcpStream) -> Vec<ConnEvent> {
        let link = match Link::start(self.generation, stream, self.events.clone()) {
            Ok(link) => link,
            Err(e) => {
                let retry = self.plan_retry();
                return vec![ConnEvent::DialFailed { reason: format!("cannot read the socket: {e}"), retry }];
            }
        };
        self.state = State::Handshake { link, since: Instant::now() };
        let client = format!("confab-chat/{}", env!("CARGO_PKG_VERSION"));
        let hello = match self.app.as_str() {
            DEFAULT_APP => Request::Hello { version: PROTOCOL_VERSION, client },
            app => Request::HelloApp { version: PROTOCOL_VERSION, client, app: app.to_string() },
        };
        // A write failure closes the link, and the reader thread then reports it.
        let _ = self.transmit(hello, Origin::Auto);
        Vec::new()
    }

    fn frame(&mut self, frame: ServerFrame) -> Vec<ConnEvent> {
        match frame {
            ServerFrame::Push(push) => vec![ConnEvent::Push(push)],
            ServerFrame::Reply { request_id, reply } => {
                let Some(pending) = self.pending.remove(&request_id) else {
                    // Not ours (or already given up on): nothing can make sense of it.
                    return Vec::new();
                };
                match reply {
                    Reply::Hello { heartbeat_secs, idle_timeout_secs, delivery_window, .. } => {
                        self.delivery_window = delivery_window;
                        self.hello_accepted(heartbeat_secs, idle_timeout_secs)
                    }
                    Reply::Pong => Vec::new(),
                    reply => vec![ConnEvent::Reply { pending, reply }],
                }
            }
            ServerFrame::Error { request_id, code, message, retry_after_ms } => {
                let pending = self.pending.remove(&request_id);
                // The server's wait is exact; the person reading wants seconds.
                let message = match retry_after_ms {
                    0 => message,
                    ms => format!("{message} (retry in {:.1} s)", f64::from(ms) / 1000.0),
                };
                if matches!(
                    pending.as_ref().map(|p| &p.request),
                    Some(Request::Hello { .. } | Request::HelloApp { .. })
                ) {
                    // A server that refuses our Hello will refuse it again.
                    self.reconnect = false;
                }
                vec![ConnEvent::Failed { pending, code, message }]
            }
        }
    }

    fn hello_accepted(&mut self, heartbeat_secs: u32, idle_timeout_secs: u32) -> Vec<ConnEvent> {
        // Ping a little more often than asked, so a ping delayed by scheduling or a slow
        // network still lands inside the server's window.
        let heartbeat = Duration::from_secs(u64::from(heartbeat_secs.max(1)));
        self.heartbeat = heartbeat.mul_f64(0.8);
        self.idle_timeout = Duration::from_secs(u64::from(idle_timeout_secs.max(1))).max(heartbeat * 2);
        let state = std::mem::replace(&mut self.state, State::Dialling);
        self.state = match state {
            State::Handshake { link, .. } => State::Ready { link },
            other => other,
        };
        self.backoff.reset();
        vec![ConnEvent::Up { addr: self.addr.clone() }]
    }

    /// Shuts the link down; the reader thread then reports Closed, handled by `lost`.
    fn close(&mut self, reason: String) {
        if let State::Handshake { link, .. } | State::Ready { link } = &self.state {
            self.closing_reason = Some(reason);
            link.shut_down();
        }
    }

    fn lost(&mut self, reason: String) -> Vec<ConnEvent> {
        if !matches!(self.state, State::Handshake { .. } | State::Ready { .. }) {
            return Vec::new();
        }
        self.state = State::Down;
        let reason = self.closing_reason.take().unwrap_or(reason);
        let unanswered = std::mem::take(&mut self.pending).into_values().collect();
        let retry = self.plan_retry();
        vec![ConnEvent::Down { reason, unanswered, retry }]
    }

    fn plan_retry(&mut self) -> Option<(u32, Duration)> {
        if !self.reconnect {
            self.state = State::Down;
            return None;
        }
        let (attempt, delay) = self.backoff.next();
        self.state = State::Waiting { at: Instant::now() + delay };
        Some((attempt, delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::frame;
    use confab_proto::protocol::Content;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn recv(rx: &crossbeam_channel::Receiver<NetEvent>) -> NetEvent {
        rx.recv_timeout(Duration::from_secs(10)).expect("the connection reports within 10 s")
    }

    /// A fake server on a real socket: drives the connection through Hello, a reply, a
    /// push, and a drop followed by a planned reconnect.
    #[test]
    fn handshake_replies_pushes_and_reconnect_plan() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut conn = Connection::new(tx, 1);
        conn.connect(&addr);
        assert!(conn.is_coming_up());
        let (mut server, _) = listener.accept().expect("accept");

        assert!(conn.handle(recv(&rx)).is_empty(), "dialled");
        let mut buf = Vec::new();
        let hello: ClientFrame = read_client_frame(&mut server, &mut buf);
        assert!(matches!(hello.request, Request::Hello { version: PROTOCOL_VERSION, .. }));
        let reply = ServerFrame::Reply {
            request_id: hello.request_id,
            reply: Reply::Hello {
                version: PROTOCOL_VERSION,
                server: "fake".into(),
                max_frame: 1024,
                max_body: 512,
                heartbeat_secs: 30,
                idle_timeout_secs: 90,
                delivery_window: 64,
                limits: confab_proto::protocol::Limits {
                    request_rate: 100,
                    request_burst: 200,
                    delivery_window_bytes: 65_536,
                    max_outbound: 1 << 20,
                    token_ttl_secs: 3600,
                    max_frame_before_login: 1024,
                },
            },
        };
        server.write_all(&frame::encode(&reply)).expect("write");
        let events = conn.handle(recv(&rx));
        assert!(matches!(&events[..], [ConnEvent::Up { .. }]));
        assert!(conn.is_ready());
        assert_eq!(conn.delivery_window(), 64);

        let id = conn.send(Request::Rename { display_name: "A".into() }, Origin::User).expect("send");
        let rename: ClientFrame = read_client_frame(&mut server, &mut buf);
        assert_eq!(rename.request_id, id);
        let push = ServerFrame::Push(Push::Transient { from: "bob".into(), content: Content::text("typing") });
        server.write_all(&frame::encode(&push)).expect("write");
        assert!(matches!(&conn.handle(recv(&rx))[..], [ConnEvent::Push(Push::Transient { .. })]));
        assert_eq!(conn.awaiting(), 1);

        drop(server);
        let events = conn.handle(recv(&rx));
        match &events[..] {
            [ConnEvent::Down { unanswered, retry, .. }] => {
                assert_eq!(unanswered.len(), 1);
                assert_eq!(unanswered[0].id, id);
                assert!(matches!(retry, Some((1, _))));
            }
            other => panic!("expected Down, got {other:?}"),
        }
        assert!(conn.is_coming_up());
    }

    #[test]
    fn no_reconnect_when_switched_off() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut conn = Connection::new(tx, 1);
        conn.connect(&addr);
        conn.set_reconnect(false);
        let events = conn.handle(recv(&rx));
        assert!(matches!(&events[..], [ConnEvent::DialFailed { retry: None, .. }]));
        assert!(!conn.is_coming_up());
        assert_eq!(conn.send(Request::Ping, Origin::User), Err(SendError::NotConnected));
    }

    fn read_client_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> ClientFrame {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((body, used)) = frame::split(buf, 1 << 20).expect("valid frame") {
                let frame = frame::decode_body(body).expect("decodes");
                buf.drain(..used);
                return frame;
            }
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "client closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}
