//! One integration-test binary (one link step) with a module per behaviour. Every test
//! starts the real server on port 0 with a temporary data directory and speaks the
//! protocol over TCP; the cluster's tests start three nodes on ports chosen before they
//! start (every node is given the list) and a nats-server.

#![forbid(unsafe_code)]

mod common;

mod admin_cli;
mod apps;
mod apps_migration;
mod bad_input;
mod cluster;
mod commitlog;
mod crash;
mod damage;
mod delivery;
mod descriptors;
mod devices;
mod directory;
mod disk_full;
mod faults;
mod groups;
mod history;
mod hostile;
mod impersonation;
mod limits;
mod log_files;
mod login_throttle;
mod power_cut;
mod push;
mod read_state;
mod registration;
mod rooms;
mod security;
mod services;
mod session;
mod support;
mod unauthenticated;
