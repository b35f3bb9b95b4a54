//! Which request is allowed in which connection state, and where it goes: answered by the
//! loop itself, refused, or handed to the owner of the state concerned.
//! protocol.md's "Connection states" table is this function.

use super::conn::Phase;
use crate::apps::DEFAULT_APP;
use crate::protocol::{ErrorCode, Request, Target, PROTOCOL_VERSION};
use crate::route::{Owner, SessionUser};

#[derive(Debug, PartialEq, Eq)]
pub enum Admission<'a> {
    /// Hello with the right version: answer with the server's limits, in this app (`Hello`
    /// is the app `default`; whether the server hosts it is the loop's to check).
    Hello(&'a str),
    Pong,
    Refuse(ErrorCode, &'static str),
    /// Hand to the owner of this state, wherever it lives.
    Forward(Owner<'a>),
}

pub fn admit<'a>(phase: Phase, user: Option<&'a SessionUser>, request: &'a Request) -> Admission<'a> {
    use Admission::*;
    match (phase, request) {
        (Phase::AwaitHello, Request::Hello { version, .. }) if *version == PROTOCOL_VERSION => Hello(DEFAULT_APP),
        (Phase::AwaitHello, Request::HelloApp { version, app, .. }) if *version == PROTOCOL_VERSION => Hello(app),
        (Phase::AwaitHello, Request::Hello { .. } | Request::HelloApp { .. }) => {
            Refuse(ErrorCode::UnsupportedVersion, "this server speaks protocol version 2")
        }
        (Phase::AwaitHello, _) => Refuse(ErrorCode::HelloRequired, "the first frame must be Hello"),
        (Phase::Ready, Request::Hello { .. } | Request::HelloApp { .. }) => {
            Refuse(ErrorCode::BadRequest, "Hello was already accepted")
        }
        (Phase::Ready, Request::Ping) => Pong,
        (
            Phase::Ready,
            Request::Register { username, .. }
            | Request::Login { username, .. }
            | Request::Resume { username, .. }
            | Request::LoginDevice { username, .. }
            | Request::ResumeDevice { username, .. },
        ) => match user {
            Some(_) => Refuse(ErrorCode::AlreadyLoggedIn, "log out first"),
            None => Forward(Owner::User(username)),
        },
        (Phase::Ready, Request::ServiceLogin { name, .. }) => match user {
            Some(_) => Refuse(ErrorCode::AlreadyLoggedIn, "log out first"),
            None => Forward(Owner::Service(name)),
        },
        (Phase::Ready, request) => match user {
            None => Refuse(ErrorCode::NotLoggedIn, "log in first"),
            Some(user) if user.service => service_owner(request, user),
            Some(_) if service_only(request) => Refuse(ErrorCode::Forbidden, "for services only"),
            Some(user) => Forward(owner_of(request, user)),
        },
    }
}

fn service_only(request: &Request) -> bool {
    matches!(
        request,
        Request::ServiceSend { .. }
            | Request::QueryOnline { .. }
            | Request::Disconnect { .. }
            | Request::WatchConnections
            | Request::SubscribePush
            | Request::AckPush { .. }
            | Request::DropPushToken { .. }
            | Request::AddStaff { .. }
            | Request::RemoveStaff { .. }
    )
}

/// Services coordinate from their own worker; a disconnect goes to the user's.
fn service_owner<'a>(request: &'a Request, service: &'a SessionUser) -> Admission<'a> {
    match request {
        Request::Disconnect { username, .. } | Request::DropPushToken { username, .. } => {
            Admission::Forward(Owner::User(username))
        }
        Request::SubscribePush | Request::AckPush { .. } => Admission::Forward(Owner::PushQueue),
        Request::AddStaff { shop, .. } | Request::RemoveStaff { shop, .. } => Admission::Forward(Owner::Shop(shop)),
        Request::ServiceSend { .. }
        | Request::QueryOnline { .. }
        | Request::WatchConnections
        | Request::Stats
        | Request::Logout => Admission::Forward(Owner::Service(&service.name)),
        _ => Admission::Refuse(ErrorCode::Forbidden, "services may only use the service requests"),
    }
}

/// A message goes to its destination's worker; group and room requests to the group's or
/// room's; presence subscriptions to the watched user's; the rest concern the caller.
fn owner_of<'a>(request: &'a Request, user: &'a SessionUser) -> Owner<'a> {
    if let Some(id) = request.group() {
        return Owner::Group(id);
    }
    match request {
        Request::Send { to: Target::User(to), .. } => Owner::User(to),
        Request::Send { to: Target::Room(room), .. }
        | Request::JoinRoom { room }
        | Request::LeaveRoom { room }
        | Request::RoomMembers { room } => Owner::Room(room),
        Request::SubscribePresence { username } | Request::UnsubscribePresence { username } => Owner::User(username),
        Request::Send { to: Target::Shop(shop), .. } => Owner::Shop(shop),
        Request::ListSupport { shop, .. } if !shop.is_empty() => Owner::Shop(shop),
        _ => request.support().map_or(Owner::User(&user.name), Owner::Support),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Chat, ClientMsgId, Content, Conversation, GroupId, MessageId, Seq, SupportId, UserId};

    fn hello(version: u16) -> Request {
        Request::Hello { version, client: "t".into() }
    }

    #[test]
    fn before_hello_only_hello() {
        assert_eq!(admit(Phase::AwaitHello, None, &hello(PROTOCOL_VERSION)), Admission::Hello(DEFAULT_APP));
        assert!(matches!(
            admit(Phase::AwaitHello, None, &hello(99)),
            Admission::Refuse(ErrorCode::UnsupportedVersion, _)
        ));
        assert!(matches!(
            admit(Phase::AwaitHello, None, &Request::Ping),
            Admission::Refuse(ErrorCode::HelloRequired, _)
        ));
    }

    #[test]
    fn before_login_only_register_login_resume_ping() {
        let login = Request::Login { username: "bob".into(), password: "x".into() };
        assert_eq!(admit(Phase::Ready, None, &login), Admission::Forward(Owner::User("bob")));
        assert_eq!(admit(Phase::Ready, None, &Request::Ping), Admission::Pong);
        let ack = Request::Ack { conversation: Conversation::Inbox, up_to: Seq(1) };
        assert!(matches!(admit(Phase::Ready, None, &ack), Admission::Refuse(ErrorCode::NotLoggedIn, _)));
        assert!(matches!(
            admit(Phase::Ready, None, &Request::JoinRoom { room: "x".into() }),
            Admission::Refuse(ErrorCode::NotLoggedIn, _)
        ));
    }

    #[test]
    fn requests_go_to_the_owner_of_what_they_touch() {
        let alice =
            SessionUser { name: "alice".into(), uid: UserId(1), admin: false, service: false, device: "".into() };
        let send =
            |to| Request::Send { to, client_msg_id: ClientMsgId(1), transient: false, content: Content::text("hi") };
        let at = |r: &Request| match admit(Phase::Ready, Some(&alice), r) {
            Admission::Forward(owner) => format!("{owner:?}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(at(&send(Target::User("bob".into()))), "User(\"bob\")");
        assert_eq!(at(&send(Target::Group(GroupId(9)))), "Group(GroupId(9))");
        assert_eq!(at(&send(Target::Room("lobby".into()))), "Room(\"lobby\")");
        assert_eq!(at(&send(Target::Everyone)), "User(\"alice\")");
        let ack = |conversation| Request::Ack { conversation, up_to: Seq(1) };
        assert_eq!(at(&ack(Conversation::Group(GroupId(9)))), "Group(GroupId(9))");
        assert_eq!(at(&ack(Conversation::Inbox)), "User(\"alice\")");
        assert_eq!(at(&Request::SubscribePresence { username: "bob".into() }), "User(\"bob\")");
        assert_eq!(at(&send(Target::Shop("acme".into()))), "Shop(\"acme\")");
        assert_eq!(at(&send(Target::Support(SupportId(30)))), "Support(SupportId(30))");
        assert_eq!(at(&ack(Conversation::Support(SupportId(30)))), "Support(SupportId(30))");
        assert_eq!(at(&Request::ClaimSupport { conversation: SupportId(30) }), "Support(SupportId(30))");
        let list = |shop: &str| Request::ListSupport { shop: shop.into(), after: SupportId(0), limit: 0 };
        assert_eq!(at(&list("acme")), "Shop(\"acme\")");
        assert_eq!(at(&list("")), "User(\"alice\")", "a customer's own conversations");
        let add = Request::AddStaff { shop: "acme".into(), username: "bob".into() };
        assert!(matches!(admit(Phase::Ready, Some(&alice), &add), Admission::Refuse(ErrorCode::Forbidden, _)));
        let service =
            SessionUser { name: "shopfront".into(), uid: UserId(2), admin: false, service: true, device: "".into() };
        assert_eq!(admit(Phase::Ready, Some(&service), &add), Admission::Forward(Owner::Shop("acme")));
        let history = |chat| Request::History { chat, before: Seq(0), limit: 0 };
        assert_eq!(at(&history(Chat::Support(SupportId(30)))), "Support(SupportId(30))");
        assert_eq!(at(&history(Chat::Group(GroupId(9)))), "Group(GroupId(9))");
        assert_eq!(at(&history(Chat::User("bob".into()))), "User(\"alice\")", "the caller's own inbox");
        let delete = Request::DeleteMessage { chat: Chat::User("bob".into()), message_id: MessageId(5) };
        assert_eq!(at(&delete), "User(\"alice\")", "the caller's worker looks first, then hands it on");
        assert_eq!(at(&Request::ListGroups), "User(\"alice\")");
        assert_eq!(at(&Request::Logout), "User(\"alice\")");
        let login = Request::Login { username: "bob".into(), password: "x".into() };
        assert!(matches!(admit(Phase::Ready, Some(&alice), &login), Admission::Refuse(ErrorCode::AlreadyLoggedIn, _)));
    }
}
