//! Which request is allowed in which connection state, and where it goes: answered by the
//! loop itself, refused, or handed to the worker that owns the user concerned.
//! protocol.md's "Connection states" table is this function.

use super::conn::Phase;
use super::SessionUser;
use crate::protocol::{ErrorCode, Request, Target, PROTOCOL_VERSION};

#[derive(Debug, PartialEq, Eq)]
pub enum Admission<'a> {
    /// Hello with the right version: answer with the server's limits.
    Hello,
    Pong,
    Refuse(ErrorCode, &'static str),
    /// Hand to the worker owning this username.
    Worker(&'a str),
}

pub fn admit<'a>(
    phase: Phase,
    user: Option<&'a SessionUser>,
    request: &'a Request,
) -> Admission<'a> {
    use Admission::*;
    match (phase, request) {
        (Phase::AwaitHello, Request::Hello { version, .. }) if *version == PROTOCOL_VERSION => {
            Hello
        }
        (Phase::AwaitHello, Request::Hello { .. }) => Refuse(
            ErrorCode::UnsupportedVersion,
            "this server speaks protocol version 1",
        ),
        (Phase::AwaitHello, _) => Refuse(ErrorCode::HelloRequired, "the first frame must be Hello"),
        (Phase::Ready, Request::Hello { .. }) => {
            Refuse(ErrorCode::BadRequest, "Hello was already accepted")
        }
        (Phase::Ready, Request::Ping) => Pong,
        (
            Phase::Ready,
            Request::Register { username, .. }
            | Request::Login { username, .. }
            | Request::Resume { username, .. },
        ) => match user {
            Some(_) => Refuse(ErrorCode::AlreadyLoggedIn, "log out first"),
            None => Worker(username),
        },
        (Phase::Ready, request) => match user {
            None => Refuse(ErrorCode::NotLoggedIn, "log in first"),
            // A message is handled by its recipient's worker; everything else concerns
            // the user's own state.
            Some(user) => match request {
                Request::Send {
                    to: Target::User(to),
                    ..
                } => Worker(to),
                _ => Worker(&user.name),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Content, Conversation};

    fn hello(version: u16) -> Request {
        Request::Hello {
            version,
            client: "t".into(),
        }
    }

    #[test]
    fn before_hello_only_hello() {
        assert_eq!(
            admit(Phase::AwaitHello, None, &hello(PROTOCOL_VERSION)),
            Admission::Hello
        );
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
    fn before_login_only_register_login_ping() {
        let login = Request::Login {
            username: "bob".into(),
            password: "x".into(),
        };
        assert_eq!(admit(Phase::Ready, None, &login), Admission::Worker("bob"));
        assert_eq!(admit(Phase::Ready, None, &Request::Ping), Admission::Pong);
        let ack = Request::Ack {
            conversation: Conversation::Inbox,
            up_to: 1,
        };
        assert!(matches!(
            admit(Phase::Ready, None, &ack),
            Admission::Refuse(ErrorCode::NotLoggedIn, _)
        ));
    }

    #[test]
    fn messages_go_to_the_recipient_and_the_rest_to_the_sender() {
        let alice = SessionUser {
            name: "alice".into(),
            uid: 1,
        };
        let send = Request::Send {
            to: Target::User("bob".into()),
            client_msg_id: 1,
            transient: false,
            content: Content::text("hi"),
        };
        assert_eq!(
            admit(Phase::Ready, Some(&alice), &send),
            Admission::Worker("bob")
        );
        assert_eq!(
            admit(Phase::Ready, Some(&alice), &Request::Logout),
            Admission::Worker("alice")
        );
        let login = Request::Login {
            username: "bob".into(),
            password: "x".into(),
        };
        assert!(matches!(
            admit(Phase::Ready, Some(&alice), &login),
            Admission::Refuse(ErrorCode::AlreadyLoggedIn, _)
        ));
    }
}
