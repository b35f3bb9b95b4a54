//! The service push API and live statistics: protocol.md "Services" and "Statistics".

use crate::common::{in_default, TestServer, PASSWORD};
use confab::admin;
use confab::client::{Client, ClientError};
use confab::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, GroupId, Push, Reply, Request, SenderKind, Seq, ServiceTarget,
    Target,
};
use std::time::Duration;

/// A logged-in service connection named `name`.
fn service(server: &TestServer, name: &str) -> Client {
    let token = admin::add_service(server.server().store(), &in_default(name), false).unwrap();
    let mut client = server.client();
    let reply = client.request(Request::ServiceLogin { name: name.into(), token }).unwrap();
    assert_eq!(reply, Reply::ServiceLoggedIn { name: name.into() });
    client
}

fn send(svc: &mut Client, to: ServiceTarget, id: ClientMsgId, transient: bool, text: &str) -> Reply {
    svc.request(Request::ServiceSend { to, client_msg_id: id, transient, content: Content::text(text) }).unwrap()
}

fn users(names: &[&str]) -> ServiceTarget {
    ServiceTarget::Users(names.iter().map(|n| n.to_string()).collect())
}

fn quiet(client: &mut Client) {
    client.set_timeout(Duration::from_millis(200)).unwrap();
    assert!(matches!(client.next_push(), Err(ClientError::Timeout)), "expected no push");
    client.set_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn services_log_in_with_their_token_and_keep_to_service_requests() {
    let server = TestServer::start();
    admin::add_service(server.server().store(), &in_default("shop"), false).unwrap();
    let mut client = server.client();
    let wrong = client.request(Request::ServiceLogin { name: "shop".into(), token: "00".repeat(32) });
    assert_eq!(wrong.unwrap_err().code(), Some(ErrorCode::InvalidToken));
    let unknown = client.request(Request::ServiceLogin { name: "nobody".into(), token: "x".into() });
    assert_eq!(unknown.unwrap_err().code(), Some(ErrorCode::InvalidToken));

    let mut shop = service(&server, "shop");
    let dm = Request::Send {
        to: Target::User("alice".into()),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("x"),
    };
    assert_eq!(shop.request(dm).unwrap_err().code(), Some(ErrorCode::Forbidden));
    let mut alice = server.user("alice");
    let query = Request::QueryOnline { users: vec!["alice".into()] };
    assert_eq!(alice.request(query.clone()).unwrap_err().code(), Some(ErrorCode::Forbidden));
    // A service logs out like a user and is a plain connection again.
    assert_eq!(shop.request(Request::Logout).unwrap(), Reply::LoggedOut);
    assert_eq!(shop.request(query).unwrap_err().code(), Some(ErrorCode::NotLoggedIn));
}

#[test]
fn system_messages_to_users_are_stored_marked_and_idempotent() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut shop = service(&server, "shop");
    let reply =
        send(&mut shop, users(&["alice", "bob", "nobody", "alice"]), ClientMsgId(7), false, "your order shipped");
    assert_eq!(reply, Reply::ServiceSent { stored: 2, delivered: 1, unknown: vec!["nobody".into()] });
    let m = alice.next_message().unwrap();
    assert_eq!((m.from.as_str(), m.sender, m.conversation), ("shop", SenderKind::Service, Conversation::Inbox));
    // A retry stores nothing new.
    let again = send(&mut shop, users(&["alice", "bob"]), ClientMsgId(7), false, "your order shipped");
    assert_eq!(again, Reply::ServiceSent { stored: 2, delivered: 0, unknown: vec![] });
    quiet(&mut alice);
    let mut bob = server.client();
    match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { last_seq, .. } => assert_eq!(last_seq, Seq(1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(bob.next_message().unwrap().sender, SenderKind::Service);
}

#[test]
fn transient_service_messages_reach_only_those_online() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut shop = service(&server, "shop");
    let reply = send(&mut shop, users(&["alice", "bob"]), ClientMsgId::NONE, true, "flash sale");
    assert_eq!(reply, Reply::ServiceSent { stored: 0, delivered: 1, unknown: vec![] });
    assert_eq!(
        alice.next_push().unwrap(),
        Push::ServiceNotice { service: "shop".into(), content: Content::text("flash sale") }
    );
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 0);
}

#[test]
fn a_group_message_can_leave_one_member_out() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let g = match alice.request(Request::CreateGroup { name: "game".into(), open: true }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    bob.request(Request::JoinGroup { group_id: g }).unwrap();
    for _ in 0..2 {
        alice.next_message().unwrap();
    }
    bob.next_message().unwrap();
    let mut game = service(&server, "game");
    let to = ServiceTarget::Group { group_id: g, except: Some("alice".into()) };
    assert_eq!(
        send(&mut game, to, ClientMsgId(1), false, "alice scored"),
        Reply::ServiceSent { stored: 1, delivered: 1, unknown: vec![] }
    );
    let m = bob.next_message().unwrap();
    assert_eq!((m.conversation, m.seq, m.sender), (Conversation::Group(g), Seq(3), SenderKind::Service));
    quiet(&mut alice);
    // Alice's next push skips seq 3 without a gap: its prev_seq is what she saw last.
    bob.request(Request::Send {
        to: Target::Group(g),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("gg"),
    })
    .unwrap();
    let next = alice.next_message().unwrap();
    assert_eq!((next.seq, next.prev_seq), (Seq(4), Seq(2)));
    let unknown = game.request(Request::ServiceSend {
        to: ServiceTarget::Group { group_id: GroupId(999_999), except: None },
        client_msg_id: ClientMsgId(2),
        transient: false,
        content: Content::text("x"),
    });
    assert_eq!(unknown.unwrap_err().code(), Some(ErrorCode::UnknownGroup));
}

