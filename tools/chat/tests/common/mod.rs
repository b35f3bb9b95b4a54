//! The harness of the integration tests: `confab-chat` processes in line mode (lines in
//! on stdin, events out as lines on stdout) against the real `confabd` binary (run by
//! `confab-testd`).
//!
//! Every wait is for a printed line that proves the effect, with a generous timeout, so
//! the tests do not depend on timing.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

pub mod fake;

use confab_testd::{add_admin, confabd, subcommand, Daemon};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::ffi::OsString;
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
        let mut args =
            vec![OsString::from("--server"), addr.to_string().into(), "--token-file".into(), token_file.into()];
        args.extend(extra.iter().map(OsString::from));
        Chat::spawn(name, &args)
    }

    /// A client in line mode with exactly these flags (no `--server`: the default, or the
    /// home remembered with `--user`'s token).
    pub fn spawn(name: &str, args: &[OsString]) -> Chat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-chat"))
            .arg("--plain")
            .args(args)
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

    /// Logs in an account made before the daemon started.
    pub fn login(&mut self, user: &str) {
        self.expect("connected ");
        self.send(&format!("/login {user} {PASSWORD}"));
        self.expect(&format!("logged-in {user} "));
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

/// A confabd with its own data directory, and the token files of the clients.
pub struct Fixture {
    /// Declared before `dir`, so it is killed before its data directory is removed.
    daemon: Option<Daemon>,
    pub dir: tempfile::TempDir,
    /// Where the daemon listens, and listens again after a restart.
    addr: SocketAddr,
    flags: Vec<String>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::start(&[], &[])
    }

    /// With these confabd flags after the test settings (e.g. `--delivery-window 4`).
    pub fn with(flags: &[&str]) -> Fixture {
        Fixture::start(flags, &[])
    }

    /// With administrator accounts `admins` (password [`PASSWORD`]) created before the
    /// daemon starts: the administration subcommands need it stopped.
    pub fn with_admins(admins: &[&str]) -> Fixture {
        Fixture::start(&[], admins)
    }

    /// With the shop `shop`, its `staff` and the `users` (password [`PASSWORD`]) made
    /// before the daemon starts (`confabd user add`, `shop add`, `shop staff add`).
    pub fn with_shop(shop: &str, staff: &[&str], users: &[&str]) -> Fixture {
        Fixture::prepare(&[], &[], |data_dir| {
            let run = |args: &[&str], stdin: &str| {
                let output = subcommand(confabd(), data_dir, args, stdin);
                assert!(output.status.success(), "confabd {args:?}: {}", String::from_utf8_lossy(&output.stderr));
            };
            for name in staff.iter().chain(users) {
                run(&["user", "add", name], &format!("{PASSWORD}\n"));
            }
            run(&["shop", "add", shop], "");
            for name in staff {
                run(&["shop", "staff", "add", shop, name], "");
            }
        })
    }

    /// With the app `app` hosted and the administrator `admin` (password [`PASSWORD`]) in
    /// it, made before the daemon starts (`confabd app add`, `user add --app`).
    pub fn with_app(app: &str, admin: &str) -> Fixture {
        Fixture::prepare(&[], &[], |data_dir| {
            let run = |args: &[&str], stdin: &str| {
                let output = subcommand(confabd(), data_dir, args, stdin);
                assert!(output.status.success(), "confabd {args:?}: {}", String::from_utf8_lossy(&output.stderr));
            };
            run(&["app", "add", app], "");
            run(&["user", "add", admin, "--app", app], &format!("{PASSWORD}\n"));
            run(&["user", "admin", admin, "--app", app], "");
        })
    }

    fn start(flags: &[&str], admins: &[&str]) -> Fixture {
        Fixture::prepare(flags, admins, |_| {})
    }

    fn prepare(flags: &[&str], admins: &[&str], setup: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        for name in admins {
            add_admin(confabd(), &data_dir, name, PASSWORD);
        }
        setup(&data_dir);
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let daemon = Daemon::start(confabd(), &data_dir, any_port, flags);
        let addr = daemon.addr;
        Fixture { daemon: Some(daemon), dir, addr, flags: flags.iter().map(|f| f.to_string()).collect() }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the daemon cleanly (SIGTERM).
    pub fn stop(&mut self) {
        self.daemon.take().expect("running").stop();
    }

    /// Starts the stopped daemon again on the same data directory and the same port, so
    /// clients can reconnect by themselves (confabd binds with SO_REUSEADDR: the port is
    /// free at once).
    pub fn start_again(&mut self) {
        assert!(self.daemon.is_none(), "stop it first");
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.daemon = Some(Daemon::start(confabd(), &self.dir.path().join("data"), self.addr, &flags));
    }

    pub fn token(&self, name: &str) -> PathBuf {
        self.dir.path().join("tokens").join(name)
    }

    pub fn chat(&self, name: &str) -> Chat {
        Chat::start(name, self.addr(), &self.token(name), &[])
    }

    /// A chat process of `app` (`--app`).
    pub fn chat_in(&self, app: &str, name: &str) -> Chat {
        Chat::start(name, self.addr(), &self.token(&format!("{app}-{name}")), &["--app", app])
    }
}

/// `line` without its ` KEY=VALUE` field (ids and device names differ from run to run).
pub fn drop_field(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split(' ').filter(|word| !word.starts_with(&prefix)).collect::<Vec<_>>().join(" ")
}

/// The value of the ` KEY=VALUE` field of `line`.
pub fn field<'l>(line: &'l str, key: &str) -> &'l str {
    let prefix = format!("{key}=");
    line.split(' ').find_map(|word| word.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

pub fn text_of(line: &str) -> &str {
    line.split_once(" text=").map_or("", |(_, text)| text)
}
