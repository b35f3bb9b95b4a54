//! The test vectors of protocol.md, checked against the real codec.
//!
//! Every line inside a ```vectors fence of protocol.md is `<direction> <name>: <hex>`, the
//! complete frame (length prefix included). Each name has exactly one expected value here;
//! the test encodes the value and compares bytes, splits and decodes the bytes and compares
//! values, and fails if the document and this table name different vectors.

use confab_proto::frame;
use confab_proto::protocol::{
    AppFigures, Chat, ChatState, ClientFrame, ClientMsgId, Content, Conversation, DeviceInfo, ErrorCode, GroupEvent,
    GroupId, GroupInfo, Limits, Media, MediaKind, MemberInfo, Message, MessageId, MuteInfo, OnlineUser, OpenGroup,
    Push, PushDeviceInfo, PushEvent, PushPlatform, PushTarget, ReadPosition, Reply, Request, Role, RoomInfo,
    SenderKind, Seq, ServerFrame, ServerStats, ServiceTarget, SupportId, SupportInfo, Target, UserId, NO_REQUEST,
    PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, BTreeSet};

/// protocol.md stays at the repository root, two levels above this crate.
const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../protocol.md");
const FENCE_OPEN: &str = "```vectors";
const FENCE_CLOSE: &str = "```";
const MIN_VECTORS: usize = 24;
/// Largest client frame body a server accepts by default (protocol.md "Framing": `max_frame`,
/// default 65536): every client vector must be one a default server takes.
const DEFAULT_MAX_FRAME: u32 = 65_536;
/// Largest server frame the test accepts when splitting (servers are not bound by max_frame).
const MAX_SERVER_FRAME: u32 = 16 * 1024 * 1024;

/// The timestamp of the first example message (2023-11-14T22:13:20Z); later ones add 1 ms each.
const TS: u64 = 1_700_000_000_000;
/// The example group ("Book club").
const GROUP: GroupId = GroupId(9);
/// The example service's token as `confabd service add shop` prints it (real ones are random).
const SERVICE_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The example push tokens of alice's phone and tablet (real ones are longer and opaque).
const PHONE_TOKEN: &str = "phone-token";
const TABLET_TOKEN: &str = "tablet-token";
/// The example shop and alice's support conversation with it (bob and carol are its staff).
const SHOP: &str = "acme";
const SUPPORT: SupportId = SupportId(30);
/// Eight hours after `TS`: the end of the example mute.
const EIGHT_HOURS_LATER: u64 = TS + 8 * 3_600_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Client(ClientFrame),
    Server(ServerFrame),
}

impl Frame {
    pub(crate) fn direction(&self) -> &'static str {
        match self {
            Frame::Client(_) => "client",
            Frame::Server(_) => "server",
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Client(value) => frame::encode(value),
            Frame::Server(value) => frame::encode(value),
        }
    }
}

fn client(request_id: u32, request: Request) -> Frame {
    Frame::Client(ClientFrame { request_id, request })
}

fn reply(request_id: u32, reply: Reply) -> Frame {
    Frame::Server(ServerFrame::Reply { request_id, reply })
}

fn error(request_id: u32, code: ErrorCode, message: &str) -> Frame {
    Frame::Server(ServerFrame::error(request_id, code, message))
}

/// A `RateLimited` error with its retry time.
fn rate_limited(request_id: u32, message: &str, retry_after_ms: u32) -> Frame {
    Frame::Server(ServerFrame::Error { request_id, code: ErrorCode::RateLimited, message: s(message), retry_after_ms })
}

fn push(push: Push) -> Frame {
    Frame::Server(ServerFrame::Push(push))
}

fn s(text: &str) -> String {
    text.to_string()
}

/// The resume token of the examples: 32 bytes 00, 01, .., 1f (real ones are random).
fn token() -> Vec<u8> {
    (0u8..32).collect()
}

fn typing() -> Content {
    Content { kind: MediaKind::Custom, body: b"typing".to_vec(), media: None }
}

fn cat_picture() -> Content {
    Content {
        kind: MediaKind::Image,
        // The first bytes of a PNG thumbnail.
        body: vec![0x89, 0x50, 0x4e, 0x47],
        media: Some(Media { url: s("https://example.com/cat.png"), description: s("a cat"), size: 123_456 }),
    }
}

fn send(request_id: u32, to: Target, client_msg_id: ClientMsgId, transient: bool, content: Content) -> Frame {
    client(request_id, Request::Send { to, client_msg_id, transient, content })
}

fn service_send(request_id: u32, to: ServiceTarget, client_msg_id: ClientMsgId, transient: bool, text: &str) -> Frame {
    client(request_id, Request::ServiceSend { to, client_msg_id, transient, content: Content::text(text) })
}

/// The example app's figures: 40 of at most 100 users, 3 of them connected.
fn acme_figures() -> AppFigures {
    AppFigures {
        app: s("acme"),
        users: 40,
        max_users: 100,
        logged_in: 3,
        max_connections: 50,
        groups: 2,
        max_groups: 0,
        rooms: 1,
        messages_received: 600,
    }
}

/// The app `default` of the stats example, with no limits.
fn default_figures() -> AppFigures {
    AppFigures { app: s("default"), users: 5, logged_in: 0, messages_received: 400, ..AppFigures::default() }
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| s(name)).collect()
}

/// The display names of the examples: alice renamed herself, the others did not.
fn shown(username: &str) -> String {
    match username {
        "alice" => s("Alice Liddell"),
        other => s(other),
    }
}

/// A stored message from a user, pushed from the inbox or a group.
fn message(
    conversation: Conversation,
    seq: Seq,
    prev_seq: Seq,
    message_id: MessageId,
    from: &str,
    content: Content,
) -> Frame {
    push(Push::Message(Message {
        conversation,
        seq,
        prev_seq,
        message_id,
        from: s(from),
        sender: SenderKind::User,
        timestamp_ms: TS + seq.get() - 1,
        content,
        event: None,
        display_name: shown(from),
    }))
}

/// A direct message as a history page shows it: in the caller's inbox sequence, with no
/// `prev_seq` (a page is not a delivery).
fn history_item(seq: Seq, message_id: MessageId, from: &str, text: &str) -> Message {
    Message {
        conversation: Conversation::Inbox,
        seq,
        prev_seq: Seq(0),
        message_id,
        from: s(from),
        sender: SenderKind::User,
        timestamp_ms: TS + seq.get() - 1,
        content: Content::text(text),
        event: None,
        display_name: shown(from),
    }
}

/// A group event as pushed to a member who has seen everything before it.
fn event(seq: Seq, message_id: MessageId, by: &str, event: GroupEvent) -> Frame {
    push(Push::Message(Message {
        conversation: Conversation::Group(GROUP),
        seq,
        prev_seq: seq - 1,
        message_id,
        from: s(by),
        sender: SenderKind::User,
        timestamp_ms: TS + seq.get() - 1,
        content: Content { kind: MediaKind::System, body: Vec::new(), media: None },
        event: Some(event),
        display_name: shown(by),
    }))
}

