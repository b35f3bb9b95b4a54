//! Accounts and sessions: registration and login (hashing off-thread), resume tokens (one
//! per device), the sessions of a user's devices (at most `--max-devices` at once, one per
//! device), rename, logout, who-is-online.

use super::budget::SessionBudget;
use super::commands::{HashOutcome, WorkerCmd};
use super::context::Ctx;
use super::cursor::Session;
use super::device_cursors::LEGACY;
use super::devices;
use super::inbox::Inboxes;
use super::presence::{connection_event, Presence};
use super::push::settings;
use super::read_state;
use super::refusal::{Handled, Refusal};
use super::remote_members;
use crate::apps::{local, valid_user_name};
use crate::auth::{new_token, token_digest, TOKEN_LEN};
use crate::clock::now_ms;
use crate::names::normalize_name;
use crate::protocol::{valid_password, ErrorCode, OnlineUser, Push, Reply, UserId};
use crate::route::{ConnId, LoopMsg, Owner, SessionUser};
use crate::store::{Account, DeviceChange, LogId};
use log::{debug, info};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Largest who-is-online page.
pub const MAX_ONLINE_PAGE: u32 = 500;

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

/// A `Login` (`device` None) or `LoginDevice`: the password is checked on a hashing thread.
#[allow(clippy::too_many_arguments)]
pub fn login(
    ctx: &mut Ctx,
    conn: ConnId,
    peer: IpAddr,
    request_id: u32,
    username: String,
    password: String,
    device: Option<String>,
) -> Handled {
    if let Some(device) = &device {
        devices::check_device_id(device)?;
    }
    throttled(ctx, &username, peer)?;
    let account = account_of(ctx, &username).inspect_err(|_| login_failed(ctx, &username, peer))?;
    let me = ctx.me.clone();
    let queued = ctx.shared.hasher.verify(password, account.password_hash, move |ok| {
        let outcome = HashOutcome::LoginChecked { conn, peer, request_id, username, device, ok };
        let _ = me.send(WorkerCmd::Hashed(outcome));
    });
    // Not a failed login: the password was not checked.
    queued.map_err(|busy| Refusal::rate_limited("the server is busy; try again shortly", busy.retry_after))
}

