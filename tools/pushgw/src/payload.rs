//! The webhook's JSON body (the shape in the crate doc), built from a push event.
//!
//! A struct of our own rather than the protocol types with serde_json: the protocol's
//! serde derives describe postcard's wire (enum variants by index, `Chat::User("bob")` as a
//! newtype variant), and the webhook's contract must not change when a protocol type grows
//! a variant or a field. Here every name and spelling is chosen, and a new variant is a
//! compile error until it is given one.

use confab_proto::protocol::{Chat, MediaKind, PushEvent, PushPlatform, PushTarget, SenderKind};
use serde::Serialize;

/// One event as the webhook receives it. Fields serialise in this order.
#[derive(Serialize, Debug)]
pub struct Notification<'a> {
    pub seq: u64,
    pub recipient: &'a str,
    pub chat: ChatRef<'a>,
    pub chat_name: &'a str,
    pub sender: &'a str,
    pub sender_name: &'a str,
    pub sender_kind: SenderKindName,
    pub message_id: u64,
    pub kind: KindName,
    pub count: u32,
    pub unread: u64,
    pub timestamp_ms: u64,
    pub devices: Vec<Device<'a>>,
}

/// `{"type":"user","name":...}`, `{"type":"group","id":...}`, `{"type":"service","name":...}`,
/// `{"type":"support","id":...}`.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatRef<'a> {
    User {
        name: &'a str,
    },
    Group {
        id: u64,
    },
    Service {
        name: &'a str,
    },
    /// A customer-support conversation, by id.
    Support {
        id: u64,
    },
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SenderKindName {
    User,
    Service,
    Staff,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    Text,
    Image,
    Audio,
    File,
    Custom,
    System,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlatformName {
    Apns,
    Fcm,
    /// "webpush": lowercase of the variant name, said here so a rename cannot change it.
    #[serde(rename = "webpush")]
    WebPush,
    Other,
}

/// One device to wake, with its own preview (`null` when it has none).
#[derive(Serialize, Debug)]
pub struct Device<'a> {
    pub device: &'a str,
    pub platform: PlatformName,
    pub token: &'a str,
    pub preview: Option<&'a str>,
}

impl<'a> Notification<'a> {
    pub fn of(event: &'a PushEvent) -> Self {
        Notification {
            seq: event.seq,
            recipient: &event.recipient,
            chat: ChatRef::of(&event.chat),
            chat_name: &event.chat_name,
            sender: &event.sender,
            sender_name: &event.sender_name,
            sender_kind: match event.sender_kind {
                SenderKind::User => SenderKindName::User,
                SenderKind::Service => SenderKindName::Service,
                SenderKind::Staff => SenderKindName::Staff,
            },
            message_id: event.message_id.get(),
            kind: KindName::of(event.kind),
            count: event.count,
            unread: event.unread,
            timestamp_ms: event.timestamp_ms,
            devices: event.devices.iter().map(Device::of).collect(),
        }
    }

    /// The request body. Serialising borrowed strings and integers into a Vec cannot fail.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Notification serialises: strings, integers and lists only")
    }
}

impl<'a> ChatRef<'a> {
    fn of(chat: &'a Chat) -> Self {
        match chat {
            Chat::User(name) => ChatRef::User { name },
            Chat::Group(id) => ChatRef::Group { id: id.get() },
            Chat::Service(name) => ChatRef::Service { name },
            Chat::Support(id) => ChatRef::Support { id: id.get() },
        }
    }
}

impl KindName {
    fn of(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Text => KindName::Text,
            MediaKind::Image => KindName::Image,
            MediaKind::Audio => KindName::Audio,
            MediaKind::File => KindName::File,
            MediaKind::Custom => KindName::Custom,
            MediaKind::System => KindName::System,
        }
    }
}

