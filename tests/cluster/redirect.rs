//! Redirects (protocol.md "Cluster"): a node that is not a user's home answers `Register`
//! and every login request for that user with `Redirect { node, address }` and does
//! nothing else; the client connects to `address`, says Hello and sends the same request
//! there.

use super::{connect, homed_on, login_request, redirect_of, TestCluster};
use crate::common::{token_of, PASSWORD};
use confab::protocol::{ErrorCode, Reply, Request};
use std::net::SocketAddr;

#[test]
fn registration_and_login_away_from_home_are_redirected_to_the_home() {
    let cluster = TestCluster::start();
    let alice = homed_on(2, "alice");
    let home = (2, cluster.addr(2).to_string());

    // alice registers on node 1: she is sent to node 2, and nothing was done on node 1.
    let register = || Request::Register { username: alice.clone(), password: PASSWORD.into() };
    let mut away = cluster.client(1);
    let (node, address) = redirect_of(away.request(register()));
    assert_eq!((node, address.clone()), home);
    // The same from node 3.
    assert_eq!(redirect_of(cluster.client(3).request(register())), home);

    // She follows the redirect: Hello and the same request at the address given.
    let address: SocketAddr = address.parse().expect("a Redirect's address is host:port");
    let mut at_home = connect(address);
    assert!(matches!(at_home.request(register()), Ok(Reply::Registered { .. })));

    // Logging in anywhere else sends her home again, by password or token, with a device
    // or without; at home each works.
    let reply = at_home.login(&alice, PASSWORD).expect("login at home");
    let token = token_of(&reply);
    let device = Request::LoginDevice { username: alice.clone(), password: PASSWORD.into(), device: "phone".into() };
    let device_reply = connect(cluster.addr(2)).request(device.clone()).expect("device login at home");
    assert!(matches!(device_reply, Reply::DeviceLoggedIn { .. }), "{device_reply:?}");
    let device_token = token_of(&device_reply);
    let requests = [
        login_request(&alice),
        Request::Resume { username: alice.clone(), token: token.clone() },
        device,
        Request::ResumeDevice { username: alice.clone(), token: device_token, device: "phone".into() },
    ];
    for away in [1, 3] {
        for request in &requests {
            let reply = cluster.client(away).request(request.clone());
            assert_eq!(redirect_of(reply), home, "{request:?} on node {away}");
        }
    }
    // The redirected requests did nothing: the token still resumes at home.
    let resumed = connect(cluster.addr(2)).request(Request::Resume { username: alice.clone(), token });
    assert!(matches!(resumed, Ok(Reply::LoggedIn { .. })), "{resumed:?}");
}

#[test]
fn a_name_registered_at_its_home_is_taken_on_every_node() {
    // A redirected registration did nothing, so the name is free at home; once registered
    // there, registering it again from any node ends at the home, which refuses it.
    let cluster = TestCluster::start();
    let bob = homed_on(3, "bob");
    let register = Request::Register { username: bob.clone(), password: PASSWORD.into() };
    assert_eq!(redirect_of(cluster.client(1).request(register.clone())).0, 3);
    cluster.register(&[&bob]);
    for node in [1, 2] {
        assert_eq!(redirect_of(cluster.client(node).request(register.clone())).0, 3);
    }
    let again = cluster.client(3).request(register).expect_err("a second registration at home");
    assert_eq!(again.code(), Some(ErrorCode::NameTaken), "{again:?}");
}
