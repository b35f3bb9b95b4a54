//! Conversation history: protocol.md "History". What is kept and for how long, pages read
//! backwards, a group member's view from its joining, deletion for everyone, clearing for
//! oneself, and the quota with history.

use crate::common::daemon::{daemon_with_users, logged_in, spawn_daemon};
use crate::common::{eventually, in_default, DataDir, TestServer, PASSWORD, SETTLE};
use confab::admin;
use confab::client::Client;
use confab::protocol::{
    Chat, ClientMsgId, Content, Conversation, ErrorCode, GroupEvent, GroupId, MediaKind, Message, MessageId, Reply,
    Request, SenderKind, Seq, ServiceTarget, Target,
};
use confab::store::LogId;
use std::time::Duration;

/// One page: (the messages, whether older ones are kept).
fn page(client: &mut Client, chat: Chat, before: u64, limit: u32) -> (Vec<Message>, bool) {
    match client.request(Request::History { chat: chat.clone(), before: Seq(before), limit }).unwrap() {
        Reply::HistoryPage { chat: answered, messages, more } => {
            assert_eq!(answered, chat);
            (messages, more)
        }
        other => panic!("{other:?}"),
    }
}

/// Every page of a chat from the newest back, as a client pages: asking again from the
/// oldest message it has (or with the same `before` after an empty page). Also returns
/// how many requests it took.
fn all_pages(client: &mut Client, chat: Chat, limit: u32) -> (Vec<Message>, usize) {
    let (mut all, mut before, mut requests) = (Vec::new(), 0, 0);
    loop {
        let (mut messages, more) = page(client, chat.clone(), before, limit);
        requests += 1;
        assert!(requests < 1000, "paging does not end");
        if let Some(oldest) = messages.first() {
            before = oldest.seq.get();
        }
        messages.append(&mut all);
        all = messages;
        if !more {
            return (all, requests);
        }
    }
}

