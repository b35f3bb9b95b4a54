//! Two (and more) real `confab-chat` processes in line mode talking through the real
//! confabd: messages both ways, offline delivery in order and only once, who is
//! online, rename, errors, logging in by remembered token, and reconnecting after the
//! server restarts.
//!
//! Every wait is for a printed line that proves the effect, with a generous timeout, so
//! the tests do not depend on timing (see `common` for the harness).

mod common;

use common::{drop_field, text_of, Chat, Fixture, PASSWORD};

#[test]
fn two_clients_talk_list_rename_and_see_errors() {
    let fx = Fixture::new();
    let mut alice = fx.chat("alice");
    let mut bob = fx.chat("bob");
    alice.register_and_login("alice");
    bob.register_and_login("bob");

    alice.send("/to bob");
    assert_eq!(alice.expect("peer "), "peer bob");
    alice.send("hello there, bob");
    assert_eq!(drop_field(&alice.expect("sent "), "id"), "sent seq=1 to=bob");
    let got = bob.next_message();
    assert!(got.starts_with("message seq=1 from=alice at="), "{got}");
    assert_eq!(text_of(&got), "hello there, bob");
    bob.expect("acked up_to=1");

    // alice's inbox holds the copy of what she sent (seq 1): bob's answer is next.
    bob.send("/msg alice hi alice\\ multi  space");
    bob.expect("sent seq=2 to=alice");
    let got = alice.next_message();
    assert!(got.starts_with("message seq=2 from=bob "), "{got}");
    assert_eq!(text_of(&got), "hi alice\\\\ multi  space");

    bob.send("/typing alice");
    assert_eq!(bob.expect("transient-sent "), "transient-sent to=alice delivered=true");
    assert_eq!(alice.expect("typing "), "typing from=bob");

    alice.send("/who");
    assert_eq!(alice.expect("online "), "online users=alice,bob more=false");

    alice.send("/rename Alice A.");
    assert_eq!(alice.expect("renamed "), "renamed Alice A.");

    alice.send("/msg nobody-here are you there?");
    assert_eq!(alice.expect("error "), "error UnknownUser: no such user");

    alice.send("/frobnicate");
    assert!(alice.expect("error ").starts_with("error UnknownCommand: "));

    alice.finish();
    bob.finish();
}

#[test]
fn offline_messages_arrive_in_order_once_and_the_token_logs_in() {
    let fx = Fixture::new();
    let mut alice = fx.chat("alice");
    let mut bob = fx.chat("bob");
    alice.register_and_login("alice");
    bob.register_and_login("bob");
    bob.finish();

    for i in 1..=3 {
        alice.send(&format!("/msg bob offline {i}"));
        assert_eq!(drop_field(&alice.expect("sent "), "id"), format!("sent seq={i} to=bob"));
    }

    // Bob comes back with his password: the three arrive in order, then are acked.
    let mut bob = fx.chat("bob");
    bob.expect("connected ");
    bob.send(&format!("/login bob {PASSWORD}"));
    assert_eq!(drop_field(&bob.expect("logged-in "), "device"), "logged-in bob acked=0 last=3");
    for i in 1..=3 {
        let got = bob.next_message();
        assert!(got.starts_with(&format!("message seq={i} from=alice ")), "{got}");
        assert_eq!(text_of(&got), format!("offline {i}"));
    }
    bob.expect("acked up_to=3");
    bob.finish();

    // Bob again, this time by remembered token: nothing is shown twice, and a new
    // message is the next one he sees.
    let mut bob = Chat::start("bob", fx.addr(), &fx.token("bob"), &["--user", "bob"]);
    assert_eq!(drop_field(&bob.expect("logged-in "), "device"), "logged-in bob acked=3 last=3");
    alice.send("/msg bob after the token login");
    alice.expect("sent seq=4 to=bob");
    let got = bob.next_message();
    assert!(got.starts_with("message seq=4 from=alice "), "{got}");
    assert_eq!(text_of(&got), "after the token login");

    // Logging out revokes the token: the next --user start has nothing to use.
    bob.send("/logout");
    bob.expect("logged-out");
    bob.finish();
    let mut bob = Chat::start("bob", fx.addr(), &fx.token("bob"), &["--user", "bob"]);
    assert!(bob.expect("error ").starts_with("error NoToken: "));
    bob.finish();
    alice.finish();
}

