//! A user's push devices and mutes: the requests that change them, on the user's own
//! worker (the only writer of the user's entry). Every change is written to sled, made
//! durable by the batch's checkpoint before the reply, then published in the shared
//! [`PushBook`](super::PushBook).

use crate::apps::valid_user_name;
use crate::clock::now_ms;
use crate::protocol::{Chat, ErrorCode, MuteInfo, PushDeviceInfo, PushPlatform, Reply, UserId};
use crate::route::{ConnId, SessionUser};
use crate::store::{Mute, PushDevice, PushPrefs};
use crate::worker::context::Ctx;
use crate::worker::devices::check_device_id;
use crate::worker::refusal::{Handled, Refusal};

/// Longest push token: APNs tokens are 64 hex digits, FCM's about 160 characters, a Web
/// Push subscription (endpoint and keys) about 500. Every user's devices are kept in
/// memory (see `PushBook`), so this times `max_devices` is what an account can cost there.
const MAX_TOKEN: usize = 1024;

/// A device's push request, as the client sent it.
pub struct DeviceRequest {
    pub device: String,
    pub platform: PushPlatform,
    pub token: String,
    pub previews: bool,
}

/// Registers the device, or replaces its token and settings.
pub fn set_device(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, request: DeviceRequest) -> Handled {
    let DeviceRequest { device, platform, token, previews } = request;
    check_device_id(&device)?;
    if token.is_empty() || token.len() > MAX_TOKEN || token.chars().any(char::is_control) {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("a push token is 1 to {MAX_TOKEN} bytes of text")));
    }
    let mut prefs = current(ctx, user);
    let max = ctx.config().push.max_devices;
    let entry = PushDevice { device, platform, token, previews, registered_ms: now_ms() };
    let full = || Refusal::new(ErrorCode::LimitReached, format!("at most {max} push devices; remove one first"));
    replace_or_add(&mut prefs.devices, entry, |a, b| a.device == b.device, max, full)?;
    save(ctx, user.uid, prefs)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// Done whether or not there was such a device (an id no device can have included).