fn text(message: &Message) -> String {
    String::from_utf8(message.content.body.clone()).unwrap()
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(text).collect()
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

fn refused(client: &mut Client, request: Request) -> ErrorCode {
    client.request(request).unwrap_err().code().expect("a server error")
}

fn done(client: &mut Client, request: Request) {
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

fn delete(chat: Chat, message_id: MessageId) -> Request {
    Request::DeleteMessage { chat, message_id }
}

fn user(name: &str) -> Chat {
    Chat::User(name.into())
}

/// Receives `n` pushed messages and acknowledges the last.
fn read_and_ack(client: &mut Client, n: usize) -> Vec<Message> {
    let messages: Vec<Message> = (0..n).map(|_| client.next_message().unwrap()).collect();
    if let Some(last) = messages.last() {
        client.ack(last.seq).unwrap();
    }
    messages
}

fn create_group(client: &mut Client, open: bool) -> GroupId {
    match client.request(Request::CreateGroup { name: "friends".into(), open }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn say(client: &mut Client, group_id: GroupId, id: u64, text: &str) -> (MessageId, Seq) {
    let content = Content::text(text);
    let request =
        Request::Send { to: Target::Group(group_id), client_msg_id: ClientMsgId(id), transient: false, content };
    match client.request(request).unwrap() {
        Reply::Sent { message_id, seq, .. } => (message_id, seq),
        other => panic!("{other:?}"),
    }
}

/// The group event of a history message, if it is one.
fn event(message: &Message) -> Option<GroupEvent> {
    message.event.clone()
}

/// Whether a history message shows as deleted: no content, the event naming itself.
fn shows_deleted(message: &Message, by: &str) -> bool {
    message.content.kind == MediaKind::System
        && message.content.body.is_empty()
        && message.event == Some(GroupEvent::MessageDeleted { message_id: message.message_id, by: by.into() })
}

#[test]
fn a_direct_chat_pages_back_through_the_inbox_oldest_first() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    // Bob's inbox interleaves two chats: alice's 1..=7 and carol's 1..=3.
    for i in 1..=7u64 {
        alice.send_text("bob", ClientMsgId(i), &format!("a{i}")).unwrap();
        if i <= 3 {
            carol.send_text("bob", ClientMsgId(i), &format!("c{i}")).unwrap();
        }
    }
    read_and_ack(&mut bob, 10);

    let (newest, more) = page(&mut bob, user("alice"), 0, 3);
    assert_eq!((texts(&newest), more), (vec!["a5".to_string(), "a6".into(), "a7".into()], true));
    for message in &newest {
        // As a push carries it, but with no previous push to name.
        assert_eq!((message.conversation, message.prev_seq), (Conversation::Inbox, Seq::ZERO));
        assert_eq!((message.from.as_str(), message.display_name.as_str()), ("alice", "alice"));
    }
    let (older, more) = page(&mut bob, user("alice"), newest[0].seq.get(), 3);
    assert_eq!((texts(&older), more), (vec!["a2".to_string(), "a3".into(), "a4".into()], true));
    let (oldest, more) = page(&mut bob, user("alice"), older[0].seq.get(), 3);
    assert_eq!((texts(&oldest), more), (vec!["a1".to_string()], false));
    // Sequences are the inbox's: carol's messages sit between alice's.
    assert_eq!(seqs(&oldest), [1]);
    assert_eq!(seqs(&older), [3, 5, 7]);

    let (carols, _) = all_pages(&mut bob, user("carol"), 0);
    assert_eq!(texts(&carols), ["c1", "c2", "c3"]);
    // Alice sees none of it: her inbox holds nothing from bob.
    assert_eq!(page(&mut alice, user("bob"), 0, 0), (Vec::new(), false));
    // A page from a sequence beyond the end is a page from the newest.
    assert_eq!(texts(&page(&mut bob, user("carol"), 999, 1).0), ["c3"]);
}

#[test]
fn a_page_looks_at_a_bounded_number_of_messages_and_the_same_request_goes_on() {
    let server = TestServer::with(|c| c.request_burst = 10_000);
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    flood_between(&mut alice, &mut carol);

    let (newest, more) = page(&mut bob, user("alice"), 0, 2);
    assert_eq!(texts(&newest), ["after the flood"], "the scan stopped in carol's messages");
    assert!(more);
    let before = newest[0].seq.get();
    // Nothing of alice's among the next messages looked at: an empty page that says more...
    let (empty, more) = page(&mut bob, user("alice"), before, 2);
    assert!(empty.is_empty() && more);
    // ...and the same request again goes on below where that one stopped.
    let (oldest, more) = page(&mut bob, user("alice"), before, 2);
    assert_eq!((texts(&oldest), more), (vec!["before the flood".to_string()], false));
    let (all, requests) = all_pages(&mut bob, user("alice"), 50);
    assert_eq!(texts(&all), ["before the flood", "after the flood"]);
    assert_eq!(requests, 3);
}

fn send_to(to: &str, id: u64, text: &str) -> Request {
    Request::Send {
        to: Target::User(to.into()),
        client_msg_id: ClientMsgId(id),
        transient: false,
        content: Content::text(text),
    }
}

#[test]
fn a_group_member_sees_what_was_sent_while_a_member() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let g = create_group(&mut alice, true);
    say(&mut alice, g, 1, "before bob");
    done(&mut alice, Request::AddMember { group_id: g, username: "bob".into() });
    say(&mut alice, g, 2, "with bob");
    let chat = Chat::Group(g);

    let (alices, more) = page(&mut alice, chat.clone(), 0, 0);
    assert!(!more);
    assert_eq!(event(&alices[0]), Some(GroupEvent::Created { by: "alice".into() }));
    assert_eq!(texts(&alices[1..2]), ["before bob"]);
    let (bobs, more) = page(&mut bob, chat.clone(), 0, 0);
    assert!(!more, "nothing before bob's joining is his");
    assert_eq!(event(&bobs[0]), Some(GroupEvent::Added { username: "bob".into(), by: "alice".into() }));
    assert_eq!((texts(&bobs[1..]), bobs[1].conversation), (vec!["with bob".to_string()], Conversation::Group(g)));
    // Asking from below his joining shows nothing either.
    assert_eq!(page(&mut bob, chat.clone(), bobs[0].seq.get(), 0), (Vec::new(), false));
    assert_eq!(
        refused(&mut carol, Request::History { chat: chat.clone(), before: Seq(0), limit: 0 }),
        ErrorCode::NotAMember
    );

    // Bob leaves, misses a message, and comes back: his view starts again at his return.
    done(&mut bob, Request::LeaveGroup { group_id: g });
    say(&mut alice, g, 3, "while bob was away");
    assert_eq!(
        refused(&mut bob, Request::History { chat: chat.clone(), before: Seq(0), limit: 0 }),
        ErrorCode::NotAMember
    );
    done(&mut bob, Request::JoinGroup { group_id: g });
    say(&mut alice, g, 4, "bob is back");
    let (bobs, more) = page(&mut bob, chat.clone(), 0, 0);
    assert!(!more);
    assert_eq!(event(&bobs[0]), Some(GroupEvent::Joined { username: "bob".into() }));
    assert_eq!(texts(&bobs[1..]), ["bob is back"]);
    let (alices, _) = page(&mut alice, chat, 0, 0);
    assert_eq!(texts(&alices).iter().filter(|t| !t.is_empty()).count(), 4, "alice sees all four");
}

#[test]
fn acknowledged_messages_stay_in_history_and_are_not_counted_as_stored() {
    let mut server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    for i in 1..=3u64 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    let mut bob = server.login("bob");
    read_and_ack(&mut bob, 3);
    assert_eq!(server.server().store().stats().unwrap().stored_messages, 0, "nothing is owed to anyone");
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["m1", "m2", "m3"]);
    drop(bob);
    server.restart();
    let mut bob = server.client();
    let reply = bob.login("bob", PASSWORD).unwrap();
    assert_eq!(crate::common::inbox_of(&reply), (Seq(3), Seq(3)), "the ack stuck though the messages stay");
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["m1", "m2", "m3"]);
    // Nothing is pushed again: the next push is the next message.
    alice = server.login("alice");
    alice.send_text("bob", ClientMsgId(4), "m4").unwrap();
    let next = bob.next_message().unwrap();
    assert_eq!((next.seq, next.prev_seq, text(&next)), (Seq(4), Seq(3), "m4".to_string()));
}