/// A `Resume` (`device` None: the legacy device) or `ResumeDevice`: the token must have
/// been issued to that device.
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
    device: Option<String>,
) -> Handled {
    if let Some(device) = &device {
        devices::check_device_id(device)?;
    }
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
    // A device not seen for `--device-expiry` is forgotten, its token with it, before the
    // token is looked at: loading the user forgets what expired while it was not loaded,
    // and what expired since the last periodic pass goes here.
    let state = inboxes.known(ctx, &username)?;
    for expired in state.devices.expired(now_ms(), ctx.config().device_expiry) {
        devices::forget(ctx, state, &expired)?;
    }
    let issued_to = match token.len() == TOKEN_LEN {
        true => ctx.shared.store.token_device(account.user_id, &token_digest(&token), now_ms())?,
        false => None,
    };
    if issued_to.is_some() && issued_to.as_deref() == Some(device.as_deref().unwrap_or(LEGACY)) {
        ctx.shared.throttle.succeeded(&username, peer);
        let session = NewSession { conn, request_id, username, account, resume_token: token, device };
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
        HashOutcome::LoginChecked { conn, peer, request_id, username, device, ok } => {
            if ok {
                ctx.shared.throttle.succeeded(&username, peer);
            } else {
                login_failed(ctx, &username, peer);
            }
            let checked = Checked { conn, request_id, username, device, ok };
            (conn, request_id, finish_login(ctx, inboxes, presence, checked))
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

/// A password check that came back.
struct Checked {
    conn: ConnId,
    request_id: u32,
    username: String,
    device: Option<String>,
    ok: bool,
}

fn finish_login(ctx: &mut Ctx, inboxes: &mut Inboxes, presence: &Presence, checked: Checked) -> Handled {
    let Checked { conn, request_id, username, device, ok } = checked;
    if !ok {
        return Err(Refusal::new(ErrorCode::WrongPassword, "wrong password"));
    }
    let account = account_of(ctx, &username)?;
    let Some(token) = new_token() else {
        return Err(Refusal::new(ErrorCode::Internal, "no randomness for a resume token"));
    };
    let expires = now_ms().saturating_add(ctx.config().token_ttl.as_millis() as u64);
    let (uid, digest) = (account.user_id, token_digest(&token));
    match &device {
        // The legacy device's token as before devices, so an older server could read it.
        None => ctx.partition.put_token(uid, &digest, expires)?,
        Some(device) => {
            let device = device.clone();
            ctx.partition.device(DeviceChange::Token { uid, digest, expires_ms: expires, device })?
        }
    }
    let session = NewSession { conn, request_id, username, account, resume_token: token.to_vec(), device };
    open_session(ctx, inboxes, presence, session)
}

/// A login or resume that succeeded.
struct NewSession {
    conn: ConnId,
    request_id: u32,
    username: String,
    account: Account,
    resume_token: Vec<u8>,
    /// None for the legacy device (`Login`, `Resume`).
    device: Option<String>,
}

/// Makes `conn` the session of the user's device and starts delivering what the device is
/// owed. A session the device had is replaced (told why and closed); a device beyond
/// `--max-devices` sessions is refused, unless the limit is 1: then the newest login wins.
fn open_session(ctx: &mut Ctx, inboxes: &mut Inboxes, presence: &Presence, new: NewSession) -> Handled {
    let NewSession { conn, request_id, username, account, resume_token, device } = new;
    let named = device.is_some();
    let device: Arc<str> = device.map_or_else(devices::legacy, Arc::from);
    let budget = Arc::new(SessionBudget::new(ctx.config().delivery_window_bytes));
    let max = ctx.config().max_devices;
    let state = inboxes.known(ctx, &username)?;
    let name = state.name.clone();
    let was_online = state.devices.online();
    let replaced = state.devices.get(&device).and_then(|c| c.conn()).filter(|c| *c != conn);
    let others: Vec<(Arc<str>, ConnId)> = state
        .devices
        .iter()
        .filter(|(d, _)| **d != device)
        .filter_map(|(d, c)| c.conn().map(|conn| (d.clone(), conn)))
        .collect();
    let displaced = match others.len() >= max {
        // One session per user: the newer login wins, as before devices.
        true if max == 1 => others,
        true => {
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!("at most {max} devices at once; log one out first"),
            ))
        }
        false => Vec::new(),
    };
    devices::make_room(ctx, state, &device)?;
    // The app's count of users logged in changes only when the user goes from no session
    // to one (and back, in end_session), on this worker, which owns the user.
    if !was_online {
        let app = ctx.shared.apps.of(&name).ok_or_else(|| Refusal::new(ErrorCode::InvalidName, "no such app"))?;
        if !app.take_session() {
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!("the app has its most users logged in at once ({})", app.limits.max_connections),
            ));
        }
    }
    let (uid, now) = (account.user_id, now_ms());
    let seen = DeviceChange::Seen { uid, device: device.to_string(), last_seen_ms: now };
    if let Err(e) = ctx.partition.device(seen) {
        if !was_online {
            if let Some(app) = ctx.shared.apps.of(&name) {
                app.release_session();
            }
        }
        return Err(e.into());
    }
    // A device new to the user starts where the user's furthest device is (with none left,
    // where every forgotten one had read): what no device was sent comes as its backlog,
    // what some device read is history (`History` pages).
    let start = state.devices.iter().map(|(_, c)| c.acked).max().unwrap_or(state.floor).max(state.lowest());
    let created = state.devices.attach(&device, now, || start, |acked| Session::new(conn, acked, budget.clone()));
    if created && start > state.floor {
        // Unrecorded reads as the floor: the start needs its record.
        let change =
            DeviceChange::Ack { log: LogId::Inbox, owner: uid.into(), uid, device: device.to_string(), acked: start };
        ctx.partition.device(change)?;
    }
    // A named device's first login: the implicit legacy device is no more.
    state.settle(ctx)?;
    let acked = state.devices.get(&device).map_or(start, |c| c.acked);
    let last_seq = state.last_seq;
    let kicked = replaced.map(|old| (device.clone(), old)).into_iter().chain(displaced);
    for (old_device, old) in kicked {
        // The older session of this device (or, with one session per user, of another)
        // hears why it ends.
        ctx.batch.push(old, Push::Kicked { reason: "logged in elsewhere".into() }, false);
        ctx.batch.control(LoopMsg::Close { conn: old, reason: "logged in elsewhere" });
        if old_device != device {
            state.devices.detach(old, now);
            ctx.shared.directory.remove(&name, old);
            let seen = DeviceChange::Seen { uid, device: old_device.to_string(), last_seen_ms: now };
            if let Err(e) = ctx.partition.device(seen) {
                debug!("when {name}'s device {old_device:?} was last seen: {e}");
            }
        }
        connection_event(ctx, &name, &old_device, false, "logged in elsewhere");
    }
    let user = SessionUser { name: name.clone(), uid, admin: account.admin, service: false, device: device.clone() };
    ctx.batch.control(LoopMsg::Bind { conn, user: user.clone() });
    let reply = match named {
        false => Reply::LoggedIn {
            user_id: uid,
            display_name: account.display_name.clone(),
            acked,
            last_seq,
            resume_token,
            admin: account.admin,
        },
        true => {
            let (chats, read_receipts) = devices::login_chats(ctx, &user);
            Reply::DeviceLoggedIn {
                user_id: uid,
                display_name: account.display_name.clone(),
                device: device.to_string(),
                acked,
                last_seq,
                resume_token,
                admin: account.admin,
                chats,
                read_receipts,
            }
        }
    };
    // Durable: a token handed out must survive a crash, or the client is locked out.
    ctx.batch.reply(conn, request_id, reply, true);
    // What was read of the user's messages while it was away. A failure to read them does
    // not fail the login.
    if let Err(refusal) = read_state::push_held_receipts(ctx, uid, &device, conn, 0) {
        debug!("read receipts held for {name}: {}", refusal.message);
    }
    let display_name = account.display_name.clone();
    ctx.shared.directory.set(name.clone(), account.display_name, device.clone(), conn, budget);
    connection_event(ctx, &name, &device, true, "login");
    if ctx.shared.push.get(uid).is_some() {
        ctx.batch.send_to_worker(ctx.worker_of(Owner::PushQueue), WorkerCmd::PushOnline { uid });
    }
    debug!("{name} logged in on {device:?}; inbox acked {acked} of {last_seq}");
    // Group backlogs come from the groups' workers, after this batch's reply; those of groups
    // homed on other cluster nodes from there.
    for group_id in ctx.shared.store.memberships(&name)? {
        if ctx.home_of(Owner::Group(group_id)).is_some() {
            remote_members::online_elsewhere(ctx, group_id, &user, conn, &display_name);
            continue;
        }
        let worker = ctx.worker_of(Owner::Group(group_id));
        let cmd = WorkerCmd::MemberOnline { group_id, username: name.clone(), device: device.clone(), conn };
        ctx.batch.send_to_worker(worker, cmd);
    }
    // So do the support conversations' of the shops it is staff of or a customer of.
    let store = &ctx.shared.store;
    let mut shops: std::collections::BTreeSet<String> = store.staff_shops(&name)?.into_iter().collect();
    for id in store.customer_support(&name)? {
        shops.extend(store.support(id)?.map(|record| record.shop));
    }
    for shop in shops {
        let worker = ctx.worker_of(Owner::Shop(&shop));
        let cmd = WorkerCmd::SupportOnline { shop, username: name.clone(), device: device.clone(), conn };
        ctx.batch.send_to_worker(worker, cmd);
    }
    if !was_online {
        presence.announce(ctx, &name, true)?;
    }
    inboxes.known(ctx, &name)?.pump_device(ctx, &device)
}

