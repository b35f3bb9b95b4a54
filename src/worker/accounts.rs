//! Accounts and sessions: registration and login (hashing off-thread), resume tokens, the
//! one-live-session rule, rename, logout, who-is-online.

use super::budget::SessionBudget;
use super::handler::{Handled, Refusal, Worker};
use super::inbox::Session;
use super::WorkerCmd;
use crate::auth::{new_token, token_digest, TOKEN_LEN};
use crate::clock::now_ms;
use crate::names::normalize_name;
use crate::protocol::{valid_password, valid_username, ErrorCode, OnlineUser, Push, Reply};
use crate::route::Owner;
use crate::route::{ConnId, LoopMsg, SessionUser};
use crate::store::Account;
use log::{debug, info};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Largest who-is-online page.
const MAX_ONLINE_PAGE: u32 = 500;

/// Results coming back from the hashing threads.
pub enum HashOutcome {
    Registered { conn: ConnId, request_id: u32, username: String, phc: Option<String> },
    LoginChecked { conn: ConnId, peer: IpAddr, request_id: u32, username: String, ok: bool },
}

impl Worker {
    pub fn register(
        &mut self,
        conn: ConnId,
        peer: IpAddr,
        request_id: u32,
        username: String,
        password: String,
    ) -> Handled {
        if !valid_username(&username) {
            return Err(Refusal::new(ErrorCode::InvalidName, "usernames are 3-32 characters of a-z 0-9 _ . -"));
        }
        if !valid_password(&password) {
            return Err(Refusal::new(ErrorCode::InvalidPassword, "passwords are 8-256 bytes"));
        }
        if self.shared.store.account(&username)?.is_some() {
            return Err(Refusal::new(ErrorCode::NameTaken, "username taken"));
        }
        if let Some(other) = self.shared.lookalikes.other_than(&username, &username) {
            return Err(lookalike(&other));
        }
        if self.partition.is_full() {
            return Err(Refusal::new(ErrorCode::StorageFull, "the server's disk is full; retry later"));
        }
        if let Err(wait) = self.shared.signups.take(peer, Instant::now()) {
            return Err(Refusal::rate_limited(
                format!("too many new accounts; try again in {} s", wait.as_secs().max(1)),
                wait,
            ));
        }
        let me = self.peers[self.index].clone();
        let queued = self.shared.hasher.hash(password, move |phc| {
            let _ = me.send(WorkerCmd::Hashed(HashOutcome::Registered { conn, request_id, username, phc }));
        });
        queued.map_err(|busy| {
            self.shared.signups.give_back(peer);
            Refusal::rate_limited("the server is busy; try again shortly", busy.retry_after)
        })
    }

    pub fn login(
        &mut self,
        conn: ConnId,
        peer: IpAddr,
        request_id: u32,
        username: String,
        password: String,
    ) -> Handled {
        self.throttled(&username, peer)?;
        let account = self.account_of(&username).inspect_err(|_| self.login_failed(&username, peer))?;
        let me = self.peers[self.index].clone();
        let queued = self.shared.hasher.verify(password, account.password_hash, move |ok| {
            let _ = me.send(WorkerCmd::Hashed(HashOutcome::LoginChecked { conn, peer, request_id, username, ok }));
        });
        // Not a failed login: the password was not checked.
        queued.map_err(|busy| Refusal::rate_limited("the server is busy; try again shortly", busy.retry_after))
    }

    pub fn resume(&mut self, conn: ConnId, peer: IpAddr, request_id: u32, username: String, token: Vec<u8>) -> Handled {
        // A valid token is not a guess (it is 256 random bits): it is checked before the
        // throttle, so no number of failed passwords, anyone's, keeps its owner out.
        let account = match self.account_of(&username) {
            Ok(account) => account,
            Err(refusal) => {
                self.throttled(&username, peer)?;
                self.login_failed(&username, peer);
                return Err(refusal);
            }
        };
        let now = now_ms();
        if token.len() == TOKEN_LEN && self.shared.store.token_valid(account.user_id, &token_digest(&token), now)? {
            self.shared.throttle.succeeded(&username, peer);
            return self.open_session(conn, request_id, username, account, token);
        }
        self.throttled(&username, peer)?;
        self.login_failed(&username, peer);
        Err(Refusal::new(ErrorCode::InvalidToken, "unknown, expired or revoked token"))
    }

