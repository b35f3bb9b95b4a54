//! The records the store keeps, encoded with postcard. postcard is not self-describing: a
//! record written with other fields does not decode, so a change of any record here needs
//! a data migration (none has been needed yet; the format is that of the first release).

use super::LogOwner;
use crate::protocol::{Content, GroupEvent, MessageId, Role, SenderKind, Seq, UserId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: UserId,
    pub display_name: String,
    /// An argon2id PHC string (algorithm, parameters, salt and hash together).
    pub password_hash: String,
    pub admin: bool,
    pub created_ms: u64,
}

/// A message waiting in an inbox or a group history; its sequence is in the key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: MessageId,
    pub from: String,
    pub sender: SenderKind,
    pub timestamp_ms: u64,
    pub content: Content,
    pub event: Option<GroupEvent>,
    pub addressee: Addressee,
}

/// Whom a stored message is for beyond its log's readers. Encoded exactly as the
/// `Option<String>` it replaced (variant 0 carries nothing, variant 1 a name), so records
/// written before `CopyTo` existed read unchanged.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub enum Addressee {
    /// Every reader of the log.
    #[default]
    Readers,
    /// Every group member but this one (a service's "everyone but").
    AllBut(String),
    /// In a user's own inbox: a copy of what the user sent to this user, so that every
    /// device of the sender shows both sides.
    CopyTo(String),
}

impl StoredMessage {
    /// Whether only sessions of named devices may be sent it: sent copies and deletions are
    /// frames a client that names no device (an older one) does not know.
    pub fn device_only(&self) -> bool {
        matches!(self.addressee, Addressee::CopyTo(_)) || matches!(self.event, Some(GroupEvent::MessageDeleted { .. }))
    }
}

/// What a sender's earlier send produced, so a retry gets the same receipt.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupEntry {
    /// The log it was stored in: the recipient's inbox, or the group's history.
    pub recipient: LogOwner,
    pub message_id: MessageId,
    pub seq: Seq,
    pub timestamp_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub name: String,
    pub open: bool,
    pub created_ms: u64,
    pub members: Vec<MemberRecord>,
}

impl GroupRecord {
    /// The group's app: its members' (all of them are of one app, and a group always has
    /// its owner).
    pub fn app(&self) -> &str {
        self.members.first().map_or("", |m| crate::apps::app_of(&m.username))
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub username: String,
    pub uid: UserId,
    pub role: Role,
}

/// A shop (`confabd shop add`): its own id and the users who answer its customers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShopRecord {
    /// From the server-wide counter: the shop's identity apart from its name.
    pub id: u64,
    pub staff: Vec<StaffRecord>,
    pub created_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StaffRecord {
    pub username: String,
    pub uid: UserId,
}

/// A customer's conversation with a shop; its id is the key, its messages the id's log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SupportRecord {
    pub shop: String,
    pub customer: String,
    pub customer_uid: UserId,
    /// The staff member answering it; None while any of them may.
    pub claimed_by: Option<String>,
    pub created_ms: u64,
}

/// A back-end service allowed to log in (`confabd service add`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// Identifies the service as a sender (for idempotent sends); from the counter of
    /// user ids, so it is never a user's.
    pub uid: UserId,
    /// BLAKE2s of the token: the token itself is shown once, at creation.
    pub token_digest: [u8; 32],
    pub created_ms: u64,
}

#[cfg(test)]
impl StoredMessage {
    /// A text message from alice, for the store's unit tests.
    pub fn example(text: &str) -> StoredMessage {
        StoredMessage {
            message_id: MessageId(1),
            from: "alice".into(),
            sender: SenderKind::User,
            timestamp_ms: 5,
            content: Content::text(text),
            event: None,
            addressee: Addressee::Readers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written when this field was `Option<String>` must read as the same addressee.
    #[test]
    fn addressee_encodes_as_the_option_it_replaced() {
        let bytes = |value: &dyn erased_serde_free::Bytes| value.bytes();
        let none: Option<String> = None;
        let bob: Option<String> = Some("bob".into());
        assert_eq!(bytes(&none), bytes(&Addressee::Readers));
        assert_eq!(bytes(&bob), bytes(&Addressee::AllBut("bob".into())));
        let decoded: Addressee = postcard::from_bytes(&bytes(&bob)).unwrap();
        assert_eq!(decoded, Addressee::AllBut("bob".into()));
        assert_eq!(bytes(&Addressee::CopyTo("bob".into()))[0], 2, "a new variant after the option's two");
    }

    /// Encodes values of different types through one closure.
    mod erased_serde_free {
        pub trait Bytes {
            fn bytes(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Bytes for T {
            fn bytes(&self) -> Vec<u8> {
                postcard::to_allocvec(self).expect("encodes")
            }
        }
    }
}
