//! Line mode: one line per event, keyword first, then `key=value` fields, free text last
//! and escaped. The crate documentation lists every format; the tests below pin a few.

use super::{escape, is_typing, plain_content, platform_word, role_word, Event};
use confab_proto::protocol::{Chat, Conversation, GroupEvent, MemberInfo, Request, Role, ServerStats, Target};

pub fn plain(event: &Event) -> String {
    match event {
        Event::Connected { addr } => format!("connected {addr}"),
        Event::Registered { username } => format!("registered {username}"),
        Event::LoggedIn { username, acked, last_seq, reconnected, .. } => {
            let word = if *reconnected { "reconnected" } else { "logged-in" };
            format!("{word} {username} acked={acked} last={last_seq}")
        }
        Event::Sent { to, seq, duplicate, .. } => {
            let mut line = format!("sent seq={seq} {}", destination(to));
            if *duplicate {
                line.push_str(" duplicate=true");
            }
            line
        }
        Event::TransientSent { to, delivered } => {
            format!("transient-sent to={to} delivered={delivered}")
        }
        Event::Delivered { to: Target::Room(room), recipients, .. } => {
            format!("room-sent room={room} recipients={recipients}")
        }
        Event::Delivered { recipients, .. } => format!("broadcast-sent recipients={recipients}"),
        Event::Message { conversation, seq, from, display_name, service, staff, timestamp_ms, content } => format!(
            "message seq={seq} from={}{} at={timestamp_ms}{}{}{}{}",
            escape(from),
            if display_name.is_empty() || display_name == from {
                String::new()
            } else {
                // Spaces escaped too: fields are separated by spaces, and only text is last.
                format!(" name={}", escape(display_name).replace(' ', "\\u{20}"))
            },
            group_field(*conversation),
            if *service { " service=true" } else { "" },
            if *staff { " staff=true" } else { "" },
            plain_content(content)
        ),
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
        _ => "request".into(),
    }
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
    use confab_proto::protocol::{
        Content, GroupId, GroupInfo, OnlineUser, PushDeviceInfo, PushPlatform, RoomInfo, Seq,
    };

    #[test]
    fn free_text_stays_on_one_line() {
        let event = Event::Message {
            conversation: Conversation::Inbox,
            seq: Seq(3),
            from: "alice".into(),
            display_name: "alice".into(),
            service: false,
            staff: false,
            timestamp_ms: 1_000,
            content: Content::text("two\nlines \\ and\u{1b}[2J"),
        };
        assert_eq!(plain(&event), "message seq=3 from=alice at=1000 text=two\\nlines \\\\ and\\u{1b}[2J");
        assert!(!super::super::pretty(&event).contains('\u{1b}'));
        let mut renamed = event.clone();
        if let Event::Message { display_name, .. } = &mut renamed {
            *display_name = "Alice L.".into();
        }
        assert!(plain(&renamed).starts_with("message seq=3 from=alice name=Alice\\u{20}L. at=1000 "));
    }

    #[test]
    fn documented_lines() {
        let sent = |to| Event::Sent { to, seq: Seq(1), duplicate: false, content: Content::text("hi") };
        assert_eq!(plain(&sent(Target::User("bob".into()))), "sent seq=1 to=bob");
        assert_eq!(plain(&sent(Target::Group(GroupId(7)))), "sent seq=1 group=7");
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
                acked: Seq::ZERO,
                last_seq: Seq(3),
                reconnected: false
            }),
            "logged-in alice acked=0 last=3"
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
    fn room_lines() {
        let rooms = vec![RoomInfo { name: "lobby".into(), members: 3 }, RoomInfo { name: "dev".into(), members: 1 }];
        assert_eq!(plain(&Event::Rooms { rooms, more: false }), "rooms list=lobby:3,dev:1 more=false");
        let delivered = |to| Event::Delivered { to, recipients: 2, content: Content::text("hi") };
        assert_eq!(plain(&delivered(Target::Room("lobby".into()))), "room-sent room=lobby recipients=2");
        assert_eq!(plain(&delivered(Target::Everyone)), "broadcast-sent recipients=2");
    }
}
