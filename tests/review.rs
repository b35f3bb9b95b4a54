//! Review of issue 14 (devices, history, read state): scenarios that show where the merged
//! parts disagree with protocol.md.

use crate::common::{eventually, in_default, login_device, open_store, TestServer, SETTLE};
use confab::admin;
use confab::client::Client;
use confab::protocol::{Chat, ClientMsgId, Content, Conversation, Push, Reply, Request, Seq, Target};
use std::time::Duration;

fn ack(client: &mut Client, conversation: Conversation, up_to: u64) {
    let reply = client.request(Request::Ack { conversation, up_to: Seq(up_to) }).unwrap();
    assert!(matches!(reply, Reply::Acked { .. }), "{reply:?}");
}

/// A staff member taken on starts where every reader has read (claims.rs `add_staff`), but
/// that start is kept in memory only: after a restart the shop reloads its position from
/// `support_acks`, which holds none, so it reads as the floor, and history every reader had
/// read is pushed to it as a backlog (and holds the floor).
#[test]
fn a_staff_member_taken_on_starts_after_what_was_read_across_a_restart() {
    let mut server = TestServer::start();
    server.register(&["alice", "bob", "carol"]);
    server.stop();
    let token = {
        let store = open_store(server.data_dir());
        admin::add_shop(&store, &in_default("acme")).unwrap();
        admin::add_staff(&store, &in_default("acme"), &in_default("bob"), 100).unwrap();
        admin::add_service(&store, &in_default("shopfront"), false).unwrap()
    };
    server.restart();
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    let hi = Content::text("hi");
    let sent =
        Request::Send { to: Target::Shop("acme".into()), client_msg_id: ClientMsgId(1), transient: false, content: hi };
    alice.request(sent).unwrap();
    let first = bob.next_message().unwrap();
    let Conversation::Support(id) = first.conversation else { panic!("{first:?}") };
    // Everyone who reads it has read message 1 (alice sent it, bob acks it).
    ack(&mut bob, Conversation::Support(id), 1);
    let mut service = server.client();
    service.request(Request::ServiceLogin { name: "shopfront".into(), token }).unwrap();
    let add = Request::AddStaff { shop: "acme".into(), username: "carol".into() };
    assert_eq!(service.request(add).unwrap(), Reply::Done);
    drop((bob, alice, service));
    server.restart();

    let mut carol = server.login("carol");
    let mut alice = server.login("alice");
    let next = Content::text("anyone?");
    let sent =
        Request::Send { to: Target::Support(id), client_msg_id: ClientMsgId(2), transient: false, content: next };
    alice.request(sent).unwrap();
    let pushed = carol.next_message().unwrap();
    assert_eq!(
        (pushed.seq, pushed.prev_seq),
        (Seq(2), Seq(1)),
        "carol starts after what every reader had read, as she did before the restart"
    );
}

/// protocol.md "Devices": a session that names no device "is never sent a SentCopy nor any
/// other frame only named devices know". `ReadReceipt` is one (push 13, added with devices),
/// yet `read_state::receipt` pushes it to every connection of the sender.
#[test]
fn a_session_that_names_no_device_is_not_pushed_read_receipts() {
    let server = TestServer::start();
    server.register(&["alice", "bob"]);
    let mut legacy = server.login("alice");
    let mut phone = server.client();
    login_device(&mut phone, "alice", "phone");
    let mut bob = server.login("bob");
    legacy.send_text("bob", ClientMsgId(1), "read me").unwrap();
    let got = bob.next_message().unwrap();
    let mark = Request::MarkRead { chat: Chat::User("alice".into()), up_to: got.seq };
    assert_eq!(bob.request(mark).unwrap(), Reply::Done);
    // The named device hears of it: the receipt is kept and pushed by now.
    loop {
        if let Push::ReadReceipt { .. } = phone.next_push().unwrap() {
            break;
        }
    }
    bob.send_text("alice", ClientMsgId(2), "after").unwrap();
    loop {
        match legacy.next_push().unwrap() {
            Push::Message(m) if m.content.body == b"after" => break,
            Push::ReadReceipt { .. } => panic!("a ReadReceipt reached a session that names no device"),
            _ => {}
        }
    }
}

/// With history, what a user's devices read is kept for the window, then deleted. Once every
/// device of the user is forgotten (expired), `UserState::lowest` is the floor, so the
/// inbox's floor never rises again: what the forgotten devices read is never deleted.
#[test]
fn read_history_goes_after_the_window_even_once_the_devices_that_read_it_are_forgotten() {
    let server = TestServer::with(|c| {
        c.history = Duration::from_millis(1500);
        c.device_expiry = Duration::from_millis(100);
    });
    server.register(&["alice", "bob"]);
    let mut alice = server.login("alice");
    let (mut phone, _) = server.login_device("bob", "phone");
    alice.send_text("bob", ClientMsgId(1), "read").unwrap();
    let got = phone.next_message().unwrap();
    ack(&mut phone, Conversation::Inbox, got.seq.get());
    drop(phone);
    let store = server.server().store();
    let bob = store.account("default/bob").unwrap().unwrap().user_id;
    eventually("bob's phone to be forgotten", SETTLE, || store.devices(bob).unwrap().is_empty());
    eventually("what bob read to go once older than the window", SETTLE, || {
        store.inbox.state(bob.into()).unwrap().floor >= Seq(1)
    });
}
