//! Direct messages and store-and-forward: protocol.md "Delivery".

use crate::common::{eventually, inbox_of, TestServer, PASSWORD, SETTLE};
use confab::client::Client;
use confab::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, Media, MediaKind, Push, Reply, Request, Seq, ServerFrame, Target,
};

fn text_of(content: &Content) -> String {
    String::from_utf8(content.body.clone()).expect("utf-8 body")
}

/// Receives `count` messages and returns their (seq, text).
fn receive(client: &mut Client, count: usize) -> Vec<(Seq, String)> {
    (0..count)
        .map(|_| {
            let m = client.next_message().expect("a pushed message");
            (m.seq, text_of(&m.content))
        })
        .collect()
}

/// A request handled by the user's own worker after everything queued before it: once its
/// reply is in, every push that worker had produced is in too.
fn barrier(client: &mut Client) {
    client.request(Request::ListOnline { after: "".into(), limit: 1 }).expect("barrier");
}

#[test]
fn message_to_an_online_user() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let media = Content {
        kind: MediaKind::Image,
        body: b"caption".to_vec(),
        media: Some(Media { url: "https://example.org/cat.png".into(), description: "a cat".into(), size: 2048 }),
    };
    let (message_id, seq, duplicate) = alice.send_message("bob", ClientMsgId(7), media.clone()).unwrap();
    assert_eq!((seq, duplicate), (Seq(1), false));
    let m = bob.next_message().unwrap();
    assert_eq!(m.message_id, message_id);
    assert_eq!(m.seq, Seq(1));
    assert_eq!(m.from, "alice");
    assert_eq!(m.conversation, Conversation::Inbox);
    assert_eq!(m.content, media);
    assert!(m.timestamp_ms > 1_600_000_000_000);
    assert_eq!(bob.ack(Seq(1)).unwrap(), Seq(1));
    // The sender never gets its own message back.
    alice.set_timeout(std::time::Duration::from_millis(200)).unwrap();
    assert!(matches!(alice.next_push(), Err(confab::client::ClientError::Timeout)));
}

#[test]
fn a_note_to_self_arrives_after_its_receipt() {
    // The receipt of a send leaves before any push of the message it stored, so a client
    // writing to itself sees "sent" and then the message, as protocol.md's examples do.
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let id = alice
        .send(Request::Send {
            to: Target::User("alice".into()),
            client_msg_id: ClientMsgId(1),
            transient: false,
            content: Content { kind: MediaKind::Text, body: b"note to self".to_vec(), media: None },
        })
        .unwrap();
    let first = alice.read_frame().unwrap();
    assert!(
        matches!(&first, ServerFrame::Reply { request_id, reply: Reply::Sent { seq: Seq(1), .. } } if *request_id == id),
        "{first:?}"
    );
    let second = alice.read_frame().unwrap();
    assert!(
        matches!(&second, ServerFrame::Push(Push::Message(m)) if m.seq == Seq(1) && m.from == "alice"),
        "{second:?}"
    );
}

#[test]
fn offline_messages_arrive_at_login_in_order() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    for i in 1..=50u64 {
        let (_, seq, _) = alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
        assert_eq!(seq, Seq(i));
    }
    let mut bob = server.client();
    let reply = bob.login("bob", PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq::ZERO, Seq(50)));
    let got = receive(&mut bob, 50);
    let expected: Vec<_> = (1..=50).map(|i| (Seq(i), format!("m{i}"))).collect();
    assert_eq!(got, expected);
}

#[test]
fn unacknowledged_messages_are_redelivered_and_acked_ones_are_not() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    for i in 1..=5u64 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    {
        let mut bob = server.login("bob");
        assert_eq!(receive(&mut bob, 5).len(), 5);
        // Dropped without an ack.
    }
    let mut bob = server.client();
    let reply = bob.login("bob", PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq::ZERO, Seq(5)));
    assert_eq!(receive(&mut bob, 5).iter().map(|(s, _)| s.get()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(bob.ack(Seq(3)).unwrap(), Seq(3));
    drop(bob);

    let mut bob = server.client();
    let reply = bob.login("bob", PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq(3), Seq(5)));
    // Delivery restarts after the ack, and the first push says so.
    let m4 = bob.next_message().unwrap();
    assert_eq!((m4.seq, m4.prev_seq), (Seq(4), Seq(3)));
    let m5 = bob.next_message().unwrap();
    assert_eq!((m5.seq, m5.prev_seq, text_of(&m5.content).as_str()), (Seq(5), Seq(4), "m5"));

    bob.ack(Seq(5)).unwrap();
    // Nothing else is owed: the next push is the next new message.
    alice.send_text("bob", ClientMsgId(6), "m6").unwrap();
    assert_eq!(receive(&mut bob, 1), vec![(Seq(6), "m6".to_string())]);
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 1);
}

