//! What the server answers: the frame, every reply and the records replies carry.

use super::{
    retry_ms, Chat, Conversation, ErrorCode, GroupId, Message, MessageId, Push, PushPlatform, Role, Seq, SupportId,
    UserId,
};
use serde::{Deserialize, Serialize};

impl ServerFrame {
    /// An error frame with no retry time (every code but `RateLimited` and `Unavailable`).
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

    /// An `Unavailable` error: the node that holds what the request is about cannot be
    /// reached; try again after `retry_after`.
    pub fn unavailable(request_id: u32, message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        ServerFrame::Error {
            request_id,
            code: ErrorCode::Unavailable,
            message: message.into(),
            retry_after_ms: retry_ms(retry_after),
        }
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
    /// `retry_after_ms`: for `RateLimited` and `Unavailable`, how long to wait before the
    /// same request can succeed (at least 1); 0 for every other code. The message is for people only.
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
    /// The caller's push devices (without their tokens) and the chats it muted.
    PushSettings {
        devices: Vec<PushDeviceInfo>,
        mutes: Vec<MuteInfo>,
    },
    /// This connection is the push gateway now. Events after `acked` up to `last_seq` are
    /// queued and follow as pushes.
    PushSubscribed {
        acked: u64,
        last_seq: u64,
    },
    /// The push queue's acknowledged position now.
    PushAcked {
        up_to: u64,
    },
    /// The answer to `Stats` on a connection of an app other than `default`: that app's
    /// figures only (the server's own are the operator's, in the app `default`).
    AppStats(AppFigures),
    /// A page of support conversations (`ListSupport`); `more` when further ones follow.
    SupportList {
        conversations: Vec<SupportInfo>,
        more: bool,
    },
    /// `LoginDevice` or `ResumeDevice` succeeded: as `LoggedIn`, for this device (`acked`
    /// is this device's inbox position), with the caller's read state in every chat.
    DeviceLoggedIn {
        user_id: UserId,
        display_name: String,
        device: String,
        acked: Seq,
        last_seq: Seq,
        /// 32 bytes, for this device only.
        #[serde(with = "serde_bytes")]
        #[debug("<redacted>")]
        resume_token: Vec<u8>,
        admin: bool,
        chats: Vec<ChatState>,
        read_receipts: bool,
    },
    Devices {
        devices: Vec<DeviceInfo>,
    },
    /// A page of history (`History`), oldest first; `more` when older messages are kept.
    HistoryPage {
        chat: Chat,
        messages: Vec<Message>,
        more: bool,
    },
    ReadState {
        chats: Vec<ChatState>,
        read_receipts: bool,
    },
    ReadPositions {
        group_id: GroupId,
        readers: Vec<ReadPosition>,
    },
    /// In a cluster, the user named by `Register`, `Login`, `Resume`, `LoginDevice` or
    /// `ResumeDevice` is homed on another node: connect to `address` (node `node`) and
    /// send the same request there. Nothing was done here.
    Redirect {
        node: u32,
        address: String,
    },
}

/// One of a user's devices.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeviceInfo {
    pub device: String,
    pub online: bool,
    /// When it last logged in or its session ended (ms since the epoch).
    pub last_seen_ms: u64,
    /// Whether it is the device that asked.
    pub this: bool,
}

/// A chat as the caller's read state has it. Sequences are the chat's: a direct chat's are
/// those of the caller's inbox.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ChatState {
    pub chat: Chat,
    /// The chat's newest message.
    pub last_seq: Seq,
    pub read_up_to: Seq,
    /// Messages from others after `read_up_to`.
    pub unread: u64,
    /// History up to here is cleared for the caller (`ClearHistory`).
    pub cleared_up_to: Seq,
}

/// How far a group member has read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReadPosition {
    pub username: String,
    pub read_up_to: Seq,
}

/// One app's figures and limits (a limit of 0 means none).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AppFigures {
    pub app: String,
    /// Accounts, and the most the app may have.
    pub users: u64,
    pub max_users: u64,
    /// Users logged in now, and the most at once (services are not counted).
    pub logged_in: u64,
    pub max_connections: u64,
    /// Groups, and the most the app may have.
    pub groups: u64,
    pub max_groups: u64,
    pub rooms: u64,
    /// Messages accepted from the app's clients (stored and transient), since start.
    pub messages_received: u64,
}

/// A support conversation as a listing shows it to its customer or to a staff member.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SupportInfo {
    pub conversation: SupportId,
    pub shop: String,
    pub customer: String,
    /// The agent holding it; None while any staff member may answer.
    pub claimed_by: Option<String>,
    pub last_seq: Seq,
    /// The caller's acknowledged position in it.
    pub acked: Seq,
    /// When its last message was stored (ms since the epoch); 0 if it has none left.
    pub last_ms: u64,
}

/// A registered push device, as its user sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PushDeviceInfo {
    pub device: String,
    pub platform: PushPlatform,
    pub previews: bool,
    pub registered_ms: u64,
}

/// A muted chat; `until_ms` 0 means until unmuted.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MuteInfo {
    pub chat: Chat,
    pub until_ms: u64,
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
    /// Push events waiting for the gateway's ack, events made since start, and
    /// notifications dropped since start (the full queue's oldest events, and notes that
    /// came faster than the queue took them).
    pub push_queued: u64,
    pub push_events: u64,
    pub push_dropped: u64,
    /// Push events not sent because, when they came due, their recipient was online again
    /// or had no device any more, since start.
    pub push_skipped: u64,
    /// Every app's figures, in name order (the server's figures above count all apps).
    pub apps: Vec<AppFigures>,
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
