//! The wire protocol: what clients send, what the server answers and pushes, and the error
//! codes. protocol.md documents every type here field by field; its hex vectors are
//! checked against these definitions by this crate's `tests/vectors.rs`.
//!
//! Compatibility rule: enum variants and struct fields are only ever *appended*. postcard
//! encodes a variant by its index, so reordering would silently change the wire.

use serde::{Deserialize, Serialize};

// The ids are part of the contract: one import gives a client the types and their ids.
pub use crate::ids::{ClientMsgId, GroupId, MessageId, Seq, UserId};

/// The protocol version this server speaks. A Hello with another version is refused with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 2;

/// Request id of error frames that answer no particular request (a bad frame, a timeout).
pub const NO_REQUEST: u32 = 0;

impl ServerFrame {
    /// An error frame with no retry time (every code but `RateLimited`).
    pub fn error(request_id: u32, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error { request_id, code, message: message.into(), retry_after_ms: 0 }
    }

    /// A `RateLimited` error: try again after `retry_after` (rounded up to whole
    /// milliseconds, at least 1, so 0 always means "not applicable").
    pub fn rate_limited(request_id: u32, message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        ServerFrame::Error {
            request_id,
            code: ErrorCode::RateLimited,
            message: message.into(),
            retry_after_ms: retry_ms(retry_after),
        }
    }
}

/// A wait in whole milliseconds for `retry_after_ms`: rounded up, at least 1, saturated.
pub fn retry_ms(wait: std::time::Duration) -> u32 {
    let ms = wait.as_micros().div_ceil(1000).max(1);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Everything a client sends: a request and the id its reply will carry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClientFrame {
    pub request_id: u32,
    pub request: Request,
}

/// `Debug` prints passwords and tokens as `<redacted>`, so a request can be logged whole.
#[derive(Serialize, Deserialize, derive_more::Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// Must be the first frame. Answered by [`Reply::Hello`].
    Hello {
        version: u16,
        client: String,
    },
    /// Heartbeat; allowed in every state after Hello.
    Ping,
    Register {
        username: String,
        #[debug("<redacted>")]
        password: String,
    },
    Login {
        username: String,
        #[debug("<redacted>")]
        password: String,
    },
    /// A message to a user. `client_msg_id` (unique per sender, non-zero) makes a retry
    /// idempotent. Transient messages are never stored and reach only online recipients.
    Send {
        to: Target,
        client_msg_id: ClientMsgId,
        transient: bool,
        content: Content,
    },
    /// "I have everything up to and including `up_to`": the server may forget it.
    Ack {
        conversation: Conversation,
        up_to: Seq,
    },
    /// Deliver again everything after `after` (a client that detected a gap).
    Resync {
        conversation: Conversation,
        after: Seq,
    },
    Rename {
        display_name: String,
    },
    /// One page of online users, in username order, starting after `after` ("" = start).
    ListOnline {
        after: String,
        limit: u32,
    },
    /// Ends the session and revokes the user's resume tokens.
    Logout,
    /// Logs in with a resume token from an earlier LoggedIn: no password hash, so
    /// reconnecting is cheap.
    Resume {
        username: String,
        #[serde(with = "serde_bytes")]
        #[debug("<redacted>")]
        token: Vec<u8>,
    },
    /// Creates a persistent group owned by the caller. `open` groups can be joined by anyone.
    CreateGroup {
        name: String,
        open: bool,
    },
    RenameGroup {
        group_id: GroupId,
        name: String,
    },
    AddMember {
        group_id: GroupId,
        username: String,
    },
    RemoveMember {
        group_id: GroupId,
        username: String,
    },
    /// Owner only. Giving `Owner` hands the group over; the old owner becomes an admin.
    SetRole {
        group_id: GroupId,
        username: String,
        role: Role,
    },
    JoinGroup {
        group_id: GroupId,
    },
    LeaveGroup {
        group_id: GroupId,
    },
    DeleteGroup {
        group_id: GroupId,
    },
    ListGroups,
    GroupMembers {
        group_id: GroupId,
    },
    /// Joins an ephemeral room (created on first join, gone when the last member leaves).
    JoinRoom {
        room: String,
    },
    LeaveRoom {
        room: String,
    },
    /// One page of rooms in name order, starting after `after` ("" = start).
    ListRooms {
        after: String,
        limit: u32,
    },
    RoomMembers {
        room: String,
    },
    /// Presence pushes for `username` go to this session until it ends or unsubscribes.
    SubscribePresence {
        username: String,
    },
    UnsubscribePresence {
        username: String,
    },
    /// Logs a back-end service in with a token the operator created (`confabd service add`).
    ServiceLogin {
        name: String,
        #[debug("<redacted>")]
        token: String,
    },
    /// Services only: a system message to users, a group, or everyone online.
    ServiceSend {
        to: ServiceTarget,
        client_msg_id: ClientMsgId,
        /// Push only to recipients connected now, store nothing, and report how many got it.
        transient: bool,
        content: Content,
    },
    /// Services only: which of these users are online, in the same order.
    QueryOnline {
        users: Vec<String>,
    },
    /// Services only: end a user's session, telling it why.
    Disconnect {
        username: String,
        reason: String,
    },
    /// Services only: from now on, push a Connection event whenever a user logs in or a
    /// user's session ends.
    WatchConnections,
    /// Administrators and services: live server statistics.
    Stats,
    /// One page of the open groups (anyone may join them), by ascending id after `after`
    /// (`GroupId(0)`, which no group has, = from the start).
    ListOpenGroups {
        after: GroupId,
        limit: u32,
    },
}

