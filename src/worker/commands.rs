//! What workers and the hashing threads send a worker on its internal queue. What the
//! event loop sends comes on the inbound queue instead ([`crate::route::Inbound`]).

use super::accounts::HashOutcome;
use super::membership::NewGroup;
use super::seats::Seat;
use super::services::{Outgoing, Part, Tally};
use crate::protocol::ErrorCode;
use crate::route::{ConnId, SessionUser};
use std::sync::Arc;

pub enum WorkerCmd {
    /// A password hash or check finished.
    Hashed(HashOutcome),
    /// The user logged out on the connection (told by the user's worker): forget what is
    /// held for it here, as for a closed connection.
    LoggedOut { conn: ConnId, user: SessionUser },
    /// A member of a group this worker owns is online at `conn` (sent by the member's
    /// worker after login): deliver what the member has not acknowledged.
    MemberOnline { group_id: u64, username: Arc<str>, conn: ConnId },
    /// Create a group whose id the creator's worker allocated.
    /// The creator's seat is given back once the membership is written (or not).
    CreateGroup { group: NewGroup, seat: Seat },
    /// Part of a service's send: store and push to these users of this worker (all its
    /// online users when `users` is None), then report to the coordinating worker.
    ServiceDeliver { part: Part, users: Option<Vec<String>>, message: Outgoing },
    /// A service's send to a group this worker owns.
    ServiceGroup { part: Part, group_id: u64, except: Option<String>, message: Outgoing },
    /// One part of a service's send is done (and durable).
    Gathered { gather: u64, outcome: Result<Tally, (ErrorCode, String)> },
    /// Room was freed in the delivery budget of the session on `conn` (every waiting
    /// session when None): push what waits for it.
    Pump { conn: Option<ConnId> },
    /// Finish the queues, commit, and exit (shutdown).
    Stop,
}
