//! The app boundary: names in a client's requests are qualified with its app as they are
//! read, and every name in a frame for a client loses its app as it is written. These two
//! functions are the only places that translate, and both match every variant, so a new
//! request or push cannot forget its names.

use super::name::{app_of, localize, qualify, DEFAULT_APP, SEPARATOR};
use crate::frame;
use crate::protocol::{Chat, GroupEvent, Message, Push, Reply, Request, ServerFrame, ServiceTarget, Target};

/// Qualifies every user, service and room name in `request` with `app`. Display names,
/// group names, passwords and contents are not names of anything and stay as sent.
pub fn qualify_request(request: &mut Request, app: &str) {
    let q = |name: &mut String| *name = qualify(app, name);
    match request {
        Request::Register { username, .. }
        | Request::Login { username, .. }
        | Request::Resume { username, .. }
        | Request::LoginDevice { username, .. }
        | Request::ResumeDevice { username, .. }
        | Request::AddMember { username, .. }
        | Request::RemoveMember { username, .. }
        | Request::SetRole { username, .. }
        | Request::SubscribePresence { username }
        | Request::UnsubscribePresence { username }
        | Request::Disconnect { username, .. } => q(username),
        // The push gateway is the operator's (a service of the app `default`) and serves
        // every app: it names other apps' users as their events did, with their app.
        Request::DropPushToken { username, .. } if username.contains(SEPARATOR) => {}
        Request::DropPushToken { username, .. } => q(username),
        Request::ServiceLogin { name, .. } => q(name),
        Request::Send { to: Target::User(name) | Target::Room(name) | Target::Shop(name), .. } => q(name),
        Request::Send { to: Target::Group(_) | Target::Everyone | Target::Support(_), .. } => {}
        // An empty shop lists the caller's own conversations, in whatever shop of its app.
        Request::ListSupport { shop, .. } if shop.is_empty() => {}
        Request::ListSupport { shop, .. } => q(shop),
        Request::HandOverSupport { to, .. } => q(to),
        Request::AddStaff { shop, username } | Request::RemoveStaff { shop, username } => {
            q(shop);
            q(username);
        }
        // "After this name": the app's own prefix when empty, which sorts before its names.
        Request::ListOnline { after, .. } | Request::ListRooms { after, .. } => q(after),
        Request::JoinRoom { room } | Request::LeaveRoom { room } | Request::RoomMembers { room } => q(room),
        Request::ServiceSend { to, .. } => match to {
            ServiceTarget::Users(names) => names.iter_mut().for_each(q),
            ServiceTarget::Group { except, .. } => except.iter_mut().for_each(q),
            ServiceTarget::Online => {}
        },
        Request::QueryOnline { users } => users.iter_mut().for_each(q),
        Request::Mute { chat, .. }
        | Request::Unmute { chat }
        | Request::History { chat, .. }
        | Request::DeleteMessage { chat, .. }
        | Request::ClearHistory { chat, .. }
        | Request::MarkRead { chat, .. } => qualify_chat(chat, app),
        Request::Hello { .. }
        | Request::HelloApp { .. }
        | Request::Ping
        | Request::Ack { .. }
        | Request::Resync { .. }
        | Request::Rename { .. }
        | Request::Logout
        | Request::CreateGroup { .. }
        | Request::RenameGroup { .. }
        | Request::JoinGroup { .. }
        | Request::LeaveGroup { .. }
        | Request::DeleteGroup { .. }
        | Request::ListGroups
        | Request::GroupMembers { .. }
        | Request::WatchConnections
        | Request::Stats
        | Request::ListOpenGroups { .. }
        | Request::SetPushDevice { .. }
        | Request::RemovePushDevice { .. }
        | Request::PushSettings
        | Request::SubscribePush
        | Request::AckPush { .. }
        | Request::ClaimSupport { .. }
        | Request::ReleaseSupport { .. }
        | Request::LogoutEverywhere
        | Request::ListDevices
        | Request::RemoveDevice { .. }
        | Request::ReadState
        | Request::SetReadReceipts { .. }
        | Request::ReadPositions { .. } => {}
    }
}

fn qualify_chat(chat: &mut Chat, app: &str) {
    match chat {
        Chat::User(name) | Chat::Service(name) => *name = qualify(app, name),
        Chat::Group(_) | Chat::Support(_) => {}
    }
}

/// `frame` encoded for a client, its names localized (for frames encoded once and shared by
/// many connections, all of one app).
pub fn encode(mut frame: ServerFrame) -> Vec<u8> {
    localize_frame(&mut frame);
    frame::encode(&frame)
}

