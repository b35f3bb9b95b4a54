//! Line mode: one line per event, keyword first, then `key=value` fields, free text last
//! and escaped. The crate documentation lists every format; the tests below pin a few.

use super::{escape, is_typing, plain_content, platform_word, role_word, Event};
use confab_proto::protocol::{
    Chat, Conversation, GroupEvent, MemberInfo, Message, MessageId, ReadPosition, Request, Role, SenderKind, Seq,
    ServerStats, Target,
};

pub fn plain(event: &Event) -> String {
    match event {
        Event::Connected { addr } => format!("connected {addr}"),
        Event::Redirected { node, addr } => format!("redirected node={node} addr={}", escape(addr)),
        Event::Registered { username } => format!("registered {username}"),
        Event::LoggedIn { username, device, acked, last_seq, reconnected, .. } => {
            let word = if *reconnected { "reconnected" } else { "logged-in" };
            format!("{word} {username} acked={acked} last={last_seq} device={}", escape(device))
        }
        Event::Sent { to, seq, message_id, duplicate, .. } => {
            let mut line = format!("sent seq={seq} {} id={message_id}", destination(to));
            if *duplicate {
                line.push_str(" duplicate=true");
            }
            line
        }
        Event::SentCopy { to, seq, message_id, timestamp_ms, content } => {
            format!("sent-copy seq={seq} to={to} at={timestamp_ms} id={message_id}{}", plain_content(content))
        }
        Event::TransientSent { to, delivered } => {
            format!("transient-sent to={to} delivered={delivered}")
        }
        Event::Delivered { to: Target::Room(room), recipients, .. } => {
            format!("room-sent room={room} recipients={recipients}")
        }
        Event::Delivered { recipients, .. } => format!("broadcast-sent recipients={recipients}"),
        Event::Message { conversation, seq, message_id, from, display_name, service, staff, timestamp_ms, content } => {
            let head = Head {
                conversation: *conversation,
                seq: *seq,
                message_id: *message_id,
                from,
                display_name,
                service: *service,
                staff: *staff,
                timestamp_ms: *timestamp_ms,
            };
            format!("message {head}{}", plain_content(content))
        }
        Event::MessageDeleted { seq, message_id, by, chat, .. } => {
            let chat = chat.as_ref().map_or(String::new(), |chat| format!(" {}", chat_field(chat)));
            format!("message-deleted seq={seq} id={message_id} by={}{chat}", escape(by))
        }
        Event::Unread { chat, unread, read_up_to, last_seq } => {
            format!("unread {} count={unread} read={read_up_to} last={last_seq}", chat_field(chat))
        }
        Event::ReadStateCount { chats, read_receipts } => {
            format!("read-state chats={chats} read_receipts={read_receipts}")
        }
        Event::History { chat, count, more } => format!("history {} count={count} more={more}", chat_field(chat)),
        Event::HistoryMessage { message, deleted } => history_line(message, *deleted),
        Event::Read { chat, up_to, unread, .. } => format!("read {} up_to={up_to} unread={unread}", chat_field(chat)),
        Event::ReadMark { chat, up_to, unread } => {
            format!("read-mark {} up_to={up_to} unread={unread}", chat_field(chat))
        }
        Event::ReadReceipt { reader, up_to, own } => {
            let id = own.as_ref().map_or(String::new(), |own| format!(" id={}", own.message_id));
            format!("read-receipt reader={} up_to={up_to}{id}", escape(reader))
        }
        Event::HistoryCleared { chat, up_to } => format!("history-cleared {} up_to={up_to}", chat_field(chat)),
        Event::DeviceCount { count } => format!("devices count={count}"),
        Event::Device(d) => format!(
            "device name={} online={} last_seen={} this={}",
            escape(&d.device),
            d.online,
            d.last_seen_ms,
            d.this
        ),
        Event::ReadPositions { group_id, readers } => {
            format!("read-positions group={group_id} readers={}", reader_list(readers))
        }
        Event::GroupChange { group_id, seq, event, .. } => {
            format!("group-event group={group_id} seq={seq} {}", group_event(event))
        }
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
        Event::Acked { conversation: Conversation::Group(id), up_to } => format!("acked group={id} up_to={up_to}"),
        Event::Acked { conversation: Conversation::Support(id), up_to } => {
            format!("acked support={id} up_to={up_to}")
        }
        Event::Acked { up_to, .. } => format!("acked up_to={up_to}"),
        Event::Resynced { conversation, after, last_seq, .. } => {
            let group = match conversation {
                Conversation::Group(id) => format!("group={id} "),
                Conversation::Support(id) => format!("support={id} "),
                Conversation::Inbox => String::new(),
            };
            format!("resynced {group}after={after} last={last_seq}")
        }
        Event::LoggedOut => "logged-out".into(),
        Event::Peer { username } => format!("peer {username}"),
        Event::GroupCreated { group_id, .. } => format!("group-created id={group_id}"),
        Event::Done { request } => format!("done {}", done(request)),
        Event::GroupCount { count } => format!("groups count={count}"),
        Event::Group(g) => format!(
            "group id={} role={} members={} unread={} open={} name={}",
            g.group_id,
            role_word(g.role),
            g.members,
            g.last_seq.saturating_sub(g.acked),
            g.open,
            escape(&g.name)
        ),
        Event::Members { group_id, members } => format!("members group={group_id} {}", member_fields(members)),
        Event::Rooms { rooms, more } => {
            let list: Vec<String> = rooms.iter().map(|r| format!("{}:{}", r.name, r.members)).collect();
            format!("rooms list={} more={more}", list.join(","))
        }
        Event::RoomMembers { room, members } => {
            let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
            format!("room-members room={room} users={}", names.join(","))
        }
        Event::OpenGroupCount { count, more, .. } => format!("open-groups count={count} more={more}"),
        Event::OpenGroup(g) => format!("open-group id={} members={} name={}", g.group_id, g.members, escape(&g.name)),
        Event::Watching { username, online } => format!("watching {username} online={online}"),
        Event::SupportCount { count, more } => format!("support count={count} more={more}"),
        Event::Support(c) => format!(
            "conversation id={} shop={} customer={} claimed_by={} unread={} last_at={}",
            c.conversation,
            c.shop,
            c.customer,
            c.claimed_by.as_deref().unwrap_or("-"),
            c.last_seq.saturating_sub(c.acked),
            c.last_ms
        ),
        Event::Claimed { conversation, shop, customer, agent: Some(agent) } => {
            format!("claimed support={conversation} shop={shop} customer={customer} agent={agent}")
        }
        Event::Claimed { conversation, shop, customer, agent: None } => {
            format!("released support={conversation} shop={shop} customer={customer}")
        }
        Event::Stats(stats) => stats_line(stats),
        Event::AppStats(app) => {
            let figures: Vec<String> = app.figures().iter().map(|(name, value)| format!("{name}={value}")).collect();
            format!("app-stats app={} {}", app.app, figures.join(" "))
        }
        Event::PushSettings { devices, mutes } => format!("push-settings devices={devices} mutes={mutes}"),
        Event::PushDevice(d) => format!(
            "push-device device={} platform={} previews={} registered={}",
            escape(&d.device),
            platform_word(d.platform),
            d.previews,
            d.registered_ms
        ),
        Event::Muted { chat, until_ms: 0 } => format!("muted {} until=never", chat_field(chat)),
        Event::Muted { chat, until_ms } => format!("muted {} until={until_ms}", chat_field(chat)),
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

/// `to=NAME` or `group=ID`.
fn destination(to: &Target) -> String {
    match to {
        Target::User(name) => format!("to={name}"),
        Target::Group(id) => format!("group={id}"),
        Target::Room(room) => format!("room={room}"),
        Target::Everyone => "everyone=true".into(),
        Target::Shop(shop) => format!("shop={shop}"),
        Target::Support(id) => format!("support={id}"),
    }
}

/// `user=NAME`, `group=ID` or `service=NAME`: whose notifications a mute is about.
fn chat_field(chat: &Chat) -> String {
    match chat {
        Chat::User(name) => format!("user={}", escape(name)),
        Chat::Group(id) => format!("group={id}"),
        Chat::Service(name) => format!("service={}", escape(name)),
        Chat::Support(id) => format!("support={id}"),
    }
}

/// Nothing for the inbox, so direct messages read as the crate docs show.
fn group_field(conversation: Conversation) -> String {
    match conversation {
        Conversation::Group(id) => format!(" group={id}"),
        Conversation::Support(id) => format!(" support={id}"),
        Conversation::Inbox => String::new(),
    }
}

fn group_event(event: &GroupEvent) -> String {
    match event {
        GroupEvent::Created { by } => format!("event=created by={by}"),
        GroupEvent::Joined { username } => format!("event=joined user={username}"),
        GroupEvent::Left { username } => format!("event=left user={username}"),
        GroupEvent::Added { username, by } => format!("event=added user={username} by={by}"),
        GroupEvent::Removed { username, by } => format!("event=removed user={username} by={by}"),
        GroupEvent::Renamed { name, by } => format!("event=renamed by={by} name={}", escape(name)),
        GroupEvent::RoleChanged { username, role, by } => {
            format!("event=role user={username} role={} by={by}", role_word(*role))
        }
        GroupEvent::Deleted { by } => format!("event=deleted by={by}"),
        GroupEvent::MessageDeleted { message_id, by } => format!("event=message-deleted id={message_id} by={by}"),
    }
}

/// What a `done` line says it did.
fn done(request: &Request) -> String {
    match request {
        Request::RenameGroup { group_id, .. } => format!("group-rename group={group_id}"),
        Request::AddMember { group_id, username } => format!("group-add group={group_id} user={username}"),
        Request::RemoveMember { group_id, username } => format!("group-remove group={group_id} user={username}"),
        Request::SetRole { group_id, username, role } => {
            format!("group-role group={group_id} user={username} role={}", role_word(*role))
        }
        Request::JoinGroup { group_id } => format!("group-join group={group_id}"),
        Request::LeaveGroup { group_id } => format!("group-leave group={group_id}"),
        Request::DeleteGroup { group_id } => format!("group-delete group={group_id}"),
        Request::JoinRoom { room } => format!("join room={room}"),
        Request::LeaveRoom { room } => format!("leave room={room}"),
        Request::UnsubscribePresence { username } => format!("unwatch user={username}"),
        Request::Unmute { chat } => format!("unmute {}", chat_field(chat)),
        Request::ClaimSupport { conversation } => format!("claim support={conversation}"),
        Request::HandOverSupport { conversation, to } => format!("handover support={conversation} user={to}"),
        Request::ReleaseSupport { conversation } => format!("release support={conversation}"),
        Request::DeleteMessage { chat, message_id } => format!("delete {} id={message_id}", chat_field(chat)),
        Request::ClearHistory { chat, up_to } => format!("clear {} up_to={up_to}", chat_field(chat)),
        Request::SetReadReceipts { enabled } => format!("receipts enabled={enabled}"),
        Request::RemoveDevice { device } => format!("device-remove device={}", escape(device)),
        _ => "request".into(),
    }
}

/// The fields of a stored message's line up to its content, in the order the crate
/// documentation gives: `seq=N from=NAME [name=T] at=MS id=ID [group=ID|support=ID]
/// [service=true] [staff=true]`.
struct Head<'a> {
    conversation: Conversation,
    seq: Seq,
    message_id: MessageId,
    from: &'a str,
    display_name: &'a str,
    service: bool,
    staff: bool,
    timestamp_ms: u64,
}

impl std::fmt::Display for Head<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq={} from={}", self.seq, escape(self.from))?;
        if !self.display_name.is_empty() && self.display_name != self.from {
            // Spaces escaped too: fields are separated by spaces, and only text is last.
            write!(f, " name={}", escape(self.display_name).replace(' ', "\\u{20}"))?;
        }
        write!(f, " at={} id={}{}", self.timestamp_ms, self.message_id, group_field(self.conversation))?;
        if self.service {
            f.write_str(" service=true")?;
        }
        if self.staff {
            f.write_str(" staff=true")?;
        }
        Ok(())
    }
}

