//! Customer support: protocol.md "Customer support". A customer writes to a shop; the
//! shop's staff answer; the first to answer claims the conversation.

use crate::common::daemon::{confabd, spawn_daemon};
use crate::common::{in_default, open_store, DataDir, TestServer, PASSWORD};
use confab::admin;
use confab::client::Client;
use confab::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, Push, Reply, Request, SenderKind, Seq, SupportId, SupportInfo,
    Target,
};
use confab::Config;
use std::process::Command;

/// A server with the shop `acme` and its `staff`, and these other users registered.
fn shop_server(staff: &[&str], others: &[&str], tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut server = TestServer::with(tweak);
    let everyone: Vec<&str> = staff.iter().chain(others).copied().collect();
    server.register(&everyone);
    server.open_shop("acme", staff);
    server
}

/// What a test sees of a support push: a message, or a claim changing hands.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// seq, prev_seq, from, sender kind, display name, text
    Message(u64, u64, String, SenderKind, String, String),
    Claimed(Option<String>),
}

fn message(seq: u64, prev: u64, from: &str, kind: SenderKind, name: &str, text: &str) -> Seen {
    Seen::Message(seq, prev, from.into(), kind, name.into(), text.into())
}

fn from_customer(seq: u64, prev: u64, text: &str) -> Seen {
    message(seq, prev, "alice", SenderKind::User, "alice", text)
}

/// The next message or claim pushed to `client` in conversation `id` (other pushes, such
/// as presence, are passed over).
fn seen(client: &mut Client, id: SupportId) -> Seen {
    loop {
        match client.next_push().unwrap() {
            Push::Message(m) => {
                assert_eq!(m.conversation, Conversation::Support(id));
                let text = String::from_utf8(m.content.body).unwrap();
                return Seen::Message(m.seq.get(), m.prev_seq.get(), m.from, m.sender, m.display_name, text);
            }
            Push::SupportClaimed { conversation, shop, customer, agent } => {
                assert_eq!((conversation, shop.as_str(), customer.as_str()), (id, "acme", "alice"));
                return Seen::Claimed(agent);
            }
            _ => continue,
        }
    }
}

fn send(client: &mut Client, to: Target, id: u64, text: &str) -> Result<Reply, ErrorCode> {
    let request = Request::Send { to, client_msg_id: ClientMsgId(id), transient: false, content: Content::text(text) };
    client.request(request).map_err(|e| e.code().expect("a server error"))
}

/// Sends and returns the receipt's sequence.
fn say(client: &mut Client, to: Target, id: u64, text: &str) -> u64 {
    match send(client, to, id, text) {
        Ok(Reply::Sent { seq, duplicate: false, .. }) => seq.get(),
        other => panic!("{other:?}"),
    }
}

fn to_shop() -> Target {
    Target::Shop("acme".into())
}

fn refused(client: &mut Client, request: Request) -> ErrorCode {
    client.request(request).unwrap_err().code().expect("a server error")
}

fn done(client: &mut Client, request: Request) {
    assert_eq!(client.request(request).unwrap(), Reply::Done);
}

/// The id of the conversation a staff member was just pushed the first message of.
fn first_message_id(staff: &mut Client) -> (SupportId, Seen) {
    match staff.next_push().unwrap() {
        Push::Message(m) => {
            let Conversation::Support(id) = m.conversation else { panic!("{m:?}") };
            let text = String::from_utf8(m.content.body).unwrap();
            (id, Seen::Message(m.seq.get(), m.prev_seq.get(), m.from, m.sender, m.display_name, text))
        }
        other => panic!("{other:?}"),
    }
}

fn list(client: &mut Client, shop: &str) -> Result<Vec<SupportInfo>, ErrorCode> {
    let request = Request::ListSupport { shop: shop.into(), after: SupportId(0), limit: 0 };
    match client.request(request) {
        Ok(Reply::SupportList { conversations, more: false }) => Ok(conversations),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.code().expect("a server error")),
    }
}

