//! The ids the protocol carries, one type each, so that a group id cannot be passed where a
//! user id is wanted, nor a sequence number where a message id is.
//!
//! Every id is a `u64` on the wire and on disk, and stays one: each type is
//! `#[serde(transparent)]`, which postcard encodes exactly like the bare integer (a
//! varint), so neither protocol.md's vectors nor any stored record changed when these
//! types came in. Code that builds byte keys (the store's big-endian keys) converts at
//! the key-building function with [`UserId::get`] and its like.
//!
//! User, group and message ids come from one server-wide counter that starts at 1, so 0 is
//! never an id that exists: protocol.md gives it a meaning where it appears (no client
//! message id, no message, "from the start" of the open-group directory).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// Defines an id type: a transparent `u64` that prints as the bare number (log lines and
/// error messages read as they did), converts from and to `u64` explicitly, and derives
/// proptest's `Arbitrary` for the codec tests as every protocol type does.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The number, for keys and arithmetic outside this type.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                $name(value)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id! {
    /// An account's permanent id (`Registered.user_id`, the owner of an inbox). A service
    /// has one from the same counter, which identifies it as a sender.
    UserId
}

id! {
    /// A persistent group's id. Groups are partitioned over the workers by it.
    GroupId
}

id! {
    /// A customer-support conversation's id (one per customer and shop; protocol.md
    /// "Customer support"). From the same server-wide counter as the others, so it never
    /// names a user's inbox or a group's history as well.
    SupportId
}

id! {
    /// A position in one conversation (an inbox, a group's history): contiguous from 1, and
    /// 0 before the first message. Positions are compared and stepped; the difference of
    /// two is a count of messages (`u64`), as with `Instant` and `Duration`.
    Seq
}

id! {
    /// A stored message's server-wide unique id (the one in the sender's `Sent` receipt).
    MessageId
}

id! {
    /// The sender's own id for a send, which makes a retry of a stored message idempotent
    /// (unique per sender and destination). 0 is "none": allowed only for transient sends.
    ClientMsgId
}

impl Seq {
    /// Before the first message: where an empty conversation's ack and last sequence stand.
    pub const ZERO: Seq = Seq(0);
    /// The top of a range of positions (no conversation gets near it).
    pub const MAX: Seq = Seq(u64::MAX);

    /// The position after this one. Saturating: a number from a peer at the very top must
    /// not overflow, and no conversation reaches it.
    pub const fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }

    /// How many messages lie after `earlier` up to and including `self`; 0 when `earlier`
    /// is not before `self` (what a client has not yet read, or a session not yet sent).
    pub const fn saturating_sub(self, earlier: Seq) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A position `n` messages later.
impl Add<u64> for Seq {
    type Output = Seq;

    fn add(self, n: u64) -> Seq {
        Seq(self.0 + n)
    }
}

/// A position `n` messages earlier.
impl Sub<u64> for Seq {
    type Output = Seq;

    fn sub(self, n: u64) -> Seq {
        Seq(self.0 - n)
    }
}

/// How many messages lie after `earlier` up to and including `self`.
impl Sub<Seq> for Seq {
    type Output = u64;

    fn sub(self, earlier: Seq) -> u64 {
        self.0 - earlier.0
    }
}

impl MessageId {
    /// No stored message: the live-only `Deleted` event of a group carries it.
    pub const NONE: MessageId = MessageId(0);
}

impl ClientMsgId {
    /// No client message id: a transient send, which nothing retries.
    pub const NONE: ClientMsgId = ClientMsgId(0);

    /// Whether this is [`ClientMsgId::NONE`], which a stored send must not use.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_step_and_differences_are_counts() {
        assert_eq!(Seq::ZERO.next(), Seq(1));
        assert_eq!(Seq::MAX.next(), Seq::MAX);
        assert_eq!(Seq(7) + 3, Seq(10));
        assert_eq!(Seq(7) - 3, Seq(4));
        assert_eq!(Seq(7) - Seq(4), 3);
        assert_eq!((Seq(7).saturating_sub(Seq(4)), Seq(4).saturating_sub(Seq(7))), (3, 0));
        assert!(Seq(2) < Seq(10));
    }

    #[test]
    fn ids_print_as_their_numbers() {
        assert_eq!(
            format!("{} {} {} {} {} {}", UserId(1), GroupId(2), Seq(3), MessageId(4), ClientMsgId(5), SupportId(6)),
            "1 2 3 4 5 6"
        );
        assert!(ClientMsgId::NONE.is_none() && !ClientMsgId(1).is_none());
    }

    proptest! {
        // protocol.md's vectors and every stored record depend on this: an id is encoded
        // exactly as the u64 it holds.
        #[test]
        fn ids_encode_exactly_like_their_u64(n in any::<u64>()) {
            let bare = postcard::to_allocvec(&n).unwrap();
            prop_assert_eq!(&postcard::to_allocvec(&UserId(n)).unwrap(), &bare);
            prop_assert_eq!(&postcard::to_allocvec(&GroupId(n)).unwrap(), &bare);
            prop_assert_eq!(&postcard::to_allocvec(&Seq(n)).unwrap(), &bare);
            prop_assert_eq!(&postcard::to_allocvec(&MessageId(n)).unwrap(), &bare);
            prop_assert_eq!(&postcard::to_allocvec(&ClientMsgId(n)).unwrap(), &bare);
            prop_assert_eq!(&postcard::to_allocvec(&SupportId(n)).unwrap(), &bare);
            prop_assert_eq!(postcard::from_bytes::<Seq>(&bare).unwrap(), Seq(n));
        }
    }
}
