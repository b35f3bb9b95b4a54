//! Read state: protocol.md "Read state". A user marks a chat read up to a sequence; the
//! mark is the user's (every session of it sees it), never goes back, and decides the unread
//! counts; the senders of direct messages learn what was read unless the reader turned
//! receipts off; a group's members see how far each other has read.

use crate::common::daemon::{daemon_with_users, logged_in, logged_in_device, spawn_daemon};
use crate::common::{DataDir, TestServer};
use confab::client::Client;
use confab::protocol::{
    Chat, ChatState, ClientMsgId, Content, Conversation, ErrorCode, GroupId, Push, ReadPosition, Reply, Request, Seq,
    SupportId, Target,
};

/// Stores `text` from `client` to `to`; returns the receipt's sequence (of `to`'s inbox).
fn send(client: &mut Client, to: &str, id: u64, text: &str) -> Seq {
    send_to(client, Target::User(to.into()), id, text)
}

fn send_to(client: &mut Client, to: Target, id: u64, text: &str) -> Seq {
    let request = Request::Send { to, client_msg_id: ClientMsgId(id), transient: false, content: Content::text(text) };
    match client.request(request).unwrap() {
        Reply::Sent { seq, duplicate: false, .. } => seq,
        other => panic!("{other:?}"),
    }
}

fn user(name: &str) -> Chat {
    Chat::User(name.into())
}

fn mark(client: &mut Client, chat: Chat, up_to: Seq) {
    assert_eq!(client.request(Request::MarkRead { chat, up_to }).unwrap(), Reply::Done);
}

fn refused(client: &mut Client, request: Request) -> ErrorCode {
    client.request(request).unwrap_err().code().expect("a server error")
}

/// The caller's read state: every chat, and whether it sends receipts.
fn read_state(client: &mut Client) -> (Vec<ChatState>, bool) {
    match client.request(Request::ReadState).unwrap() {
        Reply::ReadState { chats, read_receipts } => (chats, read_receipts),
        other => panic!("{other:?}"),
    }
}

/// One chat of the caller's read state.
fn state_of(client: &mut Client, chat: &Chat) -> ChatState {
    let (chats, _) = read_state(client);
    chats.into_iter().find(|c| c.chat == *chat).unwrap_or_else(|| panic!("no {chat:?} in the read state"))
}

fn chat_state(chat: Chat, last_seq: u64, read_up_to: u64, unread: u64) -> ChatState {
    ChatState { chat, last_seq: Seq(last_seq), read_up_to: Seq(read_up_to), unread, cleared_up_to: Seq(0) }
}

/// The next read receipt pushed to `client` (other pushes are passed over).
fn next_receipt(client: &mut Client) -> (String, Seq) {
    loop {
        if let Push::ReadReceipt { reader, up_to } = client.next_push().unwrap() {
            return (reader, up_to);
        }
    }
}

/// The next read mark pushed to `client` (other pushes are passed over).
fn next_mark(client: &mut Client) -> (Chat, Seq) {
    loop {
        if let Push::ReadMark { chat, up_to } = client.next_push().unwrap() {
            return (chat, up_to);
        }
    }
}

fn set_receipts(client: &mut Client, enabled: bool) {
    assert_eq!(client.request(Request::SetReadReceipts { enabled }).unwrap(), Reply::Done);
}

