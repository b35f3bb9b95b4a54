//! One user on two real `confab-chat` processes (two devices, each with its own token file
//! and device id) against the real confabd: both receive, each acks on its own, what one
//! sends shows on the other as a sent copy, history pages back through a conversation,
//! read marks follow the user, read receipts reach the sender, deletions and clearing
//! reach every device, and a device can be listed, logged out or removed.
//!
//! Every wait is for a printed line that proves the effect (see `common` for the harness).

mod common;

use common::{drop_field, field, text_of, Chat, Fixture, PASSWORD};

/// `user` on the device `device`, with a token file of its own.
fn device(fx: &Fixture, user: &str, device: &str) -> Chat {
    let name = format!("{user}-{device}");
    Chat::start(&name, fx.addr(), &fx.token(&name), &["--device", device])
}

/// Registers `user` on a first device and logs it in there.
fn registered(fx: &Fixture, user: &str, on: &str) -> Chat {
    let mut chat = device(fx, user, on);
    chat.register_and_login(user);
    chat
}

/// Logs `user`, registered before, in on another device.
fn second(fx: &Fixture, user: &str, on: &str) -> Chat {
    let mut chat = device(fx, user, on);
    chat.expect("connected ");
    chat.send(&format!("/login {user} {PASSWORD}"));
    let line = chat.expect(&format!("logged-in {user} "));
    assert_eq!(field(&line, "device"), on, "{line}");
    chat
}

#[test]
fn both_devices_receive_ack_on_their_own_and_see_what_the_other_sent() {
    let fx = Fixture::new();
    let mut laptop = registered(&fx, "alice", "laptop");
    let mut phone = second(&fx, "alice", "phone");
    let mut bob = registered(&fx, "bob", "desk");

    bob.send("/msg alice are you coming?");
    bob.expect("sent seq=1 to=alice ");
    for device in [&mut laptop, &mut phone] {
        let got = device.next_message();
        assert!(got.starts_with("message seq=1 from=bob at="), "{got}");
        assert_eq!(text_of(&got), "are you coming?");
        device.expect("acked up_to=1");
    }

    // The laptop answers: bob gets it (after the copy of his own message in his inbox), the
    // phone shows it as alice's own, next in her inbox.
    laptop.send("/msg bob see you at six");
    let sent = laptop.expect("sent seq=2 to=bob ");
    let id = field(&sent, "id").to_string();
    let got = bob.next_message();
    assert!(got.starts_with("message seq=2 from=alice at="), "{got}");
    let copy = phone.expect("sent-copy ");
    assert_eq!(drop_field(&copy, "at"), format!("sent-copy seq=2 to=bob id={id} text=see you at six"));
    phone.expect("acked up_to=2");

    phone.send("/devices");
    phone.expect("devices count=2");
    let mut lines = [phone.expect("device "), phone.expect("device ")];
    lines.sort();
    assert_eq!(drop_field(&lines[0], "last_seen"), "device name=laptop online=true this=false");
    assert_eq!(drop_field(&lines[1], "last_seen"), "device name=phone online=true this=true");

    for chat in [laptop, phone, bob] {
        chat.finish();
    }
}

#[test]
fn an_offline_device_catches_up_and_keeps_its_device_id() {
    let fx = Fixture::new();
    let laptop = registered(&fx, "alice", "laptop");
    let phone = second(&fx, "alice", "phone");
    phone.finish();
    let mut bob = registered(&fx, "bob", "desk");
    for i in 1..=3 {
        bob.send(&format!("/msg alice while the phone was off {i}"));
        bob.expect(&format!("sent seq={i} to=alice "));
    }
    laptop.finish();

    // The phone again, by its remembered token and device id (no --device this time).
    let name = "alice-phone";
    let mut phone = Chat::start(name, fx.addr(), &fx.token(name), &["--user", "alice"]);
    let line = phone.expect("logged-in alice ");
    assert_eq!(line, "logged-in alice acked=0 last=3 device=phone");
    assert_eq!(phone.expect("unread "), "unread user=bob count=3 read=0 last=3");
    for i in 1..=3 {
        let got = phone.next_message();
        assert!(got.starts_with(&format!("message seq={i} from=bob ")), "{got}");
    }
    phone.expect("acked up_to=3");
    phone.finish();
    bob.finish();
}