#[test]
fn online_staff_get_a_customers_messages_the_first_reply_claims_and_claims_move() {
    let server = shop_server(&["bob", "carol", "dave"], &["alice"], |_| {});
    let mut bob = server.login("bob");
    bob.request(Request::Rename { display_name: "Bob Smith".into() }).unwrap();
    let mut carol = server.login("carol");
    let mut alice = server.login("alice");

    // alice writes; the two staff members online get it; dave is offline.
    assert_eq!(say(&mut alice, to_shop(), 1, "where is my order?"), 1);
    let (id, first) = first_message_id(&mut bob);
    assert_eq!(first, from_customer(1, 0, "where is my order?"));
    assert_eq!(first_message_id(&mut carol), (id, from_customer(1, 0, "where is my order?")));
    assert_eq!(say(&mut alice, to_shop(), 2, "order 42"), 2);
    for staff in [&mut bob, &mut carol] {
        assert_eq!(seen(staff, id), from_customer(2, 1, "order 42"));
    }
    // dave logs in and catches up, in order.
    let mut dave = server.login("dave");
    assert_eq!(seen(&mut dave, id), from_customer(1, 0, "where is my order?"));
    assert_eq!(seen(&mut dave, id), from_customer(2, 1, "order 42"));

    // bob's reply claims the conversation: every staff member online is told; alice sees
    // the reply from the shop, naming bob.
    assert_eq!(say(&mut bob, Target::Support(id), 1, "on its way"), 3);
    for staff in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(seen(staff, id), Seen::Claimed(Some("bob".into())));
    }
    assert_eq!(seen(&mut alice, id), message(3, 2, "acme", SenderKind::Staff, "Bob Smith", "on its way"));
    // From now on only bob (and alice) is pushed the conversation.
    assert_eq!(say(&mut alice, Target::Support(id), 3, "thanks"), 4);
    assert_eq!(seen(&mut bob, id), from_customer(4, 2, "thanks"), "his own reply (3) is passed over");
    // Another agent may not answer it while bob holds it, nor claim it.
    assert_eq!(send(&mut carol, Target::Support(id), 1, "me too").unwrap_err(), ErrorCode::Forbidden);
    assert_eq!(refused(&mut carol, Request::ClaimSupport { conversation: id }), ErrorCode::Forbidden);
    assert_eq!(refused(&mut carol, Request::ReleaseSupport { conversation: id }), ErrorCode::Forbidden);

    // bob hands it to carol: she gets what she missed, he gets nothing more.
    let to_carol = Request::HandOverSupport { conversation: id, to: "carol".into() };
    let no_staff = Request::HandOverSupport { conversation: id, to: "alice".into() };
    assert_eq!(refused(&mut bob, no_staff), ErrorCode::NotAMember, "only staff take conversations");
    done(&mut bob, to_carol);
    for staff in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(seen(staff, id), Seen::Claimed(Some("carol".into())));
    }
    assert_eq!(seen(&mut carol, id), message(3, 2, "bob", SenderKind::Staff, "Bob Smith", "on its way"));
    assert_eq!(seen(&mut carol, id), from_customer(4, 3, "thanks"));
    assert_eq!(say(&mut alice, to_shop(), 4, "hello?"), 5);
    assert_eq!(seen(&mut carol, id), from_customer(5, 4, "hello?"));
    assert_eq!(say(&mut carol, Target::Support(id), 1, "carol here"), 6);
    // (prev_seq 3: her own messages 4 and 5 are not pushed back to her.)
    assert_eq!(seen(&mut alice, id), message(6, 3, "acme", SenderKind::Staff, "carol", "carol here"));

    // carol releases it: every staff member is told, and those who were left out are
    // pushed what they missed, in order, after the release.
    done(&mut carol, Request::ReleaseSupport { conversation: id });
    for staff in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(seen(staff, id), Seen::Claimed(None));
    }
    assert_eq!(seen(&mut bob, id), from_customer(5, 4, "hello?"), "nothing of carol's time reached bob before");
    assert_eq!(seen(&mut bob, id), message(6, 5, "carol", SenderKind::Staff, "carol", "carol here"));
    for (seq, prev, text) in [(3, 2, "on its way"), (4, 3, "thanks"), (5, 4, "hello?")] {
        let expected = match seq {
            3 => message(seq, prev, "bob", SenderKind::Staff, "Bob Smith", text),
            _ => from_customer(seq, prev, text),
        };
        assert_eq!(seen(&mut dave, id), expected);
    }
    assert_eq!(seen(&mut dave, id), message(6, 5, "carol", SenderKind::Staff, "carol", "carol here"));
    assert_eq!(say(&mut alice, to_shop(), 5, "bye"), 7);
    for staff in [&mut bob, &mut dave] {
        assert_eq!(seen(staff, id), from_customer(7, 6, "bye"));
    }
    assert_eq!(seen(&mut carol, id), from_customer(7, 5, "bye"), "her own 6 is passed over");

    // A staff member's listing: the conversation, unclaimed, with the caller's position.
    dave.request(Request::Ack { conversation: Conversation::Support(id), up_to: Seq(7) }).unwrap();
    let listed = list(&mut dave, "acme").unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(
        (info.conversation, info.customer.as_str(), info.claimed_by.as_deref(), info.last_seq, info.acked),
        (id, "alice", None, Seq(7), Seq(7))
    );
    assert!(info.last_ms > 0);
}