fn create_group(client: &mut Client, name: &str) -> GroupId {
    match client.request(Request::CreateGroup { name: name.into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    }
}

fn positions(client: &mut Client, group_id: GroupId) -> Vec<(String, u64)> {
    match client.request(Request::ReadPositions { group_id }).unwrap() {
        Reply::ReadPositions { group_id: g, readers } if g == group_id => {
            readers.into_iter().map(|ReadPosition { username, read_up_to }| (username, read_up_to.get())).collect()
        }
        other => panic!("{other:?}"),
    }
}

fn position(name: &str, read_up_to: u64) -> (String, u64) {
    (name.to_string(), read_up_to)
}

#[test]
fn a_mark_counts_down_the_unread_never_goes_back_and_is_the_users_in_its_next_session() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    for (id, text) in [(1, "are you coming?"), (2, "it starts at six"), (3, "bring a cake")] {
        send(&mut bob, "alice", id, text);
    }
    let mut alice = server.login("alice");
    // A note to herself is in her inbox too, and her own: never unread.
    assert_eq!(send(&mut alice, "alice", 1, "buy a cake"), Seq(4));
    let (chats, read_receipts) = read_state(&mut alice);
    assert_eq!(chats, [chat_state(user("alice"), 4, 0, 0), chat_state(user("bob"), 3, 0, 3)]);
    assert!(read_receipts, "receipts are on unless turned off");

    mark(&mut alice, user("bob"), Seq(2));
    assert_eq!(state_of(&mut alice, &user("bob")), chat_state(user("bob"), 3, 2, 1));
    // A late mark (a slow device's) changes nothing; one beyond the inbox is refused.
    mark(&mut alice, user("bob"), Seq(1));
    assert_eq!(state_of(&mut alice, &user("bob")), chat_state(user("bob"), 3, 2, 1));
    assert_eq!(refused(&mut alice, Request::MarkRead { chat: user("bob"), up_to: Seq(5) }), ErrorCode::BadRequest);
    assert_eq!(
        refused(&mut alice, Request::MarkRead { chat: user("not a name"), up_to: Seq(1) }),
        ErrorCode::InvalidName
    );

    // The mark is the user's, not the connection's: a new session finds it (one session per
    // user today; see below for two devices at once).
    let mut again = server.login("alice");
    assert_eq!(state_of(&mut again, &user("bob")), chat_state(user("bob"), 3, 2, 1));
    mark(&mut again, user("bob"), Seq(3));
    assert_eq!(state_of(&mut again, &user("bob")), chat_state(user("bob"), 3, 3, 0));
}

#[test]
fn in_a_group_what_others_sent_after_the_mark_is_unread_and_members_see_each_others_positions() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let g = create_group(&mut alice, "friends");
    assert_eq!(alice.request(Request::AddMember { group_id: g, username: "bob".into() }).unwrap(), Reply::Done);
    // bob joined after the group's first event (1): his mark starts there.
    assert_eq!(positions(&mut alice, g), [position("alice", 0), position("bob", 1)]);
    send_to(&mut alice, Target::Group(g), 1, "one");
    send_to(&mut alice, Target::Group(g), 2, "two");
    assert_eq!(send_to(&mut bob, Target::Group(g), 1, "three"), Seq(5));

    // alice: only bob's message is news to her (the events are her own); bob: her event
    // that added him and her two messages, not his own.
    assert_eq!(state_of(&mut alice, &Chat::Group(g)), chat_state(Chat::Group(g), 5, 0, 1));
    assert_eq!(state_of(&mut bob, &Chat::Group(g)), chat_state(Chat::Group(g), 5, 1, 3));
    mark(&mut bob, Chat::Group(g), Seq(4));
    assert_eq!(state_of(&mut bob, &Chat::Group(g)), chat_state(Chat::Group(g), 5, 4, 0));
    mark(&mut bob, Chat::Group(g), Seq(3));
    mark(&mut alice, Chat::Group(g), Seq(5));
    assert_eq!(state_of(&mut alice, &Chat::Group(g)), chat_state(Chat::Group(g), 5, 5, 0));
    assert_eq!(positions(&mut bob, g), [position("alice", 5), position("bob", 4)], "marks never go back");

    let beyond = Request::MarkRead { chat: Chat::Group(g), up_to: Seq(6) };
    assert_eq!(refused(&mut bob, beyond), ErrorCode::BadRequest);
    // Members only.
    assert_eq!(refused(&mut carol, Request::MarkRead { chat: Chat::Group(g), up_to: Seq(1) }), ErrorCode::NotAMember);
    assert_eq!(refused(&mut carol, Request::ReadPositions { group_id: g }), ErrorCode::NotAMember);
    let (carols, _) = read_state(&mut carol);
    assert!(carols.is_empty(), "carol is in no chat: {carols:?}");
    let unknown = Request::MarkRead { chat: Chat::Group(GroupId(999_999)), up_to: Seq(1) };
    assert_eq!(refused(&mut alice, unknown), ErrorCode::UnknownGroup);

    // A member with receipts off is left out of the positions; its mark still works.
    set_receipts(&mut bob, false);
    assert_eq!(positions(&mut alice, g), [position("alice", 5)]);
    mark(&mut bob, Chat::Group(g), Seq(5));
    assert_eq!(state_of(&mut bob, &Chat::Group(g)), chat_state(Chat::Group(g), 5, 5, 0));

    // A member who leaves takes its mark along; back again, it starts where it rejoined.
    assert_eq!(bob.request(Request::LeaveGroup { group_id: g }).unwrap(), Reply::Done);
    set_receipts(&mut bob, true);
    assert_eq!(alice.request(Request::AddMember { group_id: g, username: "bob".into() }).unwrap(), Reply::Done);
    assert_eq!(positions(&mut alice, g), [position("alice", 5), position("bob", 6)]);
}

