//! Everything the client shows, as one [`Event`] type, and the two ways to print it: the
//! stable one-line format of line mode ([`plain`], specified in the crate documentation)
//! and the friendlier text of the terminal UI ([`pretty`]).
//!
//! A new push or reply kind becomes a new variant here and one arm in each function.

use confab::protocol::{Content, Conversation, MediaKind, OnlineUser};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The body of a transient message that means "is typing".
pub const TYPING: &str = "typing";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        addr: String,
    },
    Registered {
        username: String,
    },
    /// `reconnected` when the client logged in again by itself after a drop.
    LoggedIn {
        username: String,
        display_name: String,
        acked: u64,
        last_seq: u64,
        reconnected: bool,
    },
    Sent {
        to: String,
        seq: u64,
        duplicate: bool,
        content: Content,
    },
    TransientSent {
        to: String,
        delivered: bool,
    },
    Message {
        conversation: Conversation,
        seq: u64,
        from: String,
        /// Sent by a service (a bot or the system), not a person.
        service: bool,
        timestamp_ms: u64,
        content: Content,
    },
    Transient {
        from: String,
        content: Content,
    },
    Online {
        users: Vec<OnlineUser>,
        more: bool,
    },
    Renamed {
        display_name: String,
    },
    Acked {
        up_to: u64,
    },
    Resynced {
        after: u64,
        last_seq: u64,
    },
    LoggedOut,
    Peer {
        username: String,
    },
    Help {
        usage: String,
        text: String,
    },
    /// `code` is the server's error code, or one of the client's own (see the crate docs).
    Error {
        code: String,
        message: String,
    },
    RoomMessage {
        room: String,
        from: String,
        content: Content,
    },
    Broadcast {
        from: String,
        content: Content,
    },
    Presence {
        username: String,
        online: bool,
    },
    /// A service's live-only message.
    ServiceNotice {
        service: String,
        content: Content,
    },
    /// A push this client has no rendering for; `what` is its debug form.
    Unhandled {
        what: String,
    },
    Kicked {
        reason: String,
    },
    ShuttingDown,
    Disconnected {
        reason: String,
    },
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
}

impl Event {
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Event::Error { code: code.into(), message: message.into() }
    }
}

/// Where events go: stdout lines, or the terminal UI's scrollback.
pub trait Output {
    fn emit(&mut self, event: Event);
}

/// Line mode: one line per event, keyword first, free text last and escaped.
pub fn plain(event: &Event) -> String {
    match event {
        Event::Connected { addr } => format!("connected {addr}"),
        Event::Registered { username } => format!("registered {username}"),
        Event::LoggedIn { username, acked, last_seq, reconnected, .. } => {
            let word = if *reconnected { "reconnected" } else { "logged-in" };
            format!("{word} {username} acked={acked} last={last_seq}")
        }
        Event::Sent { to, seq, duplicate, .. } => {
            let mut line = format!("sent seq={seq} to={to}");
            if *duplicate {
                line.push_str(" duplicate=true");
            }
            line
        }
        Event::TransientSent { to, delivered } => {
            format!("transient-sent to={to} delivered={delivered}")
        }
        Event::Message { conversation, seq, from, service, timestamp_ms, content } => format!(
            "message seq={seq} from={} at={timestamp_ms}{}{}{}",
            escape(from),
            plain_conversation(*conversation),
            if *service { " service=true" } else { "" },
            plain_content(content)
        ),
        Event::ServiceNotice { service, content } => {
            format!("notice service={}{}", escape(service), plain_content(content))
        }
        Event::Unhandled { what } => format!("push {}", escape(what)),
        Event::RoomMessage { room, from, content } => {
            format!("room-message room={} from={}{}", escape(room), escape(from), plain_content(content))
        }
        Event::Broadcast { from, content } => {
            format!("broadcast from={}{}", escape(from), plain_content(content))
        }
        Event::Presence { username, online } => {
            format!("presence {} online={online}", escape(username))
        }
        Event::Transient { from, content } if is_typing(content) => {
            format!("typing from={}", escape(from))
        }
        Event::Transient { from, content } => {
            format!("transient from={}{}", escape(from), plain_content(content))
        }
        Event::Online { users, more } => {
            let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
            format!("online users={} more={more}", names.join(","))
        }
        Event::Renamed { display_name } => format!("renamed {}", escape(display_name)),
        Event::Acked { up_to } => format!("acked up_to={up_to}"),
        Event::Resynced { after, last_seq } => format!("resynced after={after} last={last_seq}"),
        Event::LoggedOut => "logged-out".into(),
        Event::Peer { username } => format!("peer {username}"),
        Event::Help { usage, text } => format!("help {usage} -- {text}"),
        Event::Error { code, message } => format!("error {code}: {}", escape(message)),
        Event::Kicked { reason } => format!("kicked {}", escape(reason)),
        Event::ShuttingDown => "shutting-down".into(),
        Event::Disconnected { reason } => format!("disconnected {}", escape(reason)),
        Event::Reconnecting { attempt, delay } => {
            format!("reconnecting attempt={attempt} in_ms={}", delay.as_millis())
        }
    }
}

