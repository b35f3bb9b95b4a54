//! Order and idempotency across nodes: what one sender pipelines to a user on another
//! node is stored in the order sent, once each, and a retry with the same client message
//! id gets the first receipt back instead of a second copy.

use super::{homed_on, receive, summary, TestCluster};
use crate::common::PASSWORD;
use confab::protocol::{ClientMsgId, Content, Reply, Request, Seq, Target};

const PIPELINED: u64 = 200;

fn send(to: &str, cmid: u64, text: &str) -> Request {
    Request::Send {
        to: Target::User(to.into()),
        client_msg_id: ClientMsgId(cmid),
        transient: false,
        content: Content::text(text),
    }
}

#[test]
fn two_hundred_messages_pipelined_to_another_node_arrive_in_order_exactly_once() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut bob_client = cluster.user(&bob);

    // All 200 are written before the first receipt is read.
    let requests: Vec<u32> =
        (1..=PIPELINED).map(|i| alice_client.send(send(&bob, i, &format!("message {i}"))).unwrap()).collect();
    for (i, request) in (1..=PIPELINED).zip(requests) {
        match alice_client.reply_to(request).unwrap() {
            Reply::Sent { seq, duplicate: false, .. } => assert_eq!(seq, Seq(i), "receipt of message {i}"),
            other => panic!("message {i}: {other:?}"),
        }
    }

    let expected: Vec<_> =
        (1..=PIPELINED).map(|i| (Seq(i), Seq(i - 1), alice.clone(), format!("message {i}"))).collect();
    assert_eq!(summary(&receive(&mut bob_client, PIPELINED as usize)), expected);
    assert_eq!(bob_client.ack(Seq(PIPELINED)).unwrap(), Seq(PIPELINED));

    // Exactly once: the next message takes the next sequence, and is the next one bob gets.
    let (_, seq, _) = alice_client.send_text(&bob, ClientMsgId(PIPELINED + 1), "the end").unwrap();
    assert_eq!(seq, Seq(PIPELINED + 1));
    let last = bob_client.next_message().unwrap();
    assert_eq!((last.seq, last.prev_seq), (Seq(PIPELINED + 1), Seq(PIPELINED)));
}

#[test]
fn a_retried_send_to_another_node_gets_the_same_receipt_and_no_second_copy() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(3, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut bob_client = cluster.user(&bob);

    let (message_id, seq, duplicate) = alice_client.send_text(&bob, ClientMsgId(42), "only once").unwrap();
    assert_eq!((seq, duplicate), (Seq(1), false));

    // The same client message id again, on the same connection and on a new one (a
    // client that lost the receipt and reconnected): the first receipt, marked duplicate.
    let again = alice_client.send_text(&bob, ClientMsgId(42), "only once").unwrap();
    assert_eq!(again, (message_id, Seq(1), true));
    let mut reconnected = cluster.client(1);
    reconnected.login(&alice, PASSWORD).unwrap();
    let again = reconnected.send_text(&bob, ClientMsgId(42), "only once").unwrap();
    assert_eq!(again, (message_id, Seq(1), true));

    // bob has one copy: the next message is sequence 2, and it is the next he is pushed.
    let (_, seq, _) = reconnected.send_text(&bob, ClientMsgId(43), "and then this").unwrap();
    assert_eq!(seq, Seq(2));
    let messages = receive(&mut bob_client, 2);
    assert_eq!(
        summary(&messages),
        vec![
            (Seq(1), Seq(0), alice.clone(), "only once".to_string()),
            (Seq(2), Seq(1), alice.clone(), "and then this".to_string()),
        ]
    );
    assert_eq!(messages[0].message_id, message_id);
}
