//! Groups whose members are homed on different nodes. A group lives on the node that made
//! it (its creator's home): every send, ack and membership change goes there, and it
//! pushes to its members' sessions wherever they are. A member's home knows which groups it
//! is in (so its login there brings the group's backlog), and checks its account before it
//! is made a member.

use super::{homed_on, retry_while_unavailable, text_of, unavailable, TestCluster, RECOVERY};
use crate::common::{eventually, login_device, PASSWORD};
use confab::client::Client;
use confab::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, GroupEvent, GroupId, Message, Push, Reply, Request, Role, Seq,
    Target,
};
use std::collections::BTreeSet;

fn create(client: &mut Client, name: &str) -> GroupId {
    match client.request(Request::CreateGroup { name: name.into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn add(client: &mut Client, group_id: GroupId, who: &str) {
    assert_eq!(client.request(Request::AddMember { group_id, username: who.into() }).unwrap(), Reply::Done);
}

fn send(group_id: GroupId, cmid: u64, text: &str) -> Request {
    Request::Send {
        to: Target::Group(group_id),
        client_msg_id: ClientMsgId(cmid),
        transient: false,
        content: Content::text(text),
    }
}

fn say(client: &mut Client, group_id: GroupId, cmid: u64, text: &str) -> Seq {
    match client.request(send(group_id, cmid, text)).unwrap() {
        Reply::Sent { seq, duplicate: false, .. } => seq,
        other => panic!("{other:?}"),
    }
}

fn ack(client: &mut Client, group_id: GroupId, up_to: Seq) {
    let reply = client.request(Request::Ack { conversation: Conversation::Group(group_id), up_to }).unwrap();
    assert_eq!(reply, Reply::Acked { conversation: Conversation::Group(group_id), up_to });
}

/// What a group message says: (seq, prev_seq, from, its text or its event).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Said {
    Text(Seq, Seq, String, String),
    Event(Seq, Seq, GroupEvent),
}

fn said(m: &Message, group_id: GroupId) -> Said {
    assert_eq!(m.conversation, Conversation::Group(group_id), "a message of the group: {m:?}");
    match &m.event {
        Some(event) => Said::Event(m.seq, m.prev_seq, event.clone()),
        None => Said::Text(m.seq, m.prev_seq, m.from.clone(), text_of(&m.content)),
    }
}

/// The next `count` messages pushed to `client`, all of the group.
fn heard(client: &mut Client, group_id: GroupId, count: usize) -> Vec<Said> {
    (0..count)
        .map(|i| said(&client.next_message().unwrap_or_else(|e| panic!("message {} of {count}: {e}", i + 1)), group_id))
        .collect()
}

/// Whether the group's node counts `who` online, as `GroupMembers` says.
fn online_in(client: &mut Client, group_id: GroupId, who: &str) -> bool {
    match client.request(Request::GroupMembers { group_id }).unwrap() {
        Reply::Members { members, .. } => members.iter().any(|m| m.username == who && m.online),
        other => panic!("{other:?}"),
    }
}

fn text(seq: u64, prev: u64, from: &str, text: &str) -> Said {
    Said::Text(Seq(seq), Seq(prev), from.to_string(), text.to_string())
}

fn added(seq: u64, prev: u64, who: &str, by: &str) -> Said {
    Said::Event(Seq(seq), Seq(prev), GroupEvent::Added { username: who.into(), by: by.into() })
}

/// A group made by alice (node 1) with bob (node 2) and carol (node 3) added, each online
/// and past the group's first three events (created, bob added, carol added).
struct Three {
    group: GroupId,
    alice: String,
    bob: String,
    carol: String,
    clients: [Client; 3],
}

fn three(cluster: &TestCluster, prefix: &str) -> Three {
    let (alice, bob, carol) =
        (homed_on(1, &format!("{prefix}a")), homed_on(2, &format!("{prefix}b")), homed_on(3, &format!("{prefix}c")));
    let [mut a, mut b, mut c] = [&alice, &bob, &carol].map(|name| cluster.user(name));
    let group = create(&mut a, "friends");
    add(&mut a, group, &bob);
    add(&mut a, group, &carol);
    let created = Said::Event(Seq(1), Seq(0), GroupEvent::Created { by: alice.clone() });
    assert_eq!(heard(&mut a, group, 3), vec![created, added(2, 1, &bob, &alice), added(3, 2, &carol, &alice)]);
    assert_eq!(heard(&mut b, group, 2), vec![added(2, 1, &bob, &alice), added(3, 2, &carol, &alice)]);
    assert_eq!(heard(&mut c, group, 1), vec![added(3, 2, &carol, &alice)]);
    Three { group, alice, bob, carol, clients: [a, b, c] }
}

#[test]
fn members_of_every_node_get_every_message_in_order_once() {
    let cluster = TestCluster::start();
    let Three { group, alice, bob, carol, clients } = three(&cluster, "m");
    let [mut a, mut b, mut c] = clients;

    // Every member lists the group at its home, as its node knows it (the group's).
    for client in [&mut a, &mut b, &mut c] {
        match client.request(Request::ListGroups).unwrap() {
            Reply::Groups { groups } => {
                let listed: Vec<(GroupId, u32)> = groups.iter().map(|g| (g.group_id, g.members)).collect();
                assert_eq!(listed, vec![(group, 3)]);
            }
            other => panic!("{other:?}"),
        }
    }

    // bob's new display name reaches the group's node with his requests.
    let renamed = b.request(Request::Rename { display_name: "Bobby".into() }).unwrap();
    assert_eq!(renamed, Reply::Renamed { display_name: "Bobby".into() });

    // One from each node, in turn: the others get it, the sender has its receipt.
    assert_eq!(say(&mut a, group, 1, "from node 1"), Seq(4));
    assert_eq!(say(&mut b, group, 1, "from node 2"), Seq(5));
    assert_eq!(say(&mut c, group, 1, "from node 3"), Seq(6));
    assert_eq!(heard(&mut a, group, 2), vec![text(5, 3, &bob, "from node 2"), text(6, 5, &carol, "from node 3")]);
    let to_bob = heard(&mut b, group, 2);
    assert_eq!(to_bob, vec![text(4, 3, &alice, "from node 1"), text(6, 4, &carol, "from node 3")]);
    let to_carol: Vec<Message> = (0..2).map(|_| c.next_message().unwrap()).collect();
    assert_eq!(
        to_carol.iter().map(|m| said(m, group)).collect::<Vec<_>>(),
        vec![text(4, 3, &alice, "from node 1"), text(5, 4, &bob, "from node 2")]
    );
    assert_eq!(to_carol[1].display_name, "Bobby");

    // All three pipeline twenty each at once: one order for the group, which every member
    // sees (the others' messages, each once, in sequence order).
    const EACH: u64 = 20;
    let mut pending = Vec::new();
    for (client, name) in [(&mut a, &alice), (&mut b, &bob), (&mut c, &carol)] {
        let ids: Vec<u32> =
            (0..EACH).map(|i| client.send(send(group, 100 + i, &format!("{name} {i}"))).unwrap()).collect();
        pending.push(ids);
    }
    let mut sent_by: Vec<BTreeSet<Seq>> = Vec::new();
    for (client, ids) in [&mut a, &mut b, &mut c].into_iter().zip(pending) {
        let seqs = ids.into_iter().map(|id| match client.reply_to(id).unwrap() {
            Reply::Sent { seq, duplicate: false, .. } => seq,
            other => panic!("{other:?}"),
        });
        let seqs: Vec<Seq> = seqs.collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one sender's messages keep its order: {seqs:?}");
        sent_by.push(seqs.into_iter().collect());
    }
    let all: BTreeSet<Seq> = sent_by.iter().flatten().copied().collect();
    assert_eq!(all, (7..7 + 3 * EACH).map(Seq).collect(), "each stored once, no gap");
    for (index, client) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        let others: Vec<Seq> = all.iter().filter(|seq| !sent_by[index].contains(seq)).copied().collect();
        let got: Vec<Seq> = (0..others.len()).map(|_| client.next_message().unwrap().seq).collect();
        assert_eq!(got, others, "member {index} gets the others' messages in the group's order");
    }

    // Once: the next message is the next each member gets.
    let last = say(&mut a, group, 2, "the end");
    assert_eq!(last, Seq(7 + 3 * EACH));
    for client in [&mut b, &mut c] {
        let m = client.next_message().unwrap();
        assert_eq!((m.seq, text_of(&m.content)), (last, "the end".to_string()));
    }

    // The group's node knows them all, their roles, who is online, bob's new name.
    match c.request(Request::GroupMembers { group_id: group }).unwrap() {
        Reply::Members { members, .. } => {
            // In username order, which the test's prefixes make alice, bob, carol.
            let expected = vec![
                (alice.as_str(), Role::Owner, true),
                (bob.as_str(), Role::Member, true),
                (carol.as_str(), Role::Member, true),
            ];
            let got: Vec<_> = members.iter().map(|m| (m.username.as_str(), m.role, m.online)).collect();
            assert_eq!(got, expected);
            let bobby = members.iter().find(|m| m.username == bob).map(|m| m.display_name.as_str());
            assert_eq!(bobby, Some("Bobby"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_offline_catches_up_at_its_home_and_a_new_login_owes_nothing_acked() {
    let cluster = TestCluster::start();
    let (alice, bob, carol) = (homed_on(1, "oa"), homed_on(2, "ob"), homed_on(3, "oc"));
    // bob is registered at home but not logged in.
    cluster.register(&[&bob]);
    let mut a = cluster.user(&alice);
    let mut c = cluster.user(&carol);
    let group = create(&mut a, "friends");
    add(&mut a, group, &bob);
    add(&mut a, group, &carol);
    // Someone with no account at its home is no member anywhere.
    let nobody = homed_on(2, "nobody");
    let refused = a.request(Request::AddMember { group_id: group, username: nobody }).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::UnknownUser));
    for i in 1..=3 {
        assert_eq!(say(&mut a, group, i, &format!("alice {i}")), Seq(3 + 2 * i - 1));
        assert_eq!(say(&mut c, group, i, &format!("carol {i}")), Seq(3 + 2 * i));
    }

    // bob logs in at home: everything since he was added, in order, once.
    let mut b = cluster.login(&bob);
    let mut expected = vec![added(2, 1, &bob, &alice), added(3, 2, &carol, &alice)];
    for i in 1..=3u64 {
        expected.push(text(2 + 2 * i, 1 + 2 * i, &alice, &format!("alice {i}")));
        expected.push(text(3 + 2 * i, 2 + 2 * i, &carol, &format!("carol {i}")));
    }
    assert_eq!(heard(&mut b, group, 8), expected);

    // He acks half; a new login gets the rest again, and nothing acked.
    ack(&mut b, group, Seq(5));
    drop(b);
    let mut b = cluster.login(&bob);
    assert_eq!(heard(&mut b, group, 4), expected[4..].to_vec());
    ack(&mut b, group, Seq(9));
    drop(b);
    let mut b = cluster.login(&bob);
    assert_eq!(say(&mut a, group, 10, "welcome back"), Seq(10));
    assert_eq!(heard(&mut b, group, 1), vec![text(10, 9, &alice, "welcome back")]);
}

#[test]
fn a_removed_member_hears_of_it_and_nothing_more() {
    let cluster = TestCluster::start();
    let Three { group, alice, bob, carol, clients } = three(&cluster, "r");
    let [mut a, mut b, mut c] = clients;

    let removal = Request::RemoveMember { group_id: group, username: carol.clone() };
    assert_eq!(a.request(removal).unwrap(), Reply::Done);
    let removed = Said::Event(Seq(4), Seq(3), GroupEvent::Removed { username: carol.clone(), by: alice.clone() });
    assert_eq!(heard(&mut c, group, 1), vec![removed.clone()]);
    assert_eq!(heard(&mut b, group, 1), vec![removed]);

    assert_eq!(say(&mut a, group, 1, "carol is gone"), Seq(5));
    assert_eq!(heard(&mut b, group, 1), vec![text(5, 4, &alice, "carol is gone")]);
    let refused = c.request(send(group, 1, "let me in")).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotAMember));
    // What alice sends carol directly comes after anything the group had sent her: it is
    // the next message she gets.
    let (_, seq, _) = a.send_text(&carol, ClientMsgId(1), "sorry").unwrap();
    let next = c.next_message().unwrap();
    assert_eq!((next.conversation, next.seq, text_of(&next.content)), (Conversation::Inbox, seq, "sorry".into()));

    // bob leaves; his next login at home brings nothing of the group.
    assert_eq!(b.request(Request::LeaveGroup { group_id: group }).unwrap(), Reply::Done);
    drop(b);
    assert_eq!(say(&mut a, group, 2, "bob is gone too"), Seq(7));
    let mut b = cluster.login(&bob);
    let (_, seq, _) = a.send_text(&bob, ClientMsgId(1), "bye").unwrap();
    let next = b.next_message().unwrap();
    assert_eq!((next.conversation, next.seq, text_of(&next.content)), (Conversation::Inbox, seq, "bye".into()));

    // carol is added again: she starts from there.
    add(&mut a, group, &carol);
    assert_eq!(heard(&mut c, group, 1), vec![added(8, 7, &carol, &alice)]);
}

#[test]
fn a_member_whose_home_was_killed_catches_up_when_it_returns() {
    let mut cluster = TestCluster::start();
    let Three { group, alice, bob, carol, clients } = three(&cluster, "k");
    let [mut a, _b, mut c] = clients;

    // bob's home dies with his session: the group's node stops counting it once it knows.
    assert!(online_in(&mut a, group, &bob));
    cluster.nodes.kill(2);
    eventually("the group's node to count bob offline", RECOVERY, || !online_in(&mut a, group, &bob));
    for i in 1..=3 {
        assert_eq!(say(&mut a, group, i, &format!("while node 2 is down {i}")), Seq(3 + i));
    }
    let to_carol = heard(&mut c, group, 3);
    assert_eq!(to_carol[2], text(6, 5, &alice, "while node 2 is down 3"));

    // bob's home returns; his login there brings what he had not acknowledged.
    cluster.nodes.restart(2);
    let mut b = cluster.client(2);
    b.login(&bob, PASSWORD).unwrap();
    let mut expected = vec![added(2, 1, &bob, &alice), added(3, 2, &carol, &alice)];
    expected.extend((1..=3u64).map(|i| text(3 + i, 2 + i, &alice, &format!("while node 2 is down {i}"))));
    assert_eq!(heard(&mut b, group, 5), expected);
    ack(&mut b, group, Seq(6));

    // And he is a member like before: his message reaches the others, theirs reach him.
    assert_eq!(say(&mut b, group, 1, "back"), Seq(7));
    assert_eq!(heard(&mut c, group, 1), vec![text(7, 6, &bob, "back")]);
    assert_eq!(say(&mut c, group, 1, "welcome"), Seq(8));
    let next = b.next_message().unwrap();
    assert_eq!((next.seq, text_of(&next.content)), (Seq(8), "welcome".to_string()));
}

#[test]
fn while_the_groups_home_is_down_sends_are_unavailable_and_nothing_receipted_is_lost() {
    let mut cluster = TestCluster::start();
    let Three { group, alice, bob, carol, clients } = three(&cluster, "g");
    let [mut a, mut b, mut c] = clients;
    assert_eq!(say(&mut b, group, 1, "before"), Seq(4));
    assert_eq!(heard(&mut c, group, 1), vec![text(4, 3, &bob, "before")]);
    assert_eq!(heard(&mut a, group, 1), vec![text(4, 3, &bob, "before")]);
    for client in [&mut a, &mut b, &mut c] {
        ack(client, group, Seq(4));
    }
    drop(a);

    cluster.nodes.kill(1);
    unavailable(b.request(send(group, 2, "while node 1 is down")));
    unavailable(c.request(send(group, 2, "me too")));

    // The group's home returns: the refused sends, retried, are stored once each, and the
    // members still online hear of each other's again without logging in anew.
    cluster.nodes.restart(1);
    let seq = retry_while_unavailable("bob's retry", || b.request(send(group, 2, "while node 1 is down")));
    assert!(matches!(seq, Ok(Reply::Sent { seq: Seq(5), duplicate: false, .. })), "{seq:?}");
    let seq = retry_while_unavailable("carol's retry", || c.request(send(group, 2, "me too")));
    assert!(matches!(seq, Ok(Reply::Sent { seq: Seq(6), duplicate: false, .. })), "{seq:?}");
    let to_bob = b.next_message().unwrap();
    assert_eq!((to_bob.seq, to_bob.from.as_str(), text_of(&to_bob.content)), (Seq(6), carol.as_str(), "me too".into()));
    let to_carol = c.next_message().unwrap();
    assert_eq!(
        (to_carol.seq, to_carol.from.as_str(), text_of(&to_carol.content)),
        (Seq(5), bob.as_str(), "while node 1 is down".into())
    );

    // alice logs in at the group's home: everything after her ack, in order.
    let mut a = cluster.login(&alice);
    assert_eq!(heard(&mut a, group, 2), vec![text(5, 4, &bob, "while node 1 is down"), text(6, 5, &carol, "me too")]);
}

#[test]
fn a_members_named_device_keeps_its_place_in_a_group_of_another_node_across_that_nodes_restart() {
    let mut cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "da"), homed_on(2, "db"));
    cluster.register(&[&bob]);
    let mut a = cluster.user(&alice);
    let mut phone = cluster.client(2);
    login_device(&mut phone, &bob, "phone");
    let group = create(&mut a, "friends");
    add(&mut a, group, &bob);
    for i in 1..=3 {
        assert_eq!(say(&mut a, group, i, &format!("alice {i}")), Seq(2 + i));
    }
    let expected: Vec<Said> = [added(2, 1, &bob, &alice)]
        .into_iter()
        .chain((1..=3u64).map(|i| text(2 + i, 1 + i, &alice, &format!("alice {i}"))))
        .collect();
    assert_eq!(heard(&mut phone, group, 4), expected);
    ack(&mut phone, group, Seq(4));
    drop(phone);

    // The group's home restarts: the phone's position there is what it acknowledged.
    cluster.nodes.restart(1);
    let mut phone = cluster.client(2);
    login_device(&mut phone, &bob, "phone");
    assert_eq!(heard(&mut phone, group, 1), expected[3..].to_vec());
    let mut a = cluster.login(&alice);
    assert_eq!(say(&mut a, group, 4, "alice 4"), Seq(6));
    assert_eq!(heard(&mut phone, group, 1), vec![text(6, 5, &alice, "alice 4")]);
}

