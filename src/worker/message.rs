//! One home for a new stored message: the steps every sender shares, whatever the
//! conversation (a user's inbox, a group) and whoever sends (a user, a service, the
//! server's own group events).
//!
//! 1. [`validate`] the content;
//! 2. [`earlier`]: a retried send (same sender, `client_msg_id` and destination) gets the
//!    original receipt, not a second message;
//! 3. [`compose`] the stored form (a fresh message id, the time);
//! 4. [`store`] it as the next sequence of its log, durable with the batch's commit, and
//!    remember it for retries;
//! 5. the conversation's owner then pushes it through each reader's cursor, as [`wire`]
//!    form, to readers whose cursor is caught up; the rest get it as backlog.

use super::context::Ctx;
use super::refusal::{Handled, Refusal};
use super::Shared;
use crate::apps::local;
use crate::clock::now_ms;
use crate::config::Config;
use crate::protocol::{
    ClientMsgId, Content, Conversation, ErrorCode, GroupEvent, MediaKind, Message, MessageId, Reply, SenderKind, Seq,
    UserId,
};
use crate::route::{ConnId, SessionUser};
use crate::store::{Addressee, DedupEntry, DedupRecord, LogId, LogOwner, StoredMessage};

/// Longest media URL and description accepted (protocol.md "Content").
const MAX_MEDIA_URL: usize = 2048;
const MAX_MEDIA_DESCRIPTION: usize = 1024;

/// What the sender's display name adds to a pushed message: looked up at push time, so not
/// known here; most are short, and the estimate only paces delivery and counts quotas.
const DISPLAY_NAME_ALLOWANCE: usize = 32;

/// Who sent a message and with which client id: how a retry of it is recognised (with
/// its destination, the log it is stored in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryKey {
    pub sender: UserId,
    pub client_msg_id: ClientMsgId,
}

/// Refuses content that is too large, empty, or (from a user) of the reserved System kind.
pub fn validate(config: &Config, content: &Content, from: &SessionUser) -> Handled {
    let max_body = config.max_body as usize;
    if content.body.len() > max_body {
        return Err(Refusal::new(ErrorCode::InvalidContent, format!("body exceeds {max_body} bytes")));
    }
    match &content.media {
        None if content.body.is_empty() => return Err(Refusal::new(ErrorCode::InvalidContent, "empty message")),
        Some(media) if media.url.len() > MAX_MEDIA_URL || media.description.len() > MAX_MEDIA_DESCRIPTION => {
            return Err(Refusal::new(ErrorCode::InvalidContent, "media url or description too long"))
        }
        _ => {}
    }
    // System is how the server marks its own messages (group events); a user's message
    // must never pass for one. Services may use it.
    if content.kind == MediaKind::System && !from.service {
        return Err(Refusal::new(ErrorCode::InvalidContent, "the System kind is reserved to the server"));
    }
    Ok(())
}

/// The receipt of an earlier send of `key` to `destination` (a user's inbox or a group),
/// marked as a duplicate; None for a new send.
pub fn earlier(ctx: &Ctx, key: RetryKey, destination: LogOwner) -> Result<Option<Reply>, Refusal> {
    if key.client_msg_id.is_none() {
        return Err(Refusal::new(ErrorCode::BadRequest, "client_msg_id must not be 0"));
    }
    Ok(ctx.dedup().get(key.sender, key.client_msg_id, destination).map(|earlier| Reply::Sent {
        message_id: earlier.message_id,
        seq: earlier.seq,
        timestamp_ms: earlier.timestamp_ms,
        duplicate: true,
    }))
}

/// A new message from a user or a service; `addressee` may name a group member it is not
/// pushed to (a service's choice).
pub fn compose(
    shared: &Shared,
    from: &SessionUser,
    content: Content,
    addressee: Addressee,
) -> Result<StoredMessage, Refusal> {
    Ok(StoredMessage {
        message_id: MessageId(shared.store.next_id()?),
        from: from.name.to_string(),
        sender: if from.service { SenderKind::Service } else { SenderKind::User },
        timestamp_ms: now_ms(),
        content,
        event: None,
        addressee,
    })
}

/// A group event, stored as a message of the server's own (System kind) by `by`.
pub fn event(shared: &Shared, event: GroupEvent, by: &str) -> Result<StoredMessage, Refusal> {
    Ok(StoredMessage {
        message_id: MessageId(shared.store.next_id()?),
        from: by.to_string(),
        sender: SenderKind::User,
        timestamp_ms: now_ms(),
        content: system_content(),
        event: Some(event),
        addressee: Addressee::Readers,
    })
}

/// The content of group events: System kind, nothing else.
pub fn system_content() -> Content {
    Content { kind: MediaKind::System, body: Vec::new(), media: None }
}

/// Who a new stored message answers: the request to send the receipt to (none for a
/// service's part or a group event), and the key that makes a retry get the same receipt.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin {
    pub reply_to: Option<(ConnId, u32)>,
    pub retry_key: Option<RetryKey>,
}

/// Stores `message` as `seq` of the owner's log (durable with this batch's commit), and
/// for a send with a retry key remembers it so a retry gets the same receipt. The receipt
/// is queued now, as durable output, so it leaves with the commit and before any push of
/// the message (a user's note to self arrives after its receipt).
pub fn store(ctx: &mut Ctx, log: LogId, owner: LogOwner, seq: Seq, message: &StoredMessage, origin: Origin) -> Handled {
    if ctx.partition.is_full() {
        // The disk is full or refused the last commit: take nothing new until it accepts
        // again (acks and logins still do: they free space or need little).
        return Err(Refusal::storage_full());
    }
    ctx.partition.stage(log, owner, seq, message);
    ctx.shared.metrics.stored_delta(1);
    let entry =
        DedupEntry { recipient: owner, message_id: message.message_id, seq, timestamp_ms: message.timestamp_ms };
    if let Some(RetryKey { sender, client_msg_id }) = origin.retry_key {
        let record = DedupRecord { sender, client_msg_id, entry };
        ctx.dedup().insert(record, entry.timestamp_ms);
        ctx.partition.remember(record);
    }
    if let Some((conn, request_id)) = origin.reply_to {
        let receipt =
            Reply::Sent { message_id: message.message_id, seq, timestamp_ms: message.timestamp_ms, duplicate: false };
        ctx.batch.reply(conn, request_id, receipt, true);
    }
    Ok(())
}

/// About what a stored message costs in a connection's output buffer.
pub fn wire_size(stored: &StoredMessage) -> usize {
    let media = stored.content.media.as_ref().map_or(0, |m| m.url.len() + m.description.len() + 10);
    48 + stored.from.len() + DISPLAY_NAME_ALLOWANCE + stored.content.body.len() + media
}

/// The display name a pushed message carries: the user's (or staff member's) current one,
/// or the service's name (services have no other).
pub fn sender_display_name(shared: &Shared, stored: &StoredMessage) -> String {
    match stored.sender {
        SenderKind::Service => local(&stored.from).to_string(),
        SenderKind::User | SenderKind::Staff => shared.directory.display_name(&stored.from, &shared.store),
    }
}

/// A stored message as pushed: `seq` in `conversation`, after `prev_seq` on this session.
pub fn wire(shared: &Shared, conversation: Conversation, seq: Seq, prev_seq: Seq, stored: StoredMessage) -> Message {
    let display_name = sender_display_name(shared, &stored);
    Message {
        conversation,
        seq,
        prev_seq,
        message_id: stored.message_id,
        from: stored.from,
        sender: stored.sender,
        timestamp_ms: stored.timestamp_ms,
        content: stored.content,
        event: stored.event,
        display_name,
    }
}
