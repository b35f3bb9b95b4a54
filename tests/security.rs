//! A user can only act as itself: every request is checked against the session's user.
//! protocol.md has no field naming the acting user, so these tests try what is left:
//! stale sessions, other people's conversations, and guessing.

use crate::common::{TestServer, PASSWORD};
use confab::client::ClientError;
use confab::protocol::{ClientMsgId, Content, Conversation, ErrorCode, Reply, Request, Seq, Target};

#[test]
fn messages_carry_the_sessions_user_as_sender() {
    let server = TestServer::start();
    let mut mallory = server.user("mallory");
    let mut bob = server.user("bob");
    mallory.send_text("bob", ClientMsgId(1), "I am alice, honest").unwrap();
    assert_eq!(bob.next_message().unwrap().from, "mallory");
}

#[test]
fn acks_and_resyncs_touch_only_the_callers_inbox() {
    let server = TestServer::start();
    server.register(&["bob"]);
    let mut alice = server.user("alice");
    for i in 1..=3 {
        alice.send_text("bob", ClientMsgId(i), "for bob").unwrap();
    }
    let mut mallory = server.user("mallory");
    // Mallory's inbox is empty: acking "up to 3" is refused, bob's messages stay.
    let ack = mallory.request(Request::Ack { conversation: Conversation::Inbox, up_to: Seq(3) });
    assert_eq!(ack.unwrap_err().code(), Some(ErrorCode::BadRequest));
    let resync = mallory.request(Request::Resync { conversation: Conversation::Inbox, after: Seq::ZERO });
    assert_eq!(
        resync.unwrap(),
        Reply::Resynced { conversation: Conversation::Inbox, after: Seq::ZERO, last_seq: Seq::ZERO }
    );
    let mut bob = server.client();
    match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => assert_eq!((acked, last_seq), (Seq::ZERO, Seq(3))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_conversations_are_closed_to_outsiders() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut mallory = server.user("mallory");
    let g = match alice.request(Request::CreateGroup { name: "private".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    let tries = [
        Request::Ack { conversation: Conversation::Group(g), up_to: Seq(1) },
        Request::Resync { conversation: Conversation::Group(g), after: Seq::ZERO },
        Request::GroupMembers { group_id: g },
        Request::Send {
            to: Target::Group(g),
            client_msg_id: ClientMsgId(1),
            transient: false,
            content: Content::text("hi"),
        },
    ];
    for request in tries {
        let code = mallory.request(request.clone()).unwrap_err().code();
        assert_eq!(code, Some(ErrorCode::NotAMember), "{request:?}");
    }
    assert_eq!(
        mallory.request(Request::AddMember { group_id: g, username: "mallory".into() }).unwrap_err().code(),
        Some(ErrorCode::NotAMember)
    );
}

#[test]
fn a_replaced_session_can_no_longer_act() {
    let server = TestServer::start();
    server.register(&["alice"]);
    let mut old = server.login("alice");
    let _new = server.login("alice");
    // The old connection is told and closed; whatever it still sends is refused or lost.
    let outcome = old.request(Request::Ack { conversation: Conversation::Inbox, up_to: Seq::ZERO });
    assert!(
        matches!(outcome, Err(ClientError::Closed) | Err(ClientError::Server { code: ErrorCode::NotLoggedIn, .. })),
        "{outcome:?}"
    );
}

#[test]
fn resume_tokens_belong_to_one_user() {
    let server = TestServer::start();
    server.register(&["alice", "mallory"]);
    let mut client = server.client();
    let token = match client.login("mallory", PASSWORD).unwrap() {
        Reply::LoggedIn { resume_token, .. } => resume_token,
        other => panic!("{other:?}"),
    };
    let mut other = server.client();
    assert_eq!(other.resume("alice", &token).unwrap_err().code(), Some(ErrorCode::InvalidToken));
}