#[test]
fn with_no_history_window_a_message_goes_at_its_last_ack() {
    let server = TestServer::with(|c| c.history = Duration::ZERO);
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    alice.send_text("bob", ClientMsgId(1), "m1").unwrap();
    alice.send_text("bob", ClientMsgId(2), "m2").unwrap();
    bob.next_message().unwrap();
    bob.ack(Seq(1)).unwrap();
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["m2"], "only what is not acknowledged is kept");
    let g = create_group(&mut alice, false);
    done(&mut alice, Request::AddMember { group_id: g, username: "bob".into() });
    let (_, said) = say(&mut alice, g, 3, "to the group");
    for who in [&mut alice, &mut bob] {
        let reply = who.request(Request::Ack { conversation: Conversation::Group(g), up_to: said }).unwrap();
        assert_eq!(reply, Reply::Acked { conversation: Conversation::Group(g), up_to: said });
    }
    assert_eq!(page(&mut bob, Chat::Group(g), 0, 0), (Vec::new(), false));
}

#[test]
fn an_acknowledged_message_goes_once_older_than_the_window_and_an_unread_one_stays() {
    let window = Duration::from_millis(600);
    let mut server = TestServer::with(|c| c.history = window);
    server.register(&["carol"]);
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    alice.send_text("bob", ClientMsgId(1), "read").unwrap();
    alice.send_text("carol", ClientMsgId(1), "unread").unwrap();
    read_and_ack(&mut bob, 1);
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["read"], "younger than the window: kept");
    // A group's alike, once every member has acknowledged.
    let g = create_group(&mut alice, false);
    done(&mut alice, Request::AddMember { group_id: g, username: "bob".into() });
    let (_, said) = say(&mut alice, g, 2, "read by all");
    for who in [&mut alice, &mut bob] {
        who.request(Request::Ack { conversation: Conversation::Group(g), up_to: said }).unwrap();
    }
    assert_eq!(texts(&page(&mut bob, Chat::Group(g), 0, 0).0).last().map(String::as_str), Some("read by all"));
    // The workers' periodic pass deletes them once the window has passed, with nobody asking.
    eventually("the read message to go", SETTLE, || page(&mut bob, user("alice"), 0, 0).0.is_empty());
    eventually("the group's to go", SETTLE, || page(&mut bob, Chat::Group(g), 0, 0).0.is_empty());
    let store = server.server().store();
    let bob_uid = store.account("default/bob").unwrap().unwrap().user_id;
    assert_eq!(store.inbox.state(bob_uid.into()).unwrap().floor, Seq(1), "deleted by raising the floor");
    // Carol never read hers: it is still owed, whatever its age, across a restart too.
    std::thread::sleep(window);
    server.restart();
    let mut carol = server.login("carol");
    let owed = carol.next_message().unwrap();
    assert_eq!((owed.seq, text(&owed)), (Seq(1), "unread".to_string()));
}