/// A message of a history page, as a `message` line is; a group's event as a
/// `group-event` line is.
fn history_line(message: &Message, deleted: bool) -> String {
    if let (Conversation::Group(group_id), Some(event), false) = (message.conversation, &message.event, deleted) {
        return format!("history-event group={group_id} seq={} {}", message.seq, group_event(event));
    }
    let head = Head {
        conversation: message.conversation,
        seq: message.seq,
        message_id: message.message_id,
        from: &message.from,
        display_name: &message.display_name,
        service: message.sender == SenderKind::Service,
        staff: message.sender == SenderKind::Staff,
        timestamp_ms: message.timestamp_ms,
    };
    match deleted {
        true => format!("history-message {head} deleted=true"),
        false => format!("history-message {head}{}", plain_content(&message.content)),
    }
}

/// `alice:5,bob:3`: who has read a group up to where.
fn reader_list(readers: &[ReadPosition]) -> String {
    readers.iter().map(|r| format!("{}:{}", r.username, r.read_up_to)).collect::<Vec<_>>().join(",")
}

/// `owner=U admins=A,B members=C,D online=A,C`: a field per role, then who is online.
fn member_fields(members: &[MemberInfo]) -> String {
    let names = |keep: &dyn Fn(&MemberInfo) -> bool| {
        members.iter().filter(|m| keep(m)).map(|m| m.username.as_str()).collect::<Vec<_>>().join(",")
    };
    format!(
        "owner={} admins={} members={} online={}",
        names(&|m| m.role == Role::Owner),
        names(&|m| m.role == Role::Admin),
        names(&|m| m.role == Role::Member),
        names(&|m| m.online)
    )
}

