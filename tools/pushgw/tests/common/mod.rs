//! What the tests share: a webhook to POST to, and a feed without a server.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

pub mod feed;
pub mod webhook_server;
