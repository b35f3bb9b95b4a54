//! What the tests share: a webhook to POST to, a feed without a server, a fake confabd
//! that a test drives frame by frame, the gateway on a thread of the test, and the built
//! gateway as a child process.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

pub mod fake_confabd;
pub mod feed;
pub mod gateway_process;
pub mod gateway_thread;
pub mod webhook_server;