/// Drops the app from every user, service and room name in `frame`: every name a client is
/// sent is of its own app, so the app says nothing to it.
pub fn localize_frame(frame: &mut ServerFrame) {
    match frame {
        ServerFrame::Reply { reply, .. } => localize_reply(reply),
        ServerFrame::Push(push) => localize_push(push),
        ServerFrame::Error { .. } => {}
    }
}

fn localize_reply(reply: &mut Reply) {
    match reply {
        Reply::Online { users, .. } => users.iter_mut().for_each(|u| localize(&mut u.username)),
        Reply::Members { members, .. } => members.iter_mut().for_each(|m| localize(&mut m.username)),
        Reply::Rooms { rooms, .. } => rooms.iter_mut().for_each(|r| localize(&mut r.name)),
        Reply::RoomMembers { room, members } => {
            localize(room);
            members.iter_mut().for_each(|u| localize(&mut u.username));
        }
        Reply::Subscribed { username, .. } => localize(username),
        Reply::ServiceLoggedIn { name } => localize(name),
        Reply::ServiceSent { unknown, .. } => unknown.iter_mut().for_each(localize),
        Reply::PushSettings { mutes, .. } => mutes.iter_mut().for_each(|m| localize_chat(&mut m.chat)),
        Reply::SupportList { conversations, .. } => {
            for conversation in conversations {
                localize(&mut conversation.shop);
                localize(&mut conversation.customer);
                conversation.claimed_by.iter_mut().for_each(localize);
            }
        }
        Reply::DeviceLoggedIn { chats, .. } | Reply::ReadState { chats, .. } => {
            chats.iter_mut().for_each(|c| localize_chat(&mut c.chat))
        }
        Reply::HistoryPage { chat, messages, .. } => {
            localize_chat(chat);
            messages.iter_mut().for_each(localize_message);
        }
        Reply::ReadPositions { readers, .. } => readers.iter_mut().for_each(|r| localize(&mut r.username)),
        Reply::Hello { .. }
        | Reply::Redirect { .. }
        | Reply::Devices { .. }
        | Reply::Pong
        | Reply::Registered { .. }
        | Reply::LoggedIn { .. }
        | Reply::Sent { .. }
        | Reply::TransientSent { .. }
        | Reply::Acked { .. }
        | Reply::Resynced { .. }
        | Reply::Renamed { .. }
        | Reply::LoggedOut
        | Reply::Done
        | Reply::GroupCreated { .. }
        | Reply::Groups { .. }
        | Reply::Delivered { .. }
        | Reply::OnlineStatus { .. }
        | Reply::Disconnected { .. }
        | Reply::Stats(_)
        | Reply::OpenGroups { .. }
        | Reply::PushSubscribed { .. }
        | Reply::PushAcked { .. }
        | Reply::AppStats(_) => {}
    }
}

fn localize_push(push: &mut Push) {
    match push {
        Push::Message(message) => localize_message(message),
        Push::SentCopy { to, message } => {
            localize(to);
            localize_message(message);
        }
        Push::ReadMark { chat, .. } | Push::HistoryCleared { chat, .. } => localize_chat(chat),
        Push::ReadReceipt { reader, .. } => localize(reader),
        Push::DeviceConnection { username, .. } => localize(username),
        Push::Transient { from, .. } | Push::Broadcast { from, .. } => localize(from),
        Push::RoomMessage { room, from, .. } => {
            localize(room);
            localize(from);
        }
        Push::Presence { username, .. } | Push::Connection { username, .. } => localize(username),
        Push::ServiceNotice { service, .. } => localize(service),
        // Only the operator's gateway (in the app `default`) gets these, for every app:
        // names of the app `default` go bare, others keep their app (`acme/bob`).
        Push::PushEvent(event) => {
            for name in [&mut event.recipient, &mut event.sender] {
                localize_default(name);
            }
            if let Chat::User(name) | Chat::Service(name) = &mut event.chat {
                localize_default(name);
            }
        }
        Push::SupportClaimed { shop, customer, agent, .. } => {
            localize(shop);
            localize(customer);
            agent.iter_mut().for_each(localize);
        }
        Push::Kicked { .. } | Push::ShuttingDown => {}
    }
}

fn localize_message(message: &mut Message) {
    localize(&mut message.from);
    if let Some(event) = &mut message.event {
        localize_event(event);
    }
}

