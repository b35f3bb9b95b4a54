//! The terminal UI's text: a clock, then something a person reads at a glance. Message
//! times are the server's; everything else is stamped now. Times are UTC (the standard
//! library has no time zones).

use super::{clean, clock, date_time, is_typing, now_ms, platform_word, pretty_content, role_word, who, Event};
use confab_proto::protocol::{Chat, Conversation, GroupEvent, MemberInfo, Request, Role, ServerStats, Target};
use confab_proto::stats::{AppLine, StatsLine};
use std::fmt::Write as _;

pub fn pretty(event: &Event) -> String {
    let now = clock(now_ms());
    match event {
        Event::Message { conversation, from, display_name, service, staff, timestamp_ms, content, .. } => {
            let place = match conversation {
                Conversation::Group(id) => format!(" [group {id}]"),
                Conversation::Support(id) => format!(" [support {id}]"),
                Conversation::Inbox => String::new(),
            };
            let badge = match (*service, *staff) {
                (true, _) => " [service]",
                (_, true) => " [staff]",
                _ => "",
            };
            format!("{}{place}{badge} {}: {}", clock(*timestamp_ms), who(from, display_name), pretty_content(content))
        }
        Event::GroupChange { group_id, timestamp_ms, event, .. } => {
            format!("{} [group {group_id}] * {}", clock(*timestamp_ms), group_event(event))
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
        Event::Redirected { node, addr } => {
            format!("{now} * redirected to node {node} at {} (your home node)", clean(addr))
        }
        Event::Registered { username } => {
            format!("{now} * registered {username}; now /login {username} PASSWORD")
        }
        Event::LoggedIn { username, display_name, device, acked, last_seq, reconnected } => {
            let waiting = last_seq.saturating_sub(*acked);
            let verb = if *reconnected { "back online as" } else { "logged in as" };
            format!("{now} * {verb} {username} ({}) on device {}; {waiting} new", clean(display_name), clean(device))
        }
        Event::SentCopy { to, timestamp_ms, content, .. } => {
            format!("{} you → {}: {}", clock(*timestamp_ms), clean(to), pretty_content(content))
        }
        Event::MessageDeleted { by, chat, preview, .. } => {
            let place = chat.as_ref().map_or(String::new(), |chat| format!(" [{}]", chat_name(chat)));
            let what = preview.as_ref().map_or("a message".to_string(), |p| format!("“{}”", clean(p)));
            format!("{now}{place} * {} deleted {what}", clean(by))
        }
        Event::Unread { chat, unread, .. } => format!("{now} * {} unread in {}", unread, chat_name(chat)),
        Event::ReadStateCount { read_receipts, .. } => {
            let receipts = if *read_receipts { "on" } else { "off" };
            format!("{now} * your chats (read receipts {receipts}):")
        }
        Event::History { chat, count: 0, .. } => format!("{now} * no history with {}", chat_name(chat)),
        Event::History { chat, count, more } => {
            let more = if *more { ", older ones kept" } else { "" };
            format!("{now} * history with {} ({count} messages{more}):", chat_name(chat))
        }
        Event::HistoryMessage { message, deleted } => {
            let place = match message.conversation {
                Conversation::Group(id) => format!(" [group {id}]"),
                Conversation::Support(id) => format!(" [support {id}]"),
                Conversation::Inbox => String::new(),
            };
            let at = clock(message.timestamp_ms);
            match (&message.event, deleted) {
                (_, true) => format!("{at}{place} {}: (deleted)", who(&message.from, &message.display_name)),
                (Some(event), false) => format!("{at}{place} * {}", group_event(event)),
                (None, false) => format!(
                    "{at}{place} {}: {}",
                    who(&message.from, &message.display_name),
                    pretty_content(&message.content)
                ),
            }
        }
        Event::Read { chat, unread, .. } => format!("{now} * marked {} read ({unread} unread)", chat_name(chat)),
        Event::ReadMark { chat, unread, .. } => {
            format!("{now} * {} read on another device ({unread} unread)", chat_name(chat))
        }
        Event::ReadReceipt { reader, own: Some(own), .. } => {
            format!("{now} * {} read “{}”", clean(reader), clean(&own.preview))
        }
        Event::ReadReceipt { reader, up_to, own: None } => {
            format!("{now} * {} read your messages up to #{up_to}", clean(reader))
        }
        Event::HistoryCleared { chat, .. } => {
            format!("{now} * history with {} cleared on another device", chat_name(chat))
        }
        Event::DeviceCount { count } => format!("{now} * your devices ({count}):"),
        Event::Device(d) => {
            let state =
                if d.online { "online".to_string() } else { format!("last seen {} UTC", date_time(d.last_seen_ms)) };
            let this = if d.this { " (this one)" } else { "" };
            format!("{now} *   {}{this}: {state}", clean(&d.device))
        }
        Event::ReadPositions { group_id, readers } => {
            let list: Vec<String> =
                readers.iter().map(|r| format!("{} up to #{}", clean(&r.username), r.read_up_to)).collect();
            format!("{now} * group {group_id} read: {}", list.join(", "))
        }
        Event::Sent { to: Target::Group(id), content, .. } => {
            format!("{now} [group {id}] you: {}", pretty_content(content))
        }
        Event::Sent { to, content, .. } => format!("{now} you → {}: {}", place(to), pretty_content(content)),
        Event::Delivered { to, recipients, content } => {
            format!("{now} you → {} ({recipients} got it): {}", place(to), pretty_content(content))
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
        Event::Acked { up_to, .. } => format!("{now} * read up to #{up_to}"),
        Event::Resynced { conversation: Conversation::Group(id), after, .. } => {
            format!("{now} * fetching group {id} after #{after}")
        }
        Event::Resynced { after, .. } => format!("{now} * fetching messages after #{after}"),
        Event::LoggedOut => format!("{now} * logged out"),
        Event::Peer { username } => format!("{now} * talking to {username}"),
        Event::GroupCreated { group_id, name, open } => {
            let how = if *open { "open: anyone may /group join it" } else { "closed: /group add members" };
            format!("{now} * created group {group_id} “{}” ({how}); /say {group_id} TEXT", clean(name))
        }
        Event::Done { request } => format!("{now} * {}", done(request)),
        Event::SupportCount { count: 0, .. } => format!("{now} * no support conversations"),
        Event::SupportCount { count, more } => {
            let more = if *more { " (more follow)" } else { "" };
            format!("{now} * support conversations ({count}){more}:")
        }
        Event::Support(c) => format!(
            "{now}   #{} {} with {}, {}, {} unread",
            c.conversation,
            clean(&c.shop),
            clean(&c.customer),
            c.claimed_by.as_deref().map_or("unclaimed".to_string(), |agent| format!("claimed by {}", clean(agent))),
            c.last_seq.saturating_sub(c.acked)
        ),
        Event::Claimed { conversation, customer, agent: Some(agent), .. } => {
            format!("{now} [support {conversation}] * {} answers {} now", clean(agent), clean(customer))
        }
        Event::Claimed { conversation, customer, agent: None, .. } => {
            format!("{now} [support {conversation}] * released: any staff member may answer {}", clean(customer))
        }
        Event::GroupCount { count: 0 } => format!("{now} * no groups yet (/group create NAME)"),
        Event::GroupCount { count } => format!("{now} * your groups ({count}):"),
        Event::Group(g) => {
            let open = if g.open { ", open" } else { "" };
            let unread = g.last_seq.saturating_sub(g.acked);
            format!(
                "  {:>6}  {} ({}, {} members, {unread} unread{open})",
                g.group_id,
                clean(&g.name),
                role_word(g.role),
                g.members
            )
        }
        Event::Members { group_id, members } => format!("{now} * group {group_id}: {}", member_list(members)),
        Event::Rooms { rooms, more } => {
            let list: Vec<String> = rooms.iter().map(|r| format!("#{} ({})", r.name, r.members)).collect();
            let mut line = if list.is_empty() {
                format!("{now} * no rooms")
            } else {
                format!("{now} * rooms: {}", list.join(", "))
            };
            if let (true, Some(last)) = (*more, rooms.last()) {
                let _ = write!(line, " … more: /rooms {}", last.name);
            }
            line
        }
        Event::RoomMembers { room, members } if members.is_empty() => format!("{now} * nobody in #{room}"),
        Event::RoomMembers { room, members } => {
            let list: Vec<String> = members.iter().map(|m| who(&m.username, &m.display_name)).collect();
            format!("{now} * in #{room}: {}", list.join(", "))
        }
        Event::OpenGroupCount { count: 0, .. } => format!("{now} * no open groups"),
        Event::OpenGroupCount { count, more, last } => {
            let next = if *more { format!(" … more: /groups open {last}") } else { String::new() };
            format!("{now} * {count} open groups (/group join ID){next}")
        }
        Event::OpenGroup(g) => format!("{now} *   {} {} ({} members)", g.group_id, clean(&g.name), g.members),
        Event::Watching { username, online } => {
            let state = if *online { "online" } else { "offline" };
            format!("{now} * watching {username} (now {state})")
        }
        Event::Stats(stats) => format!("{now} * {}", stats_text(stats)),
        Event::AppStats(app) => format!("{now} * {}", AppLine(app)),
        Event::PushSettings { devices: 0, mutes: 0 } => format!("{now} * no push devices, no muted chats"),
        Event::PushSettings { devices, mutes } => format!("{now} * push devices ({devices}), muted chats ({mutes}):"),
        Event::PushDevice(d) => {
            let previews = if d.previews { "previews on" } else { "previews off" };
            format!(
                "{now} *   device {} ({}, {previews}, since {} UTC)",
                clean(&d.device),
                platform_word(d.platform),
                date_time(d.registered_ms)
            )
        }
        Event::Muted { chat, until_ms: 0 } => format!("{now} * muted {} until unmuted", chat_name(chat)),
        Event::Muted { chat, until_ms } => {
            format!("{now} * muted {} until {} UTC", chat_name(chat), date_time(*until_ms))
        }
        Event::Help { usage, text } => format!("  {usage:<34} {text}"),
        Event::Error { code, message } => format!("{now} ! {code}: {}", clean(message)),
        Event::Kicked { reason } => format!("{now} ! kicked: {}", clean(reason)),
        Event::ShuttingDown => format!("{now} ! the server is shutting down"),
        Event::Disconnected { reason } => format!("{now} ! disconnected: {}", clean(reason)),
        Event::Reconnecting { attempt, delay } => {
            format!("{now} * reconnecting in {:.1} s (attempt {attempt})", delay.as_secs_f64())
        }
    }
}

fn place(to: &Target) -> String {
    match to {
        Target::User(name) => name.clone(),
        Target::Group(id) => format!("group {id}"),
        Target::Room(room) => format!("#{room}"),
        Target::Everyone => "everyone".into(),
        Target::Shop(shop) => format!("shop {}", clean(shop)),
        Target::Support(id) => format!("support {id}"),
    }
}

fn chat_name(chat: &Chat) -> String {
    match chat {
        Chat::User(name) => clean(name),
        Chat::Group(id) => format!("group {id}"),
        Chat::Service(name) => format!("service {}", clean(name)),
        Chat::Support(id) => format!("support {id}"),
    }
}

fn role_phrase(role: Role) -> &'static str {
    match role {
        Role::Owner => "the owner",
        Role::Admin => "an admin",
        Role::Member => "a plain member",
    }
}

fn group_event(event: &GroupEvent) -> String {
    match event {
        GroupEvent::Created { by } => format!("{by} created the group"),
        GroupEvent::Joined { username } => format!("{username} joined"),
        GroupEvent::Left { username } => format!("{username} left"),
        GroupEvent::Added { username, by } => format!("{by} added {username}"),
        GroupEvent::Removed { username, by } => format!("{by} removed {username}"),
        GroupEvent::Renamed { name, by } => format!("{by} renamed the group to “{}”", clean(name)),
        GroupEvent::RoleChanged { username, role, by } => format!("{by} made {username} {}", role_phrase(*role)),
        GroupEvent::Deleted { by } => format!("{by} deleted the group"),
        GroupEvent::MessageDeleted { message_id, by } => format!("{by} deleted message {message_id}"),
    }
}

fn done(request: &Request) -> String {
    match request {
        Request::RenameGroup { group_id, name } => format!("group {group_id} is now “{}”", clean(name)),
        Request::AddMember { group_id, username } => format!("added {username} to group {group_id}"),
        Request::RemoveMember { group_id, username } => format!("removed {username} from group {group_id}"),
        Request::SetRole { group_id, username, role } => {
            format!("{username} is now {} of group {group_id}", role_phrase(*role))
        }
        Request::JoinGroup { group_id } => format!("joined group {group_id}"),
        Request::LeaveGroup { group_id } => format!("left group {group_id}"),
        Request::DeleteGroup { group_id } => format!("deleted group {group_id}"),
        Request::JoinRoom { room } => format!("joined #{room}; /room {room} TEXT to talk"),
        Request::LeaveRoom { room } => format!("left #{room}"),
        Request::UnsubscribePresence { username } => format!("no longer watching {username}"),
        Request::Unmute { chat } => format!("unmuted {}: push notifications again", chat_name(chat)),
        Request::ClaimSupport { conversation } => format!("you answer support {conversation} now"),
        Request::HandOverSupport { conversation, to } => format!("handed support {conversation} to {}", clean(to)),
        Request::ReleaseSupport { conversation } => format!("released support {conversation} to every staff member"),
        Request::DeleteMessage { chat, message_id } => format!("deleted message {message_id} in {}", chat_name(chat)),
        Request::ClearHistory { chat, .. } => format!("cleared the history with {}", chat_name(chat)),
        Request::SetReadReceipts { enabled: true } => "others learn when you have read their messages".into(),
        Request::SetReadReceipts { enabled: false } => "read receipts off".into(),
        Request::RemoveDevice { device } => format!("removed device {}", clean(device)),
        _ => "done".into(),
    }
}

fn member_list(members: &[MemberInfo]) -> String {
    let list: Vec<String> = members
        .iter()
        .map(|m| {
            let online = if m.online { ", online" } else { "" };
            format!("{} ({}{online})", who(&m.username, &m.display_name), role_word(m.role))
        })
        .collect();
    list.join(", ")
}

fn stats_text(s: &ServerStats) -> String {
    format!("server {}, {}", clean(&s.version), StatsLine(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::protocol::{Content, GroupId, MessageId, Seq};

    #[test]
    fn group_events_read_as_sentences() {
        let event = Event::GroupChange {
            group_id: GroupId(3),
            seq: Seq(4),
            timestamp_ms: 0,
            event: GroupEvent::RoleChanged { username: "bob".into(), role: Role::Admin, by: "alice".into() },
        };
        assert_eq!(pretty(&event), "00:00:00 [group 3] * alice made bob an admin");
        let sent = Event::Sent {
            to: Target::Group(GroupId(3)),
            seq: Seq(5),
            message_id: MessageId(8),
            duplicate: false,
            content: Content::text("hi"),
        };
        assert!(pretty(&sent).ends_with(" [group 3] you: hi"), "{}", pretty(&sent));
    }

    #[test]
    fn mutes_end_at_a_date() {
        let muted = |chat, until_ms| pretty(&Event::Muted { chat, until_ms });
        assert!(muted(Chat::Group(GroupId(3)), 0).ends_with(" * muted group 3 until unmuted"));
        let until = muted(Chat::User("bob".into()), 1_700_000_000_000);
        assert!(until.ends_with(" * muted bob until 2023-11-14 22:13:20 UTC"), "{until}");
    }
}
