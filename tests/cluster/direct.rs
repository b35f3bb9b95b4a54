//! Direct messages between users homed on different nodes: the sender's node forwards the
//! send to the recipient's home, which stores, pushes and answers; the receipt the sender
//! gets is the home's. Acks are local: the inbox is at home.

use super::{homed_on, receive, summary, TestCluster};
use crate::common::{inbox_of, PASSWORD};
use confab::client::ClientError;
use confab::protocol::{ClientMsgId, Conversation, Seq};
use std::time::Duration;

#[test]
fn a_message_to_a_user_on_another_node_while_both_are_online() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut bob_client = cluster.user(&bob);

    // alice (node 1) writes to bob (node 2): each receipt is bob's inbox sequence.
    let mut receipts = Vec::new();
    for (i, text) in ["hello bob", "from node 1", "to node 2"].into_iter().enumerate() {
        let (message_id, seq, duplicate) = alice_client.send_text(&bob, ClientMsgId(i as u64 + 1), text).unwrap();
        assert_eq!((seq, duplicate), (Seq(i as u64 + 1), false));
        receipts.push(message_id);
    }

    // bob gets them pushed in order, gap-free, as sent.
    let messages = receive(&mut bob_client, 3);
    assert_eq!(
        summary(&messages),
        vec![
            (Seq(1), Seq(0), alice.clone(), "hello bob".to_string()),
            (Seq(2), Seq(1), alice.clone(), "from node 1".to_string()),
            (Seq(3), Seq(2), alice.clone(), "to node 2".to_string()),
        ]
    );
    assert_eq!(messages.iter().map(|m| m.message_id).collect::<Vec<_>>(), receipts);
    assert!(messages.iter().all(|m| m.conversation == Conversation::Inbox));
    assert_eq!(bob_client.ack(Seq(3)).unwrap(), Seq(3));

    // And back: bob (node 2) answers alice (node 1).
    let (message_id, seq, _) = bob_client.send_text(&alice, ClientMsgId(1), "hi alice").unwrap();
    assert_eq!(seq, Seq(1));
    let answer = alice_client.next_message().unwrap();
    assert_eq!((answer.message_id, answer.seq, answer.from.as_str()), (message_id, Seq(1), bob.as_str()));
    assert_eq!(alice_client.ack(Seq(1)).unwrap(), Seq(1));

    // The senders are not pushed their own messages.
    alice_client.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(matches!(alice_client.next_message(), Err(ClientError::Timeout)));

    // The acks were kept at home: a new login there owes bob nothing.
    drop(bob_client);
    let reply = cluster.client(2).login(&bob, PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq(3), Seq(3)));
}

#[test]
fn a_message_to_an_offline_user_on_another_node_waits_for_its_login_at_home() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(3, "bob"));
    cluster.register(&[&bob]);
    let mut alice_client = cluster.user(&alice);

    // bob is offline: his home stores and receipts the messages all the same.
    for (i, text) in ["are you there?", "call me"].into_iter().enumerate() {
        let (_, seq, duplicate) = alice_client.send_text(&bob, ClientMsgId(i as u64 + 1), text).unwrap();
        assert_eq!((seq, duplicate), (Seq(i as u64 + 1), false));
    }

    // He logs in at home and gets both, in order.
    let mut bob_client = cluster.client(3);
    let reply = bob_client.login(&bob, PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq(0), Seq(2)));
    assert_eq!(
        summary(&receive(&mut bob_client, 2)),
        vec![
            (Seq(1), Seq(0), alice.clone(), "are you there?".to_string()),
            (Seq(2), Seq(1), alice.clone(), "call me".to_string()),
        ]
    );
    assert_eq!(bob_client.ack(Seq(2)).unwrap(), Seq(2));
}