/// Terminal UI: a clock, then something a person reads at a glance. Message times are the
/// server's; everything else is stamped now. Times are UTC (the standard library has no
/// time zones).
pub fn pretty(event: &Event) -> String {
    let now = clock(now_ms());
    match event {
        Event::Message { conversation, from, service, timestamp_ms, content, .. } => {
            let place = match conversation {
                Conversation::Group(id) => format!(" [group {id}]"),
                _ => String::new(),
            };
            let badge = if *service { " [service]" } else { "" };
            format!("{}{place}{badge} {}: {}", clock(*timestamp_ms), clean(from), pretty_content(content))
        }
        Event::ServiceNotice { service, content } => {
            format!("{now} [service] {}: {}", clean(service), pretty_content(content))
        }
        Event::Unhandled { what } => format!("{now} * {}", clean(what)),
        Event::RoomMessage { room, from, content } => {
            format!("{now} [#{}] {}: {}", clean(room), clean(from), pretty_content(content))
        }
        Event::Broadcast { from, content } => format!("{now} [everyone] {}: {}", clean(from), pretty_content(content)),
        Event::Presence { username, online } => {
            let state = if *online { "online" } else { "offline" };
            format!("{now} * {} is {state}", clean(username))
        }
        Event::Transient { from, content } if is_typing(content) => {
            format!("{now} * {} is typing…", clean(from))
        }
        Event::Transient { from, content } => {
            format!("{now} * {} (live): {}", clean(from), pretty_content(content))
        }
        Event::Connected { addr } => format!("{now} * connected to {addr}"),
        Event::Registered { username } => {
            format!("{now} * registered {username}; now /login {username} PASSWORD")
        }
        Event::LoggedIn { username, display_name, acked, last_seq, reconnected } => {
            let waiting = last_seq.saturating_sub(*acked);
            let verb = if *reconnected { "back online as" } else { "logged in as" };
            format!("{now} * {verb} {username} ({}); {waiting} unread", clean(display_name))
        }
        Event::Sent { to, content, .. } => {
            format!("{now} you → {to}: {}", pretty_content(content))
        }
        Event::TransientSent { to, delivered } => {
            let state = if *delivered { "online" } else { "offline" };
            format!("{now} * typing notice to {to} ({state})")
        }
        Event::Online { users, more } => {
            let mut line = format!("{now} * online:");
            for user in users {
                let _ = write!(line, " {}", user.username);
                if user.display_name != user.username {
                    let _ = write!(line, " ({})", clean(&user.display_name));
                }
                line.push(',');
            }
            line.pop();
            if users.is_empty() {
                line.push_str(" nobody");
            }
            if *more {
                if let Some(last) = users.last() {
                    let _ = write!(line, " … more: /who {}", last.username);
                }
            }
            line
        }
        Event::Renamed { display_name } => {
            format!("{now} * you are now shown as {}", clean(display_name))
        }
        Event::Acked { up_to } => format!("{now} * read up to #{up_to}"),
        Event::Resynced { after, .. } => format!("{now} * fetching messages after #{after}"),
        Event::LoggedOut => format!("{now} * logged out"),
        Event::Peer { username } => format!("{now} * talking to {username}"),
        Event::Help { usage, text } => format!("  {usage:<28} {text}"),
        Event::Error { code, message } => format!("{now} ! {code}: {}", clean(message)),
        Event::Kicked { reason } => format!("{now} ! kicked: {}", clean(reason)),
        Event::ShuttingDown => format!("{now} ! the server is shutting down"),
        Event::Disconnected { reason } => format!("{now} ! disconnected: {}", clean(reason)),
        Event::Reconnecting { attempt, delay } => {
            format!("{now} * reconnecting in {:.1} s (attempt {attempt})", delay.as_secs_f64())
        }
    }
}