#[test]
fn co_members_on_other_nodes_hear_a_member_go_and_come_back() {
    let cluster = TestCluster::start();
    let Three { group, alice, bob, clients, .. } = three(&cluster, "p");
    let [mut a, mut b, mut c] = clients;
    ack(&mut b, group, Seq(3));
    // bob's home tells the group's node, which tells alice (there) and carol (node 3).
    drop(b);
    for client in [&mut a, &mut c] {
        assert_eq!(client.next_push().unwrap(), Push::Presence { username: bob.clone(), online: false });
    }
    let mut b = cluster.login(&bob);
    for client in [&mut a, &mut c] {
        assert_eq!(client.next_push().unwrap(), Push::Presence { username: bob.clone(), online: true });
    }
    // alice's home is the group's: it tells bob and carol on their nodes.
    drop(a);
    for client in [&mut b, &mut c] {
        assert_eq!(client.next_push().unwrap(), Push::Presence { username: alice.clone(), online: false });
    }
}

#[test]
fn a_user_whose_home_is_down_cannot_be_added_until_it_returns() {
    let mut cluster = TestCluster::start();
    let (alice, carol) = (homed_on(1, "ua"), homed_on(3, "uc"));
    cluster.register(&[&carol]);
    let mut a = cluster.user(&alice);
    let group = create(&mut a, "friends");

    // Nothing at carol's home can say she exists: Unavailable, and she is no member.
    cluster.nodes.kill(3);
    let add_carol = Request::AddMember { group_id: group, username: carol.clone() };
    unavailable(a.request(add_carol.clone()));
    match a.request(Request::GroupMembers { group_id: group }).unwrap() {
        Reply::Members { members, .. } => assert_eq!(members.len(), 1, "{members:?}"),
        other => panic!("{other:?}"),
    }

    // Back: the same request makes her a member; her login at home brings the group.
    cluster.nodes.restart(3);
    let added_carol = retry_while_unavailable("adding carol", || a.request(add_carol.clone()));
    assert!(matches!(added_carol, Ok(Reply::Done)), "{added_carol:?}");
    let mut c = cluster.login(&carol);
    assert_eq!(heard(&mut c, group, 1), vec![added(2, 1, &carol, &alice)]);
}