#[test]
fn a_sender_online_learns_what_was_read_unless_the_reader_turned_receipts_off() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let (mut alice, _) = device(&server, "alice", "phone");
    let mut bob = server.user("bob");
    let first = send(&mut alice, "bob", 1, "lunch?");
    mark(&mut bob, user("alice"), first);
    // The receipt names bob and the sequence alice's Sent receipt carried.
    assert_eq!(next_receipt(&mut alice), ("bob".to_string(), first));

    set_receipts(&mut bob, false);
    assert!(!read_state(&mut bob).1);
    let second = send(&mut alice, "bob", 2, "at noon?");
    mark(&mut bob, user("alice"), second);
    assert_eq!(state_of(&mut bob, &user("alice")), chat_state(user("alice"), 2, 2, 0), "the mark itself works");
    // On again: the next receipt alice gets is for the third message. One for the second
    // would have come before it, the same way.
    set_receipts(&mut bob, true);
    let third = send(&mut alice, "bob", 3, "or one?");
    mark(&mut bob, user("alice"), third);
    assert_eq!(next_receipt(&mut alice), ("bob".to_string(), third));
    // Marking one's own notes tells nobody; marking a chat again changes nothing.
    mark(&mut bob, user("alice"), third);
}

#[test]
fn a_sender_who_was_away_learns_at_each_login_what_was_read_meanwhile() {
    let server = TestServer::start();
    server.register(&["alice", "carol"]);
    let (mut alice, _) = device(&server, "alice", "phone");
    let mut bob = server.user("bob");
    let to_bob = send(&mut alice, "bob", 1, "call me");
    let to_carol = send(&mut alice, "carol", 2, "call me too");
    drop(alice);
    mark(&mut bob, user("alice"), to_bob);
    let mut carol = server.login("carol");
    mark(&mut carol, user("alice"), to_carol);

    // Every login (a phone in the morning, the laptop later) is told the latest of each.
    for name in ["phone", "laptop"] {
        let (mut alice, _) = device(&server, "alice", name);
        let mut receipts = vec![next_receipt(&mut alice), next_receipt(&mut alice)];
        receipts.sort();
        assert_eq!(receipts, [("bob".to_string(), to_bob), ("carol".to_string(), to_carol)]);
    }
}

