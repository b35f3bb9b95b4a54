//! The gateway's tests, one binary (one link step): `delivery` drives the loop with a
//! scripted feed and a local webhook, one POST at a time, and `concurrency` with several
//! at once; `link` runs the whole gateway against a fake confabd driven frame by frame;
//! `dead_tokens` has the webhook report dead tokens and checks the drops sent (through the
//! loop, then the whole gateway against the fake confabd); `end_to_end` runs the built
//! gateway against the real confabd.

mod common;
mod concurrency;
mod dead_tokens;
mod delivery;
mod end_to_end;
mod link;