#[test]
fn an_offline_customer_gets_the_replies_at_login_in_order_and_acks_them() {
    let mut server = shop_server(&["bob"], &["alice"], |_| {});
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    say(&mut alice, to_shop(), 1, "is it in stock?");
    let (id, _) = first_message_id(&mut bob);
    alice.request(Request::Logout).unwrap();
    drop(alice);

    assert_eq!(say(&mut bob, Target::Support(id), 1, "yes"), 2);
    assert_eq!(say(&mut bob, Target::Support(id), 2, "two left"), 3);
    let mut alice = server.login("alice");
    assert_eq!(seen(&mut alice, id), message(2, 1, "acme", SenderKind::Staff, "bob", "yes"));
    assert_eq!(seen(&mut alice, id), message(3, 2, "acme", SenderKind::Staff, "bob", "two left"));
    let acked = alice.request(Request::Ack { conversation: Conversation::Support(id), up_to: Seq(3) }).unwrap();
    assert_eq!(acked, Reply::Acked { conversation: Conversation::Support(id), up_to: Seq(3) });
    // Her own listing (shop ""): the conversation, claimed by bob, read to the end.
    let mine = list(&mut alice, "").unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].conversation, mine[0].shop.as_str(), mine[0].claimed_by.as_deref(), mine[0].acked, mine[0].last_seq),
        (id, "acme", Some("bob"), Seq(3), Seq(3))
    );
    // Acknowledged: not pushed again at the next login.
    drop(alice);
    let mut alice = server.login("alice");
    assert_eq!(say(&mut bob, Target::Support(id), 3, "anything else?"), 4);
    assert_eq!(seen(&mut alice, id), message(4, 3, "acme", SenderKind::Staff, "bob", "anything else?"));
    // A resync pushes again after the point asked for.
    let resync = Request::Resync { conversation: Conversation::Support(id), after: Seq(2) };
    assert_eq!(
        alice.request(resync).unwrap(),
        Reply::Resynced { conversation: Conversation::Support(id), after: Seq(3), last_seq: Seq(4) },
        "not before her ack"
    );
    assert_eq!(seen(&mut alice, id), message(4, 3, "acme", SenderKind::Staff, "bob", "anything else?"));

    // A restart keeps the claim and the positions: bob's listing still names him, and
    // alice is pushed only what she has not acknowledged.
    drop((alice, bob));
    server.restart();
    let mut bob = server.login("bob");
    let listed = list(&mut bob, "acme").unwrap();
    assert_eq!((listed[0].claimed_by.as_deref(), listed[0].last_seq), (Some("bob"), Seq(4)));
    let mut alice = server.login("alice");
    assert_eq!(seen(&mut alice, id), message(4, 3, "acme", SenderKind::Staff, "bob", "anything else?"));
}