/// Where a service's message goes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ServiceTarget {
    Users(Vec<String>),
    /// Every member of the group, except `except` if given.
    Group {
        group_id: GroupId,
        except: Option<String>,
    },
    /// Every user online now.
    Online,
}

/// Who sent a message: a user, or a back-end service (shown as a system message).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SenderKind {
    #[default]
    User,
    Service,
}

/// Where a message goes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Target {
    User(String),
    /// Every member of the group (stored in the group's sequence).
    Group(GroupId),
    /// The members of the room at this moment (never stored).
    Room(String),
    /// Every online user (never stored; administrators only unless the server allows all).
    Everyone,
}

/// A sequence of stored messages with its own contiguous numbering.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Conversation {
    /// The logged-in user's own inbox of direct messages.
    Inbox,
    /// A group's shared sequence.
    Group(GroupId),
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Role {
    Owner,
    Admin,
    Member,
}

/// A membership change, stored in the group's sequence like a message so that members who
/// were offline learn of it in order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum GroupEvent {
    Created {
        by: String,
    },
    Joined {
        username: String,
    },
    Left {
        username: String,
    },
    Added {
        username: String,
        by: String,
    },
    Removed {
        username: String,
        by: String,
    },
    Renamed {
        name: String,
        by: String,
    },
    RoleChanged {
        username: String,
        role: Role,
        by: String,
    },
    /// Pushed live to online members only: the group and its history are gone.
    Deleted {
        by: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum MediaKind {
    Text,
    Image,
    Audio,
    File,
    Custom,
    /// A group event; `Message::event` says which.
    System,
}

/// Where a media message's payload lives; the body then carries a caption or thumbnail.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Media {
    pub url: String,
    pub description: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Content {
    pub kind: MediaKind,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub media: Option<Media>,
}

impl Content {
    pub fn text(text: impl Into<String>) -> Self {
        Content { kind: MediaKind::Text, body: text.into().into_bytes(), media: None }
    }
}

/// Everything the server sends.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ServerFrame {
    Reply {
        request_id: u32,
        reply: Reply,
    },
    /// `retry_after_ms`: for `RateLimited`, how long to wait before the same request can
    /// succeed (at least 1); 0 for every other code. The message is for people only.
    Error {
        request_id: u32,
        code: ErrorCode,
        message: String,
        retry_after_ms: u32,
    },
    Push(Push),
}

