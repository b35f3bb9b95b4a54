//! `group`: G groups of M members (100 × 50 by default, peers.md's fan-out workload: one
//! send is 49 deliveries), every member a client sending stored messages to its group.
//!
//! Setup (`sets`), per group: its first member creates it (`CreateGroup`, closed) and adds the
//! others (`AddMember`); groups an earlier, interrupted run left behind are deleted or left
//! first (a user may belong to at most 100 groups), and this run's are deleted at the end.
//! The traffic and the check are `fanout`'s: a member is not pushed its own messages,
//! membership events share the group's sequence and are skipped, and every member acks
//! each group cumulatively (the engine, like the inbox; the delivery window is per
//! conversation), passing over its own messages as protocol.md's client algorithm does.

use super::fanout::{self, Kind, Spec};
use super::Ctx;
use crate::cli::GroupArgs;
use crate::error::Error;
use crate::report::Report;

pub fn run(ctx: &Ctx, args: &GroupArgs) -> Result<Report, Error> {
    let spec = Spec {
        kind: Kind::Group,
        sets: args.groups,
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