#[test]
fn outsiders_cannot_read_write_ack_or_list_a_shops_conversations() {
    let server = shop_server(&["bob"], &["alice", "mallory"], |config| config.max_support_per_user = 1);
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    let mut mallory = server.login("mallory");
    say(&mut alice, to_shop(), 1, "private question");
    let (id, _) = first_message_id(&mut bob);

    let support = Conversation::Support(id);
    assert_eq!(send(&mut mallory, Target::Support(id), 1, "let me in").unwrap_err(), ErrorCode::NotAMember);
    assert_eq!(refused(&mut mallory, Request::Ack { conversation: support, up_to: Seq(1) }), ErrorCode::NotAMember);
    assert_eq!(refused(&mut mallory, Request::Resync { conversation: support, after: Seq(0) }), ErrorCode::NotAMember);
    assert_eq!(refused(&mut mallory, Request::ClaimSupport { conversation: id }), ErrorCode::NotAMember);
    assert_eq!(list(&mut mallory, "acme").unwrap_err(), ErrorCode::Forbidden);
    // An id that names nothing reads the same as one that is not yours.
    let nowhere = Conversation::Support(SupportId(999_999));
    assert_eq!(refused(&mut mallory, Request::Ack { conversation: nowhere, up_to: Seq(1) }), ErrorCode::NotAMember);
    // The customer reads and writes, but answers for nobody.
    assert_eq!(refused(&mut alice, Request::ClaimSupport { conversation: id }), ErrorCode::Forbidden);
    assert_eq!(list(&mut alice, "acme").unwrap_err(), ErrorCode::Forbidden);
    // Staff answer by id, not as customers of their own shop.
    assert_eq!(send(&mut bob, to_shop(), 9, "hi me").unwrap_err(), ErrorCode::Forbidden);
    // No such shop.
    assert_eq!(send(&mut alice, Target::Shop("nowhere".into()), 2, "hello").unwrap_err(), ErrorCode::UnknownShop);
    assert_eq!(list(&mut alice, "nowhere").unwrap_err(), ErrorCode::UnknownShop);
    // Transient messages are not for conversations that are stored.
    let transient =
        Request::Send { to: to_shop(), client_msg_id: ClientMsgId(0), transient: true, content: Content::text("x") };
    assert_eq!(refused(&mut alice, transient), ErrorCode::BadRequest);
    // mallory may open a conversation of her own.
    say(&mut mallory, to_shop(), 1, "my own question");
    // Mallory's conversation is hers alone: alice's ack of it is refused.
    let (mine, _) = first_message_id(&mut bob);
    assert_ne!(mine, id);
    let theirs = Request::Ack { conversation: Conversation::Support(mine), up_to: Seq(1) };
    assert_eq!(refused(&mut alice, theirs), ErrorCode::NotAMember);
}

#[test]
fn a_resend_with_the_same_client_msg_id_gets_the_first_receipt_and_is_stored_once() {
    let server = shop_server(&["bob"], &["alice"], |_| {});
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    // The first message opens the conversation; its resend finds it.
    let first = send(&mut alice, to_shop(), 7, "hello").unwrap();
    let again = send(&mut alice, to_shop(), 7, "hello").unwrap();
    let (Reply::Sent { message_id, seq, timestamp_ms, duplicate: false }, Reply::Sent { duplicate: true, .. }) =
        (&first, &again)
    else {
        panic!("{first:?} {again:?}")
    };
    assert_eq!(again, Reply::Sent { message_id: *message_id, seq: *seq, timestamp_ms: *timestamp_ms, duplicate: true });
    let (id, _) = first_message_id(&mut bob);
    // The same by id.
    let by_id = send(&mut alice, Target::Support(id), 7, "hello").unwrap();
    assert_eq!(by_id, again);
    assert_eq!(say(&mut alice, to_shop(), 8, "second"), 2);
    assert_eq!(seen(&mut bob, id), from_customer(2, 1, "second"), "the resends stored nothing");
}