#[test]
fn marks_and_the_receipts_setting_survive_a_restart() {
    let mut server = TestServer::start();
    server.register(&["alice"]);
    let (mut alice, _) = device(&server, "alice", "phone");
    let mut bob = server.user("bob");
    let g = create_group(&mut alice, "pals");
    assert_eq!(alice.request(Request::AddMember { group_id: g, username: "bob".into() }).unwrap(), Reply::Done);
    send_to(&mut alice, Target::Group(g), 1, "hi all");
    send(&mut alice, "bob", 2, "one");
    let two = send(&mut alice, "bob", 3, "two");
    mark(&mut bob, user("alice"), Seq(1));
    mark(&mut bob, Chat::Group(g), Seq(3));
    assert_eq!(next_receipt(&mut alice), ("bob".to_string(), Seq(1)));
    set_receipts(&mut bob, false);
    mark(&mut bob, user("alice"), two);
    drop((alice, bob));

    server.restart();
    let mut bob = server.login("bob");
    let (chats, read_receipts) = read_state(&mut bob);
    assert!(!read_receipts);
    assert_eq!(chats, [chat_state(user("alice"), 2, 2, 0), chat_state(Chat::Group(g), 3, 3, 0)]);
    // alice still holds the receipt bob sent while his receipts were on, and no other.
    let (mut alice, _) = device(&server, "alice", "phone");
    assert_eq!(next_receipt(&mut alice), ("bob".to_string(), Seq(1)));
}

#[test]
fn a_mark_answered_done_survives_a_kill() {
    let data = DataDir::new();
    let mut daemon = daemon_with_users(data.path(), &["alice", "bob"]);
    let (mut alice, _) = logged_in_device(daemon.addr, "alice", "phone");
    let mut bob = logged_in(daemon.addr, "bob");
    send(&mut alice, "bob", 1, "one");
    let two = send(&mut alice, "bob", 2, "two");
    mark(&mut bob, user("alice"), two);
    // The receipt leaves alice's worker only once it is on disk.
    assert_eq!(next_receipt(&mut alice), ("bob".to_string(), two));
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let daemon = spawn_daemon(data.path(), &[]);
    let mut bob = logged_in(daemon.addr, "bob");
    assert_eq!(state_of(&mut bob, &user("alice")), chat_state(user("alice"), 2, 2, 0));
    let (mut alice, _) = logged_in_device(daemon.addr, "alice", "phone");
    assert_eq!(next_receipt(&mut alice), ("bob".to_string(), two));
}

#[test]
fn a_support_conversation_is_read_by_its_customer_and_its_staff() {
    let mut server = TestServer::start();
    server.register(&["alice", "bob", "carol"]);
    server.open_shop("acme", &["bob"]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    send_to(&mut alice, Target::Shop("acme".into()), 1, "where is my order?");
    let id = loop {
        if let Push::Message(m) = bob.next_push().unwrap() {
            let Conversation::Support(id) = m.conversation else { panic!("{m:?}") };
            break id;
        }
    };
    assert_eq!(send_to(&mut bob, Target::Support(id), 1, "on its way"), Seq(2));
    let chat = Chat::Support(id);
    assert_eq!(state_of(&mut alice, &chat), chat_state(chat.clone(), 2, 0, 1), "the reply is news to alice");
    mark(&mut alice, chat.clone(), Seq(2));
    assert_eq!(state_of(&mut alice, &chat), chat_state(chat.clone(), 2, 2, 0));
    // Staff find a conversation in their read state once they mark it.
    mark(&mut bob, chat.clone(), Seq(1));
    assert_eq!(state_of(&mut bob, &chat), chat_state(chat.clone(), 2, 1, 0), "his own reply is not news");
    assert_eq!(refused(&mut carol, Request::MarkRead { chat: chat.clone(), up_to: Seq(1) }), ErrorCode::NotAMember);
    let beyond = Request::MarkRead { chat, up_to: Seq(3) };
    assert_eq!(refused(&mut alice, beyond), ErrorCode::BadRequest);
    let nowhere = Request::MarkRead { chat: Chat::Support(SupportId(999_999)), up_to: Seq(1) };
    assert_eq!(refused(&mut alice, nowhere), ErrorCode::NotAMember);
}

#[test]
fn a_user_keeps_marks_of_at_most_two_thousand_chats() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    send(&mut bob, "alice", 1, "hi");
    // Marks of chats with users that need not exist (an account deleted since): pipelined.
    let ids: Vec<u32> = (0..2_100)
        .map(|n| alice.send(Request::MarkRead { chat: user(&format!("user{n:04}")), up_to: Seq(1) }).unwrap())
        .collect();
    for id in ids {
        assert_eq!(alice.reply_to(id).unwrap(), Reply::Done);
    }
    mark(&mut alice, user("bob"), Seq(1));
    let (chats, _) = read_state(&mut alice);
    assert_eq!(chats.len(), 2_000, "the oldest marks went to make room");
    assert_eq!(chats.iter().find(|c| c.chat == user("bob")), Some(&chat_state(user("bob"), 1, 1, 0)));
}

