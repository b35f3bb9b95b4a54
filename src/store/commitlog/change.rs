//! What a commit-log record says: the durable changes of one worker batch, and how each is
//! applied to sled when the log is replayed.
//!
//! A record's payload is the batch's changes, postcard-encoded one after another. Every
//! change is idempotent and safe to apply on top of any state sled recovered to (sled
//! keeps some prefix of its unflushed writes after a crash): a message is put only above
//! its log's floor, a floor, a member's ack, a read mark or a receipt only ever rises (a
//! mark or receipt forgotten at its bound is removed, in the log's order).

use crate::protocol::{Chat, GroupId, Seq, SupportId, UserId};
use crate::store::{
    DedupRecord, DeviceRecord, LogId, LogOwner, PushRecord, ReadEntry, Store, StoreError, StoreResult, StoredMessage,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new message, `seq` of `owner`'s log.
    Message { log: LogId, owner: LogOwner, seq: Seq, message: StoredMessage },
    /// Everything up to `floor` of `owner`'s log is acknowledged (or trimmed).
    Floor { log: LogId, owner: LogOwner, floor: Seq },
    /// A group member's acknowledged position.
    GroupAck { group: GroupId, username: String, acked: Seq },
    /// Sends remembered for idempotent retries.
    Dedup { written_ms: u64, records: Vec<DedupRecord> },
    /// A resume token (its digest) issued at a login.
    Token { uid: UserId, digest: [u8; 32], expires_ms: u64 },
    /// Every token of the user revoked (logout). In the log with the tokens, so a replay
    /// never brings back a token revoked after it was issued.
    RevokeTokens { uid: UserId },
    /// A push event, new or coalesced with a later message (the last one replayed wins).
    PushEvent { seq: u64, event: PushRecord },
    /// The push gateway acknowledged (or the full queue dropped) every event up to `floor`.
    PushFloor { floor: u64 },
    /// A reader's (customer's or staff member's) acknowledged position in a support
    /// conversation.
    SupportAck { support: SupportId, username: String, acked: Seq },
    /// A user's read mark in a chat; None: forgotten (the user's oldest, at the bound).
    ReadMark { uid: UserId, chat: Chat, mark: Option<ReadEntry> },
    /// The latest read receipt `sender` holds from `reader`; None: forgotten.
    ReadReceipt { sender: UserId, reader: String, receipt: Option<ReadEntry> },
    /// A change of a user's devices (appended: logs of earlier versions hold none).
    Device(DeviceChange),
}

/// What changes about a user's devices on the message path (see `store/devices.rs`): in
/// the log with the tokens and acks, so a replay applies them in the order they were made
/// (a device removed after a login stays removed, and so does its token).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DeviceChange {
    /// The device logged in or its session ended.
    Seen { uid: UserId, device: String, last_seen_ms: u64 },
    /// A device's acknowledged position in a log: a named device's anywhere, the legacy
    /// device's in an inbox whose floor history or another device holds below it.
    Ack { log: LogId, owner: LogOwner, uid: UserId, device: String, acked: Seq },
    /// A resume token issued to a named device.
    Token { uid: UserId, digest: [u8; 32], expires_ms: u64, device: String },
    /// Every token of one device revoked (its logout).
    RevokeTokens { uid: UserId, device: String },
    /// The device forgotten (removed, expired, or the oldest beyond the bound): its record,
    /// tokens and positions in the user's inbox and in these groups and conversations.
    Forget { uid: UserId, device: String, groups: Vec<GroupId>, conversations: Vec<SupportId> },
}