#[test]
fn a_service_manages_staff_within_the_limit_and_removing_an_agent_releases_its_claims() {
    let mut server = TestServer::with(|config| config.max_staff_per_shop = 2);
    server.register(&["alice", "bob", "carol", "dave"]);
    server.stop();
    let token = {
        let store = open_store(server.data_dir());
        admin::add_shop(&store, &in_default("acme")).unwrap();
        admin::add_service(&store, &in_default("shopfront"), false).unwrap()
    };
    server.restart();
    let mut service = server.client();
    service.request(Request::ServiceLogin { name: "shopfront".into(), token }).unwrap();
    let add = |who: &str| Request::AddStaff { shop: "acme".into(), username: who.into() };
    let remove = |who: &str| Request::RemoveStaff { shop: "acme".into(), username: who.into() };
    let mut alice = server.login("alice");
    say(&mut alice, to_shop(), 1, "anyone there?");

    // bob is online when he is made staff: the waiting message comes to him at once.
    let mut bob = server.login("bob");
    done(&mut service, add("bob"));
    let (id, first) = first_message_id(&mut bob);
    assert_eq!(first, from_customer(1, 0, "anyone there?"));
    done(&mut service, add("carol"));
    assert_eq!(refused(&mut service, add("dave")), ErrorCode::LimitReached);
    assert_eq!(refused(&mut service, add("bob")), ErrorCode::AlreadyMember);
    assert_eq!(refused(&mut service, add("nobody")), ErrorCode::UnknownUser);
    assert_eq!(
        refused(&mut service, Request::AddStaff { shop: "none".into(), username: "bob".into() }),
        ErrorCode::UnknownShop
    );
    assert_eq!(refused(&mut alice, add("alice")), ErrorCode::Forbidden, "for services only");

    let mut carol = server.login("carol");
    assert_eq!(seen(&mut carol, id), from_customer(1, 0, "anyone there?"));
    say(&mut bob, Target::Support(id), 1, "me");
    assert_eq!(seen(&mut bob, id), Seen::Claimed(Some("bob".into())));
    assert_eq!(seen(&mut carol, id), Seen::Claimed(Some("bob".into())));
    // bob leaves the shop: his claim is released, carol is told and gets what she missed.
    done(&mut service, remove("bob"));
    assert_eq!(seen(&mut carol, id), Seen::Claimed(None));
    assert_eq!(seen(&mut carol, id), message(2, 1, "bob", SenderKind::Staff, "bob", "me"));
    assert_eq!(refused(&mut service, remove("bob")), ErrorCode::NotAMember);
    // bob reads the conversation no more.
    let ack = Request::Ack { conversation: Conversation::Support(id), up_to: Seq(1) };
    assert_eq!(refused(&mut bob, ack), ErrorCode::NotAMember);
    assert_eq!(say(&mut alice, to_shop(), 2, "hello?"), 3);
    assert_eq!(seen(&mut carol, id), from_customer(3, 2, "hello?"));
    // There is room for dave now.
    done(&mut service, add("dave"));
}

