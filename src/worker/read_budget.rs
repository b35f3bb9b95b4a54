//! What reading stored messages for one connection costs it: `History` pages, the search of
//! `DeleteMessage` and the counts of `ReadState` each look at up to thousands of stored
//! messages, so a connection that sends them as fast as its request rate allows would keep
//! a worker reading for it alone. Each such request is charged, before it runs, the most it
//! may read, against the connection's fan-out budget (`--fanout-rate`, `--fanout-burst`:
//! the work the server does for one connection's requests, in bytes); beyond it the request
//! is refused with `RateLimited` and the time until it fits.

use super::context::Ctx;
use super::refusal::{Handled, Refusal};
use super::{deletion, history, unread};
use crate::protocol::Request;
use crate::route::ConnId;
use std::time::Instant;

/// What looking at one stored message costs, in bytes of the fan-out budget: about what
/// decoding it moves. At the default budget (16 MiB a second, 32 MiB saved up) a client may
/// ask about 13 `ReadState`s or 64 `History` pages a second, far more than any screen shows.
pub const PER_MESSAGE: u64 = 64;

/// Charges `request`, if it is one that reads many stored messages, to `conn`'s budget.
pub fn charge(ctx: &Ctx, conn: ConnId, request: &Request) -> Handled {
    let messages = match request {
        Request::History { .. } => history::SCAN_LIMIT,
        Request::DeleteMessage { .. } => deletion::FIND_LIMIT,
        Request::ReadState => unread::SCAN_BUDGET,
        _ => return Ok(()),
    };
    match ctx.shared.fanout.take(conn, messages * PER_MESSAGE, Instant::now()) {
        Ok(()) => Ok(()),
        Err(wait) => Err(Refusal::rate_limited("reading budget spent (history and read-state requests)", wait)),
    }
}