#[test]
fn acknowledged_history_makes_room_within_the_quota_but_unread_messages_do_not() {
    // Each message counts about 8 KiB against a 64 KiB quota: 8 unread ones fit, not 9.
    let server = TestServer::with(|c| c.max_inbox_bytes = 64 * 1024);
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let big = |i: u64| Content { kind: MediaKind::File, body: vec![i as u8; 8000], media: None };
    for i in 1..=8u64 {
        alice.send_message("bob", ClientMsgId(i), big(i)).unwrap();
    }
    let quota_exceeded =
        |alice: &mut Client, i: u64| alice.send_message("bob", ClientMsgId(i), big(i)).unwrap_err().code();
    assert_eq!(quota_exceeded(&mut alice, 9), Some(ErrorCode::QuotaExceeded), "8 unread fill the quota");
    let mut bob = server.login("bob");
    read_and_ack(&mut bob, 8);
    // Read, those 8 are history: they make way for 8 new ones, oldest first...
    for i in 10..=17u64 {
        alice.send_message("bob", ClientMsgId(i), big(i)).unwrap();
    }
    // ...but never for more unread ones than the quota holds.
    assert_eq!(quota_exceeded(&mut alice, 18), Some(ErrorCode::QuotaExceeded));
    let (kept, more) = page(&mut bob, user("alice"), 0, 0);
    assert!(!more);
    assert_eq!(seqs(&kept), (9..=16).collect::<Vec<u64>>(), "every read message made way");
    // Reading them again lets the next one in, trimming the oldest read one.
    read_and_ack(&mut bob, 8);
    alice.send_message("bob", ClientMsgId(18), big(18)).unwrap();
    let (kept, _) = page(&mut bob, user("alice"), 0, 0);
    assert_eq!(kept.last().map(|m| m.content.body[0]), Some(18));
    assert!(kept.len() <= 8 && kept[0].seq > Seq(9), "the oldest read message went: {:?}", seqs(&kept));
}

#[test]
fn the_quota_counts_a_deleted_message_smaller_and_is_counted_again_after_a_restart() {
    let mut server = TestServer::with(|c| c.max_inbox_bytes = 64 * 1024);
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    let big = |i: u64| Content { kind: MediaKind::File, body: vec![i as u8; 8000], media: None };
    let mut ids = Vec::new();
    for i in 1..=8u64 {
        ids.push(alice.send_message("bob", ClientMsgId(i), big(i)).unwrap().0);
    }
    let full = |alice: &mut Client, i: u64| alice.send_message("bob", ClientMsgId(i), big(i)).unwrap_err().code();
    assert_eq!(full(&mut alice, 9), Some(ErrorCode::QuotaExceeded));
    // Counted again from the disk at the next start.
    drop(alice);
    server.restart();
    let mut alice = server.login("alice");
    assert_eq!(full(&mut alice, 9), Some(ErrorCode::QuotaExceeded));
    // A deleted message is counted at what is left of it (the event after it is small).
    done(&mut alice, delete(user("bob"), ids[0]));
    alice.send_message("bob", ClientMsgId(9), big(9)).unwrap();
    assert_eq!(full(&mut alice, 10), Some(ErrorCode::QuotaExceeded));
    // Read, all of it is history: counted again after a restart, and making way again.
    let mut bob = server.login("bob");
    let pushed = read_and_ack(&mut bob, 8);
    assert_eq!(pushed.last().map(|m| m.seq), Some(Seq(10)), "the erased message and the event passed over");
    drop((alice, bob));
    server.restart();
    let mut alice = server.login("alice");
    for i in 10..=17u64 {
        alice.send_message("bob", ClientMsgId(i), big(i)).unwrap();
    }
    assert_eq!(full(&mut alice, 18), Some(ErrorCode::QuotaExceeded));
}

