//! Who is online and the rooms, across nodes: each node has its part (its own users'
//! sessions, the rooms homed on it), and the node asked gathers every part into one page
//! in name order. A node that cannot answer leaves its part out rather than failing the
//! listing.

use super::{homed_on, TestCluster, RECOVERY};
use crate::common::eventually;
use confab::client::Client;
use confab::protocol::{Reply, Request};

fn online(client: &mut Client, after: &str, limit: u32) -> (Vec<String>, bool) {
    match client.request(Request::ListOnline { after: after.into(), limit }).unwrap() {
        Reply::Online { users, more } => (users.into_iter().map(|u| u.username).collect(), more),
        other => panic!("{other:?}"),
    }
}

fn rooms(client: &mut Client) -> Vec<(String, u32)> {
    match client.request(Request::ListRooms { after: "".into(), limit: 100 }).unwrap() {
        Reply::Rooms { rooms, more: false } => rooms.into_iter().map(|r| (r.name, r.members)).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn who_is_online_lists_the_users_of_every_node_page_by_page() {
    let mut cluster = TestCluster::start();
    let mut names: Vec<String> = (1..=3).map(|node| homed_on(node, &format!("user{node}x"))).collect();
    let mut clients: Vec<Client> = names.iter().map(|name| cluster.user(name)).collect();
    names.sort();
    // The cluster's own probe users went offline as the test began (their closes may
    // still be on their way).
    eventually("every node's user, and only them", RECOVERY, || {
        online(&mut clients[0], "", 100) == (names.clone(), false)
    });
    // Two at a time, from any node.
    let (first, more) = online(&mut clients[1], "", 2);
    assert_eq!((first.as_slice(), more), (&names[..2], true));
    let (rest, more) = online(&mut clients[2], &first[1], 2);
    assert_eq!((rest.as_slice(), more), (&names[2..], false));

    // A node killed: its user is left out, the others are listed.
    let gone = super::home(&names[2]);
    cluster.nodes.kill(gone);
    let alive: Vec<String> = names.iter().filter(|n| super::home(n) != gone).cloned().collect();
    let asker =
        clients.iter_mut().position(|c| c.stream().peer_addr().map(|a| a != cluster.addr(gone)).unwrap_or(false));
    let asker = &mut clients[asker.expect("a client of a live node")];
    eventually("the listing without the killed node's user", RECOVERY, || online(asker, "", 100).0 == alive);
}

#[test]
fn the_rooms_of_every_node_are_listed_together() {
    let cluster = TestCluster::start();
    let room_names: Vec<String> = (1..=3).map(|node| homed_on(node, "room")).collect();
    let mut alice = cluster.user(&homed_on(1, "alice"));
    let mut bob = cluster.user(&homed_on(2, "bob"));
    for room in &room_names {
        assert_eq!(alice.request(Request::JoinRoom { room: room.clone() }).unwrap(), Reply::Done);
    }
    assert_eq!(bob.request(Request::JoinRoom { room: room_names[2].clone() }).unwrap(), Reply::Done);
    let mut expected: Vec<(String, u32)> =
        room_names.iter().enumerate().map(|(i, r)| (r.clone(), if i == 2 { 2 } else { 1 })).collect();
    expected.sort();
    assert_eq!(rooms(&mut bob), expected);
}
