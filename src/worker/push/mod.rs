//! Push notifications for users who are not connected: their devices and mutes
//! (`settings`, shared through the `book`), the notes a stored message for an offline
//! reader makes (`notes`), and the queue that coalesces them into events and feeds them
//! to the push gateway (`queue`). protocol.md "Push notifications" is the contract.

mod book;
pub mod notes;
pub mod queue;
pub mod settings;

pub use book::PushBook;