#[test]
fn a_sender_deletes_its_direct_message_for_everyone() {
    let mut server = TestServer::start();
    server.register(&["carol"]);
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    let (m1, _, _) = alice.send_text("bob", ClientMsgId(1), "oops").unwrap();
    alice.send_text("bob", ClientMsgId(2), "fine").unwrap();
    read_and_ack(&mut bob, 2);
    // Only its sender may delete it, and only an id of this chat.
    assert_eq!(refused(&mut bob, delete(user("alice"), m1)), ErrorCode::Forbidden);
    assert_eq!(refused(&mut alice, delete(user("bob"), MessageId(999_999))), ErrorCode::BadRequest);
    done(&mut alice, delete(user("bob"), m1));
    done(&mut alice, delete(user("bob"), m1)); // a retry changes nothing more

    // Bob's session names no device: it is not sent the deletion event (an older client
    // could not decode it), and its stream goes on after it.
    alice.send_text("bob", ClientMsgId(3), "next").unwrap();
    let next = bob.next_message().unwrap();
    assert_eq!((next.seq, next.prev_seq, text(&next)), (Seq(4), Seq(2), "next".to_string()));
    // History shows it deleted in its place, and the event after.
    let (shown, _) = page(&mut bob, user("alice"), 0, 0);
    assert_eq!(seqs(&shown), [1, 2, 3, 4]);
    assert!(shows_deleted(&shown[0], "alice"), "{:?}", shown[0]);
    assert_eq!(shown[0].message_id, m1);
    assert_eq!(event(&shown[2]), Some(GroupEvent::MessageDeleted { message_id: m1, by: "alice".into() }));
    assert_eq!(texts(&shown[1..2]), ["fine"]);

    // An offline recipient learns it in order too: stored in its inbox, not pushed to a
    // session without a device.
    let (m2, _, _) = alice.send_text("carol", ClientMsgId(1), "for carol").unwrap();
    done(&mut alice, delete(user("carol"), m2));
    alice.send_text("carol", ClientMsgId(2), "after").unwrap();
    let mut carol = server.login("carol");
    let first = carol.next_message().unwrap();
    assert_eq!((first.seq, text(&first)), (Seq(3), "after".to_string()));
    let (shown, _) = page(&mut carol, user("alice"), 0, 0);
    assert!(shows_deleted(&shown[0], "alice"));
    assert_eq!(event(&shown[1]), Some(GroupEvent::MessageDeleted { message_id: m2, by: "alice".into() }));

    // Alice's sessions name no device: her own inbox keeps no copy and no event (a sender
    // with a named device: `a_deletion_adds_nothing_to_the_inbox_of_a_sender_with_no_named_device`).
    let (alices, _) = page(&mut alice, user("bob"), 0, 0);
    assert_eq!(alices.iter().filter_map(event).count(), 0);

    // Deletions are stored like messages: they survive a restart.
    drop((alice, bob, carol));
    server.restart();
    let mut bob = server.login("bob");
    let (shown, _) = page(&mut bob, user("alice"), 0, 0);
    assert!(shows_deleted(&shown[0], "alice"));
    assert_eq!(texts(&shown[1..2]), ["fine"]);
}

#[test]
fn a_message_is_deleted_in_a_group_by_its_sender_within_the_window() {
    let window = Duration::from_secs(1);
    let server = TestServer::with(|c| c.delete_window = window);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let g = create_group(&mut alice, false);
    done(&mut alice, Request::AddMember { group_id: g, username: "bob".into() });
    let (old, _) = say(&mut alice, g, 1, "old");
    std::thread::sleep(window);
    let (fresh, _) = say(&mut alice, g, 2, "fresh");
    let chat = Chat::Group(g);
    assert_eq!(refused(&mut bob, delete(chat.clone(), fresh)), ErrorCode::Forbidden, "not bob's");
    let late = alice.request(delete(chat.clone(), old)).unwrap_err();
    assert_eq!(late.code(), Some(ErrorCode::Forbidden), "past the window");
    assert!(late.to_string().contains("too late"), "{late}");
    done(&mut alice, delete(chat.clone(), fresh));
    let (shown, _) = page(&mut bob, chat, 0, 0);
    let last_two = &shown[shown.len() - 2..];
    assert!(shows_deleted(&last_two[0], "alice"));
    assert_eq!(event(&last_two[1]), Some(GroupEvent::MessageDeleted { message_id: fresh, by: "alice".into() }));
    assert_eq!(texts(&shown).iter().filter(|t| t.as_str() == "old").count(), 1, "the old one stays");
}

