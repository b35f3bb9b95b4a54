//! Presence across nodes: a subscription to a user homed on another node is held on that
//! user's home (which alone knows its sessions), and the pushes come back over the bus to
//! the subscriber's node. When the subscriber's session ends (a close or a logout), its
//! node tells the home, which forgets the subscription.

use super::{homed_on, TestCluster};
use crate::common::PASSWORD;
use confab::client::{Client, ClientError};
use confab::protocol::{ErrorCode, Push, Reply, Request};
use std::time::Duration;

fn subscribe(client: &mut Client, username: &str) -> Reply {
    client.request(Request::SubscribePresence { username: username.into() }).expect("a subscription")
}

fn subscribed(username: &str, online: bool) -> Reply {
    Reply::Subscribed { username: username.into(), online }
}

/// The next presence push to `client`: (username, online).
fn next_presence(client: &mut Client) -> (String, bool) {
    loop {
        if let Push::Presence { username, online } = client.next_push().expect("a push") {
            return (username, online);
        }
    }
}

/// Asserts that `client` is pushed nothing for a short while (what would come, would come
/// by then: the frames that caused it were answered already).
fn pushed_nothing(client: &mut Client) {
    client.set_timeout(Duration::from_millis(300)).unwrap();
    match client.next_push() {
        Err(ClientError::Timeout) => {}
        other => panic!("expected nothing, got {other:?}"),
    }
    client.set_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_subscriber_on_another_node_hears_a_user_come_and_go() {
    let cluster = TestCluster::start();
    let (carol, bob) = (homed_on(3, "carol"), homed_on(2, "bob"));
    cluster.register(&[&bob]);
    let mut carol_client = cluster.user(&carol);

    // carol (node 3) subscribes to bob (node 2), who is offline.
    assert_eq!(subscribe(&mut carol_client, &bob), subscribed(&bob, false));

    // bob logs in at home: carol is told; a second device of his changes nothing.
    let bob_client = cluster.login(&bob);
    assert_eq!(next_presence(&mut carol_client), (bob.clone(), true));
    let (bob_phone, _) = cluster.device(&bob, "phone");
    // Subscribing again, now, says he is online (and is still one subscription).
    assert_eq!(subscribe(&mut carol_client, &bob), subscribed(&bob, true));

    // He is offline once his last session ends.
    drop(bob_client);
    drop(bob_phone);
    assert_eq!(next_presence(&mut carol_client), (bob.clone(), false));
    pushed_nothing(&mut carol_client);

    // Unsubscribed, carol hears nothing of him any more.
    assert_eq!(carol_client.request(Request::UnsubscribePresence { username: bob.clone() }).unwrap(), Reply::Done);
    let again = cluster.login(&bob);
    pushed_nothing(&mut carol_client);
    drop(again);

    // A user nobody registered is unknown at its home.
    let nobody = homed_on(2, "nobody");
    let refused = carol_client.request(Request::SubscribePresence { username: nobody }).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::UnknownUser), "{refused}");
}

#[test]
fn a_subscribers_logout_is_forgotten_on_the_watched_users_home() {
    let cluster = TestCluster::start();
    let (carol, bob) = (homed_on(3, "carol"), homed_on(2, "bob"));
    cluster.register(&[&bob]);
    let mut carol_client = cluster.user(&carol);
    assert_eq!(subscribe(&mut carol_client, &bob), subscribed(&bob, false));

    // carol logs out and in again on the same connection: her subscription went with her
    // session, on bob's home too.
    assert_eq!(carol_client.request(Request::Logout).unwrap(), Reply::LoggedOut);
    carol_client.login(&carol, PASSWORD).unwrap();
    let refused = carol_client.request(Request::UnsubscribePresence { username: bob.clone() }).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::BadRequest), "{refused}");
    let bob_client = cluster.login(&bob);
    pushed_nothing(&mut carol_client);

    // Subscribing again works, and is told as before.
    assert_eq!(subscribe(&mut carol_client, &bob), subscribed(&bob, true));
    drop(bob_client);
    assert_eq!(next_presence(&mut carol_client), (bob.clone(), false));
}

#[test]
fn a_subscribers_disconnect_is_forgotten_on_the_watched_users_home() {
    let cluster = TestCluster::start();
    let (carol, bob, dave) = (homed_on(3, "carol"), homed_on(2, "bob"), homed_on(3, "dave"));
    cluster.register(&[&bob, &dave]);

    // carol subscribes to bob from node 3, and her connection closes.
    let mut carol_client = cluster.user(&carol);
    assert_eq!(subscribe(&mut carol_client, &bob), subscribed(&bob, false));
    drop(carol_client);

    // bob comes and goes; carol, back on a new connection, subscribes again and hears him,
    // once per change.
    let bob_client = cluster.login(&bob);
    drop(bob_client);
    let mut carol_client = cluster.login(&carol);
    let mut dave_client = cluster.login(&dave);
    assert_eq!(subscribe(&mut carol_client, &bob), subscribed(&bob, false));
    let bob_client = cluster.login(&bob);
    assert_eq!(next_presence(&mut carol_client), (bob.clone(), true));
    drop(bob_client);
    assert_eq!(next_presence(&mut carol_client), (bob.clone(), false));
    pushed_nothing(&mut carol_client);
    // dave, on carol's node, never subscribed: he hears nothing of bob.
    pushed_nothing(&mut dave_client);

    // bob's home took the closed connection's end as an ordinary one.
    let troubles: Vec<String> = cluster
        .nodes
        .daemon(2)
        .log
        .try_iter()
        .filter(|line| line.contains("[WARN]") || line.contains("[ERROR]"))
        .collect();
    assert!(troubles.is_empty(), "node 2 logged:\n{}", troubles.join("\n"));
}