fn stats_line(s: &ServerStats) -> String {
    let mut line = String::from("stats");
    for (name, value) in s.figures() {
        line.push_str(&format!(" {name}={value}"));
    }
    line.push_str(&format!(" version={}", escape(&s.version)));
    line
}

#[cfg(test)]
mod tests {
    use super::super::TYPING;
    use super::*;
    use confab_proto::protocol::{Content, GroupId, GroupInfo, OnlineUser, PushDeviceInfo, PushPlatform, RoomInfo};

    #[test]
    fn free_text_stays_on_one_line() {
        let event = Event::Message {
            conversation: Conversation::Inbox,
            seq: Seq(3),
            message_id: MessageId(70),
            from: "alice".into(),
            display_name: "alice".into(),
            service: false,
            staff: false,
            timestamp_ms: 1_000,
            content: Content::text("two\nlines \\ and\u{1b}[2J"),
        };
        assert_eq!(plain(&event), "message seq=3 from=alice at=1000 id=70 text=two\\nlines \\\\ and\\u{1b}[2J");
        assert!(!super::super::pretty(&event).contains('\u{1b}'));
        let mut renamed = event.clone();
        if let Event::Message { display_name, .. } = &mut renamed {
            *display_name = "Alice L.".into();
        }
        assert!(plain(&renamed).starts_with("message seq=3 from=alice name=Alice\\u{20}L. at=1000 id=70 "));
    }