#[test]
fn history_pages_back_through_both_sides_of_a_conversation() {
    let fx = Fixture::new();
    let mut laptop = registered(&fx, "alice", "laptop");
    let mut bob = registered(&fx, "bob", "desk");
    // Each inbox holds both sides: the other's messages and copies of one's own.
    for i in 1..=3 {
        bob.send(&format!("/msg alice from bob {i}"));
        bob.expect(&format!("sent seq={} to=alice ", 2 * i - 1));
        assert_eq!(text_of(&laptop.next_message()), format!("from bob {i}"));
        laptop.send(&format!("/msg bob from alice {i}"));
        laptop.expect(&format!("sent seq={} to=bob ", 2 * i));
        bob.next_message();
    }

    // A new device shows the conversation from its history, oldest first.
    let mut tablet = second(&fx, "alice", "tablet");
    tablet.send("/history bob 4");
    assert_eq!(tablet.expect("history "), "history user=bob count=4 more=true");
    let texts: Vec<String> = (0..4).map(|_| text_of(&tablet.expect("history-message ")).to_string()).collect();
    assert_eq!(texts, ["from bob 2", "from alice 2", "from bob 3", "from alice 3"].map(String::from).to_vec());
    tablet.send("/history bob");
    assert_eq!(tablet.expect("history "), "history user=bob count=6 more=false");
    let first = tablet.expect("history-message ");
    assert!(first.starts_with("history-message seq=1 from=bob "), "{first}");

    // Opening the conversation shows its last messages.
    tablet.send("/to bob");
    tablet.expect("peer bob");
    assert_eq!(tablet.expect("history "), "history user=bob count=5 more=true");

    for chat in [laptop, bob, tablet] {
        chat.finish();
    }
}

#[test]
fn a_history_longer_than_a_page_is_paged_back() {
    let fx = Fixture::new();
    let mut alice = registered(&fx, "alice", "laptop");
    let mut bob = registered(&fx, "bob", "desk");
    // More than the client asks for in one page (50).
    for i in 1..=70 {
        alice.send(&format!("/msg bob note {i}"));
    }
    alice.expect("sent seq=70 to=bob ");
    bob.send("/history alice 65");
    assert_eq!(bob.expect("history "), "history user=alice count=65 more=true");
    let texts: Vec<String> = (0..65).map(|_| text_of(&bob.expect("history-message ")).to_string()).collect();
    let wanted: Vec<String> = (6..=70).map(|i| format!("note {i}")).collect();
    assert_eq!(texts, wanted);
    alice.finish();
    bob.finish();
}

#[test]
fn read_marks_follow_the_user_and_receipts_reach_the_sender() {
    let fx = Fixture::new();
    let laptop = registered(&fx, "alice", "laptop");
    let mut phone = second(&fx, "alice", "phone");
    let mut bob = registered(&fx, "bob", "desk");
    laptop.finish();
    bob.send("/msg alice one");
    bob.expect("sent seq=1 to=alice ");
    bob.send("/msg alice two");
    let second_id = field(&bob.expect("sent seq=2 to=alice "), "id").to_string();
    phone.next_message();
    phone.next_message();

    // The laptop comes back: two unread; reading them there clears them on the phone too.
    let name = "alice-laptop";
    let mut laptop = Chat::start(name, fx.addr(), &fx.token(name), &["--user", "alice"]);
    laptop.expect("logged-in alice ");
    assert_eq!(laptop.expect("unread "), "unread user=bob count=2 read=0 last=2");
    laptop.next_message();
    laptop.next_message();
    laptop.send("/read bob");
    assert_eq!(laptop.expect("read "), "read user=bob up_to=2 unread=0");
    assert_eq!(phone.expect("read-mark "), "read-mark user=bob up_to=2 unread=0");
    assert_eq!(bob.expect("read-receipt "), format!("read-receipt reader=alice up_to=2 id={second_id}"));
    laptop.send("/unread");
    assert_eq!(laptop.expect("read-state "), "read-state chats=1 read_receipts=true");
    assert_eq!(laptop.expect("unread "), "unread user=bob count=0 read=2 last=2");

    // The open conversation is read as it is shown.
    phone.send("/to bob");
    phone.expect("peer bob");
    bob.send("/msg alice three");
    bob.expect("sent seq=3 to=alice ");
    phone.next_message();
    assert_eq!(phone.expect("read "), "read user=bob up_to=3 unread=0");
    assert!(bob.expect("read-receipt ").starts_with("read-receipt reader=alice up_to=3 "));

    laptop.send("/receipts off");
    laptop.expect("done receipts enabled=false");
    laptop.send("/unread");
    assert_eq!(laptop.expect("read-state "), "read-state chats=1 read_receipts=false");

    for chat in [laptop, phone, bob] {
        chat.finish();
    }
}

