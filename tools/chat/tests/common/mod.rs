//! The harness of the integration tests: `confab-chat` processes in line mode (lines in
//! on stdin, events out as lines on stdout) against a real server started in-process.
//!
//! Every wait is for a printed line that proves the effect, with a generous timeout, so
//! the tests do not depend on timing.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

use confab::{Config, Server};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(15);
pub const PASSWORD: &str = "correct horse";

/// One client process: lines go in on stdin, events come out as lines on stdout.
pub struct Chat {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl Chat {
    pub fn start(name: &str, addr: SocketAddr, token_file: &Path, extra: &[&str]) -> Chat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-chat"))
            .arg("--server")
            .arg(addr.to_string())
            .arg("--plain")
            .arg("--token-file")
            .arg(token_file)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn confab-chat");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Chat { name: name.to_string(), child, stdin, lines, seen: Vec::new() }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the client");
        stdin.flush().expect("flush");
    }

    /// The next line satisfying `wanted`, skipping others (reconnect chatter, acks).
    pub fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {what} within {WAIT:?}; saw {:#?}", self.name, self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before {what}; saw {:#?}", self.name, self.seen)
                }
            }
        }
    }

    /// The next line starting with `prefix`.
    pub fn expect(&mut self, prefix: &str) -> String {
        self.wait_for(prefix, |line| line.starts_with(prefix))
    }

    /// The next line starting with any of `prefixes`: to check which comes first.
    pub fn expect_any(&mut self, prefixes: &[&str]) -> String {
        self.wait_for(&prefixes.join(" or "), |line| prefixes.iter().any(|p| line.starts_with(p)))
    }

    /// The `id=` of the next `group-created` line.
    pub fn created_group(&mut self) -> u64 {
        let line = self.expect("group-created id=");
        line["group-created id=".len()..].parse().unwrap_or_else(|_| panic!("{}: bad line {line:?}", self.name))
    }

    /// The next `message` line, whatever it says.
    pub fn next_message(&mut self) -> String {
        self.expect("message ")
    }

    pub fn register_and_login(&mut self, user: &str) {
        self.expect("connected ");
        self.send(&format!("/register {user} {PASSWORD}"));
        self.send(&format!("/login {user} {PASSWORD}"));
        assert_eq!(self.expect("registered "), format!("registered {user}"));
        self.expect(&format!("logged-in {user} "));
    }

    /// Closes stdin and checks the process exits 0 by itself.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait().expect("wait") {
                Some(status) => {
                    assert!(status.success(), "{} exited with {status}", self.name);
                    return;
                }
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!("{} did not exit after end of input", self.name);
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        // Only still running if a test failed; don't leave it behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut Config)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path().join("data"));
        adjust(&mut config);
        let server = Server::start(config).expect("start");
        Fixture { dir, server: Some(server) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").local_addr()
    }

    pub fn token(&self, name: &str) -> PathBuf {
        self.dir.path().join("tokens").join(name)
    }

    pub fn chat(&self, name: &str) -> Chat {
        Chat::start(name, self.addr(), &self.token(name), &[])
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown();
        }
    }
}

pub fn text_of(line: &str) -> &str {
    line.split_once(" text=").map_or("", |(_, text)| text)
}
