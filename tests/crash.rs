//! Crash safety with the real binary: SIGKILL in the middle of a steady stream of sends,
//! then a restart on the same data directory. Every message whose receipt reached the
//! sender must be delivered, exactly as sent, in order.

use crate::common::PASSWORD;
use confab::client::{Client, ClientError};
use confab::protocol::Reply;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The confabd binary on an ephemeral port; returns it and the address it logged.
fn spawn_daemon(data_dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .args(["--listen", "127.0.0.1:0", "--hash-memory-kib", "8", "--hash-iterations", "1"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("confabd starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("confabd logs its address before exiting").expect("utf-8 log");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().expect("an address after 'listening on'");
            break addr.parse().expect("a socket address");
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[test]
fn sigkill_mid_stream_loses_no_receipted_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut daemon, addr) = spawn_daemon(&data);
    let (mut setup, _) = Client::connect(addr, "crash-test").unwrap();
    setup.register("alice", PASSWORD).unwrap();
    setup.register("bob", PASSWORD).unwrap();
    drop(setup);

    // A steady stream of sends, pipelined eight at a time, recording every receipt.
    let receipted = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let started = Arc::new(AtomicBool::new(false));
    let sender = {
        let receipted = receipted.clone();
        let started = started.clone();
        std::thread::spawn(move || {
            let (mut alice, _) = Client::connect(addr, "alice").unwrap();
            alice.login("alice", PASSWORD).unwrap();
            let mut next = 1u64;
            loop {
                let ids: Vec<(u64, u32)> = (0..8)
                    .map(|i| {
                        let cmid = next + i;
                        let req = confab::protocol::Request::Send {
                            to: confab::protocol::Target::User("bob".into()),
                            client_msg_id: cmid,
                            transient: false,
                            content: confab::protocol::Content::text(format!("message {cmid}")),
                        };
                        alice.send(req).map(|id| (cmid, id))
                    })
                    .collect::<Result<_, _>>()
                    .unwrap_or_default();
                if ids.is_empty() {
                    return;
                }
                for (cmid, id) in ids {
                    match alice.reply_to(id) {
                        Ok(Reply::Sent { seq, .. }) => receipted.lock().unwrap().push((cmid, seq)),
                        Ok(other) => panic!("unexpected reply {other:?}"),
                        Err(ClientError::Closed | ClientError::Io(_) | ClientError::Timeout) => return,
                        Err(e) => panic!("send failed: {e}"),
                    }
                    started.store(true, Ordering::SeqCst);
                }
                next += 8;
            }
        })
    };
    // Kill once a few hundred receipts are in, while sends are still in flight.
    while receipted.lock().unwrap().len() < 300 {
        std::thread::yield_now();
    }
    daemon.kill().expect("SIGKILL");
    daemon.wait().unwrap();
    sender.join().unwrap();
    let receipted = receipted.lock().unwrap().clone();
    assert!(receipted.len() >= 300);

    let (mut daemon, addr) = spawn_daemon(&data);
    let (mut bob, _) = Client::connect(addr, "bob").unwrap();
    let (acked, last_seq) = match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => (acked, last_seq),
        other => panic!("{other:?}"),
    };
    assert_eq!(acked, 0);
    assert!(last_seq >= receipted.len() as u64, "store lost messages: {last_seq} < {}", receipted.len());
    // Everything stored arrives in order; every receipted message is among it, as sent.
    let mut delivered = Vec::new();
    for expected_seq in 1..=last_seq {
        let m = bob.next_message().unwrap();
        assert_eq!(m.seq, expected_seq);
        delivered.push(String::from_utf8(m.content.body).unwrap());
        if expected_seq % 500 == 0 {
            bob.ack(expected_seq).unwrap();
        }
    }
    for (cmid, seq) in &receipted {
        assert_eq!(delivered[(*seq - 1) as usize], format!("message {cmid}"), "receipted seq {seq}");
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = spawn_daemon(&dir.path().join("data"));
    let (mut client, _) = Client::connect(addr, "t").unwrap();
    client.register("alice", PASSWORD).unwrap();
    let status = Command::new("kill").arg("-TERM").arg(daemon.id().to_string()).status().unwrap();
    assert!(status.success());
    assert_eq!(client.next_push().unwrap(), confab::protocol::Push::ShuttingDown);
    let output = daemon.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
}
