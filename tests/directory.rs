//! What a client learns without trying: whether it is an administrator, who wrote (display
//! names in pushes, member lists and room lists), and which groups are open to join.
//! protocol.md "Replies", "Shared types" and `ListOpenGroups`.

use crate::common::{in_default, TestServer, PASSWORD};
use confab::admin;
use confab::client::Client;
use confab::protocol::{
    ClientMsgId, Content, Conversation, GroupEvent, GroupId, OnlineUser, OpenGroup, Reply, Request, SenderKind,
    ServiceTarget, Target,
};

fn rename(client: &mut Client, name: &str) {
    assert_eq!(
        client.request(Request::Rename { display_name: name.into() }).unwrap(),
        Reply::Renamed { display_name: name.into() }
    );
}

fn create(client: &mut Client, name: &str, open: bool) -> GroupId {
    match client.request(Request::CreateGroup { name: name.into(), open }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn admin_flag(reply: &Reply) -> bool {
    match reply {
        Reply::LoggedIn { admin, .. } => *admin,
        other => panic!("{other:?}"),
    }
}

fn open_groups(client: &mut Client, after: GroupId, limit: u32) -> (Vec<OpenGroup>, bool) {
    match client.request(Request::ListOpenGroups { after, limit }).unwrap() {
        Reply::OpenGroups { groups, more } => (groups, more),
        other => panic!("{other:?}"),
    }
}

#[test]
fn logged_in_says_whether_the_account_is_an_administrator() {
    let server = TestServer::start();
    server.register(&["root", "alice"]);
    let store = server.server().store();
    let mut account = store.account("default/root").unwrap().unwrap();
    account.admin = true;
    store.put_account("default/root", &account).unwrap();

    let mut root = server.client();
    let reply = root.login("root", PASSWORD).unwrap();
    assert!(admin_flag(&reply));
    let Reply::LoggedIn { resume_token, .. } = reply else { unreachable!() };
    assert!(!admin_flag(&server.client().login("alice", PASSWORD).unwrap()));
    // The resume reply says it too.
    drop(root);
    assert!(admin_flag(&server.client().resume("root", &resume_token).unwrap()));
}

#[test]
fn pushes_carry_the_senders_display_name_even_when_the_sender_is_offline() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    rename(&mut alice, "Alice Liddell");
    alice.send_text("bob", ClientMsgId(1), "hi bob").unwrap();
    let group = create(&mut alice, "club", false);
    alice.next_message().unwrap(); // Created
    assert_eq!(alice.request(Request::AddMember { group_id: group, username: "bob".into() }).unwrap(), Reply::Done);
    drop(alice);

    // Bob logs in after alice left: the inbox message and the group's events name her.
    let mut bob = server.login("bob");
    // The inbox and the group are pushed in either order.
    let mut first = [bob.next_message().unwrap(), bob.next_message().unwrap()];
    first.sort_by_key(|m| m.conversation != Conversation::Inbox);
    let [direct, added] = first;
    assert_eq!((direct.conversation, direct.from.as_str()), (Conversation::Inbox, "alice"));
    assert_eq!(direct.display_name, "Alice Liddell");
    assert_eq!(added.event, Some(GroupEvent::Added { username: "bob".into(), by: "alice".into() }));
    assert_eq!(added.display_name, "Alice Liddell");

    // A live message carries the name the sender has now; a service's carries its name.
    rename(&mut bob, "Robert");
    let mut alice = server.login("alice");
    let say = Request::Send {
        to: Target::Group(group),
        client_msg_id: ClientMsgId(2),
        transient: false,
        content: Content::text("hey"),
    };
    bob.request(say).unwrap();
    let live = loop {
        let m = alice.next_message().unwrap();
        if m.event.is_none() {
            break m;
        }
    };
    assert_eq!((live.from.as_str(), live.display_name.as_str()), ("bob", "Robert"));

    let token = admin::add_service(server.server().store(), &in_default("shop"), false).unwrap();
    let mut shop = server.client();
    shop.request(Request::ServiceLogin { name: "shop".into(), token }).unwrap();
    let to = ServiceTarget::Users(vec!["alice".into()]);
    shop.request(Request::ServiceSend {
        to,
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("shipped"),
    })
    .unwrap();
    let from_shop = loop {
        let m = alice.next_message().unwrap();
        if m.sender == SenderKind::Service {
            break m;
        }
    };
    assert_eq!(from_shop.display_name, "shop");
}

#[test]
fn member_and_room_lists_carry_display_names() {
    let server = TestServer::start();
    server.register(&["carol"]);
    let mut alice = server.user("alice");
    rename(&mut alice, "Alice Liddell");
    let mut bob = server.user("bob");
    let group = create(&mut alice, "club", false);
    for who in ["bob", "carol"] {
        assert_eq!(alice.request(Request::AddMember { group_id: group, username: who.into() }).unwrap(), Reply::Done);
    }
    match bob.request(Request::GroupMembers { group_id: group }).unwrap() {
        Reply::Members { members, .. } => {
            let shown: Vec<_> =
                members.iter().map(|m| (m.username.as_str(), m.display_name.as_str(), m.online)).collect();
            assert_eq!(shown, [("alice", "Alice Liddell", true), ("bob", "bob", true), ("carol", "carol", false)]);
        }
        other => panic!("{other:?}"),
    }
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.request(Request::JoinRoom { room: "lobby".into() }).unwrap(), Reply::Done);
    }
    let expected = vec![
        OnlineUser { username: "alice".into(), display_name: "Alice Liddell".into() },
        OnlineUser { username: "bob".into(), display_name: "bob".into() },
    ];
    assert_eq!(
        bob.request(Request::RoomMembers { room: "lobby".into() }).unwrap(),
        Reply::RoomMembers { room: "lobby".into(), members: expected }
    );
}