/// Generates `NAMES` and `expected` from one table, so the list of names and the match
/// can never disagree.
macro_rules! vectors {
    ($($name:literal => $value:expr,)*) => {
        /// Every vector name the test knows, in table order.
        pub(crate) const NAMES: &[&str] = &[$($name),*];

        /// The value a vector of protocol.md must encode.
        pub(crate) fn expected(name: &str) -> Option<Frame> {
            match name {
                $($name => Some($value),)*
                _ => None,
            }
        }
    };
}

vectors! {
    // Requests: session and direct messages.
    "hello" => client(1, Request::Hello { version: PROTOCOL_VERSION, client: s("demo/1.0") }),
    "hello-app" => client(1, Request::HelloApp { version: PROTOCOL_VERSION, client: s("demo/1.0"), app: s("acme") }),
    "register" => client(2, Request::Register { username: s("alice"), password: s("correct horse") }),
    "login" => client(3, Request::Login { username: s("alice"), password: s("correct horse") }),
    "send" => send(4, Target::User(s("alice")), ClientMsgId(1), false, Content::text("hi alice")),
    "ack" => client(4, Request::Ack { conversation: Conversation::Inbox, up_to: Seq(1) }),
    "ping" => client(5, Request::Ping),
    "send-transient" => send(6, Target::User(s("alice")), ClientMsgId::NONE, true, typing()),
    "send-media" => send(300, Target::User(s("alice")), ClientMsgId(2), false, cat_picture()),
    "send-unicode" => send(
        7,
        Target::User(s("alice")),
        ClientMsgId(1_000_000),
        false,
        Content::text("h\u{e9}llo \u{1f44b}"),
    ),
    "resync" => client(8, Request::Resync { conversation: Conversation::Inbox, after: Seq(1) }),
    "rename" => client(9, Request::Rename { display_name: s("Alice Liddell") }),
    "list-online" => client(10, Request::ListOnline { after: String::new(), limit: 50 }),
    "list-online-next" => client(11, Request::ListOnline { after: s("alice"), limit: 200 }),
    "logout" => client(12, Request::Logout),
    "resume" => client(2, Request::Resume { username: s("alice"), token: token() }),

    // Requests: groups.
    "create-group" => client(13, Request::CreateGroup { name: s("Book club"), open: true }),
    "add-member" => client(14, Request::AddMember { group_id: GROUP, username: s("bob") }),
    "send-group" => send(5, Target::Group(GROUP), ClientMsgId(2), false, Content::text("hello club")),
    "ack-group" => client(15, Request::Ack { conversation: Conversation::Group(GROUP), up_to: Seq(3) }),
    "resync-group" => client(16, Request::Resync { conversation: Conversation::Group(GROUP), after: Seq(2) }),
    "rename-group" => client(17, Request::RenameGroup { group_id: GROUP, name: s("Books") }),
    "set-role" => client(18, Request::SetRole { group_id: GROUP, username: s("bob"), role: Role::Admin }),
    "join-group" => client(3, Request::JoinGroup { group_id: GROUP }),
    "leave-group" => client(4, Request::LeaveGroup { group_id: GROUP }),
    "remove-member" => client(19, Request::RemoveMember { group_id: GROUP, username: s("bob") }),
    "delete-group" => client(20, Request::DeleteGroup { group_id: GROUP }),
    "list-groups" => client(21, Request::ListGroups),
    "group-members" => client(22, Request::GroupMembers { group_id: GROUP }),

    // Requests: rooms, broadcast, presence.
    "join-room" => client(23, Request::JoinRoom { room: s("lobby") }),
    "send-room" => send(24, Target::Room(s("lobby")), ClientMsgId::NONE, true, Content::text("anyone here?")),
    "leave-room" => client(25, Request::LeaveRoom { room: s("lobby") }),
    "list-rooms" => client(26, Request::ListRooms { after: String::new(), limit: 0 }),
    "room-members" => client(27, Request::RoomMembers { room: s("lobby") }),
    "send-broadcast" => send(28, Target::Everyone, ClientMsgId::NONE, true, Content::text("maintenance at 22:00")),
    "subscribe-presence" => client(29, Request::SubscribePresence { username: s("carol") }),
    "unsubscribe-presence" => client(30, Request::UnsubscribePresence { username: s("carol") }),

    // Requests: services (on the service's own connection).
    "service-login" => client(2, Request::ServiceLogin { name: s("shop"), token: s(SERVICE_TOKEN) }),
    "watch-connections" => client(3, Request::WatchConnections),
    "service-send-users" => service_send(
        4,
        ServiceTarget::Users(names(&["alice", "bob", "nobody"])),
        ClientMsgId(1),
        false,
        "your order shipped",
    ),
    "service-send-group" => service_send(
        5,
        ServiceTarget::Group { group_id: GROUP, except: Some(s("alice")) },
        ClientMsgId(2),
        false,
        "alice scored",
    ),
    "service-send-group-all" => service_send(
        6,
        ServiceTarget::Group { group_id: GROUP, except: None },
        ClientMsgId(3),
        false,
        "match starts",
    ),
    "service-send-online" => service_send(7, ServiceTarget::Online, ClientMsgId::NONE, true, "restart at noon"),
    "query-online" => client(8, Request::QueryOnline { users: names(&["alice", "bob", "nobody"]) }),
    "stats" => client(9, Request::Stats),
    "disconnect" => client(10, Request::Disconnect { username: s("alice"), reason: s("account suspended") }),
    "list-open-groups" => client(33, Request::ListOpenGroups { after: GroupId(0), limit: 20 }),

    // Requests: push devices and mutes (a user's connection).
    "set-push-device" => client(34, Request::SetPushDevice {
        device: s("phone"),
        platform: PushPlatform::Apns,
        token: s(PHONE_TOKEN),
        previews: true,
    }),
    "remove-push-device" => client(35, Request::RemovePushDevice { device: s("laptop") }),
    "mute-user" => client(36, Request::Mute { chat: Chat::User(s("bob")), until_ms: EIGHT_HOURS_LATER }),
    "mute-group" => client(37, Request::Mute { chat: Chat::Group(GROUP), until_ms: 0 }),
    "mute-service" => client(38, Request::Mute { chat: Chat::Service(s("shop")), until_ms: 0 }),
    "unmute" => client(39, Request::Unmute { chat: Chat::User(s("bob")) }),
    "push-settings" => client(40, Request::PushSettings),

    // Requests: the push gateway (a service's connection).
    "subscribe-push" => client(3, Request::SubscribePush),
    "ack-push" => client(4, Request::AckPush { up_to: 42 }),
    "drop-push-token" => client(5, Request::DropPushToken { username: s("alice"), token: s("phone-token") }),

    // Requests: customer support (alice is the customer, bob and carol staff of "acme").
    "send-shop" => send(41, Target::Shop(s(SHOP)), ClientMsgId(5), false, Content::text("where is my order?")),
    "send-support" => send(42, Target::Support(SUPPORT), ClientMsgId(6), false, Content::text("on its way")),
    "ack-support" => client(43, Request::Ack { conversation: Conversation::Support(SUPPORT), up_to: Seq(2) }),
    "resync-support" => client(44, Request::Resync { conversation: Conversation::Support(SUPPORT), after: Seq(1) }),
    "claim-support" => client(45, Request::ClaimSupport { conversation: SUPPORT }),
    "hand-over-support" => client(46, Request::HandOverSupport { conversation: SUPPORT, to: s("carol") }),
    "release-support" => client(47, Request::ReleaseSupport { conversation: SUPPORT }),
    "list-support" => client(48, Request::ListSupport { shop: s(SHOP), after: SupportId(0), limit: 20 }),
    "mute-support" => client(49, Request::Mute { chat: Chat::Support(SUPPORT), until_ms: 0 }),
    "add-staff" => client(11, Request::AddStaff { shop: s(SHOP), username: s("bob") }),
    "remove-staff" => client(12, Request::RemoveStaff { shop: s(SHOP), username: s("carol") }),

    // Replies.
    "hello-reply" => reply(1, Reply::Hello {
        version: PROTOCOL_VERSION,
        server: s("confabd 0.1.0"),
        max_frame: 65_536,
        max_body: 32_768,
        heartbeat_secs: 30,
        idle_timeout_secs: 90,
        delivery_window: 1024,
        limits: Limits {
            request_rate: 2000,
            request_burst: 4000,
            delivery_window_bytes: 2_097_152,
            max_outbound: 8_388_608,
            token_ttl_secs: 2_592_000,
            max_frame_before_login: 4096,
        },
    }),
    "registered" => reply(2, Reply::Registered { user_id: UserId(1) }),
    "logged-in" => reply(3, Reply::LoggedIn {
        user_id: UserId(1),
        display_name: s("alice"),
        acked: Seq::ZERO,
        last_seq: Seq::ZERO,
        resume_token: token(),
        admin: false,
    }),
    "sent" => reply(4, Reply::Sent { message_id: MessageId(7), seq: Seq(1), timestamp_ms: TS, duplicate: false }),
    "acked" => reply(4, Reply::Acked { conversation: Conversation::Inbox, up_to: Seq(1) }),
    "pong" => reply(5, Reply::Pong),
    "transient-sent" => reply(6, Reply::TransientSent { delivered: true }),
    "sent-duplicate" => reply(
        300,
        Reply::Sent { message_id: MessageId(8), seq: Seq(2), timestamp_ms: TS + 1, duplicate: true },
    ),
    "resynced" => reply(8, Reply::Resynced { conversation: Conversation::Inbox, after: Seq(1), last_seq: Seq(2) }),
    "renamed" => reply(9, Reply::Renamed { display_name: s("Alice Liddell") }),
    "online" => reply(10, Reply::Online {
        users: vec![
            OnlineUser { username: s("alice"), display_name: s("Alice Liddell") },
            OnlineUser { username: s("bob"), display_name: s("bob") },
        ],
        more: true,
    }),
    "online-empty" => reply(11, Reply::Online { users: Vec::new(), more: false }),
    "logged-out" => reply(12, Reply::LoggedOut),
    "group-created" => reply(13, Reply::GroupCreated { group_id: GROUP }),
    "done" => reply(14, Reply::Done),
    "sent-group" => reply(
        5,
        Reply::Sent { message_id: MessageId(12), seq: Seq(3), timestamp_ms: TS + 2, duplicate: false },
    ),
    "acked-group" => reply(15, Reply::Acked { conversation: Conversation::Group(GROUP), up_to: Seq(3) }),
    "groups" => reply(21, Reply::Groups {
        groups: vec![GroupInfo {
            group_id: GROUP,
            name: s("Books"),
            open: true,
            role: Role::Owner,
            members: 2,
            acked: Seq(5),
            last_seq: Seq(7),
        }],
    }),
    "members" => reply(22, Reply::Members {
        group_id: GROUP,
        members: vec![
            MemberInfo { username: s("alice"), role: Role::Owner, online: true, display_name: shown("alice") },
            MemberInfo { username: s("bob"), role: Role::Admin, online: false, display_name: shown("bob") },
        ],
    }),
    "delivered" => reply(24, Reply::Delivered { recipients: 2 }),
    "rooms" => reply(26, Reply::Rooms {
        rooms: vec![RoomInfo { name: s("lobby"), members: 3 }, RoomInfo { name: s("rust"), members: 12 }],
        more: false,
    }),
    "room-members-reply" => reply(27, Reply::RoomMembers {
        room: s("lobby"),
        members: ["alice", "bob", "carol"]
            .iter()
            .map(|name| OnlineUser { username: s(name), display_name: shown(name) })
            .collect(),
    }),
    "subscribed" => reply(29, Reply::Subscribed { username: s("carol"), online: true }),
    "service-logged-in" => reply(2, Reply::ServiceLoggedIn { name: s("shop") }),
    "done-watching" => reply(3, Reply::Done),
    "service-sent" => reply(4, Reply::ServiceSent { stored: 2, delivered: 1, unknown: names(&["nobody"]) }),
    "service-sent-group" => reply(5, Reply::ServiceSent { stored: 1, delivered: 1, unknown: Vec::new() }),
    "service-sent-online" => reply(7, Reply::ServiceSent { stored: 0, delivered: 2, unknown: Vec::new() }),
    "online-status" => reply(8, Reply::OnlineStatus { online: vec![true, false, false] }),
    "stats-reply" => reply(9, Reply::Stats(ServerStats {
        version: s("0.1.0"),
        uptime_secs: 3600,
        connections: 4,
        logged_in: 3,
        rooms: 1,
        groups: 2,
        messages_received: 1000,
        messages_delivered: 2500,
        received_per_sec: 3,
        delivered_per_sec: 7,
        stored_messages: 12,
        outbound_bytes_queued: 0,
        storage_bytes: 1_048_576,
        log_syncs: 5000,
        log_syncs_per_sec: 250,
        log_changes_per_commit: 4,
        log_commit_p50_us: 200,
        log_commit_p99_us: 900,
        log_commit_max_us: 2000,
        log_bytes: 33_554_432,
        push_queued: 5,
        push_events: 40,
        push_dropped: 0,
        push_skipped: 12,
        apps: vec![acme_figures(), default_figures()],
    })),
    "app-stats" => reply(9, Reply::AppStats(acme_figures())),
    "disconnected" => reply(10, Reply::Disconnected { was_online: true }),
    "open-groups" => reply(33, Reply::OpenGroups {
        groups: vec![OpenGroup { group_id: GROUP, name: s("Books"), members: 2 }],
        more: false,
    }),
    "push-settings-reply" => reply(40, Reply::PushSettings {
        devices: vec![PushDeviceInfo {
            device: s("phone"),
            platform: PushPlatform::Apns,
            previews: true,
            registered_ms: TS,
        }],
        mutes: vec![MuteInfo { chat: Chat::Group(GROUP), until_ms: 0 }],
    }),
    "push-subscribed" => reply(3, Reply::PushSubscribed { acked: 41, last_seq: 42 }),
    "push-acked" => reply(4, Reply::PushAcked { up_to: 42 }),
    "acked-support" => reply(43, Reply::Acked { conversation: Conversation::Support(SUPPORT), up_to: Seq(2) }),
    "support-list" => reply(48, Reply::SupportList {
        conversations: vec![SupportInfo {
            conversation: SUPPORT,
            shop: s(SHOP),
            customer: s("alice"),
            claimed_by: Some(s("bob")),
            last_seq: Seq(2),
            acked: Seq(1),
            last_ms: TS + 1,
        }],
        more: false,
    }),

    // Pushes.
    "push-message" => message(Conversation::Inbox, Seq(1), Seq::ZERO, MessageId(7), "bob", Content::text("hi alice")),
    "push-message-media" => message(Conversation::Inbox, Seq(2), Seq(1), MessageId(8), "bob", cat_picture()),
    "push-transient" => push(Push::Transient { from: s("bob"), content: typing() }),
    "push-kicked" => push(Push::Kicked { reason: s("logged in elsewhere") }),
    "push-shutting-down" => push(Push::ShuttingDown),
    "push-group-created" => event(Seq(1), MessageId(10), "alice", GroupEvent::Created { by: s("alice") }),
    "push-group-added" => event(
        Seq(2),
        MessageId(11),
        "alice",
        GroupEvent::Added { username: s("bob"), by: s("alice") },
    ),
    "push-message-group" => message(
        Conversation::Group(GROUP),
        Seq(3),
        Seq(2),
        MessageId(12),
        "bob",
        Content::text("hello club"),
    ),
    "push-message-group-skip" => message(
        Conversation::Group(GROUP),
        Seq(5),
        Seq(3),
        MessageId(14),
        "bob",
        Content::text("thanks"),
    ),
    "push-group-renamed" => event(
        Seq(6),
        MessageId(15),
        "alice",
        GroupEvent::Renamed { name: s("Books"), by: s("alice") },
    ),
    "push-group-role-changed" => event(Seq(7), MessageId(16), "alice", GroupEvent::RoleChanged {
        username: s("bob"),
        role: Role::Admin,
        by: s("alice"),
    }),
    "push-group-joined" => event(Seq(8), MessageId(17), "carol", GroupEvent::Joined { username: s("carol") }),
    "push-group-left" => event(Seq(9), MessageId(18), "carol", GroupEvent::Left { username: s("carol") }),
    "push-group-removed" => event(
        Seq(10),
        MessageId(19),
        "alice",
        GroupEvent::Removed { username: s("bob"), by: s("alice") },
    ),
    "push-group-deleted" => push(Push::Message(Message {
        conversation: Conversation::Group(GROUP),
        seq: Seq(11),
        prev_seq: Seq(10),
        message_id: MessageId::NONE,
        from: s("alice"),
        sender: SenderKind::User,
        timestamp_ms: TS + 10,
        content: Content { kind: MediaKind::System, body: Vec::new(), media: None },
        event: Some(GroupEvent::Deleted { by: s("alice") }),
        display_name: shown("alice"),
    })),
    "push-room-message" => push(Push::RoomMessage {
        room: s("lobby"),
        from: s("bob"),
        content: Content::text("anyone here?"),
    }),
    "push-broadcast" => push(Push::Broadcast { from: s("admin"), content: Content::text("maintenance at 22:00") }),
    "push-presence" => push(Push::Presence { username: s("carol"), online: true }),
    "push-message-service" => push(Push::Message(Message {
        conversation: Conversation::Inbox,
        seq: Seq(3),
        prev_seq: Seq(2),
        message_id: MessageId(20),
        from: s("shop"),
        sender: SenderKind::Service,
        timestamp_ms: TS + 2,
        content: Content::text("your order shipped"),
        event: None,
        display_name: s("shop"),
    })),
    "push-service-notice" => push(Push::ServiceNotice {
        service: s("shop"),
        content: Content::text("restart at noon"),
    }),
    "push-kicked-by-service" => push(Push::Kicked { reason: s("account suspended") }),
    "push-connection" => push(Push::Connection { username: s("alice"), connected: true, reason: s("login") }),
    "push-connection-closed" => push(Push::Connection {
        username: s("alice"),
        connected: false,
        reason: s("disconnected by a service"),
    }),
    "push-event" => push(Push::PushEvent(PushEvent {
        seq: 42,
        recipient: s("alice"),
        devices: vec![
            PushTarget {
                device: s("phone"),
                platform: PushPlatform::Apns,
                token: s(PHONE_TOKEN),
                preview: Some(s("see you at 8")),
            },
            PushTarget { device: s("tablet"), platform: PushPlatform::Fcm, token: s(TABLET_TOKEN), preview: None },
        ],
        chat: Chat::User(s("bob")),
        chat_name: shown("bob"),
        sender: s("bob"),
        sender_name: shown("bob"),
        sender_kind: SenderKind::User,
        message_id: MessageId(24),
        kind: MediaKind::Text,
        count: 3,
        unread: 4,
        timestamp_ms: TS + 6,
    })),

    "push-message-support" => message(
        Conversation::Support(SUPPORT),
        Seq(1),
        Seq::ZERO,
        MessageId(31),
        "alice",
        Content::text("where is my order?"),
    ),
    "push-message-staff" => push(Push::Message(Message {
        conversation: Conversation::Support(SUPPORT),
        seq: Seq(2),
        prev_seq: Seq(1),
        message_id: MessageId(32),
        from: s(SHOP),
        sender: SenderKind::Staff,
        timestamp_ms: TS + 1,
        content: Content::text("on its way"),
        event: None,
        display_name: shown("bob"),
    })),
    "push-support-claimed" => push(Push::SupportClaimed {
        conversation: SUPPORT,
        shop: s(SHOP),
        customer: s("alice"),
        agent: Some(s("bob")),
    }),
    "push-support-released" => push(Push::SupportClaimed {
        conversation: SUPPORT,
        shop: s(SHOP),
        customer: s("alice"),
        agent: None,
    }),

    // Devices, history and read state.
    "login-device" => client(3, Request::LoginDevice {
        username: s("alice"),
        password: s("correct horse"),
        device: s("laptop"),
    }),
    "resume-device" => client(2, Request::ResumeDevice { username: s("alice"), token: token(), device: s("laptop") }),
    "device-logged-in" => reply(3, Reply::DeviceLoggedIn {
        user_id: UserId(1),
        display_name: s("alice"),
        device: s("laptop"),
        acked: Seq(2),
        last_seq: Seq(4),
        resume_token: token(),
        admin: false,
        chats: vec![
            ChatState {
                chat: Chat::User(s("bob")),
                last_seq: Seq(4),
                read_up_to: Seq(2),
                unread: 2,
                cleared_up_to: Seq(0),
            },
            ChatState { chat: Chat::Group(GROUP), last_seq: Seq(5), read_up_to: Seq(5), unread: 0, cleared_up_to: Seq(0) },
        ],
        read_receipts: true,
    }),
    "logout-everywhere" => client(12, Request::LogoutEverywhere),
    "list-devices" => client(50, Request::ListDevices),
    "devices" => reply(50, Reply::Devices {
        devices: vec![
            DeviceInfo { device: s("laptop"), online: true, last_seen_ms: TS, this: true },
            DeviceInfo { device: s("phone"), online: false, last_seen_ms: TS - 3_600_000, this: false },
        ],
    }),
    "remove-device" => client(51, Request::RemoveDevice { device: s("phone") }),
    "push-device-connection" => push(Push::DeviceConnection {
        username: s("alice"),
        device: s("laptop"),
        connected: true,
        reason: s("login"),
    }),
    "push-sent-copy" => push(Push::SentCopy {
        to: s("bob"),
        message: Message {
            conversation: Conversation::Inbox,
            seq: Seq(3),
            prev_seq: Seq(2),
            message_id: MessageId(78),
            from: s("alice"),
            sender: SenderKind::User,
            timestamp_ms: TS + 2,
            content: Content::text("see you at six"),
            event: None,
            display_name: shown("alice"),
        },
    }),
    "history" => client(52, Request::History { chat: Chat::User(s("bob")), before: Seq(0), limit: 50 }),
    "history-group" => client(53, Request::History { chat: Chat::Group(GROUP), before: Seq(40), limit: 20 }),
    "history-page" => reply(52, Reply::HistoryPage {
        chat: Chat::User(s("bob")),
        messages: vec![
            history_item(Seq(1), MessageId(70), "bob", "are you coming?"),
            history_item(Seq(3), MessageId(78), "alice", "see you at six"),
        ],
        more: false,
    }),
    "delete-message" => client(54, Request::DeleteMessage { chat: Chat::User(s("bob")), message_id: MessageId(78) }),
    "group-event-message-deleted" => event(
        Seq(6),
        MessageId(81),
        "alice",
        GroupEvent::MessageDeleted { message_id: MessageId(80), by: s("alice") }
    ),
    "clear-history" => client(55, Request::ClearHistory { chat: Chat::User(s("bob")), up_to: Seq(3) }),
    "push-history-cleared" => push(Push::HistoryCleared { chat: Chat::User(s("bob")), up_to: Seq(3) }),
    "mark-read" => client(56, Request::MarkRead { chat: Chat::User(s("bob")), up_to: Seq(4) }),
    "mark-read-group" => client(57, Request::MarkRead { chat: Chat::Group(GROUP), up_to: Seq(5) }),
    "push-read-mark" => push(Push::ReadMark { chat: Chat::User(s("bob")), up_to: Seq(4) }),
    "push-read-receipt" => push(Push::ReadReceipt { reader: s("alice"), up_to: Seq(7) }),
    "read-state" => client(58, Request::ReadState),
    "read-state-reply" => reply(58, Reply::ReadState {
        chats: vec![ChatState {
            chat: Chat::User(s("bob")),
            last_seq: Seq(4),
            read_up_to: Seq(4),
            unread: 0,
            cleared_up_to: Seq(3),
        }],
        read_receipts: false,
    }),
    "set-read-receipts" => client(59, Request::SetReadReceipts { enabled: false }),
    "read-positions" => client(60, Request::ReadPositions { group_id: GROUP }),
    "read-positions-reply" => reply(60, Reply::ReadPositions {
        group_id: GROUP,
        readers: vec![
            ReadPosition { username: s("alice"), read_up_to: Seq(5) },
            ReadPosition { username: s("bob"), read_up_to: Seq(3) },
        ],
    }),
    "error-unknown-device" => error(51, ErrorCode::UnknownDevice, "no device named phone"),
    "error-limit-reached-devices" => error(3, ErrorCode::LimitReached, "at most 5 devices at once; log one out first"),

    // Cluster.
    "redirect" => reply(3, Reply::Redirect { node: 2, address: s("10.0.0.2:7420") }),
    "error-unavailable" => Frame::Server(ServerFrame::Error {
        request_id: 4,
        code: ErrorCode::Unavailable,
        message: s("node 2 is unavailable"),
        retry_after_ms: 1000,
    }),

    // Errors.
    "error-unknown-app" => error(1, ErrorCode::UnknownApp, "no app named acne on this server"),
    "error-unsupported-version" => error(1, ErrorCode::UnsupportedVersion, "this server speaks protocol version 2"),
    "error-hello-required" => error(1, ErrorCode::HelloRequired, "the first frame must be Hello"),
    "error-not-logged-in" => error(4, ErrorCode::NotLoggedIn, "log in first"),
    "error-already-logged-in" => error(3, ErrorCode::AlreadyLoggedIn, "log out first"),
    "error-wrong-password" => error(3, ErrorCode::WrongPassword, "wrong password"),
    "error-bad-request" => error(300, ErrorCode::BadRequest, "malformed or unknown request"),
    "error-frame-too-large" => error(NO_REQUEST, ErrorCode::FrameTooLarge, "frame exceeds max_frame"),
    "error-idle-timeout" => error(NO_REQUEST, ErrorCode::IdleTimeout, "no frame within the idle timeout"),
    "error-server-full" => error(NO_REQUEST, ErrorCode::ServerFull, "too many connections"),
    "error-invalid-token" => error(2, ErrorCode::InvalidToken, "unknown, expired or revoked token"),
    "error-unknown-group" => error(20, ErrorCode::UnknownGroup, "no such group"),
    "error-not-a-member" => error(24, ErrorCode::NotAMember, "join the room first"),
    "error-forbidden" => error(28, ErrorCode::Forbidden, "only administrators may broadcast"),
    "error-limit-reached" => error(23, ErrorCode::LimitReached, "the room is full"),
    "error-already-member" => error(14, ErrorCode::AlreadyMember, "already a member"),
    "error-storage-full" => error(3, ErrorCode::StorageFull, "the server's disk is full; retry later"),
    "error-quota-exceeded" => error(
        3,
        ErrorCode::QuotaExceeded,
        "the recipient's stored messages reached the per-user quota; retry once they have read them"
    ),
    "error-bad-request-zero-length" => error(NO_REQUEST, ErrorCode::BadRequest, "zero-length frame"),
    "error-rate-limited" => rate_limited(31, "slow down", 1),
    "error-rate-limited-login" => rate_limited(3, "too many failed logins; try again in 4 s", 3_500),
    "error-slow-consumer" => error(NO_REQUEST, ErrorCode::SlowConsumer, "output buffer limit reached"),
    "error-invalid-token-service" => error(2, ErrorCode::InvalidToken, "unknown service or wrong token"),
    "error-forbidden-service-only" => error(32, ErrorCode::Forbidden, "for services only"),
    "error-limit-reached-push-devices" => error(
        34,
        ErrorCode::LimitReached,
        "at most 10 push devices; remove one first"
    ),
    "error-bad-request-mute-past" => error(36, ErrorCode::BadRequest, "until_ms is in the past"),
    "error-forbidden-push" => error(3, ErrorCode::Forbidden, "this service has no push permission"),
    "error-limit-reached-gateway" => error(3, ErrorCode::LimitReached, "another gateway holds the push feed"),
    "error-bad-request-ack-push" => error(4, ErrorCode::BadRequest, "up_to is beyond the last push event sent"),
    "error-unknown-shop" => error(41, ErrorCode::UnknownShop, "no such shop"),
    "error-not-a-member-support" => error(43, ErrorCode::NotAMember, "not this conversation's customer or staff"),
}

