//! What a client sends: the frame, every request, and where a message goes.

use super::{ClientMsgId, Content, GroupId, MessageId, Role, Seq, SupportId};
use serde::{Deserialize, Serialize};

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
    /// Must be the first frame. Answered by [`Reply::Hello`](super::Reply::Hello).
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
    /// Registers this device for push notifications while the user is offline, or
    /// replaces the token and settings of a device registered before. `device` is the
    /// client's own stable name for the device; `previews`: whether a notification may
    /// show the first characters of a message (never, when false: the text does not leave
    /// the server).
    SetPushDevice {
        device: String,
        platform: PushPlatform,
        #[debug("<redacted>")]
        token: String,
        previews: bool,
    },
    /// Forgets this device's push token (no error if there was none).
    RemovePushDevice {
        device: String,
    },
    /// No push notifications for this chat until `until_ms` (ms since the epoch), or until
    /// unmuted when 0. Muting again replaces the time.
    Mute {
        chat: Chat,
        until_ms: u64,
    },
    Unmute {
        chat: Chat,
    },
    /// The caller's push devices and mutes.
    PushSettings,
    /// Services with the push permission: become the push gateway. Events follow as
    /// [`Push::PushEvent`](super::Push::PushEvent) pushes, in order, from the oldest the
    /// gateway has not acknowledged.
    SubscribePush,
    /// The gateway has handled every push event up to and including `up_to`: the server
    /// forgets them.
    AckPush {
        up_to: u64,
    },
    /// Services with the push permission: the push service said this token of the user's
    /// is no longer valid (the app was removed, the token expired): forget every device of
    /// the user with this token, so no later event names it.
    DropPushToken {
        username: String,
        #[debug("<redacted>")]
        token: String,
    },
    /// `Hello` naming the app (tenant) this connection belongs to: users, groups, rooms,
    /// services and everything else it sees are that app's. Must be the first frame, like
    /// `Hello` (which is this with the app `default`). An app the server does not host is
    /// refused with `UnknownApp`.
    HelloApp {
        version: u16,
        client: String,
        app: String,
    },
    /// Staff of the conversation's shop: answer it from now on. Only this agent (and the
    /// customer) is pushed its new messages; every online staff member of the shop is told
    /// with [`Push::SupportClaimed`](super::Push::SupportClaimed). Refused while another
    /// agent holds it.
    ClaimSupport {
        conversation: SupportId,
    },
    /// The current agent (or, while nobody holds it, any staff member) passes the
    /// conversation to `to`, who must be staff of the same shop.
    HandOverSupport {
        conversation: SupportId,
        to: String,
    },
    /// The current agent lets go: every staff member is pushed its new messages again.
    ReleaseSupport {
        conversation: SupportId,
    },
    /// One page of support conversations by ascending id after `after` (`SupportId(0)` =
    /// from the start): a shop's, for its staff; or, with `shop` empty, the caller's own
    /// as a customer.
    ListSupport {
        shop: String,
        after: SupportId,
        limit: u32,
    },
    /// Services only: makes `username` staff of `shop`.
    AddStaff {
        shop: String,
        username: String,
    },
    /// Services only: `username` is no longer staff of `shop` (its positions go, a claim
    /// it held is released).
    RemoveStaff {
        shop: String,
        username: String,
    },
    /// `Login` from a named device: the client's own stable id for this device (1-64
    /// printable ASCII, chosen once and kept with the resume token). A user may have up to
    /// the server's `max_devices` sessions at once, one per device; a login from a device
    /// that has a session replaces that session only. Answered by
    /// [`Reply::DeviceLoggedIn`](super::Reply::DeviceLoggedIn).
    LoginDevice {
        username: String,
        #[debug("<redacted>")]
        password: String,
        device: String,
    },
    /// `Resume` from a named device, with the token that device's login gave it (tokens
    /// are per device).
    ResumeDevice {
        username: String,
        #[serde(with = "serde_bytes")]
        #[debug("<redacted>")]
        token: Vec<u8>,
        device: String,
    },
    /// Ends every session of the user, on every device, and revokes every resume token.
    LogoutEverywhere,
    /// The caller's devices: the ones with a session now and the ones the server keeps
    /// positions for.
    ListDevices,
    /// Forgets one of the caller's devices (a lost phone): its session ends, its resume
    /// token is revoked and its positions go.
    RemoveDevice {
        device: String,
    },
    /// One page of a conversation's history: up to `limit` messages before `before`
    /// (`Seq(0)` = from the newest), oldest first. A direct chat's history is the caller's
    /// inbox filtered to that user, in the inbox's sequence (both directions: what the
    /// caller sent is there as sent copies); a group's is the group's sequence from when
    /// the caller last joined.
    History {
        chat: Chat,
        before: Seq,
        limit: u32,
    },
    /// Deletes a message the caller sent, for everyone (within the server's time limit):
    /// every device of every reader is told, and its content is gone from history.
    DeleteMessage {
        chat: Chat,
        message_id: MessageId,
    },
    /// Hides a chat's history up to and including `up_to` from the caller's own devices
    /// (the other side keeps theirs).
    ClearHistory {
        chat: Chat,
        up_to: Seq,
    },
    /// The caller has read the chat up to and including `up_to`: its other devices are
    /// told, its unread count there clears, and (unless the caller turned receipts off) the
    /// senders of direct messages learn it.
    MarkRead {
        chat: Chat,
        up_to: Seq,
    },
    /// The caller's read position and unread count in each chat.
    ReadState,
    /// Whether others learn when the caller has read their messages (on by default).
    SetReadReceipts {
        enabled: bool,
    },
    /// Members of a group: how far each member has read it.
    ReadPositions {
        group_id: GroupId,
    },
}

