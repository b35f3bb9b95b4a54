//! What the tests share: a webhook to POST to, a feed without a server, and a fake
//! confabd that a test drives frame by frame.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

pub mod fake_confabd;
pub mod feed;
pub mod webhook_server;
