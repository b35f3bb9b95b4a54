//! Connections nobody has logged in on: protocol.md "Connection states". They have a Hello
//! deadline, a login deadline, a cap of their own below the connection limit, and a small
//! frame limit, so sockets that never log in cannot crowd out users.

use crate::common::{daemon::spawn_daemon, DataDir, TestServer, PASSWORD};
use confab::client::{Client, ClientError};
use confab::protocol::{ClientMsgId, Content, ErrorCode, MediaKind, Request, ServerFrame, Target};
use std::time::Duration;

/// The error a connection is closed with, and proof that it is then closed.
fn closed_with(client: &mut Client) -> (ErrorCode, String) {
    let frame = client.read_frame().expect("a closing error");
    let ServerFrame::Error { code, message, .. } = frame else { panic!("expected an error, got {frame:?}") };
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
    (code, message)
}

#[test]
fn silent_connections_cannot_fill_the_server_and_are_closed_at_the_hello_deadline() {
    let server = TestServer::with(|c| {
        c.max_connections = 20;
        c.max_unauthenticated = 5;
        c.hello_timeout = Duration::from_secs(1);
    });
    // Alice is logged in before the flood, and stays.
    let mut alice = server.user("alice");
    let mut silent: Vec<Client> = (0..5).map(|_| Client::connect_raw(server.addr).unwrap()).collect();
    // Five strangers fill their share: the next is refused, though the server is far from full.
    let mut refused = Client::connect_raw(server.addr).unwrap();
    let (code, message) = closed_with(&mut refused);
    assert_eq!((code, message.as_str()), (ErrorCode::ServerFull, "too many connections not logged in"));
    // Each silent one is closed at the Hello deadline.
    for client in &mut silent {
        let (code, message) = closed_with(client);
        assert_eq!((code, message.as_str()), (ErrorCode::IdleTimeout, "no Hello within the handshake deadline"));
    }
    // Alice never noticed; newcomers get in again.
    assert_eq!(alice.request(Request::Ping).unwrap(), confab::protocol::Reply::Pong);
    let mut bob = server.client();
    bob.register("bob", PASSWORD).unwrap();
    bob.login("bob", PASSWORD).unwrap();
}

#[test]
fn a_few_addresses_cannot_take_every_place_before_login() {
    // Ten places before login, three per address: strangers at two addresses take six,
    // and a user at a third still gets in.
    let server = TestServer::with(|c| {
        c.max_unauthenticated = 10;
        c.max_unauthenticated_per_ip = 3;
    });
    server.register(&["alice"]);
    let stranger = |n: u8| Client::connect_raw_from(server.addr, [127, 0, 0, n].into()).unwrap();
    let _held: Vec<Client> = [2, 2, 2, 3, 3, 3].into_iter().map(stranger).collect();
    let mut refused = stranger(2);
    let (code, message) = closed_with(&mut refused);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::ServerFull, "too many connections not logged in from your address")
    );
    let (mut alice, _) = Client::connect_from(server.addr, [127, 0, 0, 4].into(), "alice").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    // Logged in, she no longer takes a place: three more from her address may wait to log in.
    let _waiting: Vec<Client> =
        (0..3).map(|_| Client::connect_from(server.addr, [127, 0, 0, 4].into(), "t").expect("let in").0).collect();
}

#[test]
fn a_greeted_connection_that_never_logs_in_is_closed_at_the_login_deadline() {
    let server = TestServer::with(|c| c.login_timeout = Duration::from_secs(1));
    let mut stranger = server.client();
    // Pings keep a connection from the idle timeout, not from the login deadline.
    assert_eq!(stranger.request(Request::Ping).unwrap(), confab::protocol::Reply::Pong);
    let (code, message) = closed_with(&mut stranger);
    assert_eq!((code, message.as_str()), (ErrorCode::IdleTimeout, "no login within the login deadline"));
}

#[test]
fn the_login_deadline_restarts_at_logout_and_spares_logged_in_users() {
    let server = TestServer::with(|c| c.login_timeout = Duration::from_secs(1));
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    alice.request(Request::Logout).unwrap();
    let (code, message) = closed_with(&mut alice);
    assert_eq!((code, message.as_str()), (ErrorCode::IdleTimeout, "no login within the login deadline"));
    // Bob logged in before alice logged out, so he has been connected longer than the
    // deadline by now: logged in, he is not held to it.
    assert_eq!(bob.request(Request::Ping).unwrap(), confab::protocol::Reply::Pong);
}

#[test]
fn frames_before_login_are_small() {
    let server = TestServer::start();
    server.register(&["bob"]);
    // A stranger declaring a 5000-byte frame is refused at the prefix: the body is never buffered.
    let mut stranger = server.client();
    stranger.write_raw(&5000u32.to_be_bytes()).unwrap();
    let (code, message) = closed_with(&mut stranger);
    assert_eq!((code, message.as_str()), (ErrorCode::FrameTooLarge, "frame exceeds max_frame_before_login"));
    // After login the full max_frame applies.
    let mut alice = server.user("alice");
    let big = Content { kind: MediaKind::File, body: vec![7; 8000], media: None };
    let sent = alice.request(Request::Send {
        to: Target::User("bob".into()),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: big,
    });
    assert!(sent.is_ok(), "{sent:?}");
}

#[test]
fn refused_connections_are_logged_once_a_second_not_once_each() {
    let data = DataDir::new();
    let mut daemon =
        spawn_daemon(data.path(), &["--max-connections", "2", "--hello-timeout", "60", "--log-level", "info"]);
    let _held: Vec<Client> = (0..2).map(|_| Client::connect_raw(daemon.addr).unwrap()).collect();
    const REFUSED: u64 = 200;
    for _ in 0..REFUSED {
        let mut client = Client::connect_raw(daemon.addr).unwrap();
        assert_eq!(closed_with(&mut client).0, ErrorCode::ServerFull);
    }
    // One line for the first, then summaries adding up to the rest.
    let (mut single, mut summed, mut lines) = (0, 0, 0);
    while single + summed < REFUSED {
        let line = daemon.log.recv_timeout(Duration::from_secs(10)).expect("the refusals are all logged");
        if line.contains("refused 127.0.0.1") {
            single += 1;
            lines += 1;
        } else if let Some(rest) = line.split("refused ").nth(1).filter(|r| r.contains("more connections")) {
            summed += rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).expect("a count");
            lines += 1;
        }
    }
    assert_eq!(single + summed, REFUSED);
    assert!(lines < REFUSED / 10, "{lines} lines for {REFUSED} refusals");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}
