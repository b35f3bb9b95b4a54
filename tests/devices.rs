//! Devices: protocol.md "Devices". One user on several devices at once: each device gets
//! every stored message and acknowledges on its own, what the user sends from one device
//! reaches the others as sent copies, and a client that names no device is the user's
//! legacy device, served as before devices.

use crate::common::daemon::{self, confabd, daemon_with_users, logged_in, logged_in_device, spawn_daemon};
use crate::common::{
    device_inbox_of, eventually, inbox_of, login_device, token_of, DataDir, TestServer, PASSWORD, SETTLE,
};
use confab::client::{Client, ClientError};
use confab::protocol::{
    Chat, ClientMsgId, Content, Conversation, DeviceInfo, ErrorCode, GroupId, Message, Push, Reply, Request, Seq,
    Target,
};
use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stored inbox message as a device sees it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// seq, prev_seq, from, text
    Got(u64, u64, String, String),
    /// A sent copy: seq, prev_seq, to, text
    Copy(u64, u64, String, String),
}

fn got(seq: u64, prev: u64, from: &str, text: &str) -> Seen {
    Seen::Got(seq, prev, from.into(), text.into())
}

fn copy(seq: u64, prev: u64, to: &str, text: &str) -> Seen {
    Seen::Copy(seq, prev, to.into(), text.into())
}

fn text(m: &Message) -> String {
    String::from_utf8(m.content.body.clone()).unwrap()
}

/// The next stored inbox message or sent copy pushed to `client` (presence and the like
/// are passed over).
fn next_inbox(client: &mut Client) -> Seen {
    next_inbox_message(client).0
}

/// [`next_inbox`], with the message itself.
fn next_inbox_message(client: &mut Client) -> (Seen, Message) {
    loop {
        match client.next_push().unwrap() {
            Push::Message(m) if m.conversation == Conversation::Inbox => {
                return (Seen::Got(m.seq.get(), m.prev_seq.get(), m.from.clone(), text(&m)), m)
            }
            Push::SentCopy { to, message: m } => {
                assert_eq!(m.conversation, Conversation::Inbox);
                return (Seen::Copy(m.seq.get(), m.prev_seq.get(), to, text(&m)), m);
            }
            _ => continue,
        }
    }
}

/// The next group message pushed to `client`: (seq, prev_seq, from, text); events too.
fn next_group(client: &mut Client, id: GroupId) -> (u64, u64, String, String) {
    loop {
        if let Push::Message(m) = client.next_push().unwrap() {
            if m.conversation == Conversation::Group(id) {
                return (m.seq.get(), m.prev_seq.get(), m.from.clone(), text(&m));
            }
        }
    }
}

