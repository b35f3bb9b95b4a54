//! A person's push settings from `confab-chat` against the real confabd (protocol.md
//! "Push notifications"): muting a user and a group, listing devices and mutes with
//! `/push`, unmuting, and the errors a person can run into (harness in `common`).
//!
//! Chat cannot register a device (the app on the device does that), so the device is
//! registered through the blocking client of `confab-proto` before chat logs in.

mod common;

use common::{Chat, Fixture, PASSWORD};
use confab_proto::client::Client;
use confab_proto::protocol::{PushPlatform, Reply, Request};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

const MINUTE_MS: u64 = 60_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_millis() as u64
}

/// Registers `user` and, as the app on their phone would, the phone for push
/// notifications; then the app closes its connection (it does not log out, which would
/// remove the device).
fn register_with_phone(addr: SocketAddr, user: &str) {
    let (mut app, _) = Client::connect(addr, "phone-app").expect("connect");
    app.register(user, PASSWORD).expect("register");
    app.login(user, PASSWORD).expect("login");
    let reply = app
        .request(Request::SetPushDevice {
            device: "phone".into(),
            platform: PushPlatform::Apns,
            token: "phone-token".into(),
            previews: true,
        })
        .expect("register the phone");
    assert!(matches!(reply, Reply::Done), "{reply:?}");
}

fn login(chat: &mut Chat, user: &str) {
    chat.expect("connected ");
    chat.send(&format!("/login {user} {PASSWORD}"));
    chat.expect(&format!("logged-in {user} "));
}

/// The number after `key` in `line`, up to the next space.
fn number(line: &str, key: &str) -> u64 {
    let (_, rest) = line.split_once(key).unwrap_or_else(|| panic!("no {key} in {line:?}"));
    let value = rest.split(' ').next().unwrap_or_default();
    value.parse().unwrap_or_else(|_| panic!("{key}{value:?} is not a number in {line:?}"))
}

#[test]
fn a_user_and_a_group_are_muted_listed_and_unmuted() {
    let fx = Fixture::new();
    let registered_after = now_ms();
    register_with_phone(fx.addr(), "alice");
    let registered_before = now_ms();
    let mut alice = fx.chat("alice");
    login(&mut alice, "alice");
    alice.send("/group create Book club");
    let id = alice.created_group();

    // The phone is listed (without its token), and nothing is muted yet.
    alice.send("/push");
    assert_eq!(alice.expect("push-settings "), "push-settings devices=1 mutes=0");
    let phone = alice.expect("push-device ");
    assert!(phone.starts_with("push-device device=phone platform=apns previews=true registered="), "{phone}");
    assert!((registered_after..=registered_before).contains(&number(&phone, "registered=")), "{phone}");

    // Bob for an hour from when the line was typed (the chat need not exist: the list is
    // alice's own), the group until unmuted.
    let typed_after = now_ms();
    alice.send("/mute bob 60");
    let bob = alice.expect("muted ");
    let typed_before = now_ms();
    assert!(bob.starts_with("muted user=bob until="), "{bob}");
    let until = number(&bob, "until=");
    assert!((typed_after + 60 * MINUTE_MS..=typed_before + 60 * MINUTE_MS).contains(&until), "{bob}");
    alice.send(&format!("/group mute {id}"));
    assert_eq!(alice.expect("muted "), format!("muted group={id} until=never"));

    // The header, the device, then the mutes (in no promised order).
    alice.send("/push");
    assert_eq!(alice.expect("push-settings "), "push-settings devices=1 mutes=2");
    alice.expect("push-device device=phone ");
    let mut mutes = [alice.expect("muted "), alice.expect("muted ")];
    mutes.sort();
    assert_eq!(mutes, [format!("muted group={id} until=never"), format!("muted user=bob until={until}")]);

    // Muting again replaces the time; unmuting ends the mute.
    alice.send("/mute bob 0");
    assert_eq!(alice.expect("muted "), "muted user=bob until=never");
    alice.send("/unmute bob");
    assert_eq!(alice.expect("done "), "done unmute user=bob");
    alice.send("/push");
    assert_eq!(alice.expect("push-settings "), "push-settings devices=1 mutes=1");
    alice.expect("push-device device=phone ");
    assert_eq!(alice.expect("muted "), format!("muted group={id} until=never"));
    alice.send(&format!("/group unmute {id}"));
    assert_eq!(alice.expect("done "), format!("done unmute group={id}"));
    // Unmuting what is not muted is no error.
    alice.send("/unmute bob");
    assert_eq!(alice.expect("done "), "done unmute user=bob");
    alice.send("/push");
    assert_eq!(alice.expect("push-settings "), "push-settings devices=1 mutes=0");

    // Mistakes are caught before they reach the server, one error line each, and the
    // session goes on.
    alice.send("/mute Bob");
    assert_eq!(alice.expect("error "), r#"error Invalid: "Bob" is not a username (3-32 of a-z 0-9 _ . -)"#);
    alice.send("/mute 7 30");
    assert_eq!(
        alice.expect("error "),
        r#"error Invalid: "7" is not a username (3-32 of a-z 0-9 _ . -); for group 7: /group mute 7"#
    );
    alice.send("/mute bob soon");
    assert_eq!(
        alice.expect("error "),
        r#"error Invalid: "soon" is not a number of minutes (none or 0: until unmuted)"#
    );
    alice.send("/group unmute book-club");
    assert!(alice.expect("error ").starts_with("error Invalid: "));
    alice.send("/mute");
    assert_eq!(alice.expect("error "), "error Usage: /mute NAME [MINUTES]");
    alice.send("/push");
    assert_eq!(alice.expect_any(&["push-settings ", "error "]), "push-settings devices=1 mutes=0");

    alice.finish();
}

#[test]
fn the_server_refuses_a_mute_beyond_the_limit_with_an_error_line() {
    let fx = Fixture::new();
    let mut carol = fx.chat("carol");
    carol.register_and_login("carol");
    // 256 mutes is the server's limit (protocol.md "Error codes", LimitReached).
    for i in 0..256 {
        carol.send(&format!("/mute user{i:03}"));
    }
    for i in 0..256 {
        assert_eq!(carol.expect_any(&["muted ", "error "]), format!("muted user=user{i:03} until=never"));
    }
    carol.send("/group mute 1");
    assert_eq!(carol.expect_any(&["muted ", "error "]), "error LimitReached: at most 256 muted chats");
    // A chat already muted is not a new one: its time may still change.
    carol.send("/mute user000 5");
    assert!(carol.expect_any(&["muted ", "error "]).starts_with("muted user=user000 until="));
    carol.send("/push");
    assert_eq!(carol.expect("push-settings "), "push-settings devices=0 mutes=256");
    carol.finish();
}
