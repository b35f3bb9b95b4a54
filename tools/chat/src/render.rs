//! Everything the client shows, as one [`Event`] type, and the two ways to print it: the
//! stable one-line format of line mode ([`plain`], specified in the crate documentation)
//! and the friendlier text of the terminal UI ([`pretty`]).
//!
//! A new push or reply kind becomes a new variant here and one arm in each of `plain.rs`
//! and `pretty.rs`.

mod plain;
mod pretty;

pub use plain::plain;
pub use pretty::pretty;

use crate::chats::Own;
use confab_proto::protocol::{
    AppFigures, Chat, Content, Conversation, DeviceInfo, GroupEvent, GroupId, GroupInfo, MediaKind, MemberInfo,
    Message, MessageId, OnlineUser, OpenGroup, PushDeviceInfo, PushPlatform, ReadPosition, Request, Role, RoomInfo,
    Seq, ServerStats, SupportId, SupportInfo, Target,
};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The body of a transient message that means "is typing".
pub const TYPING: &str = "typing";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        addr: String,
    },
    /// The server is not the user's home node (a cluster): the register or login is being
    /// sent again to node `node` at `addr`.
    Redirected {
        node: u32,
        addr: String,
    },
    Registered {
        username: String,
    },
    /// `reconnected` when the client logged in again by itself after a drop; `device` is
    /// this client's device id for the user.
    LoggedIn {
        username: String,
        display_name: String,
        device: String,
        acked: Seq,
        last_seq: Seq,
        reconnected: bool,
    },
    /// The receipt of a stored message; `to` is a user or a group.
    Sent {
        to: Target,
        seq: Seq,
        message_id: MessageId,
        duplicate: bool,
        content: Content,
    },
    /// A message the user sent to `to` from another device (at `seq` of the user's inbox).
    SentCopy {
        to: String,
        seq: Seq,
        message_id: MessageId,
        timestamp_ms: u64,
        content: Content,
    },
    TransientSent {
        to: String,
        delivered: bool,
    },
    /// A room message or broadcast went out; `to` is a room or everyone.
    Delivered {
        to: Target,
        recipients: u32,
        content: Content,
    },
    Message {
        conversation: Conversation,
        seq: Seq,
        message_id: MessageId,
        from: String,
        /// The sender's display name (a service's is its name).
        display_name: String,
        /// Sent by a service (a bot or the system), not a person.
        service: bool,
        /// A shop's staff member in a support conversation (to its customer `from` is the
        /// shop, `display_name` the agent).
        staff: bool,
        timestamp_ms: u64,
        content: Content,
    },
    /// A membership, role or name change of a group (stored like a message), or its
    /// deletion (live only).
    GroupChange {
        group_id: GroupId,
        seq: Seq,
        timestamp_ms: u64,
        event: GroupEvent,
    },
    /// In the inbox: `by` deleted its message `message_id` (of the chat `chat`, when this
    /// client knows the message; `preview`, the start of its text, likewise).
    MessageDeleted {
        seq: Seq,
        message_id: MessageId,
        by: String,
        chat: Option<Chat>,
        preview: Option<String>,
    },
    /// A chat's unread messages: at login (chats with any), or one per chat after
    /// [`Event::ReadStateCount`].
    Unread {
        chat: Chat,
        unread: u64,
        read_up_to: Seq,
        last_seq: Seq,
    },
    /// `/unread`: this header, then one [`Event::Unread`] per chat.
    ReadStateCount {
        chats: usize,
        read_receipts: bool,
    },
    /// `/history`: this header, then one [`Event::HistoryMessage`] per message, oldest first.
    History {
        chat: Chat,
        count: usize,
        more: bool,
    },
    /// A message (or a group's event) of a history page; `deleted`: its sender deleted it.
    HistoryMessage {
        message: Message,
        deleted: bool,
    },
    /// The server has our read mark: `chat` read up to `up_to`, `unread` left. `asked`: by
    /// the user's `/read`, not by the client after showing the chat.
    Read {
        chat: Chat,
        up_to: Seq,
        unread: u64,
        asked: bool,
    },
    /// The user read `chat` up to `up_to` on another device.
    ReadMark {
        chat: Chat,
        up_to: Seq,
        unread: u64,
    },
    /// `reader` has read our direct messages up to `up_to` (a sequence of its inbox);
    /// `own`: the newest of ours that reaches, when this client knows it.
    ReadReceipt {
        reader: String,
        up_to: Seq,
        own: Option<Own>,
    },
    /// The user cleared the chat's history up to `up_to` on another device.
    HistoryCleared {
        chat: Chat,
        up_to: Seq,
    },
    /// `/devices`: this header, then one [`Event::Device`] per device.
    DeviceCount {
        count: usize,
    },
    Device(DeviceInfo),
    /// `/group read`: how far each member has read the group.
    ReadPositions {
        group_id: GroupId,
        readers: Vec<ReadPosition>,
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
        conversation: Conversation,
        up_to: Seq,
    },
    /// `asked`: by the user's `/resync`, not by the client after seeing a gap.
    Resynced {
        conversation: Conversation,
        after: Seq,
        last_seq: Seq,
        asked: bool,
    },
    LoggedOut,
    Peer {
        username: String,
    },
    GroupCreated {
        group_id: GroupId,
        name: String,
        open: bool,
    },
    /// The server carried out a request that has nothing else to say (`Reply::Done`).
    Done {
        request: Request,
    },
    /// `/groups`: this header, then one [`Event::Group`] per group.
    GroupCount {
        count: usize,
    },
    Group(GroupInfo),
    Members {
        group_id: GroupId,
        members: Vec<MemberInfo>,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
        more: bool,
    },
    RoomMembers {
        room: String,
        members: Vec<OnlineUser>,
    },
    /// `/groups open`: this header (`last`: the page's last id, for the next page), then
    /// one [`Event::OpenGroup`] per group.
    OpenGroupCount {
        count: usize,
        more: bool,
        last: GroupId,
    },
    OpenGroup(OpenGroup),
    /// `/support`: this header, then one [`Event::Support`] per conversation.
    SupportCount {
        count: usize,
        more: bool,
    },
    Support(SupportInfo),
    /// To staff: `agent` answers the conversation now (None: released to every staff
    /// member).
    Claimed {
        conversation: SupportId,
        shop: String,
        customer: String,
        agent: Option<String>,
    },
    /// `/watch`: presence pushes for `username` follow.
    Watching {
        username: String,
        online: bool,
    },
    Stats(ServerStats),
    /// One app's figures: after `Stats`, one per app; alone in an app other than default.
    AppStats(AppFigures),
    /// `/push`: this header, then one [`Event::PushDevice`] per device and one
    /// [`Event::Muted`] per mute.
    PushSettings {
        devices: usize,
        mutes: usize,
    },
    PushDevice(PushDeviceInfo),
    /// A chat without push notifications until `until_ms` (0: until unmuted): the answer
    /// to `/mute`, or one of the mutes `/push` lists.
    Muted {
        chat: Chat,
        until_ms: u64,
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
        Event::Sent { .. } | Event::SentCopy { .. } | Event::Delivered { .. } => Tone::Own,
        Event::HistoryMessage { .. } => Tone::Incoming,
        Event::Error { .. } | Event::Kicked { .. } | Event::ShuttingDown | Event::Disconnected { .. } => Tone::Alert,
        _ => Tone::Notice,
    }
}

