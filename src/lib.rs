//! confab: an instant-messaging server in one binary, with embedded storage.
//!
//! The layers, each standing only on those below it:
//!
//! ```text
//!   server            assembles the rest and takes it down in order
//!   net     worker    the event loop (sockets) | the owners of users, groups and rooms
//!   route             the seam they share: ids, Owner → Destination, Inbound, Outbox, ledger
//!   store   auth      durable state (commit log + sled) | password hashing threads
//!   apps              names carry their app (`app/name`); the boundary that adds and drops it
//!   protocol, frame   the wire contract (typed frames ↔ bytes), crate confab-proto
//! ```
//!
//! - [`net`]: one mio event loop thread owns every socket, splits and decodes frames,
//!   admits each request by connection state, and hands it through the [`route::Router`]
//!   to the owner of the state it concerns, over a bounded crossbeam channel.
//! - [`worker`]: a pool of threads, each owning a partition of the users (by username
//!   hash), groups and rooms: sessions, inbox positions and deliveries. A worker drains its
//!   queues in batches, makes each batch durable with one commit-log sync, and only then
//!   releases receipts and pushes, through the [`route::Outbox`] back to the loop.
//! - [`store`]: each worker's partition and commit log (the durable write path), and sled
//!   for accounts, groups, tokens and messages that wait for their recipients.
//! - [`auth`]: argon2id hashing on its own threads, so neither the loop nor a worker waits.
//! - [`apps`]: apps (tenants): every name carries its app inside the server; a request's
//!   names gain it as the loop reads them, a frame's lose it as a worker writes them.
//! - [`protocol`], [`frame`] and [`client`]: the wire contract (typed frames, the codec and
//!   a small blocking client for the tests and the tools), from the `confab-proto` crate.
//!
//! - [`cluster`]: several nodes over one NATS bus (`--cluster`): every user homed on one
//!   node, requests for owners elsewhere forwarded there by a bus thread, answers and
//!   pushes brought back; absent on a single node.
//!
//! `net` and `worker` never import each other. `protocol.md` at the repository root is the
//! wire contract; `docs/ARCHITECTURE.md` walks a direct message, a group message, an ack
//! and a login through these layers, function by function.

#![forbid(unsafe_code)]

pub mod admin;
pub mod apps;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod fdlimit;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod net;
pub mod route;
pub mod server;
pub mod signup;
pub mod store;
pub mod throttle;
pub mod worker;

// The wire contract lives in the confab-proto crate (so clients need not link the server);
// re-exported so `crate::protocol` and `confab::client` read as before.
pub use confab_proto::{client, frame, protocol, stats};

pub use config::Config;
pub use server::Server;
