//! Rooms and broadcast across nodes. A room is homed by its name like a user: every
//! join, leave and message goes to that node, which pushes to the members wherever their
//! connections are. A broadcast reaches every node's users.

use super::{homed_on, retry_while_unavailable, TestCluster, RECOVERY};
use crate::common::eventually;
use confab::client::{Client, ClientError};
use confab::protocol::{ClientMsgId, Content, Push, Reply, Request, Target};
use std::time::Duration;

fn ok(client: &mut Client, request: Request) {
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

fn say(client: &mut Client, room: &str, text: &str) -> Reply {
    let request = Request::Send {
        to: Target::Room(room.into()),
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text(text),
    };
    client.request(request).unwrap()
}

fn quiet(client: &mut Client) {
    client.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(matches!(client.next_push(), Err(ClientError::Timeout)), "nothing more is pushed");
}

#[test]
fn a_room_gathers_users_of_every_node() {
    let cluster = TestCluster::start();
    // The room lives on node 3; its members are homed on nodes 1 and 2.
    let room = homed_on(3, "lobby");
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut bob_client = cluster.user(&bob);
    ok(&mut alice_client, Request::JoinRoom { room: room.clone() });
    ok(&mut bob_client, Request::JoinRoom { room: room.clone() });

    match bob_client.request(Request::RoomMembers { room: room.clone() }).unwrap() {
        Reply::RoomMembers { members, .. } => {
            let names: Vec<_> = members.iter().map(|m| m.username.as_str()).collect();
            let mut expected = vec![alice.as_str(), bob.as_str()];
            expected.sort();
            assert_eq!(names, expected);
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(say(&mut alice_client, &room, "hi from node 1"), Reply::Delivered { recipients: 1 });
    let expected =
        Push::RoomMessage { room: room.clone(), from: alice.clone(), content: Content::text("hi from node 1") };
    assert_eq!(bob_client.next_push().unwrap(), expected);
    assert_eq!(say(&mut bob_client, &room, "and from node 2"), Reply::Delivered { recipients: 1 });
    let expected =
        Push::RoomMessage { room: room.clone(), from: bob.clone(), content: Content::text("and from node 2") };
    assert_eq!(alice_client.next_push().unwrap(), expected);

    // bob's connection closes: the room's node hears of it and he is no longer a member.
    drop(bob_client);
    eventually("bob to leave the room on its node", RECOVERY, || {
        match alice_client.request(Request::RoomMembers { room: room.clone() }).unwrap() {
            Reply::RoomMembers { members, .. } => members.len() == 1,
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(say(&mut alice_client, &room, "anyone?"), Reply::Delivered { recipients: 0 });
    quiet(&mut alice_client);
}

#[test]
fn a_broadcast_reaches_the_users_of_every_node() {
    let cluster = TestCluster::with_flags(&["--broadcast-by-anyone"]);
    let (root, alice, bob, carol) =
        (homed_on(1, "root"), homed_on(1, "alice"), homed_on(2, "bob"), homed_on(3, "carol"));
    let mut root_client = cluster.user(&root);
    let mut others: Vec<Client> = [&alice, &bob, &carol].iter().map(|name| cluster.user(name)).collect();
    let everyone = Request::Send {
        to: Target::Everyone,
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text("maintenance at noon"),
    };
    // The sender's node counts its own users only (alice); the others are reached too.
    assert_eq!(root_client.request(everyone).unwrap(), Reply::Delivered { recipients: 1 });
    let expected = Push::Broadcast { from: root.clone(), content: Content::text("maintenance at noon") };
    for client in &mut others {
        assert_eq!(client.next_push().unwrap(), expected);
        quiet(client);
    }
    quiet(&mut root_client);
}

/// A cluster where alice (node 1) and bob (node 2) are in a room homed on node 3: the
/// cluster, the room, alice's client, and bob's name and client (kept open: his node is to
/// go with it, not his client).
fn alice_and_bob_in_a_room() -> (TestCluster, String, Client, (String, Client)) {
    let cluster = TestCluster::start();
    let room = homed_on(3, "lobby");
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut bob_client = cluster.user(&bob);
    ok(&mut alice_client, Request::JoinRoom { room: room.clone() });
    ok(&mut bob_client, Request::JoinRoom { room: room.clone() });
    (cluster, room, alice_client, (bob, bob_client))
}

/// Waits until `client` is the only member of `room`.
fn alone_in(client: &mut Client, room: &str, what: &str) {
    eventually(what, RECOVERY, || match client.request(Request::RoomMembers { room: room.into() }).unwrap() {
        Reply::RoomMembers { members, .. } => members.len() == 1,
        other => panic!("{other:?}"),
    });
}

#[test]
fn members_whose_node_is_killed_leave_the_rooms_of_other_nodes() {
    let (mut cluster, room, mut alice_client, _bob) = alice_and_bob_in_a_room();
    // bob's node dies with his connection: no Closed comes for it, yet the room's node lets
    // him go once it sees the node down.
    cluster.nodes.kill(2);
    alone_in(&mut alice_client, &room, "bob's place in the room to go with his node");
    assert_eq!(say(&mut alice_client, &room, "still here"), Reply::Delivered { recipients: 0 });
}

#[test]
fn members_of_a_node_that_restarted_at_once_leave_the_rooms_of_other_nodes() {
    let (mut cluster, room, mut alice_client, (bob, _bob_client)) = alice_and_bob_in_a_room();
    // Killed and started again at once, maybe before the others miss its heartbeats: its
    // new run's first beat tells them its last run's connections are gone.
    cluster.nodes.kill(2);
    cluster.nodes.restart(2);
    alone_in(&mut alice_client, &room, "bob's place in the room to go with his node's last run");
    // bob, back at his home, joins again and is heard.
    let mut bob_again = cluster.login(&bob);
    let rejoined =
        retry_while_unavailable("bob rejoining", || bob_again.request(Request::JoinRoom { room: room.clone() }));
    assert_eq!(rejoined.unwrap(), Reply::Done);
    assert_eq!(say(&mut alice_client, &room, "welcome back"), Reply::Delivered { recipients: 1 });
}
