//! The open-file limit: protocol.md "Heartbeats, limits and shutdown", Connections. The
//! connection limit is fitted under RLIMIT_NOFILE at start, and a server out of descriptors
//! still answers newcomers with `ServerFull` instead of leaving them hanging.

use crate::common::daemon::spawn_daemon_with_nofile;
use crate::common::{eventually, DataDir, SETTLE};
use confab::client::{Client, ClientError};
use confab::protocol::{ErrorCode, ServerFrame};

/// Connects and says Hello; the error code if the server refused.
fn try_connect(addr: std::net::SocketAddr) -> Result<Client, ErrorCode> {
    match Client::connect(addr, "tests") {
        Ok((client, _)) => Ok(client),
        Err(e) => Err(e.code().unwrap_or_else(|| panic!("not a server refusal: {e}"))),
    }
}

#[test]
fn max_connections_is_lowered_to_what_the_open_file_limit_allows() {
    let data = DataDir::new();
    // 160 descriptors, 128 kept for storage and logs: 32 connections.
    let mut daemon = spawn_daemon_with_nofile(data.path(), &["--log-level", "info"], 160);
    let said = daemon.startup.iter().any(|l| l.contains("max-connections lowered from 19000 to 32"));
    assert!(said, "the start log says so:\n{}", daemon.startup.join("\n"));
    let held: Vec<Client> = (0..32).map(|_| try_connect(daemon.addr).expect("admitted")).collect();
    assert_eq!(try_connect(daemon.addr).err(), Some(ErrorCode::ServerFull));
    drop(held);
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[test]
fn out_of_descriptors_newcomers_are_refused_not_left_hanging() {
    let data = DataDir::new();
    // No reserve: the connection limit is the open-file limit, so accept runs out first.
    let args = ["--fd-reserve", "0", "--hello-timeout", "60", "--login-timeout", "60", "--log-level", "info"];
    let mut daemon = spawn_daemon_with_nofile(data.path(), &args, 96);
    let mut held = Vec::new();
    let first_refusal = loop {
        assert!(held.len() < 96, "never ran out of descriptors");
        match try_connect(daemon.addr) {
            Ok(client) => held.push(client),
            Err(code) => break code,
        }
    };
    assert_eq!(first_refusal, ErrorCode::ServerFull);
    // Every further newcomer is told, with the reason, and closed.
    const MORE: usize = 50;
    for _ in 0..MORE {
        let mut client = Client::connect_raw(daemon.addr).unwrap();
        match client.read_frame().expect("an answer, not a hang") {
            ServerFrame::Error { code: ErrorCode::ServerFull, message, .. } => {
                assert_eq!(message, "out of file descriptors")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
    }
    // Once descriptors are free again, newcomers get in.
    held.truncate(held.len() - 5);
    let _admitted =
        eventually("a newcomer admitted once descriptors were freed", SETTLE, || try_connect(daemon.addr).ok());
    // The log did not get a line per refusal.
    let mut lines = 0;
    while let Ok(line) = daemon.log.try_recv() {
        if line.contains("out of file descriptors") || line.contains("accept failed") {
            lines += 1;
        }
    }
    assert!(lines < MORE / 5, "{lines} log lines for {MORE} refusals");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}
