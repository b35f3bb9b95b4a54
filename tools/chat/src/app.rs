//! The client's state machine: typed lines in, protocol traffic through the
//! [`Connection`], [`Event`]s out. Both front ends (line mode and the terminal UI) drive
//! the same `App` from the same loop ([`run`]).
//!
//! Rules it keeps:
//! - Commands are executed in the order typed, but one that changes who is logged in
//!   (register, login, resume, logout) is a barrier: later commands wait for its reply,
//!   since the server would refuse a message that overtook its login. Commands also wait
//!   while a link is coming up, so a script piped in before the connection exists works.
//! - Every stored message shown is acked, cumulatively, once the burst it came in is
//!   drained; a redelivered one already shown is acked but not shown again.
//! - After a drop the client reconnects by itself and logs in again with its resume
//!   token; messages whose receipt never came are sent again with the same
//!   `client_msg_id`, so the server stores each once.

use crate::commands::{self, Action, Context};
use crate::connection::{ConnEvent, Connection, NetEvent, Origin, Pending, SendError};
use crate::inbox::{InboxCursor, Verdict};
use crate::render::{Event, Output};
use crate::token::TokenStore;
use confab::protocol::{Conversation, ErrorCode, Push, Reply, Request, SenderKind, Target};
use crossbeam_channel::{never, select, Receiver};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How long `/quit` or the end of input waits for replies still owed.
const DRAIN: Duration = Duration::from_secs(5);

/// Work waiting its turn (see the barrier rule above).
enum Queued {
    Request(Request),
    /// `--user`: log in with the remembered token, read when it is this item's turn.
    ResumeSaved(String),
}

/// Where the client is, for a status line.
pub struct Status<'a> {
    pub addr: &'a str,
    pub connected: bool,
    pub user: Option<&'a str>,
    pub peer: Option<&'a str>,
}

pub struct App<O> {
    conn: Connection,
    out: O,
    tokens: TokenStore,
    peer: Option<String>,
    next_msg_id: u64,
    /// Logged in on the current link.
    session: Option<String>,
    /// Username and token to log in again with after a drop; None after a logout, a kick
    /// or a refused token.
    resume: Option<(String, Vec<u8>)>,
    /// Per username and conversation, for the whole process: a later login as the same
    /// user must not show again what this process already showed.
    cursors: HashMap<(String, Conversation), InboxCursor>,
    queue: VecDeque<Queued>,
    /// Stored messages to send again once logged in again after a drop.
    unsent: Vec<Request>,
    barrier: Option<u32>,
    quit_by: Option<Instant>,
}

impl<O: Output> App<O> {
    /// Starts connecting to `addr` at once; with `resume_user`, logs in with that user's
    /// remembered token as soon as the link is up.
    pub fn new(mut conn: Connection, out: O, tokens: TokenStore, addr: &str, resume_user: Option<String>) -> Self {
        conn.connect(addr);
        App {
            conn,
            out,
            tokens,
            peer: None,
            // Random start: two processes of one user must not reuse each other's ids,
            // or the server would take a new message for a retry of an old one.
            next_msg_id: random_u64() >> 1,
            session: None,
            resume: None,
            cursors: HashMap::new(),
            queue: resume_user.map(Queued::ResumeSaved).into_iter().collect(),
            unsent: Vec::new(),
            barrier: None,
            quit_by: None,
        }
    }

    pub fn output_mut(&mut self) -> &mut O {
        &mut self.out
    }