/// Events a person need not see: the client's own bookkeeping.
pub fn is_housekeeping(event: &Event) -> bool {
    matches!(event, Event::Acked { .. } | Event::Resynced { asked: false, .. } | Event::Read { asked: false, .. })
}

fn is_typing(content: &Content) -> bool {
    content.media.is_none() && content.body == TYPING.as_bytes()
}

/// How a person is shown: the display name, with the username when they differ (the
/// username is what cannot be faked).
pub fn who(username: &str, display_name: &str) -> String {
    if display_name.is_empty() || display_name == username {
        clean(username)
    } else {
        format!("{} ({username})", clean(display_name))
    }
}

/// The lowercase word for a push platform, as the reference gateway names it.
pub fn platform_word(platform: PushPlatform) -> &'static str {
    match platform {
        PushPlatform::Apns => "apns",
        PushPlatform::Fcm => "fcm",
        PushPlatform::WebPush => "webpush",
        PushPlatform::Other => "other",
    }
}

/// The lowercase word for a role, as `/group role` takes it.
pub fn role_word(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
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

/// The start of a message's text, for showing which message a receipt or deletion means.
pub fn preview(content: &Content) -> String {
    const PREVIEW_CHARS: usize = 40;
    let text = String::from_utf8_lossy(&content.body);
    let mut preview: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        preview.push('…');
    }
    preview
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

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// HH:MM:SS (UTC) of a Unix time in milliseconds.
pub fn clock(ms: u64) -> String {
    let secs = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// YYYY-MM-DD HH:MM:SS (UTC) of a Unix time in milliseconds: for times that need not be
/// today, such as the end of a mute.
pub fn date_time(ms: u64) -> String {
    // Days to a civil date in the proleptic Gregorian calendar (H. Hinnant's
    // `civil_from_days`, for days on or after 1970-01-01), with years starting in March
    // so the leap day is the last day of a year.
    let days = ms / 86_400_000;
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {}", clock(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock((13 * 3600 + 4 * 60 + 5) * 1000 + 999), "13:04:05");
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00");
        assert_eq!(date_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(date_time(951_868_799_999), "2000-02-29 23:59:59");
        assert_eq!(date_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(date_time(4_102_444_799_000), "2099-12-31 23:59:59");
    }

    #[test]
    fn only_bookkeeping_is_hidden_from_people() {
        let resynced =
            |asked| Event::Resynced { conversation: Conversation::Inbox, after: Seq(1), last_seq: Seq(2), asked };
        assert!(is_housekeeping(&resynced(false)));
        assert!(!is_housekeeping(&resynced(true)));
        assert!(is_housekeeping(&Event::Acked { conversation: Conversation::Group(GroupId(1)), up_to: Seq(1) }));
    }
}
