//! Crash safety with the real binary: a steady stream of sends, then SIGKILL (or SIGTERM)
//! in the middle of it, and a restart on the same data directory. Every message whose
//! receipt reached the sender must be delivered exactly as sent, in order, once; a retry of
//! anything after the restart must not store it twice.

use crate::common::daemon::{self, daemon_with_users, logged_in, spawn_daemon, Daemon};
use crate::common::{eventually, DataDir, PASSWORD};
use confab::client::{Client, ClientError};
use confab::protocol::{ClientMsgId, Content, Push, Reply, Request, Seq, Target};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) fn send_request(cmid: ClientMsgId) -> Request {
    Request::Send {
        to: Target::User("bob".into()),
        client_msg_id: cmid,
        transient: false,
        content: Content::text(format!("message {cmid}")),
    }
}

/// Streams sends from alice to bob, eight in flight, until the connection breaks.
/// Returns (client ids sent, receipts as (client id, seq)).
fn stream_until_broken(addr: SocketAddr, receipted: Arc<Mutex<Vec<(ClientMsgId, Seq)>>>) -> u64 {
    let mut alice = logged_in(addr, "alice");
    let mut next = 1u64;
    loop {
        let mut ids = Vec::new();
        for cmid in (next..next + 8).map(ClientMsgId) {
            match alice.send(send_request(cmid)) {
                Ok(id) => ids.push((cmid, id)),
                Err(_) => return next + 8,
            }
        }
        for (cmid, id) in ids {
            match alice.reply_to(id) {
                Ok(Reply::Sent { seq, .. }) => receipted.lock().unwrap().push((cmid, seq)),
                Ok(other) => panic!("unexpected reply {other:?}"),
                Err(ClientError::Closed | ClientError::Io(_) | ClientError::Timeout) => return next + 8,
                Err(e) => panic!("send failed: {e}"),
            }
        }
        next += 8;
    }
}

/// A stream of sends from alice to bob (see [`stream_until_broken`]) interrupted by
/// `signal` once 300 are receipted: how many it attempted (client ids 1 to one less), the
/// receipts, and how the daemon exited.
pub(crate) fn signal_mid_stream(daemon: &mut Daemon, signal: &str) -> (u64, Vec<(ClientMsgId, Seq)>, ExitStatus) {
    let receipted = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (addr, receipted) = (daemon.addr, receipted.clone());
        std::thread::spawn(move || stream_until_broken(addr, receipted))
    };
    eventually("300 receipted sends, to kill the daemon in mid-stream", Duration::from_secs(120), || {
        receipted.lock().unwrap().len() >= 300
    });
    let exit = daemon::signal(daemon, signal);
    let attempted = sender.join().unwrap();
    let receipted = receipted.lock().unwrap().clone();
    (attempted, receipted, exit)
}

/// Kills (or terminates) the daemon mid-stream, restarts it, retries every message, and
/// checks that bob gets each receipted message once, in order, as sent.
fn interrupted_stream(signal: &str) {
    let data = DataDir::new();
    let mut daemon = daemon_with_users(data.path(), &["alice", "bob"]);
    let (attempted, receipted, exit) = signal_mid_stream(&mut daemon, signal);
    if signal == "-TERM" {
        assert!(exit.success(), "a graceful shutdown exits 0, got {exit:?}");
    }

    let mut daemon = spawn_daemon(data.path(), &["--log-level", "info"]);
    // The sender retries everything it ever tried: receipted or not, nothing is stored twice.
    let mut alice = logged_in(daemon.addr, "alice");
    let mut seq_of = std::collections::HashMap::new();
    for cmid in (1..attempted).map(ClientMsgId) {
        match alice.request(send_request(cmid)).unwrap() {
            Reply::Sent { seq, .. } => {
                seq_of.insert(cmid, seq);
            }
            other => panic!("{other:?}"),
        }
    }
    for (cmid, seq) in &receipted {
        assert_eq!(seq_of[cmid], *seq, "a receipted message kept its sequence through the restart");
    }

    let (mut bob, _) = Client::connect(daemon.addr, "bob").unwrap();
    let last_seq = match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked: Seq::ZERO, last_seq, .. } => last_seq,
        other => panic!("{other:?}"),
    };
    assert_eq!(last_seq, Seq(attempted - 1), "each attempted message stored exactly once");
    let mut seen = HashSet::new();
    for expected_seq in (1..=last_seq.get()).map(Seq) {
        let m = bob.next_message().unwrap();
        assert_eq!(m.seq, expected_seq);
        let text = String::from_utf8(m.content.body).unwrap();
        assert!(seen.insert(text.clone()), "{text} delivered twice");
        if expected_seq.get() % 500 == 0 {
            bob.ack(expected_seq).unwrap();
        }
    }
    for (cmid, _) in &receipted {
        assert!(seen.contains(&format!("message {cmid}")), "receipted message {cmid} lost");
    }
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[test]
fn sigkill_mid_stream_loses_no_receipted_message_and_retries_do_not_duplicate() {
    interrupted_stream("-KILL");
}

#[test]
fn sigterm_under_load_loses_no_receipted_message() {
    interrupted_stream("-TERM");
}

#[test]
fn sigterm_tells_clients_and_exits_cleanly() {
    let data = DataDir::new();
    let mut daemon = spawn_daemon(data.path(), &["--log-level", "info"]);
    let (mut client, _) = Client::connect(daemon.addr, "t").unwrap();
    client.register("alice", PASSWORD).unwrap();
    let status = daemon::signal(&mut daemon, "-TERM");
    assert_eq!(client.next_push().unwrap(), Push::ShuttingDown);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn logs_never_show_passwords_tokens_or_message_bodies() {
    let data = DataDir::new();
    let mut daemon = spawn_daemon(data.path(), &["--log-level", "trace"]);
    let secret_password = "hunter2-very-secret";
    let secret_body = "the eagle lands at midnight";
    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    alice.register("alice", secret_password).unwrap();
    alice.register("bob", secret_password).unwrap();
    let token = match alice.login("alice", secret_password).unwrap() {
        Reply::LoggedIn { resume_token, .. } => resume_token,
        other => panic!("{other:?}"),
    };
    alice.send_text("bob", ClientMsgId(1), secret_body).unwrap();
    let (mut bob, _) = Client::connect(daemon.addr, "t").unwrap();
    bob.login("bob", "wrong password, also secret").unwrap_err();
    bob.login("bob", secret_password).unwrap();
    assert_eq!(String::from_utf8(bob.next_message().unwrap().content.body).unwrap(), secret_body);
    daemon::signal(&mut daemon, "-TERM");
    let log: Vec<String> = daemon.log.try_iter().collect();
    let log = log.join("\n");
    assert!(log.contains("registered default/alice"), "the log was captured:\n{log}");
    let token_hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    for secret in [secret_password, secret_body, "also secret", &token_hex, "$argon2id$"] {
        assert!(!log.contains(secret), "the log shows {secret:?}");
    }
}
