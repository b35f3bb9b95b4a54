//! confab: an instant-messaging server in one binary, with embedded storage.
//!
//! A message travels one way through the crate:
//!
//! ```text
//! socket → frame (bytes ↔ frames) → protocol (frames ↔ typed requests) → net (event loop)
//!        → worker (owner of the recipient) → store (durable, group commit)
//!        → net (outbound buffer) → socket
//! ```
//!
//! - [`net`]: one mio event loop thread owns every socket, splits and decodes frames,
//!   admits each request by connection state, and hands it to a worker over a bounded
//!   crossbeam channel. Workers answer through an unbounded channel plus a `mio::Waker`.
//! - [`worker`]: a pool of threads, each owning a partition of the users (by username
//!   hash): sessions, inbox positions and deliveries. A worker drains its queue in
//!   batches, makes each batch durable with one commit-log sync, and only then releases
//!   receipts and pushes.
//! - [`store`]: each worker's partition and commit log (the durable write path), and sled
//!   for accounts, groups, tokens and messages that wait for their recipients.
//! - [`auth`]: argon2id hashing on its own threads, so neither the loop nor a worker waits.
//! - [`client`]: a small blocking client used by the tests and the tools.
//!
//! `protocol.md` at the repository root is the wire contract.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod fdlimit;
pub mod frame;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod net;
pub mod protocol;
pub mod server;
pub mod signup;
pub mod store;
pub mod throttle;
pub mod worker;

pub use config::Config;
pub use server::Server;
