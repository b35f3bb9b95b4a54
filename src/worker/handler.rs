//! A worker: handles the requests of the users it owns, stores and numbers their messages,
//! and pushes to their sessions. See the module above for the batching rule.

use super::inbox::{Session, UserState};
use super::{Directory, WorkerCmd};
use crate::auth::{new_token, token_digest, Hasher, TOKEN_LEN};
use crate::config::Config;
use crate::frame;
use crate::net::{ConnId, LoopMsg, Outbox, SessionUser};
use crate::protocol::{
    valid_display_name, valid_password, valid_username, Content, Conversation, ErrorCode, Message,
    OnlineUser, Push, Reply, Request, ServerFrame, Target,
};
use crate::store::{Account, DedupEntry, Store, StoreError, StoredMessage};
use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest media URL and description accepted (protocol.md "Content").
const MAX_MEDIA_URL: usize = 2048;
const MAX_MEDIA_DESCRIPTION: usize = 1024;
/// Largest who-is-online page.
const MAX_ONLINE_PAGE: u32 = 500;
/// Stored messages read from disk per step of a catch-up.
const READ_CHUNK: u64 = 256;

/// Results coming back from the hashing threads.
pub enum HashOutcome {
    Registered {
        conn: ConnId,
        request_id: u32,
        username: String,
        phc: Option<String>,
    },
    LoginChecked {
        conn: ConnId,
        request_id: u32,
        username: String,
        ok: bool,
    },
}

/// Why a request was refused; becomes an error frame.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        error!("store: {e}");
        Refusal::new(ErrorCode::Internal, "storage error")
    }
}

type Handled = Result<(), Refusal>;

