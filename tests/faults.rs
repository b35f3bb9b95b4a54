//! Storage faults and half-dead connections: protocol.md "Delivery" promises hold when the
//! disk fails and when a recipient vanishes without closing its connection.

use crate::common::{eventually, TestServer, PASSWORD};
use confab::client::ClientError;
use confab::protocol::{ClientMsgId, Content, ErrorCode, Reply, Request, Seq, ServerFrame, Target};
use std::time::Duration;

#[test]
fn a_failing_disk_gets_errors_not_receipts_and_the_server_recovers() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    alice.send_text("bob", ClientMsgId(1), "before").unwrap();
    server.server().store().inject_flush_failures(true);
    let failed = alice.send_text("bob", ClientMsgId(2), "during");
    assert_eq!(failed.unwrap_err().code(), Some(ErrorCode::Internal));
    // Requests that need no disk are still served.
    assert_eq!(alice.request(Request::Ping).unwrap(), Reply::Pong);
    server.server().store().inject_flush_failures(false);
    // A failing log is tried again once a second; until then a retry is refused too.
    let seq =
        eventually("a retried send to be taken once the disk works again", Duration::from_secs(10), || {
            match alice.send_text("bob", ClientMsgId(2), "during") {
                Ok((_, seq, _)) => Some(seq),
                Err(e) => {
                    assert!(matches!(e.code(), Some(ErrorCode::Internal | ErrorCode::StorageFull)), "{e}");
                    None
                }
            }
        });
    // The retry gets a receipt now; the message exists once.
    assert_eq!(seq, Seq(2));
    alice.send_text("bob", ClientMsgId(3), "after").unwrap();
    let mut bob = server.client();
    bob.login("bob", PASSWORD).unwrap();
    let got: Vec<_> = (0..3).map(|_| bob.next_message().unwrap()).collect();
    let texts: Vec<_> = got.iter().map(|m| String::from_utf8(m.content.body.clone()).unwrap()).collect();
    assert_eq!(texts, ["before", "during", "after"]);
}

#[test]
fn what_was_pushed_into_a_half_dead_connection_is_delivered_again() {
    let server = TestServer::with(|c| c.idle_timeout = Duration::from_millis(500));
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut ghost = server.login("bob");
    for i in 1..=20 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    // Bob's device went away without a FIN: it never reads, never acks, never pings.
    // The idle timeout closes it from the server's side.
    ghost.set_timeout(Duration::from_secs(10)).unwrap();
    let mut closed_for = None;
    loop {
        match ghost.read_frame() {
            Ok(ServerFrame::Error { code, .. }) => closed_for = Some(code),
            Ok(_) => {}
            Err(ClientError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(closed_for, Some(ErrorCode::IdleTimeout));
    let mut bob = server.client();
    bob.login("bob", PASSWORD).unwrap();
    let seqs: Vec<u64> = (0..20).map(|_| bob.next_message().unwrap().seq.get()).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[test]
fn a_new_login_takes_over_from_a_half_dead_one_and_gets_everything() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let _ghost = server.login("bob");
    for i in 1..=10 {
        let request = Request::Send {
            to: Target::User("bob".into()),
            client_msg_id: ClientMsgId(i),
            transient: false,
            content: Content::text(format!("m{i}")),
        };
        alice.request(request).unwrap();
    }
    let mut bob = server.login("bob");
    let seqs: Vec<u64> = (0..10).map(|_| bob.next_message().unwrap().seq.get()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}
