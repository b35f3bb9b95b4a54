//! A node stopped by its operator (SIGTERM), as for an upgrade: it says goodbye to its
//! clients and exits cleanly like a single server, its users are `Unavailable` to the
//! other nodes meanwhile, and it serves them again once it is started back.

use super::{homed_on, receive, retry_while_unavailable, summary, unavailable, TestCluster};
use confab::protocol::{ClientMsgId, Push, Seq};

#[test]
fn a_stopped_node_says_goodbye_exits_cleanly_and_serves_again_after_its_restart() {
    let mut cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    let mut alice_client = cluster.user(&alice);
    let mut bob_client = cluster.user(&bob);
    let (_, seq, _) = alice_client.send_text(&bob, ClientMsgId(1), "before").unwrap();
    assert_eq!(seq, Seq(1));

    // Node 2 stops (the harness fails the test unless it exits 0, and in bounded time);
    // bob's session there is told first.
    cluster.nodes.stop(2);
    loop {
        match bob_client.next_push() {
            Ok(Push::ShuttingDown) => break,
            Ok(_) => continue,
            Err(e) => panic!("bob was not told that his node stops: {e}"),
        }
    }

    // Meanwhile alice's messages to bob are refused, never receipted.
    unavailable(alice_client.send_text(&bob, ClientMsgId(2), "during"));

    // Back on its data directory: the earlier message is kept, the refused one goes
    // through when retried.
    cluster.nodes.restart(2);
    let (_, seq, _) =
        retry_while_unavailable("alice's retry", || alice_client.send_text(&bob, ClientMsgId(2), "during")).unwrap();
    assert_eq!(seq, Seq(2));
    let mut bob_client = cluster.login(&bob);
    assert_eq!(
        summary(&receive(&mut bob_client, 2)),
        vec![
            (Seq(1), Seq(0), alice.clone(), "before".to_string()),
            (Seq(2), Seq(1), alice.clone(), "during".to_string()),
        ]
    );
}