/// [`Change`] borrowing its large parts, for encoding without a copy. Same variants in the
/// same order with the same field types: postcard encodes both alike (tested below).
#[derive(Serialize)]
pub enum ChangeRef<'a> {
    Message { log: LogId, owner: LogOwner, seq: Seq, message: &'a StoredMessage },
    Floor { log: LogId, owner: LogOwner, floor: Seq },
    GroupAck { group: GroupId, username: &'a str, acked: Seq },
    Dedup { written_ms: u64, records: &'a [DedupRecord] },
    Token { uid: UserId, digest: [u8; 32], expires_ms: u64 },
    RevokeTokens { uid: UserId },
    PushEvent { seq: u64, event: &'a PushRecord },
    PushFloor { floor: u64 },
    SupportAck { support: SupportId, username: &'a str, acked: Seq },
    ReadMark { uid: UserId, chat: &'a Chat, mark: Option<ReadEntry> },
    ReadReceipt { sender: UserId, reader: &'a str, receipt: Option<ReadEntry> },
    Device(&'a DeviceChange),
}

/// Appends a change to a batch's payload.
pub fn encode_into(change: &ChangeRef<'_>, payload: &mut Vec<u8>) {
    let buffer = std::mem::take(payload);
    *payload = postcard::to_extend(change, buffer).expect("postcard encoding of store records is infallible");
}

/// The changes of one record's payload.
pub fn decode(mut payload: &[u8]) -> StoreResult<Vec<Change>> {
    let mut changes = Vec::new();
    while !payload.is_empty() {
        let (change, rest) = postcard::take_from_bytes::<Change>(payload)
            .map_err(|e| StoreError::Corrupt { tree: "commit log", detail: e.to_string() })?;
        changes.push(change);
        payload = rest;
    }
    Ok(changes)
}

/// What replaying changes did, for the start-up log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub messages: u64,
    pub floors: u64,
    pub acks: u64,
    /// Read marks and receipts.
    pub read: u64,
    pub dedup: u64,
}

impl Store {
    /// Applies one replayed change to sled (no flush: the caller checkpoints after).
    pub fn apply(&self, change: Change, applied: &mut Applied) -> StoreResult<()> {
        match change {
            Change::Message { log, owner, seq, message } => {
                // A deleted group's (or removed shop's conversation's) history stays deleted
                // (a log's owner is its group or conversation).
                if log == LogId::Group && self.group(GroupId(owner.get()))?.is_none() {
                    return Ok(());
                }
                if log == LogId::Support && self.support(SupportId(owner.get()))?.is_none() {
                    return Ok(());
                }
                let log = self.log(log);
                if seq > log.floor(owner)? {
                    log.append(owner, seq, &message)?;
                    applied.messages += 1;
                }
            }
            Change::Floor { log, owner, floor } => {
                let log = self.log(log);
                if floor > log.floor(owner)? {
                    log.raise_floor(owner, floor)?;
                    applied.floors += 1;
                }
            }
            Change::GroupAck { group, username, acked } => {
                let member = self.group(group)?.is_some_and(|g| g.members.iter().any(|m| m.username == username));
                if member && acked > self.group_ack(group, &username)? {
                    self.put_group_ack(group, &username, acked)?;
                    applied.acks += 1;
                }
            }
            Change::Dedup { written_ms, records } => {
                self.put_dedup_batch(written_ms, &records)?;
                applied.dedup += records.len() as u64;
            }
            Change::Token { uid, digest, expires_ms } => self.put_token(uid, &digest, expires_ms)?,
            Change::RevokeTokens { uid } => self.revoke_tokens(uid)?,
            Change::PushEvent { seq, event } => {
                self.put_push_event(seq, &event)?;
            }
            Change::PushFloor { floor } => {
                self.raise_push_floor(floor)?;
            }
            Change::SupportAck { support, username, acked } => {
                if self.support(support)?.is_some() && acked > self.support_ack(support, &username)? {
                    self.put_support_ack(support, &username, acked)?;
                    applied.acks += 1;
                }
            }
            Change::ReadMark { uid, chat, mark } => {
                if self.apply_read_mark(uid, &chat, mark)? {
                    applied.read += 1;
                }
            }
            Change::ReadReceipt { sender, reader, receipt } => {
                if self.apply_read_receipt(sender, &reader, receipt)? {
                    applied.read += 1;
                }
            }
            Change::Device(change) => self.apply_device(change, applied)?,
        }
        Ok(())
    }

    /// Applies one device change (replayed, or as it is made).
    pub fn apply_device(&self, change: DeviceChange, applied: &mut Applied) -> StoreResult<()> {
        match change {
            DeviceChange::Seen { uid, device, last_seen_ms } => {
                self.put_device(uid, &device, &DeviceRecord { last_seen_ms })?
            }
            DeviceChange::Ack { log, owner, uid, device, acked } => {
                // The history of a deleted group or conversation stays deleted, positions too.
                let gone = match log {
                    LogId::Inbox => false,
                    // As a member's own: only while it is one.
                    LogId::Group => {
                        !self.group(GroupId(owner.get()))?.is_some_and(|g| g.members.iter().any(|m| m.uid == uid))
                    }
                    LogId::Support => self.support(SupportId(owner.get()))?.is_none(),
                };
                if !gone && self.device_ack(log, owner, uid, &device)?.is_none_or(|before| acked > before) {
                    self.put_device_ack(log, owner, uid, &device, acked)?;
                    applied.acks += 1;
                }
            }
            DeviceChange::Token { uid, digest, expires_ms, device } => {
                self.put_device_token(uid, &digest, expires_ms, &device)?
            }
            DeviceChange::RevokeTokens { uid, device } => self.revoke_device_tokens(uid, &device)?,
            DeviceChange::Forget { uid, device, groups, conversations } => {
                self.forget_device(uid, &device, &groups, &conversations)?
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMsgId, Content, MessageId, Role, SenderKind};
    use crate::store::{Account, DedupEntry, GroupRecord, JournalRecord, MemberRecord, ServiceRecord};

    fn message() -> StoredMessage {
        StoredMessage {
            message_id: MessageId(4),
            from: "alice".into(),
            sender: SenderKind::User,
            timestamp_ms: 5,
            content: Content::text("hi"),
            event: None,
            addressee: crate::store::Addressee::Readers,
        }
    }

    #[test]
    fn borrowed_changes_encode_like_owned_ones() {
        let m = message();
        let push = PushRecord {
            recipient: "bob".into(),
            recipient_uid: UserId(2),
            message: crate::store::PushMessage::example(),
            count: 2,
            unread: 5,
        };
        let entry = DedupEntry { recipient: LogOwner(3), message_id: MessageId(4), seq: Seq(5), timestamp_ms: 6 };
        let records = vec![DedupRecord { sender: UserId(1), client_msg_id: ClientMsgId(2), entry }];
        let chat = crate::protocol::Chat::User("bob".into());
        let mark = ReadEntry { up_to: Seq(4), at_ms: 99 };
        let seen = DeviceChange::Seen { uid: UserId(1), device: "phone".into(), last_seen_ms: 7 };
        let ack = DeviceChange::Ack {
            log: LogId::Group,
            owner: LogOwner(3),
            uid: UserId(1),
            device: "phone".into(),
            acked: Seq(4),
        };
        let forget = DeviceChange::Forget {
            uid: UserId(1),
            device: "phone".into(),
            groups: vec![GroupId(3)],
            conversations: vec![SupportId(8)],
        };
        let pairs = [
            (
                ChangeRef::Message { log: LogId::Group, owner: LogOwner(7), seq: Seq(8), message: &m },
                Change::Message { log: LogId::Group, owner: LogOwner(7), seq: Seq(8), message: m.clone() },
            ),
            (
                ChangeRef::Floor { log: LogId::Inbox, owner: LogOwner(1), floor: Seq(9) },
                Change::Floor { log: LogId::Inbox, owner: LogOwner(1), floor: Seq(9) },
            ),
            (
                ChangeRef::GroupAck { group: GroupId(3), username: "bob", acked: Seq(2) },
                Change::GroupAck { group: GroupId(3), username: "bob".into(), acked: Seq(2) },
            ),
            (
                ChangeRef::Dedup { written_ms: 11, records: &records },
                Change::Dedup { written_ms: 11, records: records.clone() },
            ),
            (
                ChangeRef::Token { uid: UserId(5), digest: [7; 32], expires_ms: 99 },
                Change::Token { uid: UserId(5), digest: [7; 32], expires_ms: 99 },
            ),
            (ChangeRef::RevokeTokens { uid: UserId(5) }, Change::RevokeTokens { uid: UserId(5) }),
            (ChangeRef::PushEvent { seq: 3, event: &push }, Change::PushEvent { seq: 3, event: push.clone() }),
            (ChangeRef::PushFloor { floor: 2 }, Change::PushFloor { floor: 2 }),
            (
                ChangeRef::SupportAck { support: SupportId(4), username: "bob", acked: Seq(3) },
                Change::SupportAck { support: SupportId(4), username: "bob".into(), acked: Seq(3) },
            ),
            (
                ChangeRef::ReadMark { uid: UserId(5), chat: &chat, mark: Some(mark) },
                Change::ReadMark { uid: UserId(5), chat: chat.clone(), mark: Some(mark) },
            ),
            (
                ChangeRef::ReadMark { uid: UserId(5), chat: &chat, mark: None },
                Change::ReadMark { uid: UserId(5), chat: chat.clone(), mark: None },
            ),
            (
                ChangeRef::ReadReceipt { sender: UserId(6), reader: "alice", receipt: Some(mark) },
                Change::ReadReceipt { sender: UserId(6), reader: "alice".into(), receipt: Some(mark) },
            ),
            (ChangeRef::Device(&seen), Change::Device(seen.clone())),
            (ChangeRef::Device(&ack), Change::Device(ack.clone())),
            (ChangeRef::Device(&forget), Change::Device(forget.clone())),
        ];
        let mut payload = Vec::new();
        for (borrowed, owned) in &pairs {
            let mut one = Vec::new();
            encode_into(borrowed, &mut one);
            assert_eq!(one, postcard::to_allocvec(owned).unwrap());
            encode_into(borrowed, &mut payload);
        }
        let owned: Vec<Change> = pairs.into_iter().map(|(_, o)| o).collect();
        assert_eq!(decode(&payload).unwrap(), owned);
    }

    #[test]
    fn replay_is_idempotent_and_floors_only_rise() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut applied = Applied::default();
        let (inbox, deleted_group) = (LogOwner::from(UserId(1)), LogOwner::from(GroupId(9)));
        let changes = vec![
            Change::Message { log: LogId::Inbox, owner: inbox, seq: Seq(1), message: message() },
            Change::Message { log: LogId::Inbox, owner: inbox, seq: Seq(2), message: message() },
            Change::Floor { log: LogId::Inbox, owner: inbox, floor: Seq(1) },
            // A group that does not exist (deleted): its messages stay gone.
            Change::Message { log: LogId::Group, owner: deleted_group, seq: Seq(1), message: message() },
        ];
        for _ in 0..2 {
            for change in changes.clone() {
                store.apply(change, &mut applied).unwrap();
            }
        }
        store.apply(Change::Floor { log: LogId::Inbox, owner: inbox, floor: Seq::ZERO }, &mut applied).unwrap();
        assert_eq!(store.inbox.floor(inbox).unwrap(), Seq(1));
        assert_eq!(store.inbox.read(inbox, Seq::ZERO, 10).unwrap().len(), 1);
        assert_eq!(store.group_log.read(deleted_group, Seq::ZERO, 10).unwrap().len(), 0);
        assert_eq!(applied.floors, 1);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bytes below were written by the release before ids had types of their own (when
    /// they were bare u64s): logs and records it left must read the same, and new ones be
    /// written the same. Ids above 127 take two varint bytes, so a width change would show.
    #[test]
    fn records_and_changes_encode_as_before_ids_had_types() {
        let m = StoredMessage { message_id: MessageId(300), from: "alice".into(), timestamp_ms: 5, ..message() };
        let m = StoredMessage { content: Content::text("hi"), ..m };
        let entry = DedupEntry { recipient: LogOwner(3), message_id: MessageId(400), seq: Seq(5), timestamp_ms: 6 };
        let records = [DedupRecord { sender: UserId(1000), client_msg_id: ClientMsgId(2), entry }];
        let changes = [
            ChangeRef::Message { log: LogId::Group, owner: LogOwner(700), seq: Seq(8), message: &m },
            ChangeRef::Floor { log: LogId::Inbox, owner: LogOwner(1), floor: Seq(200) },
            ChangeRef::GroupAck { group: GroupId(3), username: "bob", acked: Seq(2) },
            ChangeRef::Dedup { written_ms: 11, records: &records },
            ChangeRef::Token { uid: UserId(5000), digest: [7; 32], expires_ms: 99 },
            ChangeRef::RevokeTokens { uid: UserId(5) },
        ];
        let mut payload = Vec::new();
        for change in &changes {
            encode_into(change, &mut payload);
        }
        assert_eq!(
            hex(&payload),
            "0001bc0508ac0205616c696365000500026869000000010001c801020303626f6202030b01e8070203900305060488270707\
             070707070707070707070707070707070707070707070707070707070707630505"
        );
        let account = Account {
            user_id: UserId(300),
            display_name: "bob".into(),
            password_hash: "x".into(),
            admin: false,
            created_ms: 0,
        };
        assert_eq!(hex(&postcard::to_allocvec(&account).unwrap()), "ac0203626f6201780000");
        let member = MemberRecord { username: "bob".into(), uid: UserId(300), role: Role::Owner };
        let group = GroupRecord { name: "g".into(), open: true, created_ms: 1, members: vec![member] };
        assert_eq!(hex(&postcard::to_allocvec(&group).unwrap()), "016701010103626f62ac0200");
        let service = ServiceRecord { uid: UserId(300), token_digest: [1; 32], created_ms: 2 };
        assert_eq!(hex(&postcard::to_allocvec(&service).unwrap()), format!("ac02{}02", "01".repeat(32)));
        let journal = JournalRecord { log: LogId::Inbox, owner: LogOwner(300), seq: Seq(400), message: m };
        assert_eq!(
            hex(&postcard::to_allocvec(&vec![journal]).unwrap()),
            "0100ac029003ac0205616c696365000500026869000000"
        );
    }
}
