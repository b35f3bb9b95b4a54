//! Why a request was refused: the error frame an owner answers with instead of a reply.

use crate::protocol::{retry_ms, ErrorCode, Seq};
use crate::store::StoreError;
use log::error;
use std::time::Duration;

/// Why a request was refused; becomes an error frame.
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// For `RateLimited` and `Unavailable`: when to try again, in ms (protocol.md "Errors"); 0 otherwise.
    pub retry_after_ms: u32,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into(), retry_after_ms: 0 }
    }

    /// `RateLimited`, to be tried again after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: Duration) -> Self {
        Refusal { code: ErrorCode::RateLimited, message: message.into(), retry_after_ms: retry_ms(wait) }
    }

    /// An ack or resync of `seq`, past the conversation's last sequence.
    pub fn beyond(what: &str, seq: Seq, last_seq: Seq) -> Self {
        Refusal::new(ErrorCode::BadRequest, format!("{what} {seq} is beyond the last sequence {last_seq}"))
    }

    /// `Unavailable`: what the request is about is on a cluster node that cannot be reached
    /// now; nothing was done, try again after `wait`.
    pub fn unavailable(message: impl Into<String>, wait: Duration) -> Self {
        Refusal { code: ErrorCode::Unavailable, message: message.into(), retry_after_ms: retry_ms(wait) }
    }

    pub fn unknown_user() -> Self {
        Refusal::new(ErrorCode::UnknownUser, "no such user")
    }

    /// New messages are refused while the disk is full (acks and logins still go on).
    pub fn storage_full() -> Self {
        Refusal::new(ErrorCode::StorageFull, "the server's disk is full; retry later")
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::Full) {
            return Refusal::storage_full();
        }
        error!("store: {e}");
        Refusal::new(ErrorCode::Internal, "storage error")
    }
}

/// What a request handler returns: its replies are in the batch, or it was refused.
pub type Handled = Result<(), Refusal>;