#[test]
fn a_backlog_longer_than_the_delivery_window_arrives_whole_and_in_order() {
    // The server pushes 4 messages and then waits for an ack: the client must keep acking.
    let fx = Fixture::with(&["--delivery-window", "4"]);
    let mut alice = fx.chat("alice");
    let mut bob = fx.chat("bob");
    alice.register_and_login("alice");
    bob.register_and_login("bob");
    bob.finish();
    for i in 1..=15 {
        alice.send(&format!("/msg bob backlog {i}"));
    }
    alice.expect("sent seq=15 to=bob");

    let mut bob = fx.chat("bob");
    bob.expect("connected ");
    bob.send(&format!("/login bob {PASSWORD}"));
    bob.expect("logged-in bob acked=0 last=15");
    for i in 1..=15 {
        let got = bob.next_message();
        assert!(got.starts_with(&format!("message seq={i} from=alice ")), "{got}");
    }
    bob.expect("acked up_to=15");
    bob.finish();
    alice.finish();
}

#[test]
fn a_newer_login_kicks_the_older_session_for_good() {
    let fx = Fixture::new();
    let mut first = fx.chat("alice");
    first.register_and_login("alice");
    let mut second = Chat::start("alice-2", fx.addr(), &fx.token("alice"), &["--user", "alice"]);
    second.expect("logged-in alice ");
    assert_eq!(first.expect("kicked "), "kicked logged in elsewhere");
    first.expect("disconnected ");
    // The kicked client does not come back and take the session again.
    first.send("/who");
    assert!(first.expect("error ").starts_with("error Offline: "));
    second.send("/who");
    second.expect("online users=alice ");
    first.finish();
    second.finish();
}

#[test]
fn clients_reconnect_by_themselves_after_a_server_restart() {
    let mut fx = Fixture::new();
    let mut alice = fx.chat("alice");
    let mut bob = fx.chat("bob");
    alice.register_and_login("alice");
    bob.register_and_login("bob");
    alice.send("/msg bob before the restart");
    alice.expect("sent seq=1 to=bob");
    assert_eq!(text_of(&bob.next_message()), "before the restart");
    bob.expect("acked up_to=1");
    // Rooms end with the connection; the client joins them again after reconnecting.
    bob.send("/join lobby");
    bob.expect("done join room=lobby");

    fx.stop();
    alice.expect("disconnected ");
    bob.expect("disconnected ");
    fx.start_again();

    // alice's inbox holds the copy of her message, passed over (so acknowledged) by the
    // device that sent it.
    assert_eq!(drop_field(&alice.expect("reconnected "), "device"), "reconnected alice acked=1 last=1");
    assert_eq!(drop_field(&bob.expect("reconnected "), "device"), "reconnected bob acked=1 last=1");
    bob.expect("done join room=lobby");
    alice.send("/msg bob after the restart");
    alice.expect("sent seq=2 to=bob");
    // Seq 1 is not shown again: the next message bob sees is the new one.
    let got = bob.next_message();
    assert!(got.starts_with("message seq=2 from=alice "), "{got}");
    assert_eq!(text_of(&got), "after the restart");
    alice.finish();
    bob.finish();
}

#[test]
fn a_piped_script_runs_in_order_before_the_connection_is_up() {
    let fx = Fixture::new();
    let mut carol = fx.chat("carol");
    // All at once, before "connected": the client holds them until each may go.
    carol.send(&format!("/register carol {PASSWORD}"));
    carol.send(&format!("/login carol {PASSWORD}"));
    carol.send("/to carol");
    carol.send("note to self");
    carol.expect("registered carol");
    carol.expect("logged-in carol ");
    carol.expect("sent seq=1 to=carol");
    assert_eq!(text_of(&carol.next_message()), "note to self");
    carol.send("/quit");
    carol.finish();
}