#[test]
fn a_deleted_message_and_a_cleared_history_reach_every_device() {
    let fx = Fixture::new();
    let mut laptop = registered(&fx, "alice", "laptop");
    let mut phone = second(&fx, "alice", "phone");
    let mut bob = registered(&fx, "bob", "desk");
    laptop.send("/msg bob oops, wrong chat");
    let id = field(&laptop.expect("sent seq=1 to=bob "), "id").to_string();
    bob.next_message();
    phone.expect("sent-copy ");

    // Without an id, /delete means the last message this client sent there.
    laptop.send("/delete bob");
    assert_eq!(laptop.expect("done "), format!("done delete user=bob id={id}"));
    let deleted = bob.expect("message-deleted ");
    assert_eq!(drop_field(&deleted, "seq"), format!("message-deleted id={id} by=alice user=alice"));
    let deleted = phone.expect("message-deleted ");
    assert_eq!(drop_field(&deleted, "seq"), format!("message-deleted id={id} by=alice user=bob"));
    bob.send("/history alice");
    bob.expect("history user=alice ");
    let line = bob.expect("history-message ");
    assert!(line.ends_with(&format!(" id={id} deleted=true")), "{line}");

    // alice's inbox: the copy of her message (now erased) and the event of its deletion.
    bob.send("/msg alice still there?");
    bob.expect("sent seq=3 to=alice ");
    laptop.next_message();
    laptop.send("/clear bob");
    let done = laptop.expect("done clear ");
    let up_to = field(&done, "up_to").to_string();
    assert_eq!(phone.expect("history-cleared "), format!("history-cleared user=bob up_to={up_to}"));
    phone.send("/history bob");
    assert_eq!(phone.expect("history "), "history user=bob count=0 more=false");
    // bob keeps his.
    bob.send("/history alice");
    let header = bob.expect("history user=alice ");
    assert_ne!(header, "history user=alice count=0 more=false");

    for chat in [laptop, phone, bob] {
        chat.finish();
    }
}

#[test]
fn groups_have_history_since_joining_and_read_positions() {
    let fx = Fixture::new();
    let mut alice = registered(&fx, "alice", "laptop");
    let mut bob = registered(&fx, "bob", "desk");
    alice.send("/group create Book club");
    let id = alice.created_group();
    alice.send(&format!("/say {id} before bob"));
    alice.expect("sent seq=2 group=");
    alice.send(&format!("/group add {id} bob"));
    alice.expect("done group-add ");
    alice.send(&format!("/say {id} welcome bob"));
    alice.expect("sent seq=4 group=");
    bob.expect("group-event ");
    assert_eq!(text_of(&bob.next_message()), "welcome bob");

    // bob's history starts where he was added.
    bob.send(&format!("/group history {id}"));
    let header = bob.expect("history ");
    assert_eq!(header, format!("history group={id} count=2 more=false"));
    assert_eq!(bob.expect("history-"), format!("history-event group={id} seq=3 event=added user=bob by=alice"));
    assert_eq!(text_of(&bob.expect("history-message ")), "welcome bob");
    bob.expect(&format!("read group={id} up_to=4 "));

    alice.send(&format!("/group read {id}"));
    let line = alice.expect("read-positions ");
    assert!(line.contains("bob:4"), "{line}");

    alice.finish();
    bob.finish();
}

#[test]
fn logging_out_one_device_keeps_the_other_and_everywhere_ends_both() {
    let fx = Fixture::new();
    let mut laptop = registered(&fx, "alice", "laptop");
    let mut phone = second(&fx, "alice", "phone");
    let mut tablet = second(&fx, "alice", "tablet");

    // A lost tablet: removed from the phone, its session ends and its token is gone.
    phone.send("/device-remove tablet");
    phone.expect("done device-remove device=tablet");
    tablet.expect("kicked ");

    laptop.send("/logout");
    laptop.expect("logged-out");
    phone.send("/who");
    phone.expect("online users=alice ");
    phone.send("/logout-all");
    phone.expect("logged-out");
    laptop.finish();
    phone.finish();
    tablet.finish();

    // The removed tablet's token no longer logs in.
    let name = "alice-tablet";
    let mut tablet = Chat::start(name, fx.addr(), &fx.token(name), &["--user", "alice"]);
    assert!(tablet.expect("error ").starts_with("error InvalidToken: "));
    tablet.finish();
}
