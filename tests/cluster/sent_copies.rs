//! Sent copies across nodes: what a user sends from one named device to a user homed on
//! another node is stored at the recipient's home, and its copy at the sender's home
//! (protocol.md "Devices"): pushed to the sender's other devices as `SentCopy`, kept in
//! the sender's history of the chat, caught up by a device that logs in later.

use super::{homed_on, text_of, TestCluster};
use crate::common::device_inbox_of;
use confab::client::{Client, ClientError};
use confab::protocol::{Chat, ClientMsgId, Conversation, Message, Push, Reply, Request, Seq};
use std::time::Duration;

/// A stored inbox message or a sent copy, as a device sees it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A message received: seq, prev_seq, from, text.
    Got(u64, u64, String, String),
    /// A sent copy: seq, prev_seq, to, text.
    Copy(u64, u64, String, String),
}

/// The next stored inbox message or sent copy pushed to `client`, with the message.
fn next_inbox(client: &mut Client) -> (Seen, Message) {
    loop {
        match client.next_push().expect("a push") {
            Push::Message(m) if m.conversation == Conversation::Inbox => {
                return (Seen::Got(m.seq.get(), m.prev_seq.get(), m.from.clone(), text_of(&m.content)), m)
            }
            Push::SentCopy { to, message: m } => {
                assert_eq!(m.conversation, Conversation::Inbox);
                return (Seen::Copy(m.seq.get(), m.prev_seq.get(), to, text_of(&m.content)), m);
            }
            _ => continue,
        }
    }
}

fn got(seq: u64, prev: u64, from: &str, text: &str) -> Seen {
    Seen::Got(seq, prev, from.into(), text.into())
}

fn copy(seq: u64, prev: u64, to: &str, text: &str) -> Seen {
    Seen::Copy(seq, prev, to.into(), text.into())
}

/// The whole history of the caller's chat with `peer`: (seq, from, text), oldest first.
fn history(client: &mut Client, peer: &str) -> Vec<(u64, String, String)> {
    let chat = Chat::User(peer.into());
    match client.request(Request::History { chat: chat.clone(), before: Seq(0), limit: 0 }).expect("a history page") {
        Reply::HistoryPage { chat: answered, messages, more: false } if answered == chat => {
            messages.iter().map(|m| (m.seq.get(), m.from.clone(), text_of(&m.content))).collect()
        }
        other => panic!("expected the one page of the chat with {peer}, got {other:?}"),
    }
}

#[test]
fn a_message_to_a_user_on_another_node_is_copied_to_the_senders_other_devices_and_history() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    cluster.register(&[&alice]);
    let mut bob_client = cluster.user(&bob);
    let (mut laptop, _) = cluster.device(&alice, "laptop");
    let (mut phone, _) = cluster.device(&alice, "phone");

    // alice writes from her laptop (node 1) to bob (node 2): the receipt is bob's home's.
    let (message_id, seq, duplicate) = laptop.send_text(&bob, ClientMsgId(1), "see you at six").unwrap();
    assert_eq!((seq, duplicate), (Seq(1), false));

    // Her phone is pushed the copy, stored at her home, with the message's id and sender.
    let (seen, m) = next_inbox(&mut phone);
    assert_eq!(seen, copy(1, 0, &bob, "see you at six"));
    assert_eq!((m.message_id, m.from.as_str(), m.display_name.as_str()), (message_id, alice.as_str(), alice.as_str()));
    let received = bob_client.next_message().unwrap();
    assert_eq!((received.message_id, received.from.as_str()), (message_id, alice.as_str()));
    assert_eq!(text_of(&received.content), "see you at six");

    // A retry of the send is the same message: no second copy anywhere.
    let (again, seq, duplicate) = laptop.send_text(&bob, ClientMsgId(1), "see you at six").unwrap();
    assert_eq!((again, seq, duplicate), (message_id, Seq(1), true));

    // bob answers: both devices get it after the copy. The laptop sent the message while
    // caught up, so it was never pushed the copy (its prev_seq shows the gap); the phone was.
    bob_client.send_text(&alice, ClientMsgId(1), "ok").unwrap();
    assert_eq!(next_inbox(&mut laptop).0, got(2, 0, &bob, "ok"));
    assert_eq!(next_inbox(&mut phone).0, got(2, 1, &bob, "ok"));

    // Both sides of the chat are in alice's history, from either device.
    let both = vec![(1, alice.clone(), "see you at six".to_string()), (2, bob.clone(), "ok".to_string())];
    assert_eq!(history(&mut laptop, &bob), both);
    assert_eq!(history(&mut phone, &bob), both);

    // A device new to alice starts where her furthest device is (the laptop, which
    // counted its own message as read) and is pushed what follows; her history holds the
    // rest of the chat there too.
    let (mut tablet, reply) = cluster.device(&alice, "tablet");
    assert_eq!(device_inbox_of(&reply), (Seq(1), Seq(2)));
    assert_eq!(next_inbox(&mut tablet).0, got(2, 1, &bob, "ok"));
    assert_eq!(history(&mut tablet, &bob), both);

    // Nothing more: the retry made no copy.
    phone.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(matches!(phone.next_push(), Err(ClientError::Timeout)));
}