/// Bob sends alice the numbered messages `m{i}`, one for each of `numbers`.
fn bob_sends(bob: &mut Client, numbers: RangeInclusive<u64>) {
    for i in numbers {
        bob.send_text("alice", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
}

/// `device` is pushed bob's numbered messages `numbers` (see [`bob_sends`]), stored at the
/// same sequences: in order, gap-free.
fn receives(device: &mut Client, numbers: RangeInclusive<u64>) {
    for i in numbers {
        assert_eq!(next_inbox(device), got(i, i - 1, "bob", &format!("m{i}")), "in order, gap-free");
    }
}

fn create_group(client: &mut Client, name: &str) -> GroupId {
    match client.request(Request::CreateGroup { name: name.into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn send(client: &mut Client, to: Target, id: u64, text: &str) -> Seq {
    let request = Request::Send { to, client_msg_id: ClientMsgId(id), transient: false, content: Content::text(text) };
    match client.request(request).unwrap() {
        Reply::Sent { seq, duplicate: false, .. } => seq,
        other => panic!("{other:?}"),
    }
}

fn ack(client: &mut Client, conversation: Conversation, up_to: u64) -> u64 {
    match client.request(Request::Ack { conversation, up_to: Seq(up_to) }).unwrap() {
        Reply::Acked { up_to, .. } => up_to.get(),
        other => panic!("{other:?}"),
    }
}

fn refused(client: &mut Client, request: Request) -> (ErrorCode, String) {
    match client.request(request) {
        Err(ClientError::Server { code, message, .. }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn login_request(device: &str) -> Request {
    Request::LoginDevice { username: "alice".into(), password: PASSWORD.into(), device: device.into() }
}

fn resume_device(client: &mut Client, token: &[u8], device: &str) -> Result<Reply, ClientError> {
    client.request(Request::ResumeDevice { username: "alice".into(), token: token.to_vec(), device: device.into() })
}

fn devices(client: &mut Client) -> Vec<DeviceInfo> {
    match client.request(Request::ListDevices).unwrap() {
        Reply::Devices { devices } => devices,
        other => panic!("{other:?}"),
    }
}

/// The caller's devices as (device, online, this).
fn device_list(client: &mut Client) -> Vec<(String, bool, bool)> {
    devices(client).into_iter().map(|d| (d.device, d.online, d.this)).collect()
}

/// Waits until the server has ended the session of the closed `device`: it lists it offline.
fn until_offline(client: &mut Client, device: &str) {
    eventually(&format!("{device}'s closed session to end"), SETTLE, || {
        devices(client).iter().any(|d| d.device == device && !d.online)
    });
}

#[test]
fn two_devices_of_one_user_both_receive_each_acks_on_its_own_and_an_offline_one_catches_up() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, reply) = server.login_device("alice", "laptop");
    assert_eq!(device_inbox_of(&reply), (Seq(0), Seq(0)));
    assert!(matches!(&reply, Reply::DeviceLoggedIn { device, chats, read_receipts: true, .. }
        if device == "laptop" && chats.is_empty()));
    let (mut phone, _) = server.login_device("alice", "phone");
    bob_sends(&mut bob, 1..=3);
    for device in [&mut laptop, &mut phone] {
        receives(device, 1..=3);
    }
    assert_eq!(ack(&mut laptop, Conversation::Inbox, 3), 3);
    assert_eq!(ack(&mut phone, Conversation::Inbox, 1), 1, "each device's position is its own");
    drop(phone);
    until_offline(&mut laptop, "phone");

    bob_sends(&mut bob, 4..=5);
    receives(&mut laptop, 4..=5);
    assert_eq!(ack(&mut laptop, Conversation::Inbox, 5), 5);
    // The laptop read everything; the phone's position still holds what it has not.
    let (mut phone, reply) = server.login_device("alice", "phone");
    assert_eq!(device_inbox_of(&reply), (Seq(1), Seq(5)));
    receives(&mut phone, 2..=5);
    assert_eq!(ack(&mut phone, Conversation::Inbox, 5), 5);
    let store = server.server().store();
    eventually("every message is deleted once both devices acked it", SETTLE, || {
        store.stats().unwrap().stored_messages == 0
    });
}

#[test]
fn sent_copies_reach_the_other_devices_in_order_but_not_the_sender_nor_a_legacy_session() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    let mut legacy = server.login("alice");

    let (message_id, _, _) = laptop.send_text("bob", ClientMsgId(1), "see you at six").unwrap();
    let (seen, m) = next_inbox_message(&mut phone);
    assert_eq!(seen, copy(1, 0, "bob", "see you at six"));
    assert_eq!((m.message_id, m.from.as_str(), m.display_name.as_str()), (message_id, "alice", "alice"));
    let received = bob.next_message().unwrap();
    assert_eq!((received.message_id, text(&received)), (message_id, "see you at six".to_string()));

    bob.send_text("alice", ClientMsgId(1), "ok").unwrap();
    // The laptop sent it while caught up: it counts the copy as sent. The legacy session
    // is never sent copies. Both see the gap by prev_seq.
    assert_eq!(next_inbox(&mut laptop), got(2, 0, "bob", "ok"));
    assert_eq!(next_inbox(&mut phone), got(2, 1, "bob", "ok"));
    assert_eq!(next_inbox(&mut legacy), got(2, 0, "bob", "ok"));

    // A device new to the user starts where its furthest device is (the laptop passed over
    // its copy): what no device was sent follows, the rest is history, copies included.
    let (mut tablet, reply) = server.login_device("alice", "tablet");
    assert_eq!(device_inbox_of(&reply), (Seq(1), Seq(2)));
    assert_eq!(next_inbox(&mut tablet), got(2, 1, "bob", "ok"));
    let page = tablet.request(Request::History { chat: Chat::User("bob".into()), before: Seq(0), limit: 10 }).unwrap();
    let Reply::HistoryPage { messages, more: false, .. } = page else { panic!("{page:?}") };
    let shown: Vec<(u64, &str, String)> = messages.iter().map(|m| (m.seq.get(), m.from.as_str(), text(m))).collect();
    assert_eq!(shown, [(1, "alice", "see you at six".to_string()), (2, "bob", "ok".to_string())]);

    // A note to oneself has no copy; a legacy session's sends are copied for the devices.
    legacy.send_text("bob", ClientMsgId(2), "from the old client").unwrap();
    assert_eq!(next_inbox(&mut phone), copy(3, 2, "bob", "from the old client"));
    assert_eq!(next_inbox(&mut tablet), copy(3, 2, "bob", "from the old client"));
    phone.send_text("alice", ClientMsgId(3), "note to self").unwrap();
    assert_eq!(next_inbox(&mut tablet), got(4, 3, "alice", "note to self"));
    assert_eq!(next_inbox(&mut legacy), got(4, 2, "alice", "note to self"));
}

#[test]
fn a_device_beyond_the_limit_is_refused_and_a_device_logging_in_again_replaces_only_its_own_session() {
    let server = TestServer::with(|c| c.max_devices = 2);
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    let mut tablet = server.client();
    let refusal = refused(&mut tablet, login_request("tablet"));
    assert_eq!(refusal, (ErrorCode::LimitReached, "at most 2 devices at once; log one out first".into()));
    // A client that names no device is a device too.
    let (code, _) = refused(&mut tablet, Request::Login { username: "alice".into(), password: PASSWORD.into() });
    assert_eq!(code, ErrorCode::LimitReached);

    let (mut laptop_again, _) = server.login_device("alice", "laptop");
    assert_eq!(laptop.next_push().unwrap(), Push::Kicked { reason: "logged in elsewhere".into() });
    assert!(matches!(laptop.next_push(), Err(ClientError::Closed)));
    bob.send_text("alice", ClientMsgId(1), "still there?").unwrap();
    assert_eq!(next_inbox(&mut phone), got(1, 0, "bob", "still there?"), "the other device's session stays");
    assert_eq!(next_inbox(&mut laptop_again), got(1, 0, "bob", "still there?"));
}

#[test]
fn with_one_device_at_a_time_the_newest_login_wins_as_before_devices() {
    let server = TestServer::with(|c| c.max_devices = 1);
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    assert_eq!(laptop.next_push().unwrap(), Push::Kicked { reason: "logged in elsewhere".into() });
    bob.send_text("alice", ClientMsgId(1), "hi").unwrap();
    assert_eq!(next_inbox(&mut phone), got(1, 0, "bob", "hi"));
    let mut legacy = server.login("alice");
    assert_eq!(phone.next_push().unwrap(), Push::Kicked { reason: "logged in elsewhere".into() });
    assert_eq!(next_inbox(&mut legacy), got(1, 0, "bob", "hi"));
}

#[test]
fn a_logout_ends_one_device_and_its_token_while_the_others_stay() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, reply) = server.login_device("alice", "laptop");
    let laptop_token = token_of(&reply);
    let (mut phone, reply) = server.login_device("alice", "phone");
    let phone_token = token_of(&reply);
    assert_eq!(laptop.request(Request::Logout).unwrap(), Reply::LoggedOut);

    let watch = Request::SubscribePresence { username: "alice".into() };
    assert_eq!(bob.request(watch).unwrap(), Reply::Subscribed { username: "alice".into(), online: true });
    bob.send_text("alice", ClientMsgId(1), "hi").unwrap();
    assert_eq!(next_inbox(&mut phone), got(1, 0, "bob", "hi"));

    let mut other = server.client();
    assert_eq!(resume_device(&mut other, &laptop_token, "laptop").unwrap_err().code(), Some(ErrorCode::InvalidToken));
    // A token resumes only the device it was issued to.
    assert_eq!(resume_device(&mut other, &phone_token, "laptop").unwrap_err().code(), Some(ErrorCode::InvalidToken));
    assert_eq!(other.resume("alice", &phone_token).unwrap_err().code(), Some(ErrorCode::InvalidToken));
    let reply = resume_device(&mut other, &phone_token, "phone").unwrap();
    assert_eq!(device_inbox_of(&reply), (Seq(0), Seq(1)));
    assert_eq!(phone.next_push().unwrap(), Push::Kicked { reason: "logged in elsewhere".into() });
    assert_eq!(next_inbox(&mut other), got(1, 0, "bob", "hi"));
    // The logged-out laptop logs in again with its password and goes on where it was.
    let reply = login_device(&mut laptop, "alice", "laptop");
    assert_eq!(device_inbox_of(&reply), (Seq(0), Seq(1)));
    assert_eq!(next_inbox(&mut laptop), got(1, 0, "bob", "hi"));
}

#[test]
fn logging_out_everywhere_ends_every_session_and_revokes_every_token() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let (mut laptop, reply) = server.login_device("alice", "laptop");
    let laptop_token = token_of(&reply);
    let (mut phone, reply) = server.login_device("alice", "phone");
    let phone_token = token_of(&reply);
    let mut legacy = server.client();
    let legacy_token = token_of(&legacy.login("alice", PASSWORD).unwrap());

    assert_eq!(phone.request(Request::LogoutEverywhere).unwrap(), Reply::LoggedOut);
    for client in [&mut laptop, &mut legacy] {
        assert_eq!(client.next_push().unwrap(), Push::Kicked { reason: "logged out everywhere".into() });
        assert!(matches!(client.next_push(), Err(ClientError::Closed)));
    }
    let mut other = server.client();
    for (token, device) in [(&laptop_token, "laptop"), (&phone_token, "phone")] {
        assert_eq!(resume_device(&mut other, token, device).unwrap_err().code(), Some(ErrorCode::InvalidToken));
    }
    assert_eq!(other.resume("alice", &legacy_token).unwrap_err().code(), Some(ErrorCode::InvalidToken));
    // The connection that asked is logged out, not closed: it may log in again.
    login_device(&mut phone, "alice", "phone");
}

#[test]
fn devices_are_listed_and_one_is_removed_with_its_session_token_and_positions() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, reply) = server.login_device("alice", "phone");
    let phone_token = token_of(&reply);
    let (tablet, _) = server.login_device("alice", "tablet");
    drop(tablet);
    until_offline(&mut laptop, "tablet");
    let expected = vec![
        ("laptop".to_string(), true, true),
        ("phone".to_string(), true, false),
        ("tablet".to_string(), false, false),
    ];
    assert_eq!(device_list(&mut laptop), expected);
    let listed = devices(&mut laptop);
    assert!(listed[2].last_seen_ms >= listed[0].last_seen_ms, "the tablet was seen last, when it left");

    bob.send_text("alice", ClientMsgId(1), "m1").unwrap();
    assert_eq!(next_inbox(&mut laptop), got(1, 0, "bob", "m1"));
    assert_eq!(ack(&mut laptop, Conversation::Inbox, 1), 1);
    assert_eq!(laptop.request(Request::RemoveDevice { device: "phone".into() }).unwrap(), Reply::Done);
    assert_eq!(next_inbox(&mut phone), got(1, 0, "bob", "m1"));
    assert_eq!(phone.next_push().unwrap(), Push::Kicked { reason: "this device was removed".into() });
    let mut other = server.client();
    assert_eq!(resume_device(&mut other, &phone_token, "phone").unwrap_err().code(), Some(ErrorCode::InvalidToken));
    let unknown = refused(&mut laptop, Request::RemoveDevice { device: "phone".into() });
    assert_eq!(unknown, (ErrorCode::UnknownDevice, "no device named phone".into()));
    let (code, _) = refused(&mut laptop, Request::RemoveDevice { device: "laptop".into() });
    assert_eq!(code, ErrorCode::BadRequest, "the device asking logs out instead");
    assert_eq!(device_list(&mut laptop), vec![expected[0].clone(), expected[2].clone()]);

    // The phone's position went with it: back, it is a new device, which starts where the
    // user's furthest device is.
    assert_eq!(ack(&mut laptop, Conversation::Inbox, 1), 1);
    let reply = login_device(&mut other, "alice", "tablet");
    assert_eq!(device_inbox_of(&reply), (Seq(0), Seq(1)), "the tablet's position holds");
    let (_, reply) = server.login_device("alice", "phone");
    assert_eq!(device_inbox_of(&reply), (Seq(1), Seq(1)), "a new device, where the laptop is");
}