impl Request {
    /// Whether it names a user to log in as (or to register): `Register`, `Login`,
    /// `Resume`, `LoginDevice`, `ResumeDevice`. In a cluster only the user's home node takes
    /// these; another answers `Reply::Redirect` (protocol.md "Cluster").
    pub fn is_login(&self) -> bool {
        matches!(
            self,
            Request::Register { .. }
                | Request::Login { .. }
                | Request::Resume { .. }
                | Request::LoginDevice { .. }
                | Request::ResumeDevice { .. }
        )
    }

    /// The group a user's request acts on, if any: the group's owner handles it (and a
    /// server checks the group is the user's app's first).
    pub fn group(&self) -> Option<GroupId> {
        match self {
            Request::Send { to: Target::Group(id), .. }
            | Request::Ack { conversation: Conversation::Group(id), .. }
            | Request::Resync { conversation: Conversation::Group(id), .. }
            | Request::RenameGroup { group_id: id, .. }
            | Request::AddMember { group_id: id, .. }
            | Request::RemoveMember { group_id: id, .. }
            | Request::SetRole { group_id: id, .. }
            | Request::JoinGroup { group_id: id }
            | Request::LeaveGroup { group_id: id }
            | Request::DeleteGroup { group_id: id }
            | Request::GroupMembers { group_id: id }
            | Request::History { chat: Chat::Group(id), .. }
            | Request::DeleteMessage { chat: Chat::Group(id), .. }
            | Request::ClearHistory { chat: Chat::Group(id), .. }
            | Request::MarkRead { chat: Chat::Group(id), .. }
            | Request::ReadPositions { group_id: id } => Some(*id),
            _ => None,
        }
    }

    /// The support conversation a request acts on by id, if any: the conversation's shop's
    /// owner handles it.
    pub fn support(&self) -> Option<SupportId> {
        match self {
            Request::Send { to: Target::Support(id), .. }
            | Request::Ack { conversation: Conversation::Support(id), .. }
            | Request::Resync { conversation: Conversation::Support(id), .. }
            | Request::ClaimSupport { conversation: id }
            | Request::HandOverSupport { conversation: id, .. }
            | Request::ReleaseSupport { conversation: id }
            | Request::History { chat: Chat::Support(id), .. }
            | Request::DeleteMessage { chat: Chat::Support(id), .. }
            | Request::ClearHistory { chat: Chat::Support(id), .. } => Some(*id),
            _ => None,
        }
    }
}

/// What kind of device a push token is for: the gateway picks the push service by it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PushPlatform {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
    /// Web Push (RFC 8030); the token is the subscription as the browser gave it.
    WebPush,
    /// Anything else the operator's gateway understands.
    Other,
}

/// A conversation as a user sees it, for mutes and push events: with a user (direct
/// messages), a group, or a service's system messages.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Chat {
    User(String),
    Group(GroupId),
    Service(String),
    /// A customer-support conversation (a customer's with a shop), by id.
    Support(SupportId),
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
    /// A shop, by name: the caller's support conversation with it (made by the first
    /// message), answered by the shop's staff.
    Shop(String),
    /// A support conversation by id: its customer or its shop's staff may write to it.
    Support(SupportId),
}

/// A sequence of stored messages with its own contiguous numbering.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Conversation {
    /// The logged-in user's own inbox of direct messages.
    Inbox,
    /// A group's shared sequence.
    Group(GroupId),
    /// A customer-support conversation: its customer and its shop's staff read it.
    Support(SupportId),
}