#[test]
fn everyone_online_gets_a_stored_copy() {
    let server = TestServer::start();
    server.register(&["carol"]);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut ops = service(&server, "ops");
    let reply = send(&mut ops, ServiceTarget::Online, ClientMsgId(1), false, "restart at noon");
    assert_eq!(reply, Reply::ServiceSent { stored: 2, delivered: 2, unknown: vec![] });
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.next_message().unwrap().from, "ops");
    }
    // Offline users are not addressed by "online".
    let mut carol = server.client();
    match carol.login("carol", PASSWORD).unwrap() {
        Reply::LoggedIn { last_seq, .. } => assert_eq!(last_seq, Seq::ZERO),
        other => panic!("{other:?}"),
    }
}

#[test]
fn services_ask_who_is_online_and_disconnect_users() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut shop = service(&server, "shop");
    let query = Request::QueryOnline { users: vec!["alice".into(), "bob".into(), "nobody".into()] };
    assert_eq!(shop.request(query).unwrap(), Reply::OnlineStatus { online: vec![true, false, false] });
    let kick = Request::Disconnect { username: "alice".into(), reason: "account suspended".into() };
    assert_eq!(shop.request(kick).unwrap(), Reply::Disconnected { was_online: true });
    assert_eq!(alice.next_push().unwrap(), Push::Kicked { reason: "account suspended".into() });
    assert!(matches!(alice.read_frame(), Err(ClientError::Closed)));
    let again = Request::Disconnect { username: "bob".into(), reason: "x".into() };
    assert_eq!(shop.request(again).unwrap(), Reply::Disconnected { was_online: false });
}

#[test]
fn watching_services_hear_users_come_and_go_with_the_reason() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut watcher = service(&server, "presence-bridge");
    assert_eq!(watcher.request(Request::WatchConnections).unwrap(), Reply::Done);
    let alice = server.login("alice");
    let came = Push::Connection { username: "alice".into(), connected: true, reason: "login".into() };
    assert_eq!(watcher.next_push().unwrap(), came.clone());
    drop(alice);
    let went = Push::Connection { username: "alice".into(), connected: false, reason: "closed by the client".into() };
    assert_eq!(watcher.next_push().unwrap(), went);
    let _first = server.login("alice");
    watcher.next_push().unwrap();
    // A second login takes over: the first session ends, a new one begins.
    let mut alice = server.login("alice");
    let taken = Push::Connection { username: "alice".into(), connected: false, reason: "logged in elsewhere".into() };
    assert_eq!(watcher.next_push().unwrap(), taken);
    assert_eq!(watcher.next_push().unwrap(), came);
    alice.request(Request::Logout).unwrap();
    let logout = Push::Connection { username: "alice".into(), connected: false, reason: "logout".into() };
    assert_eq!(watcher.next_push().unwrap(), logout);
}

#[test]
fn statistics_for_administrators_and_services() {
    let server = TestServer::start();
    server.register(&["root"]);
    admin::set_admin(server.server().store(), &in_default("root"), true).unwrap();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    assert_eq!(alice.request(Request::Stats).unwrap_err().code(), Some(ErrorCode::Forbidden));
    for i in 1..=5 {
        alice.send_text("bob", ClientMsgId(i), "hello").unwrap();
    }
    for _ in 0..5 {
        bob.next_message().unwrap();
    }
    let mut root = server.login("root");
    let stats = match root.request(Request::Stats).unwrap() {
        Reply::Stats(stats) => stats,
        other => panic!("{other:?}"),
    };
    assert_eq!(stats.version, env!("CARGO_PKG_VERSION"));
    assert_eq!((stats.connections, stats.logged_in), (3, 3));
    assert_eq!((stats.messages_received, stats.messages_delivered), (5, 5));
    assert_eq!(stats.stored_messages, 5, "bob has not acked");
    assert!(stats.storage_bytes > 0);
    // The five stored sends were committed through the commit log with real syncs.
    assert!(stats.log_syncs >= 1, "{stats:?}");
    assert!(stats.log_bytes >= 1024 * 1024, "a segment is reserved: {stats:?}");
    assert!(stats.storage_bytes >= stats.log_bytes);
    bob.ack(Seq(5)).unwrap();
    let mut shop = service(&server, "shop");
    match shop.request(Request::Stats).unwrap() {
        Reply::Stats(stats) => assert_eq!((stats.stored_messages, stats.connections), (0, 4)),
        other => panic!("{other:?}"),
    }
}