#[test]
fn clearing_hides_history_from_the_user_alone_and_never_moves_back() {
    let mut server = TestServer::start();
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    for i in 1..=4u64 {
        alice.send_text("bob", ClientMsgId(i), &format!("m{i}")).unwrap();
    }
    read_and_ack(&mut bob, 4);
    done(&mut bob, Request::ClearHistory { chat: user("alice"), up_to: Seq(2) });
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["m3", "m4"]);
    // The read state carries the mark, and what it covers is not unread.
    let Reply::ReadState { chats, .. } = bob.request(Request::ReadState).unwrap() else { panic!("not read state") };
    let with_alice = chats.iter().find(|c| c.chat == user("alice")).expect("the chat with alice");
    assert_eq!((with_alice.cleared_up_to, with_alice.unread, with_alice.last_seq), (Seq(2), 2, Seq(4)));
    // A lower mark leaves it where it is; a mark beyond the end or for nobody is refused.
    done(&mut bob, Request::ClearHistory { chat: user("alice"), up_to: Seq(1) });
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["m3", "m4"]);
    assert_eq!(refused(&mut bob, Request::ClearHistory { chat: user("alice"), up_to: Seq(5) }), ErrorCode::BadRequest);
    assert_eq!(
        refused(&mut bob, Request::ClearHistory { chat: user("nobody"), up_to: Seq(1) }),
        ErrorCode::UnknownUser
    );
    // In a group, for a member only; the others keep theirs.
    let g = create_group(&mut alice, false);
    done(&mut alice, Request::AddMember { group_id: g, username: "bob".into() });
    let (_, said) = say(&mut alice, g, 9, "hello group");
    done(&mut bob, Request::ClearHistory { chat: Chat::Group(g), up_to: said });
    assert_eq!(page(&mut bob, Chat::Group(g), 0, 0), (Vec::new(), false));
    assert_eq!(texts(&page(&mut alice, Chat::Group(g), 0, 0).0).last().map(String::as_str), Some("hello group"));
    let mut carol = server.user("carol");
    assert_eq!(refused(&mut carol, Request::ClearHistory { chat: Chat::Group(g), up_to: said }), ErrorCode::NotAMember);
    // The marks are durable.
    drop((alice, bob));
    server.restart();
    let mut bob = server.login("bob");
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["m3", "m4"]);
    assert_eq!(page(&mut bob, Chat::Group(g), 0, 0), (Vec::new(), false));
}

#[test]
fn a_support_conversation_has_history_for_its_customer_and_staff() {
    let mut server = TestServer::start();
    server.register(&["alice", "bob", "carol"]);
    server.open_shop("acme", &["bob"]);
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    let to_shop = Request::Send {
        to: Target::Shop("acme".into()),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("my order?"),
    };
    let Reply::Sent { message_id: question, .. } = alice.request(to_shop).unwrap() else { panic!("not sent") };
    let Conversation::Support(id) = bob.next_message().unwrap().conversation else { panic!("not support") };
    let answer = Request::Send {
        to: Target::Support(id),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("on its way"),
    };
    let Reply::Sent { message_id: reply, .. } = bob.request(answer).unwrap() else { panic!("not sent") };
    let chat = Chat::Support(id);
    // Each sees it as pushed to it: the staff member's message is the shop's to the customer.
    let (alices, _) = page(&mut alice, chat.clone(), 0, 0);
    assert_eq!(texts(&alices), ["my order?", "on its way"]);
    assert_eq!(
        (alices[1].from.as_str(), alices[1].sender, alices[1].display_name.as_str()),
        ("acme", SenderKind::Staff, "bob")
    );
    let (bobs, _) = page(&mut bob, chat.clone(), 0, 0);
    assert_eq!((bobs[1].from.as_str(), bobs[1].conversation), ("bob", Conversation::Support(id)));
    let mut carol = server.login("carol");
    assert_eq!(
        refused(&mut carol, Request::History { chat: chat.clone(), before: Seq(0), limit: 0 }),
        ErrorCode::NotAMember
    );
    // Each deletes its own messages only.
    assert_eq!(refused(&mut bob, delete(chat.clone(), question)), ErrorCode::Forbidden);
    assert_eq!(refused(&mut alice, delete(chat.clone(), reply)), ErrorCode::Forbidden);
    done(&mut bob, delete(chat.clone(), reply));
    let (alices, _) = page(&mut alice, chat, 0, 0);
    assert_eq!(alices.len(), 3);
    assert!(shows_deleted(&alices[1], "bob"));
    assert_eq!(event(&alices[2]), Some(GroupEvent::MessageDeleted { message_id: reply, by: "bob".into() }));
}

