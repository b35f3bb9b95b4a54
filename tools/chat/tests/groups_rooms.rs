//! Groups, rooms, broadcast, presence watching and statistics, with real `confab-chat`
//! processes in line mode against the real confabd (harness in `common`).
//!
//! Absence is shown by order, never by waiting: "the sender does not see its own message"
//! means the next message line it prints is someone else's, sent later.

mod common;

use common::{drop_field, text_of, Chat, Fixture, PASSWORD};

/// Logs in `name`, an administrator the fixture created (`Fixture::with_admins`).
fn admin_login(chat: &mut Chat, name: &str) {
    chat.expect("connected ");
    chat.send(&format!("/login {name} {PASSWORD}"));
    chat.expect(&format!("logged-in {name} "));
}

/// The next stored message or group event of group `id`, for checking their order.
fn next_in_group(chat: &mut Chat, id: u64) -> String {
    let event = format!("group-event group={id} ");
    let message = format!(" group={id} ");
    chat.wait_for("a group line", |line| {
        line.starts_with(&event) || (line.starts_with("message ") && line.contains(&message))
    })
}

#[test]
fn group_members_messages_events_and_offline_catch_up() {
    let fx = Fixture::new();
    let mut alice = fx.chat("alice");
    let mut bob = fx.chat("bob");
    let mut carol = fx.chat("carol");
    alice.register_and_login("alice");
    bob.register_and_login("bob");
    carol.register_and_login("carol");

    // The creator hears of the creation as the group's first event, then the receipt.
    alice.send("/group create Book club");
    let created = alice.expect("group-event ");
    let id = alice.created_group();
    assert_eq!(created, format!("group-event group={id} seq=1 event=created by=alice"));

    alice.send(&format!("/group add {id} bob"));
    alice.expect(&format!("done group-add group={id} user=bob"));
    alice.send(&format!("/group add {id} carol"));
    alice.expect(&format!("done group-add group={id} user=carol"));
    assert_eq!(next_in_group(&mut bob, id), format!("group-event group={id} seq=2 event=added user=bob by=alice"));
    assert_eq!(next_in_group(&mut bob, id), format!("group-event group={id} seq=3 event=added user=carol by=alice"));
    assert_eq!(next_in_group(&mut carol, id), format!("group-event group={id} seq=3 event=added user=carol by=alice"));

    // A group message reaches the others with the group id, not its sender...
    alice.send(&format!("/say {id} hello  readers"));
    assert_eq!(drop_field(&alice.expect("sent "), "id"), format!("sent seq=4 group={id}"));
    for reader in [&mut bob, &mut carol] {
        let got = next_in_group(reader, id);
        assert!(got.starts_with("message seq=4 from=alice at="), "{got}");
        assert!(got.contains(&format!(" group={id} text=")), "{got}");
        assert_eq!(text_of(&got), "hello  readers");
    }
    // ...who acks it, own message included, so nothing of it counts as unread.
    alice.expect(&format!("acked group={id} up_to=4"));
    alice.send("/groups");
    assert_eq!(alice.expect("groups "), "groups count=1");
    assert_eq!(
        alice.expect("group "),
        format!("group id={id} role=owner members=3 unread=0 open=false name=Book club")
    );

    bob.send(&format!("/say {id} hi from bob"));
    bob.expect(&format!("sent seq=5 group={id}"));
    // Alice's next group line is bob's message: her own seq 4 never came back to her.
    let got = next_in_group(&mut alice, id);
    assert!(got.starts_with("message seq=5 from=bob "), "{got}");
    let got = next_in_group(&mut carol, id);
    assert!(got.starts_with("message seq=5 from=bob "), "{got}");
    carol.expect(&format!("acked group={id} up_to=5"));
    carol.finish();

    // While carol is away: two messages and a rename, which she gets at login, in order.
    bob.send(&format!("/say {id} while you were out 1"));
    bob.send(&format!("/say {id} while you were out 2"));
    bob.expect(&format!("sent seq=7 group={id}"));
    alice.send(&format!("/group rename {id} Readers"));
    alice.expect(&format!("done group-rename group={id}"));
    // Bob's next group line is the rename: his own 6 and 7 did not come back to him.
    assert_eq!(
        next_in_group(&mut bob, id),
        format!("group-event group={id} seq=8 event=renamed by=alice name=Readers")
    );
    let mut carol = Chat::start("carol", fx.addr(), &fx.token("carol"), &["--user", "carol"]);
    carol.expect("logged-in carol ");
    for (seq, text) in [(6, "while you were out 1"), (7, "while you were out 2")] {
        let got = next_in_group(&mut carol, id);
        assert!(got.starts_with(&format!("message seq={seq} from=bob ")), "{got}");
        assert_eq!(text_of(&got), text);
    }
    assert_eq!(
        next_in_group(&mut carol, id),
        format!("group-event group={id} seq=8 event=renamed by=alice name=Readers")
    );
    carol.expect(&format!("acked group={id} up_to=8"));
    // A resync asks for what follows what was shown: nothing is missing, nothing repeats.
    carol.send(&format!("/resync {id}"));
    assert_eq!(carol.expect("resynced "), format!("resynced group={id} after=8 last=8"));
    carol.send("/resync");
    assert_eq!(carol.expect("resynced "), "resynced after=0 last=0");

    carol.send(&format!("/members {id}"));
    assert_eq!(
        carol.expect("members "),
        format!("members group={id} owner=alice admins= members=bob,carol online=alice,bob,carol")
    );

    // Roles: a plain member may not remove anyone; an admin may remove a plain member.
    carol.send(&format!("/group remove {id} bob"));
    assert!(carol.expect("error ").starts_with("error Forbidden: "));
    alice.send(&format!("/group role {id} bob admin"));
    alice.expect(&format!("done group-role group={id} user=bob role=admin"));
    assert_eq!(
        next_in_group(&mut bob, id),
        format!("group-event group={id} seq=9 event=role user=bob role=admin by=alice")
    );
    bob.send(&format!("/group remove {id} carol"));
    bob.expect(&format!("done group-remove group={id} user=carol"));
    // Carol hears of her removal, and then neither acks nor errs about the group.
    assert_eq!(
        next_in_group(&mut carol, id),
        format!("group-event group={id} seq=9 event=role user=bob role=admin by=alice")
    );
    assert_eq!(next_in_group(&mut carol, id), format!("group-event group={id} seq=10 event=removed user=carol by=bob"));
    carol.send("/groups");
    assert_eq!(carol.expect_any(&["groups ", "error "]), "groups count=0");

    // An open group: anyone joins and leaves; everyone present sees it.
    alice.send("/group create Lobby --open");
    let created =
        alice.wait_for("a new group", |l| l.starts_with("group-event ") && l.contains(" seq=1 event=created"));
    let open = alice.created_group();
    assert_eq!(created, format!("group-event group={open} seq=1 event=created by=alice"));
    carol.send(&format!("/group join {open}"));
    assert_eq!(next_in_group(&mut carol, open), format!("group-event group={open} seq=2 event=joined user=carol"));
    carol.expect(&format!("done group-join group={open}"));
    carol.send(&format!("/group leave {open}"));
    assert_eq!(next_in_group(&mut carol, open), format!("group-event group={open} seq=3 event=left user=carol"));
    carol.expect(&format!("done group-leave group={open}"));
    assert_eq!(next_in_group(&mut alice, open), format!("group-event group={open} seq=2 event=joined user=carol"));
    assert_eq!(next_in_group(&mut alice, open), format!("group-event group={open} seq=3 event=left user=carol"));

    // Deleting: members online get the live-only event.
    alice.send(&format!("/group delete {id}"));
    alice.expect(&format!("done group-delete group={id}"));
    assert_eq!(next_in_group(&mut bob, id), format!("group-event group={id} seq=11 event=deleted by=alice"));
    bob.send("/groups");
    assert_eq!(bob.expect_any(&["groups ", "error "]), "groups count=0");

    alice.finish();
    bob.finish();
    carol.finish();
}

