//! Qualified names: how a name carries its app inside the server.
//!
//! Every username, service name and room name is `app/name` from the moment a request is
//! read (see [`super::wire`]) to the moment a frame is written, so every table keyed by a
//! name (accounts, sessions, rooms, presence, services, the store's keys) is per app
//! without knowing about apps, and nothing can name another app's user: a client's names
//! are all qualified with its own app. `/` is in no app name, username or room name, so
//! the first `/` always ends the app.

/// The app of clients that name none (`Hello`), and of every data directory written before
/// apps existed.
pub use crate::protocol::DEFAULT_APP;

/// What ends the app part of a qualified name.
pub const SEPARATOR: char = '/';

/// `name` in `app`.
pub fn qualify(app: &str, name: &str) -> String {
    let mut qualified = String::with_capacity(app.len() + 1 + name.len());
    qualified.push_str(app);
    qualified.push(SEPARATOR);
    qualified.push_str(name);
    qualified
}

/// The app and the name as its clients know it; a name without an app is in no app
/// (`""`), which no client can reach.
pub fn split(qualified: &str) -> (&str, &str) {
    qualified.split_once(SEPARATOR).unwrap_or(("", qualified))
}

/// The app part of a qualified name.
pub fn app_of(qualified: &str) -> &str {
    split(qualified).0
}

/// The name as the clients of its app know it.
pub fn local(qualified: &str) -> &str {
    split(qualified).1
}

/// Whether two qualified names are in the same app.
pub fn same_app(a: &str, b: &str) -> bool {
    app_of(a) == app_of(b)
}

/// The prefix every name of `app` starts with, for range scans of one app's names.
pub fn prefix(app: &str) -> String {
    qualify(app, "")
}

/// Whether a qualified user or service name has an app and a local part that follows the
/// username rules.
pub fn valid_user_name(qualified: &str) -> bool {
    let (app, name) = split(qualified);
    !app.is_empty() && crate::protocol::valid_username(name)
}

/// Whether a qualified room name has an app and a local part that follows the room rules.
pub fn valid_room(qualified: &str) -> bool {
    let (app, name) = split(qualified);
    !app.is_empty() && crate::protocol::valid_room_name(name)
}

/// Drops the app part of a name in place (for a frame on its way to a client).
pub fn localize(name: &mut String) {
    if let Some(at) = name.find(SEPARATOR) {
        name.drain(..=at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qualified_name_splits_at_the_first_separator() {
        let alice = qualify("acme", "alice");
        assert_eq!(alice, "acme/alice");
        assert_eq!(split(&alice), ("acme", "alice"));
        assert_eq!(app_of(&alice), "acme");
        assert_eq!(local(&alice), "alice");
        // A name a client sent with a separator of its own stays in the client's app, and
        // its local part breaks the name rules, so it is refused rather than rerouted.
        let sneaky = qualify("acme", "default/alice");
        assert_eq!(app_of(&sneaky), "acme");
        assert_eq!(local(&sneaky), "default/alice");
        assert!(!crate::protocol::valid_username(local(&sneaky)));
    }

    #[test]
    fn localize_strips_only_the_app() {
        let mut name = qualify("default", "bob");
        localize(&mut name);
        assert_eq!(name, "bob");
        let mut plain = "bob".to_string();
        localize(&mut plain);
        assert_eq!(plain, "bob");
        assert!(same_app("a/x", "a/y"));
        assert!(!same_app("a/x", "b/x"));
        assert_eq!(prefix("acme"), "acme/");
    }
}
