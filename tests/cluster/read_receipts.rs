//! Read receipts across nodes (protocol.md "Read state"): a reader marks its chat with a
//! sender homed on another node read; the reader's home hands the receipt to the sender's
//! home, which keeps the latest per reader and pushes it to the sender's named devices,
//! online now or at their next login there.

use super::{homed_on, TestCluster};
use confab::client::Client;
use confab::protocol::{Chat, ClientMsgId, Push, Reply, Request, Seq};

/// The next read receipt pushed to `client`: (reader, up_to).
fn next_receipt(client: &mut Client) -> (String, Seq) {
    loop {
        if let Push::ReadReceipt { reader, up_to } = client.next_push().expect("a push") {
            return (reader, up_to);
        }
    }
}

/// `client` marks its chat with `peer` read up to `up_to`.
fn mark(client: &mut Client, peer: &str, up_to: Seq) {
    let request = Request::MarkRead { chat: Chat::User(peer.into()), up_to };
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

#[test]
fn a_sender_online_learns_what_a_reader_on_another_node_read() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    cluster.register(&[&alice]);
    let (mut phone, _) = cluster.device(&alice, "phone");
    let (mut laptop, _) = cluster.device(&alice, "laptop");
    let mut bob_client = cluster.user(&bob);

    let (_, first, _) = phone.send_text(&bob, ClientMsgId(1), "lunch?").unwrap();
    let (_, second, _) = phone.send_text(&bob, ClientMsgId(2), "at noon?").unwrap();
    assert_eq!((first, second), (Seq(1), Seq(2)));

    // bob (node 2) reads the first: both of alice's devices (node 1) are told, with the
    // sequence her receipt carried.
    mark(&mut bob_client, &alice, first);
    assert_eq!(next_receipt(&mut phone), (bob.clone(), first));
    assert_eq!(next_receipt(&mut laptop), (bob.clone(), first));

    // Marking the same again tells nobody; reading on does, in order.
    mark(&mut bob_client, &alice, first);
    mark(&mut bob_client, &alice, second);
    assert_eq!(next_receipt(&mut phone), (bob.clone(), second));
    assert_eq!(next_receipt(&mut laptop), (bob.clone(), second));
}

#[test]
fn a_sender_who_was_away_learns_at_its_next_login_at_home_what_a_reader_on_another_node_read() {
    let cluster = TestCluster::start();
    let (alice, bob, carol) = (homed_on(1, "alice"), homed_on(2, "bob"), homed_on(3, "carol"));
    cluster.register(&[&alice, &carol]);
    let mut bob_client = cluster.user(&bob);
    let (mut phone, _) = cluster.device(&alice, "phone");
    let (_, to_bob, _) = phone.send_text(&bob, ClientMsgId(1), "call me").unwrap();
    let (_, to_carol, _) = phone.send_text(&carol, ClientMsgId(2), "call me too").unwrap();
    drop(phone);

    // Two readers on two other nodes read while alice is away.
    mark(&mut bob_client, &alice, to_bob);
    let mut carol_client = cluster.login(&carol);
    mark(&mut carol_client, &alice, to_carol);

    // Her home kept the latest of each: every login there (the phone in the morning, the
    // laptop later) is told both.
    for device in ["phone", "laptop"] {
        let (mut client, _) = cluster.device(&alice, device);
        let mut receipts = vec![next_receipt(&mut client), next_receipt(&mut client)];
        receipts.sort();
        let mut expected = vec![(bob.clone(), to_bob), (carol.clone(), to_carol)];
        expected.sort();
        assert_eq!(receipts, expected, "at the {device}'s login");
    }
}
