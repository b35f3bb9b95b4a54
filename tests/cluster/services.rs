//! A back-end service connected to one node reaches users homed on every node: its sends
//! are split by home node (each home stores and pushes its users' part and reports back),
//! its queries gather every node's answer, its disconnects go to the user's home, and the
//! connection events of every node reach it.

use super::{homed_on, retry_while_unavailable, TestCluster};
use crate::common::daemon::confabd;
use confab::client::Client;
use confab::protocol::{ClientMsgId, Content, Conversation, Push, Reply, Request, SenderKind, ServiceTarget};

/// A service named `name` added on `node` (stopped for the administration command, as an
/// operator would), logged in there.
fn service_on(cluster: &mut TestCluster, node: u32, name: &str) -> Client {
    cluster.nodes.stop(node);
    let added = confabd(cluster.nodes.data_dir(node), &["service", "add", name], "");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8_lossy(&added.stdout).trim().to_string();
    cluster.nodes.restart(node);
    let mut client = cluster.client(node);
    let reply = client.request(Request::ServiceLogin { name: name.into(), token }).unwrap();
    assert_eq!(reply, Reply::ServiceLoggedIn { name: name.into() });
    client
}

fn send(service: &mut Client, to: ServiceTarget, cmid: u64, transient: bool, text: &str) -> Reply {
    let request =
        Request::ServiceSend { to, client_msg_id: ClientMsgId(cmid), transient, content: Content::text(text) };
    retry_while_unavailable("a service send", || service.request(request.clone())).unwrap()
}

#[test]
fn a_service_on_one_node_reaches_the_users_of_every_node() {
    let mut cluster = TestCluster::start();
    let names: Vec<String> = (1..=3).map(|node| homed_on(node, "member")).collect();
    cluster.register(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut relay = service_on(&mut cluster, 1, "relay");
    let mut users: Vec<Client> = names.iter().map(|name| cluster.login(name)).collect();

    // Stored messages to named users: each home stores its own, the tally is the sum.
    let mut to = names.clone();
    to.push("nobody".into());
    let reply = send(&mut relay, ServiceTarget::Users(to), 7, false, "your order shipped");
    assert_eq!(reply, Reply::ServiceSent { stored: 3, delivered: 3, unknown: vec!["nobody".into()] });
    for user in &mut users {
        let m = user.next_message().unwrap();
        assert_eq!((m.from.as_str(), m.sender, m.conversation), ("relay", SenderKind::Service, Conversation::Inbox));
    }

    // A notice to everyone online, on every node.
    assert_eq!(
        send(&mut relay, ServiceTarget::Online, 0, true, "maintenance tonight"),
        Reply::ServiceSent { stored: 0, delivered: 3, unknown: vec![] }
    );
    let notice = Push::ServiceNotice { service: "relay".into(), content: Content::text("maintenance tonight") };
    for user in &mut users {
        assert_eq!(user.next_push().unwrap(), notice);
    }

    // Who is online, asked of every node.
    let mut asked = names.clone();
    asked.push("nobody".into());
    let reply = relay.request(Request::QueryOnline { users: asked }).unwrap();
    assert_eq!(reply, Reply::OnlineStatus { online: vec![true, true, true, false] });

    // The statistics are the cluster's: every node's users and connections add up.
    match relay.request(Request::Stats).unwrap() {
        Reply::Stats(stats) => {
            assert_eq!(stats.logged_in, 3, "one user logged in on each node");
            assert!(stats.connections >= 4, "the users and the service: {}", stats.connections);
            assert!(stats.messages_received >= 2, "the service's two sends: {}", stats.messages_received);
        }
        other => panic!("{other:?}"),
    }

    // Connection events from every node, and a disconnect at the user's home.
    assert_eq!(relay.request(Request::WatchConnections).unwrap(), Reply::Done);
    let far = names.iter().position(|n| super::home(n) == 3).expect("a user of node 3");
    let reply =
        relay.request(Request::Disconnect { username: names[far].clone(), reason: "account review".into() }).unwrap();
    assert_eq!(reply, Reply::Disconnected { was_online: true });
    assert_eq!(users[far].next_push().unwrap(), Push::Kicked { reason: "account review".into() });
    match relay.next_push().unwrap() {
        Push::Connection { username, connected: false, .. } => assert_eq!(username, names[far]),
        other => panic!("{other:?}"),
    }
}
