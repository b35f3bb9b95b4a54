//! Push notifications across nodes: a member's push devices are at its home, so a group of
//! another node tells the member's home of a message the member missed, and the push
//! gateway connected to the home gets the event.

use super::{homed_on, retry_while_unavailable, TestCluster};
use crate::common::daemon::confabd;
use confab::client::Client;
use confab::protocol::{Chat, ClientMsgId, Content, GroupId, Push, PushPlatform, Reply, Request, SenderKind, Target};

#[test]
fn a_member_homed_elsewhere_is_notified_by_its_homes_gateway() {
    let mut cluster = TestCluster::with_flags(&["--push-window-ms", "200"]);
    // The gateway of node 2, where bob lives.
    cluster.nodes.stop(2);
    let added = confabd(cluster.nodes.data_dir(2), &["service", "add", "relay", "--push"], "");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8_lossy(&added.stdout).trim().to_string();
    cluster.nodes.restart(2);
    let mut gateway = cluster.client(2);
    assert_eq!(
        gateway.request(Request::ServiceLogin { name: "relay".into(), token }).unwrap(),
        Reply::ServiceLoggedIn { name: "relay".into() }
    );
    assert!(matches!(gateway.request(Request::SubscribePush).unwrap(), Reply::PushSubscribed { .. }));

    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    let mut a = cluster.user(&alice);
    let mut b = cluster.user(&bob);
    let request = Request::SetPushDevice {
        device: "bob-phone".into(),
        platform: PushPlatform::Apns,
        token: "tok-bob".into(),
        previews: true,
    };
    assert_eq!(b.request(request).unwrap(), Reply::Done);
    // The group lives on node 1, with alice; bob joins from node 2 and goes offline.
    let group = match a.request(Request::CreateGroup { name: "friends".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    let add = Request::AddMember { group_id: group, username: bob.clone() };
    assert_eq!(retry_while_unavailable("adding bob", || a.request(add.clone())).unwrap(), Reply::Done);
    drop(b);

    let say = |client: &mut Client, group: GroupId, cmid: u64, text: &str| {
        let request = Request::Send {
            to: Target::Group(group),
            client_msg_id: ClientMsgId(cmid),
            transient: false,
            content: Content::text(text),
        };
        assert!(matches!(client.request(request).unwrap(), Reply::Sent { .. }));
    };
    // bob's session end reaches the group's node on its own time: a message sent before it
    // is pushed to his closed connection and makes no note; so keep sending (each a new
    // message) until the gateway hears one.
    let mut sent = 0;
    let event = loop {
        sent += 1;
        say(&mut a, group, sent, &format!("dinner at eight #{sent}"));
        gateway.set_timeout(std::time::Duration::from_secs(1)).unwrap();
        match gateway.next_push() {
            Ok(Push::PushEvent(event)) => break event,
            _ => assert!(sent < 20, "no push event for bob after {sent} messages"),
        }
    };
    gateway.set_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(event.recipient, bob);
    assert_eq!((event.chat.clone(), event.chat_name.as_str()), (Chat::Group(group), "friends"));
    assert_eq!((event.sender.as_str(), event.sender_kind), (alice.as_str(), SenderKind::User));
    assert_eq!(event.devices.len(), 1);
    assert!(event.devices[0].preview.as_deref().is_some_and(|p| p.starts_with("dinner at eight")));
}