#[test]
fn a_user_is_online_while_any_device_is_and_services_see_each_device() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let token = confab::admin::add_service(server.server().store(), &crate::common::in_default("watcher"), false);
    let mut watcher = server.client();
    let login = Request::ServiceLogin { name: "watcher".into(), token: token.unwrap() };
    assert!(matches!(watcher.request(login).unwrap(), Reply::ServiceLoggedIn { .. }));
    assert_eq!(watcher.request(Request::WatchConnections).unwrap(), Reply::Done);
    let watch = Request::SubscribePresence { username: "alice".into() };
    assert_eq!(bob.request(watch).unwrap(), Reply::Subscribed { username: "alice".into(), online: false });
    let event = |device: &str, connected: bool, reason: &str| Push::DeviceConnection {
        username: "alice".into(),
        device: device.into(),
        connected,
        reason: reason.into(),
    };

    let (laptop, _) = server.login_device("alice", "laptop");
    assert_eq!(bob.next_push().unwrap(), Push::Presence { username: "alice".into(), online: true });
    assert_eq!(watcher.next_push().unwrap(), event("laptop", true, "login"));
    let (phone, _) = server.login_device("alice", "phone");
    assert_eq!(watcher.next_push().unwrap(), event("phone", true, "login"));
    drop(phone);
    assert_eq!(watcher.next_push().unwrap(), event("phone", false, "closed by the client"));
    // No presence change came with the phone: the next push is carol's message.
    carol.send_text("bob", ClientMsgId(1), "marker").unwrap();
    assert!(matches!(bob.next_push().unwrap(), Push::Message(m) if text(&m) == "marker"));
    let legacy = server.login("alice");
    let connection =
        |connected: bool, reason: &str| Push::Connection { username: "alice".into(), connected, reason: reason.into() };
    assert_eq!(watcher.next_push().unwrap(), connection(true, "login"), "a legacy session as before devices");
    drop(legacy);
    assert_eq!(watcher.next_push().unwrap(), connection(false, "closed by the client"));
    drop(laptop);
    assert_eq!(watcher.next_push().unwrap(), event("laptop", false, "closed by the client"));
    assert_eq!(bob.next_push().unwrap(), Push::Presence { username: "alice".into(), online: false });
}

