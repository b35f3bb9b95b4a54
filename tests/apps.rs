//! Apps (tenants): protocol.md "Apps". Two apps with the same usernames share a server and
//! nothing else: messages, groups, rooms, presence, who-is-online, broadcast and services
//! stay in their app, each app's limits hold, and statistics are per app.

use crate::common::{eventually, in_default, TestServer, PASSWORD, SETTLE};
use confab::admin;
use confab::client::{Client, ClientError};
use confab::protocol::{
    AppFigures, ClientMsgId, Content, Conversation, ErrorCode, GroupId, OnlineUser, Push, PushPlatform, Reply, Request,
    RoomInfo, ServiceTarget, Target, PROTOCOL_VERSION,
};
use confab::store::AppRecord;
use std::time::Duration;

const ACME: &str = "acme";

/// A server hosting `acme` (no limits) besides `default`.
fn two_apps() -> TestServer {
    TestServer::with_apps(&[(ACME, AppRecord::default())], |_| {})
}

/// Nothing more arrives within a short while.
fn quiet(client: &mut Client) {
    client.set_timeout(Duration::from_millis(300)).unwrap();
    match client.next_push() {
        Err(ClientError::Timeout) => {}
        other => panic!("expected nothing, got {other:?}"),
    }
    client.set_timeout(Duration::from_secs(10)).unwrap();
}

fn text(client: &mut Client, to: Target, id: u64, body: &str) -> Result<Reply, ClientError> {
    client.request(Request::Send { to, client_msg_id: ClientMsgId(id), transient: false, content: Content::text(body) })
}

fn to_user(name: &str) -> Target {
    Target::User(name.into())
}

fn code(result: Result<Reply, ClientError>) -> Option<ErrorCode> {
    result.expect_err("refused").code()
}

