//! `room`: R rooms of M members (100 × 50 by default), every member a client sending
//! live-only messages to its room (`Send { to: Room, transient: true, client_msg_id: 0 }`,
//! answered `Delivered { recipients }`, pushed as `RoomMessage`). Nothing is stored, so
//! there is no receipt beyond `Delivered` and nothing to acknowledge or resend.
//!
//! Setup: every member joins its room (named after the run, so rooms never mix between
//! runs). The check is `fanout`'s: every answered send reached each other member exactly
//! once, and `Delivered` counted all of them. Nobody leaves during the run; a member whose
//! connection drops leaves its rooms with it, is left out of the check, and fails the run.

use super::fanout::{self, Kind, Spec};
use super::group::step_error;
use super::{answer_errors, call_all, Ctx};
use crate::cli::RoomArgs;
use crate::engine::Engine;
use crate::error::Error;
use crate::report::Report;
use confab_proto::protocol::Request;

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

/// Room names allow `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn room_name(run_id: u32, index: usize) -> String {
    format!("lg-{run_id:08x}-{index}")
}

/// Every slot of `sets[i]` joins room `rooms[i]`.
pub fn join_rooms(
    eng: &mut Engine,
    sets: &[Vec<usize>],
    rooms: &[String],
    deadline: u64,
    show: bool,
) -> Result<(), Error> {
    let calls: Vec<(usize, Request)> = sets
        .iter()
        .zip(rooms)
        .flat_map(|(set, room)| set.iter().map(|&c| (c, Request::JoinRoom { room: room.clone() })))
        .collect();
    let total = calls.len();
    let answers = call_all(eng, calls, deadline, show.then_some("room members joined"))?;
    let errors = answer_errors(&answers, &[]);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(step_error("joining rooms", total, &errors))
    }
}