#[test]
fn conversations_a_user_may_open_are_bounded() {
    let mut server = shop_server(&["bob"], &["alice"], |config| config.max_support_per_user = 1);
    server.stop();
    admin::add_shop(&open_store(server.data_dir()), &in_default("other")).unwrap();
    server.restart();
    let mut alice = server.login("alice");
    say(&mut alice, to_shop(), 1, "one");
    assert_eq!(send(&mut alice, Target::Shop("other".into()), 2, "two").unwrap_err(), ErrorCode::LimitReached);
    assert_eq!(say(&mut alice, to_shop(), 3, "the same shop is no new conversation"), 2);
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn shops_made_with_confabd_keep_receipted_messages_through_sigkill() {
    let dir = DataDir::new();
    let data = dir.path();
    for user in ["alice", "bob"] {
        stdout(&confabd(data, &["user", "add", user], &format!("{PASSWORD}\n")));
    }
    assert!(stdout(&confabd(data, &["shop", "add", "acme"], "")).starts_with("created shop acme (id "));
    assert_eq!(stdout(&confabd(data, &["shop", "staff", "add", "acme", "bob"], "")), "bob is staff of acme\n");
    assert_eq!(stdout(&confabd(data, &["shop", "staff", "list", "acme"], "")), "bob\n");
    let nobody = confabd(data, &["shop", "staff", "add", "acme", "nobody"], "");
    assert!(!nobody.status.success() && String::from_utf8_lossy(&nobody.stderr).contains("no such user"));
    let listed = stdout(&confabd(data, &["shop", "list"], ""));
    assert!(listed.starts_with("acme\t") && listed.ends_with("\t1 staff\t0 conversations\n"), "{listed}");

    let mut daemon = spawn_daemon(data, &[]);
    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    for n in 1..=20 {
        assert_eq!(say(&mut alice, to_shop(), n, &format!("message {n}")), n);
    }
    // Killed without a chance to flush anything: every receipted message must survive.
    let status = Command::new("kill").arg("-KILL").arg(daemon.child.id().to_string()).status().unwrap();
    assert!(status.success());
    daemon.child.wait().unwrap();

    let mut daemon = spawn_daemon(data, &[]);
    let (mut bob, _) = Client::connect(daemon.addr, "t").unwrap();
    bob.login("bob", PASSWORD).unwrap();
    let (id, first) = first_message_id(&mut bob);
    assert_eq!(first, from_customer(1, 0, "message 1"));
    for n in 2..=20 {
        assert_eq!(seen(&mut bob, id), from_customer(n, n - 1, &format!("message {n}")));
    }
    // Stopped with messages bob has not acknowledged: the shop is kept unless forced.
    let status = Command::new("kill").arg("-TERM").arg(daemon.child.id().to_string()).status().unwrap();
    assert!(status.success());
    daemon.child.wait().unwrap();
    let kept = confabd(data, &["shop", "remove", "acme"], "");
    assert!(!kept.status.success());
    assert!(String::from_utf8_lossy(&kept.stderr).contains("unacknowledged messages; use --force"), "{kept:?}");
    assert_eq!(stdout(&confabd(data, &["shop", "remove", "acme", "--force"], "")), "removed shop acme\n");
    assert_eq!(stdout(&confabd(data, &["shop", "list"], "")), "");
    let verified = stdout(&confabd(data, &["storage", "--verify"], ""));
    assert!(verified.contains("ok: no problems found"), "{verified}");
}

/// Waits until none of `names` is online, as `client` sees it.
fn wait_offline(client: &mut Client, names: &[&str]) {
    crate::common::eventually("the others offline", crate::common::SETTLE, || {
        match client.request(Request::ListOnline { after: String::new(), limit: 100 }).unwrap() {
            Reply::Online { users, .. } => !users.iter().any(|u| names.contains(&u.username.as_str())),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn offline_readers_who_answer_a_conversation_are_notified_as_in_a_group() {
    use confab::protocol::{Chat, PushEvent, PushPlatform};
    let server = TestServer::with(|config| config.push.window = std::time::Duration::from_millis(100));
    let store = server.server().store();
    // bob, carol (staff), alice (the customer) and dave each have a phone, and go offline.
    for name in ["bob", "carol", "alice", "dave"] {
        let mut client = server.user(name);
        let device = Request::SetPushDevice {
            device: "phone".into(),
            platform: PushPlatform::Apns,
            token: format!("tok-{name}"),
            previews: true,
        };
        assert_eq!(client.request(device).unwrap(), Reply::Done);
    }
    admin::add_shop(store, &in_default("acme")).unwrap();
    for name in ["bob", "carol"] {
        admin::add_staff(store, &in_default("acme"), &in_default(name), 100).unwrap();
    }
    let token = admin::add_service(store, &in_default("relay"), true).unwrap();
    let mut gateway = server.client();
    gateway.request(Request::ServiceLogin { name: "relay".into(), token }).unwrap();
    assert!(matches!(gateway.request(Request::SubscribePush).unwrap(), Reply::PushSubscribed { .. }));
    let mut next_event = || loop {
        if let Push::PushEvent(event) = gateway.next_push().unwrap() {
            return event;
        }
    };
    let summary =
        |e: &PushEvent| (e.recipient.clone(), e.chat.clone(), e.chat_name.clone(), e.sender.clone(), e.sender_kind);

    // The staff are offline: alice's message notifies both, in the shop's chat.
    let mut alice = server.login("alice");
    wait_offline(&mut alice, &["bob", "carol"]);
    say(&mut alice, to_shop(), 1, "where is my order?");
    let id = store.support_between(&in_default("alice"), &in_default("acme")).unwrap().expect("stored");
    let mut notified = vec![summary(&next_event()), summary(&next_event())];
    notified.sort_by(|a, b| a.0.cmp(&b.0));
    let from_alice =
        |to: &str| (to.to_string(), Chat::Support(id), "acme".to_string(), "alice".to_string(), SenderKind::User);
    assert_eq!(notified, vec![from_alice("bob"), from_alice("carol")]);
    drop(alice);

    // bob answers (claiming it) while alice is away: she is notified of the shop's reply,
    // naming bob; carol, left out by the claim, is not: the next event is dave's, for a
    // message sent after.
    let mut bob = server.login("bob");
    wait_offline(&mut bob, &["alice"]);
    say(&mut bob, Target::Support(id), 1, "on its way");
    let reply = next_event();
    let from_shop = ("alice".to_string(), Chat::Support(id), "acme".to_string(), "acme".to_string(), SenderKind::Staff);
    assert_eq!(summary(&reply), from_shop);
    assert_eq!(reply.sender_name, "bob", "the agent is named");
    bob.send_text("dave", ClientMsgId(2), "sentinel").unwrap();
    assert_eq!(next_event().recipient, "dave", "no event for carol in between");
}

#[test]
fn a_reply_the_full_disk_refuses_claims_nothing() {
    let server = shop_server(&["bob", "carol"], &["alice"], |_| {});
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    let mut alice = server.login("alice");
    say(&mut alice, to_shop(), 1, "hello?");
    let (id, _) = first_message_id(&mut bob);
    first_message_id(&mut carol);
    // A commit that fails leaves the shop's partition refusing new messages until its log
    // takes writes again; it is kept failing while bob answers.
    server.server().store().inject_flush_failures(true);
    assert_eq!(send(&mut alice, to_shop(), 2, "still there?"), Err(ErrorCode::Internal));
    assert_eq!(send(&mut bob, Target::Support(id), 1, "yes!"), Err(ErrorCode::StorageFull));
    server.server().store().inject_flush_failures(false);
    let listed = list(&mut carol, "acme").unwrap();
    assert_eq!(listed[0].claimed_by, None, "a refused reply claims nothing");
    // Once the disk takes writes again, the same reply is stored and claims it.
    crate::common::eventually("the disk to take messages again", std::time::Duration::from_secs(10), || {
        send(&mut bob, Target::Support(id), 1, "yes!").is_ok()
    });
    assert_eq!(list(&mut carol, "acme").unwrap()[0].claimed_by.as_deref(), Some("bob"));
}

#[test]
fn a_conversation_handed_over_shows_the_new_agent_what_the_customer_and_the_old_agent_read() {
    let server = shop_server(&["bob", "carol"], &["alice"], |_| {});
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    say(&mut alice, to_shop(), 1, "my parcel is late");
    let (id, _) = first_message_id(&mut bob);
    say(&mut bob, Target::Support(id), 1, "looking into it");
    assert_eq!(seen(&mut bob, id), Seen::Claimed(Some("bob".into())));
    say(&mut alice, Target::Support(id), 2, "order 42");
    assert_eq!(seen(&mut bob, id), from_customer(3, 1, "order 42"), "his own 2 is passed over");
    // Both who answer it have read everything: carol, left out by the claim, has not.
    for client in [&mut alice, &mut bob] {
        client.request(Request::Ack { conversation: Conversation::Support(id), up_to: Seq(3) }).unwrap();
    }
    done(&mut bob, Request::HandOverSupport { conversation: id, to: "carol".into() });
    let mut carol = server.login("carol");
    let history = [
        from_customer(1, 0, "my parcel is late"),
        message(2, 1, "bob", SenderKind::Staff, "bob", "looking into it"),
        from_customer(3, 2, "order 42"),
    ];
    for expected in history {
        assert_eq!(seen(&mut carol, id), expected);
    }
}

/// A staff member taken on starts where every reader has read (what they read is history,
/// not a backlog), and starts there after a restart too: the start is on disk.
#[test]
fn a_staff_member_taken_on_starts_after_what_was_read_across_a_restart() {
    let mut server = shop_server(&["bob"], &["alice", "carol"], |_| {});
    server.stop();
    let token = admin::add_service(&open_store(server.data_dir()), &in_default("shopfront"), false).unwrap();
    server.restart();
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    say(&mut alice, to_shop(), 1, "hi");
    let (id, _) = first_message_id(&mut bob);
    // Every reader has read message 1: alice sent it, bob acknowledges it.
    let ack = Request::Ack { conversation: Conversation::Support(id), up_to: Seq(1) };
    assert!(matches!(bob.request(ack).unwrap(), Reply::Acked { .. }));
    let mut service = server.client();
    service.request(Request::ServiceLogin { name: "shopfront".into(), token }).unwrap();
    done(&mut service, Request::AddStaff { shop: "acme".into(), username: "carol".into() });
    drop((bob, alice, service));
    server.restart();

    let mut carol = server.login("carol");
    let mut alice = server.login("alice");
    say(&mut alice, Target::Support(id), 2, "anyone?");
    assert_eq!(seen(&mut carol, id), from_customer(2, 1, "anyone?"), "carol starts after what every reader read");
}