#[test]
fn a_resend_with_the_same_client_id_is_stored_once() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let first = alice.send_text("bob", ClientMsgId(42), "only once").unwrap();
    let again = alice.send_text("bob", ClientMsgId(42), "only once").unwrap();
    assert_eq!((again.0, again.1, again.2), (first.0, first.1, true));
    alice.send_text("bob", ClientMsgId(43), "next").unwrap();
    assert_eq!(receive(&mut bob, 2), vec![(Seq(1), "only once".to_string()), (Seq(2), "next".to_string())]);
    // Another sender may use the same client id freely.
    let mut carol = server.user("carol");
    assert!(!carol.send_text("bob", ClientMsgId(42), "carol's").unwrap().2);
}

#[test]
fn messages_survive_a_restart_and_acks_stick() {
    let mut server = TestServer::start();
    server.register(&["bob"]);
    {
        let mut alice = server.user("alice");
        for i in 1..=4u64 {
            alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
        }
        let mut bob = server.login("bob");
        receive(&mut bob, 4);
        bob.ack(Seq(2)).unwrap();
    }
    server.restart();
    let mut bob = server.client();
    let reply = bob.login("bob", PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq(2), Seq(4)));
    assert_eq!(receive(&mut bob, 2), vec![(Seq(3), "m3".to_string()), (Seq(4), "m4".to_string())]);
    // Numbering continues after the restart; the dedup record survived too.
    let mut alice = server.login("alice");
    assert!(alice.send_text("bob", ClientMsgId(4), "m4").unwrap().2);
    assert_eq!(alice.send_text("bob", ClientMsgId(5), "m5").unwrap().1, Seq(5));
}

#[test]
fn transient_messages_reach_only_online_users_and_are_never_stored() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let typing = |to: &str| Request::Send {
        to: Target::User(to.into()),
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text("typing…"),
    };
    assert_eq!(alice.request(typing("bob")).unwrap(), Reply::TransientSent { delivered: false });
    let mut bob = server.login("bob");
    assert_eq!(alice.request(typing("bob")).unwrap(), Reply::TransientSent { delivered: true });
    match bob.next_push().unwrap() {
        Push::Transient { from, content } => {
            assert_eq!((from.as_str(), text_of(&content).as_str()), ("alice", "typing…"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 0);
    let result = alice.request(typing("nobody"));
    assert_eq!(result.unwrap_err().code(), Some(ErrorCode::UnknownUser));
}

#[test]
fn sending_errors() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let err = |c: &mut Client, to: &str, id: ClientMsgId, content: Content| {
        c.send_message(to, id, content).unwrap_err().code().expect("a server error")
    };
    assert_eq!(err(&mut alice, "nobody", ClientMsgId(1), Content::text("hi")), ErrorCode::UnknownUser);
    assert_eq!(err(&mut alice, "bob", ClientMsgId::NONE, Content::text("hi")), ErrorCode::BadRequest);
    assert_eq!(err(&mut alice, "bob", ClientMsgId(2), Content::text("")), ErrorCode::InvalidContent);
    let big = Content { kind: MediaKind::File, body: vec![7; 32 * 1024 + 1], media: None };
    assert_eq!(err(&mut alice, "bob", ClientMsgId(3), big), ErrorCode::InvalidContent);
    let at_limit = Content { kind: MediaKind::File, body: vec![7; 32 * 1024], media: None };
    assert_eq!(alice.send_message("bob", ClientMsgId(4), at_limit).unwrap().1, Seq(1));
    // A client cannot acknowledge what does not exist.
    let ack = alice.request(Request::Ack { conversation: Conversation::Inbox, up_to: Seq(1) });
    assert_eq!(ack.unwrap_err().code(), Some(ErrorCode::BadRequest));
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 1);
}

