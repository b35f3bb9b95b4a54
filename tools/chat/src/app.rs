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
//!   token; messages whose receipt never came (direct or group) are sent again with the
//!   same `client_msg_id`, so the server stores each once. What belonged to the old
//!   connection (rooms joined, users watched) is asked for again.
//! - Every login names this client's device for the user (protocol.md "Devices"): chosen
//!   once (`--device`, or `chat-` and 8 random hex digits) and kept in the token file, so
//!   the user's other devices see this one's messages as sent copies and the server keeps
//!   this one's place in each conversation.
//! - In a cluster, a register or login (by password or token, typed or after a drop) that
//!   a node answers with `Redirect` is sent again, the same request, on a new link to the
//!   user's home node, which the link then stays on (reconnects go there too); at most
//!   `MAX_REDIRECTS` in a row, so nodes that disagree cannot bounce it forever. The token
//!   file remembers the home's address with the token.
//! - A chat is read once its messages are shown in the open conversation (the peer of
//!   `/to`, which shows its last messages), in its history, or with `/read`: the client
//!   marks it read after the burst, as it acks.
//!
//! Pushes and acks are in `delivery.rs`, replies in `replies.rs`, failures in `failures.rs`,
//! history, deletions and read marks in `reading.rs`, a cluster's redirects in `redirect.rs`.

mod delivery;
mod failures;
mod reading;
mod redirect;
mod replies;

use failures::request_name;

use crate::chats::Chats;
use crate::commands::{self, Action, Context};
use crate::connection::{ConnEvent, Connection, NetEvent, Origin, SendError};
use crate::inbox::InboxCursor;
use crate::render::{self, Event, Output};
use crate::token::{Saved, TokenStore};
use confab_proto::protocol::{Chat, ClientMsgId, Conversation, MessageId, Request, Seq};
use crossbeam_channel::{never, select, Receiver};
use reading::Fetch;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How long `/quit` or the end of input waits for replies still owed.
const DRAIN: Duration = Duration::from_secs(5);
/// Messages shown when a conversation is opened with `/to`.
const OPEN_HISTORY: u32 = 5;

/// Work waiting its turn (see the barrier rule above).
enum Queued {
    Request(Request),
    /// `--user`: log in with the remembered token, read when it is this item's turn.
    ResumeSaved(String),
    /// `/resync`: from the position the conversation's cursor has when it is sent.
    Resync(Conversation),
    /// `/history`, or opening a conversation with `/to` (`open`: quietly skipped when
    /// nobody is logged in).
    History {
        chat: Chat,
        count: u32,
        open: bool,
    },
    /// `/delete`: the message is looked up when it is this item's turn.
    Delete {
        chat: Chat,
        message_id: Option<MessageId>,
    },
    Clear(Chat),
    Read(Chat),
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
    next_msg_id: ClientMsgId,
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
    /// Rooms joined and users watched: they end with the connection, so a reconnect asks
    /// for them again.
    rooms: BTreeSet<String>,
    watching: BTreeSet<String>,
    barrier: Option<u32>,
    quit_by: Option<Instant>,
    /// `--device`: this client's device id for whoever logs in.
    device_flag: Option<String>,
    /// The device id used for each username in this process (also when no token file
    /// can keep it).
    devices: HashMap<String, String>,
    /// Per username: what this client knows of each chat's read state.
    chats: HashMap<String, Chats>,
    /// Chats shown since the last burst ended, to mark read then.
    reading: BTreeSet<Chat>,
    /// History being paged back through, by the request id of its latest page.
    fetches: HashMap<u32, Fetch>,
    /// A register or login that was redirected, to send once the link to the home node is
    /// up (protocol.md "Cluster").
    follow: Option<(Request, Origin)>,
    /// The addresses the current register or login was sent to, first one first, while
    /// it is being redirected: the bound on a redirect loop.
    hops: Vec<String>,
}

