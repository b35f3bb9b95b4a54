//! The typed error codes, and the retry time of `RateLimited` and `Unavailable`.

use serde::{Deserialize, Serialize};

/// A wait in whole milliseconds for `retry_after_ms`: rounded up, at least 1, saturated.
pub fn retry_ms(wait: std::time::Duration) -> u32 {
    let ms = wait.as_micros().div_ceil(1000).max(1);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Typed errors. Codes are the variant indices and never change meaning.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ErrorCode {
    UnsupportedVersion,
    BadRequest,
    FrameTooLarge,
    HelloRequired,
    NotLoggedIn,
    AlreadyLoggedIn,
    UnknownUser,
    WrongPassword,
    NameTaken,
    InvalidName,
    InvalidPassword,
    InvalidContent,
    RateLimited,
    Internal,
    SlowConsumer,
    IdleTimeout,
    ShuttingDown,
    ServerFull,
    /// A resume token that is unknown, expired or revoked.
    InvalidToken,
    UnknownGroup,
    NotAMember,
    /// The caller's role does not allow this.
    Forbidden,
    /// A configured limit (members per group, groups per user, room size) is reached.
    LimitReached,
    AlreadyMember,
    /// The server's disk is full: the request was not carried out; retry later.
    StorageFull,
    /// The recipient's inbox holds as many stored, unread bytes as one user may: retry
    /// once it has read them.
    QuotaExceeded,
    /// `HelloApp` named an app this server does not host.
    UnknownApp,
    /// No shop of that name (a `Send` to a shop, `ListSupport`, `AddStaff`, `RemoveStaff`).
    UnknownShop,
    /// The caller has no device of that name (`RemoveDevice`).
    UnknownDevice,
    /// In a cluster, the node that holds what the request is about (the recipient's or the
    /// user's home, a group's home) cannot be reached now: nothing was done, no receipt
    /// was given. Retry after `retry_after_ms`.
    Unavailable,
}

impl ErrorCode {
    /// Errors after which the server closes the connection.
    pub fn closes(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedVersion
                | ErrorCode::FrameTooLarge
                | ErrorCode::HelloRequired
                | ErrorCode::SlowConsumer
                | ErrorCode::IdleTimeout
                | ErrorCode::ShuttingDown
                | ErrorCode::ServerFull
                | ErrorCode::UnknownApp
        )
    }
}
