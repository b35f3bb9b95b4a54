//! Ephemeral rooms, broadcast and presence: protocol.md "Rooms", "Broadcast", "Presence".

use crate::common::{eventually, in_default, TestServer, SETTLE};
use confab::client::{Client, ClientError};
use confab::protocol::{ClientMsgId, Content, ErrorCode, Push, Reply, Request, RoomInfo, Target};
use std::time::Duration;

fn ok(client: &mut Client, request: Request) {
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

fn room_say(client: &mut Client, room: &str, text: &str) -> Result<Reply, ClientError> {
    client.request(Request::Send {
        to: Target::Room(room.into()),
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text(text),
    })
}

fn quiet(client: &mut Client) {
    client.set_timeout(Duration::from_millis(200)).unwrap();
    assert!(matches!(client.next_push(), Err(ClientError::Timeout)), "expected no push");
    client.set_timeout(Duration::from_secs(10)).unwrap();
}

fn members(client: &mut Client, room: &str) -> Vec<String> {
    match client.request(Request::RoomMembers { room: room.into() }).unwrap() {
        Reply::RoomMembers { members, .. } => members.into_iter().map(|m| m.username).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn room_messages_reach_only_those_present() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    ok(&mut alice, Request::JoinRoom { room: "lobby".into() });
    ok(&mut bob, Request::JoinRoom { room: "lobby".into() });
    ok(&mut carol, Request::JoinRoom { room: "games".into() });
    assert_eq!(room_say(&mut carol, "lobby", "let me in").unwrap_err().code(), Some(ErrorCode::NotAMember));
    assert_eq!(members(&mut carol, "lobby"), ["alice", "bob"]);
    match carol.request(Request::ListRooms { after: "".into(), limit: 10 }).unwrap() {
        Reply::Rooms { rooms, more } => {
            let expected =
                [RoomInfo { name: "games".into(), members: 1 }, RoomInfo { name: "lobby".into(), members: 2 }];
            assert_eq!((rooms, more), (expected.to_vec(), false));
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(room_say(&mut alice, "lobby", "hi all").unwrap(), Reply::Delivered { recipients: 1 });
    let expected = Push::RoomMessage { room: "lobby".into(), from: "alice".into(), content: Content::text("hi all") };
    assert_eq!(bob.next_push().unwrap(), expected);
    quiet(&mut carol);

    ok(&mut bob, Request::LeaveRoom { room: "lobby".into() });
    assert_eq!(room_say(&mut alice, "lobby", "anyone?").unwrap(), Reply::Delivered { recipients: 0 });
    quiet(&mut bob);
    assert_eq!(
        bob.request(Request::LeaveRoom { room: "lobby".into() }).unwrap_err().code(),
        Some(ErrorCode::NotAMember)
    );
    assert_eq!(
        alice.request(Request::JoinRoom { room: "Bad Name".into() }).unwrap_err().code(),
        Some(ErrorCode::InvalidName)
    );
    // Nothing from rooms is ever stored.
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 0);
}

#[test]
fn a_dropped_connection_leaves_its_rooms() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    ok(&mut bob, Request::JoinRoom { room: "lobby".into() });
    ok(&mut alice, Request::JoinRoom { room: "lobby".into() });
    drop(bob);
    // The close is noticed asynchronously; poll the membership.
    eventually("bob's closed connection to leave the room", SETTLE, || members(&mut alice, "lobby") == ["alice"]);
    assert_eq!(room_say(&mut alice, "lobby", "alone").unwrap(), Reply::Delivered { recipients: 0 });
    ok(&mut alice, Request::LeaveRoom { room: "lobby".into() });
    assert_eq!(server.server().rooms(), 0, "an empty room is gone");
}

#[test]
fn room_size_is_limited() {
    let server = TestServer::with(|c| c.max_room_members = 1);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    ok(&mut alice, Request::JoinRoom { room: "tiny".into() });
    assert_eq!(
        bob.request(Request::JoinRoom { room: "tiny".into() }).unwrap_err().code(),
        Some(ErrorCode::LimitReached)
    );
}

fn make_admin(server: &TestServer, name: &str) {
    let store = server.server().store();
    let mut account = store.account(&in_default(name)).unwrap().unwrap();
    account.admin = true;
    store.put_account(&in_default(name), &account).unwrap();
}

#[test]
fn broadcast_is_for_administrators_and_reaches_everyone_online_once() {
    let server = TestServer::start();
    server.register(&["root"]);
    make_admin(&server, "root");
    let mut root = server.login("root");
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let everyone = |text: &str| Request::Send {
        to: Target::Everyone,
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text(text),
    };
    assert_eq!(alice.request(everyone("me too")).unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert_eq!(root.request(everyone("maintenance at noon")).unwrap(), Reply::Delivered { recipients: 2 });
    let expected = Push::Broadcast { from: "root".into(), content: Content::text("maintenance at noon") };
    assert_eq!(alice.next_push().unwrap(), expected);
    assert_eq!(bob.next_push().unwrap(), expected);
    quiet(&mut alice);
    quiet(&mut root);
}

#[test]
fn broadcast_by_anyone_when_the_server_allows_it() {
    let server = TestServer::with(|c| c.broadcast_by_anyone = true);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let request = Request::Send {
        to: Target::Everyone,
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text("hey"),
    };
    assert_eq!(alice.request(request).unwrap(), Reply::Delivered { recipients: 1 });
    assert!(matches!(bob.next_push().unwrap(), Push::Broadcast { .. }));
}

#[test]
fn presence_reaches_group_peers_and_subscribers_but_not_strangers() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    let mut dave = server.user("dave");
    let g = match alice.request(Request::CreateGroup { name: "pals".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    ok(&mut alice, Request::AddMember { group_id: g, username: "bob".into() });
    alice.next_message().unwrap();
    alice.next_message().unwrap();
    let subscribed = carol.request(Request::SubscribePresence { username: "bob".into() }).unwrap();
    assert_eq!(subscribed, Reply::Subscribed { username: "bob".into(), online: false });
    assert_eq!(
        carol.request(Request::SubscribePresence { username: "nobody".into() }).unwrap_err().code(),
        Some(ErrorCode::UnknownUser)
    );

    let bob = server.login("bob");
    let online = Push::Presence { username: "bob".into(), online: true };
    assert_eq!(alice.next_push().unwrap(), online);
    assert_eq!(carol.next_push().unwrap(), online);
    drop(bob);
    let offline = Push::Presence { username: "bob".into(), online: false };
    assert_eq!(alice.next_push().unwrap(), offline);
    assert_eq!(carol.next_push().unwrap(), offline);
    quiet(&mut dave);

    // After unsubscribing, carol hears nothing more.
    ok(&mut carol, Request::UnsubscribePresence { username: "bob".into() });
    let _bob = server.login("bob");
    assert_eq!(alice.next_push().unwrap(), online);
    quiet(&mut carol);
}