#[test]
fn the_delivery_window_paces_a_backlog() {
    let server = TestServer::with(|c| c.delivery_window = 10);
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    for i in 1..=25u64 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    let mut bob = server.login("bob");
    let first = receive(&mut bob, 10);
    assert_eq!(first.last().unwrap().0, Seq(10));
    barrier(&mut bob);
    // Ten outstanding: nothing more until an ack.
    bob.set_timeout(std::time::Duration::from_millis(200)).unwrap();
    assert!(bob.next_push().is_err());
    bob.set_timeout(std::time::Duration::from_secs(10)).unwrap();
    bob.ack(Seq(4)).unwrap();
    assert_eq!(receive(&mut bob, 4).iter().map(|(s, _)| s.get()).collect::<Vec<_>>(), [11, 12, 13, 14]);
    bob.ack(Seq(14)).unwrap();
    assert_eq!(receive(&mut bob, 10).last().unwrap().0, Seq(24));
    bob.ack(Seq(24)).unwrap();
    assert_eq!(receive(&mut bob, 1), vec![(Seq(25), "m25".to_string())]);
}

#[test]
fn resync_delivers_again_from_a_point() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    for i in 1..=5u64 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    receive(&mut bob, 5);
    bob.ack(Seq(1)).unwrap();
    let reply = bob.request(Request::Resync { conversation: Conversation::Inbox, after: Seq(3) }).unwrap();
    assert_eq!(reply, Reply::Resynced { conversation: Conversation::Inbox, after: Seq(3), last_seq: Seq(5) });
    assert_eq!(receive(&mut bob, 2).iter().map(|(s, _)| s.get()).collect::<Vec<_>>(), [4, 5]);
    // Before the ack is as far back as it goes: acknowledged messages are gone.
    let reply = bob.request(Request::Resync { conversation: Conversation::Inbox, after: Seq::ZERO }).unwrap();
    assert_eq!(reply, Reply::Resynced { conversation: Conversation::Inbox, after: Seq(1), last_seq: Seq(5) });
    assert_eq!(receive(&mut bob, 4).iter().map(|(s, _)| s.get()).collect::<Vec<_>>(), [2, 3, 4, 5]);
    let beyond = bob.request(Request::Resync { conversation: Conversation::Inbox, after: Seq(9) });
    assert_eq!(beyond.unwrap_err().code(), Some(ErrorCode::BadRequest));
}

#[test]
fn catch_up_and_live_traffic_form_one_gap_free_stream() {
    let server = TestServer::with(|c| c.delivery_window = 64);
    server.register(&["bob"]);
    let addr = server.addr;
    let total = 1500u64;
    let mut alice = server.user("alice");
    for i in 1..=500 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    // Alice keeps sending while bob logs in and drains his backlog.
    let sender = std::thread::spawn(move || {
        for i in 501..=total {
            alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
        }
    });
    let (mut bob, _) = Client::connect(addr, "bob").unwrap();
    bob.login("bob", PASSWORD).unwrap();
    let mut expected = 1;
    while expected <= total {
        let m = bob.next_message().unwrap();
        assert_eq!(m.seq, Seq(expected), "gap or reordering");
        assert_eq!(text_of(&m.content), format!("m{expected}"));
        if expected % 32 == 0 || expected == total {
            bob.ack(Seq(expected)).unwrap();
        }
        expected += 1;
    }
    sender.join().unwrap();
}

#[test]
fn journaled_messages_migrate_into_the_log_and_acked_ones_are_gone() {
    // Without history: an acknowledged message is deleted at once.
    let server = TestServer::with(|c| c.history = std::time::Duration::ZERO);
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    // Carol reads and acknowledges at once; bob is offline.
    for i in 1..=5u64 {
        alice.send_text("carol", ClientMsgId(i), &format!("c{i}")).unwrap();
        alice.send_text("bob", ClientMsgId(i), &format!("b{i}")).unwrap();
    }
    receive(&mut carol, 5);
    carol.ack(Seq(5)).unwrap();
    // Nothing a client can see proves the migration, so the store is asked.
    eventually("the workers to migrate every journal value", SETTLE, || server.server().store().staged_len() == 0);
    // Bob's five are in his log now (read back from it); carol's acknowledged ones are
    // not stored anywhere.
    let store = server.server().store();
    assert_eq!(store.stats().unwrap().stored_messages, 5);
    let bob_uid = store.account("default/bob").unwrap().unwrap().user_id;
    assert_eq!(store.inbox.read(bob_uid.into(), Seq::ZERO, 10).unwrap().len(), 5);
    let mut bob = server.login("bob");
    let texts: Vec<_> = receive(&mut bob, 5).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["b1", "b2", "b3", "b4", "b5"]);
}
