//! Push notifications: protocol.md "Push notifications". Users register devices and mute
//! chats; stored messages for offline users become coalesced events; the push gateway
//! (a service with the push permission) receives them in order and acknowledges them.
//!
//! Absence is shown with a sentinel: after the message that must make no event, a message
//! to another offline user that must; the gateway's first event is then the sentinel's.

use crate::common::daemon::{confabd, spawn_daemon};
use crate::common::{eventually, in_default, DataDir, TestServer, PASSWORD};
use confab::admin;
use confab::client::{Client, ClientError};
use confab::protocol::{
    Chat, ClientMsgId, Content, ErrorCode, GroupId, MediaKind, Push, PushEvent, PushPlatform, Reply, Request,
    SenderKind, ServiceTarget, Target,
};
use std::time::Duration;

/// A short coalescing window, so events come due soon.
const WINDOW: Duration = Duration::from_millis(200);

fn server() -> TestServer {
    TestServer::with(|c| c.push.window = WINDOW)
}

/// A logged-in service (with the push permission if `push`).
fn service(server: &TestServer, name: &str, push: bool) -> Client {
    let token = admin::add_service(server.server().store(), &in_default(name), push).unwrap();
    let mut client = server.client();
    client.request(Request::ServiceLogin { name: name.into(), token }).unwrap();
    client
}

/// A service with the push permission, logged in and subscribed; returns (acked, last_seq).
fn gateway(server: &TestServer) -> (Client, u64, u64) {
    let mut gw = service(server, "relay", true);
    match gw.request(Request::SubscribePush).unwrap() {
        Reply::PushSubscribed { acked, last_seq } => (gw, acked, last_seq),
        other => panic!("{other:?}"),
    }
}

fn next_event(gw: &mut Client) -> PushEvent {
    loop {
        match gw.next_push().expect("a push event") {
            Push::PushEvent(event) => return event,
            Push::Connection { .. } => continue,
            other => panic!("expected a push event, got {other:?}"),
        }
    }
}

fn ack(gw: &mut Client, up_to: u64) -> u64 {
    match gw.request(Request::AckPush { up_to }).unwrap() {
        Reply::PushAcked { up_to } => up_to,
        other => panic!("{other:?}"),
    }
}

