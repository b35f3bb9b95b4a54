//! The gateway's tests, one binary (one link step): `delivery` drives the loop with a
//! scripted feed and a local webhook; `link` runs the whole gateway against a fake
//! confabd driven frame by frame; `end_to_end` runs the built gateway against the real
//! confabd.

mod common;
mod delivery;
mod end_to_end;
mod link;
