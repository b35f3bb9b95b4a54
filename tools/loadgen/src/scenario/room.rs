//! `room`: R rooms of M members (100 × 50 by default), every member a client sending
//! live-only messages to its room (`Send { to: Room, transient: true, client_msg_id: 0 }`,
//! answered `Delivered { recipients }`, pushed as `RoomMessage`). Nothing is stored, so
//! there is no receipt beyond `Delivered` and nothing to acknowledge or resend.
//!
//! Setup (`sets`): every member joins its room (named after the run, so rooms never mix between
//! runs). The check is `fanout`'s: every answered send reached each other member exactly
//! once, and `Delivered` counted all of them. Nobody leaves during the run; a member whose
//! connection drops leaves its rooms with it, is left out of the check, and fails the run.

use super::fanout::{self, Kind, Spec};
use super::Ctx;
use crate::cli::RoomArgs;
use crate::error::Error;
use crate::report::Report;

pub fn run(ctx: &Ctx, args: &RoomArgs) -> Result<Report, Error> {
    let spec = Spec {
        kind: Kind::Room,
        sets: args.rooms,
        members: args.members,
        size: args.size,
        window: args.window,
        rate: args.rate,
        warmup: args.warmup,
        duration: args.duration,
        drain: args.drain,
        threads: args.threads,
        params: serde_json::to_value(args).unwrap_or_default(),
    };
    fanout::run(ctx, &spec)
}