pub fn remove_device(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, device: &str) -> Handled {
    let mut prefs = current(ctx, user);
    let before = prefs.devices.len();
    prefs.devices.retain(|d| d.device != device);
    if prefs.devices.len() != before {
        save(ctx, user.uid, prefs)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// Forgets every device of the user (logout: every device's resume token is revoked with
/// it, so none of them is logged in any more). Mutes stay: they are the user's choice.
pub fn remove_all_devices(ctx: &mut Ctx, user: &SessionUser) -> Handled {
    forget_devices(ctx, user.uid, |_| true)
}

/// Forgets the user's push devices whose ids are `gone` (a device logged out or removed:
/// it is not woken for a user it is no longer logged in as).
pub fn forget_devices(ctx: &mut Ctx, uid: UserId, gone: impl Fn(&str) -> bool) -> Handled {
    let mut prefs = ctx.shared.push.get(uid).map(|p| (*p).clone()).unwrap_or_default();
    let before = prefs.devices.len();
    prefs.devices.retain(|d| !gone(&d.device));
    if prefs.devices.len() == before {
        return Ok(());
    }
    save(ctx, uid, prefs)
}

/// A push gateway's word that `token` of `username` is dead: every device of the user
/// with it is forgotten. Done whether or not there was one (or such a user).
pub fn drop_token(
    ctx: &mut Ctx,
    conn: ConnId,
    request_id: u32,
    gateway: &SessionUser,
    username: &str,
    token: &str,
) -> Handled {
    if !gateway.service || !ctx.shared.store.is_push_gateway(&gateway.name)? {
        return Err(Refusal::new(ErrorCode::Forbidden, "this service has no push permission"));
    }
    let account = match valid_user_name(username) {
        true => ctx.shared.store.account(username)?,
        false => None,
    };
    if let Some((uid, prefs)) = account.and_then(|a| ctx.shared.push.get(a.user_id).map(|p| (a.user_id, p))) {
        if prefs.devices.iter().any(|d| d.token == token) {
            let mut prefs = (*prefs).clone();
            prefs.devices.retain(|d| d.token != token);
            save(ctx, uid, prefs)?;
        }
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn mute(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, chat: Chat, until_ms: u64) -> Handled {
    check_chat(&chat)?;
    let now = now_ms();
    if until_ms != 0 && until_ms <= now {
        return Err(Refusal::new(ErrorCode::BadRequest, "until_ms is in the past"));
    }
    let mut prefs = current(ctx, user);
    forget_expired(&mut prefs, now);
    let max = ctx.config().push.max_mutes;
    let full = || Refusal::new(ErrorCode::LimitReached, format!("at most {max} muted chats"));
    replace_or_add(&mut prefs.mutes, Mute { chat, until_ms }, |a, b| a.chat == b.chat, max, full)?;
    save(ctx, user.uid, prefs)?;
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

/// Done whether or not the chat was muted.
pub fn unmute(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser, chat: &Chat) -> Handled {
    let mut prefs = current(ctx, user);
    let before = prefs.mutes.len();
    prefs.mutes.retain(|m| &m.chat != chat);
    forget_expired(&mut prefs, now_ms());
    if prefs.mutes.len() != before {
        save(ctx, user.uid, prefs)?;
    }
    ctx.batch.reply(conn, request_id, Reply::Done, true);
    Ok(())
}

pub fn list(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser) {
    let prefs = current(ctx, user);
    let now = now_ms();
    let devices = prefs
        .devices
        .iter()
        .map(|d| PushDeviceInfo {
            device: d.device.clone(),
            platform: d.platform,
            previews: d.previews,
            registered_ms: d.registered_ms,
        })
        .collect();
    let mutes = prefs
        .mutes
        .iter()
        .filter(|m| m.until_ms == 0 || m.until_ms > now)
        .map(|m| MuteInfo { chat: m.chat.clone(), until_ms: m.until_ms })
        .collect();
    ctx.batch.reply(conn, request_id, Reply::PushSettings { devices, mutes }, false);
}

fn current(ctx: &Ctx, user: &SessionUser) -> PushPrefs {
    ctx.shared.push.get(user.uid).map(|p| (*p).clone()).unwrap_or_default()
}

/// Written to sled (checkpointed with the batch, before the reply) and then published.
fn save(ctx: &mut Ctx, uid: UserId, prefs: PushPrefs) -> Handled {
    ctx.partition.sled().put_push_prefs(uid, &prefs)?;
    ctx.shared.push.set(uid, prefs);
    Ok(())
}

/// Replaces the entry that is `same` as `entry`, or adds it if the list holds fewer than
/// `max` (a device registered again, a chat muted again, never count twice).
fn replace_or_add<T>(
    list: &mut Vec<T>,
    entry: T,
    same: impl Fn(&T, &T) -> bool,
    max: usize,
    full: impl FnOnce() -> Refusal,
) -> Handled {
    match list.iter().position(|existing| same(existing, &entry)) {
        Some(at) => list[at] = entry,
        None if list.len() >= max => return Err(full()),
        None => list.push(entry),
    }
    Ok(())
}

fn forget_expired(prefs: &mut PushPrefs, now: u64) {
    prefs.mutes.retain(|m| m.until_ms == 0 || m.until_ms > now);
}

fn check_chat(chat: &Chat) -> Handled {
    match chat {
        Chat::User(name) | Chat::Service(name) if !valid_user_name(name) => {
            Err(Refusal::new(ErrorCode::InvalidName, "not a valid user or service name"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_mutes_are_forgotten() {
        let mut prefs = PushPrefs {
            devices: vec![],
            mutes: vec![
                Mute { chat: Chat::User("bob".into()), until_ms: 10 },
                Mute { chat: Chat::User("carol".into()), until_ms: 0 },
                Mute { chat: Chat::User("dave".into()), until_ms: 30 },
            ],
        };
        forget_expired(&mut prefs, 10);
        let left: Vec<_> = prefs.mutes.iter().map(|m| m.until_ms).collect();
        assert_eq!(left, [0, 30]);
    }
}
