//! What the server sends unasked: stored and live messages, presence, and notices.

use super::{Content, Message};
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
}
