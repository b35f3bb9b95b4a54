//! Handshake, accounts, sessions: protocol.md "Connection states", "Accounts", "Sessions".

use crate::common::{eventually, inbox_of, TestServer, PASSWORD, SETTLE};
use confab::client::{Client, ClientError};
use confab::protocol::{
    ClientMsgId, ErrorCode, Limits, OnlineUser, Push, Reply, Request, Seq, ServerFrame, UserId, PROTOCOL_VERSION,
};
use std::time::Duration;

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

#[test]
fn hello_announces_version_and_limits() {
    let server = TestServer::start();
    let (_client, hello) = Client::connect(server.addr, "tests").unwrap();
    match hello {
        Reply::Hello {
            version,
            max_frame,
            max_body,
            heartbeat_secs,
            idle_timeout_secs,
            server,
            delivery_window,
            limits,
        } => {
            assert_eq!(delivery_window, 1024);
            let expected = Limits {
                request_rate: 2000,
                request_burst: 4000,
                delivery_window_bytes: 2 * 1024 * 1024,
                max_outbound: 8 * 1024 * 1024,
                token_ttl_secs: 30 * 24 * 3600,
                max_frame_before_login: 4096,
            };
            assert_eq!(limits, expected);
            assert_eq!(version, PROTOCOL_VERSION);
            assert_eq!(max_frame, 64 * 1024);
            assert_eq!(max_body, 32 * 1024);
            assert_eq!(heartbeat_secs, 30);
            assert_eq!(idle_timeout_secs, 90);
            assert!(server.starts_with("confabd "), "{server}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_version_is_refused_and_closed() {
    let server = TestServer::start();
    let mut client = Client::connect_raw(server.addr).unwrap();
    let result = client.request(Request::Hello { version: 99, client: "old".into() });
    assert_eq!(code(result), ErrorCode::UnsupportedVersion);
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
}

#[test]
fn requests_before_hello_are_refused_and_closed() {
    let server = TestServer::start();
    let mut client = Client::connect_raw(server.addr).unwrap();
    assert_eq!(code(client.request(Request::Ping)), ErrorCode::HelloRequired);
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
}

#[test]
fn ping_pong_and_second_hello() {
    let server = TestServer::start();
    let mut client = server.client();
    assert_eq!(client.request(Request::Ping).unwrap(), Reply::Pong);
    let again = client.request(Request::Hello { version: PROTOCOL_VERSION, client: "x".into() });
    assert_eq!(code(again), ErrorCode::BadRequest);
    // Not fatal: the connection still works.
    assert_eq!(client.request(Request::Ping).unwrap(), Reply::Pong);
}

#[test]
fn register_and_login_errors() {
    let server = TestServer::start();
    let mut client = server.client();
    let user_id = client.register("alice", PASSWORD).unwrap();
    assert_ne!(user_id, UserId(0), "0 is never an id");
    assert_eq!(code(client.register("alice", PASSWORD)), ErrorCode::NameTaken);
    assert_eq!(code(client.register("Alice", PASSWORD)), ErrorCode::InvalidName);
    assert_eq!(code(client.register("a b", PASSWORD)), ErrorCode::InvalidName);
    assert_eq!(code(client.register("x", PASSWORD)), ErrorCode::InvalidName);
    assert_eq!(code(client.register("bob", "short")), ErrorCode::InvalidPassword);
    assert_eq!(code(client.login("nobody", PASSWORD)), ErrorCode::UnknownUser);
    assert_eq!(code(client.login("alice", "wrong password")), ErrorCode::WrongPassword);
    assert_eq!(code(client.request(Request::Logout)), ErrorCode::NotLoggedIn);

    let reply = client.login("alice", PASSWORD).unwrap();
    match reply {
        Reply::LoggedIn { user_id: id, display_name, acked, last_seq, .. } => {
            assert_eq!((id, display_name.as_str(), acked, last_seq), (user_id, "alice", Seq::ZERO, Seq::ZERO));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(client.login("alice", PASSWORD)), ErrorCode::AlreadyLoggedIn);
    assert_eq!(code(client.register("carol", PASSWORD)), ErrorCode::AlreadyLoggedIn);
}

#[test]
fn concurrent_registrations_of_one_name_create_one_account() {
    let server = TestServer::start();
    let mut clients: Vec<Client> = (0..4).map(|_| server.client()).collect();
    let ids: Vec<u32> = clients
        .iter_mut()
        .map(|c| c.send(Request::Register { username: "dora".into(), password: PASSWORD.into() }).unwrap())
        .collect();
    let outcomes: Vec<_> = clients.iter_mut().zip(ids).map(|(c, id)| c.reply_to(id)).collect();
    let created = outcomes.iter().filter(|o| matches!(o, Ok(Reply::Registered { .. }))).count();
    let taken = outcomes.iter().filter(|o| matches!(o, Err(e) if e.code() == Some(ErrorCode::NameTaken))).count();
    assert_eq!((created, taken), (1, 3), "{outcomes:?}");
}

#[test]
fn second_login_kicks_the_first() {
    let server = TestServer::start();
    let mut first = server.user("alice");
    let mut second = server.login("alice");
    assert!(matches!(first.next_push().unwrap(), Push::Kicked { .. }));
    assert!(matches!(first.read_frame(), Err(ClientError::Closed)));
    // The new session is the live one.
    assert_eq!(second.request(Request::Ping).unwrap(), Reply::Pong);
    let mut bob = server.user("bob");
    bob.send_text("alice", ClientMsgId(1), "to the new session").unwrap();
    assert_eq!(second.next_message().unwrap().seq, Seq(1));
}

#[test]
fn rename_and_who_is_online_with_paging() {
    let server = TestServer::start();
    let mut clients: Vec<Client> = ["dave", "alice", "carol", "bob", "erin"].iter().map(|n| server.user(n)).collect();
    let reply = clients[1].request(Request::Rename { display_name: "Alice A.".into() }).unwrap();
    assert_eq!(reply, Reply::Renamed { display_name: "Alice A.".into() });
    let bad = clients[1].request(Request::Rename { display_name: "".into() });
    assert_eq!(code(bad), ErrorCode::InvalidName);

    let page =
        |c: &mut Client, after: &str| match c.request(Request::ListOnline { after: after.into(), limit: 2 }).unwrap() {
            Reply::Online { users, more } => (users, more),
            other => panic!("{other:?}"),
        };
    let (users, more) = page(&mut clients[0], "");
    let expected = vec![
        OnlineUser { username: "alice".into(), display_name: "Alice A.".into() },
        OnlineUser { username: "bob".into(), display_name: "bob".into() },
    ];
    assert_eq!((users, more), (expected, true));
    let (users, more) = page(&mut clients[0], "bob");
    assert_eq!(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["carol", "dave"]);
    assert!(more);
    let (users, more) = page(&mut clients[0], "dave");
    assert_eq!(users.len(), 1);
    assert!(!more);

    // Logging out leaves the list; the display name survives a new login.
    assert_eq!(clients[1].request(Request::Logout).unwrap(), Reply::LoggedOut);
    let (users, _) = page(&mut clients[0], "");
    assert_eq!(users[0].username, "bob");
    let reply = clients[1].login("alice", PASSWORD).unwrap();
    assert!(matches!(reply, Reply::LoggedIn { display_name, .. } if display_name == "Alice A."));
}

#[test]
fn logout_then_login_as_someone_else() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut client = server.user("alice");
    assert_eq!(client.request(Request::Logout).unwrap(), Reply::LoggedOut);
    let reply = client.login("bob", PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq::ZERO, Seq::ZERO));
}

#[test]
fn a_dropped_connection_goes_offline() {
    let server = TestServer::start();
    let mut watcher = server.user("watcher");
    let alice = server.user("alice");
    drop(alice);
    // Offline is proven by the listing, polled.
    eventually("alice to leave the online list once her connection closed", SETTLE, || {
        match watcher.request(Request::ListOnline { after: "".into(), limit: 10 }).unwrap() {
            Reply::Online { users, .. } => !users.iter().any(|u| u.username == "alice"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn idle_connections_are_closed_with_a_reason() {
    let server = TestServer::with(|c| c.idle_timeout = Duration::from_millis(300));
    let mut client = server.client();
    client.set_timeout(Duration::from_secs(5)).unwrap();
    match client.read_frame().unwrap() {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::IdleTimeout),
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
}

#[test]
fn shutdown_tells_clients() {
    let mut server = TestServer::start();
    let mut client = server.user("alice");
    server.stop();
    assert_eq!(client.next_push().unwrap(), Push::ShuttingDown);
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
}

fn token_of(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::LoggedIn { resume_token, .. } => resume_token.clone(),
        other => panic!("not a LoggedIn reply: {other:?}"),
    }
}

#[test]
fn resume_tokens_log_in_without_the_password() {
    let mut server = TestServer::start();
    server.register(&["alice"]);
    let mut client = server.client();
    let token = token_of(&client.login("alice", PASSWORD).unwrap());
    assert_eq!(token.len(), 32);
    drop(client);

    let mut client = server.client();
    let reply = client.resume("alice", &token).unwrap();
    assert_eq!(token_of(&reply), token);
    // Tokens survive a restart (they are stored, as a digest).
    drop(client);
    server.restart();
    let mut client = server.client();
    client.resume("alice", &token).unwrap();

    // Wrong token, wrong length, another user's name: all InvalidToken.
    let mut other = server.client();
    let mut wrong = token.clone();
    wrong[0] ^= 1;
    assert_eq!(code(other.resume("alice", &wrong)), ErrorCode::InvalidToken);
    assert_eq!(code(other.resume("alice", &token[..16])), ErrorCode::InvalidToken);
    server.register(&["bob"]);
    assert_eq!(code(other.resume("bob", &token)), ErrorCode::InvalidToken);
    assert_eq!(code(other.resume("nobody", &token)), ErrorCode::UnknownUser);

    // Logout revokes every token of the user.
    assert_eq!(client.request(Request::Logout).unwrap(), Reply::LoggedOut);
    assert_eq!(code(other.resume("alice", &token)), ErrorCode::InvalidToken);
}

#[test]
fn expired_tokens_are_refused() {
    let server = TestServer::with(|c| c.token_ttl = Duration::ZERO);
    server.register(&["alice"]);
    let mut client = server.client();
    let token = token_of(&client.login("alice", PASSWORD).unwrap());
    let mut other = server.client();
    assert_eq!(code(other.resume("alice", &token)), ErrorCode::InvalidToken);
}
