//! The gateway's tests, one binary (one link step): `delivery` drives the loop with a
//! scripted feed and a local webhook; `link` runs the whole gateway against a fake
//! confabd driven frame by frame.

mod common;
mod delivery;
mod link;