impl<'a> Device<'a> {
    fn of(target: &'a PushTarget) -> Self {
        Device {
            device: &target.device,
            platform: match target.platform {
                PushPlatform::Apns => PlatformName::Apns,
                PushPlatform::Fcm => PlatformName::Fcm,
                PushPlatform::WebPush => PlatformName::WebPush,
                PushPlatform::Other => PlatformName::Other,
            },
            token: &target.token,
            preview: target.preview.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::protocol::{GroupId, MessageId};

    fn event(chat: Chat, sender_kind: SenderKind, kind: MediaKind, devices: Vec<PushTarget>) -> PushEvent {
        PushEvent {
            seq: 12,
            recipient: "bob".into(),
            devices,
            chat,
            chat_name: "Alice \"A\" Ö".into(),
            sender: "alice".into(),
            sender_name: "Alice".into(),
            sender_kind,
            message_id: MessageId(4711),
            kind,
            count: 2,
            unread: 5,
            timestamp_ms: 1_700_000_000_000,
        }
    }

    fn json(event: &PushEvent) -> String {
        String::from_utf8(Notification::of(event).to_json()).expect("serde_json writes UTF-8")
    }

    #[test]
    fn a_direct_message_event_has_the_documented_shape_and_field_order() {
        let devices = vec![
            PushTarget {
                device: "phone".into(),
                platform: PushPlatform::Apns,
                token: "t1".into(),
                preview: Some("hi".into()),
            },
            PushTarget {
                device: "web".into(),
                platform: PushPlatform::WebPush,
                token: "{\"k\":1}".into(),
                preview: None,
            },
        ];
        let event = event(Chat::User("alice".into()), SenderKind::User, MediaKind::Text, devices);
        assert_eq!(
            json(&event),
            concat!(
                r#"{"seq":12,"recipient":"bob","chat":{"type":"user","name":"alice"},"chat_name":"Alice \"A\" Ö","#,
                r#""sender":"alice","sender_name":"Alice","sender_kind":"user","message_id":4711,"kind":"text","#,
                r#""count":2,"unread":5,"timestamp_ms":1700000000000,"devices":["#,
                r#"{"device":"phone","platform":"apns","token":"t1","preview":"hi"},"#,
                r#"{"device":"web","platform":"webpush","token":"{\"k\":1}","preview":null}]}"#
            )
        );
    }

    #[test]
    fn group_and_service_chats_and_every_name() {
        let group = event(Chat::Group(GroupId(7)), SenderKind::User, MediaKind::Image, vec![]);
        assert!(json(&group).contains(r#""chat":{"type":"group","id":7},"#), "{}", json(&group));
        let service = event(Chat::Service("billing".into()), SenderKind::Service, MediaKind::System, vec![]);
        let shown = json(&service);
        assert!(shown.contains(r#""chat":{"type":"service","name":"billing"},"#), "{shown}");
        assert!(shown.contains(r#""sender_kind":"service","#), "{shown}");
        assert!(shown.contains(r#""kind":"system","#), "{shown}");
        assert!(shown.ends_with(r#""devices":[]}"#), "{shown}");

        let kinds = [
            (MediaKind::Text, "text"),
            (MediaKind::Image, "image"),
            (MediaKind::Audio, "audio"),
            (MediaKind::File, "file"),
            (MediaKind::Custom, "custom"),
            (MediaKind::System, "system"),
        ];
        for (kind, name) in kinds {
            assert_eq!(serde_json::to_string(&KindName::of(kind)).unwrap(), format!("\"{name}\""));
        }
        let platforms = [
            (PushPlatform::Apns, "apns"),
            (PushPlatform::Fcm, "fcm"),
            (PushPlatform::WebPush, "webpush"),
            (PushPlatform::Other, "other"),
        ];
        for (platform, name) in platforms {
            let target = PushTarget { device: "d".into(), platform, token: "t".into(), preview: None };
            assert_eq!(serde_json::to_value(Device::of(&target)).unwrap()["platform"], name);
        }
    }
}
