//! Deleting a direct message for everyone across nodes (protocol.md "History"): the
//! sender's home checks that the message is not one the sender received, the recipient's
//! home erases it, appends the `MessageDeleted` event and answers, and the sender's home
//! erases the sender's copy and appends the event for the sender's other devices. While
//! the recipient's home is down the deletion is `Unavailable`, never a hang.

use super::{homed_on, retry_while_unavailable, text_of, unavailable, TestCluster};
use confab::client::{Client, ClientError};
use confab::protocol::{
    Chat, ClientMsgId, Conversation, ErrorCode, GroupEvent, MediaKind, Message, MessageId, Push, Reply, Request,
};

fn delete(client: &mut Client, peer: &str, message_id: MessageId) -> Result<Reply, ClientError> {
    client.request(Request::DeleteMessage { chat: Chat::User(peer.into()), message_id })
}

/// The next stored inbox message or sent copy pushed to `client` (presence and the like
/// passed over).
fn next_inbox(client: &mut Client) -> Message {
    loop {
        match client.next_push().expect("a push") {
            Push::Message(m) if m.conversation == Conversation::Inbox => return m,
            Push::SentCopy { message, .. } => return message,
            _ => continue,
        }
    }
}

fn deleted(message_id: MessageId, by: &str) -> Option<GroupEvent> {
    Some(GroupEvent::MessageDeleted { message_id, by: by.into() })
}

/// Whether a history message shows as deleted: no content, the event naming itself.
fn shows_deleted(message: &Message, by: &str) -> bool {
    message.content.kind == MediaKind::System
        && message.content.body.is_empty()
        && message.event == deleted(message.message_id, by)
}

/// The whole history of the caller's chat with `peer`, oldest first.
fn history(client: &mut Client, peer: &str) -> Vec<Message> {
    let request = Request::History { chat: Chat::User(peer.into()), before: Default::default(), limit: 0 };
    match client.request(request).expect("a history page") {
        Reply::HistoryPage { messages, more: false, .. } => messages,
        other => panic!("expected the one page of the chat with {peer}, got {other:?}"),
    }
}

#[test]
fn a_sender_deletes_its_message_to_a_user_on_another_node_for_everyone() {
    let cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    cluster.register(&[&alice, &bob]);
    let (mut phone, _) = cluster.device(&alice, "phone");
    let (mut laptop, _) = cluster.device(&alice, "laptop");
    let (mut bob_client, _) = cluster.device(&bob, "desk");

    let (oops, _, _) = phone.send_text(&bob, ClientMsgId(1), "oops").unwrap();
    phone.send_text(&bob, ClientMsgId(2), "fine").unwrap();
    assert_eq!(text_of(&next_inbox(&mut bob_client).content), "oops");
    assert_eq!(text_of(&next_inbox(&mut bob_client).content), "fine");
    assert_eq!(text_of(&next_inbox(&mut laptop).content), "oops");
    assert_eq!(text_of(&next_inbox(&mut laptop).content), "fine");

    // Only its sender may delete it (bob's home refuses him), and only an id of the chat
    // (the recipient's home refuses one it does not hold).
    let refused = delete(&mut bob_client, &alice, oops).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");
    let unknown = delete(&mut phone, &bob, MessageId(999_999)).unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::BadRequest), "{unknown}");

    // alice (node 1) deletes it: bob's home (node 2) answers, and pushes him the event.
    assert_eq!(delete(&mut phone, &bob, oops).unwrap(), Reply::Done);
    let event = next_inbox(&mut bob_client);
    assert_eq!((event.from.as_str(), event.event), (alice.as_str(), deleted(oops, &alice)));
    // Her laptop is told by her home, in her own inbox.
    let event = next_inbox(&mut laptop);
    assert_eq!((event.from.as_str(), event.event), (alice.as_str(), deleted(oops, &alice)));
    // A retry changes nothing more.
    assert_eq!(delete(&mut phone, &bob, oops).unwrap(), Reply::Done);

    // Both histories show it deleted in its place, and the event after the rest.
    let bobs = history(&mut bob_client, &alice);
    assert_eq!(bobs.len(), 3, "{bobs:?}");
    assert!(shows_deleted(&bobs[0], &alice), "{:?}", bobs[0]);
    assert_eq!(text_of(&bobs[1].content), "fine");
    assert_eq!(bobs[2].event, deleted(oops, &alice));
    let alices = history(&mut laptop, &bob);
    assert_eq!(alices.len(), 3, "{alices:?}");
    assert!(shows_deleted(&alices[0], &alice), "{:?}", alices[0]);
    assert_eq!(text_of(&alices[1].content), "fine");
    assert_eq!(alices[2].event, deleted(oops, &alice));
}

#[test]
fn a_deletion_while_the_recipients_home_is_down_is_unavailable_and_goes_through_when_it_returns() {
    let mut cluster = TestCluster::start();
    let (alice, bob) = (homed_on(1, "alice"), homed_on(2, "bob"));
    cluster.register(&[&alice, &bob]);
    let (mut phone, _) = cluster.device(&alice, "phone");
    let (oops, _, _) = phone.send_text(&bob, ClientMsgId(1), "oops").unwrap();

    // bob's home is killed: the deletion is refused with a retry time, at once or after
    // the cluster's timeout, but answered (the client's read timeout would fail a hang).
    cluster.nodes.kill(2);
    unavailable(delete(&mut phone, &bob, oops));
    unavailable(delete(&mut phone, &bob, oops));

    // It returns: the retried deletion goes through, and bob finds it done at his login.
    cluster.nodes.restart(2);
    let done = retry_while_unavailable("alice's deletion", || delete(&mut phone, &bob, oops)).unwrap();
    assert_eq!(done, Reply::Done);
    let (mut bob_client, _) = cluster.device(&bob, "desk");
    let bobs = history(&mut bob_client, &alice);
    assert_eq!(bobs.len(), 2, "{bobs:?}");
    assert!(shows_deleted(&bobs[0], &alice), "{:?}", bobs[0]);
    assert_eq!(bobs[1].event, deleted(oops, &alice));
}