#[test]
fn a_services_messages_are_a_chat_of_their_own() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    let token = admin::add_service(server.server().store(), &in_default("news"), false).unwrap();
    let mut news = server.client();
    news.request(Request::ServiceLogin { name: "news".into(), token }).unwrap();
    let mut alice = server.user("alice");
    alice.send_text("bob", ClientMsgId(1), "from alice").unwrap();
    let notice = Request::ServiceSend {
        to: ServiceTarget::Users(vec!["bob".into()]),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("from the news"),
    };
    news.request(notice).unwrap();
    read_and_ack(&mut bob, 2);
    let (shown, _) = page(&mut bob, Chat::Service("news".into()), 0, 0);
    assert_eq!((texts(&shown), shown[0].sender), (vec!["from the news".to_string()], SenderKind::Service));
    assert_eq!(texts(&page(&mut bob, user("alice"), 0, 0).0), ["from alice"]);
    assert_eq!(refused(&mut bob, delete(Chat::Service("news".into()), shown[0].message_id)), ErrorCode::BadRequest);
    done(&mut bob, Request::ClearHistory { chat: Chat::Service("news".into()), up_to: shown[0].seq });
    assert_eq!(page(&mut bob, Chat::Service("news".into()), 0, 0), (Vec::new(), false));
}

#[test]
fn deletions_and_cleared_marks_survive_a_sigkill() {
    let data = DataDir::new();
    let mut daemon = daemon_with_users(data.path(), &["alice", "bob"]);
    let mut alice = logged_in(daemon.addr, "alice");
    let (m1, _, _) = alice.send_text("bob", ClientMsgId(1), "regretted").unwrap();
    alice.send_text("bob", ClientMsgId(2), "kept").unwrap();
    alice.send_text("bob", ClientMsgId(3), "cleared").unwrap();
    let mut bob = logged_in(daemon.addr, "bob");
    read_and_ack(&mut bob, 3);
    done(&mut alice, delete(user("bob"), m1));
    let Reply::Sent { seq: last, .. } = alice.request(send_to("bob", 4, "last")).unwrap() else { panic!("not sent") };
    done(&mut bob, Request::ClearHistory { chat: user("alice"), up_to: Seq(1) });
    // Killed at once: what the replies confirmed is in the commit log only.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let daemon = spawn_daemon(data.path(), &[]);
    let mut bob = logged_in(daemon.addr, "bob");
    let (shown, more) = page(&mut bob, user("alice"), 0, 0);
    assert!(!more);
    // Message 1 (deleted, and cleared by bob) is hidden; its event, and the rest, stay.
    assert_eq!(seqs(&shown), [2, 3, 4, last.get()]);
    assert_eq!(texts(&shown[..2]), ["kept", "cleared"]);
    assert_eq!(event(&shown[2]), Some(GroupEvent::MessageDeleted { message_id: m1, by: "alice".into() }));
    done(&mut bob, Request::ClearHistory { chat: user("alice"), up_to: Seq(3) });
    let (shown, _) = page(&mut bob, user("alice"), 0, 0);
    assert_eq!(seqs(&shown), [4, last.get()]);
    daemon.stop();
}

/// What a user's devices read goes once older than the window, also once every one of those
/// devices is forgotten (expired): the inbox's floor does not stay where they left it, nor
/// does a restart take it back there.
#[test]
fn read_history_goes_after_the_window_even_once_the_devices_that_read_it_are_forgotten() {
    let mut server = TestServer::with(|c| {
        c.history = Duration::from_millis(1500);
        c.device_expiry = Duration::from_millis(100);
    });
    server.register(&["alice", "bob"]);
    let mut alice = server.login("alice");
    let (mut phone, _) = server.login_device("bob", "phone");
    alice.send_text("bob", ClientMsgId(1), "read").unwrap();
    read_and_ack(&mut phone, 1);
    drop(phone);
    let store = server.server().store();
    let bob = store.account("default/bob").unwrap().unwrap().user_id;
    eventually("bob's phone to be forgotten", SETTLE, || store.devices(bob).unwrap().is_empty());
    server.restart();
    // A message for bob loads his inbox again, without any device record.
    server.login("alice").send_text("bob", ClientMsgId(2), "unread").unwrap();
    let store = server.server().store();
    eventually("what bob read to go once older than the window", SETTLE, || {
        store.inbox.state(bob.into()).unwrap().floor >= Seq(1)
    });
}

