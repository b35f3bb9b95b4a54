//! Persistent groups: protocol.md "Groups".

use crate::common::{TestServer, PASSWORD};
use confab::client::Client;
use confab::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, GroupEvent, GroupId, Message, Reply, Request, Role, Seq, Target,
};

fn create(client: &mut Client, name: &str, open: bool) -> GroupId {
    match client.request(Request::CreateGroup { name: name.into(), open }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn ok(client: &mut Client, request: Request) {
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

fn refused(client: &mut Client, request: Request) -> ErrorCode {
    client.request(request).unwrap_err().code().expect("a server error")
}

fn say(client: &mut Client, group_id: GroupId, id: ClientMsgId, text: &str) -> Seq {
    let request = Request::Send {
        to: Target::Group(group_id),
        client_msg_id: id,
        transient: false,
        content: Content::text(text),
    };
    match client.request(request).unwrap() {
        Reply::Sent { seq, .. } => seq,
        other => panic!("{other:?}"),
    }
}

fn text(m: &Message) -> String {
    String::from_utf8(m.content.body.clone()).unwrap()
}

fn ack(client: &mut Client, group_id: GroupId, up_to: Seq) {
    let reply = client.request(Request::Ack { conversation: Conversation::Group(group_id), up_to }).unwrap();
    assert_eq!(reply, Reply::Acked { conversation: Conversation::Group(group_id), up_to });
}

fn add(client: &mut Client, group_id: GroupId, who: &str) {
    ok(client, Request::AddMember { group_id, username: who.into() });
}

#[test]
fn group_messages_reach_online_members_but_not_the_sender() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let g = create(&mut alice, "friends", false);
    let created = alice.next_message().unwrap();
    assert_eq!((created.conversation, created.seq), (Conversation::Group(g), Seq(1)));
    assert_eq!(created.event, Some(GroupEvent::Created { by: "alice".into() }));
    add(&mut alice, g, "bob");
    add(&mut alice, g, "carol");

    // Each member hears of the later additions, in sequence.
    let added = bob.next_message().unwrap();
    assert_eq!(
        (added.seq, added.event),
        (Seq(2), Some(GroupEvent::Added { username: "bob".into(), by: "alice".into() }))
    );
    assert_eq!(bob.next_message().unwrap().seq, Seq(3));
    assert_eq!(carol.next_message().unwrap().seq, Seq(3));

    // Events reach the member who caused them too.
    assert_eq!(alice.next_message().unwrap().seq, Seq(2));
    assert_eq!(alice.next_message().unwrap().seq, Seq(3));
    let seq = say(&mut bob, g, ClientMsgId(1), "hello group");
    assert_eq!(seq, Seq(4));
    for member in [&mut alice, &mut carol] {
        let m = member.next_message().unwrap();
        assert_eq!(
            (m.conversation, m.seq, m.from.as_str(), text(&m)),
            (Conversation::Group(g), Seq(4), "bob", "hello group".into())
        );
    }
    // Bob's next push is carol's reply, not his own message; its prev_seq is the last
    // message bob was pushed (3), so the skipped seq 4 is no gap.
    say(&mut carol, g, ClientMsgId(1), "hi bob");
    let reply = bob.next_message().unwrap();
    assert_eq!((reply.seq, reply.prev_seq, text(&reply).as_str()), (Seq(5), Seq(3), "hi bob"));
    let to_alice = alice.next_message().unwrap();
    assert_eq!((to_alice.seq, to_alice.prev_seq), (Seq(5), Seq(4)));

    match alice.request(Request::GroupMembers { group_id: g }).unwrap() {
        Reply::Members { members, .. } => {
            let roles: Vec<_> = members.iter().map(|m| (m.username.as_str(), m.role, m.online)).collect();
            assert_eq!(
                roles,
                [("alice", Role::Owner, true), ("bob", Role::Member, true), ("carol", Role::Member, true)]
            );
        }
        other => panic!("{other:?}"),
    }
    match bob.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => {
            assert_eq!(groups.len(), 1);
            assert_eq!(
                (groups[0].group_id, groups[0].name.as_str(), groups[0].role, groups[0].members),
                (g, "friends", Role::Member, 3)
            );
            assert_eq!(groups[0].last_seq, Seq(5));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn offline_members_catch_up_in_order_after_a_restart_and_history_is_stored_once() {
    let mut server = TestServer::start();
    server.register(&["bob", "carol"]);
    let g = {
        let mut alice = server.user("alice");
        let g = create(&mut alice, "team", false);
        add(&mut alice, g, "bob");
        add(&mut alice, g, "carol");
        for i in 1..=20 {
            say(&mut alice, g, ClientMsgId(i), &format!("m{i}"));
        }
        g
    };
    // 3 events + 20 messages, once each, whatever the number of members.
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 23);
    server.restart();

    let mut bob = server.login("bob");
    let got: Vec<(Seq, Option<String>)> = (0..22)
        .map(|_| {
            let m = bob.next_message().unwrap();
            (m.seq, m.event.is_none().then(|| text(&m)))
        })
        .collect();
    // Bob's history starts at the event that added him: what came before is not his.
    assert_eq!(&got[..2], &[(Seq(2), None), (Seq(3), None)]);
    let expected: Vec<_> = (1..=20).map(|i| (Seq(i + 3), Some(format!("m{i}")))).collect();
    assert_eq!(&got[2..], &expected[..]);

    ack(&mut bob, g, Seq(23));

    // Messages go from disk once every member has acknowledged them.
    let mut carol = server.login("carol");
    for _ in 0..21 {
        carol.next_message().unwrap();
    }
    let mut alice = server.login("alice");
    ack(&mut alice, g, Seq(23));
    assert!(server.server().store().stats().unwrap().stored_messages > 0, "carol has not acked");
    ack(&mut carol, g, Seq(23));
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 0);
    // Numbering goes on after everything was deleted.
    assert_eq!(say(&mut alice, g, ClientMsgId(100), "later"), Seq(24));
}

#[test]
fn roles_decide_who_may_do_what() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    server.register(&["carol"]);
    let mut dave = server.user("dave");
    let g = create(&mut alice, "club", false);

    add(&mut alice, g, "bob");
    add(&mut alice, g, "carol");

    // Members may not manage the group.
    assert_eq!(refused(&mut bob, Request::AddMember { group_id: g, username: "dave".into() }), ErrorCode::Forbidden);
    assert_eq!(
        refused(&mut bob, Request::RemoveMember { group_id: g, username: "carol".into() }),
        ErrorCode::Forbidden
    );
    assert_eq!(refused(&mut bob, Request::RenameGroup { group_id: g, name: "x".into() }), ErrorCode::Forbidden);
    assert_eq!(refused(&mut bob, Request::DeleteGroup { group_id: g }), ErrorCode::Forbidden);
    assert_eq!(
        refused(&mut bob, Request::SetRole { group_id: g, username: "carol".into(), role: Role::Admin }),
        ErrorCode::Forbidden
    );
    // Outsiders may not read, write or join a closed group.
    let send = Request::Send {
        to: Target::Group(g),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("x"),
    };
    assert_eq!(refused(&mut dave, send), ErrorCode::NotAMember);
    assert_eq!(refused(&mut dave, Request::GroupMembers { group_id: g }), ErrorCode::NotAMember);
    assert_eq!(refused(&mut dave, Request::JoinGroup { group_id: g }), ErrorCode::Forbidden);
    assert_eq!(refused(&mut dave, Request::JoinGroup { group_id: GroupId(999_999) }), ErrorCode::UnknownGroup);
    assert_eq!(
        refused(&mut alice, Request::AddMember { group_id: g, username: "bob".into() }),
        ErrorCode::AlreadyMember
    );
    assert_eq!(
        refused(&mut alice, Request::AddMember { group_id: g, username: "nobody".into() }),
        ErrorCode::UnknownUser
    );

    // An admin may remove plain members but not the owner; the owner may not leave.
    ok(&mut alice, Request::SetRole { group_id: g, username: "bob".into(), role: Role::Admin });
    assert_eq!(
        refused(&mut bob, Request::RemoveMember { group_id: g, username: "alice".into() }),
        ErrorCode::Forbidden
    );
    ok(&mut bob, Request::RenameGroup { group_id: g, name: "the club".into() });
    ok(&mut bob, Request::RemoveMember { group_id: g, username: "carol".into() });
    assert_eq!(refused(&mut alice, Request::LeaveGroup { group_id: g }), ErrorCode::Forbidden);

    // Handing over: bob becomes owner, alice an admin who may now leave.
    ok(&mut alice, Request::SetRole { group_id: g, username: "bob".into(), role: Role::Owner });
    match bob.request(Request::GroupMembers { group_id: g }).unwrap() {
        Reply::Members { members, .. } => {
            let roles: Vec<_> = members.iter().map(|m| (m.username.as_str(), m.role)).collect();
            assert_eq!(roles, [("alice", Role::Admin), ("bob", Role::Owner)]);
        }
        other => panic!("{other:?}"),
    }
    ok(&mut alice, Request::LeaveGroup { group_id: g });
    assert_eq!(refused(&mut alice, Request::GroupMembers { group_id: g }), ErrorCode::NotAMember);
}

#[test]
fn membership_changes_are_announced_as_events() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let g = create(&mut alice, "open house", true);
    ok(&mut bob, Request::JoinGroup { group_id: g });
    ok(&mut carol, Request::JoinGroup { group_id: g });
    ok(&mut alice, Request::RenameGroup { group_id: g, name: "open door".into() });
    ok(&mut carol, Request::LeaveGroup { group_id: g });
    ok(&mut alice, Request::RemoveMember { group_id: g, username: "bob".into() });
    let events: Vec<_> = (0..6).map(|_| alice.next_message().unwrap().event.unwrap()).collect();
    assert_eq!(
        events,
        [
            GroupEvent::Created { by: "alice".into() },
            GroupEvent::Joined { username: "bob".into() },
            GroupEvent::Joined { username: "carol".into() },
            GroupEvent::Renamed { name: "open door".into(), by: "alice".into() },
            GroupEvent::Left { username: "carol".into() },
            GroupEvent::Removed { username: "bob".into(), by: "alice".into() },
        ]
    );
    // The removed member hears of it too, as the last thing from the group.
    let mut last = None;
    for _ in 0..5 {
        last = Some(bob.next_message().unwrap());
    }
    assert_eq!(last.unwrap().event, Some(GroupEvent::Removed { username: "bob".into(), by: "alice".into() }));
    match bob.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => assert!(groups.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deleting_a_group_tells_members_and_removes_everything() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let g = create(&mut alice, "short-lived", false);
    add(&mut alice, g, "bob");
    say(&mut alice, g, ClientMsgId(1), "bye soon");
    ok(&mut alice, Request::DeleteGroup { group_id: g });
    let mut last = None;
    for _ in 0..3 {
        last = Some(bob.next_message().unwrap());
    }
    assert_eq!(last.unwrap().event, Some(GroupEvent::Deleted { by: "alice".into() }));
    assert_eq!(refused(&mut bob, Request::GroupMembers { group_id: g }), ErrorCode::UnknownGroup);
    let stats = server.server().store().stats().unwrap();
    assert_eq!((stats.groups, stats.stored_messages), (0, 0));
}

#[test]
fn limits_on_members_and_groups() {
    let server = TestServer::with(|c| {
        c.max_group_members = 2;
        c.max_groups_per_user = 2;
    });
    server.register(&["bob", "carol"]);
    let mut alice = server.user("alice");
    let g = create(&mut alice, "pair", false);
    add(&mut alice, g, "bob");
    assert_eq!(
        refused(&mut alice, Request::AddMember { group_id: g, username: "carol".into() }),
        ErrorCode::LimitReached
    );
    create(&mut alice, "second", false);
    assert_eq!(
        refused(&mut alice, Request::CreateGroup { name: "third".into(), open: false }),
        ErrorCode::LimitReached
    );
}

#[test]
fn retention_drops_the_oldest_for_members_who_stay_away() {
    let server = TestServer::with(|c| c.group_retention = 5);
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let g = create(&mut alice, "chatty", false);
    add(&mut alice, g, "bob");
    for i in 1..=10 {
        say(&mut alice, g, ClientMsgId(i), &format!("m{i}"));
    }
    // Seqs 1-2 are events, 3-12 messages; only the last five are kept.
    let mut bob = server.client();
    bob.login("bob", PASSWORD).unwrap();
    let seqs: Vec<u64> = (0..5).map(|_| bob.next_message().unwrap().seq.get()).collect();
    assert_eq!(seqs, [8, 9, 10, 11, 12]);
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 5);
}