fn create_group(client: &mut Client, name: &str, open: bool) -> GroupId {
    match client.request(Request::CreateGroup { name: name.into(), open }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn make_admin(server: &TestServer, qualified: &str) {
    admin::set_admin(server.server().store(), qualified, true).unwrap();
}

/// A logged-in service `name` of `app`.
fn service(server: &TestServer, app: &str, name: &str) -> Client {
    let token = admin::add_service(server.server().store(), &format!("{app}/{name}"), false).unwrap();
    let mut client = server.client_in(app);
    let reply = client.request(Request::ServiceLogin { name: name.into(), token }).unwrap();
    assert_eq!(reply, Reply::ServiceLoggedIn { name: name.into() });
    client
}

#[test]
fn the_same_username_in_two_apps_is_two_people() {
    let server = two_apps();
    let mut bob = server.user("bob");
    let mut acme_bob = server.user_in(ACME, "bob");
    let mut acme_alice = server.user_in(ACME, "alice");
    // alice exists only in acme: the app default has no such user.
    assert_eq!(code(text(&mut bob, to_user("alice"), 1, "hi")), Some(ErrorCode::UnknownUser));

    text(&mut acme_alice, to_user("bob"), 1, "hello acme bob").unwrap();
    let message = acme_bob.next_message().unwrap();
    assert_eq!((message.from.as_str(), message.content.body.as_slice()), ("alice", &b"hello acme bob"[..]));
    quiet(&mut bob);

    // A name that looks like another app's user is no impersonation: its readers never
    // see the other app's users.
    server.register(&["a1ice"]);

    // Each has its own password, account and inbox.
    let mut other = server.client();
    assert_eq!(other.login("alice", PASSWORD).unwrap_err().code(), Some(ErrorCode::UnknownUser));
    let mut again = server.client_in(ACME);
    match again.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => assert_eq!((acked.get(), last_seq.get()), (0, 1)),
        other => panic!("{other:?}"),
    }
    // A name a client sends with an app of its own stays in the client's app (where there
    // is no such user), never taken as the other app's.
    assert_eq!(code(text(&mut acme_alice, to_user("default/bob"), 2, "sneaky")), Some(ErrorCode::UnknownUser));
    quiet(&mut bob);
}

#[test]
fn groups_of_one_app_are_no_groups_to_another() {
    let server = two_apps();
    let mut alice = server.user("alice");
    let mut acme_bob = server.user_in(ACME, "bob");
    let group = create_group(&mut alice, "Open to all", true);
    for request in [
        Request::JoinGroup { group_id: group },
        Request::GroupMembers { group_id: group },
        Request::Ack { conversation: Conversation::Group(group), up_to: confab::protocol::Seq(1) },
    ] {
        assert_eq!(code(acme_bob.request(request)), Some(ErrorCode::UnknownGroup));
    }
    assert_eq!(code(text(&mut acme_bob, Target::Group(group), 1, "hi")), Some(ErrorCode::UnknownGroup));
    let open = |client: &mut Client| match client.request(Request::ListOpenGroups { after: GroupId(0), limit: 10 }) {
        Ok(Reply::OpenGroups { groups, .. }) => groups.into_iter().map(|g| g.group_id).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(open(&mut alice), [group]);
    assert!(open(&mut acme_bob).is_empty(), "another app's open groups are not listed");

    // Within acme, groups work as ever; members are named without their app.
    server.user_in(ACME, "carol");
    let acme_group = create_group(&mut acme_bob, "Acme team", false);
    let add = Request::AddMember { group_id: acme_group, username: "carol".into() };
    assert_eq!(acme_bob.request(add).unwrap(), Reply::Done);
    // bob of the app default is not acme's bob.
    let add = Request::AddMember { group_id: acme_group, username: "alice".into() };
    assert_eq!(code(acme_bob.request(add)), Some(ErrorCode::UnknownUser));
    match acme_bob.request(Request::GroupMembers { group_id: acme_group }).unwrap() {
        Reply::Members { members, .. } => {
            let names: Vec<_> = members.iter().map(|m| m.username.as_str()).collect();
            assert_eq!(names, ["bob", "carol"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rooms_presence_and_who_is_online_stay_in_their_app() {
    let server = two_apps();
    let mut alice = server.user("alice");
    let mut acme_alice = server.user_in(ACME, "alice");
    let mut acme_bob = server.user_in(ACME, "bob");
    for client in [&mut alice, &mut acme_alice, &mut acme_bob] {
        assert_eq!(client.request(Request::JoinRoom { room: "lobby".into() }).unwrap(), Reply::Done);
    }
    let sent = acme_bob.request(Request::Send {
        to: Target::Room("lobby".into()),
        client_msg_id: ClientMsgId(0),
        transient: true,
        content: Content::text("acme only"),
    });
    assert_eq!(sent.unwrap(), Reply::Delivered { recipients: 1 });
    match acme_alice.next_push().unwrap() {
        Push::RoomMessage { room, from, .. } => assert_eq!((room.as_str(), from.as_str()), ("lobby", "bob")),
        other => panic!("{other:?}"),
    }
    quiet(&mut alice);
    let rooms = |client: &mut Client| match client.request(Request::ListRooms { after: String::new(), limit: 10 }) {
        Ok(Reply::Rooms { rooms, .. }) => rooms,
        other => panic!("{other:?}"),
    };
    assert_eq!(rooms(&mut alice), [RoomInfo { name: "lobby".into(), members: 1 }]);
    assert_eq!(rooms(&mut acme_bob), [RoomInfo { name: "lobby".into(), members: 2 }]);

    let online = |client: &mut Client| match client.request(Request::ListOnline { after: String::new(), limit: 10 }) {
        Ok(Reply::Online { users, more }) => {
            assert!(!more);
            users.into_iter().map(|OnlineUser { username, .. }| username).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(online(&mut alice), ["alice"]);
    assert_eq!(online(&mut acme_bob), ["alice", "bob"]);

    // Presence of "carol" in acme is acme's carol: the app default's carol is someone else.
    let subscribed = acme_bob.request(Request::SubscribePresence { username: "carol".into() });
    assert!(matches!(subscribed, Err(ref e) if e.code() == Some(ErrorCode::UnknownUser)), "{subscribed:?}");
    server.register(&["carol"]);
    server.user_in(ACME, "carol");
    let mut acme_carol_watcher = server.login_in(ACME, "bob");
    let reply = acme_carol_watcher.request(Request::SubscribePresence { username: "carol".into() }).unwrap();
    assert!(matches!(reply, Reply::Subscribed { ref username, .. } if username == "carol"), "{reply:?}");
    let _carol = server.login("carol");
    quiet(&mut acme_carol_watcher);
}

#[test]
fn broadcast_and_services_reach_only_their_app() {
    let server = two_apps();
    let mut alice = server.user("alice");
    let mut acme_alice = server.user_in(ACME, "alice");
    server.register_in(ACME, &["root"]);
    make_admin(&server, "acme/root");
    let mut root = server.login_in(ACME, "root");
    let sent = root.request(Request::Send {
        to: Target::Everyone,
        client_msg_id: ClientMsgId(0),
        transient: true,
        content: Content::text("acme maintenance"),
    });
    assert_eq!(sent.unwrap(), Reply::Delivered { recipients: 1 });
    assert!(matches!(acme_alice.next_push().unwrap(), Push::Broadcast { from, .. } if from == "root"));
    quiet(&mut alice);

    // A service belongs to one app: its token does not log in from another.
    let mut hooks = service(&server, ACME, "hooks");
    let mut elsewhere = server.client();
    let token = admin::add_service(server.server().store(), "acme/other", false).unwrap();
    let refused = elsewhere.request(Request::ServiceLogin { name: "other".into(), token });
    assert_eq!(refused.unwrap_err().code(), Some(ErrorCode::InvalidToken));

    assert_eq!(hooks.request(Request::WatchConnections).unwrap(), Reply::Done);
    let to_alice = ServiceTarget::Users(vec!["alice".into(), "nobody".into()]);
    let reply = hooks.request(Request::ServiceSend {
        to: to_alice,
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("your acme order shipped"),
    });
    assert_eq!(reply.unwrap(), Reply::ServiceSent { stored: 1, delivered: 1, unknown: vec!["nobody".into()] });
    let message = acme_alice.next_message().unwrap();
    assert_eq!(message.from, "hooks");
    quiet(&mut alice);
    let reply = hooks.request(Request::ServiceSend {
        to: ServiceTarget::Online,
        client_msg_id: ClientMsgId(2),
        transient: true,
        content: Content::text("to everyone in acme"),
    });
    assert_eq!(reply.unwrap(), Reply::ServiceSent { stored: 0, delivered: 2, unknown: vec![] });
    quiet(&mut alice);
    let group = create_group(&mut alice, "Not acme's", false);
    let reply = hooks.request(Request::ServiceSend {
        to: ServiceTarget::Group { group_id: group, except: None },
        client_msg_id: ClientMsgId(3),
        transient: false,
        content: Content::text("into another app"),
    });
    assert_eq!(code(reply), Some(ErrorCode::UnknownGroup));
    let reply = hooks.request(Request::QueryOnline { users: vec!["alice".into(), "bob".into()] }).unwrap();
    assert_eq!(reply, Reply::OnlineStatus { online: vec![true, false] });

    // Connection events: acme's logins only, by their acme names.
    let _bob = server.user("bob");
    let _acme_bob = server.user_in(ACME, "bob");
    let event = loop {
        match hooks.next_push().unwrap() {
            Push::Connection { username, connected: true, .. } => break username,
            Push::Connection { .. } | Push::ServiceNotice { .. } => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(event, "bob");
    quiet(&mut hooks);
}

#[test]
fn an_apps_limits_hold_and_free_up() {
    let limits = AppRecord { max_users: 2, max_connections: 1, max_groups: 1, created_ms: 0 };
    let server = TestServer::with_apps(&[("small", limits)], |_| {});
    let mut client = server.client_in("small");
    client.register("ann", PASSWORD).unwrap();
    client.register("ben", PASSWORD).unwrap();
    assert_eq!(client.register("cat", PASSWORD).unwrap_err().code(), Some(ErrorCode::LimitReached));
    // The app default is not limited by another app's limits.
    server.register(&["cat", "dan", "eve"]);

    let mut ann = server.login_in("small", "ann");
    let mut ben = server.client_in("small");
    assert_eq!(ben.login("ben", PASSWORD).unwrap_err().code(), Some(ErrorCode::LimitReached));
    // Logging in again as the same user replaces the session: still one.
    let mut ann_again = server.login_in("small", "ann");
    assert!(matches!(ann.next_push().unwrap(), Push::Kicked { .. }));
    let first = create_group(&mut ann_again, "the one", false);
    let second = ann_again.request(Request::CreateGroup { name: "two".into(), open: false });
    assert_eq!(code(second), Some(ErrorCode::LimitReached));
    // A deleted group makes room for another.
    assert_eq!(ann_again.request(Request::DeleteGroup { group_id: first }).unwrap(), Reply::Done);
    create_group(&mut ann_again, "the next one", false);
    // A logout makes room for another user to log in.
    assert_eq!(ann_again.request(Request::Logout).unwrap(), Reply::LoggedOut);
    eventually("ann's session to end", SETTLE, || ben.login("ben", PASSWORD).is_ok());
    let third = ben.request(Request::CreateGroup { name: "ben's".into(), open: false });
    assert_eq!(code(third), Some(ErrorCode::LimitReached), "ann's group still counts");
}

#[test]
fn an_app_the_server_does_not_host_is_refused_and_the_connection_closed() {
    let server = two_apps();
    for (app, message) in [("nosuch", "no app named nosuch on this server"), ("Not An App!", "not a valid app name")] {
        let mut client = Client::connect_raw(server.addr).unwrap();
        let hello = Request::HelloApp { version: PROTOCOL_VERSION, client: "t".into(), app: app.into() };
        match client.request(hello) {
            Err(ClientError::Server { code, message: text, .. }) => {
                assert_eq!((code, text.as_str()), (ErrorCode::UnknownApp, message));
            }
            other => panic!("{other:?}"),
        }
        assert!(client.read_frame().is_err(), "the connection is closed");
    }
    // HelloApp with the app default is plain Hello.
    let mut client = Client::connect_raw(server.addr).unwrap();
    let hello = Request::HelloApp { version: PROTOCOL_VERSION, client: "t".into(), app: "default".into() };
    assert!(matches!(client.request(hello).unwrap(), Reply::Hello { .. }));
    client.register("zed", PASSWORD).unwrap();
    assert!(server.server().store().account(&in_default("zed")).unwrap().is_some());
}

#[test]
fn statistics_are_per_app_and_the_servers_own_list_every_app() {
    let limits = AppRecord { max_users: 10, ..AppRecord::default() };
    let server = TestServer::with_apps(&[(ACME, limits)], |_| {});
    server.register_in(ACME, &["root", "bob"]);
    make_admin(&server, "acme/root");
    let mut root = server.login_in(ACME, "root");
    text(&mut root, to_user("bob"), 1, "one").unwrap();
    create_group(&mut root, "g", false);
    let expected = AppFigures {
        app: ACME.into(),
        users: 2,
        max_users: 10,
        logged_in: 1,
        max_connections: 0,
        groups: 1,
        max_groups: 0,
        rooms: 0,
        messages_received: 1,
    };
    assert_eq!(root.request(Request::Stats).unwrap(), Reply::AppStats(expected.clone()));

    server.register(&["admin"]);
    make_admin(&server, &in_default("admin"));
    let mut admin = server.login("admin");
    match admin.request(Request::Stats).unwrap() {
        Reply::Stats(stats) => {
            assert_eq!(stats.apps.iter().map(|a| a.app.as_str()).collect::<Vec<_>>(), [ACME, "default"]);
            assert_eq!(stats.apps[0], expected);
            assert_eq!((stats.apps[1].users, stats.apps[1].logged_in), (1, 1));
            assert_eq!(stats.logged_in, 2, "the server's own figures count every app");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_operators_push_gateway_names_other_apps_users_with_their_app() {
    let server = TestServer::with_apps(&[(ACME, AppRecord::default())], |c| c.push.window = Duration::ZERO);
    let token = admin::add_service(server.server().store(), &in_default("relay"), true).unwrap();
    let mut gw = server.client();
    gw.request(Request::ServiceLogin { name: "relay".into(), token }).unwrap();
    assert!(matches!(gw.request(Request::SubscribePush).unwrap(), Reply::PushSubscribed { .. }));
    let mut carol = server.user_in(ACME, "carol");
    let set = Request::SetPushDevice {
        device: "phone".into(),
        platform: PushPlatform::Fcm,
        token: "carol-token".into(),
        previews: true,
    };
    assert_eq!(carol.request(set).unwrap(), Reply::Done);
    drop(carol);
    let mut alice = server.user_in(ACME, "alice");
    let mut probe = service(&server, ACME, "probe");
    eventually("carol offline", SETTLE, || {
        probe.request(Request::QueryOnline { users: vec!["carol".into()] }).unwrap()
            == Reply::OnlineStatus { online: vec![false] }
    });
    text(&mut alice, to_user("carol"), 1, "are you there?").unwrap();
    let event = loop {
        match gw.next_push().unwrap() {
            Push::PushEvent(event) => break event,
            _ => continue,
        }
    };
    assert_eq!((event.recipient.as_str(), event.sender.as_str()), ("acme/carol", "acme/alice"));
    assert_eq!(event.chat, confab::protocol::Chat::User("acme/alice".into()));
    // The gateway forgets a dead token by the name it was given.
    let drop_token = Request::DropPushToken { username: "acme/carol".into(), token: "carol-token".into() };
    assert_eq!(gw.request(drop_token).unwrap(), Reply::Done);
    let mut carol = server.client_in(ACME);
    carol.login("carol", PASSWORD).unwrap();
    match carol.request(Request::PushSettings).unwrap() {
        Reply::PushSettings { devices, .. } => assert!(devices.is_empty(), "{devices:?}"),
        other => panic!("{other:?}"),
    }
}