/// An empty page is remembered for the connection that asked: two devices paging back the
/// same chat each go on from their own stopping point, neither skipping nor starting over.
#[test]
fn two_devices_paging_one_chat_each_go_on_from_their_own_empty_page() {
    let server = TestServer::with(|c| c.request_burst = 10_000);
    server.register(&["bob"]);
    let (mut phone, _) = server.login_device("bob", "phone");
    let (mut laptop, _) = server.login_device("bob", "laptop");
    let mut alice = server.user("alice");
    let mut carol = server.user("carol");
    flood_between(&mut alice, &mut carol);
    let before = page(&mut phone, user("alice"), 0, 1).0[0].seq.get();

    let (empty, more) = page(&mut phone, user("alice"), before, 1);
    assert!(empty.is_empty() && more);
    // The laptop's same request starts from its own `before`: the phone's stopping point is
    // the phone's.
    let (empty, more) = page(&mut laptop, user("alice"), before, 1);
    assert!(empty.is_empty() && more);
    for device in [&mut phone, &mut laptop] {
        let (oldest, more) = page(device, user("alice"), before, 1);
        assert_eq!((texts(&oldest), more), (vec!["before the flood".to_string()], false));
    }
}

/// A sender whose clients all name no device keeps no sent copies, and a deletion adds no
/// event to its inbox either: its inbox stays what it was before devices.
#[test]
fn a_deletion_adds_nothing_to_the_inbox_of_a_sender_with_no_named_device() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    let (oops, _, _) = alice.send_text("bob", ClientMsgId(1), "oops").unwrap();
    let got = bob.next_message().unwrap();
    done(&mut alice, delete(user("bob"), oops));
    // Bob's worker hands alice's worker the deletion, then (after his mark) his receipt.
    done(&mut bob, Request::MarkRead { chat: user("alice"), up_to: got.seq });
    let store = server.server().store();
    let alice = store.account("default/alice").unwrap().unwrap().user_id;
    eventually("bob's receipt to reach alice's worker", SETTLE, || !store.read_receipts(alice).unwrap().is_empty());
    assert_eq!(store.state_across(LogId::Inbox, alice.into()).unwrap().last_seq, Seq::ZERO);

    // Once she has a named device, her own inbox has the event, in her chat with bob.
    let (mut phone, _) = server.login_device("alice", "phone");
    let (again, _, _) = phone.send_text("bob", ClientMsgId(2), "oops again").unwrap();
    done(&mut phone, delete(user("bob"), again));
    let deleted = GroupEvent::MessageDeleted { message_id: again, by: "alice".into() };
    eventually("the event in alice's inbox", SETTLE, || {
        page(&mut phone, user("bob"), 0, 0).0.iter().filter_map(event).any(|e| e == deleted)
    });
}

#[test]
fn a_connection_that_reads_history_as_fast_as_it_may_is_slowed_down() {
    // Room for two pages' worth of reading, and next to no refill.
    let server = TestServer::with(|c| {
        c.fanout_burst = 600_000;
        c.fanout_rate = 1;
    });
    server.register(&["alice", "bob"]);
    let mut alice = server.login("alice");
    let history = || Request::History { chat: user("bob"), before: Seq(0), limit: 10 };
    for _ in 0..2 {
        assert!(matches!(alice.request(history()).unwrap(), Reply::HistoryPage { .. }));
    }
    assert_eq!(refused(&mut alice, history()), ErrorCode::RateLimited);
    assert_eq!(refused(&mut alice, Request::ReadState), ErrorCode::RateLimited, "one budget for all reading");
    // Another connection has its own budget.
    let mut bob = server.login("bob");
    assert!(matches!(bob.request(Request::ReadState).unwrap(), Reply::ReadState { .. }));
}

/// Alice's two messages to bob with more of carol's between them than one page may look
/// at (sent without waiting, then every receipt checked).
fn flood_between(alice: &mut Client, carol: &mut Client) {
    alice.send_text("bob", ClientMsgId(1), "before the flood").unwrap();
    let ids: Vec<u32> = (1..=5000u64).map(|i| carol.send(send_to("bob", i, "flood")).unwrap()).collect();
    for id in ids {
        assert!(matches!(carol.reply_to(id).unwrap(), Reply::Sent { .. }));
    }
    alice.send_text("bob", ClientMsgId(2), "after the flood").unwrap();
}