/// The user's session on `conn` is over (closed, kicked, logged out) for `reason`; the user
/// goes offline with its last session.
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
    let now = now_ms();
    let Some(device) = state.devices.detach(conn, now) else {
        return;
    };
    let seen = DeviceChange::Seen { uid: state.uid, device: device.to_string(), last_seen_ms: now };
    if let Err(e) = ctx.partition.device(seen) {
        debug!("when {}'s device {device:?} was last seen: {e}", user.name);
    }
    let online = state.devices.online();
    ctx.shared.directory.remove(&user.name, conn);
    connection_event(ctx, &user.name, &device, false, reason);
    if online {
        debug!("{}'s session on {device:?} ended", user.name);
        return;
    }
    if let Some(app) = ctx.shared.apps.of(&user.name) {
        app.release_session();
    }
    if let Err(refusal) = presence.announce(ctx, &user.name, false) {
        debug!("presence for {}: {}", user.name, refusal.message);
    }
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

/// A user's logout of one device: that device's resume tokens are revoked and the other
/// workers told to forget the connection. The caller ends the session here as for a closed
/// connection. The device stays known: its positions wait for its next login.
pub fn logout(ctx: &mut Ctx, inboxes: &mut Inboxes, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    let state = inboxes.session(ctx, user, conn)?;
    let gone = devices::push_devices_of(state, &user.device);
    ctx.partition.device(DeviceChange::RevokeTokens { uid: user.uid, device: user.device.to_string() })?;
    // The device is not logged in any more, so it is not woken either.
    settings::forget_devices(ctx, user.uid, gone)?;
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