#[test]
fn an_expired_device_holds_nothing_and_is_forgotten() {
    let server = TestServer::with(|c| c.device_expiry = Duration::from_millis(300));
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (phone, _) = server.login_device("alice", "phone");
    drop(phone);
    let (mut laptop, _) = server.login_device("alice", "laptop");
    bob_sends(&mut bob, 1..=3);
    receives(&mut laptop, 1..=3);
    // The laptop is online, so it never expires; the phone, not seen since it left, does.
    eventually("the phone to be forgotten", SETTLE, || {
        device_list(&mut laptop) == vec![("laptop".to_string(), true, true)]
    });
    let store = server.server().store();
    assert!(store.stats().unwrap().stored_messages >= 3, "the laptop has not acked");
    assert_eq!(ack(&mut laptop, Conversation::Inbox, 3), 3);
    eventually("the messages only the phone held to be deleted", SETTLE, || {
        store.stats().unwrap().stored_messages == 0
    });
    // Back, the phone is a new device: it starts where the laptop is.
    let (_, reply) = server.login_device("alice", "phone");
    assert_eq!(device_inbox_of(&reply), (Seq(3), Seq(3)));
}

#[test]
fn the_token_of_an_expired_device_no_longer_resumes_it() {
    let mut server = TestServer::with(|c| c.device_expiry = Duration::from_millis(300));
    server.register(&["alice"]);
    let (phone, reply) = server.login_device("alice", "phone");
    let token = token_of(&reply);
    drop(phone);
    // Down while the phone expires: nothing forgot it yet when alice's phone comes back.
    server.stop();
    std::thread::sleep(Duration::from_millis(400));
    server.restart();
    let mut phone = server.client();
    assert_eq!(resume_device(&mut phone, &token, "phone").unwrap_err().code(), Some(ErrorCode::InvalidToken));
}