impl<O: Output> App<O> {
    /// Starts connecting to `addr` at once; with `resume_user`, logs in with that user's
    /// remembered token as soon as the link is up.
    pub fn new(
        mut conn: Connection,
        out: O,
        tokens: TokenStore,
        addr: &str,
        resume_user: Option<String>,
        device: Option<String>,
    ) -> Self {
        conn.connect(addr);
        App {
            conn,
            out,
            tokens,
            peer: None,
            // Random start: two processes of one user must not reuse each other's ids,
            // or the server would take a new message for a retry of an old one.
            next_msg_id: ClientMsgId(random_u64() >> 1),
            session: None,
            resume: None,
            cursors: HashMap::new(),
            queue: resume_user.map(Queued::ResumeSaved).into_iter().collect(),
            unsent: Vec::new(),
            rooms: BTreeSet::new(),
            watching: BTreeSet::new(),
            barrier: None,
            quit_by: None,
            device_flag: device,
            devices: HashMap::new(),
            chats: HashMap::new(),
            reading: BTreeSet::new(),
            fetches: HashMap::new(),
            follow: None,
            hops: Vec::new(),
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
            // Never ClientMsgId::NONE, which the server refuses for a stored message.
            *next_msg_id = ClientMsgId(next_msg_id.get().wrapping_add(1).max(1));
            *next_msg_id
        };
        let mut ctx = Context { peer: self.peer.as_deref(), next_msg_id: &mut ids, now_ms: render::now_ms() };
        match commands::parse(line, &mut ctx) {
            Ok(None) => {}
            Ok(Some(Action::Request(request))) => self.queue.push_back(Queued::Request(request)),
            Ok(Some(Action::Resync(conversation))) => self.queue.push_back(Queued::Resync(conversation)),
            // Not queued: a server that never comes back must not trap the user.
            Ok(Some(Action::Connect(addr))) => self.connect(&addr),
            Ok(Some(Action::Peer(username))) => {
                self.peer = Some(username.clone());
                self.out.emit(Event::Peer { username: username.clone() });
                let chat = Chat::User(username);
                self.queue.push_back(Queued::History { chat, count: OPEN_HISTORY, open: true });
            }
            Ok(Some(Action::History { chat, count })) => {
                self.queue.push_back(Queued::History { chat, count, open: false })
            }
            Ok(Some(Action::Delete { chat, message_id })) => self.queue.push_back(Queued::Delete { chat, message_id }),
            Ok(Some(Action::Clear(chat))) => self.queue.push_back(Queued::Clear(chat)),
            Ok(Some(Action::Read(chat))) => self.queue.push_back(Queued::Read(chat)),
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
                Queued::Resync(_) => "resync",
                Queued::History { open: true, .. } => continue,
                Queued::History { .. } => "history",
                Queued::Delete { .. } => "delete",
                Queued::Clear(_) => "clear",
                Queued::Read(_) => "read",
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
        self.follow = None;
        self.hops.clear();
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
                Queued::Request(Request::Login { username, password }) => {
                    let (device, _) = self.device_for(&username);
                    self.request(Request::LoginDevice { username, password, device }, Origin::User);
                }
                Queued::Request(request) => {
                    self.request(request, Origin::User);
                }
                Queued::ResumeSaved(username) => match self.device_for(&username) {
                    (device, Some(token)) => {
                        self.request(Request::ResumeDevice { username, token, device }, Origin::User);
                    }
                    (_, None) => self.out.emit(Event::error(
                        "NoToken",
                        format!("no remembered token for {username}; /login {username} PASSWORD"),
                    )),
                },
                Queued::Resync(conversation) => {
                    let after = self.cursor(conversation).map_or(Seq::ZERO, |cursor| cursor.shown());
                    self.request(Request::Resync { conversation, after }, Origin::User);
                }
                Queued::History { chat, count, open } => self.fetch_history(chat, count, open),
                Queued::Delete { chat, message_id } => self.delete(chat, message_id),
                Queued::Clear(chat) => self.clear(chat),
                Queued::Read(chat) => self.mark_read(chat),
            }
        }
    }

    /// Sends `request`; its id if it went out.
    fn request(&mut self, request: Request, origin: Origin) -> Option<u32> {
        let barrier = changes_session(&request);
        let retry = (is_stored_send(&request) && self.resume.is_some()).then(|| request.clone());
        match self.conn.send(request, origin) {
            Ok(id) => {
                if barrier {
                    self.barrier = Some(id);
                }
                Some(id)
            }
            // The link broke under this write; a Down event follows, then a reconnect.
            Err(SendError::Io(_)) if retry.is_some() => {
                self.unsent.extend(retry);
                None
            }
            Err(e) => {
                self.out.emit(Event::error("Offline", format!("{e}; try /connect")));
                None
            }
        }
    }

    /// The device id to log in as `username` with, and the remembered token if it is that
    /// device's: `--device`, else the one the token file keeps, else the one this process
    /// chose before, else a new one.
    fn device_for(&mut self, username: &str) -> (String, Option<Vec<u8>>) {
        let saved = match self.tokens.load(username) {
            Ok(saved) => saved.unwrap_or_default(),
            Err(e) => {
                self.out.emit(Event::error("TokenFile", e.to_string()));
                Saved::default()
            }
        };
        let device = self
            .device_flag
            .clone()
            .or_else(|| saved.device.clone())
            .or_else(|| self.devices.get(username).cloned())
            .unwrap_or_else(|| format!("chat-{:08x}", random_u64() as u32));
        // A file of the first format has a token without a device: worth a try.
        let token = saved.token.filter(|_| saved.device.as_ref().map_or(true, |d| *d == device));
        self.devices.insert(username.to_string(), device.clone());
        (device, token)
    }

    fn conn_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Up { addr } => {
                self.out.emit(Event::Connected { addr });
                if let Some((request, origin)) = self.follow.take() {
                    // On the home node now: the redirected request (a resume among them)
                    // is the one to send.
                    self.request(request, origin);
                } else if let Some((username, token)) = self.resume.clone() {
                    let device = self.devices.get(&username).cloned().unwrap_or_default();
                    self.request(Request::ResumeDevice { username, token, device }, Origin::Auto);
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

    fn logged_in(
        &mut self,
        username: &str,
        device: &str,
        token: Vec<u8>,
        acked: Seq,
        last_seq: Seq,
        reconnected: bool,
    ) {
        // Saved before the LoggedIn line appears, so whoever sees it can rely on the file.
        if !reconnected {
            // The link is on the node that answered: the user's home.
            if let Err(e) = self.tokens.save(username, device, Some(&token), Some(self.conn.addr())) {
                self.out.emit(Event::error("TokenFile", e.to_string()));
            }
        }
        self.devices.insert(username.to_string(), device.to_string());
        self.session = Some(username.to_string());
        self.resume = Some((username.to_string(), token));
        self.cursors.entry((username.to_string(), Conversation::Inbox)).or_default().logged_in(acked, last_seq);
        if reconnected {
            let rooms: Vec<Request> = self.rooms.iter().map(|room| Request::JoinRoom { room: room.clone() }).collect();
            let watches = self.watching.iter().map(|name| Request::SubscribePresence { username: name.clone() });
            for request in rooms.into_iter().chain(watches.collect::<Vec<_>>()) {
                self.request(request, Origin::Auto);
            }
        } else {
            self.forget_live_state();
        }
        for request in std::mem::take(&mut self.unsent) {
            self.request(request, Origin::User);
        }
    }

    /// Rooms and watches of a session that is over for good.
    fn forget_live_state(&mut self) {
        self.rooms.clear();
        self.watching.clear();
        self.reading.clear();
    }

    fn logged_out(&mut self) {
        if let Some(username) = self.session.take() {
            // The server revoked the token; a stale file would only fail next time.
            if let Err(e) = self.tokens.forget_token(&username) {
                self.out.emit(Event::error("TokenFile", e.to_string()));
            }
        }
        self.resume = None;
        self.forget_live_state();
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
/// Those a cluster may redirect are among them (`Request::is_login`).
fn changes_session(request: &Request) -> bool {
    request.is_login() || matches!(request, Request::Logout | Request::LogoutEverywhere)
}

fn is_stored_send(request: &Request) -> bool {
    matches!(request, Request::Send { transient: false, .. })
}

/// A random number from the standard library's per-process hash keys (seeded by the OS).
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}
