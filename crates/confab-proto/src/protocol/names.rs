//! The name rules of protocol.md "Names": usernames, passwords, room names, app names,
//! shop names.

/// Username rules (protocol.md "Names"): 3 to 32 bytes of `a-z 0-9 _ . -`, starting with a
/// letter or digit. Lowercase only, so two accounts can never differ by case alone.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name_chars_ok(name)
}

/// Passwords: 8 to 256 bytes of UTF-8. The upper bound keeps hashing cost predictable.
pub fn valid_password(password: &str) -> bool {
    (8..=256).contains(&password.len())
}

/// Room names: 1 to 64 bytes of `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name_chars_ok(name)
}

/// Shop names (protocol.md "Names"): the username rules, in a namespace of their own. The
/// one place a shop name is judged, so a change of the rule is made here only.
pub fn valid_shop_name(name: &str) -> bool {
    valid_username(name)
}

/// The app of a client that says plain `Hello` (protocol.md "Apps").
pub const DEFAULT_APP: &str = "default";

/// App names: 1 to 32 bytes of `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn valid_app_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name_chars_ok(name)
}

fn name_chars_ok(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}
