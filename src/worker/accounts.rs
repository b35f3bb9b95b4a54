//! Accounts and sessions: registration and login (hashing off-thread), resume tokens, the
//! one-live-session rule, rename, logout, who-is-online.

use super::budget::SessionBudget;
use super::commands::{HashOutcome, WorkerCmd};
use super::context::Ctx;
use super::cursor::Session;
use super::inbox::Inboxes;
use super::presence::{connection_event, Presence};
use super::push::settings;
use super::read_state;
use super::refusal::{Handled, Refusal};
use crate::apps::{local, valid_user_name};
use crate::auth::{new_token, token_digest, TOKEN_LEN};
use crate::clock::now_ms;
use crate::names::normalize_name;
use crate::protocol::{valid_password, ErrorCode, OnlineUser, Push, Reply, UserId};
use crate::route::{ConnId, LoopMsg, Owner, SessionUser};
use crate::store::Account;
use log::{debug, info};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Largest who-is-online page.
const MAX_ONLINE_PAGE: u32 = 500;

pub fn register(
    ctx: &mut Ctx,
    conn: ConnId,
    peer: IpAddr,
    request_id: u32,
    username: String,
    password: String,
) -> Handled {
    if !valid_user_name(&username) {
        return Err(Refusal::new(ErrorCode::InvalidName, "usernames are 3-32 characters of a-z 0-9 _ . -"));
    }
    if !valid_password(&password) {
        return Err(Refusal::new(ErrorCode::InvalidPassword, "passwords are 8-256 bytes"));
    }
    if ctx.shared.store.account(&username)?.is_some() {
        return Err(Refusal::new(ErrorCode::NameTaken, "username taken"));
    }
    if let Some(other) = ctx.shared.lookalikes.other_than(local(&username), &username) {
        return Err(lookalike(&other));
    }
    if app_full(ctx, &username) {
        return Err(too_many_users());
    }
    if ctx.partition.is_full() {
        return Err(Refusal::storage_full());
    }
    if let Err(wait) = ctx.shared.signups.take(peer, Instant::now()) {
        return Err(Refusal::rate_limited(
            format!("too many new accounts; try again in {} s", wait.as_secs().max(1)),
            wait,
        ));
    }
    let me = ctx.me.clone();
    let queued = ctx.shared.hasher.hash(password, move |phc| {
        let _ = me.send(WorkerCmd::Hashed(HashOutcome::Registered { conn, request_id, username, phc }));
    });
    queued.map_err(|busy| {
        ctx.shared.signups.give_back(peer);
        Refusal::rate_limited("the server is busy; try again shortly", busy.retry_after)
    })
}

pub fn login(
    ctx: &mut Ctx,
    conn: ConnId,
    peer: IpAddr,
    request_id: u32,
    username: String,
    password: String,
) -> Handled {
    throttled(ctx, &username, peer)?;
    let account = account_of(ctx, &username).inspect_err(|_| login_failed(ctx, &username, peer))?;
    let me = ctx.me.clone();
    let queued = ctx.shared.hasher.verify(password, account.password_hash, move |ok| {
        let _ = me.send(WorkerCmd::Hashed(HashOutcome::LoginChecked { conn, peer, request_id, username, ok }));
    });
    // Not a failed login: the password was not checked.
    queued.map_err(|busy| Refusal::rate_limited("the server is busy; try again shortly", busy.retry_after))
}

#[allow(clippy::too_many_arguments)]
pub fn resume(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    presence: &Presence,
    conn: ConnId,
    peer: IpAddr,
    request_id: u32,
    username: String,
    token: Vec<u8>,
) -> Handled {
    // A valid token is not a guess (it is 256 random bits): it is checked before the
    // throttle, so no number of failed passwords, anyone's, keeps its owner out.
    let account = match account_of(ctx, &username) {
        Ok(account) => account,
        Err(refusal) => {
            throttled(ctx, &username, peer)?;
            login_failed(ctx, &username, peer);
            return Err(refusal);
        }
    };
    if token.len() == TOKEN_LEN && ctx.shared.store.token_valid(account.user_id, &token_digest(&token), now_ms())? {
        ctx.shared.throttle.succeeded(&username, peer);
        let session = NewSession { conn, request_id, username, account, resume_token: token };
        return open_session(ctx, inboxes, presence, session);
    }
    throttled(ctx, &username, peer)?;
    login_failed(ctx, &username, peer);
    Err(Refusal::new(ErrorCode::InvalidToken, "unknown, expired or revoked token"))
}