#[test]
fn group_messages_reach_each_device_which_acks_on_its_own() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    let mut legacy = server.login("alice");
    let id = create_group(&mut bob, "club");
    let add = Request::AddMember { group_id: id, username: "alice".into() };
    assert_eq!(bob.request(add).unwrap(), Reply::Done);
    for client in [&mut laptop, &mut phone, &mut legacy] {
        assert_eq!(next_group(client, id).0, 2, "each device hears it was added");
    }
    send(&mut bob, Target::Group(id), 1, "hello club");
    for client in [&mut laptop, &mut phone, &mut legacy] {
        assert_eq!(next_group(client, id), (3, 2, "bob".into(), "hello club".into()));
    }
    assert_eq!(ack(&mut laptop, Conversation::Group(id), 3), 3);
    assert_eq!(ack(&mut phone, Conversation::Group(id), 2), 2, "its own position");

    // Alice's own message: her other named device is pushed it, the sending one and the
    // legacy session are not.
    send(&mut laptop, Target::Group(id), 2, "from the laptop");
    assert_eq!(next_group(&mut phone, id), (4, 3, "alice".into(), "from the laptop".into()));
    send(&mut bob, Target::Group(id), 3, "welcome");
    assert_eq!(next_group(&mut laptop, id), (5, 3, "bob".into(), "welcome".into()));
    assert_eq!(next_group(&mut phone, id), (5, 4, "bob".into(), "welcome".into()));
    assert_eq!(next_group(&mut legacy, id), (5, 3, "bob".into(), "welcome".into()));

    // The phone goes away behind: it catches up from its own position.
    drop(phone);
    until_offline(&mut laptop, "phone");
    assert_eq!(ack(&mut laptop, Conversation::Group(id), 5), 5);
    let (mut phone, _) = server.login_device("alice", "phone");
    for (seq, from, said) in [(3, "bob", "hello club"), (4, "alice", "from the laptop"), (5, "bob", "welcome")] {
        assert_eq!(next_group(&mut phone, id), (seq, seq - 1, from.into(), said.into()));
    }
    let groups = match phone.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => groups,
        other => panic!("{other:?}"),
    };
    assert_eq!((groups[0].acked, groups[0].last_seq), (Seq(2), Seq(5)), "the phone's own position");
}

