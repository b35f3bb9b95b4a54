//! The gateway's tests, one binary (one link step): `delivery` drives the loop with a
//! scripted feed and a local webhook, one POST at a time, and `concurrency` with several
//! at once; `link` runs the whole gateway against a fake confabd driven frame by frame;
//! `end_to_end` runs the built gateway against the real confabd.

mod common;
mod concurrency;
mod delivery;
mod end_to_end;
mod link;