/// Refuses before any hashing while the account (or service) or the address must wait.
pub fn throttled(ctx: &Ctx, username: &str, peer: IpAddr) -> Handled {
    match ctx.shared.throttle.wait(username, peer, Instant::now()) {
        None => Ok(()),
        Some(wait) => Err(Refusal::rate_limited(
            format!("too many failed logins; try again in {} s", wait.as_secs().max(1)),
            wait,
        )),
    }
}

pub fn login_failed(ctx: &Ctx, username: &str, peer: IpAddr) {
    ctx.shared.throttle.failed(username, peer, Instant::now());
}

fn account_of(ctx: &Ctx, username: &str) -> Result<Account, Refusal> {
    if !valid_user_name(username) {
        return Err(Refusal::new(ErrorCode::InvalidName, "not a valid username"));
    }
    ctx.shared.store.account(username)?.ok_or_else(Refusal::unknown_user)
}

/// A password hash or check came back from the hashing threads.
pub fn hashed(ctx: &mut Ctx, inboxes: &mut Inboxes, presence: &Presence, outcome: HashOutcome) {
    let (conn, request_id, result) = match outcome {
        HashOutcome::Registered { conn, request_id, username, phc } => {
            (conn, request_id, finish_register(ctx, conn, request_id, username, phc))
        }
        HashOutcome::LoginChecked { conn, peer, request_id, username, ok } => {
            if ok {
                ctx.shared.throttle.succeeded(&username, peer);
            } else {
                login_failed(ctx, &username, peer);
            }
            (conn, request_id, finish_login(ctx, inboxes, presence, conn, request_id, username, ok))
        }
    };
    if let Err(refusal) = result {
        ctx.batch.refuse(conn, request_id, &refusal);
    }
}

fn finish_register(ctx: &mut Ctx, conn: ConnId, request_id: u32, username: String, phc: Option<String>) -> Handled {
    let Some(password_hash) = phc else {
        return Err(Refusal::new(ErrorCode::Internal, "password hashing failed"));
    };
    let lookalikes = &ctx.shared.lookalikes;
    let store = ctx.partition.sled();
    let user_id = UserId(store.next_id()?);
    let display_name = local(&username).to_string();
    let account = Account { user_id, display_name, password_hash, admin: false, created_ms: now_ms() };
    // Two registrations of one name (or of look-alikes) can both pass the early checks
    // while hashing; the claim and then the compare-and-swap decide.
    if let Some(other) = lookalikes.claim(&username) {
        return Err(lookalike(&other));
    }
    // The app's count is taken before the account is made, so registrations on several
    // workers at once cannot pass its limit together.
    let Some(app) = ctx.shared.apps.of(&username).cloned() else {
        return Err(Refusal::new(ErrorCode::InvalidName, "no such app"));
    };
    if !app.take_user() {
        return Err(too_many_users());
    }
    match store.create_account(&username, &account) {
        Ok(true) => {}
        Ok(false) => {
            app.release_user();
            return Err(Refusal::new(ErrorCode::NameTaken, "username taken"));
        }
        Err(e) => {
            app.release_user();
            return Err(e.into());
        }
    }
    info!("registered {username}");
    ctx.batch.reply(conn, request_id, Reply::Registered { user_id }, true);
    Ok(())
}

fn finish_login(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    presence: &Presence,
    conn: ConnId,
    request_id: u32,
    username: String,
    ok: bool,
) -> Handled {
    if !ok {
        return Err(Refusal::new(ErrorCode::WrongPassword, "wrong password"));
    }
    let account = account_of(ctx, &username)?;
    let Some(token) = new_token() else {
        return Err(Refusal::new(ErrorCode::Internal, "no randomness for a resume token"));
    };
    let expires = now_ms().saturating_add(ctx.config().token_ttl.as_millis() as u64);
    ctx.partition.put_token(account.user_id, &token_digest(&token), expires)?;
    let session = NewSession { conn, request_id, username, account, resume_token: token.to_vec() };
    open_session(ctx, inboxes, presence, session)
}

