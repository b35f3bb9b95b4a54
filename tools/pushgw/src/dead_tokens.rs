//! The webhook's answer to one event: which of its devices' tokens the push service
//! rejected as no longer valid (APNs "Unregistered", FCM "UNREGISTERED"), so the gateway
//! can ask the server to forget them (`DropPushToken`, protocol.md "Push notifications").
//!
//! The contract (the crate doc's "The webhook's answer"): a 2xx answer's body MAY be a JSON
//! object with `"invalid_tokens": ["token", ...]`. Anything else (no body, not JSON, not an
//! object, no such field, a field that is not a list of strings) says nothing, and the
//! event is delivered all the same: the status alone decides that.
//!
//! Only the tokens of the event's own devices are taken, and always for the event's
//! recipient: a webhook (buggy, or answering for another event) must not make the gateway
//! drop tokens of other users, and the server forgets a token of the named user only.

use confab_proto::protocol::PushEvent;
use log::warn;
use serde_json::{Map, Value};
use std::fmt;

/// The field of the answer that lists them.
const FIELD: &str = "invalid_tokens";

/// Tokens of one user's devices to drop; never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct DeadTokens {
    /// The event's recipient, whatever the webhook said.
    pub username: String,
    /// Each once, in the order of the event's devices.
    pub tokens: Vec<String>,
}

impl DeadTokens {
    /// The tokens of `event`'s devices that the webhook's 2xx `answer` lists as invalid,
    /// if any. A malformed list is ignored with a warning (the webhook misbehaves; the
    /// event is delivered all the same); any other body silently.
    pub fn from_answer(answer: &[u8], event: &PushEvent) -> Option<DeadTokens> {
        // An object first: serde would read a struct from a JSON array too.
        let mut object: Map<String, Value> = serde_json::from_slice(answer).ok()?;
        let listed: Vec<String> = match serde_json::from_value(object.remove(FIELD)?) {
            Ok(listed) => listed,
            Err(e) => {
                warn!("event {}: the webhook's {FIELD} is not a list of strings ({e}); ignored", event.seq);
                return None;
            }
        };
        let mut tokens: Vec<String> = Vec::new();
        // The event's devices, not the webhook's list, bound what is taken (at most the
        // server's 10 devices a user), however long the list.
        for device in &event.devices {
            if listed.contains(&device.token) && !tokens.contains(&device.token) {
                tokens.push(device.token.clone());
            }
        }
        let foreign = listed.iter().filter(|token| !event.devices.iter().any(|d| &d.token == *token)).count();
        if foreign > 0 {
            // A webhook answering for another event, or confused: worth a look.
            warn!(
                "event {}: {foreign} of the webhook's {FIELD} are not this event's devices' tokens; ignored",
                event.seq
            );
        }
        (!tokens.is_empty()).then(|| DeadTokens { username: event.recipient.clone(), tokens })
    }
}

/// Tokens are secrets of the user's devices: never in a log, so not in Debug either.
impl fmt::Debug for DeadTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadTokens").field("username", &self.username).field("tokens", &self.tokens.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::protocol::{Chat, MediaKind, MessageId, PushPlatform, PushTarget, SenderKind};

    /// An event for bob's phone and tablet, and a laptop sharing the phone's token.
    fn event() -> PushEvent {
        let device = |device: &str, token: &str| PushTarget {
            device: device.into(),
            platform: PushPlatform::Fcm,
            token: token.into(),
            preview: None,
        };
        PushEvent {
            seq: 7,
            recipient: "bob".into(),
            devices: vec![device("phone", "tok-phone"), device("tablet", "tok-tablet"), device("laptop", "tok-phone")],
            chat: Chat::User("alice".into()),
            chat_name: "Alice".into(),
            sender: "alice".into(),
            sender_name: "Alice".into(),
            sender_kind: SenderKind::User,
            message_id: MessageId(1),
            kind: MediaKind::Text,
            count: 1,
            unread: 1,
            timestamp_ms: 1,
        }
    }

    fn dead(answer: &str) -> Option<DeadTokens> {
        DeadTokens::from_answer(answer.as_bytes(), &event())
    }

    fn bobs(tokens: &[&str]) -> Option<DeadTokens> {
        Some(DeadTokens { username: "bob".into(), tokens: tokens.iter().map(|t| t.to_string()).collect() })
    }

    #[test]
    fn the_listed_tokens_of_the_events_devices_are_taken_for_its_recipient() {
        assert_eq!(dead(r#"{"invalid_tokens":["tok-tablet"]}"#), bobs(&["tok-tablet"]));
        // In the order of the devices, each once though two devices share it or the
        // webhook repeats it; other fields do not matter.
        assert_eq!(
            dead(r#"{"ok":true,"invalid_tokens":["tok-tablet","tok-phone","tok-tablet"],"sent":1}"#),
            bobs(&["tok-phone", "tok-tablet"])
        );
    }

    #[test]
    fn tokens_not_of_the_events_devices_are_ignored() {
        let answer = r#"{"invalid_tokens":["tok-of-carol","tok-tablet","TOK-PHONE","tok-phone "]}"#;
        assert_eq!(dead(answer), bobs(&["tok-tablet"]), "exact tokens only");
        assert_eq!(dead(r#"{"invalid_tokens":["tok-of-carol"]}"#), None);
        assert_eq!(dead(r#"{"invalid_tokens":[]}"#), None);
        // Not the event's recipient: the webhook cannot name the user.
        let answer = r#"{"username":"carol","recipient":"carol","invalid_tokens":["tok-phone"]}"#;
        assert_eq!(dead(answer), bobs(&["tok-phone"]));
    }

    #[test]
    fn any_other_body_says_nothing() {
        let junk = [
            "",
            "ok",
            "   ",
            "null",
            "true",
            "42",
            r#""tok-phone""#,
            r#"["tok-phone"]"#,
            r#"[["tok-phone"]]"#,
            r#"{}"#,
            r#"{"status":"sent"}"#,
            r#"{"invalid_tokens":null}"#,
            r#"{"invalid_tokens":"tok-phone"}"#,
            r#"{"invalid_tokens":{"tok-phone":true}}"#,
            r#"{"invalid_tokens":["tok-phone",7]}"#,
            r#"{"invalid_tokens":["tok-phone"]"#,
            r#"{"invalid_tokens":["tok-phone"]} trailing"#,
            r#"<html><body>{"invalid_tokens":["tok-phone"]}</body></html>"#,
        ];
        for answer in junk {
            assert_eq!(dead(answer), None, "{answer:?}");
        }
        assert_eq!(DeadTokens::from_answer(b"{\"invalid_tokens\":[\"tok-\xff\"]}", &event()), None, "not UTF-8");
    }

    #[test]
    fn an_event_without_devices_has_no_token_to_drop() {
        let mut event = event();
        event.devices.clear();
        assert_eq!(DeadTokens::from_answer(br#"{"invalid_tokens":["tok-phone"]}"#, &event), None);
    }

    #[test]
    fn debug_never_shows_the_tokens() {
        let shown = format!("{:?}", bobs(&["tok-phone", "tok-tablet"]).expect("some"));
        assert!(!shown.contains("tok-") && shown.contains("bob") && shown.contains('2'), "{shown}");
    }
}
