//! The gateway's tests, one binary (one link step): `delivery` drives the loop with a
//! scripted feed and a local webhook.

mod common;
mod delivery;