/// A login or resume that succeeded.
struct NewSession {
    conn: ConnId,
    request_id: u32,
    username: String,
    account: Account,
    resume_token: Vec<u8>,
}

/// Makes `conn` the user's one live session and starts delivering what it is owed.
fn open_session(ctx: &mut Ctx, inboxes: &mut Inboxes, presence: &Presence, new: NewSession) -> Handled {
    let NewSession { conn, request_id, username, account, resume_token } = new;
    let budget = Arc::new(SessionBudget::new(ctx.config().delivery_window_bytes));
    let state = inboxes.known(ctx, &username)?;
    let name = state.name.clone();
    // The app's count of users logged in changes only when the user goes from no session
    // to one (and back, in end_session), on this worker, which owns the user.
    if state.cursor.session.is_none() {
        let app = ctx.shared.apps.of(&name).ok_or_else(|| Refusal::new(ErrorCode::InvalidName, "no such app"))?;
        if !app.take_session() {
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!("the app has its most users logged in at once ({})", app.limits.max_connections),
            ));
        }
    }
    let previous = state.cursor.session.replace(Session::new(conn, state.cursor.acked, budget.clone()));
    let (acked, last_seq) = (state.cursor.acked, state.last_seq);
    let was_online = previous.is_some();
    if let Some(old) = previous.filter(|old| old.conn != conn) {
        // One live session per user: the newer login wins, the older hears why.
        ctx.batch.push(old.conn, Push::Kicked { reason: "logged in elsewhere".into() }, false);
        ctx.batch.control(LoopMsg::Close { conn: old.conn, reason: "logged in elsewhere" });
        connection_event(ctx, &name, false, "logged in elsewhere");
    }
    let user = SessionUser { name: name.clone(), uid: account.user_id, admin: account.admin, service: false };
    ctx.batch.control(LoopMsg::Bind { conn, user });
    let reply = Reply::LoggedIn {
        user_id: account.user_id,
        display_name: account.display_name.clone(),
        acked,
        last_seq,
        resume_token,
        admin: account.admin,
    };
    // Durable: a token handed out must survive a crash, or the client is locked out.
    ctx.batch.reply(conn, request_id, reply, true);
    // What was read of the user's messages while it was away (a named device: only what
    // came since it was last seen). A failure to read them does not fail the login.
    if let Err(refusal) = read_state::push_held_receipts(ctx, account.user_id, conn, 0) {
        debug!("read receipts held for {name}: {}", refusal.message);
    }
    ctx.shared.directory.set(name.clone(), account.display_name, conn, budget);
    connection_event(ctx, &name, true, "login");
    if ctx.shared.push.get(account.user_id).is_some() {
        ctx.batch.send_to_worker(ctx.worker_of(Owner::PushQueue), WorkerCmd::PushOnline { uid: account.user_id });
    }
    debug!("{name} logged in; inbox acked {acked} of {last_seq}");
    // Group backlogs come from the groups' workers, after this batch's reply.
    for group_id in ctx.shared.store.memberships(&name)? {
        let worker = ctx.worker_of(Owner::Group(group_id));
        ctx.batch.send_to_worker(worker, WorkerCmd::MemberOnline { group_id, username: name.clone(), conn });
    }
    // So do the support conversations' of the shops it is staff of or a customer of.
    let store = &ctx.shared.store;
    let mut shops: std::collections::BTreeSet<String> = store.staff_shops(&name)?.into_iter().collect();
    for id in store.customer_support(&name)? {
        shops.extend(store.support(id)?.map(|record| record.shop));
    }
    for shop in shops {
        let worker = ctx.worker_of(Owner::Shop(&shop));
        ctx.batch.send_to_worker(worker, WorkerCmd::SupportOnline { shop, username: name.clone(), conn });
    }
    if !was_online {
        presence.announce(ctx, &name, true)?;
    }
    inboxes.known(ctx, &name)?.pump(ctx)
}

