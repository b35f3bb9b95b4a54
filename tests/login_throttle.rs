//! Failed-login throttling: protocol.md "Heartbeats, limits and shutdown", Login
//! throttling. Guessing is slowed per (account, address), per address and per account,
//! but nobody's guesses lock the owner out. Other hosts are played from 127.0.0.x, all
//! loopback on Linux.

use crate::common::{TestServer, PASSWORD};
use confab::client::{Client, ClientError};
use confab::protocol::{ErrorCode, Reply, Request};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

fn host(n: u8) -> IpAddr {
    [127, 0, 0, n].into()
}

fn from(addr: SocketAddr, n: u8) -> Client {
    Client::connect_from(addr, host(n), "tests").expect("connect").0
}

/// The code of a refusal, checking that a RateLimited one says when to retry.
fn refused(result: Result<Reply, ClientError>) -> ErrorCode {
    let e = result.expect_err("a refusal");
    let code = e.code().unwrap_or_else(|| panic!("not a server error: {e}"));
    if code == ErrorCode::RateLimited {
        assert!(e.retry_after().is_some_and(|wait| wait > Duration::ZERO), "{e:?} has no retry time");
    }
    code
}

fn throttled_server() -> TestServer {
    TestServer::with(|c| {
        c.login_free_attempts = 3;
        c.login_address_free_attempts = 5;
        c.login_account_free_attempts = 4;
        // Long enough that no wait runs out during the test.
        c.login_backoff = Duration::from_secs(600);
        c.login_backoff_max = Duration::from_secs(3600);
    })
}

#[test]
fn guesses_from_other_addresses_do_not_lock_the_owner_out() {
    let server = throttled_server();
    server.register(&["alice"]);
    // Alice logs in from home (127.0.0.1) and keeps her resume token.
    let token = match server.client().login("alice", PASSWORD).unwrap() {
        Reply::LoggedIn { resume_token, .. } => resume_token,
        other => panic!("{other:?}"),
    };

    // Eleven guesses from three addresses alice never uses.
    let mut outcomes = Vec::new();
    for guess in 0..11u8 {
        let mut attacker = from(server.addr, 2 + guess % 3);
        outcomes.push(refused(attacker.login("alice", "wrong guess")));
    }
    let wrong = outcomes.iter().filter(|c| **c == ErrorCode::WrongPassword).count();
    let limited = outcomes.iter().filter(|c| **c == ErrorCode::RateLimited).count();
    assert_eq!(wrong + limited, 11, "{outcomes:?}");
    // Once the account has 4 failures, every address that failed waits: the guessing
    // stops after four guesses, not 3 per address.
    assert_eq!(wrong, 4, "{outcomes:?}");

    // A fresh address of the guesser gets one guess, then waits on the account's count.
    let mut fresh = from(server.addr, 9);
    assert_eq!(refused(fresh.login("alice", "another guess")), ErrorCode::WrongPassword);
    assert_eq!(refused(fresh.login("alice", PASSWORD)), ErrorCode::RateLimited);

    // Alice's valid token works even from an address that guessed: it is not a guess.
    let mut resumed = from(server.addr, 2);
    let reply = resumed.request(Request::Resume { username: "alice".into(), token: token.clone() }).unwrap();
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    // And her password works from her own address, which has no failures.
    let mut home = from(server.addr, 1);
    assert!(matches!(home.login("alice", PASSWORD).unwrap(), Reply::LoggedIn { .. }));
}

#[test]
fn an_address_guessing_many_accounts_is_held_back() {
    let server = throttled_server();
    server.register(&["alice", "bob", "carol"]);
    let mut guesser = from(server.addr, 7);
    for name in ["alice", "alice", "bob", "bob", "carol"] {
        assert_eq!(refused(guesser.login(name, "wrong guess")), ErrorCode::WrongPassword);
    }
    // Five failures from the address: every account waits there, even with the password...
    assert_eq!(refused(guesser.login("carol", PASSWORD)), ErrorCode::RateLimited);
    // ...but not from elsewhere.
    assert!(matches!(from(server.addr, 8).login("carol", PASSWORD).unwrap(), Reply::LoggedIn { .. }));
}

#[test]
fn one_address_guessing_one_account_waits_and_no_hash_is_spent() {
    let server = throttled_server();
    server.register(&["alice"]);
    let mut client = from(server.addr, 3);
    for _ in 0..3 {
        assert_eq!(refused(client.login("alice", "wrong guess")), ErrorCode::WrongPassword);
    }
    // Even the right password waits now; the wait is in the frame, in milliseconds.
    let e = client.login("alice", PASSWORD).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited));
    let wait = e.retry_after().expect("a retry time");
    assert!(wait > Duration::from_secs(500) && wait <= Duration::from_secs(600), "{wait:?}");
}

#[test]
fn a_successful_login_clears_the_pair_count() {
    let server = throttled_server();
    server.register(&["alice"]);
    let mut client = from(server.addr, 4);
    for _ in 0..2 {
        client.login("alice", "wrong guess").unwrap_err();
    }
    client.login("alice", PASSWORD).unwrap();
    client.request(Request::Logout).unwrap();
    // Two failures forgotten; three more are free again.
    for _ in 0..3 {
        assert_eq!(refused(client.login("alice", "wrong guess")), ErrorCode::WrongPassword);
    }
}
