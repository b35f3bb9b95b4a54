//! The command table: one row per command, with its arguments, its help text, and how it
//! becomes an [`Action`]. `/help` lists the rows in this order.

use crate::commands::Arg::{Flag, Optional, Rest, Word};
use crate::commands::{message, peer, stored, username, Action, Command, ParseError};
use crate::render::TYPING;
use crate::token::valid_device;
use confab_proto::protocol::{
    valid_room_name, valid_shop_name, Chat, ClientMsgId, Content, Conversation, GroupId, MessageId, Request, Role,
    SupportId, Target,
};

/// The server's address when neither `--server` nor `/connect ADDR` names one.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7420";
/// Who-is-online and room listing page size (the server caps both at 500).
pub const PAGE: u32 = 100;
/// Messages `/history` shows when no number is given.
pub const HISTORY_DEFAULT: u32 = 20;
/// The most `/history` shows at once (it pages back through the server for them).
pub const HISTORY_MAX: u32 = 1000;

pub const COMMANDS: &[Command] = &[
    Command {
        name: "connect",
        args: &[Optional("ADDR")],
        help: "connect to a server (default 127.0.0.1:7420)",
        build: |_, a| {
            let addr = if a[0].is_empty() { DEFAULT_ADDR } else { a[0] };
            Ok(Action::Connect(addr.to_string()))
        },
    },
    Command {
        name: "register",
        args: &[Word("NAME"), Rest("PASSWORD")],
        help: "create an account (then /login)",
        build: |_, a| Ok(Action::Request(Request::Register { username: a[0].into(), password: a[1].into() })),
    },
    Command {
        name: "login",
        args: &[Word("NAME"), Rest("PASSWORD")],
        help: "log in; the resume token is remembered for --user",
        build: |_, a| Ok(Action::Request(Request::Login { username: a[0].into(), password: a[1].into() })),
    },
    Command {
        name: "to",
        args: &[Word("NAME")],
        help: "send the lines you type to NAME",
        build: |_, a| Ok(Action::Peer(username(a[0])?)),
    },
    Command {
        name: "msg",
        args: &[Word("NAME"), Rest("TEXT")],
        help: "send TEXT to NAME",
        build: |ctx, a| Ok(message(ctx, username(a[0])?, a[1])),
    },
    Command {
        name: "typing",
        args: &[Optional("NAME")],
        help: "tell NAME (default: your peer) you are typing",
        build: |ctx, a| {
            let to = if a[0].is_empty() { peer(ctx)? } else { username(a[0])? };
            Ok(Action::Request(Request::Send {
                to: Target::User(to),
                client_msg_id: (ctx.next_msg_id)(),
                transient: true,
                content: Content::text(TYPING),
            }))
        },
    },
    Command {
        name: "who",
        args: &[Optional("AFTER")],
        help: "list who is online (a page; /who LAST for the next)",
        build: |_, a| Ok(Action::Request(Request::ListOnline { after: a[0].into(), limit: PAGE })),
    },
    Command {
        name: "rename",
        args: &[Rest("DISPLAY NAME")],
        help: "change the name others see",
        build: |_, a| Ok(Action::Request(Request::Rename { display_name: a[0].into() })),
    },
    Command {
        name: "say",
        args: &[Word("ID"), Rest("TEXT")],
        help: "send TEXT to group ID",
        build: |ctx, a| Ok(stored(ctx, Target::Group(group_id(a[0])?), a[1])),
    },
    Command {
        name: "groups",
        args: &[],
        help: "list your groups: id, name, your role, members, unread",
        build: |_, _| Ok(Action::Request(Request::ListGroups)),
    },
    Command {
        name: "groups open",
        args: &[Optional("AFTER")],
        help: "list the open groups anyone may join (a page; /groups open LAST for the next)",
        build: |_, a| {
            let after = if a[0].is_empty() { GroupId(0) } else { group_id(a[0])? };
            Ok(Action::Request(Request::ListOpenGroups { after, limit: PAGE }))
        },
    },
    Command {
        name: "members",
        args: &[Word("ID")],
        help: "who is in group ID, with roles and who is online",
        build: |_, a| Ok(Action::Request(Request::GroupMembers { group_id: group_id(a[0])? })),
    },
    Command {
        name: "group create",
        args: &[Rest("NAME"), Flag("--open")],
        help: "create a group you own (--open: anyone may join it)",
        build: |_, a| Ok(Action::Request(Request::CreateGroup { name: a[0].into(), open: !a[1].is_empty() })),
    },
    Command {
        name: "group rename",
        args: &[Word("ID"), Rest("NAME")],
        help: "rename group ID (owner and admins)",
        build: |_, a| Ok(Action::Request(Request::RenameGroup { group_id: group_id(a[0])?, name: a[1].into() })),
    },
    Command {
        name: "group add",
        args: &[Word("ID"), Word("USER")],
        help: "add USER to group ID (owner and admins)",
        build: |_, a| Ok(Action::Request(Request::AddMember { group_id: group_id(a[0])?, username: username(a[1])? })),
    },
    Command {
        name: "group remove",
        args: &[Word("ID"), Word("USER")],
        help: "remove USER from group ID (owner; admins remove plain members)",
        build: |_, a| {
            Ok(Action::Request(Request::RemoveMember { group_id: group_id(a[0])?, username: username(a[1])? }))
        },
    },
    Command {
        name: "group role",
        args: &[Word("ID"), Word("USER"), Word("owner|admin|member")],
        help: "set USER's role in group ID (owner only; owner hands the group over)",
        build: |_, a| {
            Ok(Action::Request(Request::SetRole {
                group_id: group_id(a[0])?,
                username: username(a[1])?,
                role: role(a[2])?,
            }))
        },
    },
    Command {
        name: "group join",
        args: &[Word("ID")],
        help: "join open group ID",
        build: |_, a| Ok(Action::Request(Request::JoinGroup { group_id: group_id(a[0])? })),
    },
    Command {
        name: "group leave",
        args: &[Word("ID")],
        help: "leave group ID (the owner hands it over or deletes it instead)",
        build: |_, a| Ok(Action::Request(Request::LeaveGroup { group_id: group_id(a[0])? })),
    },
    Command {
        name: "group delete",
        args: &[Word("ID")],
        help: "delete group ID and its history (owner only)",
        build: |_, a| Ok(Action::Request(Request::DeleteGroup { group_id: group_id(a[0])? })),
    },
    Command {
        name: "join",
        args: &[Word("ROOM")],
        help: "join a live room (created if empty; nothing stored)",
        build: |_, a| Ok(Action::Request(Request::JoinRoom { room: room(a[0])? })),
    },
    Command {
        name: "leave",
        args: &[Word("ROOM")],
        help: "leave a room",
        build: |_, a| Ok(Action::Request(Request::LeaveRoom { room: room(a[0])? })),
    },
    Command {
        name: "room",
        args: &[Word("ROOM"), Rest("TEXT")],
        help: "say TEXT to whoever is in ROOM now",
        build: |_, a| Ok(live(Target::Room(room(a[0])?), a[1])),
    },
    Command {
        name: "rooms",
        args: &[Optional("AFTER")],
        help: "list rooms with members (a page; /rooms LAST for the next)",
        build: |_, a| Ok(Action::Request(Request::ListRooms { after: a[0].into(), limit: PAGE })),
    },
    Command {
        name: "room-members",
        args: &[Word("ROOM")],
        help: "who is in ROOM",
        build: |_, a| Ok(Action::Request(Request::RoomMembers { room: room(a[0])? })),
    },
    Command {
        name: "broadcast",
        args: &[Rest("TEXT")],
        help: "say TEXT to everyone online (administrators)",
        build: |_, a| Ok(live(Target::Everyone, a[0])),
    },
    Command {
        name: "watch",
        args: &[Word("USER")],
        help: "be told when USER comes online or goes offline",
        build: |_, a| Ok(Action::Request(Request::SubscribePresence { username: username(a[0])? })),
    },
    Command {
        name: "unwatch",
        args: &[Word("USER")],
        help: "stop watching USER",
        build: |_, a| Ok(Action::Request(Request::UnsubscribePresence { username: username(a[0])? })),
    },
    Command {
        name: "mute",
        args: &[Word("NAME"), Optional("MINUTES")],
        help: "no push notifications for NAME's messages, for MINUTES (none or 0: until /unmute)",
        build: |ctx, a| mute(Chat::User(user_not_group(a[0], "mute")?), ctx.now_ms, a[1]),
    },
    Command {
        name: "group mute",
        args: &[Word("ID"), Optional("MINUTES")],
        help: "no push notifications for group ID, for MINUTES (none or 0: until /group unmute)",
        build: |ctx, a| mute(Chat::Group(group_id(a[0])?), ctx.now_ms, a[1]),
    },
    Command {
        name: "unmute",
        args: &[Word("NAME")],
        help: "push notifications for NAME's messages again",
        build: |_, a| Ok(Action::Request(Request::Unmute { chat: Chat::User(user_not_group(a[0], "unmute")?) })),
    },
    Command {
        name: "group unmute",
        args: &[Word("ID")],
        help: "push notifications for group ID again",
        build: |_, a| Ok(Action::Request(Request::Unmute { chat: Chat::Group(group_id(a[0])?) })),
    },
    Command {
        name: "push",
        args: &[],
        help: "your devices registered for push notifications, and the chats you muted",
        build: |_, _| Ok(Action::Request(Request::PushSettings)),
    },
    Command {
        name: "shop",
        args: &[Word("NAME"), Rest("TEXT")],
        help: "write TEXT to shop NAME; its staff answer (replies show as from the shop)",
        build: |ctx, a| Ok(stored(ctx, Target::Shop(shop(a[0])?), a[1])),
    },
    Command {
        name: "support",
        args: &[Optional("SHOP")],
        help: "staff: SHOP's conversations (id, customer, claimed by, unread); none: your own with shops",
        build: |_, a| {
            let shop = if a[0].is_empty() { String::new() } else { shop(a[0])? };
            Ok(Action::Request(Request::ListSupport { shop, after: SupportId(0), limit: PAGE }))
        },
    },
    Command {
        name: "reply",
        args: &[Word("ID"), Rest("TEXT")],
        help: "write TEXT in support conversation ID (staff: claims it if nobody has)",
        build: |ctx, a| Ok(stored(ctx, Target::Support(support_id(a[0])?), a[1])),
    },
    Command {
        name: "claim",
        args: &[Word("ID")],
        help: "staff: answer support conversation ID from now on (only you are sent it)",
        build: |_, a| Ok(Action::Request(Request::ClaimSupport { conversation: support_id(a[0])? })),
    },
    Command {
        name: "handover",
        args: &[Word("ID"), Word("USER")],
        help: "staff: pass support conversation ID to USER, staff of the same shop",
        build: |_, a| {
            let conversation = support_id(a[0])?;
            Ok(Action::Request(Request::HandOverSupport { conversation, to: username(a[1])? }))
        },
    },
    Command {
        name: "release",
        args: &[Word("ID")],
        help: "staff: let support conversation ID go; every staff member is sent it again",
        build: |_, a| Ok(Action::Request(Request::ReleaseSupport { conversation: support_id(a[0])? })),
    },
    Command {
        name: "history",
        args: &[Word("NAME"), Optional("N")],
        help: "the last N (default 20) messages with NAME, both ways, oldest first",
        build: |_, a| Ok(Action::History { chat: Chat::User(username(a[0])?), count: history_count(a[1])? }),
    },
    Command {
        name: "group history",
        args: &[Word("ID"), Optional("N")],
        help: "the last N (default 20) messages of group ID since you joined, oldest first",
        build: |_, a| Ok(Action::History { chat: Chat::Group(group_id(a[0])?), count: history_count(a[1])? }),
    },
    Command {
        name: "delete",
        args: &[Word("NAME"), Optional("ID")],
        help: "delete your message ID to NAME for everyone (no ID: your last one this client knows)",
        build: |_, a| Ok(Action::Delete { chat: Chat::User(username(a[0])?), message_id: message_id(a[1])? }),
    },
    Command {
        name: "group delete-message",
        args: &[Word("ID"), Optional("MESSAGE")],
        help: "delete your message MESSAGE in group ID for everyone (none: your last one known here)",
        build: |_, a| Ok(Action::Delete { chat: Chat::Group(group_id(a[0])?), message_id: message_id(a[1])? }),
    },
    Command {
        name: "clear",
        args: &[Word("NAME")],
        help: "hide the history with NAME from all your devices (NAME keeps theirs)",
        build: |_, a| Ok(Action::Clear(Chat::User(username(a[0])?))),
    },
    Command {
        name: "group clear",
        args: &[Word("ID")],
        help: "hide the history of group ID from all your devices",
        build: |_, a| Ok(Action::Clear(Chat::Group(group_id(a[0])?))),
    },
    Command {
        name: "read",
        args: &[Word("NAME")],
        help: "mark the chat with NAME read (on all your devices; NAME may learn it)",
        build: |_, a| Ok(Action::Read(Chat::User(username(a[0])?))),
    },
    Command {
        name: "group mark-read",
        args: &[Word("ID")],
        help: "mark group ID read (on all your devices)",
        build: |_, a| Ok(Action::Read(Chat::Group(group_id(a[0])?))),
    },
    Command {
        name: "unread",
        args: &[],
        help: "your chats: unread messages and how far each is read",
        build: |_, _| Ok(Action::Request(Request::ReadState)),
    },
    Command {
        name: "receipts",
        args: &[Word("on|off")],
        help: "whether others learn when you have read their messages (on by default)",
        build: |_, a| match a[0] {
            "on" => Ok(Action::Request(Request::SetReadReceipts { enabled: true })),
            "off" => Ok(Action::Request(Request::SetReadReceipts { enabled: false })),
            other => Err(ParseError::Invalid(format!("{other:?} is neither on nor off"))),
        },
    },
    Command {
        name: "group read",
        args: &[Word("ID")],
        help: "how far each member has read group ID",
        build: |_, a| Ok(Action::Request(Request::ReadPositions { group_id: group_id(a[0])? })),
    },
    Command {
        name: "devices",
        args: &[],
        help: "your devices: which are online, when the others were last seen",
        build: |_, _| Ok(Action::Request(Request::ListDevices)),
    },
    Command {
        name: "device-remove",
        args: &[Word("NAME")],
        help: "forget your device NAME (a lost phone): its session ends, its token is revoked",
        build: |_, a| Ok(Action::Request(Request::RemoveDevice { device: device(a[0])? })),
    },
    Command {
        name: "stats",
        args: &[],
        help: "server statistics (administrators)",
        build: |_, _| Ok(Action::Request(Request::Stats)),
    },
    Command {
        name: "resync",
        args: &[Optional("ID")],
        help: "fetch again what follows what you saw, in your inbox or group ID",
        build: |_, a| {
            let conversation = if a[0].is_empty() { Conversation::Inbox } else { Conversation::Group(group_id(a[0])?) };
            Ok(Action::Resync(conversation))
        },
    },
    Command {
        name: "logout",
        args: &[],
        help: "log out this device and forget its resume token",
        build: |_, _| Ok(Action::Request(Request::Logout)),
    },
    Command {
        name: "logout-all",
        args: &[],
        help: "log out every one of your devices, this one too",
        build: |_, _| Ok(Action::Request(Request::LogoutEverywhere)),
    },
    Command { name: "help", args: &[], help: "this list", build: |_, _| Ok(Action::Help) },
    Command { name: "quit", args: &[], help: "finish what is under way and exit", build: |_, _| Ok(Action::Quit) },
];