/// The user's session on `conn` is over (closed, kicked, logged out) for `reason`.
pub fn end_session(
    ctx: &mut Ctx,
    inboxes: &mut Inboxes,
    presence: &Presence,
    conn: ConnId,
    user: &SessionUser,
    reason: &str,
) {
    let Some(state) = inboxes.get_mut(&user.name) else {
        return;
    };
    if state.cursor.conn() != Some(conn) {
        return;
    }
    state.cursor.session = None;
    if let Some(app) = ctx.shared.apps.of(&user.name) {
        app.release_session();
    }
    ctx.shared.directory.remove(&user.name, conn);
    if let Err(refusal) = presence.announce(ctx, &user.name, false) {
        debug!("presence for {}: {}", user.name, refusal.message);
    }
    connection_event(ctx, &user.name, false, reason);
    debug!("{} went offline", user.name);
}

/// A service's logout: it stops watching and being the push gateway, and is a plain
/// greeted connection again (it has no session or tokens to end). The caller forgets the
/// connection here as for a closed one; the other workers are told to.
pub fn service_logout(ctx: &mut Ctx, conn: ConnId, request_id: u32, service: &SessionUser) {
    for worker in (0..ctx.workers).filter(|w| *w != ctx.index) {
        ctx.batch.send_to_worker(worker, WorkerCmd::LoggedOut { conn, user: service.clone() });
    }
    ctx.shared.connection_watchers.remove(conn);
    ctx.batch.control(LoopMsg::Unbind { conn });
    ctx.batch.reply(conn, request_id, Reply::LoggedOut, false);
}

/// A user's logout: its resume tokens are revoked and the other workers told to forget the
/// connection. The caller ends the session here as for a closed connection.
pub fn logout(ctx: &mut Ctx, inboxes: &mut Inboxes, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    inboxes.session(ctx, user, conn)?;
    ctx.partition.revoke_tokens(user.uid)?;
    // Every device's token is revoked, so no device is logged in to be woken.
    settings::remove_all_devices(ctx, user)?;
    // Other workers forget the connection's group sessions, rooms and subscriptions.
    for worker in (0..ctx.workers).filter(|w| *w != ctx.index) {
        ctx.batch.send_to_worker(worker, WorkerCmd::LoggedOut { conn, user: user.clone() });
    }
    ctx.batch.control(LoopMsg::Unbind { conn });
    ctx.batch.reply(conn, request_id, Reply::LoggedOut, true);
    Ok(())
}

pub fn rename(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, display_name: String) -> Handled {
    let display_name = normalize_name(&display_name).map_err(|r| Refusal::new(ErrorCode::InvalidName, r.explain()))?;
    // One's own username in any case is fine; anyone else's, or a look-alike, is not.
    if display_name.to_lowercase() != local(&user.name) {
        if let Some(other) = ctx.shared.lookalikes.other_than(&display_name, &user.name) {
            return Err(Refusal::new(ErrorCode::NameTaken, format!("too much like the username {}", local(&other))));
        }
    }
    let mut account = account_of(ctx, &user.name)?;
    account.display_name = display_name.clone();
    ctx.partition.sled().put_account(&user.name, &account)?;
    ctx.shared.directory.rename(&user.name, display_name.clone());
    ctx.batch.reply(conn, request_id, Reply::Renamed { display_name }, true);
    Ok(())
}

pub fn list_online(ctx: &mut Ctx, conn: ConnId, request_id: u32, after: &str, limit: u32) {
    let limit = if limit == 0 { 100 } else { limit.min(MAX_ONLINE_PAGE) };
    let (page, more) = ctx.shared.directory.page(after, limit as usize);
    let users = page.into_iter().map(|(username, display_name)| OnlineUser { username, display_name }).collect();
    ctx.batch.reply(conn, request_id, Reply::Online { users, more }, false);
}

/// A new username that reads as an existing one (`adm1n` beside `admin`): refused, as a
/// display name would be, so nobody can pose as another user by the name itself.
fn lookalike(other: &str) -> Refusal {
    Refusal::new(ErrorCode::NameTaken, format!("username looks like the existing {:?}", local(other)))
}

/// Whether the username's app has as many accounts as it may (checked again, exactly,
/// when the account is made).
fn app_full(ctx: &Ctx, username: &str) -> bool {
    ctx.shared.apps.of(username).is_some_and(|app| app.limits.max_users > 0 && app.users() >= app.limits.max_users)
}

fn too_many_users() -> Refusal {
    Refusal::new(ErrorCode::LimitReached, "the app has as many users as it may")
}