    /// Refuses before any hashing while the account or the address must wait.
    pub fn throttled(&self, username: &str, peer: IpAddr) -> Handled {
        match self.shared.throttle.wait(username, peer, Instant::now()) {
            None => Ok(()),
            Some(wait) => Err(Refusal::rate_limited(
                format!("too many failed logins; try again in {} s", wait.as_secs().max(1)),
                wait,
            )),
        }
    }

    pub fn login_failed(&self, username: &str, peer: IpAddr) {
        self.shared.throttle.failed(username, peer, Instant::now());
    }

    fn account_of(&self, username: &str) -> Result<Account, Refusal> {
        if !valid_username(username) {
            return Err(Refusal::new(ErrorCode::InvalidName, "not a valid username"));
        }
        self.shared.store.account(username)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))
    }

    pub fn hashed(&mut self, outcome: HashOutcome) {
        let (conn, request_id, result) = match outcome {
            HashOutcome::Registered { conn, request_id, username, phc } => {
                (conn, request_id, self.finish_register(conn, request_id, username, phc))
            }
            HashOutcome::LoginChecked { conn, peer, request_id, username, ok } => {
                if ok {
                    self.shared.throttle.succeeded(&username, peer);
                } else {
                    self.login_failed(&username, peer);
                }
                (conn, request_id, self.finish_login(conn, request_id, username, ok))
            }
        };
        if let Err(refusal) = result {
            self.batch.refuse(conn, request_id, &refusal);
        }
    }

    fn finish_register(&mut self, conn: ConnId, request_id: u32, username: String, phc: Option<String>) -> Handled {
        let Some(password_hash) = phc else {
            return Err(Refusal::new(ErrorCode::Internal, "password hashing failed"));
        };
        let store = self.partition.sled();
        let user_id = store.next_id()?;
        let account =
            Account { user_id, display_name: username.clone(), password_hash, admin: false, created_ms: now_ms() };
        // Two registrations of one name (or of look-alikes) can both pass the early checks
        // while hashing; the claim and then the compare-and-swap decide.
        if let Some(other) = self.shared.lookalikes.claim(&username) {
            return Err(lookalike(&other));
        }
        if !store.create_account(&username, &account)? {
            return Err(Refusal::new(ErrorCode::NameTaken, "username taken"));
        }
        info!("registered {username}");
        self.batch.reply(conn, request_id, Reply::Registered { user_id }, true);
        Ok(())
    }

    fn finish_login(&mut self, conn: ConnId, request_id: u32, username: String, ok: bool) -> Handled {
        if !ok {
            return Err(Refusal::new(ErrorCode::WrongPassword, "wrong password"));
        }
        let account = self.account_of(&username)?;
        let Some(token) = new_token() else {
            return Err(Refusal::new(ErrorCode::Internal, "no randomness for a resume token"));
        };
        let expires = now_ms().saturating_add(self.shared.config.token_ttl.as_millis() as u64);
        self.partition.put_token(account.user_id, &token_digest(&token), expires)?;
        self.open_session(conn, request_id, username, account, token.to_vec())
    }

    /// Makes `conn` the user's one live session and starts delivering what it is owed.
    fn open_session(
        &mut self,
        conn: ConnId,
        request_id: u32,
        username: String,
        account: Account,
        resume_token: Vec<u8>,
    ) -> Handled {
        let name: Arc<str> = username.into();
        let budget = Arc::new(SessionBudget::new(self.shared.config.delivery_window_bytes));
        let state = self.user_state(&name)?.ok_or_else(|| Refusal::new(ErrorCode::UnknownUser, "no such user"))?;
        let previous = state.cursor.session.replace(Session::new(conn, state.cursor.acked, budget.clone()));
        let (acked, last_seq) = (state.cursor.acked, state.last_seq);
        let was_online = previous.is_some();
        if let Some(old) = previous.filter(|old| old.conn != conn) {
            // One live session per user: the newer login wins, the older hears why.
            self.batch.push(old.conn, Push::Kicked { reason: "logged in elsewhere".into() }, false);
            self.batch.control(LoopMsg::Close { conn: old.conn, reason: "logged in elsewhere" });
            self.connection_event(&name, false, "logged in elsewhere");
        }
        let user = SessionUser { name: name.clone(), uid: account.user_id, admin: account.admin, service: false };
        self.batch.control(LoopMsg::Bind { conn, user });
        let reply = Reply::LoggedIn {
            user_id: account.user_id,
            display_name: account.display_name.clone(),
            acked,
            last_seq,
            resume_token,
            admin: account.admin,
        };
        // Durable: a token handed out must survive a crash, or the client is locked out.
        self.batch.reply(conn, request_id, reply, true);
        self.shared.directory.set(name.clone(), account.display_name, conn, budget);
        self.connection_event(&name, true, "login");
        debug!("{name} logged in; inbox acked {acked} of {last_seq}");
        // Group backlogs come from the groups' workers, after this batch's reply.
        for group_id in self.shared.store.memberships(&name)? {
            let worker = self.worker_of(Owner::Group(group_id));
            self.batch.send_to_worker(worker, WorkerCmd::MemberOnline { group_id, username: name.clone(), conn });
        }
        if !was_online {
            self.announce(&name, true)?;
        }
        self.pump_inbox(&name)
    }

    /// The user's session on `conn` is over (closed, kicked, logged out) for `reason`.
    pub fn end_session(&mut self, conn: ConnId, user: &SessionUser, reason: &str) {
        let Some(state) = self.users.get_mut(&user.name) else {
            return;
        };
        if state.cursor.session.as_ref().is_some_and(|s| s.conn == conn) {
            state.cursor.session = None;
            self.shared.directory.remove(&user.name, conn);
            if let Err(refusal) = self.announce(&user.name, false) {
                debug!("presence for {}: {}", user.name, refusal.message);
            }
            self.connection_event(&user.name, false, reason);
            debug!("{} went offline", user.name);
        }
    }

    pub fn logout(&mut self, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
        if user.service {
            // A service has no session or tokens to end: it stops watching and is a plain
            // greeted connection again.
            self.shared.connection_watchers.remove(conn);
            self.batch.control(LoopMsg::Unbind { conn });
            self.batch.reply(conn, request_id, Reply::LoggedOut, false);
            return Ok(());
        }
        self.own_session(conn, user)?;
        self.partition.revoke_tokens(user.uid)?;
        self.closed(conn, user, "logout");
        // Other workers forget the connection's group sessions, rooms and subscriptions.
        for worker in (0..self.peers.len()).filter(|w| *w != self.index) {
            self.batch.send_to_worker(worker, WorkerCmd::LoggedOut { conn, user: user.clone() });
        }
        self.batch.control(LoopMsg::Unbind { conn });
        self.batch.reply(conn, request_id, Reply::LoggedOut, true);
        Ok(())
    }

    pub fn rename(&mut self, conn: ConnId, request_id: u32, user: &SessionUser, display_name: String) -> Handled {
        let display_name =
            normalize_name(&display_name).map_err(|r| Refusal::new(ErrorCode::InvalidName, r.explain()))?;
        // One's own username in any case is fine; anyone else's, or a look-alike, is not.
        if display_name.to_lowercase() != *user.name {
            if let Some(other) = self.shared.lookalikes.other_than(&display_name, &user.name) {
                return Err(Refusal::new(ErrorCode::NameTaken, format!("too much like the username {other}")));
            }
        }
        let mut account = self.account_of(&user.name)?;
        account.display_name = display_name.clone();
        self.partition.sled().put_account(&user.name, &account)?;
        self.shared.directory.rename(&user.name, display_name.clone());
        self.batch.reply(conn, request_id, Reply::Renamed { display_name }, true);
        Ok(())
    }

    pub fn list_online(&mut self, conn: ConnId, request_id: u32, after: &str, limit: u32) {
        let limit = if limit == 0 { 100 } else { limit.min(MAX_ONLINE_PAGE) };
        let (page, more) = self.shared.directory.page(after, limit as usize);
        let users = page.into_iter().map(|(username, display_name)| OnlineUser { username, display_name }).collect();
        self.batch.reply(conn, request_id, Reply::Online { users, more }, false);
    }

    /// Refuses requests from a connection whose session a newer login took over.
    pub fn own_session(&mut self, conn: ConnId, user: &SessionUser) -> Handled {
        let current = self.user_state(&user.name)?.and_then(|s| s.cursor.session.as_ref()).map(|s| s.conn);
        if current == Some(conn) {
            Ok(())
        } else {
            Err(Refusal::new(ErrorCode::NotLoggedIn, "this session has ended"))
        }
    }
}

/// A new username that reads as an existing one (`adm1n` beside `admin`): refused, as a
/// display name would be, so nobody can pose as another user by the name itself.
fn lookalike(other: &str) -> Refusal {
    Refusal::new(ErrorCode::NameTaken, format!("username looks like the existing {other:?}"))
}
