//! What the server sends unasked: stored and live messages, presence, and notices.

use super::{Chat, Content, MediaKind, Message, MessageId, PushPlatform, SenderKind, Seq, SupportId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Push {
    /// A stored message. Sequences are contiguous per conversation, but a session is not
    /// pushed its own group messages (nor ones a service addressed to all but it), so gaps
    /// are judged by `prev_seq`: one above the last sequence seen means something was
    /// missed (send Resync); one below means a redelivery.
    Message(Message),
    Transient {
        from: String,
        content: Content,
    },
    /// Another login took this user's session; the connection closes after this frame.
    Kicked {
        reason: String,
    },
    /// The server is stopping; the connection closes after this frame.
    ShuttingDown,
    RoomMessage {
        room: String,
        from: String,
        content: Content,
    },
    Broadcast {
        from: String,
        content: Content,
    },
    /// A user this session shares a group with, or subscribed to, came online or went offline.
    Presence {
        username: String,
        online: bool,
    },
    /// A service's live-only message (ServiceSend with transient set).
    ServiceNotice {
        service: String,
        content: Content,
    },
    /// To services that asked (WatchConnections): a user logged in, or its session ended.
    Connection {
        username: String,
        connected: bool,
        reason: String,
    },
    /// To the push gateway (SubscribePush): wake these devices. Acknowledge with AckPush.
    PushEvent(PushEvent),
    /// To every online staff member of the shop: an agent took the conversation (from now
    /// on only it is pushed its new messages), or `agent` None: it was released (every
    /// staff member is pushed them again).
    SupportClaimed {
        conversation: SupportId,
        shop: String,
        customer: String,
        agent: Option<String>,
    },
    /// A message the user sent from another device (stored in the user's own inbox
    /// sequence, so every device shows both sides): `message.from` is the user, `to` the
    /// recipient. Named devices only; a session without a device is not sent copies.
    SentCopy {
        to: String,
        message: Message,
    },
    /// The user marked the chat read on another device.
    ReadMark {
        chat: Chat,
        up_to: Seq,
    },
    /// `reader` has read the direct messages the user sent it up to `up_to`, a sequence of
    /// the reader's inbox (the one the `Sent` receipts carried).
    ReadReceipt {
        reader: String,
        up_to: Seq,
    },
    /// The user cleared the chat's history up to `up_to` on another device.
    HistoryCleared {
        chat: Chat,
        up_to: Seq,
    },
    /// To services that asked (WatchConnections): as `Connection`, for a session of a
    /// named device.
    DeviceConnection {
        username: String,
        device: String,
        connected: bool,
        reason: String,
    },
}

/// Stored messages reached a user who is not connected. Messages for the same user within
/// the server's coalescing window are one event: the latest one's details, and `count`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PushEvent {
    /// The push queue's sequence: contiguous except for events dropped or skipped
    /// (the recipient came online first); acknowledge by it.
    pub seq: u64,
    pub recipient: String,
    /// The recipient's devices now, each with its own preview.
    pub devices: Vec<PushTarget>,
    /// The chat of the latest message, and its name to show: the sender's display name,
    /// the group's name, or the service's name.
    pub chat: Chat,
    pub chat_name: String,
    pub sender: String,
    pub sender_name: String,
    pub sender_kind: SenderKind,
    pub message_id: MessageId,
    pub kind: MediaKind,
    /// Messages this event stands for (at least 1).
    pub count: u32,
    /// For a badge: unread messages in the chats that got messages since the user was
    /// last online.
    pub unread: u64,
    pub timestamp_ms: u64,
}

/// One device to wake. `Debug` prints the token as `<redacted>`.
#[derive(Serialize, Deserialize, derive_more::Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PushTarget {
    pub device: String,
    pub platform: PushPlatform,
    #[debug("<redacted>")]
    pub token: String,
    /// The first characters of the message's text; None when the device turned previews
    /// off, or the message has no text.
    pub preview: Option<String>,
}
