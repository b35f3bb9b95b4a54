//! confab's wire contract, shared by the server and every client: the typed requests,
//! replies and pushes ([`protocol`]), the length-prefixed frame codec ([`frame`]) and a
//! small blocking client ([`client`]) used by tests and tools, the id types they all carry
//! ([`ids`]), and the statistics as text ([`stats`]).
//!
//! `protocol.md` at the repository root is the specification; this crate's
//! `tests/vectors.rs` checks its hex vectors against the codec. Nothing here knows about
//! storage, hashing or the event loop, so a client links only what it speaks.

#![forbid(unsafe_code)]

pub mod client;
pub mod frame;
pub mod ids;
pub mod protocol;
pub mod stats;