#[test]
fn support_messages_reach_each_device_of_the_customer_and_the_staff() {
    let mut server = TestServer::start();
    server.register(&["alice", "bob"]);
    server.open_shop("acme", &["bob"]);
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    let (mut desk, _) = server.login_device("bob", "desk");
    let (mut mobile, _) = server.login_device("bob", "mobile");
    let next = |client: &mut Client| loop {
        if let Push::Message(m) = client.next_push().unwrap() {
            if let Conversation::Support(id) = m.conversation {
                return (id, m.seq.get(), m.prev_seq.get(), m.from.clone(), text(&m));
            }
        }
    };
    send(&mut laptop, Target::Shop("acme".into()), 1, "my order?");
    let (id, ..) = next(&mut phone);
    for staff in [&mut desk, &mut mobile] {
        assert_eq!(next(staff), (id, 1, 0, "alice".into(), "my order?".into()));
    }
    send(&mut desk, Target::Support(id), 1, "on its way");
    assert_eq!(next(&mut mobile), (id, 2, 1, "bob".into(), "on its way".into()), "the agent's other device");
    for customer in [&mut laptop, &mut phone] {
        assert_eq!(next(customer).4, "on its way");
    }
    assert_eq!(ack(&mut laptop, Conversation::Support(id), 2), 2);
    assert_eq!(ack(&mut phone, Conversation::Support(id), 1), 1, "each device acks on its own");
    drop(phone);
    until_offline(&mut laptop, "phone");
    let (mut phone, _) = server.login_device("alice", "phone");
    assert_eq!(next(&mut phone), (id, 2, 1, "acme".into(), "on its way".into()));
}

#[test]
fn a_restart_keeps_each_devices_position() {
    let mut server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    let mut legacy = server.login("alice");
    bob_sends(&mut bob, 1..=5);
    for client in [&mut laptop, &mut phone, &mut legacy] {
        receives(client, 1..=5);
    }
    assert_eq!(ack(&mut laptop, Conversation::Inbox, 4), 4);
    assert_eq!(ack(&mut phone, Conversation::Inbox, 2), 2);
    assert_eq!(ack(&mut legacy, Conversation::Inbox, 5), 5);
    drop((laptop, phone, legacy));
    server.restart();
    assert_eq!(device_inbox_of(&server.login_device("alice", "laptop").1), (Seq(4), Seq(5)));
    let (mut phone, reply) = server.login_device("alice", "phone");
    assert_eq!(device_inbox_of(&reply), (Seq(2), Seq(5)));
    assert_eq!(next_inbox(&mut phone), got(3, 2, "bob", "m3"));
    let mut legacy = server.client();
    assert_eq!(inbox_of(&legacy.login("alice", PASSWORD).unwrap()), (Seq(5), Seq(5)));
}

/// What bob's laptop was pushed and acked before the kill: (seq, text) in order.
fn read_and_ack_until_broken(addr: std::net::SocketAddr, seen: Arc<Mutex<Vec<(u64, String)>>>) {
    let (mut laptop, _) = logged_in_device(addr, "bob", "laptop");
    while let Ok(push) = laptop.next_push() {
        let Push::Message(m) = push else { continue };
        let seq = m.seq.get();
        seen.lock().unwrap().push((seq, text(&m)));
        if seq % 50 == 0 && laptop.request(Request::Ack { conversation: Conversation::Inbox, up_to: m.seq }).is_err() {
            return;
        }
    }
}