pub struct Worker {
    config: Arc<Config>,
    store: Store,
    hasher: Hasher,
    outbox: Outbox,
    directory: Directory,
    /// This worker's own queue, for the hashing threads' answers.
    me: Sender<WorkerCmd>,
    users: HashMap<Arc<str>, UserState>,
    /// What this batch produced, released after the commit; `true` marks output that
    /// promises durability and must not leave if the flush fails.
    out: Vec<(LoopMsg, bool)>,
    /// Requests whose reply promises durability, to answer with an error if the flush fails.
    durable_requests: Vec<(ConnId, u32)>,
    dirty: bool,
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        hasher: Hasher,
        outbox: Outbox,
        directory: Directory,
        me: Sender<WorkerCmd>,
    ) -> Self {
        Worker {
            config,
            store,
            hasher,
            outbox,
            directory,
            me,
            users: HashMap::new(),
            out: Vec::new(),
            durable_requests: Vec::new(),
            dirty: false,
        }
    }

    pub fn run(mut self, rx: Receiver<WorkerCmd>) {
        while let Ok(cmd) = rx.recv() {
            let mut stop = !self.handle(cmd);
            let mut handled = 1;
            while !stop && handled < self.config.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => stop = !self.handle(cmd),
                    Err(_) => break,
                }
                handled += 1;
            }
            self.commit();
            if stop {
                break;
            }
        }
        debug!("worker exiting");
    }

    /// Returns false when told to stop.
    fn handle(&mut self, cmd: WorkerCmd) -> bool {
        match cmd {
            WorkerCmd::Request {
                conn,
                user,
                request_id,
                request,
            } => {
                if let Err(refusal) = self.request(conn, user, request_id, request) {
                    self.error(conn, request_id, refusal.code, &refusal.message);
                }
            }
            WorkerCmd::Hashed(outcome) => self.hashed(outcome),
            WorkerCmd::Closed { conn, user } => self.closed(conn, &user),
            WorkerCmd::Stop => return false,
        }
        true
    }

    /// Group commit: one flush for everything this batch wrote, then the replies.
    fn commit(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        if self.dirty {
            self.dirty = false;
            if let Err(e) = self.store.flush() {
                error!("flush failed, withholding this batch's receipts: {e}");
                out.retain(|(_, durable)| !durable);
                for (conn, request_id) in std::mem::take(&mut self.durable_requests) {
                    let frame = error_frame(request_id, ErrorCode::Internal, "storage error");
                    out.push((
                        LoopMsg::Frames {
                            conn,
                            bytes: frame::encode(&frame),
                        },
                        false,
                    ));
                }
            }
        }
        self.durable_requests.clear();
        self.outbox
            .send(out.into_iter().map(|(msg, _)| msg).collect());
    }

    fn request(
        &mut self,
        conn: ConnId,
        user: Option<SessionUser>,
        request_id: u32,
        request: Request,
    ) -> Handled {
        match (request, user) {
            (Request::Register { username, password }, None) => {
                self.register(conn, request_id, username, password)
            }
            (Request::Login { username, password }, None) => {
                self.login(conn, request_id, username, password)
            }
            (Request::Resume { username, token }, None) => {
                self.resume(conn, request_id, username, token)
            }

            (
                Request::Send {
                    to: Target::User(to),
                    client_msg_id,
                    transient,
                    content,
                },
                Some(user),
            ) => {
                self.validate(&content)?;
                if transient {
                    self.send_transient(conn, request_id, &user, &to, content)
                } else {
                    self.send_stored(conn, request_id, &user, &to, client_msg_id, content)
                }
            }
            (
                Request::Ack {
                    conversation: Conversation::Inbox,
                    up_to,
                },
                Some(user),
            ) => self.ack(conn, request_id, &user, up_to),
            (
                Request::Resync {
                    conversation: Conversation::Inbox,
                    after,
                },
                Some(user),
            ) => self.resync(conn, request_id, &user, after),
            (Request::Rename { display_name }, Some(user)) => {
                self.rename(conn, request_id, &user, display_name)
            }
            (Request::ListOnline { after, limit }, Some(_)) => {
                let limit = if limit == 0 {
                    100
                } else {
                    limit.min(MAX_ONLINE_PAGE)
                };
                let (page, more) = self.directory.page(&after, limit as usize);
                let users = page
                    .into_iter()
                    .map(|(username, display_name)| OnlineUser {
                        username,
                        display_name,
                    })
                    .collect();
                self.reply(conn, request_id, Reply::Online { users, more }, false);
                Ok(())
            }
            (Request::Logout, Some(user)) => {
                self.own_session(conn, &user)?;
                self.store.revoke_tokens(user.uid)?;
                self.dirty = true;
                if let Some(state) = self.users.get_mut(&user.name) {
                    state.session = None;
                }
                self.directory.remove(&user.name);
                self.out.push((LoopMsg::Unbind { conn }, false));
                self.reply(conn, request_id, Reply::LoggedOut, true);
                Ok(())
            }
            // The loop enforces which requests each connection state allows; reaching
            // here means it let through something it should not have.
            (request, _) => {
                error!("worker got a request the loop should have refused: {request:?}");
                Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "request not allowed in this state",
                ))
            }
        }
    }

    fn register(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        password: String,
    ) -> Handled {
        if !valid_username(&username) {
            return Err(Refusal::new(
                ErrorCode::InvalidName,
                "usernames are 3-32 characters of a-z 0-9 _ . -",
            ));
        }
        if !valid_password(&password) {
            return Err(Refusal::new(
                ErrorCode::InvalidPassword,
                "passwords are 8-256 bytes",
            ));
        }
        if self.store.account(&username)?.is_some() {
            return Err(Refusal::new(ErrorCode::NameTaken, "username taken"));
        }
        let me = self.me.clone();
        self.hasher.hash(password, move |phc| {
            let _ = me.send(WorkerCmd::Hashed(HashOutcome::Registered {
                conn,
                request_id,
                username,
                phc,
            }));
        });
        Ok(())
    }

    fn login(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        password: String,
    ) -> Handled {
        if !valid_username(&username) {
            return Err(Refusal::new(ErrorCode::InvalidName, "not a valid username"));
        }
        let Some(account) = self.store.account(&username)? else {
            return Err(Refusal::new(ErrorCode::UnknownUser, "no such user"));
        };
        let me = self.me.clone();
        self.hasher
            .verify(password, account.password_hash, move |ok| {
                let _ = me.send(WorkerCmd::Hashed(HashOutcome::LoginChecked {
                    conn,
                    request_id,
                    username,
                    ok,
                }));
            });
        Ok(())
    }

    fn hashed(&mut self, outcome: HashOutcome) {
        let (conn, request_id, result) = match outcome {
            HashOutcome::Registered {
                conn,
                request_id,
                username,
                phc,
            } => (
                conn,
                request_id,
                self.finish_register(conn, request_id, username, phc),
            ),
            HashOutcome::LoginChecked {
                conn,
                request_id,
                username,
                ok,
            } => (
                conn,
                request_id,
                self.finish_login(conn, request_id, username, ok),
            ),
        };
        if let Err(refusal) = result {
            self.error(conn, request_id, refusal.code, &refusal.message);
        }
    }

    fn finish_register(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        phc: Option<String>,
    ) -> Handled {
        let Some(password_hash) = phc else {
            return Err(Refusal::new(ErrorCode::Internal, "password hashing failed"));
        };
        let user_id = self.store.next_id()?;
        let account = Account {
            user_id,
            display_name: username.clone(),
            password_hash,
            admin: false,
            created_ms: now_ms(),
        };
        // Two registrations of one name can both pass the early check while hashing;
        // the compare-and-swap decides.
        if !self.store.create_account(&username, &account)? {
            return Err(Refusal::new(ErrorCode::NameTaken, "username taken"));
        }
        self.dirty = true;
        info!("registered {username}");
        self.reply(conn, request_id, Reply::Registered { user_id }, true);
        Ok(())
    }

    fn finish_login(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        ok: bool,
    ) -> Handled {
        if !ok {
            return Err(Refusal::new(ErrorCode::WrongPassword, "wrong password"));
        }
        let Some(account) = self.store.account(&username)? else {
            return Err(Refusal::new(ErrorCode::UnknownUser, "no such user"));
        };
        let Some(token) = new_token() else {
            return Err(Refusal::new(
                ErrorCode::Internal,
                "no randomness for a resume token",
            ));
        };
        let expires = now_ms().saturating_add(self.config.token_ttl.as_millis() as u64);
        self.store
            .put_token(account.user_id, &token_digest(&token), expires)?;
        self.dirty = true;
        self.open_session(conn, request_id, username, account, token.to_vec())
    }

    fn resume(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        token: Vec<u8>,
    ) -> Handled {
        if !valid_username(&username) {
            return Err(Refusal::new(ErrorCode::InvalidName, "not a valid username"));
        }
        let Some(account) = self.store.account(&username)? else {
            return Err(Refusal::new(ErrorCode::UnknownUser, "no such user"));
        };
        if token.len() != TOKEN_LEN
            || !self
                .store
                .token_valid(account.user_id, &token_digest(&token), now_ms())?
        {
            return Err(Refusal::new(
                ErrorCode::InvalidToken,
                "unknown, expired or revoked token",
            ));
        }
        self.open_session(conn, request_id, username, account, token)
    }

    /// Makes `conn` the user's one live session and starts delivering its inbox.
    fn open_session(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        account: Account,
        resume_token: Vec<u8>,
    ) -> Handled {
        let name: Arc<str> = username.into();
        self.load_user(&name)?;
        let state = self
            .users
            .get_mut(&name)
            .expect("load_user inserted the user");
        let previous = state.session.replace(Session {
            conn,
            sent_upto: state.inbox.acked,
        });
        let (acked, last_seq) = (state.inbox.acked, state.inbox.last_seq);
        if let Some(old) = previous.filter(|old| old.conn != conn) {
            // One live session per user: the newer login wins, the older hears why.
            self.push(
                old.conn,
                &Push::Kicked {
                    reason: "logged in elsewhere".into(),
                },
                false,
            );
            self.out.push((LoopMsg::Close { conn: old.conn }, false));
        }
        let user = SessionUser {
            name: name.clone(),
            uid: account.user_id,
        };
        self.out.push((LoopMsg::Bind { conn, user }, false));
        let reply = Reply::LoggedIn {
            user_id: account.user_id,
            display_name: account.display_name.clone(),
            acked,
            last_seq,
            resume_token,
        };
        // Durable: a token handed out must survive a crash, or the client is locked out.
        self.reply(conn, request_id, reply, true);
        self.directory.set(name.clone(), account.display_name);
        debug!("{name} logged in; inbox acked {acked} of {last_seq}");
        self.pump(&name)
    }

    fn validate(&self, content: &Content) -> Handled {
        if content.body.len() > self.config.max_body as usize {
            return Err(Refusal::new(
                ErrorCode::InvalidContent,
                format!("body exceeds {} bytes", self.config.max_body),
            ));
        }
        match &content.media {
            None if content.body.is_empty() => {
                Err(Refusal::new(ErrorCode::InvalidContent, "empty message"))
            }
            Some(media)
                if media.url.len() > MAX_MEDIA_URL
                    || media.description.len() > MAX_MEDIA_DESCRIPTION =>
            {
                Err(Refusal::new(
                    ErrorCode::InvalidContent,
                    "media url or description too long",
                ))
            }
            _ => Ok(()),
        }
    }

    fn send_transient(
        &mut self,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        to: &str,
        content: Content,
    ) -> Handled {
        if !self.load_user(to)? {
            return Err(Refusal::new(ErrorCode::UnknownUser, "no such user"));
        }
        let target = self
            .users
            .get(to)
            .and_then(|state| state.session.as_ref())
            .map(|s| s.conn);
        if let Some(target) = target {
            self.push(
                target,
                &Push::Transient {
                    from: from.name.to_string(),
                    content,
                },
                false,
            );
        }
        self.reply(
            conn,
            request_id,
            Reply::TransientSent {
                delivered: target.is_some(),
            },
            false,
        );
        Ok(())
    }

    fn send_stored(
        &mut self,
        conn: ConnId,
        request_id: u32,
        from: &SessionUser,
        to: &str,
        client_msg_id: u64,
        content: Content,
    ) -> Handled {
        if client_msg_id == 0 {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                "client_msg_id must not be 0",
            ));
        }
        if !self.load_user(to)? {
            return Err(Refusal::new(ErrorCode::UnknownUser, "no such user"));
        }
        if let Some(earlier) = self.store.dedup_get(from.uid, client_msg_id)? {
            let reply = Reply::Sent {
                message_id: earlier.message_id,
                seq: earlier.seq,
                timestamp_ms: earlier.timestamp_ms,
                duplicate: true,
            };
            // The original may sit in this very batch, not yet flushed: same rule.
            self.reply(conn, request_id, reply, true);
            return Ok(());
        }
        let state = self.users.get(to).expect("load_user inserted the user");
        let (uid, seq) = (state.uid, state.inbox.last_seq + 1);
        let message_id = self.store.next_id()?;
        let timestamp_ms = now_ms();
        let stored = StoredMessage {
            message_id,
            from: from.name.to_string(),
            timestamp_ms,
            content,
        };
        self.store.append(uid, seq, &stored)?;
        self.store.dedup_put(
            from.uid,
            client_msg_id,
            &DedupEntry {
                recipient: uid,
                message_id,
                seq,
                timestamp_ms,
            },
        )?;
        self.dirty = true;
        self.reply(
            conn,
            request_id,
            Reply::Sent {
                message_id,
                seq,
                timestamp_ms,
                duplicate: false,
            },
            true,
        );

        let window = u64::from(self.config.delivery_window);
        let state = self.users.get_mut(to).expect("load_user inserted the user");
        state.inbox.last_seq = seq;
        if state.can_push_now(seq, window) {
            let session = state
                .session
                .as_mut()
                .expect("can_push_now implies a session");
            session.sent_upto = seq;
            let target = session.conn;
            self.push(target, &Push::Message(to_wire(seq, stored)), true);
        }
        Ok(())
    }

    fn ack(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, up_to: u64) -> Handled {
        self.own_session(conn, user)?;
        let state = self
            .users
            .get_mut(&user.name)
            .expect("own_session checked the user");
        if up_to > state.inbox.last_seq {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!(
                    "ack {up_to} is beyond the last sequence {}",
                    state.inbox.last_seq
                ),
            ));
        }
        if up_to > state.inbox.acked {
            self.store.ack(state.uid, up_to)?;
            state.inbox.acked = up_to;
            if let Some(session) = state.session.as_mut() {
                session.sent_upto = session.sent_upto.max(up_to);
            }
            self.dirty = true;
        }
        let acked = state.inbox.acked;
        self.reply(
            conn,
            request_id,
            Reply::Acked {
                conversation: Conversation::Inbox,
                up_to: acked,
            },
            true,
        );
        self.pump(&user.name)
    }

    fn resync(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, after: u64) -> Handled {
        self.own_session(conn, user)?;
        let state = self
            .users
            .get_mut(&user.name)
            .expect("own_session checked the user");
        if after > state.inbox.last_seq {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!(
                    "resync after {after} is beyond the last sequence {}",
                    state.inbox.last_seq
                ),
            ));
        }
        // Acknowledged messages are gone; resync can only go back to the ack.
        let after = after.max(state.inbox.acked);
        if let Some(session) = state.session.as_mut() {
            session.sent_upto = after;
        }
        let reply = Reply::Resynced {
            conversation: Conversation::Inbox,
            after,
            last_seq: state.inbox.last_seq,
        };
        self.reply(conn, request_id, reply, false);
        self.pump(&user.name)
    }

    fn rename(
        &mut self,
        conn: ConnId,
        request_id: u32,
        user: &SessionUser,
        display_name: String,
    ) -> Handled {
        if !valid_display_name(&display_name) {
            return Err(Refusal::new(
                ErrorCode::InvalidName,
                "display names are 1-64 printable characters",
            ));
        }
        let Some(mut account) = self.store.account(&user.name)? else {
            return Err(Refusal::new(
                ErrorCode::UnknownUser,
                "account no longer exists",
            ));
        };
        account.display_name = display_name.clone();
        self.store.put_account(&user.name, &account)?;
        self.dirty = true;
        self.directory.set(user.name.clone(), display_name.clone());
        self.reply(conn, request_id, Reply::Renamed { display_name }, true);
        Ok(())
    }

    fn closed(&mut self, conn: ConnId, user: &SessionUser) {
        if let Some(state) = self.users.get_mut(&user.name) {
            if state.session.as_ref().is_some_and(|s| s.conn == conn) {
                state.session = None;
                self.directory.remove(&user.name);
                debug!("{} went offline", user.name);
            }
        }
    }

    /// Pushes stored messages to the user's session while the window allows.
    fn pump(&mut self, name: &str) -> Handled {
        let window = u64::from(self.config.delivery_window);
        loop {
            let Some(state) = self.users.get_mut(name) else {
                return Ok(());
            };
            let Some((from, count)) = state.deliverable(window) else {
                return Ok(());
            };
            let chunk =
                self.store
                    .read_inbox(state.uid, from - 1, count.min(READ_CHUNK) as usize)?;
            let session = state
                .session
                .as_mut()
                .expect("deliverable implies a session");
            let Some((last, _)) = chunk.last() else {
                // The inbox claims more than disk holds; never spin on it.
                error!(
                    "inbox of {name} ends before its last sequence {}",
                    state.inbox.last_seq
                );
                session.sent_upto = state.inbox.last_seq;
                return Ok(());
            };
            session.sent_upto = *last;
            let target = session.conn;
            for (seq, stored) in chunk {
                self.push(target, &Push::Message(to_wire(seq, stored)), true);
            }
        }
    }

    /// Loads a user's state from disk on first touch; false if there is no such account.
    fn load_user(&mut self, name: &str) -> Result<bool, Refusal> {
        if self.users.contains_key(name) {
            return Ok(true);
        }
        let Some(account) = self.store.account(name)? else {
            return Ok(false);
        };
        let inbox = self.store.inbox_state(account.user_id)?;
        self.users.insert(
            name.into(),
            UserState {
                uid: account.user_id,
                inbox,
                session: None,
            },
        );
        Ok(true)
    }

    /// Refuses requests from a connection whose session was taken over by a newer login.
    fn own_session(&mut self, conn: ConnId, user: &SessionUser) -> Handled {
        self.load_user(&user.name)?;
        let current = self
            .users
            .get(&user.name)
            .and_then(|s| s.session.as_ref())
            .map(|s| s.conn);
        if current == Some(conn) {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::NotLoggedIn,
                "this session has ended",
            ))
        }
    }

    fn reply(&mut self, conn: ConnId, request_id: u32, reply: Reply, durable: bool) {
        if durable {
            self.durable_requests.push((conn, request_id));
        }
        self.frame(conn, &ServerFrame::Reply { request_id, reply }, durable);
    }

    fn error(&mut self, conn: ConnId, request_id: u32, code: ErrorCode, message: &str) {
        self.frame(conn, &error_frame(request_id, code, message), false);
    }

    fn push(&mut self, conn: ConnId, push: &Push, durable: bool) {
        self.frame(conn, &ServerFrame::Push(push.clone()), durable);
    }

    /// Queues a frame, appending to the previous one's buffer when it goes to the same
    /// connection, so a burst of pushes costs the loop one queue entry.
    fn frame(&mut self, conn: ConnId, frame: &ServerFrame, durable: bool) {
        if let Some((LoopMsg::Frames { conn: last, bytes }, last_durable)) = self.out.last_mut() {
            if *last == conn && *last_durable == durable {
                frame::encode_into(frame, bytes);
                return;
            }
        }
        self.out.push((
            LoopMsg::Frames {
                conn,
                bytes: frame::encode(frame),
            },
            durable,
        ));
    }
}

fn error_frame(request_id: u32, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error {
        request_id,
        code,
        message: message.to_string(),
    }
}

fn to_wire(seq: u64, stored: StoredMessage) -> Message {
    Message {
        conversation: Conversation::Inbox,
        seq,
        message_id: stored.message_id,
        from: stored.from,
        timestamp_ms: stored.timestamp_ms,
        content: stored.content,
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