fn set_device(client: &mut Client, device: &str, previews: bool) {
    let request = Request::SetPushDevice {
        device: device.into(),
        platform: PushPlatform::Apns,
        token: format!("tok-{device}"),
        previews,
    };
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

/// Registers `name` with one push device and leaves it offline (connection closed, not
/// logged out: a logout removes the devices).
fn offline_with_device(server: &TestServer, name: &str, previews: bool) {
    let mut client = server.user(name);
    set_device(&mut client, &format!("{name}-phone"), previews);
    drop(client);
    wait_offline(server, name);
}

fn wait_offline(server: &TestServer, name: &str) {
    let mut probe = service(server, "probe", false);
    eventually(&format!("{name} offline"), Duration::from_secs(10), || {
        probe.request(Request::QueryOnline { users: vec![name.into()] }).unwrap()
            == Reply::OnlineStatus { online: vec![false] }
    });
}

fn text(client: &mut Client, to: &str, id: u64, body: &str) {
    client.send_text(to, ClientMsgId(id), body).unwrap();
}

fn to_group(client: &mut Client, group: GroupId, id: u64, body: &str) {
    let request = Request::Send {
        to: Target::Group(group),
        client_msg_id: ClientMsgId(id),
        transient: false,
        content: Content::text(body),
    };
    assert!(matches!(client.request(request).unwrap(), Reply::Sent { .. }));
}

#[test]
fn an_offline_user_gets_one_coalesced_event_with_the_count_and_latest_preview() {
    // A window long enough that three sends on a loaded machine fall into it.
    let server = TestServer::with(|c| c.push.window = Duration::from_secs(1));
    offline_with_device(&server, "bob", true);
    let (mut gw, acked, last) = gateway(&server);
    assert_eq!((acked, last), (0, 0));
    let mut alice = server.user("alice");
    alice.request(Request::Rename { display_name: "Alice L".into() }).unwrap();
    for (id, body) in [(1, "first"), (2, "second"), (3, "are you there?")] {
        text(&mut alice, "bob", id, body);
    }
    let event = next_event(&mut gw);
    assert_eq!(event.recipient, "bob");
    assert_eq!(event.count, 3, "three messages in the window are one event");
    assert_eq!(event.unread, 3);
    assert_eq!(event.chat, Chat::User("alice".into()));
    assert_eq!((event.chat_name.as_str(), event.sender.as_str()), ("Alice L", "alice"));
    assert_eq!((event.sender_name.as_str(), event.sender_kind), ("Alice L", SenderKind::User));
    assert_eq!(event.kind, MediaKind::Text);
    assert_eq!(event.devices.len(), 1);
    let device = &event.devices[0];
    assert_eq!(
        (device.device.as_str(), device.platform, device.token.as_str()),
        ("bob-phone", PushPlatform::Apns, "tok-bob-phone")
    );
    assert_eq!(device.preview.as_deref(), Some("are you there?"), "the latest message's text");
    assert_eq!(ack(&mut gw, event.seq), event.seq);
    // A fourth message after the window is a new event; the badge counts all four.
    text(&mut alice, "bob", 4, "hello?");
    let next = next_event(&mut gw);
    assert_eq!((next.seq, next.count, next.unread), (event.seq + 1, 1, 4));
}

#[test]
fn an_online_user_gets_no_event_and_neither_does_the_sender() {
    let server = server();
    let (mut gw, _, _) = gateway(&server);
    let mut bob = server.user("bob");
    set_device(&mut bob, "phone", true);
    let mut alice = server.user("alice");
    set_device(&mut alice, "phone", true);
    text(&mut alice, "bob", 1, "you are online");
    assert_eq!(bob.next_message().unwrap().from, "alice");
    text(&mut alice, "alice", 2, "a note to myself");
    offline_with_device(&server, "carol", true);
    text(&mut alice, "carol", 3, "sentinel");
    let event = next_event(&mut gw);
    assert_eq!((event.recipient.as_str(), event.count), ("carol", 1), "bob was online, alice sent");
}

#[test]
fn offline_group_members_get_events_and_the_sender_none() {
    let server = server();
    let (mut gw, _, _) = gateway(&server);
    server.register(&["bob", "carol"]);
    let mut alice = server.user("alice");
    set_device(&mut alice, "phone", true);
    let group = match alice.request(Request::CreateGroup { name: "Book club".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    let mut dave = server.user("dave");
    set_device(&mut dave, "phone", true);
    for member in ["bob", "carol", "dave"] {
        alice.request(Request::AddMember { group_id: group, username: member.into() }).unwrap();
    }
    // bob has a device and is offline; carol is offline without one; dave is online.
    let mut bob = server.login("bob");
    set_device(&mut bob, "phone", false);
    drop(bob);
    wait_offline(&server, "bob");
    to_group(&mut alice, group, 1, "meeting at eight");
    let event = next_event(&mut gw);
    assert_eq!(event.recipient, "bob");
    assert_eq!((event.chat, event.chat_name.as_str()), (Chat::Group(group), "Book club"));
    assert_eq!(event.sender, "alice");
    assert_eq!(event.devices[0].preview, None, "bob's only device shows no previews");
    // Unread: what bob has not acknowledged since he was added (three membership events,
    // which notify nobody themselves, and this message).
    assert_eq!((event.count, event.unread), (1, 4));
    ack(&mut gw, event.seq);
    offline_with_device(&server, "erin", true);
    text(&mut dave, "erin", 1, "sentinel");
    assert_eq!(next_event(&mut gw).recipient, "erin", "nobody else had an event");
}

#[test]
fn muted_chats_make_no_event_until_unmuted() {
    let server = server();
    let (mut gw, _, _) = gateway(&server);
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    let mut bob = server.user("bob");
    set_device(&mut bob, "phone", true);
    let mute = Request::Mute { chat: Chat::User("alice".into()), until_ms: 0 };
    assert_eq!(bob.request(mute).unwrap(), Reply::Done);
    let past = Request::Mute { chat: Chat::User("carol".into()), until_ms: 1 };
    assert_eq!(bob.request(past).unwrap_err().code(), Some(ErrorCode::BadRequest));
    let bad_name = Request::Mute { chat: Chat::User("No Such".into()), until_ms: 0 };
    assert_eq!(bob.request(bad_name).unwrap_err().code(), Some(ErrorCode::InvalidName));
    match bob.request(Request::PushSettings).unwrap() {
        Reply::PushSettings { devices, mutes } => {
            assert_eq!(devices.len(), 1);
            assert_eq!((devices[0].device.as_str(), devices[0].previews), ("phone", true));
            assert_eq!(mutes.len(), 1);
            assert_eq!((mutes[0].chat.clone(), mutes[0].until_ms), (Chat::User("alice".into()), 0));
        }
        other => panic!("{other:?}"),
    }
    drop(bob);
    wait_offline(&server, "bob");
    text(&mut alice, "bob", 1, "muted");
    text(&mut carol, "bob", 1, "not muted");
    let event = next_event(&mut gw);
    assert_eq!((event.sender.as_str(), event.count), ("carol", 1), "alice is muted");
    ack(&mut gw, event.seq);

    let mut bob = server.login("bob");
    assert_eq!(bob.request(Request::Unmute { chat: Chat::User("alice".into()) }).unwrap(), Reply::Done);
    drop(bob);
    wait_offline(&server, "bob");
    text(&mut alice, "bob", 2, "heard now");
    assert_eq!(next_event(&mut gw).sender, "alice");
}

#[test]
fn each_device_gets_a_preview_only_if_it_shows_previews() {
    let server = server();
    let (mut gw, _, _) = gateway(&server);
    let mut bob = server.user("bob");
    set_device(&mut bob, "phone", true);
    set_device(&mut bob, "tablet", false);
    drop(bob);
    wait_offline(&server, "bob");
    let mut alice = server.user("alice");
    text(&mut alice, "bob", 1, &"long message ".repeat(20));
    let event = next_event(&mut gw);
    let previews: Vec<_> = event.devices.iter().map(|d| (d.device.as_str(), d.preview.clone())).collect();
    let expected = format!("{}…", &"long message ".repeat(20)[..100]);
    assert_eq!(previews, [("phone", Some(expected)), ("tablet", None)]);
}

#[test]
fn events_survive_a_restart_until_acknowledged() {
    let mut server = server();
    offline_with_device(&server, "bob", true);
    let mut alice = server.user("alice");
    text(&mut alice, "bob", 1, "before the restart");
    drop(alice);
    let (mut gw, _, _) = gateway(&server);
    let first = next_event(&mut gw);
    drop(gw);
    server.restart();
    let (mut gw, acked, last) = gateway(&server);
    assert_eq!((acked, last), (0, first.seq), "not acknowledged, so still queued");
    let again = next_event(&mut gw);
    assert_eq!(again, first, "delivered again, the same event");
    ack(&mut gw, again.seq);
    drop(gw);
    server.restart();
    let (mut gw, acked, last) = gateway(&server);
    assert_eq!((acked, last), (first.seq, first.seq), "acknowledged before the restart: gone");
    // The next event takes the next seq: none is numbered twice, across restarts too.
    let mut alice = server.login("alice");
    text(&mut alice, "bob", 2, "after the restarts");
    assert_eq!(next_event(&mut gw).seq, first.seq + 1);
}

#[test]
fn a_message_whose_commit_failed_makes_no_notification() {
    let server = server();
    offline_with_device(&server, "bob", true);
    let mut alice = server.user("alice");
    server.server().store().inject_flush_failures(true);
    let failed = alice.send_text("bob", ClientMsgId(1), "not on disk when answered");
    assert_eq!(failed.unwrap_err().code(), Some(ErrorCode::Internal));
    server.server().store().inject_flush_failures(false);
    // Sends are refused until the log is tried again (once a second).
    eventually("the disk to take messages again", Duration::from_secs(10), || {
        alice.send_text("bob", ClientMsgId(2), "on disk").is_ok()
    });
    let (mut gw, _, _) = gateway(&server);
    let event = next_event(&mut gw);
    assert_eq!((event.count, event.devices[0].preview.as_deref()), (1, Some("on disk")));
}

#[test]
fn a_full_queue_drops_the_oldest_events_and_counts_them() {
    let server = TestServer::with(|c| {
        c.push.window = Duration::ZERO;
        c.push.queue_max = 3;
    });
    let names = ["user1", "user2", "user3", "user4", "user5"];
    for name in names {
        offline_with_device(&server, name, true);
    }
    let mut alice = server.user("alice");
    let mut watch = service(&server, "watch", false);
    let mut figures = |events| {
        eventually("the push figures", Duration::from_secs(10), || match watch.request(Request::Stats).unwrap() {
            Reply::Stats(s) if s.push_events == events => Some((s.push_queued, s.push_dropped)),
            _ => None,
        })
    };
    for name in &names[..3] {
        text(&mut alice, name, 1, "hi");
    }
    assert_eq!(figures(3), (3, 0), "three events wait for a gateway");
    for name in &names[3..] {
        text(&mut alice, name, 1, "hi");
    }
    assert_eq!(figures(5), (3, 2), "two more: the two oldest dropped");
    let (mut gw, acked, last) = gateway(&server);
    assert_eq!((acked, last), (2, 5));
    let recipients: Vec<String> = (0..3).map(|_| next_event(&mut gw).recipient).collect();
    assert_eq!(recipients, ["user3", "user4", "user5"], "the two oldest were dropped");
}

#[test]
fn one_gateway_at_a_time_and_only_with_the_push_permission() {
    let server = server();
    let mut plain = service(&server, "plain", false);
    assert_eq!(plain.request(Request::SubscribePush).unwrap_err().code(), Some(ErrorCode::Forbidden));
    let mut alice = server.user("alice");
    assert_eq!(alice.request(Request::SubscribePush).unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert_eq!(alice.request(Request::AckPush { up_to: 0 }).unwrap_err().code(), Some(ErrorCode::Forbidden));

    offline_with_device(&server, "bob", true);
    let (mut first, _, _) = gateway(&server);
    let mut standby = service(&server, "standby", true);
    assert_eq!(standby.request(Request::SubscribePush).unwrap_err().code(), Some(ErrorCode::LimitReached));
    text(&mut alice, "bob", 1, "hi");
    let event = next_event(&mut first);
    assert_eq!(
        first.request(Request::AckPush { up_to: event.seq + 1 }).unwrap_err().code(),
        Some(ErrorCode::BadRequest)
    );
    // A Logout ends the subscription as a close does.
    assert_eq!(first.request(Request::Logout).unwrap(), Reply::LoggedOut);
    // Unacknowledged, so the standby gets it once the first gateway is gone.
    let taken = eventually("the standby takes over", Duration::from_secs(10), || {
        match standby.request(Request::SubscribePush) {
            Ok(Reply::PushSubscribed { acked, .. }) => Some(acked),
            Err(e) if e.code() == Some(ErrorCode::LimitReached) => None,
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(taken, 0);
    assert_eq!(next_event(&mut standby), event);
}

#[test]
fn an_event_whose_recipient_comes_online_first_is_skipped() {
    let server = TestServer::with(|c| c.push.window = Duration::from_secs(1));
    offline_with_device(&server, "bob", true);
    let (mut gw, _, _) = gateway(&server);
    let mut alice = server.user("alice");
    text(&mut alice, "bob", 1, "see you soon");
    let mut bob = server.login("bob");
    assert_eq!(bob.next_message().unwrap().from, "alice");
    offline_with_device(&server, "carol", true);
    text(&mut alice, "carol", 1, "sentinel");
    let event = next_event(&mut gw);
    assert_eq!(event.recipient, "carol", "bob came online before his window closed");
    assert_eq!(ack(&mut gw, event.seq), event.seq, "the skipped event is behind the acknowledged position too");
    let mut watch = service(&server, "watch", false);
    match watch.request(Request::Stats).unwrap() {
        Reply::Stats(s) => assert_eq!((s.push_events, s.push_skipped, s.push_queued), (2, 1, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn devices_are_limited_replaced_and_removed_at_logout() {
    let server = server();
    let mut bob = server.user("bob");
    for i in 0..10 {
        set_device(&mut bob, &format!("d{i}"), true);
    }
    set_device(&mut bob, "d3", false);
    let eleventh =
        Request::SetPushDevice { device: "d10".into(), platform: PushPlatform::Fcm, token: "t".into(), previews: true };
    assert_eq!(bob.request(eleventh).unwrap_err().code(), Some(ErrorCode::LimitReached));
    let spaced = Request::SetPushDevice {
        device: "my phone".into(),
        platform: PushPlatform::Fcm,
        token: "t".into(),
        previews: true,
    };
    assert_eq!(bob.request(spaced).unwrap_err().code(), Some(ErrorCode::BadRequest));
    assert_eq!(bob.request(Request::RemovePushDevice { device: "d9".into() }).unwrap(), Reply::Done);
    assert_eq!(bob.request(Request::RemovePushDevice { device: "d9".into() }).unwrap(), Reply::Done);
    let devices = |client: &mut Client| match client.request(Request::PushSettings).unwrap() {
        Reply::PushSettings { devices, .. } => devices.into_iter().map(|d| (d.device, d.previews)).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let listed = devices(&mut bob);
    assert_eq!(listed.len(), 9);
    assert!(listed.contains(&("d3".to_string(), false)), "replaced in place: {listed:?}");
    assert_eq!(bob.request(Request::Logout).unwrap(), Reply::LoggedOut);
    bob.login("bob", PASSWORD).unwrap();
    assert!(devices(&mut bob).is_empty(), "a logout logs every device out, so none is woken");
}

#[test]
fn service_messages_notify_only_with_push_system() {
    for system in [false, true] {
        let server = TestServer::with(|c| {
            c.push.window = WINDOW;
            c.push.system_messages = system;
        });
        offline_with_device(&server, "bob", true);
        let (mut gw, _, _) = gateway(&server);
        let mut billing = service(&server, "billing", false);
        let send = Request::ServiceSend {
            to: ServiceTarget::Users(vec!["bob".into()]),
            client_msg_id: ClientMsgId(1),
            transient: false,
            content: Content::text("your invoice"),
        };
        billing.request(send).unwrap();
        offline_with_device(&server, "carol", true);
        let mut alice = server.user("alice");
        text(&mut alice, "carol", 1, "sentinel");
        let event = next_event(&mut gw);
        if system {
            assert_eq!((event.recipient.as_str(), event.chat), ("bob", Chat::Service("billing".into())));
            assert_eq!(event.sender_kind, SenderKind::Service);
        } else {
            assert_eq!(event.recipient, "carol", "no event for a system message without --push-system");
        }
    }
}

#[test]
fn a_gateway_that_never_acks_gets_at_most_the_in_flight_bound() {
    let server = TestServer::with(|c| c.push.window = Duration::ZERO);
    let (mut gw, _, _) = gateway(&server);
    let mut alice = server.user("alice");
    let names: Vec<String> = (0..300).map(|i| format!("user{i}")).collect();
    let mut setup = server.client();
    for name in &names {
        setup.register(name, PASSWORD).unwrap();
        setup.login(name, PASSWORD).unwrap();
        set_device(&mut setup, "phone", false);
        // A fresh connection per user: logging out would remove the device.
        setup = server.client();
    }
    wait_offline(&server, names.last().unwrap());
    for name in &names {
        text(&mut alice, name, 1, "hi");
    }
    let mut seen = 0;
    gw.set_timeout(Duration::from_millis(500)).unwrap();
    loop {
        match gw.next_push() {
            Ok(Push::PushEvent(_)) => seen += 1,
            Ok(_) => {}
            Err(ClientError::Timeout) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seen, 256, "at most 256 unacknowledged events in flight");
    gw.set_timeout(Duration::from_secs(10)).unwrap();
    ack(&mut gw, 256);
    let rest: Vec<u64> = (0..44).map(|_| next_event(&mut gw).seq).collect();
    assert_eq!(rest, (257..=300).collect::<Vec<_>>());
}

#[test]
fn the_daemon_says_when_its_full_queue_drops_events() {
    let data = DataDir::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let added = confabd(data.path(), &["user", "add", name], &format!("{PASSWORD}\n"));
        assert!(added.status.success());
    }
    // alice reads the statistics.
    assert!(confabd(data.path(), &["user", "admin", "alice"], "").status.success());
    let daemon = spawn_daemon(data.path(), &["--push-window-ms", "0", "--push-queue-max", "1"]);
    for name in ["bob", "carol", "dave"] {
        let (mut client, _) = Client::connect(daemon.addr, "t").unwrap();
        client.login(name, PASSWORD).unwrap();
        set_device(&mut client, "phone", true);
    }
    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    let mut sent = 0;
    for (made_before, name) in ["bob", "carol", "dave"].into_iter().enumerate() {
        // Each is offline once its closed connection is handled: send until stored offline.
        eventually(&format!("{name} offline"), Duration::from_secs(10), || {
            sent += 1;
            alice.send_text(name, ClientMsgId(sent), "hi").unwrap();
            let stats = match alice.request(Request::Stats) {
                Ok(Reply::Stats(s)) => s,
                other => panic!("{other:?}"),
            };
            stats.push_events as usize > made_before
        });
    }
    let warning = eventually("the drop warning", Duration::from_secs(10), || {
        daemon.log.try_iter().find(|line| line.contains("push queue full"))
    });
    assert!(warning.contains("WARN") && warning.contains("dropped the 1 oldest"), "{warning}");
}

#[test]
fn the_gateway_drops_a_token_its_push_service_rejected() {
    let server = server();
    let (mut gw, _, _) = gateway(&server);
    let mut bob = server.user("bob");
    set_device(&mut bob, "phone", true);
    set_device(&mut bob, "tablet", true);
    let drop_phone = Request::DropPushToken { username: "bob".into(), token: "tok-phone".into() };
    assert_eq!(bob.request(drop_phone.clone()).unwrap_err().code(), Some(ErrorCode::Forbidden), "users may not");
    let mut plain = service(&server, "plain", false);
    assert_eq!(plain.request(drop_phone.clone()).unwrap_err().code(), Some(ErrorCode::Forbidden), "nor other services");
    assert_eq!(gw.request(drop_phone.clone()).unwrap(), Reply::Done);
    assert_eq!(gw.request(drop_phone).unwrap(), Reply::Done, "a token already dropped is not an error");
    let unknown = Request::DropPushToken { username: "nobody".into(), token: "x".into() };
    assert_eq!(gw.request(unknown).unwrap(), Reply::Done);
    drop(bob);
    wait_offline(&server, "bob");
    let mut alice = server.user("alice");
    text(&mut alice, "bob", 1, "only the tablet now");
    let event = next_event(&mut gw);
    let devices: Vec<&str> = event.devices.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(devices, ["tablet"], "the phone's dead token is gone");
}

#[test]
fn notes_beyond_the_bound_on_their_way_to_the_queue_are_dropped_and_counted() {
    // A group message to more offline members than the bound makes more notes at once
    // than may be on their way: they are dropped, not queued without limit.
    let server = TestServer::with(|c| {
        c.push.window = WINDOW;
        c.push.max_pending_notes = 5;
    });
    let mut alice = server.user("alice");
    let group = match alice.request(Request::CreateGroup { name: "Crowd".into(), open: true }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    let members: Vec<String> = (0..8).map(|i| format!("member{i}")).collect();
    for name in &members {
        let mut member = server.user(name);
        assert_eq!(member.request(Request::JoinGroup { group_id: group }).unwrap(), Reply::Done);
        set_device(&mut member, "phone", true);
    }
    wait_offline(&server, members.last().unwrap());
    for name in &members {
        wait_offline(&server, name);
    }
    to_group(&mut alice, group, 1, "to eight offline members");
    offline_with_device(&server, "bob", true);
    text(&mut alice, "bob", 2, "one note fits");
    let (mut gw, _, _) = gateway(&server);
    let event = next_event(&mut gw);
    assert_eq!(event.recipient, "bob", "the group's eight notes were dropped");
    let mut watch = service(&server, "watch", false);
    match watch.request(Request::Stats).unwrap() {
        Reply::Stats(s) => assert_eq!((s.push_events, s.push_dropped), (1, 8)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_mute_for_a_time_runs_out() {
    let server = server();
    let (mut gw, _, _) = gateway(&server);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    set_device(&mut bob, "phone", true);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // Long enough that the first message surely falls inside it on a loaded machine.
    let until_ms = now + 1500;
    assert_eq!(bob.request(Request::Mute { chat: Chat::User("alice".into()), until_ms }).unwrap(), Reply::Done);
    drop(bob);
    wait_offline(&server, "bob");
    text(&mut alice, "bob", 1, "while muted");
    // Once the time has passed (the server's clock is this machine's), the mute is gone.
    std::thread::sleep(Duration::from_millis(until_ms.saturating_sub(now) + 100));
    text(&mut alice, "bob", 2, "after the mute");
    let event = next_event(&mut gw);
    assert_eq!((event.count, event.devices[0].preview.as_deref()), (1, Some("after the mute")));
    let mut bob = server.login("bob");
    match bob.request(Request::PushSettings).unwrap() {
        Reply::PushSettings { mutes, devices } => {
            assert!(mutes.is_empty(), "a mute that ran out is not listed: {mutes:?}");
            assert_eq!(devices.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}
