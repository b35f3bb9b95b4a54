//! Apps with real `confab-chat` processes against the real confabd: `--app` puts the
//! client in an app, where the same usernames are other people, and `/stats` answers with
//! the app's own figures (harness in `common`).

mod common;

use common::{text_of, Fixture};

#[test]
fn a_chat_in_another_app_meets_only_that_apps_users() {
    let fx = Fixture::with_app("acme", "root");
    let mut bob = fx.chat("bob");
    bob.register_and_login("bob");
    let mut acme_bob = fx.chat_in("acme", "bob");
    acme_bob.register_and_login("bob");
    let mut root = fx.chat_in("acme", "root");
    root.login("root");

    root.send("/msg bob hello, acme's bob");
    root.expect("sent seq=1 to=bob");
    let message = acme_bob.next_message();
    assert!(message.contains(" from=root ") && text_of(&message) == "hello, acme's bob", "{message}");

    // The app default's bob was sent nothing: his next message is the one sent to him now,
    // by someone of his own app.
    let mut alice = fx.chat("alice");
    alice.register_and_login("alice");
    alice.send("/msg bob hello, default's bob");
    alice.expect("sent seq=1 to=bob");
    assert_eq!(text_of(&bob.next_message()), "hello, default's bob");

    root.send("/stats");
    let figures = root.expect("app-stats ");
    assert!(figures.starts_with("app-stats app=acme users=2 max_users=0 logged_in=2 "), "{figures}");
    assert!(figures.ends_with(" messages_received=1"), "{figures}");

    for chat in [bob, acme_bob, root, alice] {
        chat.finish();
    }
}
