//! confabd's administration subcommands on a cluster node's data directory (the node
//! stopped): the directory records which node it is and the node list it last ran with,
//! so `user add` takes only users homed on that node, and refuses the others naming their
//! home and its address. A user added there is that node's like a registered one: its id
//! carries the node, and it logs in and writes across nodes once the node is back.

use super::{home, homed_on, receive, retry_while_unavailable, summary, TestCluster};
use crate::common::daemon::confabd;
use crate::common::PASSWORD;
use confab::protocol::{ClientMsgId, Seq};

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn user_add_on_a_nodes_directory_takes_only_users_homed_on_that_node() {
    let mut cluster = TestCluster::start();
    let (alice, bob, carol) = (homed_on(1, "alice"), homed_on(2, "bob"), homed_on(3, "carol"));
    let mut bob_client = cluster.user(&bob);
    cluster.nodes.stop(1);
    let data = cluster.nodes.data_dir(1).to_path_buf();

    // Users homed on nodes 2 and 3 are refused on node 1's directory: nothing is created,
    // and the error names their home and where it is.
    for (name, node) in [(&bob, 2), (&carol, 3)] {
        let refused = confabd(&data, &["user", "add", name], &format!("{PASSWORD}\n"));
        assert!(!refused.status.success(), "{name} was added on node 1");
        let said = String::from_utf8_lossy(&refused.stderr);
        let address = cluster.addr(node).to_string();
        assert!(
            said.contains(&format!("cluster node {node} ({address})")) && said.contains("node 1's"),
            "{name}: {said}"
        );
    }
    // So are the commands on an existing user that is another node's.
    let refused = confabd(&data, &["user", "passwd", &bob], "a brand new password\n");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cluster node 2"));

    // alice is node 1's: added, with an id that carries node 1, and listed alone.
    let added = stdout(&confabd(&data, &["user", "add", &alice], &format!("{PASSWORD}\n")));
    let id: u64 = added
        .trim()
        .strip_suffix(')')
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no user id in {added:?}"));
    assert_eq!(id & 0xff, 1, "user id {id} does not carry node 1");
    let listed = stdout(&confabd(&data, &["user", "list"], ""));
    let names: Vec<&str> = listed.lines().filter_map(|line| line.split('\t').next()).collect();
    assert!(names.contains(&alice.as_str()) && !names.contains(&bob.as_str()), "{listed}");

    // Node 1 back: alice logs in at her home and writes to bob on node 2.
    cluster.nodes.restart(1);
    assert_eq!(home(&alice), 1);
    let mut alice_client = cluster.login(&alice);
    let (_, seq, _) = retry_while_unavailable("alice's first message to bob", || {
        alice_client.send_text(&bob, ClientMsgId(1), "added offline")
    })
    .unwrap();
    assert_eq!(seq, Seq(1));
    assert_eq!(summary(&receive(&mut bob_client, 1)), vec![(Seq(1), Seq(0), alice.clone(), "added offline".into())]);
}