#[test]
fn open_groups_are_listed_in_pages_across_workers_and_restarts() {
    let mut server = TestServer::with(|config| config.workers = 4);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    // Ids come from one counter and spread over the workers by id.
    let open: Vec<GroupId> = (0..5).map(|i| create(&mut alice, &format!("open {i}"), true)).collect();
    let closed = create(&mut alice, "secret", false);
    let (page, more) = open_groups(&mut bob, GroupId(0), 3);
    assert_eq!(page.iter().map(|g| g.group_id).collect::<Vec<_>>(), open[..3]);
    assert!(more);
    assert_eq!(page[0], OpenGroup { group_id: open[0], name: "open 0".into(), members: 1 });
    let (rest, more) = open_groups(&mut bob, page[2].group_id, 3);
    assert_eq!(rest.iter().map(|g| g.group_id).collect::<Vec<_>>(), open[3..]);
    assert!(!more);
    assert!(!rest.iter().any(|g| g.group_id == closed));

    // Joining counts, renaming shows, deleting removes; and JoinGroup works from the list.
    assert_eq!(bob.request(Request::JoinGroup { group_id: open[1] }).unwrap(), Reply::Done);
    let rename = Request::RenameGroup { group_id: open[2], name: "Chess".into() };
    assert_eq!(alice.request(rename).unwrap(), Reply::Done);
    assert_eq!(alice.request(Request::DeleteGroup { group_id: open[4] }).unwrap(), Reply::Done);
    let expected = vec![
        OpenGroup { group_id: open[0], name: "open 0".into(), members: 1 },
        OpenGroup { group_id: open[1], name: "open 1".into(), members: 2 },
        OpenGroup { group_id: open[2], name: "Chess".into(), members: 1 },
        OpenGroup { group_id: open[3], name: "open 3".into(), members: 1 },
    ];
    assert_eq!(open_groups(&mut bob, GroupId(0), 0), (expected.clone(), false));

    drop((alice, bob));
    server.restart();
    let mut carol = server.user("carol");
    assert_eq!(open_groups(&mut carol, GroupId(0), 0), (expected, false));
}