fn localize_event(event: &mut GroupEvent) {
    match event {
        GroupEvent::Created { by }
        | GroupEvent::Renamed { by, .. }
        | GroupEvent::Deleted { by }
        | GroupEvent::MessageDeleted { by, .. } => localize(by),
        GroupEvent::Joined { username } | GroupEvent::Left { username } => localize(username),
        GroupEvent::Added { username, by }
        | GroupEvent::Removed { username, by }
        | GroupEvent::RoleChanged { username, by, .. } => {
            localize(username);
            localize(by);
        }
    }
}

fn localize_default(name: &mut String) {
    if app_of(name) == DEFAULT_APP {
        localize(name);
    }
}

fn localize_chat(chat: &mut Chat) {
    match chat {
        Chat::User(name) | Chat::Service(name) => localize(name),
        Chat::Group(_) | Chat::Support(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMsgId, Content, Conversation, Message, MessageId, OnlineUser, SenderKind, Seq};

    #[test]
    fn a_request_names_only_its_own_app() {
        let mut send = Request::Send {
            to: Target::User("bob".into()),
            client_msg_id: ClientMsgId(1),
            transient: false,
            content: Content::text("hi"),
        };
        qualify_request(&mut send, "acme");
        assert!(matches!(&send, Request::Send { to: Target::User(name), .. } if name == "acme/bob"));
        let mut rename = Request::Rename { display_name: "AC/DC fan".into() };
        qualify_request(&mut rename, "acme");
        assert_eq!(rename, Request::Rename { display_name: "AC/DC fan".into() }, "display names are not names");
        let mut list = Request::ListOnline { after: String::new(), limit: 10 };
        qualify_request(&mut list, "acme");
        assert_eq!(list, Request::ListOnline { after: "acme/".into(), limit: 10 });
    }

    #[test]
    fn support_names_are_qualified_in_and_localized_out() {
        let mut to_shop = Request::Send {
            to: Target::Shop("tea".into()),
            client_msg_id: ClientMsgId(1),
            transient: false,
            content: Content::text("hi"),
        };
        qualify_request(&mut to_shop, "acme");
        assert!(matches!(&to_shop, Request::Send { to: Target::Shop(name), .. } if name == "acme/tea"));
        let mut add = Request::AddStaff { shop: "tea".into(), username: "bob".into() };
        qualify_request(&mut add, "acme");
        assert_eq!(add, Request::AddStaff { shop: "acme/tea".into(), username: "acme/bob".into() });
        let mut own = Request::ListSupport { shop: String::new(), after: crate::protocol::SupportId(0), limit: 0 };
        qualify_request(&mut own, "acme");
        assert!(matches!(&own, Request::ListSupport { shop, .. } if shop.is_empty()), "the caller's own list");
        let mut claimed = ServerFrame::Push(Push::SupportClaimed {
            conversation: crate::protocol::SupportId(3),
            shop: "acme/tea".into(),
            customer: "acme/alice".into(),
            agent: Some("acme/bob".into()),
        });
        localize_frame(&mut claimed);
        let ServerFrame::Push(Push::SupportClaimed { shop, customer, agent, .. }) = claimed else { unreachable!() };
        assert_eq!((shop.as_str(), customer.as_str(), agent.as_deref()), ("tea", "alice", Some("bob")));
    }

    #[test]
    fn a_frame_leaves_with_local_names_and_display_names_untouched() {
        let mut push = ServerFrame::Push(Push::Message(Message {
            conversation: Conversation::Inbox,
            seq: Seq(1),
            prev_seq: Seq::ZERO,
            message_id: MessageId(1),
            from: "acme/alice".into(),
            sender: SenderKind::User,
            timestamp_ms: 1,
            content: Content::text("hi"),
            event: Some(GroupEvent::Added { username: "acme/bob".into(), by: "acme/alice".into() }),
            display_name: "AC/DC fan".into(),
        }));
        localize_frame(&mut push);
        let ServerFrame::Push(Push::Message(message)) = push else { unreachable!() };
        assert_eq!(message.from, "alice");
        assert_eq!(message.event, Some(GroupEvent::Added { username: "bob".into(), by: "alice".into() }));
        assert_eq!(message.display_name, "AC/DC fan");

        let mut online = ServerFrame::Reply {
            request_id: 1,
            reply: Reply::Online {
                users: vec![OnlineUser { username: "acme/carol".into(), display_name: "a/b".into() }],
                more: false,
            },
        };
        localize_frame(&mut online);
        let ServerFrame::Reply { reply: Reply::Online { users, .. }, .. } = online else { unreachable!() };
        assert_eq!((users[0].username.as_str(), users[0].display_name.as_str()), ("carol", "a/b"));
    }
}
