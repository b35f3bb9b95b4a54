//! The harness of the smoke test: the real `confabd` binary as a child process (`daemon`).

// The daemon module is shared in shape with tools/chat's; not every part is used here.
#![allow(dead_code)]

pub mod daemon;
