//! Limits and abuse: protocol.md "Limits". Slow consumers, connections per address,
//! request rate. (Failed logins: `login_throttle`; registrations: `registration`.)

use crate::common::{eventually, TestServer, PASSWORD, SETTLE};
use confab::client::{Client, ClientError};
use confab::frame;
use confab::protocol::{ClientFrame, ClientMsgId, Content, ErrorCode, Reply, Request, Seq, ServerFrame, Target};
use std::time::Duration;

fn error_code(frame: ServerFrame) -> ErrorCode {
    match frame {
        ServerFrame::Error { code, .. } => code,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[test]
fn a_client_that_stops_reading_is_cut_off_while_others_keep_receiving() {
    // A long closing grace: bob comes back to read before the server gives up on him.
    let server = TestServer::with(|c| {
        c.max_outbound = 64 * 1024;
        c.shutdown_grace = Duration::from_secs(60);
        c.request_rate = 1_000_000;
        c.request_burst = 1_000_000;
    });
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    let mut bob = server.login("bob");
    for i in 1..=20 {
        alice.send_text("bob", ClientMsgId(i), &format!("stored {i}")).unwrap();
    }
    // Bob reads nothing for now. Stored deliveries are paced by the byte window, so live
    // traffic is what overflows him: 16 MiB of typing notices, 2 KiB each, unpaced, far
    // more than the kernel's socket buffers and the server's 64 KiB bound hold.
    let typing = Request::Send {
        to: Target::User("bob".into()),
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content { kind: confab::protocol::MediaKind::Custom, body: vec![b'x'; 2048], media: None },
    };
    for round in 0..8192u64 {
        alice.request(typing.clone()).unwrap();
        if round % 512 == 0 {
            // Carol is served all along.
            alice.send_text("carol", ClientMsgId(1_000 + round), "still here").unwrap();
            carol.next_message().unwrap();
        }
    }
    // Bob's stream: whatever the kernel held, then the typed reason, then the close.
    let mut reason = None;
    loop {
        match bob.read_frame() {
            Ok(ServerFrame::Push(_)) => {}
            Ok(frame) => reason = Some(error_code(frame)),
            Err(ClientError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(reason, Some(ErrorCode::SlowConsumer));
    // Nothing stored was lost: it waits for bob's next session.
    let mut bob = server.client();
    match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => assert_eq!((acked, last_seq), (Seq::ZERO, Seq(20))),
        other => panic!("{other:?}"),
    }
    let seqs: Vec<u64> = (0..20).map(|_| bob.next_message().unwrap().seq.get()).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[test]
fn a_large_backlog_is_delivered_without_tripping_the_output_bound() {
    let server = TestServer::with(|c| c.max_outbound = 256 * 1024);
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let big = Content { kind: confab::protocol::MediaKind::File, body: vec![7; 16 * 1024], media: None };
    for i in 1..=100 {
        alice.send_message("bob", ClientMsgId(i), big.clone()).unwrap();
    }
    // 1.6 MiB owed, six times the output bound: paced by the byte window, it all arrives.
    let mut bob = server.client();
    bob.login("bob", PASSWORD).unwrap();
    for seq in (1..=100).map(Seq) {
        let m = bob.next_message().unwrap();
        assert_eq!(m.seq, seq);
        bob.ack(seq).unwrap();
    }
}

#[test]
fn connections_per_address_are_limited() {
    let server = TestServer::with(|c| c.max_connections_per_ip = 3);
    let _held: Vec<Client> = (0..3).map(|_| server.client()).collect();
    let mut refused = Client::connect_raw(server.addr).unwrap();
    assert_eq!(error_code(refused.read_frame().unwrap()), ErrorCode::ServerFull);
    assert!(matches!(refused.read_frame(), Err(ClientError::Closed)));
    drop(_held);
    // Freed slots are counted down again (the close is noticed asynchronously).
    let (mut admitted, _) = eventually("a connection admitted once the held ones closed", SETTLE, || {
        Client::connect(server.addr, "retry").ok()
    });
    assert_eq!(admitted.request(Request::Ping).unwrap(), Reply::Pong);
}

#[test]
fn requests_beyond_the_rate_are_refused_then_the_connection_is_closed() {
    let server = TestServer::with(|c| {
        c.request_rate = 1;
        c.request_burst = 10;
    });
    let mut client = server.client();
    // Hello took one token; nine pings pass, then refusals.
    let mut batch = Vec::new();
    for id in 2..=40u32 {
        frame::encode_into(&ClientFrame { request_id: id, request: Request::Ping }, &mut batch);
    }
    client.write_raw(&batch).unwrap();
    let mut pongs = 0;
    let mut limited = 0;
    loop {
        match client.read_frame() {
            Ok(ServerFrame::Reply { reply: Reply::Pong, .. }) => pongs += 1,
            Ok(ServerFrame::Error { code: ErrorCode::RateLimited, retry_after_ms, .. }) => {
                // One token a second: the wait is up to a second, never "now".
                assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}");
                limited += 1;
            }
            Ok(frame) => panic!("expected a Pong or RateLimited, got {frame:?}"),
            Err(ClientError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(pongs, 9);
    // Ten refusals are tolerated (a burst's worth); the eleventh closes the connection.
    assert_eq!(limited, 11);
}