    pub fn status(&self) -> Status<'_> {
        Status {
            addr: self.conn.addr(),
            connected: self.conn.is_ready(),
            // While reconnecting, the user we are about to be again.
            user: self.session.as_deref().or(self.resume.as_ref().map(|(user, _)| user.as_str())),
            peer: self.peer.as_deref(),
        }
    }

    /// One typed line.
    pub fn input(&mut self, line: &str) {
        if self.quit_by.is_some() {
            return;
        }
        let next_msg_id = &mut self.next_msg_id;
        let mut ids = || {
            *next_msg_id = next_msg_id.wrapping_add(1).max(1);
            *next_msg_id
        };
        let mut ctx = Context { peer: self.peer.as_deref(), next_msg_id: &mut ids };
        match commands::parse(line, &mut ctx) {
            Ok(None) => {}
            Ok(Some(Action::Request(request))) => self.queue.push_back(Queued::Request(request)),
            // Not queued: a server that never comes back must not trap the user.
            Ok(Some(Action::Connect(addr))) => self.connect(&addr),
            Ok(Some(Action::Peer(username))) => {
                self.peer = Some(username.clone());
                self.out.emit(Event::Peer { username });
            }
            Ok(Some(Action::Help)) => {
                for command in commands::COMMANDS {
                    self.out.emit(Event::Help { usage: command.usage(), text: command.help.into() });
                }
            }
            Ok(Some(Action::Quit)) => self.quit(),
            Err(e) => self.out.emit(Event::error(e.code(), e.to_string())),
        }
        self.pump();
    }

    /// Stop reading input; exit once what is under way is answered (or after [`DRAIN`]).
    pub fn quit(&mut self) {
        self.quit_by.get_or_insert(Instant::now() + DRAIN);
    }

    pub fn done(&self, now: Instant) -> bool {
        let Some(deadline) = self.quit_by else {
            return false;
        };
        let settled =
            self.queue.is_empty() && self.barrier.is_none() && self.unsent.is_empty() && self.conn.awaiting() == 0;
        settled || now >= deadline
    }

    /// Leaving: says what will never be done or answered, so a script can tell.
    fn finish(&mut self) {
        for item in std::mem::take(&mut self.queue) {
            let what = match &item {
                Queued::Request(request) => request_name(request),
                Queued::ResumeSaved(_) => "resume",
            };
            self.out.emit(Event::error("Offline", format!("{what} was not sent")));
        }
        self.fail_unsent();
        for pending in self.conn.unanswered() {
            if pending.origin == Origin::User {
                self.out.emit(Event::error("Timeout", format!("no reply to {}", request_name(&pending.request))));
            }
        }
    }

    pub fn net(&mut self, event: NetEvent) {
        for event in self.conn.handle(event) {
            self.conn_event(event);
        }
        self.pump();
    }

    pub fn tick(&mut self, now: Instant) {
        self.conn.tick(now);
    }

    /// Called when no network event is waiting: the burst is over, ack what it showed.
    pub fn idle(&mut self) {
        let Some(user) = self.session.clone() else {
            return;
        };
        let due: Vec<Conversation> =
            self.cursors.keys().filter(|(owner, _)| *owner == user).map(|(_, conversation)| *conversation).collect();
        for conversation in due {
            self.ack(conversation);
        }
    }

    /// Acks what was shown in `conversation`, if anything new was.
    fn ack(&mut self, conversation: Conversation) {
        if !self.conn.is_ready() {
            return;
        }
        if let Some(up_to) = self.cursor(conversation).and_then(InboxCursor::ack_due) {
            self.request(Request::Ack { conversation, up_to }, Origin::Auto);
        }
    }

    pub fn next_wakeup(&self, now: Instant) -> Duration {
        let wake = self.conn.next_wakeup(now);
        match self.quit_by {
            Some(deadline) => wake.min(deadline.saturating_duration_since(now)),
            None => wake,
        }
    }

    fn connect(&mut self, addr: &str) {
        // A new server (or the same one anew): nothing of the old session carries over.
        self.session = None;
        self.resume = None;
        self.barrier = None;
        self.fail_unsent();
        self.conn.connect(addr);
    }

    /// Executes queued work until something must be waited for.
    fn pump(&mut self) {
        while self.barrier.is_none() && !self.conn.is_coming_up() {
            let Some(item) = self.queue.pop_front() else {
                return;
            };
            match item {
                Queued::Request(request) => self.request(request, Origin::User),
                Queued::ResumeSaved(username) => match self.tokens.load(&username) {
                    Ok(Some(token)) => self.request(Request::Resume { username, token }, Origin::User),
                    Ok(None) => self.out.emit(Event::error(
                        "NoToken",
                        format!("no remembered token for {username}; /login {username} PASSWORD"),
                    )),
                    Err(e) => self.out.emit(Event::error("TokenFile", e.to_string())),
                },
            }
        }
    }

    fn request(&mut self, request: Request, origin: Origin) {
        let barrier = changes_session(&request);
        let retry = (is_stored_send(&request) && self.resume.is_some()).then(|| request.clone());
        match self.conn.send(request, origin) {
            Ok(id) if barrier => self.barrier = Some(id),
            Ok(_) => {}
            // The link broke under this write; a Down event follows, then a reconnect.
            Err(SendError::Io(_)) if retry.is_some() => self.unsent.extend(retry),
            Err(e) => self.out.emit(Event::error("Offline", format!("{e}; try /connect"))),
        }
    }

    fn conn_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Up { addr } => {
                self.out.emit(Event::Connected { addr });
                if let Some((username, token)) = self.resume.clone() {
                    self.request(Request::Resume { username, token }, Origin::Auto);
                }
            }
            ConnEvent::Reply { pending, reply } => self.reply(pending, reply),
            ConnEvent::Failed { pending, code, message } => self.failed(pending, code, message),
            ConnEvent::Push(push) => self.push(push),
            ConnEvent::Down { reason, unanswered, retry } => {
                self.out.emit(Event::Disconnected { reason });
                self.session = None;
                self.barrier = None;
                for pending in unanswered {
                    self.unanswered(pending, retry.is_some());
                }
                self.retrying(retry);
            }
            ConnEvent::DialFailed { reason, retry } => {
                self.out.emit(Event::error("ConnectFailed", reason));
                self.retrying(retry);
            }
        }
    }

    fn retrying(&mut self, retry: Option<(u32, Duration)>) {
        match retry {
            Some((attempt, delay)) => self.out.emit(Event::Reconnecting { attempt, delay }),
            None => self.fail_unsent(),
        }
    }

    fn unanswered(&mut self, pending: Pending, reconnecting: bool) {
        let user = pending.origin == Origin::User;
        match pending.request {
            request @ Request::Send { transient: false, .. } if user && reconnecting && self.resume.is_some() => {
                self.unsent.push(request)
            }
            Request::Send { to: Target::User(to), transient: false, .. } if user => self.out.emit(Event::error(
                "Disconnected",
                format!("no receipt for a message to {to}; it may not have been stored"),
            )),
            request if user => {
                self.out.emit(Event::error("Disconnected", format!("no reply to {}", request_name(&request))))
            }
            _ => {}
        }
    }

    fn fail_unsent(&mut self) {
        for request in std::mem::take(&mut self.unsent) {
            if let Request::Send { to: Target::User(to), .. } = request {
                self.out.emit(Event::error("Offline", format!("a message to {to} was not sent")));
            }
        }
    }

    fn reply(&mut self, pending: Pending, reply: Reply) {
        if self.barrier == Some(pending.id) {
            self.barrier = None;
        }
        let event = match (reply, pending.request) {
            (Reply::Registered { .. }, Request::Register { username, .. }) => Event::Registered { username },
            (
                Reply::LoggedIn { display_name, acked, last_seq, resume_token, .. },
                Request::Login { username, .. } | Request::Resume { username, .. },
            ) => {
                let reconnected = pending.origin == Origin::Auto;
                self.logged_in(&username, resume_token, acked, last_seq, reconnected);
                Event::LoggedIn { username, display_name, acked, last_seq, reconnected }
            }
            (Reply::Sent { seq, duplicate, .. }, Request::Send { to: Target::User(to), content, .. }) => {
                Event::Sent { to, seq, duplicate, content }
            }
            (Reply::TransientSent { delivered }, Request::Send { to: Target::User(to), .. }) => {
                Event::TransientSent { to, delivered }
            }
            (Reply::Acked { up_to, .. }, _) => Event::Acked { up_to },
            (Reply::Resynced { conversation, after, last_seq }, _) => {
                if let Some(cursor) = self.cursor(conversation) {
                    cursor.resynced();
                }
                Event::Resynced { after, last_seq }
            }
            (Reply::Renamed { display_name }, _) => Event::Renamed { display_name },
            (Reply::Online { users, more }, _) => Event::Online { users, more },
            (Reply::LoggedOut, _) => {
                self.logged_out();
                Event::LoggedOut
            }
            (reply, request) => {
                Event::error("Protocol", format!("unexpected reply to {}: {reply:?}", request_name(&request)))
            }
        };
        self.out.emit(event);
    }

    fn logged_in(&mut self, username: &str, token: Vec<u8>, acked: u64, last_seq: u64, reconnected: bool) {
        // Saved before the LoggedIn line appears, so whoever sees it can rely on the file.
        if !reconnected {
            if let Err(e) = self.tokens.save(username, &token) {
                self.out.emit(Event::error("TokenFile", e.to_string()));
            }
        }
        self.session = Some(username.to_string());
        self.resume = Some((username.to_string(), token));
        self.cursors.entry((username.to_string(), Conversation::Inbox)).or_default().logged_in(acked, last_seq);
        for request in std::mem::take(&mut self.unsent) {
            self.request(request, Origin::User);
        }
    }

    fn logged_out(&mut self) {
        if let Some(username) = self.session.take() {
            // The server revoked the token; a stale file would only fail next time.
            if let Err(e) = self.tokens.remove(&username) {
                self.out.emit(Event::error("TokenFile", e.to_string()));
            }
        }
        self.resume = None;
    }

    fn failed(&mut self, pending: Option<Pending>, code: ErrorCode, message: String) {
        if pending.as_ref().map(|p| p.id) == self.barrier {
            self.barrier = None;
        }
        self.out.emit(Event::error(format!("{code:?}"), message));
        let Some(pending) = pending else {
            return;
        };
        if let Request::Resume { username, .. } = pending.request {
            if code == ErrorCode::InvalidToken {
                if let Err(e) = self.tokens.remove(&username) {
                    self.out.emit(Event::error("TokenFile", e.to_string()));
                }
            }
            if pending.origin == Origin::Auto {
                // Cannot get the session back by ourselves; the user has to log in.
                self.resume = None;
                self.fail_unsent();
            }
        }
    }

    fn push(&mut self, push: Push) {
        match push {
            Push::Message(message) => {
                let verdict = match self.cursor(message.conversation) {
                    Some(cursor) => cursor.receive(message.seq, message.prev_seq),
                    None => Verdict::Show,
                };
                match verdict {
                    Verdict::Show => {
                        let conversation = message.conversation;
                        self.out.emit(Event::Message {
                            conversation,
                            seq: message.seq,
                            from: message.from,
                            service: message.sender == SenderKind::Service,
                            timestamp_ms: message.timestamp_ms,
                            content: message.content,
                        });
                        // A long backlog arrives as one burst: ack halfway through the
                        // server's window so it never stops to wait for us.
                        let half_window = u64::from(self.conn.delivery_window() / 2).max(1);
                        if self.cursor(conversation).is_some_and(|c| c.unacked() >= half_window) {
                            self.ack(conversation);
                        }
                    }
                    Verdict::Duplicate | Verdict::AwaitResync => {}
                    Verdict::Resync { after } => {
                        self.request(Request::Resync { conversation: message.conversation, after }, Origin::Auto)
                    }
                }
            }
            Push::Transient { from, content } => self.out.emit(Event::Transient { from, content }),
            Push::Kicked { reason } => {
                // Logging in again would kick the newer session in turn.
                self.conn.set_reconnect(false);
                self.session = None;
                self.resume = None;
                self.out.emit(Event::Kicked { reason });
            }
            Push::ShuttingDown => self.out.emit(Event::ShuttingDown),
            Push::RoomMessage { room, from, content } => self.out.emit(Event::RoomMessage { room, from, content }),
            Push::Broadcast { from, content } => self.out.emit(Event::Broadcast { from, content }),
            Push::Presence { username, online } => self.out.emit(Event::Presence { username, online }),
            Push::ServiceNotice { service, content } => self.out.emit(Event::ServiceNotice { service, content }),
            // Pushes meant for other kinds of client (services), or newer than this one:
            // shown raw rather than dropped, and the build stays green while the protocol grows.
            other => self.out.emit(Event::Unhandled { what: format!("{other:?}") }),
        }
    }

    /// The cursor of a conversation of the logged-in user. The inbox's starts at login;
    /// another conversation's starts at the first message seen in it.
    fn cursor(&mut self, conversation: Conversation) -> Option<&mut InboxCursor> {
        let user = self.session.clone()?;
        Some(self.cursors.entry((user, conversation)).or_insert_with(|| InboxCursor::unknown(conversation)))
    }
}