/// `Debug` prints the resume token as `<redacted>`, so a reply can be logged whole.
#[derive(Serialize, Deserialize, derive_more::Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    Hello {
        version: u16,
        server: String,
        max_frame: u32,
        max_body: u32,
        heartbeat_secs: u32,
        idle_timeout_secs: u32,
        /// Messages pushed per conversation beyond the last ack before the server waits
        /// for an ack: ack well before this many are outstanding.
        delivery_window: u32,
        /// The rest of what a client needs to pace itself (appended in version 2).
        limits: Limits,
    },
    Pong,
    Registered {
        user_id: UserId,
    },
    /// `acked` and `last_seq` describe the inbox; messages `acked+1..=last_seq` follow as pushes.
    LoggedIn {
        user_id: UserId,
        display_name: String,
        acked: Seq,
        last_seq: Seq,
        /// 32 bytes; logs in again without the password until it expires or the user
        /// logs out.
        #[serde(with = "serde_bytes")]
        #[debug("<redacted>")]
        resume_token: Vec<u8>,
        /// Whether the account is an administrator (may broadcast and read Stats).
        admin: bool,
    },
    /// The message is on disk. `duplicate` is true when `client_msg_id` was seen before and
    /// this is the original's receipt.
    Sent {
        message_id: MessageId,
        seq: Seq,
        timestamp_ms: u64,
        duplicate: bool,
    },
    /// A transient message went out; `delivered` is false when the recipient was offline.
    TransientSent {
        delivered: bool,
    },
    Acked {
        conversation: Conversation,
        up_to: Seq,
    },
    Resynced {
        conversation: Conversation,
        after: Seq,
        last_seq: Seq,
    },
    Renamed {
        display_name: String,
    },
    Online {
        users: Vec<OnlineUser>,
        more: bool,
    },
    LoggedOut,
    /// Success of a request that has nothing else to say.
    Done,
    GroupCreated {
        group_id: GroupId,
    },
    Groups {
        groups: Vec<GroupInfo>,
    },
    Members {
        group_id: GroupId,
        members: Vec<MemberInfo>,
    },
    /// A room message or broadcast went to this many connections.
    Delivered {
        recipients: u32,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
        more: bool,
    },
    RoomMembers {
        room: String,
        members: Vec<OnlineUser>,
    },
    Subscribed {
        username: String,
        online: bool,
    },
    ServiceLoggedIn {
        name: String,
    },
    /// `stored`: messages stored (one per user, one for a group); `delivered`: pushed to a
    /// connection now; `unknown`: usernames that do not exist.
    ServiceSent {
        stored: u32,
        delivered: u32,
        unknown: Vec<String>,
    },
    OnlineStatus {
        online: Vec<bool>,
    },
    Disconnected {
        was_online: bool,
    },
    Stats(ServerStats),
    OpenGroups {
        groups: Vec<OpenGroup>,
        more: bool,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ServerStats {
    pub version: String,
    pub uptime_secs: u64,
    pub connections: u64,
    pub logged_in: u64,
    pub rooms: u64,
    pub groups: u64,
    /// Messages accepted from clients (stored and transient), since start.
    pub messages_received: u64,
    /// Messages pushed to connections (each recipient counts), since start.
    pub messages_delivered: u64,
    /// Per second over the last 10 seconds.
    pub received_per_sec: u64,
    pub delivered_per_sec: u64,
    /// Stored messages not yet acknowledged by everyone they are owed to.
    pub stored_messages: u64,
    pub outbound_bytes_queued: u64,
    pub storage_bytes: u64,
    /// fdatasync calls on the commit logs since start (0 with `--sync none`).
    pub log_syncs: u64,
    /// Over the last 10 seconds: syncs per second, changes (messages, acks, dedup
    /// records) per commit, and commit latency (write and sync) percentiles.
    pub log_syncs_per_sec: u64,
    pub log_changes_per_commit: u64,
    pub log_commit_p50_us: u64,
    pub log_commit_p99_us: u64,
    pub log_commit_max_us: u64,
    /// Disk space reserved by commit-log segments.
    pub log_bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GroupInfo {
    pub group_id: GroupId,
    pub name: String,
    pub open: bool,
    pub role: Role,
    pub members: u32,
    /// The caller's acknowledged position and the group's last sequence.
    pub acked: Seq,
    pub last_seq: Seq,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MemberInfo {
    pub username: String,
    pub role: Role,
    pub online: bool,
    pub display_name: String,
}

/// An entry of the open-group directory.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenGroup {
    pub group_id: GroupId,
    pub name: String,
    pub members: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RoomInfo {
    pub name: String,
    pub members: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OnlineUser {
    pub username: String,
    pub display_name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Push {
    /// A stored message. Sequences are contiguous per conversation, but a session is not
    /// pushed its own group messages (nor ones a service addressed to all but it), so gaps
    /// are judged by `prev_seq`: one above the last sequence seen means something was
    /// missed (send Resync); one below means a redelivery.
    Message(Message),
    Transient {
        from: String,
        content: Content,
    },
    /// Another login took this user's session; the connection closes after this frame.
    Kicked {
        reason: String,
    },
    /// The server is stopping; the connection closes after this frame.
    ShuttingDown,
    RoomMessage {
        room: String,
        from: String,
        content: Content,
    },
    Broadcast {
        from: String,
        content: Content,
    },
    /// A user this session shares a group with, or subscribed to, came online or went offline.
    Presence {
        username: String,
        online: bool,
    },
    /// A service's live-only message (ServiceSend with transient set).
    ServiceNotice {
        service: String,
        content: Content,
    },
    /// To services that asked (WatchConnections): a user logged in, or its session ended.
    Connection {
        username: String,
        connected: bool,
        reason: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Message {
    pub conversation: Conversation,
    pub seq: Seq,
    /// The sequence of the message pushed to this session before this one in the same
    /// conversation, or where delivery started (the ack at login, the point of a resync).
    /// A client whose last seen sequence is below `prev_seq` has missed something.
    pub prev_seq: Seq,
    pub message_id: MessageId,
    pub from: String,
    /// A service's messages are system messages: show them apart.
    pub sender: SenderKind,
    pub timestamp_ms: u64,

    pub content: Content,
    /// Set on group events (content kind `System`, empty body).
    pub event: Option<GroupEvent>,
    /// The sender's display name now (for a service, its name), so a client can show who
    /// wrote without asking.
    pub display_name: String,
}

/// Limits announced in the Hello reply, after its first fields. A struct of its own in the
/// code only: on the wire its fields follow `delivery_window` exactly as if inline.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Limits {
    /// Requests per second a connection may sustain, and how many it may send at once
    /// (a token bucket): pace below this or get `RateLimited`.
    pub request_rate: u32,
    pub request_burst: u32,
    /// The same window as `delivery_window`, in bytes of stored messages.
    pub delivery_window_bytes: u32,
    /// Bytes of output the server queues for a connection that does not read before it
    /// closes it with `SlowConsumer` (saturated at u32::MAX).
    pub max_outbound: u32,
    /// How long a resume token from `LoggedIn` stays valid, in seconds.
    pub token_ttl_secs: u32,
    /// Largest frame accepted before login (Register, Login, Resume, ServiceLogin):
    /// smaller than `max_frame` so unauthenticated connections cost little memory.
    pub max_frame_before_login: u32,
}

/// Typed errors. Codes are the variant indices and never change meaning.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ErrorCode {
    UnsupportedVersion,
    BadRequest,
    FrameTooLarge,
    HelloRequired,
    NotLoggedIn,
    AlreadyLoggedIn,
    UnknownUser,
    WrongPassword,
    NameTaken,
    InvalidName,
    InvalidPassword,
    InvalidContent,
    RateLimited,
    Internal,
    SlowConsumer,
    IdleTimeout,
    ShuttingDown,
    ServerFull,
    /// A resume token that is unknown, expired or revoked.
    InvalidToken,
    UnknownGroup,
    NotAMember,
    /// The caller's role does not allow this.
    Forbidden,
    /// A configured limit (members per group, groups per user, room size) is reached.
    LimitReached,
    AlreadyMember,
    /// The server's disk is full: the request was not carried out; retry later.
    StorageFull,
    /// The recipient's inbox holds as many stored, unread bytes as one user may: retry
    /// once it has read them.
    QuotaExceeded,
}

impl ErrorCode {
    /// Errors after which the server closes the connection.
    pub fn closes(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedVersion
                | ErrorCode::FrameTooLarge
                | ErrorCode::HelloRequired
                | ErrorCode::SlowConsumer
                | ErrorCode::IdleTimeout
                | ErrorCode::ShuttingDown
                | ErrorCode::ServerFull
        )
    }
}

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

fn name_chars_ok(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for ok in ["bob", "alice_1", "a.b-c", "0day", &"x".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "ab", "Bob", "_bob", "bo b", "bøb", &"x".repeat(33), "a\u{0}b"] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }

    #[test]
    fn retry_times_round_up_to_whole_milliseconds_and_never_read_as_none() {
        use std::time::Duration;
        assert_eq!(retry_ms(Duration::ZERO), 1, "0 means no retry time, so a wait is at least 1 ms");
        assert_eq!(retry_ms(Duration::from_micros(1)), 1);
        assert_eq!(retry_ms(Duration::from_micros(1001)), 2);
        assert_eq!(retry_ms(Duration::from_secs(3)), 3000);
        assert_eq!(retry_ms(Duration::from_secs(u64::MAX)), u32::MAX);
        assert_eq!(
            ServerFrame::error(1, ErrorCode::BadRequest, "x"),
            ServerFrame::Error { request_id: 1, code: ErrorCode::BadRequest, message: "x".into(), retry_after_ms: 0 }
        );
    }

    #[test]
    fn debug_output_never_shows_passwords_or_tokens() {
        let password = "correct horse battery";
        let token = b"resume-token-bytes".to_vec();
        let service_token = "0123456789abcdef";
        let requests = [
            Request::Register { username: "alice".into(), password: password.into() },
            Request::Login { username: "alice".into(), password: password.into() },
            Request::Resume { username: "alice".into(), token: token.clone() },
            Request::ServiceLogin { name: "shop".into(), token: service_token.into() },
        ];
        // Tokens are bytes: their Debug is a list of numbers, so look for that list too.
        let token_as_list = format!("{token:?}");
        let token_as_list = &token_as_list[1..token_as_list.len() - 1];
        for request in requests {
            // Inside a frame, and pretty-printed, as a log line would show it.
            let frame = ClientFrame { request_id: 7, request };
            for shown in [format!("{frame:?}"), format!("{frame:#?}")] {
                assert!(shown.contains("<redacted>"), "{shown}");
                for secret in [password, service_token, token_as_list] {
                    assert!(!shown.contains(secret), "{secret} shown in {shown}");
                }
                assert!(shown.contains("alice") || shown.contains("shop"), "the name is still shown: {shown}");
            }
        }
        let logged_in = ServerFrame::Reply {
            request_id: 3,
            reply: Reply::LoggedIn {
                user_id: UserId(1),
                display_name: "Alice".into(),
                acked: Seq::ZERO,
                last_seq: Seq::ZERO,
                resume_token: token.clone(),
                admin: false,
            },
        };
        for shown in [format!("{logged_in:?}"), format!("{logged_in:#?}")] {
            assert!(shown.contains("resume_token: <redacted>"), "{shown}");
            assert!(!shown.contains(token_as_list), "{shown}");
            assert!(shown.contains("display_name: \"Alice\""), "{shown}");
        }
    }

    #[test]
    fn debug_of_other_variants_is_as_derived() {
        // derive_more's Debug stands in for std's only to redact; everything else reads the same.
        let request = Request::Hello { version: 2, client: "demo/1.0".into() };
        assert_eq!(format!("{request:?}"), r#"Hello { version: 2, client: "demo/1.0" }"#);
        assert_eq!(format!("{:?}", Request::Ping), "Ping");
        assert_eq!(format!("{:?}", Reply::Registered { user_id: UserId(1) }), "Registered { user_id: UserId(1) }");
        assert!(
            format!("{:?}", Reply::Stats(ServerStats::default())).starts_with(r#"Stats(ServerStats { version: "","#)
        );
        assert_eq!(
            format!("{:?}", Request::Login { username: "alice".into(), password: "secret!!".into() }),
            r#"Login { username: "alice", password: <redacted> }"#
        );
    }

    #[test]
    fn error_codes_are_stable() {
        // protocol.md's error table lists these numbers; changing them breaks every client.
        assert_eq!(postcard::to_allocvec(&ErrorCode::UnsupportedVersion).unwrap(), [0]);
        assert_eq!(postcard::to_allocvec(&ErrorCode::Internal).unwrap(), [13]);
        assert_eq!(postcard::to_allocvec(&ErrorCode::ServerFull).unwrap(), [17]);
    }
}
