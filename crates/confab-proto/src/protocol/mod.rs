//! The wire protocol: what clients send, what the server answers and pushes, and the error
//! codes. protocol.md documents every type here field by field; its hex vectors are
//! checked against these definitions by this crate's `tests/vectors.rs`.
//!
//! Compatibility rule: enum variants and struct fields are only ever *appended*. postcard
//! encodes a variant by its index, so reordering would silently change the wire.

// The ids are part of the contract: one import gives a client the types and their ids.
pub use crate::ids::{ClientMsgId, GroupId, MessageId, Seq, SupportId, UserId};

/// The protocol version this server speaks. A Hello with another version is refused with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 2;

/// Request id of error frames that answer no particular request (a bad frame, a timeout).
pub const NO_REQUEST: u32 = 0;

mod content;
mod error;
mod names;
mod push;
mod reply;
mod request;

pub use content::{Content, GroupEvent, Media, MediaKind, Message, Role, SenderKind};
pub use error::{retry_ms, ErrorCode};
pub use names::{valid_app_name, valid_password, valid_room_name, valid_shop_name, valid_username, DEFAULT_APP};
pub use push::{Push, PushEvent, PushTarget};
pub use reply::{
    AppFigures, ChatState, DeviceInfo, GroupInfo, Limits, MemberInfo, MuteInfo, OnlineUser, OpenGroup, PushDeviceInfo,
    ReadPosition, Reply, RoomInfo, ServerFrame, ServerStats, SupportInfo,
};
pub use request::{Chat, ClientFrame, Conversation, PushPlatform, Request, ServiceTarget, Target};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for ok in ["bob", "alice_1", "a.b-c", "0day", &"x".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "ab", "Bob", "_bob", "bo b", "bøb", &"x".repeat(33), "a\u{0}b"] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }

    #[test]
    fn retry_times_round_up_to_whole_milliseconds_and_never_read_as_none() {
        use std::time::Duration;
        assert_eq!(retry_ms(Duration::ZERO), 1, "0 means no retry time, so a wait is at least 1 ms");
        assert_eq!(retry_ms(Duration::from_micros(1)), 1);
        assert_eq!(retry_ms(Duration::from_micros(1001)), 2);
        assert_eq!(retry_ms(Duration::from_secs(3)), 3000);
        assert_eq!(retry_ms(Duration::from_secs(u64::MAX)), u32::MAX);
        assert_eq!(
            ServerFrame::error(1, ErrorCode::BadRequest, "x"),
            ServerFrame::Error { request_id: 1, code: ErrorCode::BadRequest, message: "x".into(), retry_after_ms: 0 }
        );
    }

    #[test]
    fn debug_output_never_shows_passwords_or_tokens() {
        let password = "correct horse battery";
        let token = b"resume-token-bytes".to_vec();
        let service_token = "0123456789abcdef";
        let push_token = "apns-device-token-40c1";
        let requests = [
            Request::SetPushDevice {
                device: "alice-phone".into(),
                platform: PushPlatform::Apns,
                token: push_token.into(),
                previews: true,
            },
            Request::DropPushToken { username: "alice".into(), token: push_token.into() },
            Request::Register { username: "alice".into(), password: password.into() },
            Request::Login { username: "alice".into(), password: password.into() },
            Request::Resume { username: "alice".into(), token: token.clone() },
            Request::ServiceLogin { name: "shop".into(), token: service_token.into() },
        ];
        // Tokens are bytes: their Debug is a list of numbers, so look for that list too.
        let token_as_list = format!("{token:?}");
        let token_as_list = &token_as_list[1..token_as_list.len() - 1];
        for request in requests {
            // Inside a frame, and pretty-printed, as a log line would show it.
            let frame = ClientFrame { request_id: 7, request };
            for shown in [format!("{frame:?}"), format!("{frame:#?}")] {
                assert!(shown.contains("<redacted>"), "{shown}");
                for secret in [password, service_token, token_as_list, push_token] {
                    assert!(!shown.contains(secret), "{secret} shown in {shown}");
                }
                assert!(shown.contains("alice") || shown.contains("shop"), "the name is still shown: {shown}");
            }
        }
        let target = PushTarget {
            device: "alice-phone".into(),
            platform: PushPlatform::Fcm,
            token: push_token.into(),
            preview: Some("hi".into()),
        };
        for shown in [format!("{target:?}"), format!("{target:#?}")] {
            assert!(shown.contains("token: <redacted>") && !shown.contains(push_token), "{shown}");
            assert!(shown.contains("alice-phone"), "{shown}");
        }
        let logged_in = ServerFrame::Reply {
            request_id: 3,
            reply: Reply::LoggedIn {
                user_id: UserId(1),
                display_name: "Alice".into(),
                acked: Seq::ZERO,
                last_seq: Seq::ZERO,
                resume_token: token.clone(),
                admin: false,
            },
        };
        for shown in [format!("{logged_in:?}"), format!("{logged_in:#?}")] {
            assert!(shown.contains("resume_token: <redacted>"), "{shown}");
            assert!(!shown.contains(token_as_list), "{shown}");
            assert!(shown.contains("display_name: \"Alice\""), "{shown}");
        }
    }

    #[test]
    fn debug_of_other_variants_is_as_derived() {
        // derive_more's Debug stands in for std's only to redact; everything else reads the same.
        let request = Request::Hello { version: 2, client: "demo/1.0".into() };
        assert_eq!(format!("{request:?}"), r#"Hello { version: 2, client: "demo/1.0" }"#);
        assert_eq!(format!("{:?}", Request::Ping), "Ping");
        assert_eq!(format!("{:?}", Reply::Registered { user_id: UserId(1) }), "Registered { user_id: UserId(1) }");
        assert!(
            format!("{:?}", Reply::Stats(ServerStats::default())).starts_with(r#"Stats(ServerStats { version: "","#)
        );
        assert_eq!(
            format!("{:?}", Request::Login { username: "alice".into(), password: "secret!!".into() }),
            r#"Login { username: "alice", password: <redacted> }"#
        );
    }

    #[test]
    fn error_codes_are_stable() {
        // protocol.md's error table lists these numbers; changing them breaks every client.
        assert_eq!(postcard::to_allocvec(&ErrorCode::UnsupportedVersion).unwrap(), [0]);
        assert_eq!(postcard::to_allocvec(&ErrorCode::Internal).unwrap(), [13]);
        assert_eq!(postcard::to_allocvec(&ErrorCode::ServerFull).unwrap(), [17]);
    }
}