#[test]
fn sigkill_mid_stream_with_two_devices_loses_nothing_for_either_and_duplicates_nothing_acked() {
    let data = DataDir::new();
    let mut daemon = daemon_with_users(data.path(), &["alice", "bob"]);
    // Both of bob's devices are known before the stream: the phone then stays away.
    let (mut phone, _) = logged_in_device(daemon.addr, "bob", "phone");
    assert_eq!(phone.request(Request::Logout).unwrap(), Reply::LoggedOut);
    drop(phone);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (addr, seen) = (daemon.addr, seen.clone());
        std::thread::spawn(move || read_and_ack_until_broken(addr, seen))
    };
    let (attempted, receipted, _) = crate::crash::signal_mid_stream(&mut daemon, "-KILL");
    reader.join().unwrap();
    let seen_before = seen.lock().unwrap().clone();

    let mut daemon = spawn_daemon(data.path(), &["--log-level", "info"]);
    let mut alice = logged_in(daemon.addr, "alice");
    for cmid in 1..attempted {
        assert!(matches!(alice.request(crate::crash::send_request(ClientMsgId(cmid))).unwrap(), Reply::Sent { .. }));
    }
    // Each device, in turn, gets from its own position to the end, once and in order.
    for device in ["laptop", "phone"] {
        let (mut client, reply) = logged_in_device(daemon.addr, "bob", device);
        let (acked, last_seq) = device_inbox_of(&reply);
        assert_eq!(last_seq, Seq(attempted - 1), "each attempted message stored exactly once");
        let mut texts: Vec<(u64, String)> = match device {
            "laptop" => seen_before.iter().filter(|(seq, _)| *seq <= acked.get()).cloned().collect(),
            _ => {
                assert_eq!(acked, Seq(0), "the phone acknowledged nothing");
                Vec::new()
            }
        };
        for expected in acked.get() + 1..=last_seq.get() {
            let m = client.next_message().unwrap();
            assert_eq!((m.seq.get(), m.prev_seq.get()), (expected, expected - 1), "{device}: in order, gap-free");
            texts.push((expected, text(&m)));
        }
        let unique: HashSet<&String> = texts.iter().map(|(_, t)| t).collect();
        assert_eq!(unique.len(), texts.len(), "{device}: nothing twice");
        for (cmid, _) in &receipted {
            assert!(unique.contains(&format!("message {cmid}")), "{device}: receipted message {cmid} lost");
        }
        // What the laptop saw before the kill is what it gets again at the same sequences.
        for (seq, said) in seen_before.iter().filter(|(seq, _)| *seq > acked.get()) {
            assert_eq!(&texts[*seq as usize - 1].1, said, "{device}: message {seq} is the one it saw");
        }
        client.ack(last_seq).unwrap();
    }
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[test]
fn the_admin_commands_list_a_users_devices_and_forget_one_on_a_stopped_daemon() {
    let data = DataDir::new();
    let mut daemon = daemon_with_users(data.path(), &["alice"]);
    logged_in_device(daemon.addr, "alice", "laptop");
    let phone_token = token_of(&logged_in_device(daemon.addr, "alice", "phone").1);
    assert!(daemon::signal(&mut daemon, "-TERM").success());

    let listed = confabd(data.path(), &["user", "devices", "alice"], "");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let ids: Vec<&str> = listed.lines().map(|line| line.split('\t').next().unwrap()).collect();
    assert_eq!(ids, ["laptop", "phone"], "{listed}");
    let removed = confabd(data.path(), &["user", "device-remove", "alice", "phone"], "");
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let again = confabd(data.path(), &["user", "device-remove", "alice", "phone"], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("alice has no device \"phone\""));
    let listed = String::from_utf8(confabd(data.path(), &["user", "devices", "alice"], "").stdout).unwrap();
    assert!(listed.starts_with("laptop\t") && listed.lines().count() == 1, "{listed}");

    let mut daemon = spawn_daemon(data.path(), &[]);
    let (mut client, _) = Client::connect(daemon.addr, "t").unwrap();
    assert_eq!(resume_device(&mut client, &phone_token, "phone").unwrap_err().code(), Some(ErrorCode::InvalidToken));
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[test]
fn the_quota_counts_what_the_device_furthest_behind_holds_and_a_copy_never_refuses_a_send() {
    let server = TestServer::with(|c| c.max_inbox_bytes = 1000);
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (phone, _) = server.login_device("alice", "phone");
    drop(phone);
    let (mut laptop, _) = server.login_device("alice", "laptop");
    until_offline(&mut laptop, "phone");
    let body = "x".repeat(200);
    let mut stored = 0;
    loop {
        match bob.send_text("alice", ClientMsgId(stored + 1), &body) {
            Ok(_) => stored += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded));
                break;
            }
        }
    }
    assert!(stored > 0);
    for seq in 1..=stored {
        assert_eq!(next_inbox(&mut laptop), got(seq, seq - 1, "bob", &body));
    }
    assert_eq!(ack(&mut laptop, Conversation::Inbox, stored), stored);
    let refused = bob.send_text("alice", ClientMsgId(stored + 1), &body).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::QuotaExceeded), "the phone still holds them");

    // Alice's own inbox is full: her message goes, its copy is dropped.
    let answer = "y".repeat(200);
    laptop.send_text("bob", ClientMsgId(1), &answer).unwrap();
    assert_eq!(text(&bob.next_message().unwrap()), answer);
    let (mut phone, reply) = server.login_device("alice", "phone");
    assert_eq!(device_inbox_of(&reply), (Seq(0), Seq(stored)), "no copy was stored");
    for seq in 1..=stored {
        assert_eq!(next_inbox(&mut phone), got(seq, seq - 1, "bob", &body));
    }
    assert_eq!(ack(&mut phone, Conversation::Inbox, stored), stored);
    let (_, seq, _) = bob.send_text("alice", ClientMsgId(stored + 1), &body).unwrap();
    assert_eq!(seq, Seq(stored + 1), "room again once every device has read");
}

