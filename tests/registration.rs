//! Registration limits: protocol.md "Heartbeats, limits and shutdown", Registrations. A
//! registration flood is refused with retry times and does not keep users from logging in.

use crate::common::{TestServer, PASSWORD};
use confab::client::Client;
use confab::config::HashCost;
use confab::frame;
use confab::protocol::{ClientFrame, ErrorCode, Reply, Request, ServerFrame, UserId};
use std::net::IpAddr;
use std::time::Duration;

fn host(n: u8) -> IpAddr {
    [127, 0, 0, n].into()
}

fn register_from(server: &TestServer, n: u8, name: &str) -> Result<UserId, confab::client::ClientError> {
    let (mut client, _) = Client::connect_from(server.addr, host(n), "tests").expect("connect");
    client.register(name, PASSWORD)
}

#[test]
fn a_registration_flood_is_refused_with_retry_times_while_logins_go_through() {
    let server = TestServer::with(|c| {
        // A hash costly enough (a few ms) that pipelined registrations pile up.
        c.hash_cost = HashCost { memory_kib: 4096, iterations: 1 };
        c.register_queue = 4;
    });
    server.register(&["alice"]);
    const CONNECTIONS: usize = 10;
    const PER_CONNECTION: usize = 40;
    let mut flooders: Vec<Client> = (0..CONNECTIONS).map(|_| server.client()).collect();
    for (c, flooder) in flooders.iter_mut().enumerate() {
        let mut batch = Vec::new();
        for i in 0..PER_CONNECTION {
            let request = Request::Register { username: format!("flood{c}x{i}"), password: PASSWORD.into() };
            frame::encode_into(&ClientFrame { request_id: 1 + i as u32, request }, &mut batch);
        }
        flooder.write_raw(&batch).unwrap();
    }
    // Alice logs in during the flood: her password check goes before the queued hashes.
    let mut alice = server.client();
    assert!(matches!(alice.login("alice", PASSWORD).unwrap(), Reply::LoggedIn { .. }));

    let (mut registered, mut limited) = (0, 0);
    for flooder in &mut flooders {
        for _ in 0..PER_CONNECTION {
            match flooder.read_frame().unwrap() {
                ServerFrame::Reply { reply: Reply::Registered { .. }, .. } => registered += 1,
                ServerFrame::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
                    assert!(retry_after_ms > 0);
                    limited += 1;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(registered + limited, CONNECTIONS * PER_CONNECTION);
    assert!(limited > 0, "a bounded queue refused some of {} registrations", CONNECTIONS * PER_CONNECTION);
    assert!(registered > 0);
}

#[test]
fn registrations_per_address_are_limited() {
    let server = TestServer::with(|c| c.register_per_address = 3);
    for i in 0..3 {
        register_from(&server, 2, &format!("user{i}")).unwrap();
    }
    let e = register_from(&server, 2, "user3").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited));
    // Three an hour: the next in 20 minutes.
    let wait = e.retry_after().expect("a retry time");
    assert!(wait > Duration::from_secs(19 * 60) && wait <= Duration::from_secs(20 * 60), "{wait:?}");
    // Another address is not held back.
    register_from(&server, 3, "user3").unwrap();
}

#[test]
fn registrations_from_everyone_are_limited() {
    let server = TestServer::with(|c| c.register_total = 4);
    for i in 0..4u8 {
        register_from(&server, 10 + i, &format!("user{i}")).unwrap();
    }
    let e = register_from(&server, 20, "user4").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited));
    // Four a minute: the next within 15 s.
    assert!(e.retry_after().is_some_and(|wait| wait <= Duration::from_secs(15)), "{e:?}");
    // Logins are not registrations.
    let mut client = Client::connect_from(server.addr, host(21), "tests").unwrap().0;
    client.login("user0", PASSWORD).unwrap();
}