/// How the terminal UI colours an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// What others said.
    Incoming,
    /// What we said.
    Own,
    /// The client or server telling how things stand.
    Notice,
    /// Something went wrong.
    Alert,
}

pub fn tone(event: &Event) -> Tone {
    match event {
        Event::Message { .. }
        | Event::RoomMessage { .. }
        | Event::Broadcast { .. }
        | Event::Transient { .. }
        | Event::ServiceNotice { .. } => Tone::Incoming,
        Event::Sent { .. } => Tone::Own,
        Event::Error { .. } | Event::Kicked { .. } | Event::ShuttingDown | Event::Disconnected { .. } => Tone::Alert,
        _ => Tone::Notice,
    }
}

/// Events a person need not see: the client's own bookkeeping.
pub fn is_housekeeping(event: &Event) -> bool {
    matches!(event, Event::Acked { .. } | Event::Resynced { .. })
}

fn is_typing(content: &Content) -> bool {
    content.media.is_none() && content.body == TYPING.as_bytes()
}

/// Nothing for the inbox, so direct messages read as the crate docs show.
fn plain_conversation(conversation: Conversation) -> String {
    match conversation {
        Conversation::Group(id) => format!(" group={id}"),
        _ => String::new(),
    }
}

fn plain_content(content: &Content) -> String {
    let mut out = String::new();
    if content.kind != MediaKind::Text {
        let _ = write!(out, " kind={:?}", content.kind);
    }
    if let Some(media) = &content.media {
        let _ = write!(out, " media={}", escape(&media.url).replace(' ', "%20"));
    }
    let _ = write!(out, " text={}", escape(&String::from_utf8_lossy(&content.body)));
    out
}

fn pretty_content(content: &Content) -> String {
    let text = clean(&String::from_utf8_lossy(&content.body));
    match &content.media {
        Some(media) => format!("[{:?} {}] {text}", content.kind, clean(&media.url)),
        None => text,
    }
}

/// Keeps free text on one line, reversibly: `\` `\n` `\r` `\t` as in Rust source, other
/// control characters as `\u{..}`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// For a person: control characters (escape sequences could repaint the terminal) become
/// visible replacements.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '�' } else { c }).collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// HH:MM:SS (UTC) of a Unix time in milliseconds.
pub fn clock(ms: u64) -> String {
    let secs = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_stays_on_one_line() {
        let event = Event::Message {
            conversation: Conversation::Inbox,
            seq: 3,
            from: "alice".into(),
            service: false,
            timestamp_ms: 1_000,
            content: Content::text("two\nlines \\ and\u{1b}[2J"),
        };
        assert_eq!(plain(&event), "message seq=3 from=alice at=1000 text=two\\nlines \\\\ and\\u{1b}[2J");
        assert!(!pretty(&event).contains('\u{1b}'));
    }

    #[test]
    fn documented_lines() {
        assert_eq!(
            plain(&Event::Sent { to: "bob".into(), seq: 1, duplicate: false, content: Content::text("hi") }),
            "sent seq=1 to=bob"
        );
        assert_eq!(
            plain(&Event::Transient { from: "alice".into(), content: Content::text(TYPING) }),
            "typing from=alice"
        );
        let user = |name: &str| OnlineUser { username: name.into(), display_name: name.to_uppercase() };
        assert_eq!(
            plain(&Event::Online { users: vec![user("alice"), user("bob")], more: false }),
            "online users=alice,bob more=false"
        );
        assert_eq!(plain(&Event::error("UnknownUser", "no such user")), "error UnknownUser: no such user");
        assert_eq!(
            plain(&Event::LoggedIn {
                username: "alice".into(),
                display_name: "alice".into(),
                acked: 0,
                last_seq: 3,
                reconnected: false
            }),
            "logged-in alice acked=0 last=3"
        );
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock((13 * 3600 + 4 * 60 + 5) * 1000 + 999), "13:04:05");
    }
}