/// A live message to a room or everyone: never stored, so no `client_msg_id`.
fn live(to: Target, text: &str) -> Action {
    Action::Request(Request::Send {
        to,
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content::text(text),
    })
}

/// A mute from `now_ms` for `minutes` ("" or 0: until unmuted).
fn mute(chat: Chat, now_ms: u64, minutes: &str) -> Result<Action, ParseError> {
    let invalid = || ParseError::Invalid(format!("{minutes:?} is not a number of minutes (none or 0: until unmuted)"));
    let minutes = if minutes.is_empty() { 0 } else { minutes.parse::<u64>().map_err(|_| invalid())? };
    let until_ms = match minutes {
        0 => 0,
        // Past u64 milliseconds (585 million years) is not a time; say so rather than wrap.
        _ => minutes.checked_mul(60_000).and_then(|ms| ms.checked_add(now_ms)).ok_or_else(invalid)?,
    };
    Ok(Action::Request(Request::Mute { chat, until_ms }))
}

/// The user `/mute` or `/unmute` names. Usernames may be all digits, so a number is a
/// user; one too short to be a username was likely meant as a group, and `/group COMMAND`
/// is suggested.
fn user_not_group(word: &str, command: &str) -> Result<String, ParseError> {
    username(word).map_err(|e| match word.parse::<u64>() {
        Ok(id) => ParseError::Invalid(format!("{e}; for group {id}: /group {command} {id}")),
        Err(_) => e,
    })
}