#[test]
fn a_legacy_session_keeps_its_streams_when_the_users_first_named_device_logs_in() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let id = create_group(&mut bob, "club");
    // Alice is a member before she ever logged in: the group knows her as one legacy device.
    assert_eq!(bob.request(Request::AddMember { group_id: id, username: "alice".into() }).unwrap(), Reply::Done);
    let mut legacy = server.login("alice");
    assert_eq!(next_group(&mut legacy, id).0, 2, "the Added event");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    send(&mut bob, Target::Group(id), 1, "hello");
    assert_eq!(next_group(&mut legacy, id), (3, 2, "bob".into(), "hello".into()));
    assert_eq!(next_group(&mut laptop, id).0, 2, "from where alice joined: the Added event");
    assert_eq!(next_group(&mut laptop, id), (3, 2, "bob".into(), "hello".into()));
    bob.send_text("alice", ClientMsgId(2), "direct").unwrap();
    assert_eq!(next_inbox(&mut legacy), got(1, 0, "bob", "direct"));
    assert_eq!(next_inbox(&mut laptop), got(1, 0, "bob", "direct"));
}

/// A new device of a member starts in a group where the member's furthest device is, as in
/// the inbox: what another device read is history, not a backlog. A member who uses only
/// named devices never moves its legacy position from where it joined.
#[test]
fn a_new_device_starts_in_a_group_after_what_the_members_other_devices_read() {
    let mut server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let (mut laptop, _) = server.login_device("alice", "laptop");
    let (mut phone, _) = server.login_device("alice", "phone");
    let id = match bob.request(Request::CreateGroup { name: "club".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(bob.request(Request::AddMember { group_id: id, username: "alice".into() }).unwrap(), Reply::Done);
    send(&mut bob, Target::Group(id), 1, "one");
    send(&mut bob, Target::Group(id), 2, "two");
    for (client, up_to) in [(&mut laptop, 4), (&mut phone, 3)] {
        while next_group(client, id).0 < up_to {}
        assert_eq!(ack(client, Conversation::Group(id), up_to), up_to);
    }
    let (mut tablet, _) = server.login_device("alice", "tablet");
    send(&mut bob, Target::Group(id), 3, "three");
    assert_eq!(next_group(&mut tablet, id), (5, 4, "bob".into(), "three".into()), "after the laptop's position");

    // A device the group first hears of as it loads (after a restart) starts alike.
    assert_eq!(ack(&mut laptop, Conversation::Group(id), 5), 5);
    drop((bob, laptop, phone, tablet));
    server.restart();
    let (mut watch, _) = server.login_device("alice", "watch");
    let mut bob = server.login("bob");
    send(&mut bob, Target::Group(id), 4, "four");
    assert_eq!(next_group(&mut watch, id), (6, 5, "bob".into(), "four".into()));
}

#[test]
fn a_device_id_must_follow_the_rule_and_a_user_keeps_at_most_twenty_devices() {
    let server = TestServer::with(|c| c.max_devices = 1);
    server.register(&["alice"]);
    let login = |device: &str| Request::LoginDevice {
        username: "alice".into(),
        password: PASSWORD.into(),
        device: device.into(),
    };
    for bad in ["", "has space", &"x".repeat(65), "tab\there"] {
        let (code, _) = refused(&mut server.client(), login(bad));
        assert_eq!(code, ErrorCode::BadRequest, "device id {bad:?}");
    }
    // One session at a time: each login displaces the one before, which stays known.
    let mut last = None;
    for i in 0..=20 {
        std::thread::sleep(Duration::from_millis(2));
        last = Some(server.login_device("alice", &format!("d{i}")).0);
    }
    let mut last = last.expect("logged in");
    let listed: Vec<String> = devices(&mut last).into_iter().map(|d| d.device).collect();
    assert_eq!(listed.len(), 20, "one more than twenty forgot one");
    assert!(!listed.contains(&"d0".to_string()), "the device seen least recently went: {listed:?}");
    assert!(listed.contains(&"d20".to_string()) && listed.contains(&"d1".to_string()));
}