/// One parsed vector line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vector {
    line: usize,
    direction: String,
    name: String,
    bytes: Vec<u8>,
}

/// Parses every line inside the ```vectors fences of `text`. Blank lines inside a fence are
/// skipped; anything else that is not a well-formed vector is an error naming the line.
fn parse_vectors(text: &str) -> Result<Vec<Vector>, String> {
    let mut vectors = Vec::new();
    let mut errors = Vec::new();
    let mut open_at = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        match open_at {
            None => {
                if line == FENCE_OPEN {
                    open_at = Some(line_no);
                }
            }
            Some(_) if line == FENCE_CLOSE => open_at = None,
            Some(_) if line.is_empty() => {}
            Some(_) => match parse_line(line) {
                Ok((direction, name, bytes)) => vectors.push(Vector { line: line_no, direction, name, bytes }),
                Err(why) => errors.push(format!("line {line_no}: {why}: {line:?}")),
            },
        }
    }
    if let Some(line_no) = open_at {
        errors.push(format!("line {line_no}: ```vectors fence is never closed"));
    }
    if errors.is_empty() {
        Ok(vectors)
    } else {
        Err(errors.join("\n"))
    }
}

/// `<direction> <name>: <hex bytes separated by single spaces>`.
fn parse_line(line: &str) -> Result<(String, String, Vec<u8>), String> {
    let (head, hex) = line.split_once(": ").ok_or("expected `<direction> <name>: <hex>`")?;
    let (direction, name) = head.split_once(' ').ok_or("expected a direction and a name before the colon")?;
    if direction != "client" && direction != "server" {
        return Err(format!("direction must be `client` or `server`, not {direction:?}"));
    }
    let name_ok = !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(format!("name {name:?} must be lowercase letters, digits and dashes"));
    }
    if hex.is_empty() {
        return Err("no bytes".to_string());
    }
    let mut bytes = Vec::new();
    for token in hex.split(' ') {
        let well_formed = token.len() == 2 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(format!(
                "{token:?} is not a byte as two lowercase hex digits (bytes are separated by single spaces)"
            ));
        }
        let byte = u8::from_str_radix(token, 16).map_err(|e| format!("{token:?}: {e}"))?;
        bytes.push(byte);
    }
    Ok((direction.to_string(), name.to_string(), bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn spec_vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(SPEC).expect("protocol.md is readable at the repository root");
    match parse_vectors(&text) {
        Ok(vectors) => vectors,
        Err(errors) => panic!("protocol.md has malformed vector lines:\n{errors}"),
    }
}

/// Checks one vector against its expected value; returns what is wrong, if anything.
fn check(vector: &Vector, value: &Frame) -> Result<(), String> {
    let Vector { line, name, bytes, .. } = vector;
    if vector.direction != value.direction() {
        return Err(format!(
            "line {line}: {name} is a {} frame in the test but `{}` in protocol.md",
            value.direction(),
            vector.direction
        ));
    }
    let encoded = value.encode();
    if &encoded != bytes {
        return Err(format!(
            "line {line}: {name} does not match the encoder\n  protocol.md: {}\n  encoder:     {}",
            hex(bytes),
            hex(&encoded)
        ));
    }
    let max = match value {
        Frame::Client(_) => DEFAULT_MAX_FRAME,
        Frame::Server(_) => MAX_SERVER_FRAME,
    };
    let (body, used) = frame::split(bytes, max)
        .map_err(|e| format!("line {line}: {name} does not split: {e}"))?
        .ok_or_else(|| format!("line {line}: {name} is shorter than its length prefix"))?;
    if used != bytes.len() {
        return Err(format!("line {line}: {name} has {} bytes after the frame", bytes.len() - used));
    }
    let decoded = match value {
        Frame::Client(_) => frame::decode_body::<ClientFrame>(body).map(Frame::Client),
        Frame::Server(_) => frame::decode_body::<ServerFrame>(body).map(Frame::Server),
    }
    .map_err(|e| format!("line {line}: {name} does not decode: {e}"))?;
    if &decoded != value {
        return Err(format!("line {line}: {name} decodes to {decoded:?}, expected {value:?}"));
    }
    Ok(())
}

#[test]
fn every_vector_matches_the_codec() {
    let vectors = spec_vectors();
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|vector| match expected(&vector.name) {
            Some(value) => check(vector, &value).err(),
            None => Some(format!("line {}: {} has no expected value in tests/vectors.rs", vector.line, vector.name)),
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} vectors failed:\n{}", failures.len(), vectors.len(), failures.join("\n"));
}

#[test]
fn document_and_test_name_the_same_vectors() {
    let vectors = spec_vectors();
    let mut in_doc: BTreeMap<&str, usize> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for vector in &vectors {
        if let Some(first) = in_doc.insert(&vector.name, vector.line) {
            duplicates.push(format!("{} (lines {first} and {})", vector.name, vector.line));
        }
    }
    assert!(duplicates.is_empty(), "vector names used twice in protocol.md: {}", duplicates.join(", "));

    let in_test: BTreeSet<&str> = NAMES.iter().copied().collect();
    assert_eq!(in_test.len(), NAMES.len(), "tests/vectors.rs lists a name twice");
    let missing_in_doc: Vec<&str> = in_test.iter().copied().filter(|name| !in_doc.contains_key(name)).collect();
    let missing_in_test: Vec<&str> = in_doc.keys().copied().filter(|name| !in_test.contains(name)).collect();
    assert!(
        missing_in_doc.is_empty() && missing_in_test.is_empty(),
        "vectors in tests/vectors.rs but not in protocol.md: {missing_in_doc:?}; \
         vectors in protocol.md but not in tests/vectors.rs: {missing_in_test:?}"
    );
    for name in NAMES {
        assert!(expected(name).is_some(), "{name} is listed but has no value");
    }
}

#[test]
fn there_are_enough_vectors() {
    let count = spec_vectors().len();
    assert!(count >= MIN_VECTORS, "protocol.md has {count} vectors; at least {MIN_VECTORS} are required");
}

#[test]
fn the_vectors_cover_every_variant() {
    let values: Vec<Frame> = NAMES.iter().filter_map(|name| expected(name)).collect();
    let mut requests = BTreeSet::new();
    let mut targets = BTreeSet::new();
    let mut service_targets = BTreeSet::new();
    let mut replies = BTreeSet::new();
    let mut pushes = BTreeSet::new();
    let mut senders = BTreeSet::new();
    let mut events = BTreeSet::new();
    let mut chats = BTreeSet::new();
    let mut errors = 0;
    for value in &values {
        chats.extend(chats_in(value).into_iter().map(chat_index));
        match value {
            Frame::Client(frame) => {
                requests.insert(request_index(&frame.request));
                match &frame.request {
                    Request::Send { to, .. } => {
                        targets.insert(target_index(to));
                    }
                    Request::ServiceSend { to, .. } => {
                        service_targets.insert(service_target_index(to));
                    }
                    _ => {}
                }
            }
            Frame::Server(ServerFrame::Reply { reply, .. }) => {
                replies.insert(reply_index(reply));
            }
            Frame::Server(ServerFrame::Push(push)) => {
                pushes.insert(push_index(push));
                if let Push::Message(message) = push {
                    senders.insert(sender_index(message.sender));
                    if let Some(event) = &message.event {
                        events.insert(event_index(event));
                    }
                }
            }
            Frame::Server(ServerFrame::Error { .. }) => errors += 1,
        }
    }
    assert_eq!(requests, (0..REQUESTS).collect(), "every Request variant has a vector");
    assert_eq!(targets, (0..TARGETS).collect(), "every Target variant has a Send vector");
    assert_eq!(service_targets, (0..SERVICE_TARGETS).collect(), "every ServiceTarget variant has a ServiceSend vector");
    assert_eq!(replies, (0..REPLIES).collect(), "every Reply variant has a vector");
    assert_eq!(pushes, (0..PUSHES).collect(), "every Push variant has a vector");
    assert_eq!(senders, (0..SENDERS).collect(), "every SenderKind variant has a Message vector");
    assert_eq!(events, (0..EVENTS).collect(), "every GroupEvent variant has a vector");
    assert_eq!(chats, (0..CHATS).collect(), "every Chat variant has a vector");
    assert!(errors >= 3, "several error frames have vectors");
}

/// The index functions below are what protocol.md's tables state; check them against the
/// encoder, so a table cannot drift from the real variant order either.
#[test]
fn variant_indices_match_the_encoding() {
    fn index_of<T: serde::Serialize>(value: &T) -> u8 {
        // Every enum here has fewer than 128 variants: the index is the body's first byte.
        frame::encode(value)[frame::PREFIX_LEN]
    }
    let mut checked = 0;
    for name in NAMES {
        let mut pairs: Vec<(u8, u8, &str)> = Vec::new();
        match expected(name).expect("listed names have values") {
            Frame::Client(frame) => {
                pairs.push((index_of(&frame.request), request_index(&frame.request), "Request"));
                match &frame.request {
                    Request::Send { to, .. } => pairs.push((index_of(to), target_index(to), "Target")),
                    Request::ServiceSend { to, .. } => {
                        pairs.push((index_of(to), service_target_index(to), "ServiceTarget"))
                    }
                    _ => {}
                }
            }
            Frame::Server(ServerFrame::Reply { reply, .. }) => {
                pairs.push((index_of(&reply), reply_index(&reply), "Reply"))
            }
            Frame::Server(ServerFrame::Push(push)) => {
                pairs.push((index_of(&push), push_index(&push), "Push"));
                if let Push::Message(message) = &push {
                    pairs.push((index_of(&message.sender), sender_index(message.sender), "SenderKind"));
                    if let Some(event) = &message.event {
                        pairs.push((index_of(event), event_index(event), "GroupEvent"));
                    }
                }
            }
            Frame::Server(ServerFrame::Error { .. }) => {}
        }
        let value = expected(name).expect("listed names have values");
        for chat in chats_in(&value) {
            pairs.push((index_of(chat), chat_index(chat), "Chat"));
        }
        for platform in platforms_in(&value) {
            pairs.push((index_of(&platform), platform_index(platform), "PushPlatform"));
        }
        if let Frame::Server(ServerFrame::Push(Push::PushEvent(event))) = &value {
            pairs.push((index_of(&event.sender_kind), sender_index(event.sender_kind), "SenderKind"));
        }
        for (encoded, stated, kind) in pairs {
            assert_eq!(encoded, stated, "{name}: the {kind} index in tests/vectors.rs differs from the encoder's");
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// The chats a frame names: in a mute, in a push settings listing, in a push event.
fn chats_in(value: &Frame) -> Vec<&Chat> {
    match value {
        Frame::Client(ClientFrame { request: Request::Mute { chat, .. } | Request::Unmute { chat }, .. }) => {
            vec![chat]
        }
        Frame::Server(ServerFrame::Reply { reply: Reply::PushSettings { mutes, .. }, .. }) => {
            mutes.iter().map(|mute| &mute.chat).collect()
        }
        Frame::Server(ServerFrame::Push(Push::PushEvent(event))) => vec![&event.chat],
        _ => Vec::new(),
    }
}

/// The push platforms a frame names.
fn platforms_in(value: &Frame) -> Vec<PushPlatform> {
    match value {
        Frame::Client(ClientFrame { request: Request::SetPushDevice { platform, .. }, .. }) => vec![*platform],
        Frame::Server(ServerFrame::Reply { reply: Reply::PushSettings { devices, .. }, .. }) => {
            devices.iter().map(|device| device.platform).collect()
        }
        Frame::Server(ServerFrame::Push(Push::PushEvent(event))) => {
            event.devices.iter().map(|device| device.platform).collect()
        }
        _ => Vec::new(),
    }
}

// Variant indices and counts. The matches are exhaustive, so a new variant stops this file
// from compiling until it is counted here (and then the test wants a vector for it).

const REQUESTS: u8 = 61;
fn request_index(request: &Request) -> u8 {
    match request {
        Request::Hello { .. } => 0,
        Request::Ping => 1,
        Request::Register { .. } => 2,
        Request::Login { .. } => 3,
        Request::Send { .. } => 4,
        Request::Ack { .. } => 5,
        Request::Resync { .. } => 6,
        Request::Rename { .. } => 7,
        Request::ListOnline { .. } => 8,
        Request::Logout => 9,
        Request::Resume { .. } => 10,
        Request::CreateGroup { .. } => 11,
        Request::RenameGroup { .. } => 12,
        Request::AddMember { .. } => 13,
        Request::RemoveMember { .. } => 14,
        Request::SetRole { .. } => 15,
        Request::JoinGroup { .. } => 16,
        Request::LeaveGroup { .. } => 17,
        Request::DeleteGroup { .. } => 18,
        Request::ListGroups => 19,
        Request::GroupMembers { .. } => 20,
        Request::JoinRoom { .. } => 21,
        Request::LeaveRoom { .. } => 22,
        Request::ListRooms { .. } => 23,
        Request::RoomMembers { .. } => 24,
        Request::SubscribePresence { .. } => 25,
        Request::UnsubscribePresence { .. } => 26,
        Request::ServiceLogin { .. } => 27,
        Request::ServiceSend { .. } => 28,
        Request::QueryOnline { .. } => 29,
        Request::Disconnect { .. } => 30,
        Request::WatchConnections => 31,
        Request::Stats => 32,
        Request::ListOpenGroups { .. } => 33,
        Request::SetPushDevice { .. } => 34,
        Request::RemovePushDevice { .. } => 35,
        Request::Mute { .. } => 36,
        Request::Unmute { .. } => 37,
        Request::PushSettings => 38,
        Request::SubscribePush => 39,
        Request::AckPush { .. } => 40,
        Request::DropPushToken { .. } => 41,
        Request::HelloApp { .. } => 42,
        Request::ClaimSupport { .. } => 43,
        Request::HandOverSupport { .. } => 44,
        Request::ReleaseSupport { .. } => 45,
        Request::ListSupport { .. } => 46,
        Request::AddStaff { .. } => 47,
        Request::RemoveStaff { .. } => 48,
        Request::LoginDevice { .. } => 49,
        Request::ResumeDevice { .. } => 50,
        Request::LogoutEverywhere => 51,
        Request::ListDevices => 52,
        Request::RemoveDevice { .. } => 53,
        Request::History { .. } => 54,
        Request::DeleteMessage { .. } => 55,
        Request::ClearHistory { .. } => 56,
        Request::MarkRead { .. } => 57,
        Request::ReadState => 58,
        Request::SetReadReceipts { .. } => 59,
        Request::ReadPositions { .. } => 60,
    }
}

const TARGETS: u8 = 6;
fn target_index(target: &Target) -> u8 {
    match target {
        Target::User(_) => 0,
        Target::Group(_) => 1,
        Target::Room(_) => 2,
        Target::Everyone => 3,
        Target::Shop(_) => 4,
        Target::Support(_) => 5,
    }
}

const SERVICE_TARGETS: u8 = 3;
fn service_target_index(target: &ServiceTarget) -> u8 {
    match target {
        ServiceTarget::Users(_) => 0,
        ServiceTarget::Group { .. } => 1,
        ServiceTarget::Online => 2,
    }
}

const SENDERS: u8 = 3;
fn sender_index(sender: SenderKind) -> u8 {
    match sender {
        SenderKind::User => 0,
        SenderKind::Service => 1,
        SenderKind::Staff => 2,
    }
}

const REPLIES: u8 = 36;
fn reply_index(reply: &Reply) -> u8 {
    match reply {
        Reply::Hello { .. } => 0,
        Reply::Pong => 1,
        Reply::Registered { .. } => 2,
        Reply::LoggedIn { .. } => 3,
        Reply::Sent { .. } => 4,
        Reply::TransientSent { .. } => 5,
        Reply::Acked { .. } => 6,
        Reply::Resynced { .. } => 7,
        Reply::Renamed { .. } => 8,
        Reply::Online { .. } => 9,
        Reply::LoggedOut => 10,
        Reply::Done => 11,
        Reply::GroupCreated { .. } => 12,
        Reply::Groups { .. } => 13,
        Reply::Members { .. } => 14,
        Reply::Delivered { .. } => 15,
        Reply::Rooms { .. } => 16,
        Reply::RoomMembers { .. } => 17,
        Reply::Subscribed { .. } => 18,
        Reply::ServiceLoggedIn { .. } => 19,
        Reply::ServiceSent { .. } => 20,
        Reply::OnlineStatus { .. } => 21,
        Reply::Disconnected { .. } => 22,
        Reply::Stats(_) => 23,
        Reply::OpenGroups { .. } => 24,
        Reply::PushSettings { .. } => 25,
        Reply::PushSubscribed { .. } => 26,
        Reply::PushAcked { .. } => 27,
        Reply::AppStats(_) => 28,
        Reply::SupportList { .. } => 29,
        Reply::DeviceLoggedIn { .. } => 30,
        Reply::Devices { .. } => 31,
        Reply::HistoryPage { .. } => 32,
        Reply::ReadState { .. } => 33,
        Reply::ReadPositions { .. } => 34,
        Reply::Redirect { .. } => 35,
    }
}

const PUSHES: u8 = 16;
fn push_index(push: &Push) -> u8 {
    match push {
        Push::Message(_) => 0,
        Push::Transient { .. } => 1,
        Push::Kicked { .. } => 2,
        Push::ShuttingDown => 3,
        Push::RoomMessage { .. } => 4,
        Push::Broadcast { .. } => 5,
        Push::Presence { .. } => 6,
        Push::ServiceNotice { .. } => 7,
        Push::Connection { .. } => 8,
        Push::PushEvent(_) => 9,
        Push::SupportClaimed { .. } => 10,
        Push::SentCopy { .. } => 11,
        Push::ReadMark { .. } => 12,
        Push::ReadReceipt { .. } => 13,
        Push::HistoryCleared { .. } => 14,
        Push::DeviceConnection { .. } => 15,
    }
}

const CHATS: u8 = 4;
fn chat_index(chat: &Chat) -> u8 {
    match chat {
        Chat::User(_) => 0,
        Chat::Group(_) => 1,
        Chat::Service(_) => 2,
        Chat::Support(_) => 3,
    }
}

/// Not every platform has a vector (the type is a plain list of names), but those that
/// appear are checked against the encoder like every other index.
fn platform_index(platform: PushPlatform) -> u8 {
    match platform {
        PushPlatform::Apns => 0,
        PushPlatform::Fcm => 1,
        PushPlatform::WebPush => 2,
        PushPlatform::Other => 3,
    }
}

const EVENTS: u8 = 9;
fn event_index(event: &GroupEvent) -> u8 {
    match event {
        GroupEvent::Created { .. } => 0,
        GroupEvent::Joined { .. } => 1,
        GroupEvent::Left { .. } => 2,
        GroupEvent::Added { .. } => 3,
        GroupEvent::Removed { .. } => 4,
        GroupEvent::Renamed { .. } => 5,
        GroupEvent::RoleChanged { .. } => 6,
        GroupEvent::Deleted { .. } => 7,
        GroupEvent::MessageDeleted { .. } => 8,
    }
}

#[test]
fn malformed_vector_lines_are_reported_not_panicked_on() {
    let cases = [
        ("client hello 00 00 00 01 00", "expected `<direction> <name>: <hex>`"),
        ("sideways hello: 00", "direction must be"),
        ("client: 00", "expected a direction and a name"),
        ("client Hello: 00", "must be lowercase"),
        ("client hello: ", "expected `<direction> <name>: <hex>`"),
        ("client hello: 0", "not a byte"),
        ("client hello: 00  01", "not a byte"),
        ("client hello: 0G", "not a byte"),
        ("client hello: AB", "not a byte"),
    ];
    for (line, why) in cases {
        let text = format!("{FENCE_OPEN}\n{line}\n{FENCE_CLOSE}\n");
        match parse_vectors(&text) {
            Ok(parsed) => panic!("{line:?} was accepted as {parsed:?}"),
            Err(message) => assert!(
                message.contains(why) && message.contains("line 2"),
                "{line:?} gave {message:?}, expected it to mention {why:?} and line 2"
            ),
        }
    }
    let unclosed =
        parse_vectors(&format!("text\n{FENCE_OPEN}\nclient a: 01\n")).expect_err("an unclosed fence is an error");
    assert!(unclosed.contains("never closed"), "{unclosed}");

    let good = parse_vectors(&format!(
        "```\nclient ignored: zz\n```\n{FENCE_OPEN}\n\nserver pong-x: 00 00 00 01 ff\n{FENCE_CLOSE}\n"
    ))
    .expect("a well-formed block parses");
    assert_eq!(
        good,
        vec![Vector {
            line: 6,
            direction: "server".to_string(),
            name: "pong-x".to_string(),
            bytes: vec![0, 0, 0, 1, 0xff],
        }]
    );
}
