//! The records the store keeps, encoded with postcard. Fields are only appended, like the
//! wire protocol, so an old data directory stays readable.

use crate::protocol::{Content, GroupEvent, Role};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: u64,
    pub display_name: String,
    /// An argon2id PHC string (algorithm, parameters, salt and hash together).
    pub password_hash: String,
    pub admin: bool,
    pub created_ms: u64,
}

/// A message waiting in an inbox or a group history; its sequence is in the key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: u64,
    pub from: String,
    pub timestamp_ms: u64,
    pub content: Content,
    pub event: Option<GroupEvent>,
}

/// What a sender's earlier send produced, so a retry gets the same receipt.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupEntry {
    pub recipient: u64,
    pub message_id: u64,
    pub seq: u64,
    pub timestamp_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub name: String,
    pub open: bool,
    pub created_ms: u64,
    pub members: Vec<MemberRecord>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub username: String,
    pub uid: u64,
    pub role: Role,
}