    #[test]
    fn documented_lines() {
        let sent = |to| Event::Sent {
            to,
            seq: Seq(1),
            message_id: MessageId(9),
            duplicate: false,
            content: Content::text("hi"),
        };
        assert_eq!(plain(&sent(Target::User("bob".into()))), "sent seq=1 to=bob id=9");
        assert_eq!(plain(&sent(Target::Group(GroupId(7)))), "sent seq=1 group=7 id=9");
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
            plain(&Event::Redirected { node: 2, addr: "10.0.0.2:7420".into() }),
            "redirected node=2 addr=10.0.0.2:7420"
        );
        assert_eq!(
            plain(&Event::LoggedIn {
                username: "alice".into(),
                display_name: "alice".into(),
                device: "laptop".into(),
                acked: Seq::ZERO,
                last_seq: Seq(3),
                reconnected: false
            }),
            "logged-in alice acked=0 last=3 device=laptop"
        );
    }

    #[test]
    fn group_lines() {
        let event = |event| Event::GroupChange { group_id: GroupId(7), seq: Seq(2), timestamp_ms: 0, event };
        assert_eq!(
            plain(&event(GroupEvent::Added { username: "bob".into(), by: "alice".into() })),
            "group-event group=7 seq=2 event=added user=bob by=alice"
        );
        assert_eq!(
            plain(&event(GroupEvent::Renamed { name: "Book club".into(), by: "alice".into() })),
            "group-event group=7 seq=2 event=renamed by=alice name=Book club"
        );
        assert_eq!(
            plain(&event(GroupEvent::RoleChanged { username: "bob".into(), role: Role::Admin, by: "alice".into() })),
            "group-event group=7 seq=2 event=role user=bob role=admin by=alice"
        );
        let info = GroupInfo {
            group_id: GroupId(7),
            name: "Book club".into(),
            open: true,
            role: Role::Owner,
            members: 2,
            acked: Seq(3),
            last_seq: Seq(5),
        };
        assert_eq!(plain(&Event::Group(info)), "group id=7 role=owner members=2 unread=2 open=true name=Book club");
        let member =
            |name: &str, role, online| MemberInfo { username: name.into(), role, online, display_name: name.into() };
        let members = vec![member("alice", Role::Owner, true), member("bob", Role::Member, false)];
        assert_eq!(
            plain(&Event::Members { group_id: GroupId(7), members }),
            "members group=7 owner=alice admins= members=bob online=alice"
        );
        assert_eq!(
            plain(&Event::Done { request: Request::AddMember { group_id: GroupId(7), username: "bob".into() } }),
            "done group-add group=7 user=bob"
        );
        assert_eq!(
            plain(&Event::Acked { conversation: Conversation::Group(GroupId(7)), up_to: Seq(4) }),
            "acked group=7 up_to=4"
        );
    }

    #[test]
    fn push_settings_lines() {
        assert_eq!(plain(&Event::PushSettings { devices: 0, mutes: 0 }), "push-settings devices=0 mutes=0");
        let device = PushDeviceInfo {
            device: "phone".into(),
            platform: PushPlatform::WebPush,
            previews: false,
            registered_ms: 1_700_000_000_000,
        };
        assert_eq!(
            plain(&Event::PushDevice(device)),
            "push-device device=phone platform=webpush previews=false registered=1700000000000"
        );
        let muted = |chat, until_ms| plain(&Event::Muted { chat, until_ms });
        assert_eq!(muted(Chat::User("bob".into()), 0), "muted user=bob until=never");
        assert_eq!(muted(Chat::Group(GroupId(7)), 1_700_000_060_000), "muted group=7 until=1700000060000");
        assert_eq!(muted(Chat::Service("shop".into()), 0), "muted service=shop until=never");
        assert_eq!(
            plain(&Event::Done { request: Request::Unmute { chat: Chat::Group(GroupId(7)) } }),
            "done unmute group=7"
        );
    }

    #[test]
    fn device_history_and_read_state_lines() {
        use crate::chats::Own;
        use confab_proto::protocol::{ChatState, DeviceInfo, MediaKind, SenderKind};
        let bob = || Chat::User("bob".into());
        let copy = Event::SentCopy {
            to: "bob".into(),
            seq: Seq(3),
            message_id: MessageId(78),
            timestamp_ms: 5,
            content: Content::text("see you at six"),
        };
        assert_eq!(plain(&copy), "sent-copy seq=3 to=bob at=5 id=78 text=see you at six");
        let unread = Event::Unread { chat: bob(), unread: 2, read_up_to: Seq(2), last_seq: Seq(4) };
        assert_eq!(plain(&unread), "unread user=bob count=2 read=2 last=4");
        let _ = ChatState { chat: bob(), last_seq: Seq(4), read_up_to: Seq(2), unread: 2, cleared_up_to: Seq(0) };
        assert_eq!(
            plain(&Event::ReadStateCount { chats: 1, read_receipts: false }),
            "read-state chats=1 read_receipts=false"
        );
        assert_eq!(plain(&Event::History { chat: bob(), count: 2, more: true }), "history user=bob count=2 more=true");
        let message = |event, content| Message {
            conversation: Conversation::Inbox,
            seq: Seq(1),
            prev_seq: Seq(0),
            message_id: MessageId(70),
            from: "bob".into(),
            sender: SenderKind::User,
            timestamp_ms: 9,
            content,
            event,
            display_name: "bob".into(),
        };
        let said = message(None, Content::text("are you coming?"));
        assert_eq!(
            plain(&Event::HistoryMessage { message: said.clone(), deleted: false }),
            "history-message seq=1 from=bob at=9 id=70 text=are you coming?"
        );
        assert_eq!(
            plain(&Event::HistoryMessage { message: said, deleted: true }),
            "history-message seq=1 from=bob at=9 id=70 deleted=true"
        );
        let system = Content { kind: MediaKind::System, body: Vec::new(), media: None };
        let mut joined = message(Some(GroupEvent::Joined { username: "bob".into() }), system);
        joined.conversation = Conversation::Group(GroupId(9));
        assert_eq!(
            plain(&Event::HistoryMessage { message: joined, deleted: false }),
            "history-event group=9 seq=1 event=joined user=bob"
        );
        let read = Event::Read { chat: Chat::Group(GroupId(9)), up_to: Seq(5), unread: 0, asked: false };
        assert_eq!(plain(&read), "read group=9 up_to=5 unread=0");
        assert_eq!(
            plain(&Event::ReadMark { chat: bob(), up_to: Seq(4), unread: 1 }),
            "read-mark user=bob up_to=4 unread=1"
        );
        let own = Own { message_id: MessageId(78), receipt_seq: Some(Seq(7)), preview: "see".into() };
        assert_eq!(
            plain(&Event::ReadReceipt { reader: "bob".into(), up_to: Seq(7), own: Some(own) }),
            "read-receipt reader=bob up_to=7 id=78"
        );
        assert_eq!(
            plain(&Event::ReadReceipt { reader: "bob".into(), up_to: Seq(7), own: None }),
            "read-receipt reader=bob up_to=7"
        );
        assert_eq!(plain(&Event::HistoryCleared { chat: bob(), up_to: Seq(3) }), "history-cleared user=bob up_to=3");
        let deleted = Event::MessageDeleted {
            seq: Seq(8),
            message_id: MessageId(70),
            by: "bob".into(),
            chat: Some(bob()),
            preview: None,
        };
        assert_eq!(plain(&deleted), "message-deleted seq=8 id=70 by=bob user=bob");
        let device = DeviceInfo { device: "phone".into(), online: false, last_seen_ms: 7, this: false };
        assert_eq!(plain(&Event::Device(device)), "device name=phone online=false last_seen=7 this=false");
        let readers = vec![
            ReadPosition { username: "alice".into(), read_up_to: Seq(5) },
            ReadPosition { username: "bob".into(), read_up_to: Seq(3) },
        ];
        assert_eq!(
            plain(&Event::ReadPositions { group_id: GroupId(9), readers }),
            "read-positions group=9 readers=alice:5,bob:3"
        );
        let done = |request| plain(&Event::Done { request });
        assert_eq!(
            done(Request::DeleteMessage { chat: bob(), message_id: MessageId(78) }),
            "done delete user=bob id=78"
        );
        assert_eq!(done(Request::ClearHistory { chat: bob(), up_to: Seq(3) }), "done clear user=bob up_to=3");
        assert_eq!(done(Request::SetReadReceipts { enabled: false }), "done receipts enabled=false");
        assert_eq!(done(Request::RemoveDevice { device: "phone".into() }), "done device-remove device=phone");
    }

    #[test]
    fn room_lines() {
        let rooms = vec![RoomInfo { name: "lobby".into(), members: 3 }, RoomInfo { name: "dev".into(), members: 1 }];
        assert_eq!(plain(&Event::Rooms { rooms, more: false }), "rooms list=lobby:3,dev:1 more=false");
        let delivered = |to| Event::Delivered { to, recipients: 2, content: Content::text("hi") };
        assert_eq!(plain(&delivered(Target::Room("lobby".into()))), "room-sent room=lobby recipients=2");
        assert_eq!(plain(&delivered(Target::Everyone)), "broadcast-sent recipients=2");
    }
}