/// A logged-in session of `device`, one of the user's devices.
fn device(server: &TestServer, name: &str, device: &str) -> (Client, Vec<ChatState>) {
    match server.login_device(name, device) {
        (client, Reply::DeviceLoggedIn { chats, .. }) => (client, chats),
        (_, other) => panic!("{other:?}"),
    }
}

#[test]
fn a_mark_on_one_device_clears_the_unread_count_on_the_others() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut bob = server.user("bob");
    let first = send(&mut bob, "alice", 1, "are you coming?");
    let (mut laptop, chats) = device(&server, "alice", "laptop");
    assert_eq!(chats, [chat_state(user("bob"), 1, 0, 1)], "the login carries the read state");
    let (mut phone, _) = device(&server, "alice", "phone");

    mark(&mut laptop, user("bob"), first);
    assert_eq!(next_mark(&mut phone), (user("bob"), first));
    assert_eq!(state_of(&mut phone, &user("bob")).unread, 0);
    // The device that marked is not told its own mark: the first it hears is the phone's.
    let second = send(&mut bob, "alice", 2, "it starts at six");
    mark(&mut phone, user("bob"), second);
    assert_eq!(next_mark(&mut laptop), (user("bob"), second));
    // A device that logs in later starts with the counts cleared.
    let (_tablet, chats) = device(&server, "alice", "tablet");
    assert_eq!(chats, [chat_state(user("bob"), 2, 2, 0)]);
}

/// `ReadMark` and `ReadReceipt` are frames only named devices know: a session that names no
/// device (an older client) is pushed neither, live or at its login, while the user's named
/// device is pushed both.
#[test]
fn a_session_that_names_no_device_is_not_pushed_read_receipts() {
    let server = TestServer::start();
    server.register(&["alice", "bob"]);
    let mut legacy = server.login("alice");
    let (mut phone, _) = device(&server, "alice", "phone");
    let mut bob = server.login("bob");
    let sent = send(&mut legacy, "bob", 1, "read me");
    bob.next_message().unwrap();
    mark(&mut bob, user("alice"), sent);
    assert_eq!(next_receipt(&mut phone), ("bob".to_string(), sent));
    let got = send(&mut bob, "alice", 1, "and you?");
    mark(&mut phone, user("bob"), got);
    // The phone's mark is made: the next message comes after whatever it was pushed.
    send(&mut bob, "alice", 2, "last");
    let only_messages = |client: &mut Client| loop {
        match client.next_push().unwrap() {
            Push::Message(m) if m.content.body == b"last" => break,
            Push::ReadReceipt { .. } | Push::ReadMark { .. } => panic!("pushed to a session that names no device"),
            _ => {}
        }
    };
    only_messages(&mut legacy);
    // At its next login too: the receipt alice holds is not pushed before the backlog.
    drop(legacy);
    only_messages(&mut server.login("alice"));
}
