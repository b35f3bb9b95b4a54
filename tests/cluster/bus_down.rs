//! The bus killed: nats-server dies with SIGKILL. Every node keeps serving what it holds
//! itself (two users homed on one node go on talking); what needs another node gets
//! `Unavailable` with a retry time; once nats-server is back on its port, the nodes
//! reconnect by themselves and the retried sends go through, once each.

use super::{homed_on, receive, retry_while_unavailable, summary, unavailable, TestCluster};
use confab::protocol::{ClientMsgId, Seq};

#[test]
fn with_the_bus_down_a_node_serves_its_own_users_and_refuses_the_rest_until_the_bus_returns() {
    let mut cluster = TestCluster::start();
    let (alice, dave, bob) = (homed_on(1, "alice"), homed_on(1, "dave"), homed_on(2, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut dave_client = cluster.user(&dave);
    let mut bob_client = cluster.user(&bob);

    // Across nodes before the outage.
    let (_, seq, _) = alice_client.send_text(&bob, ClientMsgId(1), "before").unwrap();
    assert_eq!(seq, Seq(1));
    assert_eq!(summary(&receive(&mut bob_client, 1)), vec![(Seq(1), Seq(0), alice.clone(), "before".into())]);

    cluster.nats.kill();

    // alice and dave, both homed on node 1, need no bus.
    for i in 1..=3 {
        let (_, seq, _) = alice_client.send_text(&dave, ClientMsgId(100 + i), &format!("local {i}")).unwrap();
        assert_eq!(seq, Seq(i));
    }
    let (_, seq, _) = dave_client.send_text(&alice, ClientMsgId(1), "local reply").unwrap();
    assert_eq!(seq, Seq(1));
    let expected: Vec<_> = (1..=3).map(|i| (Seq(i), Seq(i - 1), alice.clone(), format!("local {i}"))).collect();
    assert_eq!(summary(&receive(&mut dave_client, 3)), expected);
    assert_eq!(summary(&receive(&mut alice_client, 1)), vec![(Seq(1), Seq(0), dave.clone(), "local reply".into())]);

    // Across nodes, in both directions: refused with a retry time, no receipt.
    unavailable(alice_client.send_text(&bob, ClientMsgId(2), "during"));
    unavailable(bob_client.send_text(&alice, ClientMsgId(1), "during, back"));

    // nats-server returns on its port; the nodes find it by themselves, and the same
    // sends, retried, go through.
    cluster.nats.restart();
    let (_, seq, _) = retry_while_unavailable("alice's send to bob after the bus returned", || {
        alice_client.send_text(&bob, ClientMsgId(2), "during")
    })
    .unwrap();
    assert_eq!(seq, Seq(2));
    let (_, seq, _) = retry_while_unavailable("bob's send to alice after the bus returned", || {
        bob_client.send_text(&alice, ClientMsgId(1), "during, back")
    })
    .unwrap();
    assert_eq!(seq, Seq(2));

    // Once each: the next sequences follow, and each side is pushed exactly these.
    let (_, seq, _) = alice_client.send_text(&bob, ClientMsgId(3), "after").unwrap();
    assert_eq!(seq, Seq(3));
    assert_eq!(
        summary(&receive(&mut bob_client, 2)),
        vec![(Seq(2), Seq(1), alice.clone(), "during".into()), (Seq(3), Seq(2), alice.clone(), "after".into())]
    );
    assert_eq!(summary(&receive(&mut alice_client, 1)), vec![(Seq(2), Seq(1), bob.clone(), "during, back".into())]);
}