/// Runs the client until it is done: network events, input, and timers, one at a time.
/// `on_input` turns whatever the front end reads into calls on the app; `after` runs after
/// every step (the terminal UI redraws there). Input ending means quitting.
pub fn run<O: Output, I>(
    app: &mut App<O>,
    net: &Receiver<NetEvent>,
    input: Receiver<I>,
    mut on_input: impl FnMut(&mut App<O>, I),
    mut after: impl FnMut(&mut App<O>),
) {
    let mut input = Some(input);
    let closed = never();
    loop {
        let now = Instant::now();
        app.tick(now);
        // Frames already received are shown before leaving, whatever the deadline.
        if app.done(now) && net.is_empty() {
            app.finish();
            return;
        }
        let timeout = app.next_wakeup(now);
        select! {
            recv(net) -> event => {
                if let Ok(event) = event {
                    app.net(event);
                }
            }
            recv(input.as_ref().unwrap_or(&closed)) -> item => match item {
                Ok(item) => on_input(app, item),
                Err(_) => {
                    input = None;
                    app.quit();
                }
            },
            default(timeout) => {}
        }
        if net.is_empty() {
            app.idle();
        }
        after(app);
    }
}

/// Requests after which the server treats the connection as someone else (or no one).
fn changes_session(request: &Request) -> bool {
    matches!(request, Request::Register { .. } | Request::Login { .. } | Request::Resume { .. } | Request::Logout)
}

fn is_stored_send(request: &Request) -> bool {
    matches!(request, Request::Send { transient: false, .. })
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Hello { .. } => "hello",
        Request::Ping => "ping",
        Request::Register { .. } => "register",
        Request::Login { .. } => "login",
        Request::Send { .. } => "msg",
        Request::Ack { .. } => "ack",
        Request::Resync { .. } => "resync",
        Request::Rename { .. } => "rename",
        Request::ListOnline { .. } => "who",
        Request::Logout => "logout",
        Request::Resume { .. } => "resume",
        // Requests this client has no command for yet.
        _ => "request",
    }
}

/// A random number from the standard library's per-process hash keys (seeded by the OS).
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}