#[test]
fn rooms_broadcast_presence_and_statistics() {
    let fx = Fixture::with_admins(&["alice"]);
    let mut alice = fx.chat("alice");
    let mut bob = fx.chat("bob");
    let mut carol = fx.chat("carol");
    admin_login(&mut alice, "alice");
    bob.register_and_login("bob");
    carol.register_and_login("carol");

    alice.send("/join lobby");
    bob.send("/join lobby");
    alice.expect("done join room=lobby");
    bob.expect("done join room=lobby");
    alice.send("/room-members lobby");
    assert_eq!(alice.expect("room-members "), "room-members room=lobby users=alice,bob");
    carol.send("/rooms");
    assert_eq!(carol.expect("rooms "), "rooms list=lobby:2 more=false");

    // Only those in the room get its messages; carol is not.
    alice.send("/room lobby hi  room");
    assert_eq!(alice.expect("room-sent "), "room-sent room=lobby recipients=1");
    assert_eq!(bob.expect_any(&["room-message ", "broadcast "]), "room-message room=lobby from=alice text=hi  room");
    carol.send("/room lobby let me in");
    assert!(carol.expect("error ").starts_with("error NotAMember: "));

    bob.send("/leave lobby");
    bob.expect("done leave room=lobby");
    alice.send("/room lobby anyone?");
    assert_eq!(alice.expect("room-sent "), "room-sent room=lobby recipients=0");

    // Broadcast is for administrators; it reaches everyone else online.
    bob.send("/broadcast hear me");
    assert!(bob.expect("error ").starts_with("error Forbidden: "));
    alice.send("/broadcast hear ye");
    assert_eq!(alice.expect("broadcast-sent "), "broadcast-sent recipients=2");
    // The first room or broadcast line bob and carol see after the room talk is this one.
    for other in [&mut bob, &mut carol] {
        assert_eq!(other.expect_any(&["room-message ", "broadcast "]), "broadcast from=alice text=hear ye");
    }

    // Statistics, likewise.
    bob.send("/stats");
    assert!(bob.expect("error ").starts_with("error Forbidden: "));
    alice.send("/stats");
    let stats = alice.expect("stats ");
    let fields: Vec<(&str, &str)> =
        stats["stats ".len()..].split(' ').map(|f| f.split_once('=').expect("key=value")).collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "uptime_secs",
            "connections",
            "logged_in",
            "rooms",
            "groups",
            "messages_received",
            "messages_delivered",
            "received_per_sec",
            "delivered_per_sec",
            "stored_messages",
            "outbound_bytes_queued",
            "storage_bytes",
            "log_syncs",
            "log_syncs_per_sec",
            "log_changes_per_commit",
            "log_commit_p50_us",
            "log_commit_p99_us",
            "log_commit_max_us",
            "log_bytes",
            "push_queued",
            "push_events",
            "push_dropped",
            "push_skipped",
            "version"
        ]
    );
    let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).expect("field");
    assert_eq!(field("logged_in"), "3");
    assert_eq!(field("rooms"), "1");
    assert!(field("messages_received").parse::<u64>().expect("a number") >= 2, "{stats}");

    // Watching: dave exists but is away; carol hears him come and go.
    let mut dave = fx.chat("dave");
    dave.expect("connected ");
    dave.send(&format!("/register dave {PASSWORD}"));
    dave.expect("registered dave");
    dave.finish();
    carol.send("/watch dave");
    assert_eq!(carol.expect("watching "), "watching dave online=false");
    let mut dave = fx.chat("dave");
    dave.expect("connected ");
    dave.send(&format!("/login dave {PASSWORD}"));
    dave.expect("logged-in dave ");
    assert_eq!(carol.expect("presence "), "presence dave online=true");
    dave.finish();
    assert_eq!(carol.expect("presence "), "presence dave online=false");
    carol.send("/unwatch dave");
    carol.expect("done unwatch user=dave");
    carol.send("/unwatch dave");
    assert!(carol.expect("error ").starts_with("error BadRequest: "));

    alice.finish();
    bob.finish();
    carol.finish();
}