/// `/history`'s N: 1 to [`HISTORY_MAX`], [`HISTORY_DEFAULT`] when not given.
fn history_count(word: &str) -> Result<u32, ParseError> {
    if word.is_empty() {
        return Ok(HISTORY_DEFAULT);
    }
    match word.parse::<u32>() {
        Ok(n @ 1..=HISTORY_MAX) => Ok(n),
        _ => Err(ParseError::Invalid(format!("{word:?} is not a number of messages (1 to {HISTORY_MAX})"))),
    }
}

/// A message id as `sent` and `message` lines show it; "" for none.
fn message_id(word: &str) -> Result<Option<MessageId>, ParseError> {
    if word.is_empty() {
        return Ok(None);
    }
    word.parse()
        .map(|id| Some(MessageId(id)))
        .map_err(|_| ParseError::Invalid(format!("{word:?} is not a message id (the id= of a sent line)")))
}

fn device(name: &str) -> Result<String, ParseError> {
    if valid_device(name) {
        Ok(name.to_string())
    } else {
        Err(ParseError::Invalid(format!("{name:?} is not a device id (1-64 printable characters, no spaces)")))
    }
}

fn group_id(word: &str) -> Result<GroupId, ParseError> {
    word.parse()
        .map(GroupId)
        .map_err(|_| ParseError::Invalid(format!("{word:?} is not a group id (a number; see /groups)")))
}

fn support_id(word: &str) -> Result<SupportId, ParseError> {
    word.parse()
        .map(SupportId)
        .map_err(|_| ParseError::Invalid(format!("{word:?} is not a support conversation id (a number; see /support)")))
}

fn shop(name: &str) -> Result<String, ParseError> {
    if valid_shop_name(name) {
        Ok(name.to_string())
    } else {
        Err(ParseError::Invalid(format!("{name:?} is not a shop name (3-32 of a-z 0-9 _ . -)")))
    }
}

fn room(name: &str) -> Result<String, ParseError> {
    if valid_room_name(name) {
        Ok(name.to_string())
    } else {
        Err(ParseError::Invalid(format!("{name:?} is not a room name (1-64 of a-z 0-9 _ . -)")))
    }
}

fn role(word: &str) -> Result<Role, ParseError> {
    match word {
        "owner" => Ok(Role::Owner),
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        _ => Err(ParseError::Invalid(format!("{word:?} is not a role (owner, admin or member)"))),
    }
}