#[test]
fn a_group_resend_with_the_same_client_id_is_stored_once() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let g = create(&mut alice, "dedup", false);
    assert_eq!(say(&mut alice, g, ClientMsgId(5), "once"), Seq(2));
    let again = alice.request(Request::Send {
        to: Target::Group(g),
        client_msg_id: ClientMsgId(5),
        transient: false,
        content: Content::text("once"),
    });
    assert!(matches!(again.unwrap(), Reply::Sent { seq: Seq(2), duplicate: true, .. }));
    assert_eq!(say(&mut alice, g, ClientMsgId(6), "twice"), Seq(3));
}

#[test]
fn resends_after_a_restart_are_recognised_for_groups_and_users() {
    // Each worker reloads the remembered sends of the destinations it owns: with several
    // workers, a group's and a user's land on whichever worker owns them.
    let mut server = TestServer::with(|c| c.workers = 3);
    server.register(&["bob", "carol", "dave"]);
    let mut alice = server.user("alice");
    let g = create(&mut alice, "dedup", false);
    let g_seq = say(&mut alice, g, ClientMsgId(5), "once");
    let direct: Vec<(String, Seq)> = ["bob", "carol", "dave"]
        .iter()
        .enumerate()
        .map(|(i, to)| (to.to_string(), alice.send_text(to, ClientMsgId(10 + i as u64), "hi").unwrap().1))
        .collect();
    drop(alice);
    server.restart();
    let mut alice = server.login("alice");
    let again = alice.request(Request::Send {
        to: Target::Group(g),
        client_msg_id: ClientMsgId(5),
        transient: false,
        content: Content::text("once"),
    });
    assert!(matches!(again.unwrap(), Reply::Sent { seq, duplicate: true, .. } if seq == g_seq));
    for (i, (to, seq)) in direct.iter().enumerate() {
        let (_, again, duplicate) = alice.send_text(to, ClientMsgId(10 + i as u64), "hi").unwrap();
        assert_eq!((again, duplicate), (*seq, true), "the resend to {to}");
    }
}

/// protocol.md `AddMember`: the caller receives the Added event before Done, and the new
/// member's position starts just before the event, which is its first push.
#[test]
fn added_comes_before_done_and_the_new_member_starts_at_the_event() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let g = create(&mut alice, "club", false);
    alice.next_message().unwrap(); // Created, seq 1
    say(&mut alice, g, ClientMsgId(1), "before bob"); // seq 2

    let id = alice.send(Request::AddMember { group_id: g, username: "bob".into() }).unwrap();
    let added = match alice.read_frame().unwrap() {
        confab::protocol::ServerFrame::Push(confab::protocol::Push::Message(m)) => m,
        other => panic!("expected the Added push first, got {other:?}"),
    };
    assert_eq!(
        (added.seq, added.event),
        (Seq(3), Some(GroupEvent::Added { username: "bob".into(), by: "alice".into() }))
    );
    assert_eq!(alice.reply_to(id).unwrap(), Reply::Done);

    let first = bob.next_message().unwrap();
    assert_eq!((first.seq, first.prev_seq), (Seq(3), Seq(2)));
    match bob.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => assert_eq!((groups[0].acked, groups[0].last_seq), (Seq(2), Seq(3))),
        other => panic!("{other:?}"),
    }
}
