//! What a message is: its content and media, who sent it, group roles and events, and
//! the stored message as every client receives it.

use super::{Conversation, MessageId, Seq};
use serde::{Deserialize, Serialize};

/// Who sent a message: a user, or a back-end service (shown as a system message).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SenderKind {
    #[default]
    User,
    Service,
    /// A shop's staff member in a support conversation: to the customer `from` is the
    /// shop's name and `display_name` the agent's; to other staff `from` is the agent.
    Staff,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Role {
    Owner,
    Admin,
    Member,
}

/// A membership change, stored in the group's sequence like a message so that members who
/// were offline learn of it in order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum GroupEvent {
    Created {
        by: String,
    },
    Joined {
        username: String,
    },
    Left {
        username: String,
    },
    Added {
        username: String,
        by: String,
    },
    Removed {
        username: String,
        by: String,
    },
    Renamed {
        name: String,
        by: String,
    },
    RoleChanged {
        username: String,
        role: Role,
        by: String,
    },
    /// Pushed live to online members only: the group and its history are gone.
    Deleted {
        by: String,
    },
    /// In any conversation: `by` deleted its message `message_id` for everyone. Named
    /// devices only; a session without a device is not sent it.
    MessageDeleted {
        message_id: MessageId,
        by: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum MediaKind {
    Text,
    Image,
    Audio,
    File,
    Custom,
    /// A group event; `Message::event` says which.
    System,
}

/// Where a media message's payload lives; the body then carries a caption or thumbnail.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Media {
    pub url: String,
    pub description: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Content {
    pub kind: MediaKind,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub media: Option<Media>,
}

impl Content {
    pub fn text(text: impl Into<String>) -> Self {
        Content { kind: MediaKind::Text, body: text.into().into_bytes(), media: None }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Message {
    pub conversation: Conversation,
    pub seq: Seq,
    /// The sequence of the message pushed to this session before this one in the same
    /// conversation, or where delivery started (the ack at login, the point of a resync).
    /// A client whose last seen sequence is below `prev_seq` has missed something.
    pub prev_seq: Seq,
    pub message_id: MessageId,
    pub from: String,
    /// A service's messages are system messages: show them apart.
    pub sender: SenderKind,
    pub timestamp_ms: u64,

    pub content: Content,
    /// Set on group events (content kind `System`, empty body).
    pub event: Option<GroupEvent>,
    /// The sender's display name now (for a service, its name), so a client can show who
    /// wrote without asking.
    pub display_name: String,
}
