//! A node killed with SIGKILL: what its users' requests get meanwhile (`Unavailable`, with
//! a retry time, never a receipt: nothing was stored anywhere), what everyone else keeps
//! (the other nodes serve each other), and what it delivers when it is back (everything
//! it had receipted, once each, in order).

use super::{homed_on, login_request, receive, retry_while_unavailable, summary, unavailable, TestCluster, RECOVERY};
use crate::common::{eventually, inbox_of, PASSWORD};
use confab::client::ClientResult;
use confab::protocol::{ClientMsgId, Reply, Seq};
use std::time::Duration;

#[test]
fn a_killed_node_leaves_its_users_unavailable_and_delivers_everything_when_it_returns() {
    let mut cluster = TestCluster::start();
    let (alice, carol, bob) = (homed_on(1, "alice"), homed_on(2, "carol"), homed_on(3, "bob"));
    cluster.register(&[&bob]);
    let mut alice_client = cluster.user(&alice);
    let mut carol_client = cluster.user(&carol);

    // bob (node 3) is offline; his home stores what alice sends him.
    for i in 1..=5 {
        let (_, seq, _) = alice_client.send_text(&bob, ClientMsgId(i), &format!("stored {i}")).unwrap();
        assert_eq!(seq, Seq(i));
    }

    cluster.nodes.kill(3);

    // Sends to bob, from node 1 and from node 2, are refused with a retry time, again and
    // again: no receipt while his home is down.
    for attempt in 0..3 {
        let wait = unavailable(alice_client.send_text(&bob, ClientMsgId(6), "while node 3 is down"));
        unavailable(carol_client.send_text(&bob, ClientMsgId(1), "from carol"));
        if attempt < 2 {
            std::thread::sleep(wait.min(Duration::from_millis(500)));
        }
    }

    // A login for bob elsewhere is not sent to a home known to be down: once node 1 knows,
    // it answers Unavailable (until then, the Redirect it would give anyway).
    let mut away = cluster.client(1);
    eventually("node 1 to answer a login for bob with Unavailable", RECOVERY, || {
        let reply: ClientResult<Reply> = away.request(login_request(&bob));
        match reply {
            Ok(Reply::Redirect { node: 3, .. }) => false,
            refused => {
                unavailable(refused);
                true
            }
        }
    });

    // alice (node 1) and carol (node 2) go on as before.
    let (_, seq, _) = alice_client.send_text(&carol, ClientMsgId(100), "node 3 is down").unwrap();
    assert_eq!(seq, Seq(1));
    let (_, seq, _) = carol_client.send_text(&alice, ClientMsgId(100), "we are fine").unwrap();
    assert_eq!(seq, Seq(1));
    assert_eq!(summary(&receive(&mut carol_client, 1)), vec![(Seq(1), Seq(0), alice.clone(), "node 3 is down".into())]);
    assert_eq!(summary(&receive(&mut alice_client, 1)), vec![(Seq(1), Seq(0), carol.clone(), "we are fine".into())]);

    // Node 3 returns on its port and data directory. bob logs in there: the five it had
    // receipted are waiting, in order; nothing of the refused sends was stored.
    cluster.nodes.restart(3);
    let mut bob_client = cluster.client(3);
    let reply = bob_client.login(&bob, PASSWORD).unwrap();
    assert_eq!(inbox_of(&reply), (Seq(0), Seq(5)));
    let expected: Vec<_> = (1..=5).map(|i| (Seq(i), Seq(i - 1), alice.clone(), format!("stored {i}"))).collect();
    assert_eq!(summary(&receive(&mut bob_client, 5)), expected);
    assert_eq!(bob_client.ack(Seq(5)).unwrap(), Seq(5));

    // The refused sends, retried, go through once the other nodes see node 3 again.
    let (_, seq, _) = retry_while_unavailable("alice's retry to bob", || {
        alice_client.send_text(&bob, ClientMsgId(6), "while node 3 is down")
    })
    .unwrap();
    assert_eq!(seq, Seq(6));
    let (_, seq, _) =
        retry_while_unavailable("carol's retry to bob", || carol_client.send_text(&bob, ClientMsgId(1), "from carol"))
            .unwrap();
    assert_eq!(seq, Seq(7));
    assert_eq!(
        summary(&receive(&mut bob_client, 2)),
        vec![
            (Seq(6), Seq(5), alice.clone(), "while node 3 is down".to_string()),
            (Seq(7), Seq(6), carol.clone(), "from carol".to_string()),
        ]
    );

    // No loss and no duplicate: the next message is sequence 8, and the next bob gets.
    let (_, seq, _) = alice_client.send_text(&bob, ClientMsgId(7), "the end").unwrap();
    assert_eq!(seq, Seq(8));
    let last = bob_client.next_message().unwrap();
    assert_eq!((last.seq, last.prev_seq), (Seq(8), Seq(7)));

    // And bob's login elsewhere is redirected home again.
    let reply = retry_while_unavailable("bob's login on node 1", || away.request(login_request(&bob)));
    assert!(matches!(reply, Ok(Reply::Redirect { node: 3, .. })), "{reply:?}");
}
